//! Three `nats-server -js` of a test's own in one cluster, on free loopback
//! ports: what the NATS failover tests kill a stream leader of. The servers
//! are 2.10 ([`NATS_SERVER_CLUSTER`](crate::programs::NATS_SERVER_CLUSTER)):
//! on 2.9 clusters conveyor refuses replicated namespaces.
//!
//! Who leads what is read from each server's monitoring endpoint (`/jsz`):
//! the JetStream meta leader, and each stream's leader among its replicas.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::nats_server::TempNats;
use crate::servers::free_port;
use crate::shared_store::SharedStore;

/// The cluster's name.
const CLUSTER: &str = "conveyor";

/// How long the servers may take to elect a leader.
const ELECTED_WITHIN: Duration = Duration::from_secs(60);

/// One member: its server and its monitoring port.
#[derive(Debug)]
struct Member {
    server: TempNats,
    monitor: u16,
    name: String,
}

/// Three clustered JetStream servers.
#[derive(Debug)]
pub struct NatsCluster {
    members: Vec<Member>,
    /// The member [`FaultCluster::kill_primary`] killed.
    ///
    /// [`FaultCluster::kill_primary`]: crate::faults::FaultCluster::kill_primary
    pub killed: Option<usize>,
}

impl NatsCluster {
    /// Starts three servers routed to each other and waits until they
    /// have elected a JetStream meta leader.
    pub fn start() -> NatsCluster {
        let program = crate::programs::NATS_SERVER_CLUSTER.require();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all_routes = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = (0..3)
            .map(|i| {
                let name = format!("n{i}");
                let monitor = free_port();
                let args = [
                    "-n",
                    &name,
                    "--cluster_name",
                    CLUSTER,
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes",
                    &all_routes,
                    "-m",
                    &monitor.to_string(),
                ];
                let server = TempNats::start_with(
                    program.clone(),
                    free_port(),
                    args.map(String::from).to_vec(),
                );
                Member {
                    server,
                    monitor,
                    name,
                }
            })
            .collect();
        let cluster = NatsCluster {
            members,
            killed: None,
        };
        cluster.wait_for_leaders(None);
        cluster
    }

    /// A `nats://` URL naming the three servers, with `query` (without its
    /// `?`) appended.
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.server.port()))
            .collect();
        let mut url = format!("nats://{}", hosts.join(","));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The members still running.
    fn live(&self) -> impl Iterator<Item = (usize, &Member)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.killed)
    }

    /// What a live member's `/jsz` says of the meta leader and of each
    /// stream's leader, then each durable consumer's (named
    /// `STREAM/CONSUMER`; `None` while unknown). A worker's fetch waits
    /// for its consumer's leader as well as its stream's.
    fn leaders(&self) -> Option<(String, Vec<(String, String)>)> {
        let (_, m) = self.live().next()?;
        let jsz = http_get(m.monitor, "/jsz?accounts=true&streams=true&consumers=true")?;
        let v: serde_json::Value = serde_json::from_str(&jsz).ok()?;
        let meta = v["meta_cluster"]["leader"].as_str()?.to_owned();
        let mut streams = Vec::new();
        let mut consumers = Vec::new();
        for account in v["account_details"].as_array().into_iter().flatten() {
            for s in account["stream_detail"].as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap_or("").to_owned();
                let leader = s["cluster"]["leader"].as_str().unwrap_or("").to_owned();
                for c in s["consumer_detail"].as_array().into_iter().flatten() {
                    if c["config"]["durable_name"].as_str().is_some() {
                        let leader = c["cluster"]["leader"].as_str().unwrap_or("").to_owned();
                        let consumer = c["name"].as_str().unwrap_or("");
                        consumers.push((format!("{name}/{consumer}"), leader));
                    }
                }
                streams.push((name, leader));
            }
        }
        streams.extend(consumers);
        Some((meta, streams))
    }

    /// Waits until the meta leader and every stream's and durable
    /// consumer's leader is a live member other than `not` (blocking;
    /// panics after 60 s).
    fn wait_for_leaders(&self, not: Option<&str>) {
        let deadline = Instant::now() + ELECTED_WITHIN;
        let live: Vec<&str> = self.live().map(|(_, m)| m.name.as_str()).collect();
        let ok = |l: &str| live.contains(&l) && Some(l) != not;
        loop {
            let now = self.leaders();
            if let Some((meta, streams)) = &now {
                if ok(meta) && streams.iter().all(|(_, l)| ok(l)) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leaders elected among {live:?}: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the member leading the stream whose name ends with `suffix`
    /// (the first such stream), with SIGKILL. Returns its name.
    pub fn kill_leader_of(&mut self, suffix: &str) -> String {
        let (_, streams) = self.leaders().expect("the cluster answers");
        let leader = streams
            .iter()
            .find(|(s, _)| s.ends_with(suffix))
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| panic!("no stream ending {suffix:?}: {streams:?}"));
        let i = self
            .members
            .iter()
            .position(|m| m.name == leader)
            .unwrap_or_else(|| panic!("leader {leader:?} is not a member"));
        self.members[i].server.kill();
        self.killed = Some(i);
        leader
    }

    /// Waits until every stream has a leader again, on a live member.
    pub fn wait_for_new_leaders(&self) {
        let killed = self.killed.map(|i| self.members[i].name.clone());
        self.wait_for_leaders(killed.as_deref());
    }
}

/// The body of `GET path` on the loopback `port`, or `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The URL ([`NatsCluster::url`], with `query`) of the cluster a test
/// binary shares: started on first use, its servers stopped and their
/// folders removed when the binary exits.
pub fn shared_url(query: &str) -> String {
    static SHARED: SharedStore<NatsCluster> = SharedStore::new();
    extern "C" fn stop() {
        SHARED.stop(|c| c.members.clear());
    }
    SHARED.with(NatsCluster::start, stop, |c| c.url(query))
}
