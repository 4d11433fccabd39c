//! Failures are classified: a file that is not a conveyor store is not a
//! passing outage (a worker does not hammer it), and says which file.

use conveyor_core::{BackendErrorKind, Error};
use conveyor_embedded::EmbeddedBackend;

#[test]
fn a_file_that_is_not_a_database_is_not_transient() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write");
    let err = EmbeddedBackend::open(&path).expect_err("not SQLite");
    assert!(!err.is_transient(), "{err:?}");
    assert!(
        matches!(
            err.backend_kind(),
            Some(BackendErrorKind::Config | BackendErrorKind::Data)
        ),
        "{err:?}"
    );
    let Error::Backend(e) = &err else {
        panic!("a backend error: {err:?}")
    };
    assert!(e.message().contains("notes.txt"), "{e}");
}
