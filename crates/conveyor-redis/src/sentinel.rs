//! Redis Sentinel: which server is the primary of a monitored master, as
//! the sentinels say.
//!
//! The URL names the sentinels, not the servers:
//! `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB]`
//! (`rediss+sentinel://` for TLS to the sentinels and the servers). The
//! user and password are the servers'; `sentinel_password=` (and
//! `sentinel_user=`) authenticate to the sentinels when they ask for it.
//! The driver's `protocol=` applies to the servers.
//!
//! A primary is asked for as Sentinel's client guidelines say: the
//! sentinels in turn, the first to answer `SENTINEL
//! get-master-addr-by-name` names it, and the server named must say it is
//! a master (`ROLE`) before calls go to it: a sentinel that has not yet
//! heard of a promotion may still name the old primary.

use std::time::Duration;

use conveyor_core::{BackendUrl, Error};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::host_list::{has_scheme, HostList};
use crate::RedisTls;

/// The scheme names of a Sentinel URL.
pub(crate) const SCHEMES: &[&str] = &["redis+sentinel", "rediss+sentinel"];

/// How long one sentinel, or one server asked for its role, may take to
/// connect or answer.
const ASK_WITHIN: Duration = Duration::from_millis(500);

/// A Sentinel URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sentinels {
    /// `rediss` for TLS, else `redis`.
    scheme: &'static str,
    /// The servers' `USER:PASSWORD@`, as written, or empty.
    auth: String,
    /// The sentinels' `HOST:PORT`, in the URL's order.
    sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub(crate) master: String,
    /// The database number on the servers.
    db: u32,
    /// The sentinels' `USER:PASSWORD@`, or empty.
    sentinel_auth: String,
    /// `?protocol=…` for the servers, or empty.
    query: String,
    /// `#insecure` (TLS without verification), or empty.
    fragment: String,
}

/// Whether `url` is a Sentinel URL (by its scheme).
pub(crate) fn is_sentinel(url: &str) -> bool {
    has_scheme(url, SCHEMES)
}

impl Sentinels {
    /// Takes `url` apart; [`Error::InvalidConfig`] saying what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad =
            |why: &str| Error::InvalidConfig(format!("bad Redis Sentinel URL {url:?}: {why}"));
        let mut parsed = BackendUrl::parse_as(url, SCHEMES)?;
        let sentinel_user = parsed.take("sentinel_user")?.unwrap_or("");
        let sentinel_password = parsed.take("sentinel_password")?;
        let protocol = parsed.take("protocol")?;
        parsed.allow_only(&["sentinel_user", "sentinel_password", "protocol"])?;
        let list = HostList::parse(url, &parsed, "sentinel", bad)?;
        let mut parts = list.path.split('/');
        let master = parts.next().unwrap_or("");
        let db = match parts.next() {
            None | Some("") => 0,
            Some(n) => n
                .parse()
                .map_err(|_| bad(&format!("the database {n:?} is not a number")))?,
        };
        if parts.next().is_some_and(|p| !p.is_empty()) {
            return Err(bad("expected /MASTER or /MASTER/DB after the sentinels"));
        }
        if master.is_empty() {
            return Err(bad("no master name (…/MASTER/DB after the sentinels)"));
        }
        let sentinel_auth = match sentinel_password {
            Some(p) => format!("{sentinel_user}:{p}@"),
            None if !sentinel_user.is_empty() => {
                return Err(bad("sentinel_user= needs sentinel_password="))
            }
            None => String::new(),
        };
        Ok(Self {
            scheme: list.scheme,
            auth: list.auth,
            sentinels: list.hosts,
            master: master.to_owned(),
            db,
            sentinel_auth,
            query: protocol
                .map(|p| format!("?protocol={p}"))
                .unwrap_or_default(),
            fragment: list.fragment,
        })
    }

    /// The driver's URL of the server at `addr` (`HOST:PORT`).
    pub(crate) fn server_url(&self, addr: &str) -> String {
        let Self {
            scheme,
            auth,
            db,
            query,
            fragment,
            ..
        } = self;
        format!("{scheme}://{auth}{addr}/{db}{query}{fragment}")
    }

    /// The driver's URL of the sentinel at `addr`.
    fn sentinel_url(&self, addr: &str) -> String {
        let Self {
            scheme,
            sentinel_auth,
            fragment,
            ..
        } = self;
        format!("{scheme}://{sentinel_auth}{addr}{fragment}")
    }

    /// The primary's `HOST:PORT`, as the first sentinel to answer names
    /// it and the server itself confirms; an error saying what each
    /// sentinel answered when none names a master.
    pub(crate) async fn primary(&self, tls: &RedisTls) -> Result<String, Error> {
        let mut said = Vec::new();
        for sentinel in &self.sentinels {
            match self.ask(sentinel, tls).await {
                Ok(addr) => match role(&self.server_url(&addr), tls).await {
                    Ok(role) if role == "master" => return Ok(addr),
                    Ok(role) => said.push(format!("{sentinel} named {addr}, a {role}")),
                    Err(e) => said.push(format!("{sentinel} named {addr}: {e}")),
                },
                Err(e) => said.push(format!("{sentinel}: {e}")),
            }
        }
        Err(Error::Backend(conveyor_core::BackendError::new(
            conveyor_core::BackendErrorKind::Unavailable,
            format!(
                "no Redis Sentinel named a primary for {:?} ({})",
                self.master,
                said.join("; ")
            ),
        )))
    }

    /// What the sentinel at `addr` names as the master's `HOST:PORT`.
    async fn ask(&self, addr: &str, tls: &RedisTls) -> Result<String, String> {
        let mut conn = connect(&self.sentinel_url(addr), tls).await?;
        let reply: Value = within(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async(&mut conn),
        )
        .await?;
        match reply {
            Value::Array(parts) => match parts.as_slice() {
                [host, port] => {
                    let text = |v: &Value| redis::from_redis_value_ref::<String>(v).ok();
                    match (text(host), text(port)) {
                        (Some(h), Some(p)) => Ok(format!("{h}:{p}")),
                        _ => Err(format!("an address that does not read: {parts:?}")),
                    }
                }
                _ => Err(format!("an address that does not read: {parts:?}")),
            },
            Value::Nil => Err(format!("no master named {:?}", self.master)),
            other => Err(format!("an answer that does not read: {other:?}")),
        }
    }
}

/// A connection to `url`, within [`ASK_WITHIN`].
async fn connect(url: &str, tls: &RedisTls) -> Result<MultiplexedConnection, String> {
    let client = crate::tls::client(url, tls).map_err(|e| e.to_string())?;
    within(client.get_multiplexed_async_connection()).await
}

/// `fut`'s result, or a timeout error after [`ASK_WITHIN`].
async fn within<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(ASK_WITHIN, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {ASK_WITHIN:?}")),
    }
}

/// The role the server at `url` says it has (`master`, `slave`, …).
pub(crate) async fn role(url: &str, tls: &RedisTls) -> Result<String, String> {
    let mut conn = connect(url, tls).await?;
    let reply: Vec<Value> = within(redis::cmd("ROLE").query_async(&mut conn)).await?;
    reply
        .first()
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .ok_or_else(|| "a ROLE answer that does not read".to_owned())
}

#[cfg(test)]
mod tests {
    use super::Sentinels;

    #[test]
    fn urls_taken_apart() {
        let s = Sentinels::parse(
            "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2?protocol=resp3&sentinel_password=sp",
        )
        .unwrap();
        assert_eq!(s.sentinels, ["127.0.0.1:26379", "127.0.0.1:26380"]);
        assert_eq!(s.master, "mymaster");
        assert_eq!(
            s.server_url("10.0.0.1:6379"),
            "redis://:pw@10.0.0.1:6379/2?protocol=resp3"
        );
        assert_eq!(s.sentinel_url("h:1"), "redis://:sp@h:1");
        let tls = Sentinels::parse("rediss+sentinel://h:1/m#insecure").unwrap();
        assert_eq!(tls.server_url("a:2"), "rediss://a:2/0#insecure");
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("redis+sentinel://h:1", "no master name"),
            ("redis+sentinel://h:1/", "no master name"),
            ("redis+sentinel://h/m", "not HOST:PORT"),
            ("redis+sentinel://h:1,/m", "not HOST:PORT"),
            ("redis+sentinel://h:1/m/x", "not a number"),
            ("redis+sentinel://h:1/m/0/x", "expected /MASTER"),
            (
                "redis+sentinel://h:1/m?sentinel_user=u",
                "needs sentinel_password",
            ),
            ("redis+sentinel://h:1/m?prefix=p", "prefix"),
        ] {
            let e = Sentinels::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
