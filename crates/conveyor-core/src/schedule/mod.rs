//! Periodic schedules as plain data, with no store: a schedule declared
//! ([`Schedule`], from a `[schedules.NAME]` table or JSON), when it fires
//! ([`Timing`]: a cron expression read in a named time zone, or a fixed
//! interval), which fire times are due after a pause ([`due`], under a
//! [`Misfire`] policy), and the unique key each fire is enqueued under
//! ([`fire_key`]), so that two leaders for a moment cannot enqueue one fire
//! time twice.
//!
//! Cron expressions are read by `croner`: 5 fields (minute to weekday), 6
//! (seconds first) or 7 (and a year), `@hourly`-style nicknames, and `L`,
//! `#` and `W`. Day of month and day of week, both given, match when either
//! does (as Vixie cron). Across a daylight saving change, croner's rules
//! apply (the Open Cron Pattern Specification's, as Vixie cron's):
//!
//! - **The clock jumps forward** (02:00 becomes 03:00): a fixed-time job
//!   whose time falls in the gap fires at the first moment after it, the
//!   same day; an interval job (`*` or `*/N` in its time fields) skips the
//!   times in the gap and goes on from the new wall-clock time.
//! - **The clock falls back** (03:00 becomes 02:00 again): a fixed-time job
//!   fires once, at the first of the two times; an interval job fires at
//!   each of its times in both passes of the repeated hour.
//!
//! Fire times move in real time, never backwards: the next fire is always
//! searched from the exact instant of the last.

mod declared;
mod due;
pub mod entries;
mod plan;
mod record;
#[cfg(test)]
mod tests;
mod timing;

pub use declared::{Schedule, DEFAULT_GRACE};
pub use due::{due, fire_key, Due, Misfire, Overlap, MISFIRE_BOUND};
pub use plan::{enqueued, plan, Plan};
pub use record::{Fired, ScheduleRecord};
pub use timing::Timing;
