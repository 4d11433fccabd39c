//! Opening the backend from a URL through its scheme, on the machine's
//! PostgreSQL: the `schema` parameter picks the schema (migrated on connect)
//! and the driver's own parameters still reach it.

mod common;

use conveyor_core::NewTask;

/// The test server as a URL (the scheme takes URLs, not key=value strings).
fn server_url() -> String {
    let url = common::url();
    if url.starts_with("postgres") {
        url
    } else {
        "postgres://postgres@127.0.0.1:5432/test".to_string()
    }
}

#[tokio::test]
async fn the_url_schema_holds_the_tables() {
    let guard = common::SchemaGuard::fresh();
    let url = format!(
        "{}?sslmode=disable&schema={}&connect_timeout=3",
        server_url(),
        guard.0
    );
    let backend = conveyor_postgres::SCHEME
        .open(&url)
        .await
        .expect("connects");
    assert_eq!(backend.kind(), "postgres");
    backend
        .enqueue(NewTask::new("email", b"{}".to_vec()))
        .await
        .expect("enqueue");
    let row = common::client()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&guard.0],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(backend);
}
