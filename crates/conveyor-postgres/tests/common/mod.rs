//! Shared by the integration tests: the server to use, a fresh schema per
//! test, and a backend that drops its schema when the test is done with it.
#![allow(dead_code)]

use std::sync::Arc;

use conveyor_core::Clock;
use conveyor_postgres::tokio_postgres::{self, NoTls};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::servers::TempPostgres;

/// The server the tests use: `CONVEYOR_POSTGRES_URL`, or the machine's own.
pub fn url() -> String {
    std::env::var("CONVEYOR_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_string())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("conveyor_test_{:016x}", fastrand::u64(..))
}

/// Drops `schema` on `url`, from a thread of its own (callable from `Drop`
/// inside or outside a runtime).
pub fn drop_schema(url: &str, schema: &str) {
    let url = url.to_string();
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, NoTls)
                .await
                .expect("connect to drop the test schema");
            tokio::spawn(conn);
            client
                .batch_execute(&sql)
                .await
                .expect("drop the test schema");
        });
    })
    .join();
    if done.is_err() {
        eprintln!("could not drop test schema {schema}");
    }
}

/// Drops its schema when dropped, even if the test panics.
pub struct SchemaGuard(pub String);

impl SchemaGuard {
    /// A fresh schema name, dropped at the end of the scope.
    pub fn fresh() -> SchemaGuard {
        SchemaGuard(fresh_schema())
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema(&url(), &self.0);
    }
}

/// A client of the test server, for tests that run their own SQL.
pub async fn client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A backend in a fresh schema that drops the schema when dropped.
#[derive(Debug)]
pub struct Scoped {
    pub backend: PostgresBackend,
    url: String,
}

impl Scoped {
    pub async fn new(clock: Arc<dyn Clock>) -> Scoped {
        let url = url();
        let backend = PostgresBackend::connect_with(&url, &fresh_schema(), clock)
            .await
            .expect("connect to the test server");
        Scoped { backend, url }
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        drop_schema(&self.url, self.backend.schema());
    }
}

/// PostgreSQL as the fault suite sees it: the shared server, or a private
/// cluster a case may stop and start (`tests/faults.rs`), or a primary and
/// standby the failover case brings (`tests/failover.rs`).
pub fn fault_target() -> FaultTarget {
    FaultTarget {
        name: "postgres",
        service: std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
        url: |addr, ns, private| {
            // The shared server's test database, or a private cluster's own.
            let db = if private { "postgres" } else { "test" };
            format!("postgres://postgres@{addr}/{db}?schema={ns}&connect_timeout=2")
        },
        scheme: conveyor_postgres::SCHEME,
        keeper: None,
        private_server: || Some(Box::new(TempPostgres::start())),
        lease: std::time::Duration::from_secs(2),
        forget,
        prefetch: false,
    }
}

/// Drops the case's schema on the shared server.
pub fn forget(ns: &str) {
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
