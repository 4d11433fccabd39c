//! Shared by the integration tests: the server to use, a fresh schema per
//! test, and a backend that drops its schema when the test is done with it.
#![allow(dead_code)]

use std::sync::Arc;

use conveyor_core::Clock;
use conveyor_postgres::tokio_postgres::{self, NoTls};
use conveyor_postgres::PostgresBackend;

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
