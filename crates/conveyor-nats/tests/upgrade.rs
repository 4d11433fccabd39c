//! Records written by an earlier version (a line of JSON, then the payload
//! bytes) stay in the bucket across an upgrade: this version reads them,
//! leases them and settles them (writing them back in its own encoding).

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Clock, Finish, ManualClock, NewTask, ReserveParams, TaskState, DEFAULT_QUEUE};
use conveyor_nats::NatsBackend;

const LEASE: Duration = Duration::from_secs(30);

/// Task `id`'s record as the JSON encoding wrote it, available, with its
/// first ready message numbered 1.
fn old_record(id: u64, at: i64, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        concat!(
            r#"{{"id":{id},"queue":"{q}","handler":"old","priority":0,"max_attempts":3,"#,
            r#""timeout_ms":null,"unique_key":null,"state":{state},"attempts":0,"#,
            r#""reservations":0,"token":0,"lease_until":null,"run_at":{at},"#,
            r#""created_at":{at},"finished_at":null,"error":null,"dispatch":1,"#,
            r#""msg_seq":null,"payload_len":{len},"result_len":null}}"#
        ),
        id = id,
        q = DEFAULT_QUEUE,
        state = TaskState::Available.code(),
        at = at,
        len = payload.len(),
    );
    let mut out = head.into_bytes();
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_an_earlier_version_wrote_is_read_leased_and_settled() {
    let clock = Arc::new(ManualClock::default());
    let raw: NatsBackend = common::fresh(clock.clone()).await;
    let prefix = raw.prefix().to_string();
    let b = common::scoped(raw);
    let queue = vec![DEFAULT_QUEUE.to_string()];
    let id = b
        .enqueue(NewTask::new("new", b"ignored".to_vec()))
        .await
        .expect("enqueue")
        .id;
    // The record replaced by the old encoding (its message's copy is then
    // out of date, so the reserve reads this).
    let client = async_nats::connect(common::nats_url())
        .await
        .expect("connect");
    let kv = async_nats::jetstream::new(client)
        .get_key_value(format!("{prefix}_tasks"))
        .await
        .expect("the bucket");
    let at = clock.now().as_millis();
    kv.put(
        format!("t.{}", id.0),
        old_record(id.0, at, b"pay\nload").into(),
    )
    .await
    .expect("put");

    let rec = b.get(id).await.expect("get").expect("record");
    assert_eq!(
        (rec.handler.as_str(), rec.state),
        ("old", TaskState::Available)
    );
    assert_eq!(rec.payload, b"pay\nload");
    let got = b
        .reserve(ReserveParams::new(&queue, 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].handler.as_str(), got[0].attempt), ("old", 1));
    assert_eq!(got[0].payload, b"pay\nload");
    let out = b
        .finish(vec![Finish::complete(got[0].lease.clone())])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    let rec = b.get(id).await.expect("get").expect("record");
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.payload, b"pay\nload");
}
