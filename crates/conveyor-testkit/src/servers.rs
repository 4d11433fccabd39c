//! Private database servers for tests that must stop and start them: a
//! `redis-server` and a PostgreSQL cluster (initdb + pg_ctl), each in a
//! temporary directory on a free loopback port, so stopping one disturbs no
//! other test. Both are stopped and their directories removed on drop.
//!
//! Each panics, naming the program and its Debian package, when its programs
//! are missing: a test that needs one is marked ignored on such a machine by
//! its crate's `has_…` cfg flag ([`crate::programs`]), and fails under
//! `CI=true`, never passing without having run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;
use crate::programs;

/// A free loopback TCP port for a server of a test's own, outside the range
/// the system hands out to outgoing connections: a server a test stops and
/// starts again must find its port still free, and a port from that range
/// may be taken meanwhile by any connection the machine opens.
pub fn free_port() -> u16 {
    let (low, _) = ephemeral_range();
    // Below the ephemeral range, above the well-known and most registered
    // service ports; a few hundred tries find a free one.
    let lowest = 10_000u16.min(low.saturating_sub(1_000));
    let span = u32::from(low.saturating_sub(lowest).max(1));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    // Ports handed out before, in this process: a server not yet started
    // holds none, so two asked for at once (a node's port and its cluster
    // bus port, clusters started side by side) would otherwise collide.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for i in 0..500u32 {
        let offset = seed.wrapping_add(i.wrapping_mul(7_919)) % span;
        let port = lowest + u16::try_from(offset).unwrap_or(0);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    // Fall back to one the system picks.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The system's range of ports for outgoing connections (Linux; the usual
/// default elsewhere).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("conveyor-{tag}-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir {}: {e}", dir.display()));
    dir
}

/// A `redis-server` with an append-only file fsynced at every write, so data
/// survives a SIGKILL of the server.
#[derive(Debug)]
pub struct TempRedis {
    dir: PathBuf,
    port: u16,
    server: Option<Proc>,
    program: PathBuf,
    /// Certificate, key and CA files: the server speaks TLS only.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Further arguments (a replica's `--replicaof`).
    args: Vec<String>,
}

impl TempRedis {
    /// Starts a server (panics when `redis-server` is not installed).
    pub fn start() -> TempRedis {
        Self::start_with("redis", None, Vec::new())
    }

    /// Starts a server that speaks TLS only, with `certs`' server
    /// certificate (clients need no certificate).
    pub fn start_tls(certs: &crate::certs::TestCerts) -> TempRedis {
        let files = (certs.server_cert(), certs.server_key(), certs.ca());
        Self::start_with("redis-tls", Some(files), Vec::new())
    }

    /// Starts a node for a Redis Cluster (`--cluster-enabled`, its node
    /// file in its folder), failing over after `node_timeout`; not yet
    /// part of a cluster.
    pub fn cluster_node(node_timeout: Duration) -> TempRedis {
        // The bus port is the port + 10,000 unless named: name a free one.
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &node_timeout.as_millis().to_string(),
            "--cluster-port",
            &free_port().to_string(),
        ];
        Self::start_with("redis-cluster", None, args.map(String::from).to_vec())
    }

    /// Starts a replica of `primary` (asynchronous, as Redis replication
    /// is; it has the primary's data once [`TempRedis::caught_up`]).
    pub fn replica_of(primary: &TempRedis) -> TempRedis {
        let args = ["--replicaof", "127.0.0.1", &primary.port.to_string()];
        Self::start_with("redis-replica", None, args.map(String::from).to_vec())
    }

    fn start_with(
        name: &str,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        args: Vec<String>,
    ) -> TempRedis {
        let program = programs::REDIS_SERVER.require();
        let mut r = TempRedis {
            dir: temp_dir(name),
            port: free_port(),
            server: None,
            program,
            tls,
            args,
        };
        r.restart();
        r
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL (what was fsynced survives).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.kill9();
        }
    }

    /// Starts the server again (killing a running one first) on the same port
    /// and directory, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new(&self.program);
        match &self.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some((cert, key, ca)) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args);
        let p = Proc::spawn(cmd).unwrap_or_else(|e| panic!("start redis-server: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match p.next_line(left) {
                Some(line) if line.contains("Ready to accept connections") => break,
                Some(line) => said.push(line),
                None => panic!(
                    "redis-server on port {} did not become ready; it said:\n{}",
                    self.port,
                    said.join("\n")
                ),
            }
        }
        self.server = Some(p);
    }
}

impl TempRedis {
    /// What `redis-cli` prints for `args` on this server, one reply
    /// element per line (blocking; panics when it cannot run; a plain
    /// server only).
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Waits until this replica's link to its primary is up (its first
    /// copy taken; blocking, at most 30 s).
    pub fn wait_linked(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica on port {} did not link to its primary",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the replica `replica` has everything this server wrote
    /// so far (blocking; at most 30 s).
    pub fn caught_up(&self, replica: &TempRedis) {
        let offset = |r: &TempRedis, field: &str| -> u64 {
            let info = r.cli(&["INFO", "replication"]);
            info.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(field)?
                        .strip_prefix(':')?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        let want = offset(self, "master_repl_offset");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while offset(replica, "slave_repl_offset") < want {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica on port {} did not catch up to offset {want}",
                replica.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pauses the server (SIGSTOP): it neither answers nor replicates
    /// until [`TempRedis::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        if let Some(p) = &self.server {
            p.signal(sig);
        }
    }
}

/// Waits until the Redis primary on `port` has a replica online, at most
/// `within` (blocking; panics then).
pub(crate) fn wait_for_replica_online(port: u16, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let info = try_cli(port, &["INFO", "replication"]).unwrap_or_default();
        if info
            .lines()
            .any(|l| l.starts_with("slave") && l.contains("state=online"))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no replica came online for the primary on port {port}: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `redis-cli` prints for `args` on the loopback `port` (blocking;
/// panics when it cannot run or the server does not answer).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|e| panic!("{e}"))
}

/// What `redis-cli` prints for `args` on the loopback `port`, or why it
/// failed (a server down, a refused command; blocking).
pub(crate) fn try_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let program = programs::REDIS_CLI.require();
    let out = Command::new(program)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .output()
        .map_err(|e| format!("run redis-cli: {e}"))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // redis-cli exits 0 when the server answers with an error.
    if !out.status.success() || said.starts_with("ERR") || said.starts_with("Could not connect") {
        return Err(format!(
            "redis-cli {args:?} on port {port}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(said)
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway PostgreSQL cluster (trust authentication, user `postgres`).
#[derive(Debug)]
pub struct TempPostgres {
    dir: PathBuf,
    port: u16,
    /// (uid, gid) of `postgres` when the test runs as root, which PostgreSQL refuses.
    run_as: Option<(u32, u32)>,
    pg_ctl: PathBuf,
    /// Server certificate and key (copies the server user owns): TLS on.
    ssl: Option<(PathBuf, PathBuf)>,
}

/// Panics, with what it printed, when the program `what` failed.
#[track_caller]
fn succeeded(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(user).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

impl TempPostgres {
    /// Creates and starts a cluster (panics when initdb or pg_ctl is missing).
    pub fn start() -> TempPostgres {
        Self::start_with(None)
    }

    /// Creates and starts a cluster with `ssl = on` and `certs`' server
    /// certificate (clients may still connect without TLS).
    pub fn start_tls(certs: &crate::certs::TestCerts) -> TempPostgres {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&crate::certs::TestCerts>) -> TempPostgres {
        let initdb = programs::INITDB.require();
        let pg = Self::fresh(certs);
        let out = pg
            .command(&initdb)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(pg.data())
            .output()
            .expect("run initdb");
        succeeded(&out, "initdb");
        pg.start_server();
        pg
    }

    /// A streaming standby of `primary` (a `pg_basebackup -R` copy of it,
    /// started), on a port of its own. Asynchronous unless
    /// [`TempPostgres::wait_for_standbys`] is called on the primary.
    pub fn standby_of(primary: &TempPostgres) -> TempPostgres {
        let basebackup = programs::PG_BASEBACKUP.require();
        let pg = Self::fresh(None);
        let out = pg
            .command(&basebackup)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
            .args(["--no-sync", "-c", "fast", "-p"])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(pg.data())
            .output()
            .expect("run pg_basebackup");
        succeeded(&out, "pg_basebackup");
        pg.start_server();
        pg
    }

    /// Makes every commit wait until a standby has the commit on disk
    /// (`synchronous_standby_names = '*'`, `synchronous_commit = on`), so
    /// whatever was acknowledged survives a failover to the standby. Set
    /// after the standby's copy was taken, so the standby does not wait
    /// for standbys of its own once promoted.
    pub fn wait_for_standbys(&self) {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(conf, "synchronous_standby_names = '*'").expect("write postgresql.conf");
        let out = self.pg_ctl(&["reload"]);
        succeeded(&out, "pg_ctl reload");
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting until it
    /// takes writes).
    pub fn promote(&self) {
        let out = self.pg_ctl(&["promote"]);
        succeeded(&out, "pg_ctl promote");
    }

    /// A new, empty cluster directory (owned by `postgres` when the test
    /// runs as root) on a free port, with `certs`' server certificate.
    fn fresh(certs: Option<&crate::certs::TestCerts>) -> TempPostgres {
        let pg_ctl = programs::PG_CTL.require();
        let dir = temp_dir("pg");
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = if root {
            let uid = id_of("postgres", "-u").expect("running as root needs a 'postgres' user");
            let gid = id_of("postgres", "-g").expect("its group");
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown temp dir");
            Some((uid, gid))
        } else {
            None
        };
        let ssl = certs.map(|c| {
            // The server refuses a key others can read, or one it does not own.
            let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
            std::fs::copy(c.server_cert(), &cert).expect("copy the certificate");
            std::fs::copy(c.server_key(), &key).expect("copy the key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the key");
            if let Some((uid, gid)) = run_as {
                for f in [&cert, &key] {
                    std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown");
                }
            }
            (cert, key)
        });
        TempPostgres {
            dir,
            port: free_port(),
            run_as,
            pg_ctl,
            ssl,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        self.command(&self.pg_ctl)
            .arg("-D")
            .arg(self.data())
            .arg("-w")
            .args(args)
            .output()
            .expect("run pg_ctl")
    }

    /// Starts the server (on the same port and data directory as before).
    pub fn start_server(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        if let Some((cert, key)) = &self.ssl {
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
        }
        let log = self.dir.join("server.log");
        let log = log.to_string_lossy();
        let out = self.pg_ctl(&["-l", &log, "-o", &opts, "start"]);
        succeeded(&out, "pg_ctl start");
    }

    /// Stops the server at once (`-m immediate`: no checkpoint, crash
    /// recovery at the next start).
    pub fn stop_server(&self) {
        let out = self.pg_ctl(&["-m", "immediate", "stop"]);
        succeeded(&out, "pg_ctl stop");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What `sql` returns, as `psql` prints it unaligned (blocking; panics
    /// when it fails).
    pub fn query(&self, sql: &str) -> String {
        let psql = programs::PSQL.require();
        let out = Command::new(psql)
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{sql} on port {}: {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A `postgres://` URL for database `postgres` with a 2 s connect timeout.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            self.port
        )
    }

    /// Stops the server and removes its directory (what dropping it does,
    /// for one held in a `static`).
    pub fn remove(&self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.remove();
    }
}
