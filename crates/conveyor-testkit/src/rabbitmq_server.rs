//! A private RabbitMQ node for tests that must stop and start their broker, or
//! configure it (a short `consumer_timeout`): its own node name, ports, data
//! and log directories under a temporary directory, so killing it disturbs no
//! other test. Killed and removed on drop.
//!
//! Needs the `rabbitmq-server` package (its scripts in `/usr/lib/rabbitmq`);
//! [`TempRabbit::start`] panics without it (tests that need it are marked
//! ignored by the `has_rabbitmq_server` cfg flag on such a machine,
//! [`crate::programs`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;
use crate::programs::RABBITMQ_SERVER;
use crate::servers::{free_port, temp_dir};

/// A RabbitMQ node of a test's own (user guest/guest, vhost `/`).
#[derive(Debug)]
pub struct TempRabbit {
    dir: PathBuf,
    port: u16,
    dist_port: u16,
    program: PathBuf,
    server: Option<Proc>,
}

impl TempRabbit {
    /// Starts a node; `consumer_timeout` sets the server's delivery
    /// acknowledgement timeout. Panics when RabbitMQ is not installed.
    pub fn start(consumer_timeout: Option<Duration>) -> TempRabbit {
        let mut conf = String::new();
        if let Some(t) = consumer_timeout {
            conf.push_str(&format!("consumer_timeout = {}\n", t.as_millis()));
        }
        Self::start_with(free_port(), free_port(), &conf, None)
    }

    /// The Erlang node name of the node listening on `port`.
    pub fn node_name(port: u16) -> String {
        format!("conveyor-test-{port}@localhost")
    }

    /// Starts a node of a cluster on `port` (and `dist_port` for the
    /// cluster's own traffic) that finds its peers among `peers` (node
    /// names, itself included; classic peer discovery) and shares their
    /// Erlang `cookie`. The first node started forms the cluster; each
    /// later one joins it while booting.
    pub fn start_clustered(
        port: u16,
        dist_port: u16,
        peers: &[String],
        cookie: &str,
    ) -> TempRabbit {
        let mut conf = String::from("cluster_formation.peer_discovery_backend = classic_config\n");
        for (i, p) in peers.iter().enumerate() {
            conf.push_str(&format!(
                "cluster_formation.classic_config.nodes.{} = {p}\n",
                i + 1
            ));
        }
        Self::start_with(port, dist_port, &conf, Some(cookie))
    }

    fn start_with(port: u16, dist_port: u16, extra: &str, cookie: Option<&str>) -> TempRabbit {
        let program = RABBITMQ_SERVER.require();
        let dir = temp_dir("rabbit");
        let mut conf = format!("listeners.tcp.default = {port}\nloopback_users.guest = true\n");
        conf.push_str(extra);
        if let Some(cookie) = cookie {
            let path = dir.join(".erlang.cookie");
            std::fs::write(&path, cookie).expect("write the Erlang cookie");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
                .expect("the cookie's mode");
        }
        std::fs::write(dir.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        // Channels check the consumer timeout on their tick (a minute by
        // default): tick every second so a short timeout fires promptly.
        std::fs::write(
            dir.join("advanced.config"),
            "[{rabbit, [{channel_tick_interval, 1000}]}].\n",
        )
        .expect("write advanced.config");
        let mut r = TempRabbit {
            dir,
            port,
            dist_port,
            program,
            server: None,
        };
        r.restart();
        r
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// What `rabbitmqctl ARGS` prints about this node, or why it failed
    /// (blocking).
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let ctl = self.program.with_file_name("rabbitmqctl");
        let out = Command::new(&ctl)
            .env("HOME", &self.dir)
            .arg("-n")
            .arg(Self::node_name(self.port))
            .args(args)
            .output()
            .map_err(|e| format!("run {}: {e}", ctl.display()))?;
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(said)
        } else {
            Err(format!(
                "rabbitmqctl {args:?}: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Kills the node with SIGKILL (what it fsynced survives).
    pub fn kill(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the node's beam process, which we started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(mut p) = self.server.take() {
            p.kill9();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// Starts the node again (killing a running one first) on the same ports
    /// and data directory, and waits until it has booted.
    pub fn restart(&mut self) {
        self.kill();
        let d = &self.dir;
        let mut cmd = Command::new(&self.program);
        cmd.current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", Self::node_name(self.port))
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"));
        let p = Proc::spawn(cmd).unwrap_or_else(|e| panic!("start rabbitmq-server: {e}"));
        p.wait_for("completed with", Duration::from_secs(90))
            .unwrap_or_else(|| panic!("rabbitmq-server did not boot (logs in {})", d.display()));
        self.server = Some(p);
    }
}

impl Drop for TempRabbit {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
