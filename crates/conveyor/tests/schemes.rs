//! Opening backends by URL through the scheme registry: a scheme a program
//! registers is used by `connect`, bare paths go to the scheme that takes them,
//! and an unknown scheme is an error listing the registered ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::durable::{self, BackendUrl, OpenFuture, Scheme, Schemes};
use conveyor::{Error, MemoryBackend};

/// URLs the program's own scheme opened.
static OPENED: AtomicUsize = AtomicUsize::new(0);

/// A program's own backend: memory, under `mine://`, counted.
fn open_mine(url: &str) -> OpenFuture {
    let checked = BackendUrl::parse_as(url, &["mine"]).and_then(|u| u.allow_only(&[]));
    Box::pin(async move {
        checked?;
        OPENED.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
    })
}

const MINE: Scheme = Scheme::new(&["mine"], "mine://", "the program's own", open_mine);

/// Refuses everything: shows which scheme a URL reached.
fn refuse(url: &str) -> OpenFuture {
    let msg = format!("refused {url}");
    Box::pin(async move { Err(Error::Unsupported(msg)) })
}

const PATHS: Scheme = Scheme::new(&["paths"], "PATH", "bare paths", refuse).with_bare_paths();
const SHADOW: Scheme = Scheme::new(&["memory"], "memory://", "shadows memory", refuse);

#[tokio::test]
async fn a_registered_scheme_is_used_by_connect() {
    let schemes = Schemes::default().with(MINE);
    let before = OPENED.load(Ordering::SeqCst);
    let backend = schemes.connect("mine://").await.expect("opens");
    assert_eq!(backend.kind(), "memory");
    assert_eq!(OPENED.load(Ordering::SeqCst), before + 1);
    // Any letter case; the built-in schemes still work beside it.
    schemes.connect("MINE://").await.expect("any case");
    let memory = schemes.connect("memory://").await.expect("built in");
    assert_eq!(memory.kind(), "memory");
    // Its own URL checks still apply.
    assert!(matches!(
        schemes.connect("mine://?x=1").await,
        Err(Error::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn unknown_schemes_list_the_registered_ones() {
    let schemes = Schemes::empty().with(MINE).with(memory_scheme());
    let err = match schemes.connect("nosuch://x").await {
        Err(e) => e,
        Ok(_) => panic!("nosuch:// opened"),
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidConfig(_)), "{msg}");
    assert!(
        msg.contains("\"nosuch\"") && msg.contains("mine, memory") && msg.contains("mine://"),
        "{msg}"
    );
    // Without a scheme that takes bare paths, a path is refused too.
    assert!(matches!(
        schemes.connect("./q.db").await,
        Err(Error::InvalidConfig(_))
    ));
    // The default registry says so for an unknown scheme as well.
    let msg = match durable::connect("nosuch://x").await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("nosuch:// opened"),
    };
    assert!(
        msg.contains("unknown backend scheme") && msg.contains("memory"),
        "{msg}"
    );
}

/// The memory backend's own scheme, as a program would name it.
fn memory_scheme() -> Scheme {
    *Schemes::default()
        .find("memory")
        .expect("memory is always built in")
}

#[tokio::test]
async fn bare_paths_go_to_the_scheme_that_takes_them() {
    let schemes = Schemes::default().with(PATHS);
    for url in ["./q.db", "/abs/q.db", "odd:name.db"] {
        let picked = schemes.scheme_for(url).expect(url);
        assert_eq!(picked.names(), &["paths"], "{url}");
    }
    // `memory:` without `//` is still the memory scheme.
    assert_eq!(
        schemes.scheme_for("memory:").expect("memory").names(),
        &["memory"]
    );
}

#[tokio::test]
async fn the_latest_registration_wins() {
    let schemes = Schemes::default().with(SHADOW);
    assert!(matches!(
        schemes.connect("memory://").await,
        Err(Error::Unsupported(_))
    ));
    // The scheme it replaced is gone from the list.
    let memory_schemes = schemes.iter().filter(|s| s.answers_to("memory")).count();
    assert_eq!(memory_schemes, 1);
    assert!(schemes.help().contains("shadows memory"));
}

#[cfg(feature = "embedded")]
#[tokio::test]
async fn the_default_registry_opens_the_built_in_backends() {
    let dir = std::env::temp_dir().join(format!("conveyor-schemes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("q.db");
    let bare = durable::connect(&path.display().to_string())
        .await
        .expect("bare path");
    assert_eq!(bare.kind(), "embedded");
    drop(bare);
    let url = format!("embedded://{}", path.display());
    assert_eq!(
        durable::connect(&url).await.expect("embedded").kind(),
        "embedded"
    );
    assert_eq!(
        durable::connect("memory://").await.expect("memory").kind(),
        "memory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shows the keeper a broker was opened with, and the URL left for it.
fn open_keeping(url: &str, keeper: Arc<dyn Backend>) -> OpenFuture {
    let msg = format!("keeping {url} in {}", keeper.kind());
    Box::pin(async move { Err(Error::Unsupported(msg)) })
}

/// A broker that keeps no records of its own: `results=` names a store.
const BROKER: Scheme = Scheme::new(&["broker"], "broker://", "a broker", refuse)
    .with_record_keeper("results", open_keeping);

fn message(opened: Result<Arc<dyn Backend>, Error>) -> String {
    match opened {
        Err(e) => e.to_string(),
        Ok(b) => panic!("opened a {} backend", b.kind()),
    }
}

#[tokio::test]
async fn a_record_keeper_is_opened_from_its_parameter_and_checked() {
    let schemes = Schemes::empty().with(BROKER).with(memory_scheme());
    assert_eq!(BROKER.record_keeper_param(), Some("results"));
    // No store named: the broker alone.
    let alone = message(schemes.connect("broker://h/?prefix=p").await);
    assert!(alone.contains("refused broker://h/?prefix=p"), "{alone}");
    // A store without the record keeper part is refused, saying why.
    let memory = message(
        schemes
            .connect("broker://h/?results=memory://&prefix=p")
            .await,
    );
    assert!(
        memory.contains("results=") && memory.contains("cannot keep"),
        "{memory}"
    );
    // A store that keeps no records of its own cannot keep others'.
    let nested = message(schemes.connect("broker://h/?results=broker://x").await);
    assert!(nested.contains("keeps no task records"), "{nested}");
    // An unknown store scheme is named as any unknown scheme is.
    let unknown = message(schemes.connect("broker://h/?results=nosuch://x").await);
    assert!(unknown.contains("nosuch"), "{unknown}");
    // A scheme without a record keeper says so when given one.
    let own = message(
        memory_scheme()
            .open_keeping("memory://", Arc::new(MemoryBackend::new()))
            .await,
    );
    assert!(own.contains("takes no record keeper"), "{own}");
}
