//! `conveyor run`'s input: items read one at a time from a file or stdin.
//!
//! Items are lines (a trailing `\r` is dropped with the `\n`), or NUL-separated
//! with `-0`, or JSON Lines with `--json`. Blank items are skipped: they are not
//! numbered, so `{#}` and the state file's numbering count real items only.
//! Items are raw bytes: input that is not UTF-8 reaches the program unchanged.

use std::io::{self, BufRead};

use serde_json::Value;

/// One input item.
#[derive(Debug, Clone)]
pub struct Item {
    /// Sequence number, from 1.
    pub seq: u64,
    /// The line (or NUL-separated record) it came from, from 1.
    pub line: u64,
    /// The item's bytes, without the separator.
    pub raw: Vec<u8>,
    /// The parsed item, with `--json`.
    pub json: Option<Value>,
}

/// What reading produced.
#[derive(Debug)]
pub enum Read {
    /// A good item.
    Item(Item),
    /// An item that cannot run: it keeps its sequence number so the numbering
    /// stays stable, and fails with this message.
    Bad(Item, String),
}

/// Reads items from `reader`.
pub struct Items<R> {
    reader: R,
    separator: u8,
    json: bool,
    line: u64,
    seq: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Items<R> {
    /// Items separated by `\n` (or NUL when `nul`), parsed as JSON when `json`.
    pub fn new(reader: R, nul: bool, json: bool) -> Self {
        Self {
            reader,
            separator: if nul { 0 } else { b'\n' },
            json,
            line: 0,
            seq: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for Items<R> {
    type Item = io::Result<Read>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(self.separator, &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            }
            self.line += 1;
            let mut raw = std::mem::take(&mut self.buf);
            if raw.last() == Some(&self.separator) {
                raw.pop();
            }
            if self.separator == b'\n' && raw.last() == Some(&b'\r') {
                raw.pop();
            }
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.seq += 1;
            let mut item = Item {
                seq: self.seq,
                line: self.line,
                raw,
                json: None,
            };
            if !self.json {
                return Some(Ok(Read::Item(item)));
            }
            return Some(Ok(match serde_json::from_slice(&item.raw) {
                Ok(v) => {
                    item.json = Some(v);
                    Read::Item(item)
                }
                Err(e) => {
                    let msg = format!("line {}: invalid JSON: {e}", item.line);
                    Read::Bad(item, msg)
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str, nul: bool, json: bool) -> Vec<Read> {
        Items::new(input.as_bytes(), nul, json)
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn lines_are_numbered_and_blank_lines_skipped() {
        let got = read("a\r\n\n  \nb c\nlast", false, false);
        let items: Vec<(u64, u64, String)> = got
            .into_iter()
            .map(|r| match r {
                Read::Item(i) => (i.seq, i.line, String::from_utf8(i.raw).unwrap()),
                Read::Bad(..) => panic!("bad"),
            })
            .collect();
        assert_eq!(
            items,
            [
                (1, 1, "a".into()),
                (2, 4, "b c".into()),
                (3, 5, "last".into())
            ]
        );
    }

    #[test]
    fn nul_separated_items_keep_newlines() {
        let got = read("a\nb\0c\0", true, false);
        assert_eq!(got.len(), 2);
        let Read::Item(first) = &got[0] else { panic!() };
        assert_eq!(first.raw, b"a\nb");
    }

    #[test]
    fn invalid_json_names_the_line_and_keeps_the_numbering() {
        let got = read("{\"a\":1}\n{oops\n[2]\n", false, true);
        assert!(matches!(&got[0], Read::Item(i) if i.json.is_some()));
        match &got[1] {
            Read::Bad(i, msg) => {
                assert_eq!(i.seq, 2);
                assert!(msg.starts_with("line 2: invalid JSON"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[2], Read::Item(i) if i.seq == 3));
    }
}
