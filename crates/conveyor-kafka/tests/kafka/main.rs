//! conveyor-kafka against a real Kafka-compatible broker (tansu, started by
//! this test binary on a free loopback port; see `conveyor_testkit::kafka_broker`).
//! Each test uses its own topics and consumer groups, so they run in parallel.

mod common;
mod crash;
mod dead_letter;
mod limits;
mod ordering;
