//! The fault suite (`conveyor_testkit::backend_faults!`) on PostgreSQL: a
//! private cluster stopped and started mid-run, and the shared server behind
//! a fault-injecting proxy (black-holed, slowed, connections cut).

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::servers::TempPostgres;

fn target() -> FaultTarget {
    FaultTarget {
        name: "postgres",
        service: SocketAddr::from(([127, 0, 0, 1], 5432)),
        url: |addr, ns, private| {
            // The shared server's test database, or a private cluster's own.
            let db = if private { "postgres" } else { "test" };
            format!("postgres://postgres@{addr}/{db}?schema={ns}&connect_timeout=2")
        },
        scheme: conveyor_postgres::SCHEME,
        keeper: None,
        private_server: || Some(Box::new(TempPostgres::start())),
        lease: Duration::from_secs(2),
        forget,
        prefetch: false,
    }
}

/// Drops the case's schema on the shared server.
fn forget(ns: &str) {
    let ns = ns.to_string();
    conveyor_testkit::faults::block_on(async move {
        let b =
            conveyor_postgres::PostgresBackend::builder("postgres://postgres@127.0.0.1:5432/test")
                .schema(&ns)
                .migrate(false)
                .connect()
                .await
                .expect("connect to clean up");
        b.drop_schema().await.expect("drop the case's schema");
    });
}

conveyor_testkit::backend_faults!(target();
    private_server: has_postgres, "initdb and pg_ctl are not installed (Debian package postgresql)"; workflows, schedules);
