//! The contract for opening a backend from a URL: a [`Scheme`] names the URL
//! schemes one backend answers to and opens it from such a URL.
//!
//! Each backend crate exports its own (`conveyor_embedded::SCHEME`,
//! `conveyor_redis::SCHEME`, …) and alone knows its URL's parameters, so the
//! runtime maps a URL to a backend through a registry of schemes without
//! knowing any backend, and a program can register a backend of its own.
//! [`BackendUrl`](crate::BackendUrl) is the shared way to read the URL.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Backend, Error};

/// What opening a backend from a URL returns: a future owning everything it
/// needs (it does not borrow the URL).
pub type OpenFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Backend>, Error>> + Send>>;

/// Opens a backend from its URL, the whole URL as given (scheme included, or a
/// bare path for a scheme that takes them). A bad URL or an unknown parameter
/// should fail with [`Error::InvalidConfig`]; parsing may happen before the
/// future is made, so the future owns only what it needs.
pub type OpenFn = fn(&str) -> OpenFuture;

/// The [`OpenFuture`] of a URL a scheme has read already: `parsed` is what
/// it read (or why it could not), `connect` opens the backend from it. The
/// shape of every scheme's `open`: read the URL before the future is made,
/// connect inside it, as
/// `opening(target(url), |t| async move { MyBackend::connect(t).await })`.
pub fn opening<T, B, F, Fut>(parsed: Result<T, Error>, connect: F) -> OpenFuture
where
    T: Send + 'static,
    B: Backend,
    F: FnOnce(T) -> Fut + Send + 'static,
    Fut: Future<Output = Result<B, Error>> + Send + 'static,
{
    Box::pin(async move {
        let backend = connect(parsed?).await?;
        Ok(Arc::new(backend) as Arc<dyn Backend>)
    })
}

/// Opens a backend from its URL (without the record keeper's parameter)
/// with `keeper`, an open backend whose [`RecordKeeper`](crate::RecordKeeper)
/// part keeps its task records (see [`Scheme::with_record_keeper`]).
pub type OpenKeepingFn = fn(&str, Arc<dyn Backend>) -> OpenFuture;

/// A scheme's URL parameter that names a record keeper, and how to open the
/// backend with it.
#[derive(Clone, Copy)]
struct KeeperParam {
    name: &'static str,
    open: OpenKeepingFn,
}

/// How to open one kind of backend from a URL.
///
/// ```
/// use std::sync::Arc;
/// use conveyor_core::{Backend, BackendUrl, Error, OpenFuture, Scheme};
///
/// fn open(url: &str) -> OpenFuture {
///     let checked = BackendUrl::parse(url).and_then(|u| u.allow_only(&[]));
///     Box::pin(async move {
///         checked?;
///         Err::<Arc<dyn Backend>, _>(Error::Unsupported("demo only".into()))
///     })
/// }
///
/// pub const SCHEME: Scheme = Scheme::new(&["demo"], "demo://", "a demonstration", open);
/// assert!(SCHEME.answers_to("DEMO"));
/// ```
#[derive(Clone, Copy)]
pub struct Scheme {
    names: &'static [&'static str],
    example: &'static str,
    description: &'static str,
    bare_paths: bool,
    open: OpenFn,
    open_existing: Option<OpenFn>,
    keeper: Option<KeeperParam>,
}

impl Scheme {
    /// A scheme answering to `names` (lowercase; the first is the main one),
    /// shown as `example` (a URL with its parameters, e.g.
    /// `redis://HOST:PORT/DB?prefix=P`) and `description` (one line) in error
    /// messages and help, opened by `open`.
    pub const fn new(
        names: &'static [&'static str],
        example: &'static str,
        description: &'static str,
        open: OpenFn,
    ) -> Self {
        Self {
            names,
            example,
            description,
            bare_paths: false,
            open,
            open_existing: None,
            keeper: None,
        }
    }

    /// The same scheme, for a backend that keeps no task records of its own
    /// (a broker) but can have another store keep them: the URL parameter
    /// `param` (e.g. `results`) names that store by its own URL, up to the
    /// next `&`. A registry opens that store, checks it has the
    /// [`RecordKeeper`](crate::RecordKeeper) part, and opens this backend with
    /// `open` from the URL without `param`. `open` alone (a scheme called
    /// without a registry) should refuse `param` with a message saying so.
    pub const fn with_record_keeper(mut self, param: &'static str, open: OpenKeepingFn) -> Self {
        self.keeper = Some(KeeperParam { name: param, open });
        self
    }

    /// The URL parameter that names a record keeper, for a scheme made
    /// [`with_record_keeper`](Scheme::with_record_keeper).
    pub fn record_keeper_param(&self) -> Option<&'static str> {
        self.keeper.map(|k| k.name)
    }

    /// Opens the backend `url` names (without the record keeper's
    /// parameter) with `keeper` keeping its records; [`Error::InvalidConfig`]
    /// for a scheme that takes no record keeper.
    pub fn open_keeping(&self, url: &str, keeper: Arc<dyn Backend>) -> OpenFuture {
        match self.keeper {
            Some(k) => (k.open)(url, keeper),
            None => {
                let name = self.names.first().copied().unwrap_or("?");
                Box::pin(async move {
                    Err(Error::InvalidConfig(format!(
                        "the {name}:// backend keeps its own task records and takes no record keeper"
                    )))
                })
            }
        }
    }

    /// The same scheme, with a way to open only a store that already exists,
    /// creating and changing nothing (for commands that only read). Without
    /// one, [`Scheme::open_existing`] uses `open`: right for a backend whose
    /// opening creates nothing (a Redis server, a broker).
    pub const fn with_open_existing(mut self, open_existing: OpenFn) -> Self {
        self.open_existing = Some(open_existing);
        self
    }

    /// The same scheme, also opening "URLs" that have no scheme at all: file
    /// paths. A registry gives them to the one scheme that takes them.
    pub const fn with_bare_paths(mut self) -> Self {
        self.bare_paths = true;
        self
    }

    /// The URL schemes it answers to, the main one first.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// An example URL with its parameters.
    pub fn example(&self) -> &'static str {
        self.example
    }

    /// What the backend is, in one line.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// Whether it opens bare paths (see [`Scheme::with_bare_paths`]).
    pub fn takes_bare_paths(&self) -> bool {
        self.bare_paths
    }

    /// Whether it answers to the URL scheme `name` (any letter case).
    pub fn answers_to(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Opens the backend `url` names.
    pub fn open(&self, url: &str) -> OpenFuture {
        (self.open)(url)
    }

    /// Opens the backend `url` names only if its store exists; an error that
    /// names it (and how to create it) otherwise.
    pub fn open_existing(&self, url: &str) -> OpenFuture {
        (self.open_existing.unwrap_or(self.open))(url)
    }
}

impl fmt::Debug for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheme")
            .field("names", &self.names)
            .field("example", &self.example)
            .field("bare_paths", &self.bare_paths)
            .field("record_keeper_param", &self.record_keeper_param())
            .finish_non_exhaustive()
    }
}
