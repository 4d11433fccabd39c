//! The fault suite (`conveyor_testkit::backend_faults!`) on NATS JetStream: a
//! private server killed and restarted mid-run, and the shared server behind
//! a fault-injecting proxy (black-holed, slowed, connections cut).

mod common;

conveyor_testkit::backend_faults!(common::fault_target();
    private_server: has_nats_server, "nats-server is not installed (Debian package nats-server)"; workflows, schedules);
