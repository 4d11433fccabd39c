use conveyor::{Handler, Pool, TaskError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let pool = Pool::new().unwrap();
    let double = Handler::io(
        "double",
        |n: u64, _ctx| async move { Ok::<_, TaskError>(n * 2) },
    );
    let job = pool.job().start().unwrap();
    for n in 0..1000u64 {
        job.submit(&double, n).await.unwrap();
    }
    let s = job.await;
    assert_eq!(s.succeeded, 1000);
}
