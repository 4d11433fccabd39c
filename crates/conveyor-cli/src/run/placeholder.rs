//! `conveyor run`'s argument templates: how one input item becomes a command.
//!
//! | placeholder | value |
//! |---|---|
//! | `{}` | the whole item |
//! | `{1}`, `{2}`, … | the item's fields, split on runs of whitespace or on `--delimiter` |
//! | `{.field}` | a field of a JSON item (`--json`); nested: `{.a.b}`, array index: `{.list.0}` |
//! | `{#}` | the item's sequence number (1, 2, …; blank lines are not items) |
//! | `{{`, `}}` | a literal brace |
//!
//! Each template expands into exactly one argv item; nothing passes through a
//! shell. With `--shell` the templates are joined by spaces into one script for
//! `/bin/sh -c`, and every placeholder's value is single-quoted in it, so an item
//! still reaches the script as data, never as code.
//!
//! When no template has a placeholder, `{}` is appended as the last argument, as
//! `xargs` and GNU parallel do.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde_json::Value;

use super::input::Item;
use crate::template::{tokens, Token};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Whole,
    Field(usize),
    Json(Vec<String>),
    Seq,
}

/// One argument's template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    parts: Vec<Part>,
}

/// The whole command: one template per argv item (or the shell script's words).
#[derive(Debug, Clone)]
pub struct CommandTemplate {
    templates: Vec<Template>,
    shell: bool,
}

/// What the templates expand to for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// The program, then its arguments (`/bin/sh`, `-c`, script with `--shell`).
    pub items: Vec<OsString>,
}

impl CommandTemplate {
    /// Parses `PROGRAM ARGS…`. `json` tells whether items are JSON (required for
    /// `{.field}`).
    pub fn parse(command: &[String], shell: bool, json: bool) -> Result<Self, String> {
        if command.is_empty() {
            return Err("no command given: conveyor run [OPTIONS] -- PROGRAM [ARGS...]".into());
        }
        let mut templates = Vec::with_capacity(command.len() + 1);
        for (i, arg) in command.iter().enumerate() {
            let t = Template::parse(arg).map_err(|e| {
                let what = if i == 0 {
                    "the program".to_string()
                } else {
                    format!("argument {i}")
                };
                format!("{what} ({arg:?}): {e}")
            })?;
            if !json && t.parts.iter().any(|p| matches!(p, Part::Json(_))) {
                return Err(format!(
                    "{arg:?} reads a JSON field, but items are plain lines (add --json)"
                ));
            }
            templates.push(t);
        }
        if !templates.iter().any(Template::has_placeholder) {
            templates.push(Template {
                parts: vec![Part::Whole],
            });
        }
        Ok(Self { templates, shell })
    }

    /// The program when it is a fixed name (no placeholder, no shell): the one
    /// to look for before anything runs.
    pub fn fixed_program(&self) -> Option<&str> {
        if self.shell {
            return None;
        }
        match self.templates.first()?.parts.as_slice() {
            [Part::Text(s)] => Some(s),
            _ => None,
        }
    }

    /// A stable description of the command, for the state file: a resumed run
    /// must run the same command.
    pub fn fingerprint(&self) -> String {
        let words: Vec<String> = self.templates.iter().map(Template::source).collect();
        let tag = if self.shell { "shell" } else { "argv" };
        serde_json::json!({ "mode": tag, "command": words }).to_string()
    }

    /// Expands the command for one item.
    pub fn expand(&self, item: &Item, delimiter: Option<&str>) -> Result<Argv, String> {
        if self.shell {
            let mut script = Vec::new();
            for (i, t) in self.templates.iter().enumerate() {
                if i > 0 {
                    script.push(b' ');
                }
                script.extend(t.expand(item, delimiter, true)?);
            }
            return Ok(Argv {
                items: vec!["/bin/sh".into(), "-c".into(), OsString::from_vec(script)],
            });
        }
        let items = self
            .templates
            .iter()
            .map(|t| t.expand(item, delimiter, false).map(OsString::from_vec))
            .collect::<Result<_, _>>()?;
        Ok(Argv { items })
    }
}

impl Template {
    fn parse(s: &str) -> Result<Self, String> {
        let parts = tokens(s)?
            .into_iter()
            .map(|t| match t {
                Token::Text(text) => Ok(Part::Text(text)),
                Token::Placeholder(name) => placeholder(&name),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { parts })
    }

    fn has_placeholder(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Text(_)))
    }

    /// The template written back out.
    fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.replace('{', "{{").replace('}', "}}"),
                Part::Whole => "{}".into(),
                Part::Field(n) => format!("{{{n}}}"),
                Part::Json(path) => format!("{{.{}}}", path.join(".")),
                Part::Seq => "{#}".into(),
            })
            .collect()
    }

    fn expand(&self, item: &Item, delimiter: Option<&str>, quote: bool) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for part in &self.parts {
            let value: Vec<u8> = match part {
                Part::Text(t) => {
                    out.extend_from_slice(t.as_bytes());
                    continue;
                }
                Part::Whole => item.raw.clone(),
                Part::Seq => item.seq.to_string().into_bytes(),
                Part::Field(n) => field(&item.raw, *n, delimiter)?.to_vec(),
                Part::Json(path) => json_field(item, path)?,
            };
            if quote {
                shell_quote(&value, &mut out);
            } else {
                out.extend_from_slice(&value);
            }
        }
        Ok(out)
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    let known = "known placeholders: {}, {1} {2}…, {.field}, {#}";
    match name {
        "" => Ok(Part::Whole),
        "#" => Ok(Part::Seq),
        _ if name.starts_with('.') => {
            let path: Vec<String> = name[1..].split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("bad JSON field placeholder {{{name}}} ({known})"));
            }
            Ok(Part::Json(path))
        }
        _ => match name.parse::<usize>() {
            Ok(0) => Err("fields count from 1: {1} is the first ({0} does not exist)".into()),
            Ok(n) => Ok(Part::Field(n)),
            Err(_) => Err(format!("unknown placeholder {{{name}}} ({known})")),
        },
    }
}

/// The `n`th field (from 1) of an item.
fn field<'a>(raw: &'a [u8], n: usize, delimiter: Option<&str>) -> Result<&'a [u8], String> {
    let fields: Vec<&[u8]> = match delimiter {
        Some(d) => split_on(raw, d.as_bytes()),
        None => raw
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .collect(),
    };
    fields.get(n - 1).copied().ok_or_else(|| {
        format!(
            "the item has {} field{}, so {{{n}}} has no value",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        )
    })
}

fn split_on<'a>(raw: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    if delimiter.is_empty() {
        return vec![raw];
    }
    let mut fields = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        fields.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    fields.push(rest);
    fields
}

fn json_field(item: &Item, path: &[String]) -> Result<Vec<u8>, String> {
    let Some(mut at) = item.json.as_ref() else {
        return Err("the item is not JSON".into());
    };
    for part in path {
        at = match at {
            Value::Object(map) => map.get(part.as_str()),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("the item has no field .{}", path.join(".")))?;
    }
    Ok(match at {
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    })
}

/// Appends `value` single-quoted for `/bin/sh`: `'` becomes `'\''`.
fn shell_quote(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(raw: &str) -> Item {
        Item {
            seq: 7,
            line: 9,
            raw: raw.as_bytes().to_vec(),
            json: serde_json::from_str(raw).ok(),
        }
    }

    fn words(cmd: &[&str], shell: bool, json: bool, raw: &str) -> Result<Vec<String>, String> {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let t = CommandTemplate::parse(&cmd, shell, json)?;
        let argv = t.expand(&item(raw), None)?;
        Ok(argv
            .items
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect())
    }

    #[test]
    fn placeholders_expand_into_single_arguments() {
        let got = words(
            &["echo", "{}", "{2}", "n={#}", "{{x}}"],
            false,
            false,
            "a b;c $(id)",
        )
        .unwrap();
        assert_eq!(got, ["echo", "a b;c $(id)", "b;c", "n=7", "{x}"]);
        let got = words(
            &["p", "{.name}", "{.n.list.1}", "{.missing_ok}"],
            false,
            true,
            r#"{"name":"x y","n":{"list":[1,2]},"missing_ok":null}"#,
        )
        .unwrap();
        assert_eq!(got, ["p", "x y", "2", ""]);
    }

    #[test]
    fn without_placeholders_the_item_is_the_last_argument() {
        assert_eq!(
            words(&["echo", "-n"], false, false, "it").unwrap(),
            ["echo", "-n", "it"]
        );
    }

    #[test]
    fn shell_mode_quotes_values() {
        let got = words(&["echo {} | wc -c"], true, false, "it's $(id)").unwrap();
        assert_eq!(got, ["/bin/sh", "-c", r"echo 'it'\''s $(id)' | wc -c"]);
    }

    #[test]
    fn delimiter_splits_fields() {
        let cmd = vec!["p".to_string(), "{3}".to_string()];
        let t = CommandTemplate::parse(&cmd, false, false).unwrap();
        let argv = t.expand(&item("a,,c"), Some(",")).unwrap();
        assert_eq!(argv.items[1], "c");
        let err = t.expand(&item("a b"), None).unwrap_err();
        assert!(err.contains("2 fields"), "{err}");
    }

    #[test]
    fn bad_templates_are_named() {
        let parse = |a: &[&str], json| {
            let v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            CommandTemplate::parse(&v, false, json).unwrap_err()
        };
        assert!(parse(&["p", "{nope}"], false).contains("unknown placeholder {nope}"));
        assert!(parse(&["p", "{0}"], false).contains("count from 1"));
        assert!(parse(&["p", "{.a}"], false).contains("--json"));
        assert!(parse(&["p", "x{"], false).contains("unclosed"));
        assert!(parse(&["p", "x}"], false).contains("unmatched"));
        assert!(parse(&["p", "{.a..b}"], true).contains("bad JSON field"));
    }

    #[test]
    fn fingerprint_is_the_command_written_back() {
        let cmd: Vec<String> = ["p", "{.a}-{{}}", "{#}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = CommandTemplate::parse(&cmd, false, true).unwrap();
        assert!(
            t.fingerprint().contains(r#"["p","{.a}-{{}}","{#}"]"#),
            "{}",
            t.fingerprint()
        );
    }
}
