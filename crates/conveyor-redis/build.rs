//! `has_redis_server`, by which the tests that start a `redis-server` of their
//! own are ignored where it is missing (see the included file).
#[path = "../conveyor-testkit/src/programs.rs"]
mod programs;

fn main() {
    programs::emit_cfgs();
}
