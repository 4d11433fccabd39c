//! The Lua scripts that make every state change atomic, assembled once.
//!
//! Each script is the generated state-machine prelude
//! ([`lua_prelude`](crate::state_machine::lua_prelude)) and the history
//! bounds of `conveyor_core::attempt`, the shared helpers of
//! `lua/common.lua` (key names, the buffered sorted-set writes, `move` along a
//! transition) and its own body from `lua/<name>.lua` (the reserve script also
//! gets `lua/limits.lua`, the global handler limits). Redis runs a script to
//! its end without interleaving other clients' commands, so one script call is
//! one atomic step. Calls go out as `EVALSHA`; after a server restart (empty
//! script cache) the client answers `NOSCRIPT` by loading the script and
//! calling again ([`redis::Script::invoke_async`]).

use std::sync::OnceLock;

use conveyor_core::attempt::{ERROR_CHARS, HISTORY_LIMIT};
use redis::Script;

use crate::state_machine::lua_prelude;

const COMMON: &str = include_str!("lua/common.lua");
const LIMITS: &str = include_str!("lua/limits.lua");

/// One compiled script per backend operation.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) reserve: Script,
    pub(crate) renew: Script,
    pub(crate) finish: Script,
    pub(crate) cancel: Script,
    pub(crate) recover: Script,
    pub(crate) prune: Script,
    pub(crate) purge: Script,
    pub(crate) requeue: Script,
    pub(crate) list: Script,
    pub(crate) stats: Script,
    pub(crate) lead: Script,
}

/// The full source of a script with body `body`.
pub(crate) fn source(body: &str) -> String {
    format!(
        "{}\nlocal HISTORY_LIMIT = {HISTORY_LIMIT}\nlocal ERROR_CHARS = {ERROR_CHARS}\n{COMMON}\n{body}",
        lua_prelude()
    )
}

impl Scripts {
    /// The scripts, built on first use and shared by every backend.
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| {
            let s = |body: &str| Script::new(&source(body));
            Scripts {
                enqueue: s(include_str!("lua/enqueue.lua")),
                reserve: s(&format!("{LIMITS}\n{}", include_str!("lua/reserve.lua"))),
                renew: s(include_str!("lua/renew.lua")),
                finish: s(include_str!("lua/finish.lua")),
                cancel: s(include_str!("lua/cancel.lua")),
                recover: s(include_str!("lua/recover.lua")),
                prune: s(include_str!("lua/prune.lua")),
                purge: s(include_str!("lua/purge.lua")),
                requeue: s(include_str!("lua/requeue.lua")),
                list: s(include_str!("lua/list.lua")),
                stats: s(include_str!("lua/stats.lua")),
                lead: s(include_str!("lua/lead.lua")),
            }
        })
    }
}
