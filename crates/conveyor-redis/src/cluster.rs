//! Redis Cluster: one namespace is one hash slot, and every call goes to
//! the primary that serves it.
//!
//! The URL names some of the cluster's nodes (seeds; the client learns the
//! rest from them): `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]`
//! (`rediss+cluster://` for TLS), with `?prefix={TAG}:…`. The prefix must
//! hold a hash tag (`{…}`, not empty): Redis Cluster then places every key
//! of the namespace in the tag's slot, so every script touches one slot of
//! one node and stays atomic, as on one server. A prefix without a tag is
//! refused when connecting, with an error saying so: its keys would spread
//! over the slots, and a script would fail only when a key landed on
//! another node.
//!
//! Calls go to the slot's primary (`route_command` to the slot), a pipeline
//! with its `WAIT` as one. The driver follows `MOVED` and `ASK` answers and
//! reads the slot map again after a failure, so a failover (a replica
//! promoted by the cluster) or a slot moved by resharding is followed. Scale
//! out by giving deployments (or queues of one deployment's work) their own
//! namespaces with different tags: each tag's slot lives on one primary, and
//! the namespaces spread over the primaries.
//!
//! Pub/sub messages (`PUBLISH` inside the scripts) travel the cluster bus to
//! every node, so the wake-up subscriber listens on any seed that answers,
//! the next one after a failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conveyor_core::{BackendUrl, Error};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisResult, Value};

use crate::host_list::{has_scheme, HostList};
use crate::reply::redis_error;
use crate::RedisTls;

/// The scheme names of a Cluster URL.
pub(crate) const SCHEMES: &[&str] = &["redis+cluster", "rediss+cluster"];

/// Whether `url` is a Cluster URL (by its scheme).
pub(crate) fn is_cluster(url: &str) -> bool {
    has_scheme(url, SCHEMES)
}

/// The hash tag of `key` as Redis Cluster reads it: between the first `{`
/// and the next `}`, when that is not empty.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// A Cluster URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seeds {
    /// The driver's URL of each seed node, in the URL's order.
    pub(crate) nodes: Vec<String>,
}

impl Seeds {
    /// Takes `url` apart; [`Error::InvalidConfig`] saying what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidConfig(format!("bad Redis Cluster URL {url:?}: {why}"));
        let mut parsed = BackendUrl::parse_as(url, SCHEMES)?;
        let protocol = parsed.take("protocol")?;
        parsed.allow_only(&["protocol"])?;
        let list = HostList::parse(url, &parsed, "node", bad)?;
        if !matches!(list.path.as_str(), "" | "0") {
            return Err(bad("a cluster has one database, 0: leave the path empty"));
        }
        let query = protocol
            .map(|p| format!("?protocol={p}"))
            .unwrap_or_default();
        let HostList {
            scheme,
            auth,
            fragment,
            ..
        } = &list;
        let nodes = list
            .hosts
            .iter()
            .map(|host| format!("{scheme}://{auth}{host}/0{query}{fragment}"))
            .collect();
        Ok(Self { nodes })
    }
}

/// The connection to the primary of one namespace's slot.
#[derive(Clone)]
pub(crate) struct SlotLink {
    conn: ClusterConnection,
    route: Route,
    /// A client per seed, for connections of their own (the subscriber).
    seeds: std::sync::Arc<(Vec<redis::Client>, AtomicUsize)>,
}

impl SlotLink {
    /// Connects to the cluster the seeds of `url` belong to, for the
    /// namespace `prefix` (which must hold a hash tag).
    pub(crate) async fn connect(
        url: &str,
        tls: &RedisTls,
        prefix: &str,
        connect_within: Duration,
        answer_within: Duration,
    ) -> Result<Self, Error> {
        let seeds = Seeds::parse(url)?;
        if hash_tag(prefix).is_none() {
            return Err(Error::InvalidConfig(format!(
                "the Redis Cluster prefix {prefix:?} holds no hash tag: write it as \
                 prefix={{NAME}}: so every key of the namespace is in one slot (the \
                 scripts need that); give each namespace its own NAME to spread them over \
                 the primaries"
            )));
        }
        crate::tls::provider();
        let mut builder = ClusterClientBuilder::new(seeds.nodes.clone())
            .connection_timeout(connect_within)
            .response_timeout(answer_within);
        if let Some(certs) = crate::tls::certificates(url, tls)? {
            builder = builder.certs(certs);
        }
        let client = builder
            .build()
            .map_err(|e| Error::InvalidConfig(format!("bad Redis Cluster URL {url:?}: {e}")))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| redis_error("connect to the cluster", e))?;
        let clients = seeds
            .nodes
            .iter()
            .map(|n| crate::tls::client(n, tls))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conn,
            route: Route::with_key(prefix, SlotAddr::Master),
            seeds: std::sync::Arc::new((clients, AtomicUsize::new(0))),
        })
    }

    /// A client for the next seed (each call the next one), for a
    /// connection of its own.
    pub(crate) fn client(&self) -> redis::Client {
        let (clients, next) = &*self.seeds;
        let i = next.fetch_add(1, Ordering::Relaxed) % clients.len();
        clients[i].clone()
    }

    fn to_slot(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::SpecificNode(self.route)
    }

    /// Sends `cmd` to the slot's primary.
    pub(crate) async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let to = RoutingInfo::SingleNode(self.to_slot());
        self.conn.route_command(cmd.clone(), to).await
    }

    /// Sends `pipeline` to the slot's primary, as one.
    pub(crate) async fn pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let to = self.to_slot();
        self.conn
            .route_pipeline(pipeline.clone(), offset, count, to)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_the_cluster_reads_them() {
        assert_eq!(hash_tag("{jobs}:"), Some("jobs"));
        assert_eq!(hash_tag("app:{jobs}:"), Some("jobs"));
        assert_eq!(hash_tag("{a}{b}"), Some("a"));
        assert_eq!(hash_tag("{}jobs"), None);
        assert_eq!(hash_tag("{jobs"), None);
        assert_eq!(hash_tag("jobs:"), None);
        // Redis Cluster hashes the whole key when the first `{` is
        // followed at once by `}`: no tag.
        assert_eq!(hash_tag("{}{jobs}"), None);
    }

    #[test]
    fn seeds() {
        let s = Seeds::parse("redis+cluster://u:p@a:1,b:2/?protocol=resp3").expect("url");
        assert_eq!(
            s.nodes,
            [
                "redis://u:p@a:1/0?protocol=resp3",
                "redis://u:p@b:2/0?protocol=resp3"
            ]
        );
        let s = Seeds::parse("rediss+cluster://a:1#insecure").expect("url");
        assert_eq!(s.nodes, ["rediss://a:1/0#insecure"]);
        for bad in [
            "redis+cluster://a:1/3",
            "redis+cluster://a,b:2",
            "redis+cluster://:1",
            "redis+cluster://a:1?x=1",
        ] {
            assert!(
                matches!(Seeds::parse(bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
