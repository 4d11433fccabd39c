//! A queue declared moments before the broker is killed comes back with its
//! tasks. RabbitMQ 3.10 keeps the newest quorum queue's registration off disk
//! until the next one comes, so a node SIGKILLed before then restarts with
//! that queue's record but without its Raft member: no leader, every consume
//! hangs, and its messages sit on disk out of reach. The backend declares an
//! anchor queue after its own (see `link::anchor`); without it this test
//! finds no task in the queue declared last, or no answer at all.

use std::sync::Arc;
use std::time::Duration;

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, NewTask, ReserveParams, SystemClock};
use conveyor_testkit::rabbitmq_server::TempRabbit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_rabbitmq_server),
    ignore = "rabbitmq-server is not installed (Debian package rabbitmq-server)"
)]
async fn queue_declared_last_before_a_kill_keeps_its_tasks() {
    let server = tokio::task::spawn_blocking(|| TempRabbit::start(None))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let url = server.url();
    let options = AmqpOptions {
        prefix: "newq".into(),
        ..AmqpOptions::default()
    };
    let backend = AmqpBackend::connect(&url, options.clone(), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    // Confirmed: written to the queue's log before enqueue returns.
    backend
        .enqueue(NewTask::new("h", b"1".to_vec()).queue("fresh"))
        .await
        .unwrap_or_else(|e| panic!("enqueue: {e}"));
    backend.close().await;
    drop(backend);
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill();
        server.restart();
        server
    })
    .await
    .unwrap_or_else(|e| panic!("restart: {e}"));
    let backend = AmqpBackend::connect(&url, options, Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("reconnect: {e}"));
    let queues = vec!["fresh".to_string()];
    let mut got = Vec::new();
    // Every request is answered within the backend's bound, so a few tries
    // are enough either way: the task is there, or its queue is broken.
    for _ in 0..5 {
        match backend
            .reserve(ReserveParams::new(&queues, 1, Duration::from_secs(30)))
            .await
        {
            Ok(r) if !r.is_empty() => {
                got = r;
                break;
            }
            Ok(_) => {}
            Err(e) => eprintln!("reserve: {}", e.chain()),
        }
    }
    assert_eq!(
        got.len(),
        1,
        "the task enqueued (confirmed) before the kill is gone after the restart"
    );
    drop(server);
}
