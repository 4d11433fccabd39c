//! Opening the backend from a URL through its scheme, on the machine's Redis:
//! the `prefix` parameter namespaces the keys.

mod common;

use conveyor_core::NewTask;

#[tokio::test]
async fn the_url_prefix_namespaces_every_key() {
    let prefix = common::fresh_prefix();
    let url = format!("{}/0?prefix={prefix}", common::redis_url());
    let backend = conveyor_redis::SCHEME.open(&url).await.expect("connects");
    assert_eq!(backend.kind(), "redis");
    backend
        .enqueue(NewTask::new("email", b"{}".to_vec()))
        .await
        .expect("enqueue");
    let keys = common::keys_under(&prefix);
    common::delete_prefix(&prefix);
    assert!(!keys.is_empty(), "nothing under {prefix}");
}
