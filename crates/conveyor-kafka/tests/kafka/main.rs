//! conveyor-kafka against a real Kafka-compatible broker (tansu, started by
//! this test binary on a free loopback port; see broker.rs). Each test uses its
//! own topics and consumer groups, so they run in parallel.

mod common;
mod crash;
mod dead_letter;
mod limits;
mod ordering;
