//! Global handler limits as stored in Redis: one field per handler in the
//! `limits` hash, `concurrency:count:per_us:burst`, each part empty when that
//! limit is not set. The reserve script reads them (`lua/limits.lua`); these
//! functions write and read them back for [`GlobalLimits::set_limits`] and
//! [`GlobalLimits::limits`](conveyor_core::GlobalLimits::limits).
//!
//! [`GlobalLimits::set_limits`]: conveyor_core::GlobalLimits::set_limits

use std::time::Duration;

use conveyor_core::{Error, HandlerLimits, Rate};

/// The stored form of `limits`.
pub(crate) fn encode(limits: &HandlerLimits) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let r = limits.rate;
    format!(
        "{}:{}:{}:{}",
        opt(limits.concurrency.map(|c| c.to_string())),
        opt(r.map(|r| r.count().to_string())),
        opt(r.map(|r| r.period().as_micros().to_string())),
        opt(r.map(|r| r.burst_size().to_string())),
    )
}

/// Reads a stored form back; a value this crate could not have written is an
/// [`Error::Backend`] naming the handler.
pub(crate) fn decode(handler: &str, v: &str) -> Result<HandlerLimits, Error> {
    let bad = || Error::backend_other(format!("handler {handler:?} has bad stored limits {v:?}"));
    let parts: Vec<&str> = v.split(':').collect();
    let [c, n, per, b] = parts[..] else {
        return Err(bad());
    };
    fn field<T: std::str::FromStr>(s: &str) -> Result<Option<T>, ()> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| ())
        }
    }
    let concurrency = field::<u32>(c).map_err(|_| bad())?;
    let count = field::<u32>(n).map_err(|_| bad())?;
    let per = field::<u64>(per).map_err(|_| bad())?;
    let burst = field::<u32>(b).map_err(|_| bad())?;
    let rate = match (count, per) {
        // A stored burst of 0 is bad data, not a burst of 1.
        _ if burst == Some(0) => return Err(bad()),
        (Some(count), Some(per)) => {
            Some(Rate::new(count, Duration::from_micros(per)).burst(burst.unwrap_or(1)))
        }
        (None, None) => None,
        _ => return Err(bad()),
    };
    let limits = HandlerLimits { concurrency, rate };
    limits.validate().map_err(|_| bad())?;
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let all = HandlerLimits::none()
            .concurrency(3)
            .rate(Rate::new(10, Duration::from_millis(1500)).burst(4));
        for l in [all, HandlerLimits::none().concurrency(1)] {
            assert_eq!(decode("h", &encode(&l)).expect("decodes"), l);
        }
        assert_eq!(encode(&HandlerLimits::none().concurrency(2)), "2:::");
        for bad in ["", "x:::", "1:2::", "0:::", "1:2:3"] {
            assert!(decode("h", bad).is_err(), "{bad:?}");
        }
    }
}
