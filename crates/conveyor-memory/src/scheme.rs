//! The memory backend's URL, `memory://` (or `memory:`): it takes no host,
//! path or parameters, and each URL opened is a new, empty backend.

use std::sync::Arc;

use conveyor_core::{Backend, BackendUrl, Error, OpenFuture, Scheme};

use crate::MemoryBackend;

/// Opens a [`MemoryBackend`] from `memory://`.
pub const SCHEME: Scheme = Scheme::new(
    &["memory"],
    "memory://",
    "in this process only, nothing survives it (tests, demos)",
    open,
);

/// Checks that `url` is a plain `memory://`.
fn check(url: &str) -> Result<(), Error> {
    let parsed = BackendUrl::parse_as(url, SCHEME.names())?;
    parsed.allow_only(&[])?;
    if !parsed.body().is_empty() {
        return Err(Error::InvalidConfig(format!(
            "memory:// takes nothing after it (got {:?})",
            parsed.body()
        )));
    }
    Ok(())
}

fn open(url: &str) -> OpenFuture {
    let checked = check(url);
    Box::pin(async move {
        checked?;
        Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
    })
}

/// The fuzz test of this parser (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::{check, SCHEME};
    use conveyor_core::Error;

    #[test]
    fn accepted_forms() {
        for url in ["memory://", "memory:", "MEMORY://"] {
            assert!(check(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn anything_more_is_refused() {
        for url in [
            "memory://x",
            "memory:///",
            "memory://?shared=1",
            "redis://h/0",
            "q.db",
        ] {
            assert!(matches!(check(url), Err(Error::InvalidConfig(_))), "{url}");
        }
        let msg = check("memory://?shared=1").expect_err("param").to_string();
        assert!(msg.contains("\"shared\""), "{msg}");
    }

    #[tokio::test]
    async fn opens_an_empty_backend() {
        let backend = SCHEME.open("memory://").await.expect("opens");
        assert_eq!(backend.kind(), "memory");
        assert!(backend.stats().await.expect("stats").is_empty());
        assert!(SCHEME.open("memory://x").await.is_err());
    }
}
