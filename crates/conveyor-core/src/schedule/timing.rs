//! When a schedule fires: a cron expression in a time zone, or every so
//! long.

use std::time::Duration;

use chrono::TimeZone as _;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::{Error, Timestamp};

/// How many minutes past a repeated hour's start are searched for its end.
const OVERLAP_MINUTES: u32 = 180;

/// When a schedule fires.
#[derive(Clone)]
pub enum Timing {
    /// A cron expression, read in a time zone.
    Cron {
        /// The expression as given.
        pattern: String,
        /// Its time zone's name (`UTC` when none was given).
        zone_name: String,
        /// The parsed expression.
        cron: Box<Cron>,
        /// The time zone.
        zone: Tz,
    },
    /// Every so long, at the multiples of it since the Unix epoch, so that
    /// every process computes the same fire times.
    Every(Duration),
}

impl Timing {
    /// A cron expression (5, 6 or 7 fields, or a nickname such as
    /// `@hourly`), read in the IANA time zone `zone` (UTC when `None`).
    pub fn cron(pattern: &str, zone: Option<&str>) -> Result<Timing, Error> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .build();
        let cron = parser
            .parse(pattern.trim())
            .map_err(|e| Error::InvalidConfig(format!("cron expression {pattern:?}: {e}")))?;
        let zone_name = zone.unwrap_or("UTC").trim().to_string();
        let tz: Tz = zone_name.parse().map_err(|_| {
            Error::InvalidConfig(format!(
                "time zone {zone_name:?} is not an IANA time zone name (such as Europe/Paris)"
            ))
        })?;
        Ok(Timing::Cron {
            pattern: pattern.trim().to_string(),
            zone_name,
            cron: Box::new(cron),
            zone: tz,
        })
    }

    /// Every `text` (`30s`, `5m`, `1h 30m`), at least a second.
    pub fn every(text: &str) -> Result<Timing, Error> {
        let d = humantime::parse_duration(text.trim())
            .map_err(|e| Error::InvalidConfig(format!("interval {text:?}: {e}")))?;
        if d < Duration::from_secs(1) {
            return Err(Error::InvalidConfig(format!(
                "interval {text:?} is under a second"
            )));
        }
        Ok(Timing::Every(d))
    }

    /// The first fire time strictly after `after`; `None` when there is
    /// none (a cron expression whose years have passed).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Timing::Every(d) => {
                let step = i64::try_from(d.as_millis()).ok()?.max(1);
                let next = after.0.div_euclid(step).checked_add(1)?.checked_mul(step)?;
                Some(Timestamp(next))
            }
            Timing::Cron { cron, zone, .. } => next_cron(cron, zone, after),
        }
    }

    /// How it reads: the expression and its zone, or the interval (also
    /// its `Debug` form).
    pub fn describe(&self) -> String {
        match self {
            Timing::Cron {
                pattern, zone_name, ..
            } => format!("cron {pattern:?} in {zone_name}"),
            Timing::Every(d) => format!("every {}", humantime::format_duration(*d)),
        }
    }
}

/// The first time `cron` matches in `zone` strictly after `after`, in real
/// time, by croner's daylight saving rules.
///
/// croner 3.0.1's own search meets two snags over a repeated hour (the
/// clock falling back), mended here: it answers an interval job's times
/// in the first pass only, and from a time in the second pass it answers
/// the matching time of the first pass, which has gone by. So the search
/// is also made in the fixed offsets in force at `after` and at croner's
/// answer (an interval job's time in the second pass is one of those,
/// valid when the zone has that offset at that instant), and a past answer
/// is searched again from the end of the repeated hour.
fn next_cron(cron: &Cron, zone: &Tz, after: Timestamp) -> Option<Timestamp> {
    use chrono::{LocalResult, Offset};
    // Fire times are whole seconds.
    let whole = after.0.div_euclid(1000) * 1000;
    let from = zone.timestamp_millis_opt(whole).single()?;
    let later = |t: &chrono::DateTime<Tz>| t.timestamp_millis() > after.0;
    let mut best = cron.find_next_occurrence(&from, false).ok().filter(&later);
    if best.is_none() {
        // From the first moment after the repeated hour.
        let mut local = from.naive_local();
        for _ in 0..OVERLAP_MINUTES {
            local += chrono::Duration::minutes(1);
            if let LocalResult::Single(end) = zone.from_local_datetime(&local) {
                best = cron.find_next_occurrence(&end, true).ok().filter(&later);
                break;
            }
        }
    }
    if cron.determine_job_type() == croner::JobType::IntervalWildcard {
        let mut offsets = vec![from.offset().fix()];
        offsets.extend(best.as_ref().map(|b| b.offset().fix()));
        for offset in offsets {
            let fixed = from.with_timezone(&offset);
            let Some(c) = cron.find_next_occurrence(&fixed, false).ok() else {
                continue;
            };
            let in_zone = c.with_timezone(zone);
            let valid = in_zone.offset().fix() == offset && c.timestamp_millis() > after.0;
            if valid && best.as_ref().is_none_or(|b| in_zone < *b) {
                best = Some(in_zone);
            }
        }
    }
    best.map(|t| Timestamp(t.timestamp_millis()))
}

impl std::fmt::Debug for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
