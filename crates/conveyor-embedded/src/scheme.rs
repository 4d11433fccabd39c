//! The embedded backend's URL: `embedded://PATH` (also `sqlite://` and
//! `file://`; `embedded:///abs/path.db` for an absolute path) or a bare file
//! path, the default backend for anything that has no scheme.
//!
//! The URL takes one parameter, `max_value=BYTES` (refuse params and results
//! over it: [`EmbeddedBackend::with_max_value`]). A bare path is used exactly
//! as written, with no parameters; a path containing `?` or `#` must be given
//! bare.

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

/// The file `url` names (its tests' and fuzz test's view of [`target_of`]).
#[cfg(test)]
fn path_of(url: &str) -> Result<String, Error> {
    target_of(url).map(|(path, _)| path)
}

/// The file `url` names, and its `max_value`.
fn target_of(url: &str) -> Result<(String, Option<usize>), Error> {
    let (path, max_value) = match scheme_of(url) {
        // A URL: ours (any other scheme followed by `//` is a mistake, not a
        // file name).
        Some(s) if SCHEME.answers_to(s) || url[s.len() + 1..].starts_with("//") => {
            let mut parsed = BackendUrl::parse_as(url, SCHEME.names())?;
            let max_value = parsed.take_max_value()?;
            parsed.allow_only(&["max_value"])?;
            (parsed.body(), max_value)
        }
        // A bare path (`./q.db`, `/abs/q.db`, `C:\q.db`, even `odd:name.db`).
        _ => (url, None),
    };
    if path.is_empty() {
        return Err(Error::InvalidConfig(
            "embedded:// needs a file path, e.g. embedded://./conveyor.db".into(),
        ));
    }
    Ok((path.to_string(), max_value))
}

/// Opens `path`, capping its values at `max_value`.
fn open_at(path: String, max_value: Option<usize>) -> Result<Arc<dyn Backend>, Error> {
    let mut backend = EmbeddedBackend::open(path)?;
    if let Some(cap) = max_value {
        backend = backend.with_max_value(cap);
    }
    Ok(Arc::new(backend))
}

/// Opens the file only if it exists: a command that only reads never creates
/// one (a mistyped path would otherwise answer "no tasks").
fn open_existing(url: &str) -> OpenFuture {
    let target = target_of(url);
    Box::pin(async move {
        let (path, max_value) = target?;
        if !std::path::Path::new(&path).exists() {
            return Err(Error::InvalidConfig(format!(
                "no conveyor store at {path}: nothing was ever enqueued there. Check --backend \
                 (or CONVEYOR_URL) and the current directory; a worker, `conveyor submit` or \
                 `conveyor migrate` creates it"
            )));
        }
        open_at(path, max_value)
    })
}

fn open(url: &str) -> OpenFuture {
    let target = target_of(url);
    Box::pin(async move {
        let (path, max_value) = target?;
        open_at(path, max_value)
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
            msg.contains("\"mode\"") && msg.contains("max_value"),
            "{msg}"
        );
    }

    #[test]
    fn max_value_is_taken_out_and_checked() {
        use super::target_of;
        assert_eq!(
            target_of("embedded://q.db?max_value=4096").expect("url"),
            ("q.db".to_string(), Some(4096))
        );
        assert_eq!(
            target_of("q.db?max_value=1").expect("bare"),
            ("q.db?max_value=1".to_string(), None),
            "a bare path is the file's name, as written"
        );
        for bad in ["0", "-1", "1k", ""] {
            let e = target_of(&format!("embedded://q.db?max_value={bad}")).expect_err(bad);
            assert!(e.to_string().contains("max_value"), "{e}");
        }
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
