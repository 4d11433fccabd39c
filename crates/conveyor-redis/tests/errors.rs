//! Failures are classified: a Redis that cannot be reached is a transient
//! failure (a worker keeps trying), with the client's error as the source.

use std::sync::Arc;

use conveyor_core::{BackendErrorKind, Error, SystemClock};
use conveyor_redis::RedisBackend;

/// A loopback port where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure_with_its_cause() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let err = RedisBackend::connect_with(&url, "errors:", Arc::new(SystemClock))
        .await
        .expect_err("nothing listens there");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.backend_kind(), Some(BackendErrorKind::Unavailable));
    let Error::Backend(e) = &err else {
        panic!("a backend error: {err:?}")
    };
    assert!(
        std::error::Error::source(e).is_some(),
        "the client's error is kept"
    );
    let line = err.chain().to_string();
    assert!(line.starts_with("redis connect: "), "{line}");
}
