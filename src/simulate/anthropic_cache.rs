//! Anthropic prompt caching (reference 2.3): explicit breakpoints only.
//!
//! A prompt is a list of blocks in prefix order `tools` → `system` → `messages` (each
//! tool, each system text block, each message content block; a string `system` or
//! `content` is one block). Tokens are `ceil(bytes / 4)` of a text block's text, or of the
//! canonical JSON of any other block; each message adds 4 tokens to its first block.
//! Blocks carrying `cache_control`, plus the last block when the request has a top-level
//! `cache_control` (automatic caching), are breakpoints — at most 4, else 400.
//!
//! The fingerprint of a prefix is a SHA-256 over the model and the blocks' canonical JSON
//! without `cache_control`, so moving a breakpoint does not change what came before it.
//! Lookup: for every breakpoint, the 20 block boundaries ending at it are searched for an
//! unexpired entry; the longest one found is read (`cache_read_input_tokens`, its TTL is
//! refreshed). Every breakpoint after it whose prefix reaches the minimum is written: the
//! tokens between the previous point and it count as cache creation under that
//! breakpoint's TTL (`5m` default, `1h`). Below the minimum nothing is cached. Entries
//! expire on `tokio::time::Instant`, so tests with paused time control them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::anthropic::AnthError;
use super::text::{tokens, tokens_of_len, write_canonical};

/// Most breakpoints per request.
const MAX_BREAKPOINTS: usize = 4;

/// How many block boundaries a breakpoint looks back over (itself included).
const LOOKBACK: usize = 20;

/// Entries are purged of expired ones (or dropped) beyond this many.
const MAX_ENTRIES: usize = 100_000;

/// Tokens each message adds for its role.
const MESSAGE_OVERHEAD: u64 = 4;

/// The TTL of a breakpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// `5m` (default).
    FiveMinutes,
    /// `1h`.
    OneHour,
}

impl Ttl {
    fn duration(self) -> Duration {
        match self {
            Self::FiveMinutes => Duration::from_secs(300),
            Self::OneHour => Duration::from_secs(3_600),
        }
    }

    fn parse(cc: &Value, at: &str) -> Result<Self, AnthError> {
        if cc.get("type").and_then(Value::as_str) != Some("ephemeral") {
            return Err(AnthError::invalid(format!(
                "{at}.type: Input should be 'ephemeral'"
            )));
        }
        match cc.get("ttl") {
            None | Some(Value::Null) => Ok(Self::FiveMinutes),
            Some(v) if v == "5m" => Ok(Self::FiveMinutes),
            Some(v) if v == "1h" => Ok(Self::OneHour),
            Some(_) => Err(AnthError::invalid(format!(
                "{at}.ttl: Input should be '5m' or '1h'"
            ))),
        }
    }
}

/// One block of the cacheable prefix.
#[derive(Debug, Clone)]
pub struct Block {
    bytes: Vec<u8>,
    tokens: u64,
    breakpoint: Option<Ttl>,
}

/// Input tokens of a request's prompt blocks, cached or not (what `count_tokens` answers).
pub fn total_tokens(blocks: &[Block]) -> u64 {
    blocks.iter().map(|b| b.tokens).sum()
}

/// How a request's input tokens split (total = `input + read + creation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    /// `input_tokens`: not read from nor written to the cache.
    pub input: u64,
    /// `cache_read_input_tokens`.
    pub read: u64,
    /// `cache_creation.ephemeral_5m_input_tokens`.
    pub creation_5m: u64,
    /// `cache_creation.ephemeral_1h_input_tokens`.
    pub creation_1h: u64,
}

impl Split {
    /// `cache_creation_input_tokens`.
    pub fn creation(&self) -> u64 {
        self.creation_5m + self.creation_1h
    }
}

/// Writes `value` canonically, leaving out a top-level `cache_control` key.
fn canonical_without_cc(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) if map.contains_key("cache_control") => {
            let stripped: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| *k != "cache_control")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            write_canonical(&Value::Object(stripped), out);
        }
        _ => write_canonical(value, out),
    }
}

fn block_tokens(value: &Value, canonical: &[u8]) -> u64 {
    match value {
        Value::Null => 0,
        Value::String(s) => tokens(s),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
            tokens(o.get("text").and_then(Value::as_str).unwrap_or(""))
        }
        _ => tokens_of_len(canonical.len()),
    }
}

struct Builder {
    blocks: Vec<Block>,
}

impl Builder {
    fn push(&mut self, tag: &str, value: &Value, extra: u64, at: &str) -> Result<(), AnthError> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(tag.as_bytes());
        bytes.push(0);
        canonical_without_cc(value, &mut bytes);
        let tokens = extra + block_tokens(value, &bytes[tag.len() + 1..]);
        let breakpoint = match value.get("cache_control") {
            None | Some(Value::Null) => None,
            Some(cc) => Some(Ttl::parse(cc, &format!("{at}.cache_control"))?),
        };
        self.blocks.push(Block {
            bytes,
            tokens,
            breakpoint,
        });
        Ok(())
    }
}

/// The prompt blocks of a validated Messages request, with their breakpoints.
pub fn blocks(req: &Map<String, Value>) -> Result<Vec<Block>, AnthError> {
    let mut b = Builder { blocks: Vec::new() };
    if let Some(Value::Array(tools)) = req.get("tools") {
        for (i, tool) in tools.iter().enumerate() {
            b.push("tool", tool, 0, &format!("tools.{i}"))?;
        }
    }
    match req.get("system") {
        Some(s @ Value::String(_)) => b.push("system", s, 0, "system")?,
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter().enumerate() {
                b.push("system", part, 0, &format!("system.{i}"))?;
            }
        }
        _ => {}
    }
    if let Some(Value::Array(messages)) = req.get("messages") {
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let tag = format!("message:{role}");
            match m.get("content") {
                Some(Value::Array(parts)) if !parts.is_empty() => {
                    for (j, part) in parts.iter().enumerate() {
                        let (tag, extra) = if j == 0 {
                            (tag.as_str(), MESSAGE_OVERHEAD)
                        } else {
                            ("block", 0)
                        };
                        b.push(tag, part, extra, &format!("messages.{i}.content.{j}"))?;
                    }
                }
                Some(Value::Array(_)) | None => b.push(&tag, &Value::Null, MESSAGE_OVERHEAD, "")?,
                Some(content) => b.push(&tag, content, MESSAGE_OVERHEAD, "")?,
            }
        }
    }
    let mut blocks = b.blocks;
    if let Some(cc) = req.get("cache_control").filter(|v| !v.is_null()) {
        let ttl = Ttl::parse(cc, "cache_control")?;
        if let Some(last) = blocks.last_mut() {
            last.breakpoint.get_or_insert(ttl);
        }
    }
    let found = blocks.iter().filter(|b| b.breakpoint.is_some()).count();
    if found > MAX_BREAKPOINTS {
        return Err(AnthError::invalid(format!(
            "A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )));
    }
    Ok(blocks)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Instant,
    ttl: Duration,
}

/// Remembered prefixes of Messages requests, with their expiry.
#[derive(Debug, Default)]
pub struct AnthropicCache {
    entries: Mutex<HashMap<u128, Entry>>,
}

impl AnthropicCache {
    /// Splits the input tokens of `blocks` for `model` and updates the cache.
    pub fn account(&self, model: &str, blocks: &[Block], min_tokens: u64) -> Split {
        let total: u64 = blocks.iter().map(|b| b.tokens).sum();
        let breakpoints: Vec<(usize, Ttl)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.breakpoint.map(|t| (i, t)))
            .collect();
        if breakpoints.is_empty() {
            return Split {
                input: total,
                ..Split::default()
            };
        }
        let mut hasher = Sha256::new();
        hasher.update((model.len() as u64).to_le_bytes());
        hasher.update(model.as_bytes());
        let mut prefixes: Vec<(u128, u64)> = Vec::with_capacity(blocks.len());
        let mut cumulative = 0;
        for b in blocks {
            hasher.update((b.bytes.len() as u64).to_le_bytes());
            hasher.update(&b.bytes);
            cumulative += b.tokens;
            let digest = hasher.clone().finalize();
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            prefixes.push((u128::from_le_bytes(first), cumulative));
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let live = |fp: &u128| entries.get(fp).is_some_and(|e| e.expires > now);
        let hit = breakpoints
            .iter()
            .filter_map(|&(b, _)| {
                let lo = (b + 1).saturating_sub(LOOKBACK);
                (lo..=b).rev().find(|&j| live(&prefixes[j].0))
            })
            .max();
        let read = hit.map_or(0, |j| prefixes[j].1);
        let mut split = Split {
            read,
            ..Split::default()
        };
        let mut covered = read;
        for &(b, ttl) in &breakpoints {
            let tokens = prefixes[b].1;
            if tokens < min_tokens || tokens <= covered {
                continue;
            }
            match ttl {
                Ttl::FiveMinutes => split.creation_5m += tokens - covered,
                Ttl::OneHour => split.creation_1h += tokens - covered,
            }
            covered = tokens;
        }
        split.input = total - covered;

        if let Some(e) = hit.and_then(|j| entries.get_mut(&prefixes[j].0)) {
            e.expires = now + e.ttl;
        }
        if entries.len() + breakpoints.len() > MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() + breakpoints.len() > MAX_ENTRIES {
                entries.clear();
            }
        }
        for &(b, ttl) in &breakpoints {
            let (fp, tokens) = prefixes[b];
            if tokens < min_tokens {
                continue;
            }
            let ttl = ttl.duration();
            let e = entries.entry(fp).or_insert(Entry { expires: now, ttl });
            if e.expires <= now {
                e.ttl = ttl;
            }
            e.ttl = e.ttl.max(ttl);
            e.expires = e.expires.max(now + ttl);
        }
        split
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn long(n: usize) -> String {
        "abcd".repeat(n)
    }

    #[test]
    fn tokens_and_breakpoints_in_prefix_order() {
        let r = req(json!({
            "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
            "system": [{"type": "text", "text": long(10), "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": "abcdefgh"}],
            "cache_control": {"type": "ephemeral"}
        }));
        let b = blocks(&r).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[1].tokens, 10);
        assert_eq!(b[2].tokens, 4 + 2);
        assert_eq!(b[1].breakpoint, Some(Ttl::OneHour));
        assert_eq!(b[2].breakpoint, Some(Ttl::FiveMinutes));
        let bad = req(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}]}));
        assert_eq!(blocks(&bad).unwrap_err().status.as_u16(), 400);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl_and_reads_refresh() {
        let cache = AnthropicCache::default();
        let make = |ttl: &str, q: &str| {
            req(json!({
                "system": [{"type": "text", "text": long(1100), "cache_control": {"type": "ephemeral", "ttl": ttl}}],
                "messages": [{"role": "user", "content": q}]
            }))
        };
        let b = blocks(&make("5m", "hi")).unwrap();
        let first = cache.account("m", &b, 1024);
        assert_eq!((first.creation_5m, first.read, first.input), (1100, 0, 5));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(cache.account("m", &b, 1024).read, 1100);
        // The read refreshed the entry: still alive 299 s later, gone after 5 idle minutes.
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(cache.account("m", &b, 1024).read, 1100);
        tokio::time::advance(Duration::from_secs(301)).await;
        let cold = cache.account("m", &b, 1024);
        assert_eq!((cold.read, cold.creation_5m), (0, 1100));
        assert_eq!(cache.account("other", &b, 1024).read, 0);
        let h = blocks(&make("1h", "again")).unwrap();
        cache.account("m", &h, 1024);
        tokio::time::advance(Duration::from_secs(1_800)).await;
        assert_eq!(cache.account("m", &h, 1024).read, 1100);
    }

    #[test]
    fn moved_breakpoint_reads_the_earlier_prefix_within_lookback() {
        let cache = AnthropicCache::default();
        let turn1 = req(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": long(1100), "cache_control": {"type": "ephemeral"}}]}
        ]}));
        let turn2 = req(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": long(1100)}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}]}
        ]}));
        let one = cache.account("m", &blocks(&turn1).unwrap(), 1024);
        assert_eq!(one.creation_5m, 1104);
        let two = cache.account("m", &blocks(&turn2).unwrap(), 1024);
        assert_eq!((two.read, two.creation_5m, two.input), (1104, 5 + 5, 0));
    }
}
