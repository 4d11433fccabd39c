//! A Redis primary with replicas, watched by three sentinels, all of the
//! test's own on free loopback ports: what the Sentinel tests kill and see
//! replaced.
//!
//! The sentinels decide quickly, as loopback allows: a server that does not
//! answer for [`DOWN_AFTER`] is down, and two of the three agreeing start a
//! failover.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::process::Proc;
use crate::programs;
use crate::servers::{cli, free_port, temp_dir, TempRedis};
use crate::shared_store::SharedStore;

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "conveyor";

/// How long a server may not answer before a sentinel holds it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// How long the sentinels may take to agree and promote a replica.
const PROMOTED_WITHIN: Duration = Duration::from_secs(30);

/// One `redis-server --sentinel` with its configuration file (which it
/// rewrites as it learns).
#[derive(Debug)]
struct Sentinel {
    port: u16,
    _server: Proc,
}

/// A primary, its replicas and three sentinels.
#[derive(Debug)]
pub struct RedisSentinels {
    /// Every data server: the first is the primary at the start.
    pub servers: Vec<TempRedis>,
    sentinels: Vec<Sentinel>,
    dir: PathBuf,
    /// The port of the primary [`FaultCluster::kill_primary`] killed.
    ///
    /// [`FaultCluster::kill_primary`]: crate::faults::FaultCluster::kill_primary
    pub killed: Option<u16>,
}

impl RedisSentinels {
    /// Starts a primary, `replicas` replicas of it and three sentinels, and
    /// waits until every sentinel knows every replica and the other
    /// sentinels (so a failover can start as soon as the primary dies).
    pub fn start(replicas: usize) -> RedisSentinels {
        let primary = TempRedis::start();
        let mut servers: Vec<TempRedis> = (0..replicas)
            .map(|_| TempRedis::replica_of(&primary))
            .collect();
        for r in &servers {
            r.wait_linked();
        }
        servers.insert(0, primary);
        let dir = temp_dir("redis-sentinels");
        let sentinels = (0..3)
            .map(|i| Sentinel::start(&dir, i, servers[0].port()))
            .collect();
        let set = RedisSentinels {
            servers,
            sentinels,
            dir,
            killed: None,
        };
        set.wait_until_watched(replicas);
        set
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// A `redis+sentinel://` URL naming the three sentinels, database 0,
    /// with `query` (without its `?`) appended.
    pub fn url(&self, query: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let mut url = format!("redis+sentinel://{}/{MASTER}/0", hosts.join(","));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The port of the primary the first sentinel names.
    pub fn primary_port(&self) -> u16 {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", MASTER],
        );
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no primary named: {out:?}"))
    }

    /// The data server listening on `port`.
    pub fn server(&self, port: u16) -> &TempRedis {
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// The data server listening on `port`, to stop or start.
    pub fn server_mut(&mut self, port: u16) -> &mut TempRedis {
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Waits until every sentinel names a primary other than the server
    /// on `old` and that server says it is a master (blocking; panics
    /// after 30 s). Returns its port.
    pub fn wait_for_promotion(&self, old: u16) -> u16 {
        let deadline = Instant::now() + PROMOTED_WITHIN;
        loop {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    let out = cli(s.port, &["SENTINEL", "get-master-addr-by-name", MASTER]);
                    out.lines().nth(1).and_then(|p| p.trim().parse().ok())
                })
                .collect();
            if let Some(Some(new)) = named.first() {
                let agreed = named.iter().all(|n| *n == Some(*new));
                if agreed && *new != old && role(*new) == "master" {
                    return *new;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not promote a replica of port {old}: they name {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the server on `port` says its role is `role` (`master`,
    /// `slave`; blocking, panics after 30 s).
    pub fn wait_for_role(&self, port: u16, want: &str) {
        let deadline = Instant::now() + PROMOTED_WITHIN;
        while role(port) != want {
            assert!(
                Instant::now() < deadline,
                "the server on port {port} is still a {}, not a {want}",
                role(port)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the primary on `port` has a replica online (after a
    /// failover, the sentinels have pointed another replica at it and it
    /// has synced; blocking, panics after 30 s).
    pub fn wait_for_replica_of(&self, port: u16) {
        crate::servers::wait_for_replica_online(port, PROMOTED_WITHIN);
    }

    /// Asks the sentinels for a failover now, with the primary still
    /// running (it is demoted to a replica), and waits until it is done.
    /// Returns the new primary's port.
    pub fn fail_over(&self) -> u16 {
        let old = self.primary_port();
        let out = cli(self.sentinels[0].port, &["SENTINEL", "FAILOVER", MASTER]);
        assert_eq!(out, "OK", "SENTINEL FAILOVER");
        self.wait_for_promotion(old)
    }

    /// Waits until every sentinel sees `replicas` replicas up and the two
    /// other sentinels.
    fn wait_until_watched(&self, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in &self.sentinels {
            loop {
                let seen_replicas = flags(s.port, "replicas")
                    .iter()
                    .filter(|f| f.as_str() == "slave")
                    .count();
                let seen_sentinels = flags(s.port, "sentinels")
                    .iter()
                    .filter(|f| f.as_str() == "sentinel")
                    .count();
                if seen_replicas == replicas && seen_sentinels == self.sentinels.len() - 1 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel on port {} sees {seen_replicas} replicas and {seen_sentinels} \
                     sentinels",
                    s.port
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The `flags` of each entry `SENTINEL <what> MASTER` lists.
fn flags(port: u16, what: &str) -> Vec<String> {
    let out = cli(port, &["SENTINEL", what, MASTER]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "flags")
        .map(|w| w[1].to_owned())
        .collect()
}

/// The role the server on `port` says it has, or `down`.
fn role(port: u16) -> String {
    crate::servers::try_cli(port, &["ROLE"])
        .ok()
        .and_then(|o| o.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "down".into())
}

impl Sentinel {
    /// Starts sentinel `i` watching the primary on `primary`.
    fn start(dir: &std::path::Path, i: usize, primary: u16) -> Sentinel {
        let program = programs::REDIS_SERVER.require();
        let port = free_port();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        let down = DOWN_AFTER.as_millis();
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} {down}\n\
             sentinel failover-timeout {MASTER} 5000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir.display()
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let mut cmd = std::process::Command::new(program);
        cmd.arg(&conf).arg("--sentinel");
        let p = Proc::spawn(cmd).unwrap_or_else(|e| panic!("start a sentinel: {e}"));
        p.wait_for("+monitor", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the sentinel on port {port} did not start monitoring"));
        Sentinel { port, _server: p }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        // Sentinels first, so none reconfigures a server being stopped.
        self.sentinels.clear();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL ([`RedisSentinels::url`], with `query`) of the set a test
/// binary shares: a primary with one replica, started on first use,
/// stopped when the binary exits.
pub fn shared_url(query: &str) -> String {
    static SHARED: SharedStore<RedisSentinels> = SharedStore::new();
    extern "C" fn stop() {
        SHARED.stop(|set| {
            set.sentinels.clear();
            set.servers.clear();
            let _ = std::fs::remove_dir_all(&set.dir);
        });
    }
    SHARED.with(|| RedisSentinels::start(1), stop, |set| set.url(query))
}
