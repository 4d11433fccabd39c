//! The versioned entries the record keeper part keeps for another backend
//! (RabbitMQ's workflows, `conveyor_core::workflow::entries`), each call one
//! run of `lua/kept_entry.lua`: a hash per entry with its value and
//! revision, indexed by key, and counters for fresh ids.

use conveyor_core::{EntryWrite, Error};
use redis::Value;

use crate::backend::RedisBackend;
use crate::reply;
use crate::scripts::Op;

impl RedisBackend {
    /// One `kept_entry` call in `mode` on `key`, with `args` after it.
    async fn entry_call(&self, mode: &str, key: &str, args: &[&[u8]]) -> Result<Value, Error> {
        let mut call = self.call(Op::KeptEntry);
        call.arg(mode).arg(key);
        for a in args {
            call.arg(*a);
        }
        self.run("kept_entry", &call).await
    }

    pub(crate) async fn kept_entry_of(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        match self.entry_call("get", key, &[]).await? {
            Value::Nil | Value::Boolean(false) => Ok(None),
            v => {
                let mut items = reply::array(v, "kept_entry")?.into_iter();
                let (Some(value), Some(rev)) = (items.next(), items.next()) else {
                    return Err(reply::bad("kept_entry: a short reply"));
                };
                Ok(Some((
                    reply::bytes(value, "kept_entry")?,
                    reply::number(rev, "kept_entry")?,
                )))
            }
        }
    }

    pub(crate) async fn write_kept_entry(
        &self,
        key: &str,
        value: &[u8],
        when: EntryWrite,
    ) -> Result<Option<u64>, Error> {
        let rev;
        let got = match when {
            EntryWrite::Create => self.entry_call("create", key, &[value]).await?,
            EntryWrite::Put => self.entry_call("put", key, &[value]).await?,
            EntryWrite::Swap(r) => {
                rev = r.to_string();
                self.entry_call("swap", key, &[value, rev.as_bytes()])
                    .await?
            }
        };
        match got {
            Value::Nil | Value::Boolean(false) => Ok(None),
            v => reply::number(v, "kept_entry").map(Some),
        }
    }

    pub(crate) async fn remove_kept_entry(&self, key: &str) -> Result<(), Error> {
        self.entry_call("remove", key, &[]).await.map(drop)
    }

    pub(crate) async fn kept_entries_under(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        let items = reply::array(self.entry_call("scan", prefix, &[]).await?, "kept_entry")?;
        let mut out = Vec::with_capacity(items.len() / 3);
        let mut items = items.into_iter();
        while let (Some(key), Some(value), Some(rev)) = (items.next(), items.next(), items.next()) {
            out.push((
                reply::string(key, "kept_entry")?,
                reply::bytes(value, "kept_entry")?,
                reply::number(rev, "kept_entry")?,
            ));
        }
        Ok(out)
    }

    pub(crate) async fn count_kept(&self, name: &str, n: u64) -> Result<u64, Error> {
        let n = n.to_string();
        let v = self.entry_call("count", name, &[n.as_bytes()]).await?;
        reply::number(v, "kept_entry")
    }
}
