//! Decoders: from a record to a handler's params. A record that does not
//! decode never reaches the handler; it goes to the dead-letter topic with the
//! decoder's error, and the consumer goes on.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::message::Message;

/// Turns a record into a handler's params, or says why it cannot.
pub type Decoder<In> = Arc<dyn Fn(&Message) -> Result<In, String> + Send + Sync>;

/// The record itself: never fails.
pub fn raw() -> Decoder<Message> {
    Arc::new(|m: &Message| Ok(m.clone()))
}

/// The payload as UTF-8 text.
pub fn text() -> Decoder<String> {
    Arc::new(|m: &Message| match m.payload() {
        None => Err("no payload (a tombstone)".to_string()),
        Some(p) => std::str::from_utf8(p)
            .map(str::to_owned)
            .map_err(|e| format!("payload is not UTF-8: {e}")),
    })
}

/// The payload as JSON of type `T`.
pub fn json<T: DeserializeOwned + 'static>() -> Decoder<T> {
    Arc::new(|m: &Message| match m.payload() {
        None => Err("no payload (a tombstone)".to_string()),
        Some(p) => serde_json::from_slice(p).map_err(|e| format!("payload is not valid JSON: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text() {
        let ok = Message::new("t", 0, 1, None, Some(br#"{"n": 3}"#));
        let bad = Message::new("t", 0, 2, None, Some(b"\xff{"));
        let none = Message::new("t", 0, 3, None, None);
        #[derive(serde::Deserialize)]
        struct N {
            n: u32,
        }
        let dec = json::<N>();
        assert_eq!(dec(&ok).map(|v| v.n), Ok(3));
        assert!(dec(&bad).is_err());
        assert!(dec(&none).is_err());
        assert!(text()(&bad).is_err());
        assert_eq!(text()(&ok).as_deref(), Ok(r#"{"n": 3}"#));
        assert_eq!(raw()(&none).map(|m| m.offset()).ok(), Some(3));
    }
}
