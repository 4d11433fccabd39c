//! [`RedisBackend`]: conveyor's durable queue contract on Redis.
//!
//! Each operation is one call of its Lua code (see [`scripts`](crate::scripts)), so
//! every state change is atomic and a batch of tasks costs one round trip.
//! Times come from the injected [`Clock`] and travel as script arguments; the
//! server's own clock is never read, so tests move time by hand and several
//! client machines agree as far as their clocks do. The connection is a
//! [`Primary`]: after the server restarts (or the network drops), calls
//! fail with [`Error::Backend`] until it reconnects, then succeed again;
//! with Sentinel it follows a failover to the promoted replica; code missing
//! from a restarted server is loaded again (see [`calls`](crate::calls)).
//!
//! [`Primary`]: crate::primary::Primary

use crate::RedisTls;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Clock, Enqueued, Error, Finish,
    FinishAction, FinishMark, GlobalLimits, HandlerLimits, Inspection, Lease, ListOrder,
    ListParams, Maintenance, NewTask, QueueStats, ReserveParams, Reserved, ResultStore, Retention,
    SystemClock, TaskId, TaskRecord, TaskState, ValueLimit,
};
use redis::Value;

use crate::calls::{Call, ScriptMode};
use crate::group_enqueue::{GroupEnqueue, Link};
use crate::keys::{Keys, DEFAULT_PREFIX};
use crate::reply::{self, bad, redis_error};
use crate::scripts::Op;

use crate::primary::Primary;
use crate::wakeups::Wakeups;

/// Most tasks one `reserve` call hands out (a larger `max` gets this many), so
/// one script never holds the server for long.
pub const MAX_RESERVE: usize = 10_000;

/// Due scheduled or retrying tasks one `reserve` call promotes at most; a
/// larger backlog is promoted over the following calls.
const PROMOTE_LIMIT: usize = 1_000;
/// Tasks one maintenance script (recover, prune, purge) handles per call; the
/// backend calls it again until a batch comes back short.
pub(crate) const MAINTENANCE_BATCH: usize = 1_000;
/// Due, not yet promoted tasks `stats` looks at for the oldest ready time.
const STATS_DUE_SCAN: usize = 1_000;
/// Most tasks one `list` call returns.
const MAX_LIST: usize = 1 << 31;

/// A Redis-backed durable task store. Cheap to clone (clones share one
/// connection).
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
    /// The most bytes of params or result one task may carry: the server's
    /// (read at connect), or lower ([`RedisBackend::with_max_value`]). Set
    /// once, before the handle is used: no lock on the hot paths.
    pub(crate) limit: Arc<ValueLimit>,
}

pub(crate) struct Inner {
    pub(crate) conn: Primary,
    pub(crate) keys: Keys,
    pub(crate) clock: Arc<dyn Clock>,
    wake: Wakeups,
    group: GroupEnqueue,
    /// How the Lua code is called: functions or scripts, as resolved at
    /// connect.
    mode: ScriptMode,
    /// Workflow graphs read back, by workflow id.
    pub(crate) graphs: conveyor_core::workflow::Graphs,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.keys.prefix())
            .field("clock", &self.inner.clock)
            .field("scripts", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBackend {
    /// Connects to the Redis at `url` (`redis://host:port/db`) with the default
    /// key prefix `conveyor:` and the system clock.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, DEFAULT_PREFIX, Arc::new(SystemClock)).await
    }

    /// Connects with every key under `prefix` (one namespace: give each
    /// deployment or test its own) and time read from `clock`.
    ///
    /// Fails with [`Error::InvalidConfig`] for a bad URL or an empty prefix,
    /// and with [`Error::Backend`] when the server cannot be reached.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        Self::connect_tls(url, prefix, clock, &RedisTls::default()).await
    }

    /// [`RedisBackend::connect_with`], trusting `tls.ca` instead of the
    /// public roots and presenting `tls.client` for a `rediss://` URL.
    pub async fn connect_tls(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
        tls: &RedisTls,
    ) -> Result<Self, Error> {
        Self::connect_using(url, prefix, clock, tls, ScriptMode::Auto).await
    }

    /// [`RedisBackend::connect_tls`], with conveyor's Lua code reaching the
    /// server as `scripts` says: a function library (loaded here, when
    /// connecting) or scripts. [`RedisBackend::script_mode`] tells which
    /// [`ScriptMode::Auto`] chose.
    pub async fn connect_using(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
        tls: &RedisTls,
        scripts: ScriptMode,
    ) -> Result<Self, Error> {
        if prefix.is_empty() {
            return Err(Error::InvalidConfig(
                "the Redis key prefix is empty (it namespaces every key)".into(),
            ));
        }
        let mut conn = Primary::connect(url, tls, prefix).await?;
        let mode = crate::calls::prepare(&mut conn, scripts).await?;
        let limit = crate::value_limit::server_limit(&mut conn).await;
        let keys = Keys::new(prefix);
        let wake = Wakeups::new(conn.clone(), keys.wake_channel(), keys.finished_channel());
        let group = GroupEnqueue::start(Link {
            conn: conn.clone(),
            prefix: keys.prefix().to_owned(),
            clock: clock.clone(),
            mode,
        });
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                keys,
                clock,
                wake,
                group,
                mode,
                graphs: Default::default(),
            }),
            limit: Arc::new(limit),
        })
    }

    /// The most bytes one task's params, or one result, may hold here: the
    /// server's `proto-max-bulk-len` less room for the rest of a task's
    /// record, or less ([`RedisBackend::with_max_value`]). `enqueue` refuses
    /// params over it, and `finish` a result over it, for that report
    /// alone, with a non-transient error naming both sizes.
    pub fn max_value(&self) -> usize {
        self.limit.max()
    }

    /// This handle (and its clones from now on) with
    /// [`RedisBackend::max_value`] lowered to `cap` bytes (a URL's
    /// `max_value=`); a cap above the server's limit changes nothing.
    pub fn with_max_value(mut self, cap: usize) -> Self {
        self.limit = Arc::new(self.limit.as_ref().clone().lowered(Some(cap)));
        self
    }

    /// This backend (and every handle sharing its connection: its clones)
    /// with every write waiting until `replicas` replicas have it, at most
    /// `within` (Redis `WAIT`, in the same pipeline as the write; at most
    /// 1.5 s, for the wait is part of the 2 s a call may take): the URL's
    /// `replicas=N&replicas_timeout_ms=MS`. A write fewer replicas
    /// confirmed in time fails as unavailable; it was made on the primary,
    /// and a worker's retry finds it there. Losing the primary then loses
    /// no write that was acknowledged, as long as the replica that had it
    /// is the one promoted (Sentinel promotes the most up-to-date one).
    /// Reads never wait.
    pub fn with_replicas(self, replicas: u32, within: Duration) -> Self {
        self.inner.conn.set_wait(replicas, within);
        self
    }

    /// Times calls moved to another server because the sentinels named a
    /// new primary (always 0 without Sentinel).
    pub fn primary_changes(&self) -> u64 {
        self.inner.conn.switches()
    }

    /// How this backend calls its Lua code: [`ScriptMode::Functions`] or
    /// [`ScriptMode::Eval`] (never [`ScriptMode::Auto`]: that resolved when
    /// connecting).
    pub fn script_mode(&self) -> ScriptMode {
        self.inner.mode
    }

    /// The name of conveyor's function library on the server
    /// (`conveyor_<hash of its code>`) when this backend calls functions.
    /// Each conveyor version loads its own; an old version's library can be
    /// removed with `FUNCTION DELETE` once no worker of that version runs.
    pub fn function_library(&self) -> Option<&'static str> {
        (self.inner.mode == ScriptMode::Functions).then(|| crate::scripts::Code::get().library())
    }

    /// The key prefix of this backend's namespace.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Deletes every key under this backend's prefix (its whole namespace:
    /// tasks, indexes, counters) with `SCAN` and `DEL`. Returns how many keys
    /// went. For tests and tearing a namespace down; not atomic.
    pub async fn clear(&self) -> Result<u64, Error> {
        let pattern = self.inner.keys.pattern();
        let mut conn = self.inner.conn.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("scan", e))?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error("del", e))?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub(crate) fn call(&self, op: Op) -> Call {
        Call::new(op, self.inner.mode, self.inner.keys.prefix())
    }

    pub(crate) async fn run(&self, what: &str, call: &Call) -> Result<Value, Error> {
        let mut conn = self.inner.conn.clone();
        call.run(&mut conn).await.map_err(|e| redis_error(what, e))
    }

    /// Runs a maintenance script until a batch comes back short; the script's
    /// reply is (done, examined).
    pub(crate) async fn run_batches(
        &self,
        what: &str,
        inv: &Call,
        pairs: bool,
    ) -> Result<u64, Error> {
        let mut total = 0u64;
        loop {
            let v = self.run(what, inv).await?;
            let (done, examined) = if pairs {
                let items = reply::array(v, what)?;
                let [done, examined]: [Value; 2] = items
                    .try_into()
                    .map_err(|_| bad(format!("{what}: expected two counts")))?;
                (
                    reply::number::<u64>(done, what)?,
                    reply::number::<u64>(examined, what)?,
                )
            } else {
                let n = reply::number::<u64>(v, what)?;
                (n, n)
            };
            total += done;
            if examined < MAINTENANCE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            failover: crate::FAILOVER,
            ..Capabilities::ALL
        }
    }

    /// Two: the second reservation's call waits on the connection while the
    /// server runs the first, so the server starts it the moment the first
    /// is answered instead of after the worker has read that answer and
    /// asked again.
    fn reserves_in_flight(&self) -> usize {
        2
    }

    /// Split: the server's one thread runs a reservation in time
    /// proportional to its tasks, so two half-size reservations keep it busy
    /// with one while the worker starts the tasks of the other, where one
    /// reservation of every free slot left it waiting for the worker.
    fn reserves_split(&self) -> bool {
        true
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        for t in &tasks {
            t.validate()?;
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        self.limit.check_batch(&tasks)?;
        self.inner.group.enqueue(tasks).await
    }

    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let (queues, max) = (params.queues, params.max);
        let now = self.inner.clock.now();
        let until = now.plus(params.lease);
        let mut inv = self.call(Op::Reserve);
        inv.arg(now.as_millis())
            .arg(until.as_millis())
            .arg(max.min(MAX_RESERVE))
            .arg(PROMOTE_LIMIT)
            .arg(params.worker.unwrap_or(""));
        let wanted = params.handlers.unwrap_or(&[]);
        inv.arg(wanted.len());
        for h in wanted {
            inv.arg(h);
        }
        for q in queues {
            inv.arg(q);
        }
        reply::reserved(
            reply::array(self.run("reserve", &inv).await?, "reserve")?,
            until,
        )
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let until = self.inner.clock.now().plus(lease);
        let mut inv = self.call(Op::Renew);
        inv.arg(until.as_millis());
        for l in leases {
            inv.arg(l.id.0).arg(l.token);
        }
        let items = reply::array(self.run("renew", &inv).await?, "renew")?;
        if items.len() != leases.len() {
            return Err(bad("renew: one reply per lease expected"));
        }
        items
            .into_iter()
            .map(|v| Ok(reply::int(v, "renew")? == 1))
            .collect()
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        // A report with a follow-up that cannot be stored is refused whole,
        // before the call.
        let mut out: Vec<Result<(), Error>> = self.limit.check_finishes(&reports);
        for (o, r) in out.iter_mut().zip(&reports) {
            if o.is_ok() {
                *o = r.validate_follow_ups();
            }
        }
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::Finish);
        // The retentions the reports carry, each sent once; plain
        // completions (no result, no follow-ups, no retention: the hot path)
        // go first as id, token pairs; every other report follows as 5
        // items, then the follow-ups. The script answers in that order,
        // `order` maps its replies back to `reports`.
        let plain = |r: &Finish| {
            matches!(r.action, FinishAction::Complete { result: None })
                && r.follow_ups.is_empty()
                && r.retention.is_none()
        };
        let sent = |i: &usize| out[*i].is_ok();
        let order: Vec<usize> = (0..reports.len())
            .filter(sent)
            .filter(|&i| plain(&reports[i]))
            .chain(
                (0..reports.len())
                    .filter(sent)
                    .filter(|&i| !plain(&reports[i])),
            )
            .collect();
        if order.is_empty() {
            return Ok(out);
        }
        let n_plain = order.iter().filter(|&&i| plain(&reports[i])).count();
        let mut retentions: Vec<Retention> = Vec::new();
        for &i in &order {
            if let Some(r) = reports[i].retention {
                if !retentions.contains(&r) {
                    retentions.push(r);
                }
            }
        }
        inv.arg(now.as_millis())
            .arg(n_plain)
            .arg(order.len() - n_plain)
            .arg(retentions.len());
        for r in &retentions {
            inv.arg(millis(r.finished)).arg(millis(r.dead));
        }
        for &i in &order {
            let r = &reports[i];
            inv.arg(r.lease.id.0).arg(r.lease.token);
            if plain(r) {
                continue;
            }
            // The kind's letter, and the number of its retention (from 1).
            let kind = |letter: &str| match r.retention {
                None => letter.to_string(),
                Some(ret) => {
                    let at = retentions.iter().position(|x| *x == ret).unwrap_or(0);
                    format!("{letter}{}", at + 1)
                }
            };
            match &r.action {
                FinishAction::Complete { result: None } => inv.arg(kind("C")).arg(0).arg(""),
                FinishAction::Complete {
                    result: Some(bytes),
                } => inv.arg(kind("C")).arg(1).arg(&bytes[..]),
                FinishAction::Retry { delay, error } => inv
                    .arg(kind("R"))
                    .arg(now.plus(*delay).as_millis())
                    .arg(error.as_str()),
                FinishAction::DeadLetter { error } => inv.arg(kind("D")).arg(0).arg(error.as_str()),
                FinishAction::Discard { reason } => inv.arg(kind("X")).arg(0).arg(reason.as_str()),
                FinishAction::Release => inv.arg("L").arg(0).arg(""),
            };
        }
        for (pos, &i) in order.iter().enumerate() {
            let follow_ups = &reports[i].follow_ups;
            if !follow_ups.is_empty() {
                inv.arg(pos + 1);
                crate::task_forms::push(&mut inv, follow_ups, now);
            }
        }
        let mut items = reply::array(self.run("finish", &inv).await?, "finish")?;
        if items.len() != order.len() + 1 {
            return Err(bad("finish: one reply per report and a count expected"));
        }
        let node_ends = items.pop().map(|v| reply::int(v, "finish")).transpose()?;
        for (v, &i) in items.into_iter().zip(&order) {
            if reply::int(v, "finish")? != 1 {
                out[i] = Err(Error::StaleLease(reports[i].lease.id));
            }
        }
        // Workflow nodes' tasks ended: their nodes settle now (maintenance
        // settles them if this process dies first). The reports applied are
        // those sent that are still `Ok`.
        if node_ends.is_some_and(|n| n > 0) {
            let applied: Vec<u64> = order
                .iter()
                .filter(|&&i| out[i].is_ok())
                .map(|&i| reports[i].lease.id.0)
                .collect();
            self.settle_after(Some(&applied)).await;
        }
        Ok(out)
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.wake.wait(queues, timeout).await;
        true
    }

    /// The wake-up subscription's reconnections (the command connection
    /// reconnects on the same losses, inside its connection manager).
    fn reconnects(&self) -> Option<u64> {
        Some(self.inner.wake.reconnects())
    }

    conveyor_core::own_parts!(all);
    conveyor_core::own_parts!(record_keeper);
    conveyor_core::own_parts!(workflows, schedules);
}

#[async_trait]
impl ResultStore for RedisBackend {
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let mut inv = self.call(Op::Get);
        inv.arg(id.0);
        match self.run("get", &inv).await? {
            Value::Nil => Ok(None),
            fields => reply::record_from_flat(id.0, fields).map(Some),
        }
    }

    async fn finish_mark(&self) -> Option<FinishMark> {
        self.inner.wake.finish_mark()
    }

    /// Woken by the message each finishing script publishes on the
    /// namespace's `finished` channel, heard by the backend's subscriber.
    async fn wait_finished(&self, id: TaskId, since: FinishMark, timeout: Duration) -> bool {
        self.inner.wake.wait_finished(id, since, timeout).await;
        true
    }
}

#[async_trait]
impl Inspection for RedisBackend {
    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let mut inv = self.call(Op::Stats);
        inv.arg(self.inner.clock.now().as_millis())
            .arg(STATS_DUE_SCAN);
        reply::stats_rows(self.run("stats", &inv).await?)
    }

    /// See `lua/list.lua` for the order (completed and cancelled tasks by
    /// finished-at) and the paging. A call that stops at its budget (a
    /// handler filter over a large backlog) is followed by another from where
    /// it stopped, so the server is never held long and the page still fills.
    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        self.list_by(Op::List, None, params).await
    }
}

impl RedisBackend {
    /// Lists through `op` (`list`, or `kept_list` with `now`, which takes
    /// it first): calls again from where a call stopped at its budget until
    /// the page is full or nothing more matches.
    pub(crate) async fn list_by(
        &self,
        op: Op,
        now: Option<conveyor_core::Timestamp>,
        params: &ListParams,
    ) -> Result<Vec<TaskRecord>, Error> {
        let what = op.name();
        let limit = params.limit.min(MAX_LIST);
        let mut out = Vec::new();
        let mut after = params.after.map(|id| id.0.to_string()).unwrap_or_default();
        while out.len() < limit {
            let mut inv = self.call(op);
            if let Some(now) = now {
                inv.arg(now.as_millis());
            }
            inv.arg(params.state.code())
                .arg(limit - out.len())
                .arg(u8::from(params.order == ListOrder::NewestFirst))
                .arg(&after)
                .arg(u8::from(params.handler.is_some()))
                .arg(params.handler.as_deref().unwrap_or(""));
            if let Some(q) = &params.queue {
                inv.arg(q);
            }
            let reply = reply::array(self.run(what, &inv).await?, what)?;
            let [rows, next]: [Value; 2] = reply
                .try_into()
                .map_err(|_| bad(format!("{what}: expected rows and a cursor")))?;
            for row in reply::array(rows, "list rows")? {
                let items = reply::array(row, "list row")?;
                let [id, fields]: [Value; 2] = items
                    .try_into()
                    .map_err(|_| bad(format!("{what}: expected an id and fields")))?;
                out.push(reply::record_from_flat(
                    reply::number(id, "list id")?,
                    fields,
                )?);
            }
            let next = reply::string(next, "list cursor")?;
            // Done, or (never expected) no progress: stop rather than loop.
            if next.is_empty() || next == after {
                break;
            }
            after = next;
        }
        Ok(out)
    }
}

#[async_trait]
impl Administration for RedisBackend {
    async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        let mut inv = self.call(Op::Cancel);
        inv.arg(self.inner.clock.now().as_millis()).arg(id.0);
        let items = reply::array(self.run("cancel", &inv).await?, "cancel")?;
        let mut items = items.into_iter();
        let code = reply::int(
            items.next().ok_or_else(|| bad("cancel: no state"))?,
            "cancel",
        )?;
        if code < 0 {
            return Err(Error::NotFound(id));
        }
        if let Some(ends) = items.next() {
            if reply::int(ends, "cancel")? > 0 {
                self.settle_after(Some(&[id.0])).await;
            }
        }
        TaskState::from_code(code).ok_or_else(|| {
            bad(format!(
                "cancel: task {id} has an unknown state code {code}"
            ))
        })
    }

    async fn requeue_dead(&self, ids: &[TaskId]) -> Result<u64, Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.call(Op::Requeue);
        inv.arg(self.inner.clock.now().as_millis());
        for id in ids {
            inv.arg(id.0);
        }
        reply::number(self.run("requeue", &inv).await?, "requeue")
    }

    async fn purge_dead(&self, queue: Option<&str>) -> Result<u64, Error> {
        let mut inv = self.call(Op::Purge);
        inv.arg(MAINTENANCE_BATCH);
        if let Some(q) = queue {
            inv.arg(q);
        }
        self.run_batches("purge", &inv, false).await
    }
}

#[async_trait]
impl Maintenance for RedisBackend {
    async fn recover_expired(&self) -> Result<u64, Error> {
        let mut inv = self.call(Op::Recover);
        inv.arg(self.inner.clock.now().as_millis())
            .arg(MAINTENANCE_BATCH);
        let n = self.run_batches("recover", &inv, true).await?;
        if n > 0 {
            tracing::debug!(tasks = n, "recovered expired leases");
        }
        // The workflow nodes whose tasks died here, and any end a crash
        // left unsettled.
        self.settle_ended(None).await?;
        Ok(n)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, Error> {
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::Prune);
        inv.arg(now.minus(retention.finished).as_millis())
            .arg(now.minus(retention.dead).as_millis())
            .arg(MAINTENANCE_BATCH)
            .arg(now.as_millis());
        let n = self.run_batches("prune", &inv, false).await?;
        self.prune_workflows(retention).await?;
        Ok(n)
    }

    async fn lead(&self, role: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::Lead);
        inv.arg(role)
            .arg(holder)
            .arg(now.plus(ttl).as_millis())
            .arg(now.as_millis());
        Ok(reply::int(self.run("lead", &inv).await?, "lead")? == 1)
    }
}

#[async_trait]
impl GlobalLimits for RedisBackend {
    async fn set_limits(&self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        limits.validate()?;
        let mut conn = self.inner.conn.clone();
        let key = self.inner.keys.limits();
        let mut cmd = if limits.is_unlimited() {
            redis::cmd("HDEL")
        } else {
            redis::cmd("HSET")
        };
        cmd.arg(&key).arg(handler);
        if !limits.is_unlimited() {
            cmd.arg(crate::limits::encode(&limits));
        }
        cmd.query_async::<i64>(&mut conn)
            .await
            .map_err(|e| redis_error("set_limits", e))?;
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        let mut conn = self.inner.conn.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.inner.keys.limits())
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("limits", e))?;
        let mut out = fields
            .iter()
            .map(|(h, v)| Ok((h.clone(), crate::limits::decode(h, v)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
