//! Integers as JSON Schema means them: `743` and `743.0` are the same
//! integer to the schema the API publishes, so the API takes both (serde
//! alone refuses a float where it expects an integer). A fraction, or a value
//! out of range, is still refused.

use serde::{Deserialize, Deserializer};

fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i128::from(i)));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Some(i128::from(u)));
    }
    match n.as_f64() {
        // Exact: every float with no fraction inside ±2^64 is an integer.
        Some(f) if f.fract() == 0.0 && f.abs() < 1.8e19 => Ok(Some(f as i128)),
        _ => Err(serde::de::Error::custom(format!("{n} is not an integer"))),
    }
}

fn ranged<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    integer(d)?
        .map(|i| {
            T::try_from(i).map_err(|_| serde::de::Error::custom(format!("{i} is out of range")))
        })
        .transpose()
}

/// An optional `u64`.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    ranged(d)
}

/// An optional `u32`.
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d)
}

/// An optional `i32`.
pub(crate) fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    ranged(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_u32")]
        n: Option<u32>,
    }

    fn parse(text: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<T>(text)
            .map(|t| t.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_with_or_without_a_point() {
        assert_eq!(parse(r#"{"n": 7}"#), Ok(Some(7)));
        assert_eq!(parse(r#"{"n": 7.0}"#), Ok(Some(7)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse(r#"{}"#), Ok(None));
        assert!(parse(r#"{"n": 7.5}"#).is_err());
        assert!(parse(r#"{"n": -1}"#).is_err());
        assert!(parse(r#"{"n": 4294967296}"#).is_err());
        assert!(parse(r#"{"n": 1e300}"#).is_err());
        assert!(parse(r#"{"n": "7"}"#).is_err());
    }
}
