//! The Lua code that makes every state change atomic, assembled once.
//!
//! Each operation's code is the generated state-machine prelude
//! ([`lua_prelude`](crate::state_machine::lua_prelude)) and the history
//! bounds of `conveyor_core::attempt`, the shared helpers of
//! `lua/common/` (key names, the buffered sorted-set writes, `move` along a
//! transition), the global handler limits of `lua/limits.lua`, and its own
//! body from `lua/<name>.lua`. Redis runs it to its end without interleaving
//! other clients' commands, so one call is one atomic step.
//!
//! The code reaches the server in one of two forms (see
//! [`ScriptMode`](crate::ScriptMode)):
//!
//! - **A function library** (Redis 7 and later): every body becomes a function
//!   of one library, loaded once with `FUNCTION LOAD` and called with `FCALL`.
//!   The prelude and the helpers run once, when the library loads, rather
//!   than at every call: about 8 µs of server time per call on this code.
//!   The library is named after a hash of its code (`conveyor_<hash>`), so
//!   workers of different conveyor versions sharing a server each call their
//!   own.
//! - **Scripts**: one whole script per operation, called with `EVALSHA`.

use std::sync::OnceLock;

use conveyor_core::attempt::{ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::CANCELLED_WHILE_RUNNING;
use redis::Script;

use crate::state_machine::lua_prelude;

/// The helpers every operation shares, in six parts run in this order.
const COMMON: &str = concat!(
    include_str!("lua/common/names.lua"),
    include_str!("lua/common/leases.lua"),
    include_str!("lua/common/records.lua"),
    include_str!("lua/common/steps.lua"),
    include_str!("lua/common/kept.lua"),
    include_str!("lua/common/workflows.lua"),
);
const LIMITS: &str = include_str!("lua/limits.lua");

/// The operations, one Lua body each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Enqueue,
    Reserve,
    Renew,
    Finish,
    Cancel,
    Recover,
    Prune,
    Purge,
    Requeue,
    List,
    Stats,
    Get,
    Lead,
    Keep,
    Forget,
    KeptList,
    KeptStats,
    KeptPurge,
    KeptExpire,
    KeptEntry,
    WfSubmit,
    WfApply,
    WfPrune,
    WfEnds,
    Sched,
}

impl Op {
    const ALL: [Op; 25] = [
        Op::Enqueue,
        Op::Reserve,
        Op::Renew,
        Op::Finish,
        Op::Cancel,
        Op::Recover,
        Op::Prune,
        Op::Purge,
        Op::Requeue,
        Op::List,
        Op::Stats,
        Op::Get,
        Op::Lead,
        Op::Keep,
        Op::Forget,
        Op::KeptList,
        Op::KeptStats,
        Op::KeptPurge,
        Op::KeptExpire,
        Op::KeptEntry,
        Op::WfSubmit,
        Op::WfApply,
        Op::WfPrune,
        Op::WfEnds,
        Op::Sched,
    ];

    /// Whether the operation only reads, so sending it twice is as sending
    /// it once.
    pub(crate) fn reads_only(self) -> bool {
        matches!(
            self,
            Op::List | Op::Stats | Op::Get | Op::KeptList | Op::KeptStats
        )
    }

    /// Whether a call of the operation that fewer replicas confirmed than
    /// asked still answers (with a warning) rather than failing: a claim or
    /// a renewal stands on the primary, and hiding it would leave its tasks
    /// leased, run by nobody, until the leases ran out. If a failover loses
    /// it, the tasks are claimed again under new tokens, and the lost
    /// claim's settles are refused.
    pub(crate) fn answers_unconfirmed(self) -> bool {
        matches!(self, Op::Reserve | Op::Renew)
    }

    /// The operation's name: its body's file name and its function's suffix.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Enqueue => "enqueue",
            Op::Reserve => "reserve",
            Op::Renew => "renew",
            Op::Finish => "finish",
            Op::Cancel => "cancel",
            Op::Recover => "recover",
            Op::Prune => "prune",
            Op::Purge => "purge",
            Op::Requeue => "requeue",
            Op::List => "list",
            Op::Stats => "stats",
            Op::Get => "get",
            Op::Lead => "lead",
            Op::Keep => "keep",
            Op::Forget => "forget",
            Op::KeptList => "kept_list",
            Op::KeptStats => "kept_stats",
            Op::KeptPurge => "kept_purge",
            Op::KeptExpire => "kept_expire",
            Op::KeptEntry => "kept_entry",
            Op::WfSubmit => "wf_submit",
            Op::WfApply => "wf_apply",
            Op::WfPrune => "wf_prune",
            Op::WfEnds => "wf_ends",
            Op::Sched => "sched",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Op::Enqueue => include_str!("lua/enqueue.lua"),
            Op::Reserve => include_str!("lua/reserve.lua"),
            Op::Renew => include_str!("lua/renew.lua"),
            Op::Finish => include_str!("lua/finish.lua"),
            Op::Cancel => include_str!("lua/cancel.lua"),
            Op::Recover => include_str!("lua/recover.lua"),
            Op::Prune => include_str!("lua/prune.lua"),
            Op::Purge => include_str!("lua/purge.lua"),
            Op::Requeue => include_str!("lua/requeue.lua"),
            Op::List => include_str!("lua/list.lua"),
            Op::Stats => include_str!("lua/stats.lua"),
            Op::Get => include_str!("lua/get.lua"),
            Op::Lead => include_str!("lua/lead.lua"),
            Op::Keep => include_str!("lua/keep.lua"),
            Op::Forget => include_str!("lua/forget.lua"),
            Op::KeptList => include_str!("lua/kept_list.lua"),
            Op::KeptStats => include_str!("lua/kept_stats.lua"),
            Op::KeptPurge => include_str!("lua/kept_purge.lua"),
            Op::KeptExpire => include_str!("lua/kept_expire.lua"),
            Op::KeptEntry => include_str!("lua/kept_entry.lua"),
            Op::WfSubmit => include_str!("lua/wf_submit.lua"),
            Op::WfApply => include_str!("lua/wf_apply.lua"),
            Op::WfPrune => include_str!("lua/wf_prune.lua"),
            Op::WfEnds => include_str!("lua/wf_ends.lua"),
            Op::Sched => include_str!("lua/sched.lua"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Both forms of the code, built on first use and shared by every backend.
#[derive(Debug)]
pub(crate) struct Code {
    /// One script per operation, indexed by [`Op`].
    scripts: Vec<Script>,
    /// The function library's name (`conveyor_<hash>`).
    library: String,
    /// The library's source, as `FUNCTION LOAD` takes it.
    library_source: String,
    /// Each operation's function name, indexed by [`Op`].
    functions: Vec<String>,
}

/// The key guard of debug builds (`lua/common/key_guard.lua`): every call
/// the code makes refuses a key outside the namespace. Empty in release
/// builds.
const KEY_GUARD: &str = if cfg!(debug_assertions) {
    include_str!("lua/common/key_guard.lua")
} else {
    ""
};

/// The shared part of every form: prelude, the key guard (debug builds),
/// history bounds, helpers, limits.
fn shared() -> String {
    format!(
        "{}\n{KEY_GUARD}\nlocal HISTORY_LIMIT = {HISTORY_LIMIT}\nlocal ERROR_CHARS = {ERROR_CHARS}\n\
         local CANCELLED_WHILE_RUNNING = '{CANCELLED_WHILE_RUNNING}'\n{COMMON}\n{LIMITS}\n",
        lua_prelude()
    )
}

/// The whole script of `op`: the shared code, `begin` with the prefix, the body.
pub(crate) fn script_source(op: Op) -> String {
    format!("{}begin(ARGV[1])\n{}", shared(), op.body())
}

/// The function library under `name`: `ARGV` is a local the entry point of
/// each function sets from its arguments, each body a local function.
fn library_source(name: &str) -> String {
    let mut out = format!("#!lua name={name}\nlocal ARGV\n{}", shared());
    for op in Op::ALL {
        out.push_str(&format!(
            "local function op_{}()\n{}\nend\n",
            op.name(),
            op.body()
        ));
    }
    out.push_str(
        "local function entry(op)\n  return function(_, args)\n    ARGV = args\n    begin(args[1])\n    return op()\n  end\nend\n",
    );
    for op in Op::ALL {
        out.push_str(&format!(
            "redis.register_function('{name}_{0}', entry(op_{0}))\n",
            op.name()
        ));
    }
    out
}

impl Code {
    /// The code, built on first use.
    pub(crate) fn get() -> &'static Code {
        static CODE: OnceLock<Code> = OnceLock::new();
        CODE.get_or_init(|| {
            // Named after a hash of the library as it would be under a fixed
            // name, so the name depends on the code alone.
            let hash = Script::new(&library_source("conveyor")).get_hash()[..16].to_string();
            let library = format!("conveyor_{hash}");
            Code {
                scripts: Op::ALL
                    .iter()
                    .map(|op| Script::new(&script_source(*op)))
                    .collect(),
                functions: Op::ALL
                    .iter()
                    .map(|op| format!("{library}_{}", op.name()))
                    .collect(),
                library_source: library_source(&library),
                library,
            }
        })
    }

    /// The script of `op`.
    pub(crate) fn script(&self, op: Op) -> &Script {
        &self.scripts[op.index()]
    }

    /// The function name of `op` in the library.
    pub(crate) fn function(&self, op: Op) -> &str {
        &self.functions[op.index()]
    }

    /// The library's name.
    pub(crate) fn library(&self) -> &str {
        &self.library
    }

    /// The library's source.
    pub(crate) fn library_source(&self) -> &str {
        &self.library_source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's Redis, as the integration tests name it.
    fn local_redis() -> redis::Connection {
        let url = std::env::var("CONVEYOR_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("the local Redis")
    }

    /// Runs `body` after the shared code, as a script, in the namespace
    /// `prefix`.
    fn eval(body: &str, prefix: &str) -> Result<redis::Value, redis::RedisError> {
        let source = format!("{}begin(ARGV[1])\n{body}", shared());
        redis::cmd("EVAL")
            .arg(source)
            .arg(1)
            .arg(prefix)
            .arg(prefix)
            .query(&mut local_redis())
    }

    #[test]
    #[cfg(debug_assertions)]
    fn the_key_guard_refuses_a_key_outside_the_namespace() {
        let prefix = format!("guard-{:016x}:", fastrand::u64(..));
        let inside = eval("return redis.call('SET', P .. 'x', 1)", &prefix);
        assert!(inside.is_ok(), "{inside:?}");
        let _ = eval("return redis.call('DEL', P .. 'x')", &prefix);
        for stray in [
            "return redis.call('SET', 'stray', 1)",
            "return redis.pcall('GET', 'stray')",
            "return redis.call('DEL', P .. 'x', 'stray')",
            "return redis.call('HGET', 1, 'f')",
        ] {
            let e = eval(stray, &prefix).expect_err(stray);
            assert!(
                e.to_string().contains("outside the namespace"),
                "{stray}: {e}"
            );
        }
        assert!(eval("return redis.call('TIME')", &prefix).is_ok());
    }

    /// The Lua code without its comments.
    fn code_lines() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lua");
        let mut files = Vec::new();
        for sub in [dir.clone(), dir.join("common")] {
            for e in std::fs::read_dir(&sub).expect("lua dir") {
                let path = e.expect("entry").path();
                if path.extension().is_some_and(|x| x == "lua") {
                    files.push(path);
                }
            }
        }
        let mut out = Vec::new();
        for path in files {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            for line in std::fs::read_to_string(&path).expect("lua file").lines() {
                let code = line.split("--").next().unwrap_or("").to_string();
                out.push((name.clone(), code));
            }
        }
        out
    }

    /// The arguments of each `redis.call(` or `redis.pcall(` in `line`,
    /// split at top-level commas (calls spread over lines are not used).
    fn calls_in(line: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (at, _) in line.match_indices("redis.") {
            let rest = &line[at + "redis.".len()..];
            let Some(args) = rest
                .strip_prefix("call(")
                .or_else(|| rest.strip_prefix("pcall("))
            else {
                continue;
            };
            let (mut depth, mut quote, mut cur, mut parts) =
                (0i32, None, String::new(), Vec::new());
            for c in args.chars() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(' | '{' | '[') => depth += 1,
                    (None, ')') if depth == 0 => break,
                    (None, ')' | '}' | ']') => depth -= 1,
                    (None, ',') if depth == 0 => {
                        parts.push(cur.trim().to_string());
                        cur.clear();
                        continue;
                    }
                    _ => {}
                }
                cur.push(c);
            }
            parts.push(cur.trim().to_string());
            out.push(parts);
        }
        out
    }

    /// The lint half of the key check (the guard above is the other): no
    /// call names its key as a literal or takes it from the caller's
    /// arguments unchecked, the fixed key names are all built on the
    /// prefix, and the code uses only the API the guard passes through.
    #[test]
    fn every_key_is_built_on_the_prefix() {
        let mut wrong = Vec::new();
        let mut calls = 0;
        for (file, line) in code_lines() {
            for args in calls_in(&line) {
                calls += 1;
                let cmd = args[0].trim_matches('\'').to_ascii_uppercase();
                let keys: &[String] = match cmd.as_str() {
                    "TIME" => &[],
                    "DEL" | "EXISTS" => &args[1..],
                    _ => &args[1..2.min(args.len())],
                };
                for k in keys {
                    let literal = k.starts_with('\'') || k.starts_with('"');
                    if literal || k.contains("ARGV") || k.contains("KEYS") || k.is_empty() {
                        wrong.push(format!("{file}: {cmd} on {k}: {line}"));
                    }
                }
            }
            // Fixed names (begin) are the prefix and a literal.
            let t = line.trim();
            let fixed = t.split_once(" = ").filter(|(name, _)| {
                let n = name.trim();
                !n.is_empty()
                    && !n.starts_with("local")
                    && n.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    || n.starts_with("wf.")
                        && n[3..].chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    || n == "expiry.all"
                    || n == "expiry.kept"
            });
            if let Some((name, value)) = fixed {
                if file == "names.lua" && name.trim() != "P" && !value.starts_with("P .. '") {
                    wrong.push(format!("{file}: {name} is not built on the prefix: {line}"));
                }
            }
            for (at, _) in line.match_indices("redis.") {
                let api: String = line[at + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let known = ["call", "pcall", "error_reply", "register_function"];
                if !known.contains(&api.as_str()) {
                    wrong.push(format!(
                        "{file}: redis.{api} is not passed by the key guard"
                    ));
                }
            }
        }
        assert!(calls > 150, "only {calls} calls found");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_library_loads() {
        let mut conn = local_redis();
        let loaded: Result<String, _> = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(Code::get().library_source())
            .query(&mut conn);
        assert_eq!(loaded.as_deref(), Ok(Code::get().library()));
    }

    #[test]
    fn every_operation_has_a_function_and_a_script() {
        let code = Code::get();
        assert!(code.library().starts_with("conveyor_"));
        assert_eq!(code.library().len(), "conveyor_".len() + 16);
        for op in Op::ALL {
            assert_eq!(Op::ALL[op.index()], op);
            let f = code.function(op);
            assert!(f.ends_with(op.name()) && f.starts_with(code.library()));
            assert!(code
                .library_source()
                .contains(&format!("redis.register_function('{f}'")));
            assert!(code.script(op).get_hash().len() == 40);
        }
    }
}
