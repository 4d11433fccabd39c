//! `has_postgres`, by which the tests that start a PostgreSQL cluster of their
//! own are ignored where initdb or pg_ctl is missing (see the included file).
#[path = "../conveyor-testkit/src/programs.rs"]
mod programs;

fn main() {
    programs::emit_cfgs();
}
