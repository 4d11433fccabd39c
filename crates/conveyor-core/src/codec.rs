//! How params and results become the bytes a backend stores.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// Encodes params and results for a durable backend, and decodes them back.
pub trait Codec: Clone + Send + Sync + 'static {
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Error>;
    /// Decodes a value; a clear error when the bytes are not a `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error>;
}

/// JSON through serde: the default, readable by any language and by `conveyor`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(value).map_err(|e| Error::Codec(format!("cannot encode as JSON: {e}")))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Codec(format!(
                "cannot decode {} from JSON: {e}",
                std::any::type_name::<T>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_names_the_type_on_failure() {
        let bytes = Json.encode(&(1, "a")).unwrap();
        let back: (i32, String) = Json.decode(&bytes).unwrap();
        assert_eq!(back, (1, "a".to_string()));
        let err = Json.decode::<(i32, i32)>(b"not json").unwrap_err();
        assert!(err.to_string().contains("(i32, i32)"), "{err}");
    }
}
