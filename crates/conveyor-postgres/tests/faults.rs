//! The fault suite (`conveyor_testkit::backend_faults!`) on PostgreSQL: a
//! private cluster stopped and started mid-run, and the shared server behind
//! a fault-injecting proxy (black-holed, slowed, connections cut).

mod common;

conveyor_testkit::backend_faults!(common::fault_target();
    private_server: has_postgres, "initdb and pg_ctl are not installed (Debian package postgresql)"; workflows, schedules);
