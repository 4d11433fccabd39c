//! What a backend needs, beyond the task's id and fencing token, to settle a
//! reserved task: a message broker's delivery tag and channel, a reply
//! subject, a coordinate in a log. Opaque to everyone but the backend that
//! issued it, and empty for a database, which settles by id and token alone.

use std::fmt;
use std::sync::Arc;

/// A backend's own settlement handle for one reservation, carried in its
/// [`Lease`](crate::Lease). Empty unless the backend set one; cloning it
/// never copies the bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Receipt(Option<Arc<[u8]>>);

impl Receipt {
    /// No receipt: the id and token are enough (databases).
    pub const NONE: Receipt = Receipt(None);

    /// A receipt holding `bytes` (a delivery tag, a reply subject …).
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Receipt(Some(bytes.into()))
    }

    /// The bytes the backend stored; empty for no receipt.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// True when the backend set no receipt.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Receipt::NONE"),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => write!(f, "Receipt({s:?})"),
                Err(_) => write!(f, "Receipt({} bytes)", b.len()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_keeps_its_bytes_and_clones_share_them() {
        assert!(Receipt::NONE.is_none());
        assert_eq!(Receipt::default(), Receipt::NONE);
        assert_eq!(Receipt::NONE.as_bytes(), b"");
        let r = Receipt::new(&b"$JS.ACK.orders.workers.1.42.42.1700000000.0"[..]);
        let c = r.clone();
        assert_eq!(c.as_bytes(), r.as_bytes());
        assert!(!c.is_none());
        assert_eq!(
            format!("{:?}", Receipt::new(&b"tag-7"[..])),
            "Receipt(\"tag-7\")"
        );
    }
}
