//! Taking a backend URL apart: its scheme, the part after it, and its query
//! parameters, which a backend takes one by one and then checks that nothing
//! it does not know is left.
//!
//! This lives in core so every backend crate parses its own URL the same way
//! (see [`Scheme`](crate::Scheme)) without a URL library: backend URLs are
//! read, not normalised, and what a backend does not use itself goes on to its
//! driver exactly as written. Parameter values are used as written too (no
//! percent-decoding).

use crate::Error;

/// The scheme a URL starts with (`redis` in `redis://…`), as written, if it
/// has one: two or more characters, a letter first, then letters, digits,
/// `+`, `-` or `.`, followed by `:`. A Windows drive (`C:\…`) is not one.
pub fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = scheme.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// A backend URL taken apart: `SCHEME://BODY?K=V&…#FRAGMENT` (the `//` may be
/// left out, as in `memory:`).
///
/// ```
/// use conveyor_core::BackendUrl;
///
/// let mut url = BackendUrl::parse("redis://127.0.0.1:6379/0?prefix=app1:&protocol=resp3")?;
/// assert_eq!(url.scheme(), "redis");
/// assert_eq!(url.body(), "127.0.0.1:6379/0");
/// assert_eq!(url.take("prefix")?, Some("app1:"));
/// url.allow_only(&["prefix", "protocol"])?;
/// assert_eq!(url.to_url(), "redis://127.0.0.1:6379/0?protocol=resp3");
/// # Ok::<(), conveyor_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl<'a> {
    url: &'a str,
    scheme: &'a str,
    body: &'a str,
    /// Where the query (or, without one, the fragment) starts in `url`.
    head_end: usize,
    params: Vec<(&'a str, &'a str)>,
    /// The fragment with its `#`, or empty.
    fragment: &'a str,
}

impl<'a> BackendUrl<'a> {
    /// Takes `url` apart; [`Error::InvalidConfig`] when it has no scheme.
    pub fn parse(url: &'a str) -> Result<Self, Error> {
        let scheme = scheme_of(url).ok_or_else(|| {
            Error::InvalidConfig(format!("{url:?} is not a backend URL (no SCHEME://)"))
        })?;
        let after = &url[scheme.len() + 1..];
        let after = after.strip_prefix("//").unwrap_or(after);
        let start = url.len() - after.len();
        let (rest, fragment) = match after.find('#') {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let params = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect();
        Ok(Self {
            url,
            scheme,
            body,
            head_end: start + body.len(),
            params,
            fragment,
        })
    }

    /// Takes `url` apart and checks that its scheme is one of `names` (any
    /// letter case): how a backend reads the URL given to it.
    pub fn parse_as(url: &'a str, names: &[&str]) -> Result<Self, Error> {
        let parsed = Self::parse(url)?;
        if names.iter().any(|n| n.eq_ignore_ascii_case(parsed.scheme)) {
            return Ok(parsed);
        }
        Err(Error::InvalidConfig(format!(
            "{}:// is not a scheme of this backend (expected {}://)",
            parsed.scheme,
            names.join("://, ")
        )))
    }

    /// The URL as given.
    pub fn as_str(&self) -> &'a str {
        self.url
    }

    /// The scheme as written (compare it with `eq_ignore_ascii_case`).
    pub fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// What follows `SCHEME://` up to the query or fragment: a host and path,
    /// or a file path.
    pub fn body(&self) -> &'a str {
        self.body
    }

    /// The parameters not taken yet, in order, as written.
    pub fn params(&self) -> &[(&'a str, &'a str)] {
        &self.params
    }

    /// Takes the parameter `name` out: its value (empty for a bare `name`), or
    /// `None` when the URL does not have it; [`Error::InvalidConfig`] when it is
    /// given more than once.
    pub fn take(&mut self, name: &str) -> Result<Option<&'a str>, Error> {
        let mut found = self.params.iter().filter(|(k, _)| *k == name);
        let value = found.next().map(|(_, v)| *v);
        if found.next().is_some() {
            return Err(Error::InvalidConfig(format!(
                "{}:// URL: parameter {name:?} is given more than once",
                self.scheme
            )));
        }
        self.params.retain(|(k, _)| *k != name);
        Ok(value)
    }

    /// Takes `max_value=BYTES` out (see [`crate::ValueLimit::lowered`]): a
    /// whole number of bytes, at least 1; `None` when the URL does not have
    /// it.
    pub fn take_max_value(&mut self) -> Result<Option<usize>, Error> {
        let Some(v) = self.take("max_value")? else {
            return Ok(None);
        };
        match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::InvalidConfig(format!(
                "{}:// URL: max_value={v:?} is not a number of bytes (a whole number, at least 1)",
                self.scheme
            ))),
        }
    }

    /// Checks that every parameter left is one of `allowed`; otherwise
    /// [`Error::InvalidConfig`] naming the first that is not and the allowed ones.
    pub fn allow_only(&self, allowed: &[&str]) -> Result<(), Error> {
        match self.params.iter().find(|(k, _)| !allowed.contains(k)) {
            None => Ok(()),
            Some((k, _)) if allowed.is_empty() => Err(Error::InvalidConfig(format!(
                "{}:// URL: unknown parameter {k:?} (this backend takes no parameters)",
                self.scheme
            ))),
            Some((k, _)) => Err(Error::InvalidConfig(format!(
                "{}:// URL: unknown parameter {k:?} (allowed: {})",
                self.scheme,
                allowed.join(", ")
            ))),
        }
    }

    /// The URL again without the parameters taken out, for a driver.
    pub fn to_url(&self) -> String {
        let head = &self.url[..self.head_end];
        let query: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    (*k).to_string()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if query.is_empty() {
            format!("{head}{}", self.fragment)
        } else {
            format!("{head}?{}{}", query.join("&"), self.fragment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{scheme_of, BackendUrl};
    use crate::Error;

    #[test]
    fn schemes_are_recognised_and_paths_are_not() {
        assert_eq!(scheme_of("redis://h:1/0"), Some("redis"));
        assert_eq!(scheme_of("memory:"), Some("memory"));
        assert_eq!(scheme_of("redis+unix:///tmp/s"), Some("redis+unix"));
        assert_eq!(scheme_of("./conveyor.db"), None);
        assert_eq!(scheme_of("/abs/path.db"), None);
        assert_eq!(scheme_of(r"C:\data\q.db"), None);
        assert_eq!(scheme_of("1x://y"), None);
        assert_eq!(scheme_of("dir/with:colon"), None);
    }

    #[test]
    fn parameters_are_taken_out_and_the_rest_kept_in_order() {
        let mut url =
            BackendUrl::parse("postgres://u@h/db?sslmode=disable&schema=s1&connect_timeout=2")
                .expect("parses");
        assert_eq!(url.scheme(), "postgres");
        assert_eq!(url.body(), "u@h/db");
        assert_eq!(url.take("schema").expect("once"), Some("s1"));
        assert_eq!(url.take("schema").expect("gone"), None);
        assert_eq!(
            url.to_url(),
            "postgres://u@h/db?sslmode=disable&connect_timeout=2"
        );
        let mut url = BackendUrl::parse("redis://h:1/0?prefix=a:b").expect("parses");
        assert_eq!(url.take("prefix").expect("once"), Some("a:b"));
        assert_eq!(url.to_url(), "redis://h:1/0");
        let url = BackendUrl::parse("postgres://u@h/db").expect("parses");
        assert_eq!(url.to_url(), "postgres://u@h/db");
    }

    #[test]
    fn fragments_and_bare_flags_survive() {
        let mut url = BackendUrl::parse("rediss://h:1/0?prefix=p&insecure#frag").expect("parses");
        assert_eq!(url.take("prefix").expect("once"), Some("p"));
        assert_eq!(url.params(), &[("insecure", "")]);
        assert_eq!(url.to_url(), "rediss://h:1/0?insecure#frag");
        let url = BackendUrl::parse("memory:").expect("parses");
        assert_eq!((url.scheme(), url.body()), ("memory", ""));
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let url = BackendUrl::parse("redis://h/0?prefx=a").expect("parses");
        let err = url
            .allow_only(&["prefix", "protocol"])
            .expect_err("unknown");
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidConfig(_)));
        assert!(
            msg.contains("\"prefx\"") && msg.contains("prefix, protocol"),
            "{msg}"
        );
        let url = BackendUrl::parse("memory://?x=1").expect("parses");
        let msg = url.allow_only(&[]).expect_err("none allowed").to_string();
        assert!(
            msg.contains("\"x\"") && msg.contains("no parameters"),
            "{msg}"
        );
        let mut url = BackendUrl::parse("redis://h/0?prefix=a&prefix=b").expect("parses");
        assert!(matches!(url.take("prefix"), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn a_backend_reads_only_its_own_schemes() {
        let url = BackendUrl::parse_as("REDIS://h/0", &["redis", "rediss"]).expect("any case");
        assert_eq!(url.scheme(), "REDIS");
        let msg = BackendUrl::parse_as("postgres://h/db", &["redis", "rediss"])
            .expect_err("not ours")
            .to_string();
        assert!(
            msg.contains("postgres://") && msg.contains("redis://, rediss://"),
            "{msg}"
        );
    }

    #[test]
    fn a_path_is_not_a_url() {
        assert!(matches!(
            BackendUrl::parse("./conveyor.db"),
            Err(Error::InvalidConfig(_))
        ));
    }
}
