//! The `Prefer` request header (RFC 7240): a comma-separated list of preferences, each a
//! token with an optional `=value` and `;`-separated parameters, in one header or many.
//! Sluice acts on two: `respond-async` (answer a deferred request at once with 202) and
//! `wait=N` (hold it at most N seconds, then 202). Unknown preferences are ignored, as
//! the RFC asks; a preference named twice counts the first time (RFC 7240 §2).

use std::time::Duration;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    pub respond_async: bool,
    /// `wait=N`: how long a held deferred request may wait before it gets 202.
    pub wait: Option<Duration>,
}

/// Why a `Prefer` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferError {
    #[error("the header is not visible ASCII")]
    NotAscii,
    #[error("wait must be a whole number of seconds, got {0:?}")]
    BadWait(String),
}

/// Parses every `Prefer` header value of a request.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Preferences, PreferError> {
    let mut out = Preferences::default();
    let (mut seen_async, mut seen_wait) = (false, false);
    for raw in values {
        let text = std::str::from_utf8(raw).map_err(|_| PreferError::NotAscii)?;
        if !text.is_ascii() {
            return Err(PreferError::NotAscii);
        }
        for pref in split_outside_quotes(text, ',') {
            // The preference itself is the first `;` segment; parameters are ignored.
            let head = split_outside_quotes(pref, ';').next().unwrap_or("");
            let (name, value) = match head.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (head.trim(), None),
            };
            if name.eq_ignore_ascii_case("respond-async") && !seen_async {
                seen_async = true;
                out.respond_async = true;
            } else if name.eq_ignore_ascii_case("wait") && !seen_wait {
                seen_wait = true;
                let v = value.unwrap_or_default();
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| PreferError::BadWait(v.clone()))?;
                out.wait = Some(Duration::from_secs(secs));
            }
        }
    }
    Ok(out)
}

/// Splits on `sep` outside double-quoted strings (which may hold `\`-escaped quotes).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty())
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(values: &[&str]) -> Result<Preferences, PreferError> {
        parse(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn the_rfc_forms() {
        let async_only = Preferences {
            respond_async: true,
            wait: None,
        };
        assert_eq!(p(&[]), Ok(Preferences::default()));
        assert_eq!(p(&["respond-async"]), Ok(async_only));
        assert_eq!(p(&["Respond-Async"]), Ok(async_only));
        assert_eq!(p(&["respond-async; foo=bar"]), Ok(async_only));
        assert_eq!(p(&[" return=minimal , respond-async "]), Ok(async_only));
        assert_eq!(p(&["return=minimal", "respond-async"]), Ok(async_only));
        assert_eq!(p(&["foo=\"a,respond-async\""]), Ok(Preferences::default()));
        assert_eq!(
            p(&["respond-async, wait=10"]),
            Ok(Preferences {
                respond_async: true,
                wait: Some(Duration::from_secs(10))
            })
        );
        assert_eq!(
            p(&["wait=\"5\"", "wait=9"]),
            Ok(Preferences {
                respond_async: false,
                wait: Some(Duration::from_secs(5))
            })
        );
        assert_eq!(p(&["respond-asyncx"]), Ok(Preferences::default()));
    }

    #[test]
    fn a_bad_wait_or_bytes_are_refused() {
        for bad in [
            "wait", "wait=", "wait=-1", "wait=1.5", "wait=10s", "wait=+3",
        ] {
            assert!(matches!(p(&[bad]), Err(PreferError::BadWait(_))), "{bad}");
        }
        assert_eq!(
            parse([&b"respond-async\xff"[..]]),
            Err(PreferError::NotAscii)
        );
    }
}
