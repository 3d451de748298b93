//! What configuration errors may show: positions, key names and paths that name something,
//! never a value that might be a secret.
//!
//! Two mistakes put a secret where meetgate prints text back:
//! * a secret pasted where a file name belongs (`app_key_file = "<the key itself>"`): a path
//!   that names nothing is shown only up to its longest existing directory
//!   ([`shown_path`]);
//! * a secret file passed as `--config`: TOML errors are reported as line, column and the
//!   key in the schema, without the parser's quote of the line or any value from the file
//!   ([`toml_error`]).

use std::path::Path;

use toml::de::{DeTable, DeValue};

/// A path from the configuration as it may appear in a message. Whole if something exists
/// there (it is a real path, not a pasted secret); otherwise only its longest existing
/// ancestor, since a value that names nothing may be a secret put there by mistake.
pub fn shown_path(path: &Path) -> String {
    if path.symlink_metadata().is_ok() {
        return path.display().to_string();
    }
    let existing = path
        .ancestors()
        .skip(1)
        .find(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_ok());
    match existing {
        Some(dir) if dir == Path::new("/") => "/… (nothing exists there)".to_owned(),
        Some(dir) => format!("{}/… (nothing exists there)", dir.display()),
        None => "… (nothing exists there)".to_owned(),
    }
}

/// A TOML parse error of `text` as the operator sees it: where it is, which key of the
/// schema, and what is wrong. The parser's own message quotes the offending line and values
/// from it; this one quotes neither.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|s| s.start.min(text.len()));
    let position = match at {
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "somewhere in the file".to_owned(),
    };
    let message = e.message();
    let unknown_key = message.starts_with("unknown field");
    let key = at.and_then(|at| key_path_at(text, at, unknown_key));
    let (what, expected) = describe(message);
    match key {
        Some(k) if unknown_key => format!("{position}: {what} in [{k}]{expected}"),
        Some(k) => format!("{position}, key `{k}`: {what}{expected}"),
        None => format!("{position}: {what}{expected}"),
    }
}

/// The parser's message without anything taken from the input, as what is wrong and what
/// was expected: serde quotes unknown keys, unknown enum values and mistyped values; those
/// are replaced by what kind of thing they were. What follows ", expected" lists the
/// schema's own names and stays.
fn describe(message: &str) -> (String, String) {
    let (head, expected) = match message.find(", expected ") {
        Some(i) => message.split_at(i),
        None => (message, ""),
    };
    let kind = |rest: &str| rest.split([' ', ',']).next().unwrap_or("").to_owned();
    let head = if head.starts_with("unknown field") {
        "unknown key".to_owned()
    } else if head.starts_with("unknown variant") {
        "unknown value".to_owned()
    } else if let Some(rest) = head.strip_prefix("invalid type: ") {
        format!("invalid type ({})", kind(rest))
    } else if let Some(rest) = head.strip_prefix("invalid value: ") {
        format!("invalid value ({})", kind(rest))
    } else {
        without_quotes(head)
    };
    (head, without_quotes(expected))
}

/// `text` with every double-quoted stretch replaced by `"…"`, in case a message this module
/// does not know quotes a value.
fn without_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut inside = true;
    for part in parts {
        out.push_str(if inside { "\"…" } else { "\"" });
        if !inside {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// The dotted path of the key whose name or value is at byte `at` of `text` (which must be
/// valid TOML syntax). With `parent_only`, the key at `at` is itself unknown to the schema
/// (it is input, maybe anything), so only the path of the table holding it is returned
/// (`top level` for the document).
fn key_path_at(text: &str, at: usize, parent_only: bool) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    if !find(doc.get_ref(), at, &mut path) {
        return None;
    }
    if parent_only {
        path.pop();
        if path.is_empty() {
            return Some("top level".to_owned());
        }
    }
    Some(join(&path))
}

/// Depth first: pushes the keys (and array indexes) leading to the key or value at `at`.
fn find(table: &DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&at) || found_in(value.get_ref(), value.span(), at, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn found_in(
    value: &DeValue<'_>,
    span: std::ops::Range<usize>,
    at: usize,
    path: &mut Vec<String>,
) -> bool {
    match value {
        DeValue::Table(t) => find(t, at, path),
        DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.push(format!("[{i}]"));
            let hit = found_in(item.get_ref(), item.span(), at, path);
            if !hit {
                path.pop();
            }
            hit
        }),
        _ => span.contains(&at),
    }
}

fn join(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let e = toml::from_str::<crate::config::Config>(text).unwrap_err();
        toml_error(text, &e)
    }

    const HEAD: &str = "[upstream]\n[credentials]\nkind = \"app_id\"\napp_id = \"a\"\n";

    #[test]
    fn toml_errors_say_where_and_which_key_but_quote_nothing_from_the_file() {
        let cases = [
            // A secret file passed as --config.
            ("s3cr3t-canary\n".to_owned(), "line 1, column 14: key with no value, expected `=`"),
            (
                format!("{HEAD}[listen]\nmax_connections = \"s3cr3t-canary\"\n"),
                "line 6, column 19, key `listen.max_connections`: invalid type (string), expected usize",
            ),
            (
                "[upstream]\n[credentials]\nkind = \"s3cr3t-canary\"\n".to_owned(),
                "line 3, column 8, key `credentials.kind`: unknown value, expected one of `app_id`, `account`, `host_password`",
            ),
            (
                format!("{HEAD}[shutdown]\ns3cr3t-canary = 1\n"),
                "line 6, column 1: unknown key in [shutdown], expected `drain_secs`",
            ),
            (
                "\"s3cr3t-canary\" = \"914083136\"\n".to_owned(),
                "line 1, column 1: unknown key in [top level], expected one of `listen`, `upstream`, `credentials`, `token`, `limits`, `rate_limit`, `audit`, `admin`, `log`, `shutdown`",
            ),
            (
                format!("{HEAD}[listen]\nallowed_cidrs = [\"10.0.0.0/8\", \"s3cr3t-canary\"]\n"),
                "line 6, column 32, key `listen.allowed_cidrs[1]`: invalid IP address syntax",
            ),
            (
                format!("{HEAD}[rate_limit]\nglobal = {{ per_minute = 1, burst = 0 }}\n"),
                "line 6, column 36, key `rate_limit.global.burst`: invalid value (integer), expected a nonzero u32",
            ),
        ];
        for (text, want) in cases {
            let got = error_of(&text);
            assert_eq!(got, want, "for {text:?}");
            assert!(!got.contains("canary"), "{got}");
        }
    }

    #[test]
    fn unknown_messages_lose_their_quoted_parts() {
        let described = |m: &str| {
            let (what, expected) = describe(m);
            format!("{what}{expected}")
        };
        assert_eq!(
            described("something odd: \"s3cret\" here, expected \"x\""),
            "something odd: \"…\" here, expected \"…\""
        );
        assert_eq!(described("no quotes"), "no quotes");
    }

    #[test]
    fn a_path_that_names_nothing_is_shown_only_to_its_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.key");
        std::fs::write(&file, "k").unwrap();
        assert_eq!(shown_path(&file), file.display().to_string());
        let pasted = dir.path().join("s3cr3t/canary+key");
        let shown = shown_path(&pasted);
        assert_eq!(
            shown,
            format!("{}/… (nothing exists there)", dir.path().display())
        );
        assert_eq!(
            shown_path(Path::new("s3cr3t-canary")),
            "… (nothing exists there)"
        );
    }
}
