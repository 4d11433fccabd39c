//! The PostgreSQL backend's URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
//! (or `postgresql://`), with conveyor's own parameter `schema=S` (the schema
//! holding the tables, migrated on connect; default
//! [`DEFAULT_SCHEMA`](crate::DEFAULT_SCHEMA)), `max_value=BYTES` (refuse
//! params and results over it: [`crate::Builder::max_value`]) and the
//! driver's own parameters
//! (`sslmode=`, `connect_timeout=`, …), which go on to it unchanged.
//!
//! `schema` is taken out before the URL reaches the driver and used as written
//! (no percent-decoding): letters, digits and `_`. A parameter that is neither
//! conveyor's nor the driver's is refused, naming the ones allowed.

use std::sync::Arc;

use conveyor_core::{opening, Backend, BackendUrl, Error, OpenFuture, Scheme};

use crate::PostgresBackend;

/// Opens a [`PostgresBackend`] from `postgres://USER@HOST/DB?schema=S`.
pub const SCHEME: Scheme = Scheme::new(
    &["postgres", "postgresql"],
    "postgres://USER@HOST/DB?schema=S",
    "PostgreSQL, tables in the schema S (default conveyor), migrated on connect",
    open,
)
.with_open_existing(open_existing);

/// The URL parameters the driver (`tokio-postgres`) understands; checked
/// against it by a test, so a driver upgrade that drops one is noticed.
const DRIVER_PARAMS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// The TLS parameters conveyor reads itself (libpq's names; `sslmode`'s
/// `verify-ca` and `verify-full` too) and takes out before the driver.
const TLS_PARAMS: &[&str] = &["sslrootcert", "sslcert", "sslkey"];

/// Where to connect: the driver's URL and the schema, if the URL names one.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    url: String,
    schema: Option<String>,
    max_value: Option<usize>,
}

fn target(url: &str) -> Result<Target, Error> {
    let mut parsed = BackendUrl::parse_as(url, SCHEME.names())?;
    let schema = parsed.take("schema")?.map(str::to_string);
    let max_value = parsed.take_max_value()?;
    let allowed: Vec<&str> = ["schema", "max_value"]
        .into_iter()
        .chain(DRIVER_PARAMS.iter().copied())
        .chain(TLS_PARAMS.iter().copied())
        .collect();
    parsed.allow_only(&allowed)?;
    Ok(Target {
        url: parsed.to_url(),
        schema,
        max_value,
    })
}

/// Opens the backend only if its schema exists at this build's version,
/// creating and migrating nothing (a command that only reads).
fn open_existing(url: &str) -> OpenFuture {
    let target = target(url);
    Box::pin(async move {
        let Target {
            url,
            schema,
            max_value,
        } = target?;
        let mut builder = PostgresBackend::builder(&url).migrate(false);
        if let Some(schema) = &schema {
            builder = builder.schema(schema);
        }
        if let Some(cap) = max_value {
            builder = builder.max_value(cap);
        }
        let backend = builder.connect().await?;
        let name = schema.as_deref().unwrap_or(crate::DEFAULT_SCHEMA);
        match backend.schema_version().await? {
            None => Err(Error::InvalidConfig(format!(
                "no conveyor schema {name:?} in this database: nothing was ever enqueued there. \
                 Check --backend (or CONVEYOR_URL) and ?schema=; a worker, `conveyor submit` or \
                 `conveyor migrate` creates it"
            ))),
            Some(v) if v < crate::SCHEMA_VERSION => Err(Error::InvalidConfig(format!(
                "the conveyor schema {name:?} is at version {v}, this conveyor needs {}: run \
                 `conveyor migrate` (or start a worker) first",
                crate::SCHEMA_VERSION
            ))),
            Some(_) => Ok(Arc::new(backend) as Arc<dyn Backend>),
        }
    })
}

fn open(url: &str) -> OpenFuture {
    opening(target(url), |t: Target| async move {
        let mut builder = PostgresBackend::builder(&t.url);
        if let Some(schema) = &t.schema {
            builder = builder.schema(schema);
        }
        if let Some(cap) = t.max_value {
            builder = builder.max_value(cap);
        }
        builder.connect().await
    })
}

/// The fuzz test of this parser (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::{target, Target, DRIVER_PARAMS};
    use conveyor_core::Error;

    fn t(url: &str, schema: Option<&str>) -> Target {
        Target {
            url: url.into(),
            schema: schema.map(Into::into),
            max_value: None,
        }
    }

    #[test]
    fn max_value_is_taken_out_and_checked() {
        let got = target("postgres://h/db?max_value=4096&sslmode=disable").expect("url");
        assert_eq!(got.max_value, Some(4096));
        assert_eq!(got.url, "postgres://h/db?sslmode=disable");
        for bad in ["0", "-1", "1k", ""] {
            let e = target(&format!("postgres://h/db?max_value={bad}")).expect_err(bad);
            assert!(e.to_string().contains("max_value"), "{e}");
        }
    }

    #[test]
    fn accepted_forms_and_defaults() {
        let cases = [
            ("postgres://u@h/db", t("postgres://u@h/db", None)),
            (
                "postgresql://u:pw@h:5433/db?schema=app1",
                t("postgresql://u:pw@h:5433/db", Some("app1")),
            ),
            (
                "postgres://u@h/db?sslmode=disable&schema=s1&connect_timeout=2",
                t(
                    "postgres://u@h/db?sslmode=disable&connect_timeout=2",
                    Some("s1"),
                ),
            ),
            ("POSTGRES://u@h/db", t("POSTGRES://u@h/db", None)),
        ];
        for (url, want) in cases {
            assert_eq!(target(url).expect(url), want, "{url}");
        }
    }

    #[test]
    fn unknown_parameters_and_other_schemes_are_refused() {
        let msg = target("postgres://u@h/db?shema=x")
            .expect_err("typo")
            .to_string();
        assert!(
            msg.contains("\"shema\"")
                && msg.contains("schema, max_value, user")
                && msg.contains("sslmode"),
            "{msg}"
        );
        for url in [
            "postgres://u@h/db?shema=x",
            "postgres://u@h/db?schema=a&schema=b",
            "redis://h/0",
            "host=h dbname=db",
        ] {
            assert!(matches!(target(url), Err(Error::InvalidConfig(_))), "{url}");
        }
    }

    #[test]
    fn tls_parameters_pass_to_the_builder() {
        let url = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&schema=s";
        let t = target(url).expect("accepted");
        assert_eq!(
            t.url,
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem"
        );
    }

    #[test]
    fn the_driver_knows_every_parameter_passed_to_it() {
        for name in DRIVER_PARAMS {
            let url = format!("postgres://u@h/db?{name}=1");
            if let Err(e) = tokio_postgres::Config::from_str(&url) {
                let msg = e.to_string();
                assert!(!msg.contains("unknown option"), "{name}: {msg}");
            }
        }
    }
}
