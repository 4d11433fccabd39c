//! A Redis Cluster of three primaries with a replica each, of the test's
//! own on free loopback ports: what the Cluster tests run on, kill a
//! primary of and see replaced.
//!
//! The nodes fail over quickly, as loopback allows: a primary that does not
//! answer for [`NODE_TIMEOUT`] is failed, and its replica takes its slots.

use std::time::{Duration, Instant};

use crate::servers::{try_cli, TempRedis};
use crate::shared_store::SharedStore;

/// How long a node may not answer before the cluster fails it over
/// (`--cluster-node-timeout`).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long forming the cluster, or a failover, may take.
const WITHIN: Duration = Duration::from_secs(60);

/// Six nodes: three primaries, each with one replica.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, in the order they were started.
    pub nodes: Vec<TempRedis>,
    /// The port of the primary [`FaultCluster::kill_primary`] killed.
    ///
    /// [`FaultCluster::kill_primary`]: crate::faults::FaultCluster::kill_primary
    pub killed: Option<u16>,
    /// The hash tag whose slot's primary the fault cases kill.
    pub tag: String,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    /// The id of its primary, for a replica.
    of: Option<String>,
    primary: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts six nodes, joins them into a cluster of three primaries with
    /// a replica each (`redis-cli --cluster create`), and waits until every
    /// node says the cluster is up and every primary has its replica linked.
    pub fn start() -> RedisCluster {
        let nodes: Vec<TempRedis> = (0..6)
            .map(|_| TempRedis::cluster_node(NODE_TIMEOUT))
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = try_cli(nodes[0].port(), &args).unwrap_or_else(|e| panic!("{e}"));
        assert!(said.contains("All 16384 slots covered"), "{said}");
        let cluster = RedisCluster {
            nodes,
            killed: None,
            tag: "fault".into(),
        };
        cluster.wait_until_whole();
        cluster
    }

    /// A `redis+cluster://` URL naming the three first nodes, with `query`
    /// (without its `?`) appended.
    pub fn url(&self, query: &str) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut url = format!("redis+cluster://{}", seeds.join(","));
        if !query.is_empty() {
            url.push_str("/?");
            url.push_str(query);
        }
        url
    }

    /// The node listening on `port`, to stop or start.
    pub fn node_mut(&mut self, port: u16) -> &mut TempRedis {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// The slot of keys with the hash tag `tag`.
    pub fn slot_of(&self, tag: &str) -> u16 {
        let said = self.ask(&["CLUSTER", "KEYSLOT", &format!("{{{tag}}}")]);
        said.trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT said {said:?}"))
    }

    /// The port of the primary serving the slot of `tag`, as a live node
    /// sees it.
    pub fn primary_of(&self, tag: &str) -> u16 {
        let slot = self.slot_of(tag);
        self.table()
            .into_iter()
            .find(|n| n.primary && !n.failed && n.serves(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The ports of the primaries serving slots now, as a live node sees
    /// them.
    pub fn primaries(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .table()
            .into_iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        out.sort_unstable();
        out
    }

    /// Waits until a node other than `old` serves the slot of `tag` as a
    /// primary and every live node says the cluster is up (blocking; panics
    /// after 60 s). Returns its port.
    pub fn wait_for_promotion(&self, tag: &str, old: u16) -> u16 {
        let deadline = Instant::now() + WITHIN;
        loop {
            let slot = self.slot_of(tag);
            let new = self
                .table()
                .into_iter()
                .find(|n| n.primary && !n.failed && n.serves(slot))
                .map(|n| n.port);
            if let Some(new) = new.filter(|p| *p != old) {
                if self.live_ports().iter().all(|p| state_ok(*p)) {
                    return new;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no replica took the slot {slot} of the primary on port {old}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let table = self.table();
        let id = table
            .iter()
            .find(|n| n.port == port)
            .map(|n| n.id.clone())
            .unwrap_or_else(|| panic!("no node on port {port}"));
        table
            .iter()
            .find(|n| n.of.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("the primary on port {port} has no replica"))
    }

    /// The node listening on `port`.
    pub fn node(&self, port: u16) -> &TempRedis {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Waits until the primary on `port` has a replica online (blocking;
    /// panics after 60 s).
    pub fn wait_for_replica_of(&self, port: u16) {
        crate::servers::wait_for_replica_online(port, WITHIN);
    }

    /// What the node on `port` answers to `args`, or why it did not
    /// (blocking).
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        try_cli(port, args)
    }

    /// What the first live node answers to `args` (panics when none
    /// answers).
    pub fn ask(&self, args: &[&str]) -> String {
        let mut said = Vec::new();
        for port in self.live_ports() {
            match try_cli(port, args) {
                Ok(out) => return out,
                Err(e) => said.push(e),
            }
        }
        panic!("no node answered {args:?}: {said:?}")
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(TempRedis::port)
            .filter(|p| Some(*p) != self.killed)
            .collect()
    }

    /// `CLUSTER NODES`, as a live node answers it.
    fn table(&self) -> Vec<NodeLine> {
        self.ask(&["CLUSTER", "NODES"])
            .lines()
            .filter_map(NodeLine::parse)
            .collect()
    }

    /// Waits until every node says `cluster_state:ok` and knows six nodes,
    /// and every primary has its replica online.
    fn wait_until_whole(&self) {
        let deadline = Instant::now() + WITHIN;
        loop {
            let whole = self.live_ports().iter().all(|p| {
                try_cli(*p, &["CLUSTER", "INFO"]).is_ok_and(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:6")
                })
            });
            if whole && self.primaries().len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in self.primaries() {
            self.wait_for_replica_of(p);
        }
    }
}

/// Whether the node on `port` says the cluster is up.
fn state_ok(port: u16) -> bool {
    try_cli(port, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
}

impl NodeLine {
    /// `<id> <ip:port@cport> <flags> <primary> <ping> <pong> <epoch> <link> <slot>…`
    fn parse(line: &str) -> Option<NodeLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let addr = fields.get(1)?;
        let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
        let flags = fields.get(2)?;
        let slots = fields
            .iter()
            .skip(8)
            .filter(|f| !f.starts_with('['))
            .filter_map(|f| match f.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => {
                    let s = f.parse().ok()?;
                    Some((s, s))
                }
            })
            .collect();
        Some(NodeLine {
            id: fields.first()?.to_string(),
            of: fields.get(3).filter(|m| **m != "-").map(|m| m.to_string()),
            port,
            primary: flags.contains("master"),
            failed: flags.contains("fail") && !flags.contains("fail?"),
            slots,
        })
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// What `f` reads of the cluster a test binary shares, started on first
/// use, stopped when the binary exits (blocking: call it off the async
/// runtime).
pub fn shared<R>(f: impl FnOnce(&RedisCluster) -> R) -> R {
    static SHARED: SharedStore<RedisCluster> = SharedStore::new();
    extern "C" fn stop() {
        SHARED.stop(|c| c.nodes.clear());
    }
    SHARED.with(RedisCluster::start, stop, f)
}

/// The URL ([`RedisCluster::url`], with `query`) of the cluster a test
/// binary shares ([`shared`]).
pub fn shared_url(query: &str) -> String {
    shared(|c| c.url(query))
}
