//! Prompt-cache simulation (reference 1.6): exact-prefix matching over message prefixes.
//!
//! For a request we walk its prompt items (chat messages, or Responses input items) in
//! order, keeping the cumulative token count and a cumulative SHA-256 over
//! `model`, the header (canonical `tools` JSON, plus `instructions` for Responses), then
//! each item's canonical JSON. The fingerprint of prefix *k* is the digest after item *k*.
//! `cached_tokens` is the cumulative count of the longest prefix that was seen before and
//! reaches `cache_min_tokens`, rounded down to a multiple of 128 but never below
//! `cache_min_tokens` (so never above the prefix, hence never above `prompt_tokens`).
//! Afterwards every prefix reaching `cache_min_tokens` is remembered.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::text::write_canonical;

/// Cache-hit granularity in tokens.
const GRANULARITY: u64 = 128;

/// Remembered prefix fingerprints are dropped all at once when this many are held.
const MAX_ENTRIES: usize = 100_000;

/// The shared memory of seen prompt prefixes.
#[derive(Debug, Default)]
pub struct PromptCache {
    seen: Mutex<HashSet<u128>>,
}

/// The parts of a prompt that the cache looks at.
#[derive(Debug)]
pub struct Prompt<'a> {
    /// Requested model (caches are per model).
    pub model: &'a str,
    /// Canonical bytes hashed before the items (tools, instructions).
    pub header: &'a [u8],
    /// Tokens of the header.
    pub header_tokens: u64,
    /// The prompt items with their token counts, in order.
    pub items: &'a [(&'a Value, u64)],
}

impl PromptCache {
    /// Returns `cached_tokens` for `prompt` and remembers its prefixes.
    pub fn lookup_and_insert(&self, prompt: &Prompt<'_>, min_tokens: u64) -> u64 {
        let total = prompt.header_tokens + prompt.items.iter().map(|(_, t)| t).sum::<u64>();
        if total < min_tokens || prompt.items.is_empty() {
            return 0;
        }
        let mut hasher = Sha256::new();
        hasher.update((prompt.model.len() as u64).to_le_bytes());
        hasher.update(prompt.model.as_bytes());
        hasher.update((prompt.header.len() as u64).to_le_bytes());
        hasher.update(prompt.header);
        let mut buf = Vec::with_capacity(1024);
        let mut cumulative = prompt.header_tokens;
        let mut prefixes: Vec<(u128, u64)> = Vec::with_capacity(prompt.items.len());
        for (item, item_tokens) in prompt.items {
            buf.clear();
            write_canonical(item, &mut buf);
            hasher.update((buf.len() as u64).to_le_bytes());
            hasher.update(&buf);
            cumulative += item_tokens;
            if cumulative >= min_tokens {
                let digest = hasher.clone().finalize();
                let mut first = [0u8; 16];
                first.copy_from_slice(&digest[..16]);
                prefixes.push((u128::from_le_bytes(first), cumulative));
            }
        }
        let hit = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let hit = prefixes
                .iter()
                .rev()
                .find(|(fp, _)| seen.contains(fp))
                .map(|&(_, tokens)| tokens);
            if seen.len() + prefixes.len() > MAX_ENTRIES {
                seen.clear();
            }
            seen.extend(prefixes.iter().map(|&(fp, _)| fp));
            hit
        };
        hit.map_or(0, |tokens| {
            (tokens / GRANULARITY * GRANULARITY)
                .max(min_tokens)
                .min(tokens)
        })
    }

    /// Forgets every remembered prefix.
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt<'a>(model: &'a str, items: &'a [(&'a Value, u64)]) -> Prompt<'a> {
        Prompt {
            model,
            header: b"",
            header_tokens: 0,
            items,
        }
    }

    #[test]
    fn hit_on_shared_prefix_only() {
        let cache = PromptCache::default();
        let sys = json!({"role": "system", "content": "long"});
        let u1 = json!({"role": "user", "content": "a"});
        let u2 = json!({"role": "user", "content": "b"});
        let first = [(&sys, 1100), (&u1, 5)];
        assert_eq!(cache.lookup_and_insert(&prompt("m", &first), 1024), 0);
        let second = [(&sys, 1100), (&u2, 5)];
        assert_eq!(cache.lookup_and_insert(&prompt("m", &second), 1024), 1024);
        assert_eq!(cache.lookup_and_insert(&prompt("other", &second), 1024), 0);
        // Identical request: the whole prompt is a known prefix.
        assert_eq!(cache.lookup_and_insert(&prompt("m", &second), 1024), 1024);
    }

    #[test]
    fn below_threshold_never_cached() {
        let cache = PromptCache::default();
        let sys = json!({"role": "system", "content": "short"});
        let items = [(&sys, 1000)];
        assert_eq!(cache.lookup_and_insert(&prompt("m", &items), 1024), 0);
        assert_eq!(cache.lookup_and_insert(&prompt("m", &items), 1024), 0);
    }

    #[test]
    fn key_order_does_not_matter_and_small_threshold() {
        let cache = PromptCache::default();
        let a: Value = serde_json::from_str(r#"{"role":"system","content":"x"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "content": "x", "role": "system" }"#).unwrap();
        assert_eq!(cache.lookup_and_insert(&prompt("m", &[(&a, 50)]), 10), 0);
        assert_eq!(cache.lookup_and_insert(&prompt("m", &[(&b, 50)]), 10), 10);
        assert_eq!(
            cache.lookup_and_insert(&prompt("m", &[(&b, 1300)]), 10),
            1280
        );
    }
}
