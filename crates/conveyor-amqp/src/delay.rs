//! Delayed tasks without a plugin: a ladder of queues whose messages expire
//! into the next rung.
//!
//! Open-source RabbitMQ has no delayed delivery (the delayed-message plugin is
//! archived), and a queue's TTL only expires the message at its head, so one
//! queue cannot hold messages of different delays. The ladder has one rung per
//! bit of the delay in milliseconds: rung `L` is a queue whose every message
//! waits `2^L` ms, then dead-letters into exchange `L-1` (rung 0 into
//! `P.deliver`). A task's routing key spells its delay in binary, highest bit
//! first, then its queue's word: `0.0.….1.0.1.q-orders`. Exchange `L` routes a
//! key whose bit `L` is `1` into queue `L` and passes the others straight on
//! to exchange `L-1` (an exchange-to-exchange binding), so a 5 ms task sits in
//! rung 2 (4 ms) and rung 0 (1 ms) only. `P.deliver` routes `#.WORD` to the
//! queue's work queue.
//!
//! Every rung holds messages of one TTL, so head-of-queue expiry is exact.
//! A message passes through each rung at most once, so RabbitMQ's cycle
//! detection (which drops a message that dead-letters through the same queue
//! twice) never fires; a retried task is a new publish, not a loop. The rungs
//! are quorum queues dead-lettering at-least-once (`overflow=reject-publish`),
//! so a broker restart mid-delay loses nothing. A delay longer than the ladder
//! (2^32 ms, about 49 days) goes round again: the task carries its due time,
//! and a worker that receives it early sends it back up the ladder.

/// Rungs: delays up to 2^32 - 1 ms per pass.
pub(crate) const LEVELS: u32 = 32;

/// The longest delay one pass of the ladder gives, in milliseconds.
pub(crate) const MAX_PASS_MS: u64 = (1 << LEVELS) - 1;

/// The routing key of a message to be delayed `ms` milliseconds (at most one
/// pass; longer delays are cut to [`MAX_PASS_MS`]) into the queue of `word`.
pub(crate) fn routing_key(ms: u64, word: &str) -> String {
    let ms = ms.min(MAX_PASS_MS);
    let mut key = String::with_capacity(LEVELS as usize * 2 + word.len());
    for level in (0..LEVELS).rev() {
        key.push(if ms >> level & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(word);
    key
}

/// The binding of rung `level`'s queue to its exchange: bit `level` set.
pub(crate) fn rung_binding(level: u32) -> String {
    binding(level, '1')
}

/// The binding passing a key on from exchange `level` to the next: bit clear.
pub(crate) fn pass_binding(level: u32) -> String {
    binding(level, '0')
}

fn binding(level: u32, bit: char) -> String {
    let mut key = "*.".repeat((LEVELS - 1 - level) as usize);
    key.push(bit);
    key.push_str(".#");
    key
}

/// The binding of a work queue to `P.deliver`.
pub(crate) fn deliver_binding(word: &str) -> String {
    format!("#.{word}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which rungs a key passes through, by matching the bindings the way a
    /// topic exchange does for these simple patterns.
    fn rungs(key: &str) -> Vec<u32> {
        let words: Vec<&str> = key.split('.').collect();
        (0..LEVELS)
            .rev()
            .filter(|&l| words[(LEVELS - 1 - l) as usize] == "1")
            .collect()
    }

    #[test]
    fn a_delay_is_spelled_in_binary() {
        let key = routing_key(5, "q-orders");
        assert!(key.ends_with(".1.0.1.q-orders"), "{key}");
        assert_eq!(rungs(&key), vec![2, 0]);
        let waited: u64 = rungs(&routing_key(86_400_000, "q-a"))
            .iter()
            .map(|l| 1u64 << l)
            .sum();
        assert_eq!(waited, 86_400_000);
        assert_eq!(rungs(&routing_key(0, "q-a")), Vec::<u32>::new());
        assert_eq!(
            rungs(&routing_key(u64::MAX, "q-a")).len(),
            LEVELS as usize,
            "longer delays are cut to one pass"
        );
    }

    #[test]
    fn bindings_point_at_one_bit() {
        assert_eq!(rung_binding(LEVELS - 1), "1.#");
        assert_eq!(pass_binding(LEVELS - 1), "0.#");
        assert_eq!(rung_binding(0), format!("{}1.#", "*.".repeat(31)));
        assert_eq!(deliver_binding("q-x"), "#.q-x");
    }
}
