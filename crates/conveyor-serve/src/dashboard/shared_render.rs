//! One render of a live part for every viewer.
//!
//! Each open page holds a stream that sends its live part again every
//! refresh. Rendered per viewer, a hundred open overviews would read the
//! store a hundred times every two seconds. So each live part keeps its
//! latest render here: a viewer whose turn comes takes it when it is younger
//! than half a refresh, and otherwise renders it again, once, while the
//! viewers that arrive meanwhile wait for that render and share it. The
//! store is read at most about twice per refresh per live part, however many
//! pages are open.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The latest render of one live part.
#[derive(Debug, Default)]
pub(crate) struct SharedRender {
    latest: Mutex<Option<(Instant, Arc<str>)>>,
    /// Renders made (for tests).
    renders: std::sync::atomic::AtomicU64,
}

impl SharedRender {
    /// The latest render if younger than `fresh`, else a new one made by
    /// `render` (one at a time: viewers arriving meanwhile wait and share it).
    pub(crate) async fn get<F, Fut>(&self, fresh: Duration, render: F) -> Arc<str>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = String>,
    {
        let mut latest = self.latest.lock().await;
        if let Some((at, html)) = latest.as_ref() {
            if at.elapsed() < fresh {
                return html.clone();
            }
        }
        let html: Arc<str> = render().await.into();
        self.renders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *latest = Some((Instant::now(), html.clone()));
        html
    }

    /// How many renders were made.
    #[cfg(test)]
    pub(crate) fn renders(&self) -> u64 {
        self.renders.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The live parts' shared renders.
#[derive(Debug, Default)]
pub(crate) struct LiveRenders {
    /// The overview's live part.
    pub(crate) overview: SharedRender,
    /// The workers page's live part.
    pub(crate) workers: SharedRender,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn viewers_share_one_render_per_refresh() {
        let shared = Arc::new(SharedRender::default());
        let fresh = Duration::from_secs(60);
        let mut viewers = Vec::new();
        for _ in 0..50 {
            let shared = shared.clone();
            viewers.push(tokio::spawn(async move {
                shared
                    .get(fresh, || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        "page".to_string()
                    })
                    .await
            }));
        }
        for v in viewers {
            assert_eq!(&*v.await.expect("viewer"), "page");
        }
        assert_eq!(shared.renders(), 1, "fifty viewers, one render");
        let again = shared
            .get(Duration::ZERO, || async { "again".to_string() })
            .await;
        assert_eq!(&*again, "again", "a stale render is made again");
        assert_eq!(shared.renders(), 2);
    }
}
