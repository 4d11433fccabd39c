//! What a Sentinel URL and a Cluster URL share:
//! `SCHEME://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/PATH][?…][#…]`, a
//! list of servers where a plain Redis URL names one.

use conveyor_core::{BackendUrl, Error};

/// Whether `url`'s scheme is one of `schemes` (any case).
pub(crate) fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    conveyor_core::scheme_of(url).is_some_and(|s| schemes.iter().any(|n| n.eq_ignore_ascii_case(s)))
}

/// A URL's list of servers, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostList {
    /// The driver's scheme for each server: `rediss` for TLS, else `redis`.
    pub(crate) scheme: &'static str,
    /// The servers' `USER:PASSWORD@`, as written, or empty.
    pub(crate) auth: String,
    /// Each `HOST:PORT`, in the URL's order.
    pub(crate) hosts: Vec<String>,
    /// What follows the list after its `/` (empty when none).
    pub(crate) path: String,
    /// `#insecure` (TLS without verification), or empty.
    pub(crate) fragment: String,
}

impl HostList {
    /// Takes the list of `parsed` (of `url`, whose query the caller has
    /// read) apart; every entry must be `HOST:PORT`, else `bad` says which
    /// (`each` names an entry: "sentinel", "node").
    pub(crate) fn parse(
        url: &str,
        parsed: &BackendUrl<'_>,
        each: &str,
        bad: impl Fn(&str) -> Error,
    ) -> Result<Self, Error> {
        let scheme = if parsed.scheme().to_ascii_lowercase().starts_with("rediss") {
            "rediss"
        } else {
            "redis"
        };
        let fragment = url
            .find('#')
            .map_or_else(String::new, |at| url[at..].to_owned());
        let (auth, rest) = match parsed.body().rsplit_once('@') {
            Some((auth, rest)) => (format!("{auth}@"), rest),
            None => (String::new(), parsed.body()),
        };
        let (list, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut hosts = Vec::new();
        for host in list.split(',') {
            let port_ok = host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad(&format!("{each} {host:?} is not HOST:PORT")));
            }
            hosts.push(host.to_owned());
        }
        Ok(Self {
            scheme,
            auth,
            hosts,
            path: path.to_owned(),
            fragment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(url: &str) -> Result<HostList, Error> {
        let parsed = BackendUrl::parse_as(url, &["redis+x", "rediss+x"])?;
        HostList::parse(url, &parsed, "server", |why| {
            Error::InvalidConfig(why.to_owned())
        })
    }

    #[test]
    fn a_list_is_taken_apart_with_its_auth_path_and_fragment() {
        let l = list("rediss+x://u:p@a:1,b:2/m/3#insecure").expect("parses");
        assert_eq!(l.scheme, "rediss");
        assert_eq!(l.auth, "u:p@");
        assert_eq!(l.hosts, ["a:1", "b:2"]);
        assert_eq!(l.path, "m/3");
        assert_eq!(l.fragment, "#insecure");
        let l = list("redis+x://a:1").expect("parses");
        assert_eq!(
            (l.scheme, l.auth.as_str(), l.path.as_str()),
            ("redis", "", "")
        );
        assert!(has_scheme("REDIS+X://a:1", &["redis+x"]));
        assert!(!has_scheme("redis://a:1", &["redis+x"]));
    }

    #[test]
    fn an_entry_without_a_port_is_refused_by_name() {
        for url in [
            "redis+x://a:1,b",
            "redis+x://a:1,:2",
            "redis+x://a:99999",
            "redis+x://",
        ] {
            let e = list(url).expect_err(url).to_string();
            assert!(e.contains("is not HOST:PORT"), "{url}: {e}");
        }
    }
}
