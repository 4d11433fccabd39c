//! Queue and handler names as the API takes them: at most
//! [`MAX_NAME_LEN`] characters, with no control character (counted as JSON
//! Schema's `maxLength` counts, so the OpenAPI document says exactly this). A name is shown on
//! every page that lists its tasks, used as a metric label and a key in the
//! store, so a megabyte of name (or a newline in one) is refused with 400 at
//! the door rather than carried everywhere. The rule is conveyor-core's
//! (`check_name`, which `NewTask::validate` applies for every client); the
//! API checks names it takes outside a task too (pausing a queue).

use crate::error::ApiError;

/// The longest queue or handler name the API takes, in characters.
pub const MAX_NAME_LEN: usize = conveyor_core::MAX_NAME_CHARS;

/// `name` when it is fit to be the `what` (`handler`, `queue`) of a task.
pub(crate) fn check(what: &str, name: &str) -> Result<(), ApiError> {
    conveyor_core::check_name(what, name).map_err(ApiError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_printable() {
        assert!(check("queue", "mail").is_ok());
        assert!(check("queue", "ünï-côdé.name/v2").is_ok());
        assert!(check("queue", &"q".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check("queue", &"é".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check("queue", &"q".repeat(MAX_NAME_LEN + 1)).is_err());
        for bad in ["", "a\nb", "a\u{0}b", "tab\there", "del\u{7f}", "c1\u{85}"] {
            assert!(check("handler", bad).is_err(), "{bad:?}");
        }
    }
}
