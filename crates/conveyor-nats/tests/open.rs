//! Several processes opening a namespace nobody has used yet, at the same
//! moment (a worker and a `conveyor submit` started together), all succeed
//! and share one namespace: the streams and the ledger bucket are created
//! once, whoever wins the race, and no opener fails because another one
//! created them a moment before it.

mod common;

use std::sync::Arc;

use common::{destroy, fresh_prefix, nats_url};
use conveyor_core::parts::*;
use conveyor_core::{Backend, NewTask, SystemClock};
use conveyor_nats::NatsBackend;
use conveyor_testkit::nats_server::TempNats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openers_racing_on_a_new_namespace_all_succeed() {
    for round in 0..10 {
        race(&nats_url(), round).await;
    }
}

/// The same race as the first thing a freshly started server sees (its
/// JetStream store still empty), as on a machine just booted for CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (Debian package nats-server)"
)]
async fn openers_racing_on_a_fresh_server_all_succeed() {
    let server = TempNats::start();
    // Every round ends by deleting the account's last streams, which a
    // 2.9 server answers by removing the account's store directory.
    for round in 0..10 {
        race(&server.url(), round).await;
    }
}

async fn race(url: &str, round: usize) {
    {
        let prefix = fresh_prefix();
        let opens = (0..6).map(|_| {
            let (url, prefix) = (url.to_string(), prefix.clone());
            tokio::spawn(async move {
                NatsBackend::connect_with(&url, &prefix, Arc::new(SystemClock)).await
            })
        });
        let opened = futures_util::future::join_all(opens).await;
        let mut backends = Vec::new();
        let mut failures = Vec::new();
        for o in opened {
            match o.expect("the open task ran") {
                Ok(b) => backends.push(b),
                Err(e) => failures.push(format!("{e}: {:?}", std::error::Error::source(&e))),
            }
        }
        // One namespace: what one opener enqueues, another sees.
        if let (Some(first), Some(last)) = (backends.first(), backends.last()) {
            let id = first
                .enqueue(NewTask::new("h", b"x".to_vec()))
                .await
                .expect("enqueue")
                .id;
            assert!(last.get(id).await.expect("get").is_some(), "round {round}");
        }
        destroy(url, &prefix);
        assert!(failures.is_empty(), "round {round}: {failures:?}");
    }
}
