//! The schedules part: periodic schedules kept by the store, fired by the
//! leader of the `schedules` role.

use async_trait::async_trait;

use crate::schedule::{Fired, Schedule, ScheduleRecord};
use crate::{Error, TaskId, Timestamp};

/// Periodic schedules kept by the store ([`crate::schedule`]).
///
/// Exactly once per fire time, however many processes call
/// [`Schedules::fire_due`] at once: a store fires a schedule in one atomic
/// step that enqueues its due fires (each under its fire key,
/// [`crate::schedule::fire_key`]) and moves its stored next fire on, and
/// only while the stored next fire is still the one it read; a second
/// caller of the same moment finds it moved and enqueues nothing. A store
/// that changes one key at a time takes two steps instead, decided fires
/// written pending under their task ids and then created
/// ([`crate::schedule::entries`]). The
/// decision is [`crate::schedule::plan`]'s, the same on every store. Next
/// and last fire times are stored, so a new leader goes on where the last
/// one stopped.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Stores `schedule`, replacing the one of its name: its next fire is
    /// computed from now when it is new or its timing changed, else kept,
    /// as are its last fire and whether it is paused (a declaration that
    /// says `paused` pauses it).
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error>;

    /// Removes schedule `name`; false when there is none. A fire already
    /// enqueued stays.
    async fn remove_schedule(&self, name: &str) -> Result<bool, Error>;

    /// Pauses (`true`) or resumes schedule `name`; a resumed schedule's next
    /// fire is the first after now (what it would have fired meanwhile is
    /// not made up). `None` when there is none.
    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error>;

    /// Schedule `name`, or `None`.
    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error>;

    /// The earliest next fire of a schedule not paused (`None`: none has
    /// one), for the leader to sleep until.
    async fn next_fire(&self) -> Result<Option<Timestamp>, Error>;

    /// Fires every schedule due at `now` that is not paused (see the trait's
    /// documentation); what it enqueued, oldest first per schedule.
    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error>;

    /// Enqueues one fire of schedule `name` now, outside its timing (its
    /// fire time is now); its next fire is unchanged. `None` when there is
    /// none.
    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error>;
}
