//! A record's stored bytes: the binary encoding it is written in
//! (`wire`), and the JSON of the versions before it, still read.

use conveyor_core::Error;

use crate::error::bad_data;
use crate::record::Rec;

impl Rec {
    /// The stored bytes (`wire.rs`).
    pub(crate) fn encode(&self) -> bytes::Bytes {
        crate::wire::encode(self).into()
    }

    /// The stored bytes as versions before the binary encoding wrote them:
    /// a line of JSON, then the payload and the result.
    #[cfg(test)]
    pub(crate) fn encode_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a record serialises");
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        if let Some(r) = &self.result {
            out.extend_from_slice(r);
        }
        out
    }

    /// A record from its stored bytes, in the binary encoding or, from an
    /// earlier version, in JSON.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Rec, Error> {
        if matches!(
            bytes.first(),
            Some(&crate::wire::VERSION | &crate::wire::VERSION_2 | &crate::wire::VERSION_1)
        ) {
            return crate::wire::decode(bytes)
                .ok_or_else(|| bad_data("a task record does not decode (binary)"));
        }
        let bad = |why: &str| bad_data(format!("a task record does not decode: {why}"));
        let at = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let mut rec: Rec = serde_json::from_slice(&bytes[..at]).map_err(|e| bad(&e.to_string()))?;
        let body = &bytes[at + 1..];
        let result_len = rec.result_len.unwrap_or(0);
        if rec.payload_len.checked_add(result_len) != Some(body.len()) {
            return Err(bad("its length does not match"));
        }
        rec.payload = body[..rec.payload_len].to_vec();
        rec.result = rec.result_len.map(|_| body[rec.payload_len..].to_vec());
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use conveyor_core::{AttemptOutcome, NewTask, TaskState, Timestamp};

    use super::*;
    use crate::record::{FollowUp, Spec};

    #[test]
    fn a_record_round_trips() {
        let task = NewTask::new("h", b"\n\x00pay".to_vec()).unique_key("u");
        let mut rec = Rec::new(7, &Spec::of(&task, Timestamp(1_000)), Timestamp(1_000));
        assert_eq!(rec.state(), TaskState::Available);
        assert_eq!(rec.dispatch, 1);
        rec.set_result(Some(b"r\n".to_vec()));
        rec.error = Some("it \"failed\"\n".into());
        rec.lease_until = Some(-3);
        rec.finished_at = Some(i64::MAX);
        rec.msg_seq = Some(u64::MAX);
        rec.timeout_ms = Some(30_000);
        rec.priority = -7;
        rec.worker = Some("h:1:ab".into());
        rec.started_at = Some(900);
        rec.attempts = 1;
        rec.settle_attempt(
            AttemptOutcome::Failed { error: "no".into() },
            Timestamp(950),
        );
        assert_eq!(rec.to_task().history.len(), 1);
        rec.follow_ups.push(FollowUp {
            id: 8,
            spec: Spec::of(&NewTask::new("f", vec![0, 255]), Timestamp(5)),
        });
        let back = Rec::decode(&rec.encode()).expect("decodes");
        assert_eq!(back, rec);
        // A record an earlier version wrote (JSON) still reads.
        assert_eq!(rec.encode_json()[0], b'{');
        let old = Rec::decode(&rec.encode_json()).expect("decodes");
        assert_eq!(old, rec);
        assert!(Rec::decode(b"{}").is_err());
        assert!(Rec::decode(&[crate::wire::VERSION]).is_err());
        assert!(Rec::decode(b"").is_err());
        let delayed = NewTask::new("h", Vec::new()).delay(Duration::from_secs(1));
        let rec = Rec::new(9, &Spec::of(&delayed, Timestamp(0)), Timestamp(0));
        assert_eq!((rec.state(), rec.dispatch), (TaskState::Scheduled, 0));
    }
}
