//! Failures are classified: a server that cannot be reached is transient,
//! the driver's error kept as the source (not flattened into text).

use conveyor_core::{BackendErrorKind, Error};
use conveyor_postgres::PostgresBackend;

/// A loopback port where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure_with_its_cause() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?connect_timeout=2",
        closed_port()
    );
    let err = PostgresBackend::connect(&url)
        .await
        .expect_err("nothing listens there");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(
            err.backend_kind(),
            Some(BackendErrorKind::Unavailable | BackendErrorKind::Timeout)
        ),
        "{err:?}"
    );
    let Error::Backend(e) = &err else {
        panic!("a backend error: {err:?}")
    };
    assert!(
        std::error::Error::source(e).is_some(),
        "the driver's error is kept"
    );
}

#[tokio::test]
async fn a_missing_database_is_not_transient() {
    let err = PostgresBackend::connect("postgres://postgres@127.0.0.1/conveyor_no_such_db")
        .await
        .expect_err("no such database");
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Config),
        "{err:?}"
    );
}
