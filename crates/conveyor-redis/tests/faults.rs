//! The fault suite (`conveyor_testkit::backend_faults!`) on Redis: a private
//! server killed and restarted mid-run, and the shared server behind a
//! fault-injecting proxy (black-holed, slowed, connections cut).

mod common;

conveyor_testkit::backend_faults!(common::fault_target();
    private_server: has_redis_server, "redis-server is not installed (Debian package redis-server)"; workflows, schedules);
