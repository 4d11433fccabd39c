//! Periodic schedules on NATS (the [`Schedules`] part), in the ledger
//! bucket, kept by `conveyor_core::schedule::entries` (one implementation
//! for every backend whose store changes one key at a time): a schedule is
//! one entry (`s.<name>`) with its declaration, where its firing stands and
//! the fires decided but not yet created, each under the task id decided
//! for it; a fire's task is created as an enqueue creates one, under that
//! id, so creating it again after a crash creates nothing twice.
//!
//! (Not the `schedule` module, which promotes delayed tasks.)

#[cfg(test)]
mod tests;

use conveyor_core::schedule::entries::{self, ScheduleEntries};
use conveyor_core::schedule::{Fired, Schedule, ScheduleRecord};
use conveyor_core::workflow::entries::EntryStore;
use conveyor_core::{async_trait, Error, NewTask, Schedules, TaskId, Timestamp};

use crate::backend::NatsBackend;
use crate::names::keys;
use crate::record::{Rec, Spec};

#[async_trait]
impl Schedules for NatsBackend {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        self.check_task(&schedule.fire(self.inner.clock.now()))?;
        self.guard("storing a schedule", entries::put(self, schedule))
            .await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        self.guard("removing a schedule", entries::remove(self, name))
            .await
    }

    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        self.guard("pausing a schedule", entries::pause(self, name, paused))
            .await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        entries::get(self, name).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        entries::list(self).await
    }

    async fn next_fire(&self) -> Result<Option<Timestamp>, Error> {
        entries::next_fire(self).await
    }

    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        self.guard("firing schedules", entries::fire_due(self, now))
            .await
    }

    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error> {
        self.guard("triggering a schedule", entries::trigger(self, name))
            .await
    }
}

/// The ledger as the store of schedule entries (its entries are the
/// workflow entries' own, `EntryStore`); a fire's task is a record created
/// as an enqueue creates one.
#[async_trait]
impl ScheduleEntries for NatsBackend {
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn schedule_key(&self, name: &str) -> String {
        keys::schedule(name)
    }

    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        EntryStore::entry(self, key).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error> {
        EntryStore::create(self, key, value).await
    }

    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error> {
        EntryStore::cas(self, key, value, rev).await
    }

    async fn remove(&self, key: &str) -> Result<(), Error> {
        EntryStore::remove(self, key).await
    }

    async fn scan_schedules(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        let entries = self.inner.ledger.scan(keys::SCHEDULES).await?;
        Ok(entries
            .into_iter()
            .map(|(key, bytes, rev)| (key, bytes.to_vec(), rev))
            .collect())
    }

    async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        EntryStore::alloc_ids(self, n).await
    }

    async fn create_fires(&self, fires: Vec<(u64, NewTask)>) -> Result<Vec<TaskId>, Error> {
        let now = self.inner.clock.now();
        let recs = fires
            .iter()
            .map(|(id, task)| Rec::new(*id, &Spec::of(task, now), now))
            .collect();
        Ok(self
            .create_recs(recs, now)
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }

    async fn running(&self, id: TaskId) -> Result<bool, Error> {
        Ok(self
            .inner
            .ledger
            .get(id.0)
            .await?
            .is_some_and(|(rec, _)| !rec.state().is_finished()))
    }
}
