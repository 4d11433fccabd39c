//! Searching tasks: text in their params or error, a page of matches found
//! within a bounded amount of work, and counts of what a filter matches.
//!
//! A store of a million tasks must answer a dashboard's page in milliseconds,
//! so nothing here reads without bound. The filters a store indexes (state,
//! and queue) narrow the candidates; the others (handler, text) are checked
//! on at most [`SCAN_BUDGET`] candidates per page. A page that used up its
//! budget before it was full says where it stopped ([`Page::next`]), and the
//! next page goes on from there: every matching task is still found, a page
//! at a time, and no page costs more than the budget.
//!
//! Counts work the same way: a count of state, queue and handler is exact
//! and cheap where the store keeps counts (the embedded store and
//! PostgreSQL keep them per queue, handler and state); a count with a text
//! is exact when the candidates fit in [`COUNT_BUDGET`], and otherwise a
//! lower bound ([`Count::exact`] false).

use super::{ListOrder, ListParams};
use crate::durable_task::TaskRecord;
use crate::task::TaskId;
use crate::Error;

/// Candidate tasks one page reads at most to check the filters no index
/// serves (handler, text).
pub const SCAN_BUDGET: usize = 10_000;

/// Candidate tasks a count reads at most.
pub const COUNT_BUDGET: usize = 100_000;

/// Text to find in a task's params or its error: a substring, ignoring ASCII
/// case. Params are matched as their encoded bytes (JSON for the usual
/// codec), so `"user_id":42` finds the tasks whose params hold that field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    text: String,
    folded: Vec<u8>,
}

impl Search {
    /// The longest text searched for, in bytes.
    pub const MAX_LEN: usize = 256;

    /// A search for `text`; `None` for an empty text (no search). A text
    /// longer than [`Search::MAX_LEN`] bytes is cut there (at a character
    /// boundary).
    pub fn new(text: &str) -> Option<Search> {
        if text.is_empty() {
            return None;
        }
        let mut end = text.len().min(Self::MAX_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = text[..end].to_string();
        let folded = text.as_bytes().to_ascii_lowercase();
        Some(Search { text, folded })
    }

    /// The text, as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `record`'s params or error hold the text.
    pub fn matches(&self, record: &TaskRecord) -> bool {
        self.found_in(&record.payload)
            || record
                .error
                .as_deref()
                .is_some_and(|e| self.found_in(e.as_bytes()))
    }

    /// Whether `haystack` holds the text, ignoring ASCII case.
    pub fn found_in(&self, haystack: &[u8]) -> bool {
        let needle = &self.folded;
        haystack.len() >= needle.len()
            && haystack
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
    }
}

/// One page of a search, and where the next one starts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The matching tasks, in the listing's order (at most its limit).
    pub tasks: Vec<TaskRecord>,
    /// Where to go on: more tasks may match after this one, so ask again
    /// with [`ListParams::after`](super::ListParams::after) set to it. It is
    /// the last task read, which need not be among `tasks` when the page
    /// stopped at its budget. `None`: nothing after this page matches.
    pub next: Option<TaskId>,
    /// Candidate tasks read to make the page.
    pub scanned: u64,
}

impl Page {
    /// A page of `tasks`, going on after `next`, made from `scanned` reads.
    pub fn new(tasks: Vec<TaskRecord>, next: Option<TaskId>, scanned: u64) -> Page {
        Page {
            tasks,
            next,
            scanned,
        }
    }

    /// True when the page stopped at its budget before it was full: there
    /// may be more matches after [`Page::next`], but this page read enough.
    pub fn stopped_early(&self, limit: usize) -> bool {
        self.next.is_some() && self.tasks.len() < limit
    }
}

/// How many tasks a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The count, or a lower bound of it when not `exact`.
    pub n: u64,
    /// False when the count stopped at [`COUNT_BUDGET`] candidates: at
    /// least `n` match.
    pub exact: bool,
}

impl Count {
    /// An exact count.
    pub fn exact(n: u64) -> Count {
        Count { n, exact: true }
    }

    /// A lower bound.
    pub fn at_least(n: u64) -> Count {
        Count { n, exact: false }
    }
}

/// [`Inspection::page`](super::Inspection::page) made of
/// [`Inspection::list`](super::Inspection::list) calls: the store filters by
/// state, queue and handler, and the text is checked here, on at most
/// [`SCAN_BUDGET`] tasks. What a store without its own search uses.
pub async fn page_by_listing(
    store: &(impl super::Inspection + ?Sized),
    params: &ListParams,
    search: Option<&Search>,
) -> Result<Page, Error> {
    let Some(search) = search else {
        let tasks = store.list(params).await?;
        let next = if tasks.len() < params.limit {
            None
        } else {
            tasks.last().map(|t| t.id)
        };
        let scanned = tasks.len() as u64;
        return Ok(Page::new(tasks, next, scanned));
    };
    let mut tasks = Vec::new();
    let mut cursor = params.after;
    let mut scanned = 0usize;
    while tasks.len() < params.limit {
        let chunk = LISTING_CHUNK.min(SCAN_BUDGET - scanned);
        let got = store
            .list(&params.clone().after_opt(cursor).limit(chunk))
            .await?;
        let ended = got.len() < chunk;
        for record in got {
            scanned += 1;
            cursor = Some(record.id);
            if search.matches(&record) {
                tasks.push(record);
                if tasks.len() == params.limit {
                    return Ok(Page::new(tasks, cursor, scanned as u64));
                }
            }
        }
        if ended {
            return Ok(Page::new(tasks, None, scanned as u64));
        }
        if scanned >= SCAN_BUDGET {
            break;
        }
    }
    Ok(Page::new(tasks, cursor, scanned as u64))
}

/// [`Inspection::count`](super::Inspection::count) made of
/// [`Inspection::stats`](super::Inspection::stats) (state and queue alone:
/// exact) and [`Inspection::list`](super::Inspection::list) calls (with a
/// handler or a text: at most [`COUNT_BUDGET`] tasks read).
pub async fn count_by_listing(
    store: &(impl super::Inspection + ?Sized),
    params: &ListParams,
    search: Option<&Search>,
) -> Result<Count, Error> {
    if params.handler.is_none() && search.is_none() {
        return count_from_stats(store, params).await;
    }
    let mut n = 0u64;
    let mut scanned = 0usize;
    let mut next = Some(
        params
            .clone()
            .order(ListOrder::OldestFirst)
            .after_opt(None)
            .limit(LISTING_CHUNK),
    );
    while let Some(p) = next {
        if scanned >= COUNT_BUDGET {
            return Ok(Count::at_least(n));
        }
        let got = store.list(&p).await?;
        scanned += got.len();
        n += got
            .iter()
            .filter(|r| search.is_none_or(|s| s.matches(r)))
            .count() as u64;
        next = p.next_page(&got);
    }
    Ok(Count::exact(n))
}

/// The exact count of tasks in `params`' state (and queue), from the store's
/// counts per queue and state.
pub async fn count_from_stats(
    store: &(impl super::Inspection + ?Sized),
    params: &ListParams,
) -> Result<Count, Error> {
    let n = store
        .stats()
        .await?
        .iter()
        .filter(|q| params.queue.as_deref().is_none_or(|want| q.queue == want))
        .map(|q| q.count(params.state))
        .sum();
    Ok(Count::exact(n))
}

/// Tasks one `list` call of [`page_by_listing`] and [`count_by_listing`] asks for.
const LISTING_CHUNK: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_ignoring_ascii_case() {
        let s = Search::new("Alice").expect("a search");
        assert!(s.found_in(br#"{"user":"alice@example.org"}"#));
        assert!(s.found_in(b"ALICE"));
        assert!(!s.found_in(b"alic"));
        assert!(!s.found_in(b""));
        let s = Search::new("Zoë").expect("a search");
        assert!(s.found_in("name: zoë".as_bytes()));
        assert!(!s.found_in("name: zoe".as_bytes()));
    }

    #[test]
    fn empty_text_is_no_search_and_long_text_is_cut_at_a_char() {
        assert!(Search::new("").is_none());
        let long = "é".repeat(200); // 400 bytes
        let s = Search::new(&long).expect("a search");
        assert!(s.text().len() <= Search::MAX_LEN);
        assert_eq!(s.text().len() % 2, 0);
    }
}
