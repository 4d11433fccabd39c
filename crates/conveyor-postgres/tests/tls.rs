//! PostgreSQL over TLS, against private clusters this test starts: one with
//! `ssl = on` and a certificate from a throwaway CA, one without TLS.
//! `sslmode=require` and `verify-full` (with `sslrootcert`) connect, run a
//! task and are really encrypted (the server's `pg_stat_ssl` says so);
//! another CA is refused with a clear error; `require` against a server
//! without TLS fails clearly.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Finish, FinishAction, NewTask, ReserveParams, TaskState};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::certs::TestCerts;
use conveyor_testkit::servers::TempPostgres;

async fn run_a_task(url: &str) -> Result<(), conveyor_core::Error> {
    let b: Arc<dyn Backend> = Arc::new(PostgresBackend::connect(url).await?);
    let id = b.enqueue(NewTask::new("h", b"1".to_vec())).await?.id;
    let got = b
        .reserve(ReserveParams::new(
            &["default".to_string()],
            1,
            Duration::from_secs(30),
        ))
        .await?;
    assert_eq!(got.len(), 1);
    b.finish(vec![Finish::new(
        got[0].lease.clone(),
        FinishAction::Complete { result: None },
    )])
    .await?;
    let rec = b.get(id).await?.expect("present");
    assert_eq!(rec.state, TaskState::Completed);
    Ok(())
}

/// Connections to `pg` that use TLS right now, as the server sees them.
async fn encrypted_connections(pg: &TempPostgres) -> i64 {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("a plain connection to look");
    tokio::spawn(conn);
    client
        .query_one("SELECT count(*) FROM pg_stat_ssl WHERE ssl", &[])
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb and pg_ctl are not installed (Debian package postgresql)"
)]
async fn require_and_verify_full_connect_encrypted() {
    let certs = TestCerts::new("pg");
    let pg = TempPostgres::start_tls(&certs);
    let base = pg.url();
    run_a_task(&format!("{base}&sslmode=require"))
        .await
        .expect("sslmode=require");
    let full = format!(
        "{base}&sslmode=verify-full&sslrootcert={}",
        certs.ca().display()
    );
    let b = PostgresBackend::connect(&full).await.expect("verify-full");
    assert!(
        encrypted_connections(&pg).await >= 1,
        "the backend's pooled connection is encrypted"
    );
    drop(b);
    run_a_task(&full).await.expect("a task over verify-full");
    // The same URL through the scheme, as `conveyor --backend` opens it.
    conveyor_postgres::SCHEME
        .open(&format!("{full}&schema=through_the_scheme"))
        .await
        .expect("open by URL");
    let ca_only = format!(
        "{base}&sslmode=verify-ca&sslrootcert={}",
        certs.ca().display()
    );
    run_a_task(&ca_only).await.expect("verify-ca");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postgres),
    ignore = "initdb and pg_ctl are not installed (Debian package postgresql)"
)]
async fn another_ca_or_no_tls_server_is_refused_clearly() {
    let certs = TestCerts::new("pg-a");
    let other = TestCerts::new("pg-b");
    let pg = TempPostgres::start_tls(&certs);
    let wrong = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        pg.url(),
        other.ca().display()
    );
    let e = PostgresBackend::connect(&wrong)
        .await
        .expect_err("another CA");
    let text = format!("{e} {}", e.chain()).to_lowercase();
    assert!(
        text.contains("certificate"),
        "names the certificate: {text}"
    );
    let public = format!("{}&sslmode=verify-full", pg.url());
    let e = PostgresBackend::connect(&public)
        .await
        .expect_err("the public roots do not know a test CA");
    assert!(format!("{e} {}", e.chain())
        .to_lowercase()
        .contains("certificate"));
    let missing = format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        pg.url(),
        certs.dir().join("missing.pem").display()
    );
    let e = PostgresBackend::connect(&missing)
        .await
        .expect_err("missing CA");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = PostgresBackend::connect(&format!("{}&sslmode=sometimes", pg.url()))
        .await
        .expect_err("a bad sslmode");
    assert!(e.to_string().contains("sslmode=sometimes"), "{e}");

    let plain = TempPostgres::start();
    let e = PostgresBackend::connect(&format!("{}&sslmode=require", plain.url()))
        .await
        .expect_err("require against a server without TLS");
    let text = format!("{e} {}", e.chain()).to_lowercase();
    assert!(text.contains("tls") || text.contains("ssl"), "{text}");
    run_a_task(&format!("{}&sslmode=prefer", plain.url()))
        .await
        .expect("prefer falls back to plain");
}
