//! The embedded backend's URL: `embedded://PATH` (also `sqlite://` and
//! `file://`; `embedded:///abs/path.db` for an absolute path) or a bare file
//! path, the default backend for anything that has no scheme.
//!
//! The URL takes no parameters. A bare path is used exactly as written; a path
//! containing `?` or `#` must be given bare.

use std::sync::Arc;

use conveyor_core::{scheme_of, Backend, BackendUrl, Error, OpenFuture, Scheme};

use crate::EmbeddedBackend;

/// Opens an [`EmbeddedBackend`] from `embedded://PATH` or a bare path.
pub const SCHEME: Scheme = Scheme::new(
    &["embedded", "sqlite", "file"],
    "embedded://PATH (or a bare path)",
    "one local SQLite file, zero setup (the default)",
    open,
)
.with_bare_paths()
.with_open_existing(open_existing);

/// The file `url` names.
fn path_of(url: &str) -> Result<String, Error> {
    let path = match scheme_of(url) {
        // A URL: ours (any other scheme followed by `//` is a mistake, not a
        // file name).
        Some(s) if SCHEME.answers_to(s) || url[s.len() + 1..].starts_with("//") => {
            let parsed = BackendUrl::parse_as(url, SCHEME.names())?;
            parsed.allow_only(&[])?;
            parsed.body()
        }
        // A bare path (`./q.db`, `/abs/q.db`, `C:\q.db`, even `odd:name.db`).
        _ => url,
    };
    if path.is_empty() {
        return Err(Error::InvalidConfig(
            "embedded:// needs a file path, e.g. embedded://./conveyor.db".into(),
        ));
    }
    Ok(path.to_string())
}

/// Opens the file only if it exists: a command that only reads never creates
/// one (a mistyped path would otherwise answer "no tasks").
fn open_existing(url: &str) -> OpenFuture {
    let path = path_of(url);
    Box::pin(async move {
        let path = path?;
        if !std::path::Path::new(&path).exists() {
            return Err(Error::InvalidConfig(format!(
                "no conveyor store at {path}: nothing was ever enqueued there. Check --backend \
                 (or CONVEYOR_URL) and the current directory; a worker, `conveyor submit` or \
                 `conveyor migrate` creates it"
            )));
        }
        Ok(Arc::new(EmbeddedBackend::open(path)?) as Arc<dyn Backend>)
    })
}

fn open(url: &str) -> OpenFuture {
    let path = path_of(url);
    Box::pin(async move {
        let path = path?;
        Ok(Arc::new(EmbeddedBackend::open(path)?) as Arc<dyn Backend>)
    })
}

/// The fuzz test of this parser (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::{path_of, SCHEME};
    use conveyor_core::Error;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("embedded://./conveyor.db", "./conveyor.db"),
            ("embedded:///abs/path.db", "/abs/path.db"),
            ("sqlite://q.db", "q.db"),
            ("file:///tmp/q.db", "/tmp/q.db"),
            ("Embedded://q.db", "q.db"),
            ("embedded:q.db", "q.db"),
            ("./conveyor.db", "./conveyor.db"),
            ("/abs/path.db", "/abs/path.db"),
            ("odd:name.db", "odd:name.db"),
            ("dir/q?.db", "dir/q?.db"),
        ];
        for (url, path) in cases {
            assert_eq!(path_of(url).expect(url), path, "{url}");
        }
    }

    #[test]
    fn no_path_no_parameters_no_other_scheme() {
        for url in ["embedded://", "", "embedded://q.db?mode=ro", "redis://h/0"] {
            assert!(
                matches!(path_of(url), Err(Error::InvalidConfig(_))),
                "{url}"
            );
        }
        let msg = path_of("embedded://q.db?mode=ro")
            .expect_err("param")
            .to_string();
        assert!(
            msg.contains("\"mode\"") && msg.contains("no parameters"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn opens_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("q.db");
        let backend = SCHEME
            .open(&format!("embedded://{}", path.display()))
            .await
            .expect("opens");
        assert_eq!(backend.kind(), "embedded");
        assert!(path.exists());
        drop(backend);
        let again = SCHEME
            .open(&path.display().to_string())
            .await
            .expect("bare path");
        assert_eq!(again.kind(), "embedded");
    }
}
