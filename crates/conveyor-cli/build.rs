//! `has_redis_server`, `has_postgres` and `has_script`, by which the tests that
//! start those programs are ignored where they are missing (see the included
//! file).
#[path = "../conveyor-testkit/src/programs.rs"]
mod programs;

fn main() {
    programs::emit_cfgs();
}
