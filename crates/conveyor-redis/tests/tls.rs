//! `rediss://` against a `redis-server` this test starts with TLS only and a
//! certificate from a throwaway CA: verified against that CA (`?ca=`) a task
//! goes through and its result wait works; the public roots, or another CA,
//! refuse the server with a clear error; `#insecure` encrypts without
//! verifying.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Finish, FinishAction, NewTask, ReserveParams, SystemClock, TaskState,
};
use conveyor_redis::{RedisBackend, RedisTls};
use conveyor_testkit::certs::TestCerts;
use conveyor_testkit::servers::TempRedis;

async fn connect(url: &str, ca: Option<&TestCerts>) -> Result<RedisBackend, conveyor_core::Error> {
    let tls = RedisTls {
        ca: ca.map(|c| c.ca()),
        client: None,
    };
    RedisBackend::connect_tls(url, "tls-test:", Arc::new(SystemClock), &tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn rediss_with_our_ca_runs_a_task() {
    let certs = TestCerts::new("redis");
    let server = TempRedis::start_tls(&certs);
    let url = server.url();
    assert!(url.starts_with("rediss://"));
    let b: Arc<dyn Backend> = Arc::new(connect(&url, Some(&certs)).await.expect("TLS connect"));
    let id = b
        .enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .expect("enqueue")
        .id;
    let got = b
        .reserve(ReserveParams::new(
            &["default".to_string()],
            1,
            Duration::from_secs(30),
        ))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    let done = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete {
                result: Some(b"2".to_vec()),
            },
        )])
        .await
        .expect("finish");
    assert!(done[0].is_ok());
    let rec = b.get(id).await.expect("get").expect("present");
    assert_eq!(
        (rec.state, rec.result),
        (TaskState::Completed, Some(b"2".to_vec()))
    );
    // The result-wait channel (pub/sub) goes through TLS too.
    let store = b.result_store().expect("results");
    let mark = store.finish_mark().await;
    assert!(mark.is_some(), "the pub/sub listener connected over TLS");
    // The same through the URL parameter, as `conveyor --backend` takes it.
    let with_param = format!("{url}?ca={}&prefix=tls-url:", certs.ca().display());
    let b2 = conveyor_redis::SCHEME
        .open(&with_param)
        .await
        .expect("open by URL");
    b2.enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .expect("enqueue by URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (Debian package redis-server)"
)]
async fn an_unknown_ca_is_refused_clearly_and_insecure_skips_the_check() {
    let certs = TestCerts::new("redis-a");
    let other = TestCerts::new("redis-b");
    let server = TempRedis::start_tls(&certs);
    let url = server.url();
    for (what, ca) in [("the public roots", None), ("another CA", Some(&other))] {
        let e = connect(&url, ca).await.expect_err(what);
        let text = format!("{e} {}", e.chain());
        assert!(
            text.to_lowercase().contains("certificate"),
            "{what}: the error names the certificate: {text}"
        );
    }
    let insecure = format!("{url}#insecure");
    let b = connect(&insecure, None).await.expect("#insecure connects");
    let b: Arc<dyn Backend> = Arc::new(b);
    b.enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .expect("enqueue");
    // A CA file that does not exist is a configuration error naming it.
    let tls = RedisTls {
        ca: Some(certs.dir().join("missing.pem")),
        client: None,
    };
    let e = RedisBackend::connect_tls(&url, "x:", Arc::new(SystemClock), &tls)
        .await
        .expect_err("missing CA file");
    assert!(e.to_string().contains("missing.pem"), "{e}");
}
