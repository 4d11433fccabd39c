//! Two subjects measured in alternating rounds.
//!
//! Measured one after the other, the second subject of a pair runs in
//! another phase of the machine than the first (client and servers share two
//! cores here, and a run's first measurements have come out up to 20% below
//! the same ones repeated later): the drift shows up as a difference between
//! the subjects. Alternating the rounds, with the side that goes first
//! alternating too, spreads the drift over both; each side's median is what
//! a row reports.

use std::future::Future;

/// Runs `measure(false)` (the first subject) and `measure(true)` (the
/// second) `rounds` times each, alternating which goes first; each side's
/// results, in round order.
pub async fn alternate<T, F, Fut>(rounds: usize, mut measure: F) -> (Vec<T>, Vec<T>)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = T>,
{
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_second in order {
            let got = measure(is_second).await;
            if is_second {
                second.push(got);
            } else {
                first.push(got);
            }
        }
    }
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_side_runs_every_round_and_the_first_alternates() {
        let mut order = Vec::new();
        let (a, b) = alternate(3, |second| {
            order.push(second);
            let n = order.len();
            async move { n }
        })
        .await;
        assert_eq!(order, [false, true, true, false, false, true]);
        assert_eq!(a, [1, 4, 5]);
        assert_eq!(b, [2, 3, 6]);
    }
}
