//! The registry of backend URL schemes: which [`Scheme`] opens a URL.
//!
//! The runtime knows no backend's URL. Each backend crate exports its own
//! [`Scheme`] (`conveyor_embedded::SCHEME`, …); [`Schemes::default`] holds the
//! ones of the backends compiled in (the in-process one always, the others
//! through conveyor's cargo features), and a program adds its own backend with
//! [`Schemes::with`] or [`Schemes::register`] without changing conveyor.
//!
//! A URL goes to the scheme registered for its scheme name (any letter case;
//! the latest registration wins). A URL with no scheme (a file path) goes to
//! the scheme that takes bare paths (the embedded backend by default).
//!
//! A backend that keeps no task records of its own (RabbitMQ) may name a
//! store that keeps them for it in a parameter of its URL
//! (`amqp://…?results=redis://HOST:PORT/DB?prefix=P`): the registry opens
//! that store first, checks it has the record keeper part, and opens the
//! backend with it (see [`Scheme::with_record_keeper`]). The store's URL runs
//! to the next `&`, so it can carry one parameter of its own (after its `?`);
//! a program that needs more opens the store itself and passes it to the
//! backend's own constructor.

use std::sync::Arc;

use conveyor_core::{scheme_of, Backend, BackendUrl, Error, Scheme};

/// The URL schemes a program can open backends with; see the module
/// documentation.
///
/// ```no_run
/// # async fn demo(my_scheme: conveyor_core::Scheme) -> Result<(), conveyor::Error> {
/// use conveyor::durable::Schemes;
///
/// // `my_scheme` answers to `mine://…`; the built-in schemes still work.
/// let schemes = Schemes::default().with(my_scheme);
/// let backend = schemes.connect("mine://somewhere").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Schemes {
    /// In registration order.
    schemes: Vec<Scheme>,
}

impl Default for Schemes {
    /// The schemes of the backends compiled in: embedded (feature
    /// `embedded`, on by default; it also takes bare paths), Redis (feature
    /// `redis`), PostgreSQL (feature `postgres`), RabbitMQ (feature `amqp`),
    /// NATS JetStream (feature `nats`) and memory.
    fn default() -> Self {
        let mut schemes = Self::empty();
        #[cfg(feature = "embedded")]
        schemes.register(conveyor_embedded::SCHEME);
        #[cfg(feature = "redis")]
        schemes.register(conveyor_redis::SCHEME);
        #[cfg(feature = "postgres")]
        schemes.register(conveyor_postgres::SCHEME);
        #[cfg(feature = "amqp")]
        schemes.register(conveyor_amqp::SCHEME);
        #[cfg(feature = "nats")]
        schemes.register(conveyor_nats::SCHEME);
        schemes.register(conveyor_memory::SCHEME);
        schemes
    }
}

impl Schemes {
    /// A registry with no schemes at all.
    pub fn empty() -> Self {
        Self {
            schemes: Vec::new(),
        }
    }

    /// The registry with `scheme` added (see [`Schemes::register`]).
    #[must_use]
    pub fn with(mut self, scheme: Scheme) -> Self {
        self.register(scheme);
        self
    }

    /// Adds `scheme`. For the names it answers to (and for bare paths, if it
    /// takes them) it replaces any scheme registered before; an earlier
    /// scheme left with no name of its own is dropped.
    pub fn register(&mut self, scheme: Scheme) -> &mut Self {
        self.schemes
            .retain(|old| old.names().iter().any(|n| !scheme.answers_to(n)));
        self.schemes.push(scheme);
        self
    }

    /// The registered schemes, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Scheme> {
        self.schemes.iter()
    }

    /// The scheme answering to the URL scheme `name` (any letter case).
    pub fn find(&self, name: &str) -> Option<&Scheme> {
        self.schemes.iter().rev().find(|s| s.answers_to(name))
    }

    /// The scheme that opens URLs without a scheme (file paths), if any.
    pub fn for_bare_paths(&self) -> Option<&Scheme> {
        self.schemes.iter().rev().find(|s| s.takes_bare_paths())
    }

    /// The scheme that opens `url`: the one registered for its scheme name, or
    /// for a URL without `SCHEME://` the one taking bare paths. An unknown
    /// scheme is an [`Error::InvalidConfig`] listing the registered ones.
    pub fn scheme_for(&self, url: &str) -> Result<&Scheme, Error> {
        if let Some(name) = scheme_of(url) {
            if let Some(scheme) = self.find(name) {
                return Ok(scheme);
            }
            if url[name.len() + 1..].starts_with("//") {
                return Err(Error::InvalidConfig(format!(
                    "unknown backend scheme {name:?}: {}",
                    self.expected()
                )));
            }
        }
        let scheme = self.for_bare_paths().ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{url:?} has no SCHEME:// and no registered backend takes bare paths: {}",
                self.expected()
            ))
        })?;
        // A bare word (`bogus`, `redis`) is a mistake, not a file to create.
        if !url.contains(['/', '\\', '.']) {
            return Err(Error::InvalidConfig(format!(
                "{url:?} is neither a backend URL nor a file path (a path has a `/` or a `.`, \
                 e.g. ./{url}.db): {}",
                self.expected()
            )));
        }
        Ok(scheme)
    }

    /// Opens the backend `url` names with the scheme [`Schemes::scheme_for`]
    /// picks.
    ///
    /// Errors never show the URL's credentials ([`Error::redacted`]).
    pub async fn connect(&self, url: &str) -> Result<Arc<dyn Backend>, Error> {
        self.open(url, false).await.map_err(Error::redacted)
    }

    /// Opens the backend `url` names only if its store already exists,
    /// creating nothing (no file, no schema): for commands that only read.
    pub async fn connect_existing(&self, url: &str) -> Result<Arc<dyn Backend>, Error> {
        self.open(url, true).await.map_err(Error::redacted)
    }

    /// Opens `url` (only an existing store, with `existing`), with the
    /// record keeper its URL names, if it names one.
    async fn open(&self, url: &str, existing: bool) -> Result<Arc<dyn Backend>, Error> {
        let scheme = self.scheme_for(url)?;
        let open_one = |scheme: &Scheme, url: &str| {
            if existing {
                scheme.open_existing(url)
            } else {
                scheme.open(url)
            }
        };
        let Some(param) = scheme.record_keeper_param() else {
            return open_one(scheme, url).await;
        };
        let mut parsed = BackendUrl::parse(url)?;
        let Some(store_url) = parsed.take(param)? else {
            return open_one(scheme, url).await;
        };
        let store_scheme = self.scheme_for(store_url)?;
        if store_scheme.record_keeper_param().is_some() {
            return Err(Error::InvalidConfig(format!(
                "{param}= names a {}:// store, which keeps no task records of its own",
                store_scheme.names()[0]
            )));
        }
        let store = open_one(store_scheme, store_url).await?;
        if let Err(e) = store.record_keeper() {
            return Err(Error::InvalidConfig(format!(
                "{param}= names a store that cannot keep another backend's task records ({e}); \
                 name one with the record keeper part, such as redis://HOST:PORT/DB?prefix=P"
            )));
        }
        scheme.open_keeping(&parsed.to_url(), store).await
    }

    /// One line per scheme, `EXAMPLE  DESCRIPTION`, for `--help` texts.
    pub fn help(&self) -> String {
        let width = self
            .schemes
            .iter()
            .map(|s| s.example().len())
            .max()
            .unwrap_or(0);
        self.schemes
            .iter()
            .map(|s| format!("{:width$}  {}", s.example(), s.description()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What a URL may look like, for error messages.
    fn expected(&self) -> String {
        if self.schemes.is_empty() {
            return "no backend schemes are registered".to_string();
        }
        let names: Vec<&str> = self
            .schemes
            .iter()
            .flat_map(|s| s.names().iter().copied())
            .collect();
        let examples: Vec<&str> = self.schemes.iter().map(|s| s.example()).collect();
        format!(
            "registered are {} (e.g. {}); other backends need one of conveyor's cargo \
             features or a program's own Schemes::register",
            names.join(", "),
            examples.join(", ")
        )
    }
}
