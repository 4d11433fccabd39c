//! Fire times: expressions and zones read or refused, daylight saving
//! changes in Europe/Paris on both sides, intervals, and what a pause
//! leaves due under each misfire policy.

use std::time::Duration;

use super::*;
use crate::Timestamp;

/// `2026-03-29T01:00:00Z` and the like, as a timestamp.
fn at(rfc3339: &str) -> Timestamp {
    Timestamp(
        rfc3339
            .parse::<jiff::Timestamp>()
            .expect("an RFC 3339 time")
            .as_millisecond(),
    )
}

/// The first `n` fire times after `from`.
fn fires(timing: &Timing, from: &str, n: usize) -> Vec<Timestamp> {
    let mut out = Vec::with_capacity(n);
    let mut t = at(from);
    for _ in 0..n {
        t = timing.next_after(t).expect("a next fire time");
        out.push(t);
    }
    out
}

fn paris(pattern: &str) -> Timing {
    Timing::cron(pattern, Some("Europe/Paris")).expect("reads")
}

#[test]
fn expressions_and_zones_are_read_or_refused_with_the_reason() {
    for good in [
        "*/5 * * * *",
        "30 */5 * * * *",
        "0 0 12 * * MON-FRI 2030",
        "@hourly",
        "@daily",
        "0 0 L * *",
        "0 0 * * 5#2",
        "0 0 15W * *",
    ] {
        Timing::cron(good, None).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "@often"] {
        let e = Timing::cron(bad, None).expect_err(bad).to_string();
        assert!(e.contains("cron expression"), "{bad}: {e}");
    }
    let e = Timing::cron("* * * * *", Some("Mars/Olympus"))
        .expect_err("no such zone")
        .to_string();
    assert!(e.contains("Mars/Olympus"), "{e}");
    for bad in ["0s", "500ms", "soon", ""] {
        assert!(Timing::every(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Timing::every("1m 30s").expect("reads").describe(),
        "every 1m 30s"
    );
}

#[test]
fn a_cron_expression_fires_in_its_zone() {
    let utc = Timing::cron("0 9 * * *", None).expect("reads");
    assert_eq!(
        fires(&utc, "2026-06-01T10:00:00Z", 2),
        [at("2026-06-02T09:00:00Z"), at("2026-06-03T09:00:00Z")]
    );
    // 09:00 in Paris is 07:00 UTC in summer, 08:00 in winter.
    assert_eq!(
        fires(&paris("0 9 * * *"), "2026-06-01T10:00:00Z", 1),
        [at("2026-06-02T07:00:00Z")]
    );
    assert_eq!(
        fires(&paris("0 9 * * *"), "2026-12-01T10:00:00Z", 1),
        [at("2026-12-02T08:00:00Z")]
    );
    // Strictly after: a fire time is not its own next.
    let every_second = Timing::cron("* * * * * *", None).expect("reads");
    let t = at("2026-06-01T10:00:00Z");
    assert_eq!(every_second.next_after(t), Some(Timestamp(t.0 + 1000)));
    assert_eq!(
        every_second.next_after(Timestamp(t.0 + 400)),
        Some(Timestamp(t.0 + 1000))
    );
}

/// Paris springs forward on 2026-03-29: 02:00 CET becomes 03:00 CEST
/// (01:00 UTC). A daily 02:30 falls in the gap: it fires at the first
/// moment after it, 03:00 CEST, that day, and at 02:30 CEST the next.
#[test]
fn a_fixed_time_in_the_spring_gap_fires_right_after_it() {
    assert_eq!(
        fires(&paris("30 2 * * *"), "2026-03-28T12:00:00Z", 2),
        [at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
    );
}

/// Paris falls back on 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00
/// UTC), so 02:30 happens twice. A daily 02:30 fires once, at the first.
#[test]
fn a_fixed_time_in_the_autumn_overlap_fires_once() {
    assert_eq!(
        fires(&paris("30 2 * * *"), "2026-10-24T12:00:00Z", 2),
        [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
    );
}

/// `*/15 * * * *` across both changes: the quarter hours of the spring
/// gap do not exist and are skipped, the repeated hour of the autumn fires
/// in both passes; in real time, every fire is 15 minutes after the last.
#[test]
fn an_interval_job_skips_the_gap_and_repeats_the_overlap() {
    let quarter = paris("*/15 * * * *");
    let spring = fires(&quarter, "2026-03-29T00:40:00Z", 3);
    assert_eq!(
        spring,
        [
            at("2026-03-29T00:45:00Z"), // 01:45 CET
            at("2026-03-29T01:00:00Z"), // 03:00 CEST: 02:00-02:45 never were
            at("2026-03-29T01:15:00Z"),
        ]
    );
    let autumn = fires(&quarter, "2026-10-24T23:55:00Z", 9);
    let expected: Vec<Timestamp> = (0..9)
        .map(|k| Timestamp(at("2026-10-25T00:00:00Z").0 + k * 15 * 60_000))
        .collect();
    assert_eq!(
        autumn, expected,
        "02:00-02:45 CEST, then 02:00-02:45 CET, then 03:00 CET"
    );
}

#[test]
fn an_interval_fires_at_its_multiples_since_the_epoch() {
    let every = Timing::every("30s").expect("reads");
    assert_eq!(
        fires(&every, "2026-06-01T10:00:10Z", 3),
        [
            at("2026-06-01T10:00:30Z"),
            at("2026-06-01T10:01:00Z"),
            at("2026-06-01T10:01:30Z"),
        ]
    );
    // A fire time's next is the one after it, never itself.
    assert_eq!(
        every.next_after(at("2026-06-01T10:00:30Z")),
        Some(at("2026-06-01T10:01:00Z"))
    );
}

/// A leader away for ten minutes of a schedule firing every minute: skip
/// fires none of the ten missed (the next on time only), once fires the
/// latest, all fires every one; each stores the next fire after now. On
/// time (within the grace) is a fire under every policy.
#[test]
fn a_pause_leaves_what_each_misfire_policy_says() {
    let minute = Timing::cron("* * * * *", None).expect("reads");
    let next = at("2026-06-01T10:00:00Z");
    let now = at("2026-06-01T10:09:30Z");
    let grace = Duration::from_secs(5);
    let skip = due(&minute, next, now, Misfire::Skip, grace);
    assert_eq!(skip.fires, []);
    assert_eq!(skip.missed, 10);
    assert_eq!(skip.next, Some(at("2026-06-01T10:10:00Z")));
    let once = due(&minute, next, now, Misfire::Once, grace);
    assert_eq!(once.fires, [at("2026-06-01T10:09:00Z")]);
    assert_eq!(once.missed, 9);
    let all = due(&minute, next, now, Misfire::All, grace);
    assert_eq!(all.fires.len(), 10);
    assert_eq!(all.fires[0], next);
    assert_eq!(all.missed, 0);
    assert_eq!(all.next, Some(at("2026-06-01T10:10:00Z")));
    // On time: fired under every policy.
    let late = at("2026-06-01T10:00:00.040Z");
    for policy in [Misfire::Skip, Misfire::Once, Misfire::All] {
        let d = due(&minute, next, late, policy, grace);
        assert_eq!(d.fires, [next], "{policy:?}");
        assert_eq!(d.next, Some(at("2026-06-01T10:01:00Z")));
    }
    // Not yet: nothing, the next kept.
    let early = due(&minute, next, Timestamp(next.0 - 1), Misfire::All, grace);
    assert_eq!(early.fires, []);
    assert_eq!(early.next, Some(next));
}

/// A pause far longer than the bound: all fires the latest MISFIRE_BOUND
/// times and counts the rest missed.
#[test]
fn all_is_bounded() {
    let second = Timing::every("1s").expect("reads");
    let next = at("2026-06-01T10:00:00Z");
    let now = Timestamp(next.0 + 999_000);
    let d = due(&second, next, now, Misfire::All, Duration::ZERO);
    assert_eq!(d.fires.len(), MISFIRE_BOUND);
    assert_eq!(d.fires.last(), Some(&now));
    assert_eq!(d.missed, 1000 - MISFIRE_BOUND as u64);
    assert_eq!(
        fire_key("nightly", next),
        format!("schedule:nightly:{}", next.0)
    );
}

/// A search that starts inside the second pass of the repeated hour (a
/// schedule added then, or a leader resuming there): a fixed time whose
/// first pass has gone by fires the next day, not in the past; an interval
/// job goes on with the second pass.
#[test]
fn a_search_from_the_second_pass_never_answers_the_past() {
    let second_pass = "2026-10-25T01:10:00Z"; // 02:10 CET, after 02:10 CEST
    assert_eq!(
        fires(&paris("30 2 * * *"), second_pass, 1),
        [at("2026-10-26T01:30:00Z")]
    );
    assert_eq!(
        fires(&paris("*/15 * * * *"), second_pass, 2),
        [at("2026-10-25T01:15:00Z"), at("2026-10-25T01:30:00Z")]
    );
}

/// A whole year of `*/15 * * * *` in Paris, both changes in it: every
/// fire is exactly 15 minutes of real time after the last, none missing,
/// none twice. A whole year of a daily 02:30: one fire per calendar day.
#[test]
fn a_year_in_paris_misses_nothing_and_repeats_nothing() {
    let quarter = paris("*/15 * * * *");
    let mut t = at("2026-01-01T00:00:00Z");
    let end = at("2027-01-01T00:00:00Z");
    let mut n = 0;
    while t.0 < end.0 {
        let next = quarter.next_after(t).expect("a next fire");
        assert_eq!(next.0 - t.0, 15 * 60_000, "after {t:?}");
        t = next;
        n += 1;
    }
    assert_eq!(n, 365 * 24 * 4);
    let daily = paris("30 2 * * *");
    let mut t = at("2026-01-01T00:00:00Z");
    let mut days = std::collections::BTreeSet::new();
    let mut count = 0;
    loop {
        t = daily.next_after(t).expect("a next fire");
        if t.0 >= end.0 {
            break;
        }
        let local = jiff::Timestamp::from_millisecond(t.0)
            .expect("in range")
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
            .date();
        days.insert(local);
        count += 1;
    }
    assert_eq!(count, 365, "one fire a day");
    assert_eq!(days.len(), 365, "on distinct days");
}

/// A declared schedule reads into its timing, task and policies; each
/// mistake is refused with the schedule's name and what is wrong.
#[test]
fn a_declared_schedule_reads_or_is_refused_with_the_reason() {
    use serde_json::json;
    let s = Schedule::declared(
        "nightly",
        json!({"cron": "30 2 * * *", "timezone": "Europe/Paris", "handler": "report",
               "params": {"day": "yesterday"}, "queue": "reports", "misfire": "once",
               "overlap": "skip", "grace": "2m", "attempts": 5}),
    )
    .expect("reads");
    assert_eq!(s.timing.describe(), "cron \"30 2 * * *\" in Europe/Paris");
    assert_eq!((s.misfire, s.overlap), (Misfire::Once, Overlap::Skip));
    assert_eq!(s.grace, Duration::from_secs(120));
    let fire = s.fire(at("2026-06-01T00:30:00Z"));
    assert_eq!(fire.handler, "report");
    assert_eq!(fire.queue, "reports");
    assert_eq!(fire.max_attempts, 5);
    assert_eq!(fire.payload, br#"{"day":"yesterday"}"#);
    assert_eq!(fire.run_at, Some(at("2026-06-01T00:30:00Z")));
    assert_eq!(
        fire.unique_key.as_deref(),
        Some(fire_key("nightly", at("2026-06-01T00:30:00Z")).as_str())
    );
    // Read back from what it shows.
    let again = Schedule::declared("nightly", s.to_value()).expect("reads back");
    assert_eq!(again.to_value(), s.to_value());
    let every =
        Schedule::declared("tick", json!({"every": "30s", "handler": "tick"})).expect("reads");
    assert_eq!(
        (every.misfire, every.overlap),
        (Misfire::Skip, Overlap::Allow)
    );
    assert_eq!(every.grace, DEFAULT_GRACE);
    for (bad, why) in [
        (json!({"handler": "h"}), "one of cron and every"),
        (
            json!({"cron": "* * * * *", "every": "1m", "handler": "h"}),
            "one of cron and every",
        ),
        (
            json!({"every": "1m", "timezone": "Europe/Paris", "handler": "h"}),
            "timezone goes with cron",
        ),
        (
            json!({"cron": "* * * * *", "handler": ""}),
            "handler is empty",
        ),
        (
            json!({"cron": "* * * * *", "handler": "h", "delay": "1m"}),
            "delay",
        ),
        (
            json!({"cron": "* * * * *", "handler": "h", "unique_key": "k"}),
            "unique_key",
        ),
        (
            json!({"cron": "* * * * *", "handler": "h", "misfire": "sometimes"}),
            "sometimes",
        ),
        (
            json!({"cron": "* * * * *", "handler": "h", "grace": "soon"}),
            "grace",
        ),
        (json!({"cron": "nope", "handler": "h"}), "cron expression"),
    ] {
        let e = Schedule::declared("s", bad.clone())
            .expect_err(&bad.to_string())
            .to_string();
        assert!(e.contains(why) && e.contains("\"s\""), "{bad}: {e}");
    }
    assert!(Schedule::declared("", json!({"every": "1m", "handler": "h"})).is_err());
    assert!(Schedule::declared("a\nb", json!({"every": "1m", "handler": "h"})).is_err());
}
