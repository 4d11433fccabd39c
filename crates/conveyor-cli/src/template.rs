//! Argument templates: how a task's JSON params become a command's argv.
//!
//! Each template item becomes exactly one argv item — never passed through a
//! shell — with placeholders replaced:
//!
//! | placeholder | value |
//! |---|---|
//! | `{}` | the whole params (a string as is, anything else as compact JSON) |
//! | `{name}` | the field `name` of an object (nested: `{a.b}`) |
//! | `{0}` | the item at index 0 of an array |
//! | `{{`, `}}` | a literal brace |
//!
//! A missing field is an error naming it, so the task is dead-lettered with a
//! clear message instead of running with a blank argument.

use serde_json::Value;

/// A piece of a template: literal text, or the name inside a `{…}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Literal text (with `{{` and `}}` already turned into braces).
    Text(String),
    /// What stood between `{` and `}`.
    Placeholder(String),
}

/// Splits a template into text and placeholders; `{{` and `}}` are literal
/// braces. Shared by `conveyor.toml` handler templates and `conveyor run`.
pub fn tokens(template: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => {
                            return Err(format!(
                                "unclosed '{{' in {template:?} (write {{{{ for a literal brace)"
                            ))
                        }
                    }
                }
                if !text.is_empty() {
                    out.push(Token::Text(std::mem::take(&mut text)));
                }
                out.push(Token::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched '}}' in {template:?} (write }}}} for a literal brace)"
                ))
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        out.push(Token::Text(text));
    }
    Ok(out)
}

/// Expands one template item against the params.
pub fn expand(template: &str, params: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for token in tokens(template)? {
        match token {
            Token::Text(t) => out.push_str(&t),
            Token::Placeholder(path) => out.push_str(&render(lookup(params, path.trim())?)),
        }
    }
    Ok(out)
}

/// Checks a template's syntax without params (at config load time).
pub fn check(template: &str) -> Result<(), String> {
    tokens(template).map(|_| ())
}

fn lookup<'a>(params: &'a Value, path: &str) -> Result<&'a Value, String> {
    if path.is_empty() {
        return Ok(params);
    }
    let mut at = params;
    for part in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("the params have no {path:?} (in placeholder {{{path}}})"))?;
    }
    Ok(at)
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_expand_to_single_arguments() {
        let p = json!({"a": 2, "b": "x; rm -rf / $(id)", "n": {"deep": [1, 2]}});
        assert_eq!(expand("{a}", &p).unwrap(), "2");
        assert_eq!(
            expand("--name={b}", &p).unwrap(),
            "--name=x; rm -rf / $(id)"
        );
        assert_eq!(expand("{n.deep.1}", &p).unwrap(), "2");
        assert_eq!(expand("{n}", &p).unwrap(), r#"{"deep":[1,2]}"#);
        assert_eq!(expand("{{literal}}", &p).unwrap(), "{literal}");
        assert_eq!(expand("{}", &json!("whole")).unwrap(), "whole");
        assert_eq!(expand("{1}", &json!([5, 6])).unwrap(), "6");
    }

    #[test]
    fn missing_fields_and_bad_syntax_are_named() {
        let err = expand("{zzz}", &json!({"a": 1})).unwrap_err();
        assert!(err.contains("\"zzz\""), "{err}");
        assert!(check("{oops").is_err());
        assert!(check("oops}").is_err());
        assert!(check("{fine}").is_ok());
    }
}
