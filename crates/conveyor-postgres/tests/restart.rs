//! A backend survives a PostgreSQL restart: calls fail with `Error::Backend`
//! while the server is down (without hanging) and succeed again once it is
//! back, with nothing acknowledged lost. The test runs its own server (initdb
//! and pg_ctl in a temporary directory, on a free loopback port), so stopping it
//! disturbs nobody.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask};
use conveyor_postgres::PostgresBackend;

/// A throwaway PostgreSQL cluster, stopped and removed when dropped.
struct TempServer {
    dir: PathBuf,
    port: u16,
    /// The (uid, gid) to run the server as when the test runs as root, which
    /// PostgreSQL refuses.
    run_as: Option<(u32, u32)>,
}

fn tool(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let p = Path::new("/usr/local/bin").join(name);
        p.is_file().then_some(p)
    })
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(user).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

impl TempServer {
    /// Creates and starts a cluster; `None` (after saying why) when initdb is
    /// missing.
    fn start() -> Option<TempServer> {
        let Some(initdb) = tool("initdb") else {
            println!(
                "SKIPPED survives_a_server_restart: initdb not found in PATH or /usr/local/bin"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("conveyor-pg-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let run_as = if is_root() {
            let uid = id_of("postgres", "-u").expect("running as root needs a 'postgres' user");
            let gid = id_of("postgres", "-g").expect("its group");
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown temp dir");
            Some((uid, gid))
        } else {
            None
        };
        let server = TempServer { dir, port, run_as };
        let status = server
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
            .arg(server.data())
            .output()
            .expect("run initdb");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        server.pg_ctl("start");
        Some(server)
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

    fn pg_ctl(&self, action: &str) {
        let pg_ctl = tool("pg_ctl").expect("pg_ctl beside initdb");
        let mut cmd = self.command(&pg_ctl);
        cmd.arg("-D").arg(self.data()).arg("-w");
        match action {
            "start" => {
                cmd.arg("-l")
                    .arg(self.dir.join("server.log"))
                    .arg("-o")
                    .arg(format!(
                        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                        self.port,
                        self.dir.display()
                    ));
            }
            _ => {
                cmd.args(["-m", "fast"]);
            }
        }
        let out = cmd.arg(action).output().expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
            self.port
        )
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        if let Some(pg_ctl) = tool("pg_ctl") {
            let _ = self
                .command(&pg_ctl)
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn queues() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_server_restart() {
    let Some(server) = tokio::task::spawn_blocking(TempServer::start)
        .await
        .expect("start server")
    else {
        return;
    };
    let server = Arc::new(server);
    let b = PostgresBackend::builder(&server.url())
        .schema("conveyor_restart")
        .pool_size(3)
        .connect()
        .await
        .expect("connect");
    let before = b
        .enqueue_many(vec![
            NewTask::new("a", Vec::new()),
            NewTask::new("b", Vec::new()),
        ])
        .await
        .expect("enqueue");
    // Start the notification listener too, so its reconnect is exercised.
    b.wait_for_work(&queues(), Duration::from_millis(200)).await;

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.pg_ctl("stop"))
        .await
        .expect("stop");
    for _ in 0..3 {
        let began = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            b.reserve(&queues(), 10, Duration::from_secs(30)),
        )
        .await
        .expect("a call while the server is down returns instead of hanging");
        assert!(matches!(r, Err(Error::Backend(_))), "{r:?}");
        assert!(began.elapsed() < Duration::from_secs(30));
    }
    let down = b.enqueue(NewTask::new("c", Vec::new())).await;
    assert!(matches!(down, Err(Error::Backend(_))));

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.pg_ctl("start"))
        .await
        .expect("start again");
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match b.reserve(&queues(), 10, Duration::from_secs(30)).await {
            Ok(got) => break got,
            Err(Error::Backend(e)) => {
                assert!(Instant::now() < deadline, "no recovery after restart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    let got_ids: Vec<_> = got.iter().map(|r| r.lease.id).collect();
    assert_eq!(
        got_ids,
        before.iter().map(|e| e.id).collect::<Vec<_>>(),
        "tasks enqueued before the restart are all there"
    );
    // Every kind of call works again.
    let reports = got
        .iter()
        .map(|r| Finish {
            lease: r.lease,
            action: FinishAction::Complete { result: None },
        })
        .collect();
    for r in b.finish(reports).await.expect("finish") {
        r.expect("held");
    }
    let c = b
        .enqueue(NewTask::new("c", Vec::new()))
        .await
        .expect("enqueue");
    assert!(b.get(c.id).await.expect("get").is_some());
    b.stats().await.expect("stats");
    drop(b);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("clean up");
}
