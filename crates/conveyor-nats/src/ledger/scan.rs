//! A scan of the ledger: the last value of every key under a filter, read
//! with an ephemeral pull consumer while writers go on ([`Ledger::scan`]).

use std::collections::HashMap;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use conveyor_core::{BackendErrorKind, Error};
use futures_util::{FutureExt, StreamExt};

use super::{is_live, Ledger};
use crate::error::{bad_data, nats_error};
use crate::streams::{Failed, NO_RESPONDERS_PAUSE, NO_RESPONDERS_TRIES};

/// How long a scan's consumer may deliver nothing before the scan gives
/// up, how long a scan's request stays open, and how long its consumer
/// outlives a scan that stopped without deleting it.
const SCAN_SILENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a scan is doing, for its errors.
const SCANNING: &str = "scanning the ledger";

/// How many entries a scan asks for at once.
const SCAN_BATCH: usize = 1_000;

/// How long a scan waits for its consumer's next delivery before asking
/// the stream whether anything is left.
const SCAN_QUIET: std::time::Duration = std::time::Duration::from_millis(100);

impl Ledger {
    /// The last value of every live key matching `filter` (a key pattern
    /// such as `t.>`), with its key and revision, each key once.
    ///
    /// An ephemeral pull consumer delivers the entries under the filter in
    /// stream order, then whatever is written while the scan runs. A key
    /// rewritten during the scan may come twice, at its old and its new
    /// revision: the newer replaces the older in place, so each key is
    /// listed once, at a value it held during the scan.
    ///
    /// The scan never waits on the server to end a pull request. A 2.9
    /// server ends one lazily (a request that has run out its expiry is
    /// answered when something else wakes the consumer), so a scan that
    /// waited for that answer could sit silent for seconds. Every request
    /// is answered on one inbox for the whole scan, so a delivery on an
    /// older request is never lost, and a new request is sent whenever the
    /// last one is used up, has ended, or has gone quiet.
    ///
    /// The end is asked of the stream itself, because the consumer's count
    /// of what is left lags the writes (the server counts a new entry after
    /// acknowledging it): when a delivery says nothing is pending, when a
    /// request ends, or when the consumer goes quiet, the scan asks for the
    /// first entry under the filter after the last one read. None means the
    /// scan has seen every key that lived through it; one is taken and the
    /// reading goes on.
    pub(crate) async fn scan(&self, filter: &str) -> Result<Vec<(String, Bytes, u64)>, Error> {
        let filter = self.names.key_subject(filter);
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                filter_subject: filter.clone(),
                // The bucket keeps one entry per key, so every entry is a
                // key's last, and the server builds no list of keys first.
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: SCAN_SILENCE,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(SCANNING, e, self.state()))?;
        let consumer = crate::streams::led(consumer, || self.state()).await?;
        let name = consumer.cached_info().name.clone();
        let pending = consumer.cached_info().num_pending;
        let mut scan = Scan::new(self.names.key_subject(""), pending);
        // On a cluster the server this client talks to may not have heard
        // yet that another one serves the new consumer, and answers its
        // first fetch "503, no responders": read again, while nothing was.
        let mut read = self.read_scan(&consumer, &filter, pending, &mut scan).await;
        for _ in 0..NO_RESPONDERS_TRIES {
            match &read {
                Err(Failed::Unserved(_)) if scan.last == 0 => {
                    tokio::time::sleep(NO_RESPONDERS_PAUSE).await;
                    read = self.read_scan(&consumer, &filter, pending, &mut scan).await;
                }
                _ => break,
            }
        }
        // Best effort: the server drops it after `SCAN_SILENCE` idle anyway.
        let _ = self.stream.delete_consumer(&name).await;
        read.map(|()| scan.out).map_err(Failed::into_error)
    }

    /// Reads a scan's consumer to the stream's end (see [`Ledger::scan`]).
    async fn read_scan(
        &self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
        filter: &str,
        pending: u64,
        scan: &mut Scan,
    ) -> Result<(), Failed> {
        // Nothing under the filter when the consumer was made: the stream
        // alone says whether something came since.
        if pending == 0 && self.stream_done(filter, scan).await? {
            return Ok(());
        }
        let js = &self.js;
        let inbox = async_nats::Subject::from(self.client.new_inbox());
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| nats_error(SCANNING, e, self.state()))?;
        let mut asked = 0;
        let mut heard = tokio::time::Instant::now();
        loop {
            if asked <= SCAN_BATCH / 2 {
                self.ask(consumer, &inbox).await?;
                asked += SCAN_BATCH;
            }
            let mut caught_up = false;
            // What has arrived is read before the stream is asked; the
            // consumer is waited for only while it has more to give.
            loop {
                let answer = match answers.next().now_or_never() {
                    Some(answer) => Some(answer),
                    None if caught_up => break,
                    None => tokio::time::timeout(SCAN_QUIET, answers.next()).await.ok(),
                };
                let Some(answer) = answer else {
                    // Quiet: a request the server holds but does not serve
                    // (a new one wakes the consumer), or nothing left.
                    if heard.elapsed() >= SCAN_SILENCE {
                        return Err(Error::backend(
                            BackendErrorKind::Timeout,
                            format!("nats {SCANNING}: the server stopped answering mid-scan"),
                        )
                        .into());
                    }
                    asked = 0;
                    break;
                };
                let Some(m) = answer else {
                    return Err(Error::backend(
                        BackendErrorKind::Unavailable,
                        format!("nats {SCANNING}: the connection closed mid-scan"),
                    )
                    .into());
                };
                heard = tokio::time::Instant::now();
                match m.status {
                    None | Some(StatusCode::OK) => {
                        let m = jetstream::Message {
                            message: m,
                            context: js.clone(),
                        };
                        let info = m.info().map_err(|e| bad_data(format!("{SCANNING}: {e}")))?;
                        let (rev, left) = (info.stream_sequence, info.pending);
                        scan.take(m.subject.as_str(), m.headers.as_ref(), &m.payload, rev);
                        asked = asked.saturating_sub(1);
                        caught_up = left == 0;
                        if asked <= SCAN_BATCH / 2 {
                            break;
                        }
                    }
                    Some(StatusCode::IDLE_HEARTBEAT) => {}
                    Some(status) => {
                        request_ended(status, m.description.as_deref())?;
                        asked = 0;
                        caught_up = true;
                    }
                }
            }
            if (caught_up || asked == 0) && self.stream_done(filter, scan).await? {
                return Ok(());
            }
        }
    }

    /// Asks the scan's consumer for the next entries, answered on `inbox`.
    async fn ask(
        &self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
        inbox: &async_nats::Subject,
    ) -> Result<(), Error> {
        let request = pull::BatchConfig {
            batch: SCAN_BATCH,
            expires: Some(SCAN_SILENCE),
            ..Default::default()
        };
        consumer
            .request_batch(request, inbox.clone())
            .await
            .map_err(|e| nats_error(SCANNING, e, self.state()))
    }

    /// Whether the stream holds nothing under `filter` after the last entry
    /// the scan read; the first such entry, if any, is taken.
    async fn stream_done(&self, filter: &str, scan: &mut Scan) -> Result<bool, Error> {
        let next = self
            .stream
            .raw_message_builder()
            .sequence(scan.last + 1)
            .next_by_subject(filter)
            .send()
            .await;
        match next {
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(true),
            Err(e) => Err(nats_error(SCANNING, e, self.state())),
            Ok(m) => {
                scan.take(m.subject.as_str(), Some(&m.headers), &m.payload, m.sequence);
                Ok(false)
            }
        }
    }
}

/// A status that ended one of a scan's pull requests: fine (the scan asks
/// again) unless it says the consumer is gone, or that no server serves it
/// (yet: [`Failed::Unserved`]).
fn request_ended(status: StatusCode, description: Option<&str>) -> Result<(), Failed> {
    let gone = |why: &str| {
        Error::backend(
            BackendErrorKind::Unavailable,
            format!("nats {SCANNING}: {status} {why}"),
        )
    };
    let why = description.unwrap_or("from the server");
    if status == StatusCode::NO_RESPONDERS {
        return Err(Failed::Unserved(gone(why)));
    }
    if matches!(
        description,
        Some("Consumer Deleted" | "Consumer is push based")
    ) {
        return Err(Failed::Other(gone(why)));
    }
    Ok(())
}

/// What a scan has read so far: each key once, at its newest revision,
/// in the order keys were first seen.
struct Scan {
    /// The subject prefix before a key.
    prefix: String,
    out: Vec<(String, Bytes, u64)>,
    /// Where each key is in `out`.
    at: HashMap<String, usize>,
    /// The highest stream sequence read.
    last: u64,
}

impl Scan {
    fn new(prefix: String, pending: u64) -> Scan {
        // Sized once (bounded: keys may come and go during the scan).
        let size = usize::try_from(pending).unwrap_or(0).min(1 << 20);
        Scan {
            prefix,
            out: Vec::with_capacity(size),
            at: HashMap::with_capacity(size),
            last: 0,
        }
    }

    /// One entry read at stream sequence `rev`. A removal marker (which
    /// this backend does not write) leaves a listed key at its last live
    /// value; an older revision than the one listed changes nothing.
    fn take(&mut self, subject: &str, headers: Option<&HeaderMap>, payload: &Bytes, rev: u64) {
        self.last = self.last.max(rev);
        let Some(key) = subject.strip_prefix(&self.prefix) else {
            return;
        };
        if !is_live(headers) {
            return;
        }
        match self.at.get(key) {
            Some(&i) if self.out[i].2 >= rev => {}
            Some(&i) => (self.out[i].1, self.out[i].2) = (payload.clone(), rev),
            None => {
                self.at.insert(key.to_string(), self.out.len());
                self.out.push((key.to_string(), payload.clone(), rev));
            }
        }
    }
}
