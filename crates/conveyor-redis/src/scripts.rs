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

/// The shared part of every form: prelude, history bounds, helpers, limits.
fn shared() -> String {
    format!(
        "{}\nlocal HISTORY_LIMIT = {HISTORY_LIMIT}\nlocal ERROR_CHARS = {ERROR_CHARS}\n\
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
