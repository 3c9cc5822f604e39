//! Token counting, message text extraction, deterministic answers and canonical JSON.

use std::borrow::Cow;

use serde_json::Value;

/// Simulated token count of a text: `ceil(bytes / 4)` (so at least 1 when non-empty).
pub fn tokens(text: &str) -> u64 {
    tokens_of_len(text.len())
}

/// Simulated token count of a text of `len` bytes.
pub fn tokens_of_len(len: usize) -> u64 {
    (len as u64).div_ceil(4)
}

/// The text of a message `content`: a string, or the concatenated `text` of the parts
/// of an array (`text`, `input_text` and `output_text` parts); anything else is empty.
pub fn content_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => {
            let mut texts = parts.iter().filter_map(part_text);
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(one), None) => Cow::Borrowed(one),
                (Some(a), Some(b)) => {
                    let mut s = String::with_capacity(a.len() + b.len());
                    s.push_str(a);
                    s.push_str(b);
                    texts.for_each(|t| s.push_str(t));
                    Cow::Owned(s)
                }
            }
        }
        _ => Cow::Borrowed(""),
    }
}

fn part_text(part: &Value) -> Option<&str> {
    let kind = part.get("type")?.as_str()?;
    if matches!(kind, "text" | "input_text" | "output_text") {
        part.get("text")?.as_str()
    } else {
        None
    }
}

/// Tokens of one chat/responses message: 4 + tokens(content text).
pub fn message_tokens(message: &Value) -> u64 {
    4 + tokens(&content_text(message.get("content")))
}

/// The text of the last message with `role: "user"` (or of the last message if none).
pub fn last_user_text(messages: &[Value]) -> Cow<'_, str> {
    let msg = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .or_else(|| messages.last());
    match msg {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(m) => content_text(m.get("content")),
        None => Cow::Borrowed(""),
    }
}

/// How many characters of the user's text the answer quotes.
const QUOTE_CHARS: usize = 60;

/// A deterministic answer: words separated by single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The full text.
    pub text: String,
    /// Number of words (= completion tokens per choice).
    pub words: u64,
    /// `stop`, or `length` when truncated by a token limit.
    pub finish_reason: &'static str,
}

impl Answer {
    /// `prefix` followed by the first ~60 characters of `quoted` (whitespace collapsed),
    /// truncated to `limit` words.
    pub fn new(prefix: &str, quoted: &str, limit: Option<u64>) -> Self {
        let mut text = String::with_capacity(prefix.len() + QUOTE_CHARS + 8);
        let mut words = 0u64;
        for w in prefix.split_whitespace() {
            push_word(&mut text, w);
            words += 1;
        }
        let mut budget = QUOTE_CHARS;
        for w in quoted.split_whitespace() {
            if budget == 0 {
                break;
            }
            let end = w.char_indices().nth(budget).map_or(w.len(), |(i, _)| i);
            let piece = &w[..end];
            push_word(&mut text, piece);
            words += 1;
            budget = budget.saturating_sub(piece.chars().count() + 1);
        }
        let mut finish_reason = "stop";
        if let Some(limit) = limit {
            if limit < words {
                let cut = text
                    .match_indices(' ')
                    .nth(usize::try_from(limit.saturating_sub(1)).unwrap_or(usize::MAX))
                    .map_or(text.len(), |(i, _)| i);
                text.truncate(cut);
                words = limit;
                finish_reason = "length";
            }
        }
        Self {
            text,
            words,
            finish_reason,
        }
    }

    /// Streaming pieces, one per word; they concatenate to exactly `text`.
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces {
            rest: &self.text,
            first: true,
        }
    }
}

fn push_word(text: &mut String, w: &str) {
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(w);
}

/// Iterator over the per-word pieces of an [`Answer`] (`"a"`, `" b"`, `" c"`).
#[derive(Debug, Clone)]
pub struct Pieces<'a> {
    rest: &'a str,
    first: bool,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let skip = usize::from(!self.first);
        self.first = false;
        let end = self.rest[skip..]
            .find(' ')
            .map_or(self.rest.len(), |i| i + skip);
        let (piece, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(piece)
    }
}

/// Writes `value` as compact JSON with object keys sorted, so that two semantically equal
/// values always give the same bytes whatever the key order or whitespace of the input.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // Writing a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_counts() {
        assert_eq!(tokens(""), 0);
        assert_eq!(tokens("a"), 1);
        assert_eq!(tokens("abcd"), 1);
        assert_eq!(tokens("abcde"), 2);
    }

    #[test]
    fn content_text_of_parts() {
        let v = json!([{"type": "text", "text": "ab"}, {"type": "image_url"}, {"type": "text", "text": "cd"}]);
        assert_eq!(content_text(Some(&v)), "abcd");
        assert_eq!(content_text(Some(&json!("x"))), "x");
        assert_eq!(content_text(None), "");
    }

    #[test]
    fn answer_pieces_concatenate_and_truncate() {
        let a = Answer::new("Simulated answer to:", "  hello   big\nworld ", None);
        assert_eq!(a.text, "Simulated answer to: hello big world");
        assert_eq!(a.words, 6);
        let pieces: Vec<&str> = a.pieces().collect();
        assert_eq!(pieces.len(), 6);
        assert_eq!(pieces.concat(), a.text);
        let t = Answer::new("Simulated answer to:", "hello big world", Some(4));
        assert_eq!(t.text, "Simulated answer to: hello");
        assert_eq!(t.finish_reason, "length");
        let long = "x".repeat(200);
        let l = Answer::new("A:", &long, None);
        assert_eq!(l.text.len(), 3 + QUOTE_CHARS);
    }

    #[test]
    fn canonical_sorts_keys() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,"x"],"c":null}}"#).unwrap_or_default();
        let mut out = Vec::new();
        write_canonical(&a, &mut out);
        assert_eq!(out, br#"{"a":{"c":null,"d":[1,"x"]},"b":1}"#);
    }
}
