//! One call of an operation's Lua code: `FCALL` of its function in conveyor's
//! library, or `EVALSHA` of its script, with the arguments built once.
//!
//! A server that lost the code (restarted without persistence, `FUNCTION
//! FLUSH`, `SCRIPT FLUSH`) answers "Function not found" or `NOSCRIPT`; the
//! call then loads the code and is sent once more.

use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind, ToRedisArgs, Value};

use conveyor_core::Error;

use crate::primary::Primary;
use crate::reply::redis_error;
use crate::scripts::{Code, Op};

/// How conveyor's Lua code reaches the Redis server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptMode {
    /// A function library where the server has functions (Redis 7 and
    /// later) and lets this user load one; scripts otherwise. The default.
    #[default]
    Auto,
    /// A function library (`FUNCTION LOAD` once, then `FCALL`): the shared
    /// code runs once at load rather than at every call. Connecting fails
    /// when the server cannot load it.
    Functions,
    /// One script per operation (`EVALSHA`), as Redis 6 and proxies without
    /// `FCALL` support take them.
    Eval,
}

impl ScriptMode {
    /// The mode named `s` (`auto`, `functions`, `eval`), as the URL
    /// parameter `scripts=` gives it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "functions" => Some(Self::Functions),
            "eval" => Some(Self::Eval),
            _ => None,
        }
    }
}

/// Loads the code as `mode` asks; returns the form calls use
/// ([`ScriptMode::Functions`] or [`ScriptMode::Eval`]). Scripts are loaded
/// on their first `NOSCRIPT`.
pub(crate) async fn prepare(conn: &mut Primary, mode: ScriptMode) -> Result<ScriptMode, Error> {
    match mode {
        ScriptMode::Eval => Ok(ScriptMode::Eval),
        ScriptMode::Functions => {
            load_library(conn)
                .await
                .map_err(|e| redis_error("loading the function library", e))?;
            Ok(ScriptMode::Functions)
        }
        ScriptMode::Auto => match load_library(conn).await {
            Ok(()) => Ok(ScriptMode::Functions),
            Err(e) if refused(&e) => {
                tracing::warn!(
                    error = %e,
                    "the Redis server did not load conveyor's function library; using scripts (EVALSHA)"
                );
                Ok(ScriptMode::Eval)
            }
            Err(e) => Err(redis_error("loading the function library", e)),
        },
    }
}

/// Whether the server's answer to `FUNCTION LOAD` says it will not take a
/// library (no such command, not permitted for this user), as opposed to a
/// connection failure or a server that is not ready.
fn refused(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::NoPerm)
            | ErrorKind::Extension
    )
}

async fn load_library(conn: &mut Primary) -> Result<(), RedisError> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(Code::get().library_source())
        .query_async::<String>(conn)
        .await
        .map(drop)
}

/// One operation's call, its arguments added with [`Call::arg`].
pub(crate) struct Call {
    op: Op,
    mode: ScriptMode,
    cmd: Cmd,
}

impl Call {
    /// A call of `op` in `mode` (as [`prepare`] resolved it), with the key
    /// prefix as its declared key and its first argument.
    pub(crate) fn new(op: Op, mode: ScriptMode, prefix: &str) -> Self {
        let code = Code::get();
        let mut cmd = match mode {
            ScriptMode::Eval => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(code.script(op).get_hash());
                c
            }
            ScriptMode::Functions | ScriptMode::Auto => {
                let mut c = redis::cmd("FCALL");
                c.arg(code.function(op));
                c
            }
        };
        // The prefix is the one key the call declares (KEYS[1]: a cluster
        // routes by it, and every key the code touches is built on it) and
        // the first argument (ARGV[1], which the code reads).
        cmd.arg(1).arg(prefix).arg(prefix);
        Self { op, mode, cmd }
    }

    /// Adds an argument (`ARGV[i]` in the body).
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Sends the call; loads the code and sends it again when the server
    /// lost it (a restarted server), and sends a call that only reads once
    /// more when the connection it went out on had dropped (the manager
    /// connects again for the second): a read after a server restart
    /// answers instead of failing once.
    pub(crate) async fn run(&self, conn: &mut Primary) -> Result<Value, RedisError> {
        match self.run_once(conn).await {
            Err(e) if self.op.reads_only() && (e.is_io_error() || e.is_connection_dropped()) => {
                self.run_once(conn).await
            }
            other => other,
        }
    }

    async fn run_once(&self, conn: &mut Primary) -> Result<Value, RedisError> {
        match self.send(conn).await {
            Err(e) if self.lost(&e) => {
                match self.mode {
                    ScriptMode::Eval => {
                        Code::get().script(self.op).load_async(conn).await?;
                    }
                    ScriptMode::Functions | ScriptMode::Auto => load_library(conn).await?,
                }
                self.send(conn).await
            }
            other => other,
        }
    }

    /// Sends the call; a write, when the connection asks writes to wait
    /// for replicas, with `WAIT` in the same pipeline (so on the same
    /// connection: `WAIT` counts the replicas that have everything its
    /// connection wrote). A write fewer replicas confirmed in time fails as
    /// unavailable: it was made on the primary and may or may not survive
    /// losing it. A claim or a renewal answers all the same
    /// ([`Op::answers_unconfirmed`]).
    async fn send(&self, conn: &mut Primary) -> Result<Value, RedisError> {
        let wait = if self.op.reads_only() {
            None
        } else {
            conn.wait()
        };
        let Some((replicas, ms)) = wait else {
            return self.cmd.query_async(conn).await;
        };
        let mut pipe = redis::pipe();
        pipe.add_command(self.cmd.clone())
            .cmd("WAIT")
            .arg(replicas)
            .arg(ms);
        let (value, confirmed): (Value, u32) = pipe.query_async(conn).await?;
        if confirmed < replicas && self.op.answers_unconfirmed() {
            tracing::warn!(
                op = self.op.name(),
                confirmed,
                asked = replicas,
                "a claim fewer replicas confirmed than asked stands on the primary; a failover may \
                 lose it, and then its tasks are claimed again"
            );
        } else if confirmed < replicas {
            return Err(RedisError::from((
                ErrorKind::Io,
                "a write not confirmed by the replicas asked for",
                format!(
                    "{} of {replicas} replicas had {} within {ms} ms",
                    confirmed,
                    self.op.name()
                ),
            )));
        }
        Ok(value)
    }

    /// Whether `e` says the server does not have the code.
    fn lost(&self, e: &RedisError) -> bool {
        match self.mode {
            ScriptMode::Eval => e.kind() == ErrorKind::Server(ServerErrorKind::NoScript),
            ScriptMode::Functions | ScriptMode::Auto => {
                e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
                    && e.detail()
                        .is_some_and(|d| d.starts_with("Function not found"))
            }
        }
    }
}
