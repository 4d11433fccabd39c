//! How the Lua code reaches the server: a function library by default on
//! this Redis (7), scripts when asked or when the server (here: the user's
//! ACL) refuses functions; either form is loaded again when the server lost
//! it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Finish, NewTask, ReserveParams, ResultStore, SystemClock, TaskState};
use conveyor_redis::{RedisBackend, RedisTls, ScriptMode};

fn raw() -> redis::Connection {
    redis::Client::open(common::redis_url())
        .expect("redis url")
        .get_connection()
        .expect("redis connection")
}

async fn connect(
    url: &str,
    prefix: &str,
    mode: ScriptMode,
) -> Result<RedisBackend, conveyor_core::Error> {
    RedisBackend::connect_using(
        url,
        prefix,
        Arc::new(SystemClock),
        &RedisTls::default(),
        mode,
    )
    .await
}

/// Enqueues, reserves and completes one task: every form of the code runs.
async fn round_trip(b: &RedisBackend) {
    let q = vec!["default".to_string()];
    let id = b
        .enqueue(NewTask::new("h", b"x".to_vec()))
        .await
        .expect("enqueue")
        .id;
    let got = b
        .reserve(ReserveParams::new(&q, 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, id);
    let done = b
        .finish(vec![Finish::complete(got[0].lease.clone())])
        .await
        .expect("finish");
    assert!(done[0].is_ok(), "{:?}", done[0]);
    let record = b.get(id).await.expect("get").expect("stored");
    assert_eq!(record.state, TaskState::Completed);
}

/// One test, as the library is shared: listed, then deleted under a
/// connected backend, which loads it again at its next call.
#[tokio::test]
async fn a_redis_7_gets_the_function_library_and_loads_it_again_when_deleted() {
    let prefix = common::fresh_prefix();
    let b = connect(&common::redis_url(), &prefix, ScriptMode::Auto)
        .await
        .expect("connect");
    assert_eq!(b.script_mode(), ScriptMode::Functions);
    let lib = b.function_library().expect("a library");
    let listed: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg(lib)
        .query(&mut raw())
        .expect("FUNCTION LIST");
    assert!(format!("{listed:?}").contains(lib), "{listed:?}");
    round_trip(&b).await;
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(lib)
        .query(&mut raw())
        .expect("FUNCTION DELETE");
    round_trip(&b).await;
    common::delete_prefix(&prefix);
}

#[tokio::test]
async fn scripts_when_asked_and_after_a_script_flush() {
    let prefix = common::fresh_prefix();
    let b = connect(&common::redis_url(), &prefix, ScriptMode::Eval)
        .await
        .expect("connect");
    assert_eq!(b.script_mode(), ScriptMode::Eval);
    assert_eq!(b.function_library(), None);
    round_trip(&b).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut raw())
        .expect("SCRIPT FLUSH");
    b.enqueue(NewTask::new("h", b"y".to_vec()))
        .await
        .expect("enqueue after a flush");
    common::delete_prefix(&prefix);
}

/// A user whose ACL forbids `FUNCTION` gets scripts under `Auto` and a clear
/// error under `Functions`.
#[tokio::test]
async fn a_user_without_functions_gets_scripts() {
    let user = format!("conveyor-test-{:016x}", fastrand::u64(..));
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg("nopass")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-function")
        .query(&mut raw())
        .expect("ACL SETUSER");
    let base = common::redis_url();
    let url = base.replacen("redis://", &format!("redis://{user}:x@"), 1);
    let prefix = common::fresh_prefix();
    let outcome = async {
        let b = connect(&url, &prefix, ScriptMode::Auto)
            .await
            .expect("connect");
        assert_eq!(b.script_mode(), ScriptMode::Eval);
        round_trip(&b).await;
        let err = connect(&url, &prefix, ScriptMode::Functions)
            .await
            .expect_err("functions refused");
        let text = format!("{err:#}");
        assert!(text.contains("function library"), "{text}");
    };
    let result = tokio::time::timeout(Duration::from_secs(60), outcome).await;
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query(&mut raw())
        .expect("ACL DELUSER");
    common::delete_prefix(&prefix);
    result.expect("in time");
}
