//! The fault suite (`conveyor_testkit::backend_faults!`) on RabbitMQ: a
//! private node killed and restarted mid-run, and the shared broker behind a
//! fault-injecting proxy (black-holed, slowed, connections cut). Task records
//! and results are kept by the shared Redis (`results=redis://…`), reached
//! directly, under the case's namespace.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_testkit::faults::FaultTarget;
use conveyor_testkit::rabbitmq_server::TempRabbit;

fn target() -> FaultTarget {
    FaultTarget {
        name: "amqp",
        service: SocketAddr::from(([127, 0, 0, 1], 5672)),
        url: |addr, ns, _| {
            format!(
                "amqp://guest:guest@{addr}/%2f?prefix={ns}&results={}?prefix={}",
                common::results_url(),
                common::records_prefix(ns)
            )
        },
        scheme: conveyor_amqp::SCHEME,
        keeper: Some(conveyor_redis::SCHEME),
        private_server: || Some(Box::new(TempRabbit::start(None))),
        lease: Duration::from_secs(2),
        forget,
        prefetch: true,
    }
}

/// Deletes the case's queues on the shared broker, and its records.
fn forget(ns: &str) {
    let ns = ns.to_string();
    conveyor_testkit::faults::block_on(async move {
        let options = conveyor_amqp::AmqpOptions::default().prefix(ns);
        let b = common::connect(&common::amqp_url(), options, false).await;
        common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
    });
}

conveyor_testkit::backend_faults!(target();
    private_server: has_rabbitmq_server, "rabbitmq-server is not installed (Debian package rabbitmq-server)"; workflows);
