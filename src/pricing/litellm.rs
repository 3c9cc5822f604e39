//! Loader for LiteLLM's `model_prices_and_context_window.json` (BerriAI/litellm, MIT).
//!
//! Rules:
//! * the `sample_spec` entry, entries without `input_cost_per_token`, entries that do not parse
//!   as a price entry (a field of the wrong type) and entries with a negative rate are skipped;
//! * `mode` must be `chat`, `responses` (kept as chat), `completion` or `embedding`; a missing
//!   `mode` is taken as chat; other modes (`image_generation`, `audio_transcription`, …) are skipped;
//! * `litellm_provider` `openai` / `text-completion-openai` → OpenAI, `anthropic` → Anthropic,
//!   `gemini` / `vertex_ai-language-models` → Gemini; every other provider is skipped;
//! * a key with a provider prefix (`gemini/gemini-2.5-pro`) is stored under that key and also under
//!   the bare name (`gemini-2.5-pro`). When several entries claim one name, an entry from the API
//!   Sluice calls (`openai`, `anthropic`, `gemini`) beats a Vertex AI one, then an exact key beats
//!   an alias, then the first in file order wins — so `gemini-2.5-pro` gets the Gemini API price
//!   even though LiteLLM's bare `gemini-2.5-pro` key is the Vertex AI entry;
//! * a missing `output_cost_per_token` is 0 (embeddings), a missing `cache_read_input_token_cost`
//!   is the input rate (no cache discount);
//! * the `_flex`, `_priority` and `_ultrafast` variants of `input_cost_per_token`,
//!   `output_cost_per_token` and `cache_read_input_token_cost` (and of
//!   `cache_creation_input_token_cost` for the last two) are the service-tier rates;
//! * `input_cost_per_token_above_200k_tokens` makes a long-context tier (prompts over 200,000
//!   tokens, [`super::LongContext`]) with `cache_read_input_token_cost_above_200k_tokens` and
//!   `output_cost_per_token_above_200k_tokens` (each, if missing, the short-prompt rate × the
//!   long/short input ratio, so a long prompt is never billed below the short rates) and their
//!   `_batches`, `_flex` and `_priority` variants; without it the other `_above_200k_tokens` keys
//!   are ignored.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use serde::Deserialize;

use super::{GEMINI_LONG_CONTEXT_ABOVE, LongContext, Mode, ModelPrice, PricingError};
use crate::types::Provider;

/// The cost fields Sluice uses; every other field of an entry is ignored.
#[derive(Debug, Deserialize)]
struct RawEntry {
    litellm_provider: Option<String>,
    mode: Option<String>,
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    cache_creation_input_token_cost_above_1hr: Option<f64>,
    input_cost_per_token_batches: Option<f64>,
    output_cost_per_token_batches: Option<f64>,
    cache_read_input_token_cost_batches: Option<f64>,
    cache_creation_input_token_cost_batches: Option<f64>,
    input_cost_per_token_flex: Option<f64>,
    output_cost_per_token_flex: Option<f64>,
    cache_read_input_token_cost_flex: Option<f64>,
    input_cost_per_token_priority: Option<f64>,
    output_cost_per_token_priority: Option<f64>,
    cache_read_input_token_cost_priority: Option<f64>,
    cache_creation_input_token_cost_priority: Option<f64>,
    input_cost_per_token_ultrafast: Option<f64>,
    output_cost_per_token_ultrafast: Option<f64>,
    cache_read_input_token_cost_ultrafast: Option<f64>,
    cache_creation_input_token_cost_ultrafast: Option<f64>,
    input_cost_per_token_above_200k_tokens: Option<f64>,
    output_cost_per_token_above_200k_tokens: Option<f64>,
    cache_read_input_token_cost_above_200k_tokens: Option<f64>,
    input_cost_per_token_above_200k_tokens_batches: Option<f64>,
    output_cost_per_token_above_200k_tokens_batches: Option<f64>,
    cache_read_input_token_cost_above_200k_tokens_batches: Option<f64>,
    input_cost_per_token_above_200k_tokens_flex: Option<f64>,
    output_cost_per_token_above_200k_tokens_flex: Option<f64>,
    cache_read_input_token_cost_above_200k_tokens_flex: Option<f64>,
    input_cost_per_token_above_200k_tokens_priority: Option<f64>,
    output_cost_per_token_above_200k_tokens_priority: Option<f64>,
    cache_read_input_token_cost_above_200k_tokens_priority: Option<f64>,
}

/// Which of two entries claiming one name wins: lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    via_vertex: bool,
    alias: bool,
}

impl RawEntry {
    /// The price row, and whether it came through Vertex AI; `None` if the entry is skipped.
    fn to_price(&self) -> Option<(ModelPrice, bool)> {
        let (provider, via_vertex) = match self.litellm_provider.as_deref()? {
            "openai" | "text-completion-openai" => (Provider::OpenAi, false),
            "anthropic" => (Provider::Anthropic, false),
            "gemini" => (Provider::Gemini, false),
            "vertex_ai-language-models" => (Provider::Gemini, true),
            _ => return None,
        };
        let mode = match self.mode.as_deref() {
            None | Some("chat" | "responses") => Mode::Chat,
            Some("completion") => Mode::Completion,
            Some("embedding") => Mode::Embedding,
            Some(_) => return None,
        };
        let input = self.input_cost_per_token?;
        let price = ModelPrice {
            provider,
            mode,
            input,
            cached_input: self.cache_read_input_token_cost.unwrap_or(input),
            cache_write_5m: self.cache_creation_input_token_cost,
            cache_write_1h: self.cache_creation_input_token_cost_above_1hr,
            output: self.output_cost_per_token.unwrap_or(0.0),
            batch_input: self.input_cost_per_token_batches,
            batch_output: self.output_cost_per_token_batches,
            batch_cached_input: self.cache_read_input_token_cost_batches,
            batch_cache_write: self.cache_creation_input_token_cost_batches,
            flex_input: self.input_cost_per_token_flex,
            flex_output: self.output_cost_per_token_flex,
            flex_cached_input: self.cache_read_input_token_cost_flex,
            priority_input: self.input_cost_per_token_priority,
            priority_output: self.output_cost_per_token_priority,
            priority_cached_input: self.cache_read_input_token_cost_priority,
            priority_cache_write: self.cache_creation_input_token_cost_priority,
            ultrafast_input: self.input_cost_per_token_ultrafast,
            ultrafast_output: self.output_cost_per_token_ultrafast,
            ultrafast_cached_input: self.cache_read_input_token_cost_ultrafast,
            ultrafast_cache_write: self.cache_creation_input_token_cost_ultrafast,
            long_context: None,
        };
        let long_context = self.long_context(&price);
        let price = ModelPrice {
            long_context,
            ..price
        };
        let rates = [
            Some(price.input),
            Some(price.cached_input),
            price.cache_write_5m,
            price.cache_write_1h,
            Some(price.output),
            price.batch_input,
            price.batch_output,
            price.batch_cached_input,
            price.batch_cache_write,
            price.flex_input,
            price.flex_output,
            price.flex_cached_input,
            price.priority_input,
            price.priority_output,
            price.priority_cached_input,
            price.priority_cache_write,
            price.ultrafast_input,
            price.ultrafast_output,
            price.ultrafast_cached_input,
            price.ultrafast_cache_write,
        ];
        let long = price.long_context.map_or([None; 12], |l| {
            [
                Some(l.input),
                Some(l.cached_input),
                Some(l.output),
                l.batch_input,
                l.batch_output,
                l.batch_cached_input,
                l.flex_input,
                l.flex_output,
                l.flex_cached_input,
                l.priority_input,
                l.priority_output,
                l.priority_cached_input,
            ]
        });
        if rates
            .into_iter()
            .chain(long)
            .flatten()
            .any(|r| r < 0.0 || !r.is_finite())
        {
            return None;
        }
        Some((price, via_vertex))
    }

    /// The `*_above_200k_tokens` tier, if the entry lists a long-prompt input rate.
    fn long_context(&self, short: &ModelPrice) -> Option<LongContext> {
        let input = self.input_cost_per_token_above_200k_tokens?;
        let ratio = if short.input > 0.0 {
            input / short.input
        } else {
            1.0
        };
        Some(LongContext {
            above_tokens: GEMINI_LONG_CONTEXT_ABOVE,
            input,
            cached_input: self
                .cache_read_input_token_cost_above_200k_tokens
                .unwrap_or(short.cached_input * ratio),
            output: self
                .output_cost_per_token_above_200k_tokens
                .unwrap_or(short.output * ratio),
            batch_input: self.input_cost_per_token_above_200k_tokens_batches,
            batch_output: self.output_cost_per_token_above_200k_tokens_batches,
            batch_cached_input: self.cache_read_input_token_cost_above_200k_tokens_batches,
            flex_input: self.input_cost_per_token_above_200k_tokens_flex,
            flex_output: self.output_cost_per_token_above_200k_tokens_flex,
            flex_cached_input: self.cache_read_input_token_cost_above_200k_tokens_flex,
            priority_input: self.input_cost_per_token_above_200k_tokens_priority,
            priority_output: self.output_cost_per_token_above_200k_tokens_priority,
            priority_cached_input: self.cache_read_input_token_cost_above_200k_tokens_priority,
        })
    }
}

pub(super) fn parse(bytes: &[u8]) -> Result<HashMap<String, ModelPrice>, PricingError> {
    let root: serde_json::Value = serde_json::from_slice(bytes)?;
    let serde_json::Value::Object(entries) = root else {
        return Err(PricingError::NotAnObject);
    };
    let mut ranked: HashMap<String, (Rank, ModelPrice)> = HashMap::new();
    let mut offer = |name: &str, rank: Rank, price: ModelPrice| match ranked.entry(name.to_owned())
    {
        MapEntry::Vacant(slot) => {
            slot.insert((rank, price));
        }
        MapEntry::Occupied(mut slot) => {
            if rank < slot.get().0 {
                slot.insert((rank, price));
            }
        }
    };
    let mut skipped = 0usize;
    for (key, value) in &entries {
        if key == "sample_spec" {
            continue;
        }
        let parsed = RawEntry::deserialize(value).ok();
        let Some((price, via_vertex)) = parsed.as_ref().and_then(RawEntry::to_price) else {
            skipped += 1;
            continue;
        };
        offer(
            key,
            Rank {
                via_vertex,
                alias: false,
            },
            price,
        );
        if let Some((_, bare)) = key.rsplit_once('/')
            && !bare.is_empty()
        {
            offer(
                bare,
                Rank {
                    via_vertex,
                    alias: true,
                },
                price,
            );
        }
    }
    tracing::debug!(kept = ranked.len(), skipped, "loaded LiteLLM price entries");
    Ok(ranked
        .into_iter()
        .map(|(name, (_, price))| (name, price))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{BUILTIN, PriceTable};
    use super::*;

    /// Entries copied from the extract in prices.md (LiteLLM 1.110.2, MIT License,
    /// Copyright (c) 2023 Berri AI), plus made-up entries that must be skipped or aliased.
    const EXTRACT: &str = r#"{
     "sample_spec": {
      "input_cost_per_token": 0.0,
      "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
      "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
      "mode": "one of: chat, embedding, completion, image_generation, audio_transcription",
      "output_cost_per_token": 0.0
     },
     "gpt-4.1-mini": {
      "cache_read_input_token_cost": 1e-07,
      "cache_read_input_token_cost_priority": 1.75e-07,
      "input_cost_per_token": 4e-07,
      "input_cost_per_token_batches": 2e-07,
      "input_cost_per_token_priority": 7e-07,
      "litellm_provider": "openai",
      "max_input_tokens": 1047576,
      "max_output_tokens": 32768,
      "mode": "chat",
      "output_cost_per_token": 1.6e-06,
      "output_cost_per_token_batches": 8e-07,
      "output_cost_per_token_priority": 2.8e-06
     },
     "o4-mini": {
      "cache_read_input_token_cost": 2.75e-07,
      "cache_read_input_token_cost_flex": 1.38e-07,
      "cache_read_input_token_cost_priority": 5e-07,
      "input_cost_per_token": 1.1e-06,
      "input_cost_per_token_batches": 5.5e-07,
      "input_cost_per_token_flex": 5.5e-07,
      "input_cost_per_token_priority": 2e-06,
      "litellm_provider": "openai",
      "max_input_tokens": 200000,
      "max_output_tokens": 100000,
      "mode": "chat",
      "output_cost_per_token": 4.4e-06,
      "output_cost_per_token_batches": 2.2e-06,
      "output_cost_per_token_flex": 2.2e-06,
      "output_cost_per_token_priority": 8e-06
     },
     "claude-sonnet-4-6": {
      "cache_creation_input_token_cost": 3.75e-06,
      "cache_creation_input_token_cost_above_1hr": 6e-06,
      "cache_creation_input_token_cost_batches": 1.875e-06,
      "cache_read_input_token_cost": 3e-07,
      "cache_read_input_token_cost_batches": 1.5e-07,
      "input_cost_per_token": 3e-06,
      "input_cost_per_token_batches": 1.5e-06,
      "litellm_provider": "anthropic",
      "max_input_tokens": 1000000,
      "max_output_tokens": 128000,
      "mode": "chat",
      "output_cost_per_token": 1.5e-05,
      "output_cost_per_token_batches": 7.5e-06
     },
     "gemini/gemini-2.5-flash": {
      "cache_read_input_token_cost": 3e-08,
      "cache_read_input_token_cost_batches": 3e-08,
      "cache_read_input_token_cost_flex": 3e-08,
      "cache_read_input_token_cost_priority": 5.4e-08,
      "input_cost_per_token": 3e-07,
      "input_cost_per_token_batches": 1.5e-07,
      "input_cost_per_token_flex": 1.5e-07,
      "input_cost_per_token_priority": 5.4e-07,
      "litellm_provider": "gemini",
      "max_input_tokens": 1048576,
      "max_output_tokens": 65536,
      "mode": "chat",
      "output_cost_per_reasoning_token": 2.5e-06,
      "output_cost_per_token": 2.5e-06,
      "output_cost_per_token_batches": 1.25e-06,
      "output_cost_per_token_flex": 1.25e-06,
      "output_cost_per_token_priority": 4.5e-06
     },
     "gemini-2.5-flash": {
      "input_cost_per_token": 9e-07,
      "litellm_provider": "vertex_ai-language-models",
      "mode": "chat",
      "output_cost_per_token": 9e-06
     },
     "vertex-only-model": {
      "input_cost_per_token": 1e-06,
      "litellm_provider": "vertex_ai-language-models",
      "output_cost_per_token": 2e-06
     },
     "text-embedding-3-small": {
      "input_cost_per_token": 2e-08,
      "input_cost_per_token_batches": 1e-08,
      "litellm_provider": "openai",
      "mode": "embedding"
     },
     "gpt-4o-transcribe-like": {
      "input_cost_per_token": 2.5e-06,
      "litellm_provider": "openai",
      "mode": "audio_transcription"
     },
     "dall-e-like": {
      "litellm_provider": "openai",
      "mode": "image_generation",
      "input_cost_per_pixel": 1e-08
     },
     "anthropic.claude-sonnet-4-6": {
      "input_cost_per_token": 3e-06,
      "litellm_provider": "bedrock",
      "mode": "chat"
     },
     "broken": {
      "input_cost_per_token": "3e-06",
      "litellm_provider": "openai"
     },
     "negative": {
      "input_cost_per_token": -1e-06,
      "litellm_provider": "openai"
     },
     "my-responses-model": {
      "input_cost_per_token": 1e-06,
      "litellm_provider": "openai",
      "mode": "responses",
      "output_cost_per_token": 4e-06
     }
    }"#;

    fn builtin(name: &str) -> ModelPrice {
        match BUILTIN.iter().find(|r| r.name == name) {
            Some(row) => row.price,
            None => panic!("{name} not built in"),
        }
    }

    #[test]
    fn loads_the_extract() {
        let table = PriceTable::from_litellm_json(EXTRACT.as_bytes()).unwrap();
        let names: Vec<&str> = table.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "claude-sonnet-4-6",
                "gemini-2.5-flash",
                "gemini/gemini-2.5-flash",
                "gpt-4.1-mini",
                "my-responses-model",
                "o4-mini",
                "text-embedding-3-small",
                "vertex-only-model",
            ]
        );
        // The copied entries give exactly the built-in rows.
        for name in [
            "gpt-4.1-mini",
            "o4-mini",
            "claude-sonnet-4-6",
            "gemini-2.5-flash",
        ] {
            assert_eq!(
                table.get(name).map(|(_, p)| *p),
                Some(builtin(name)),
                "{name}"
            );
        }
        assert_eq!(
            table.get("gemini/gemini-2.5-flash").map(|(_, p)| *p),
            Some(builtin("gemini-2.5-flash"))
        );
        let emb = table.get("text-embedding-3-small").map(|(_, p)| *p);
        assert_eq!(
            emb.map(|p| (p.mode, p.output, p.cached_input)),
            Some((Mode::Embedding, 0.0, 2e-08))
        );
        assert_eq!(emb.and_then(|p| p.batch_input), Some(1e-08));
        let vertex = table
            .get("vertex-only-model")
            .map(|(_, p)| (p.provider, p.mode));
        assert_eq!(vertex, Some((Provider::Gemini, Mode::Chat)));
        let responses = table.get("my-responses-model").map(|(_, p)| p.mode);
        assert_eq!(responses, Some(Mode::Chat));
        // Date-suffix lookup works on loaded tables too.
        assert_eq!(
            table.get("claude-sonnet-4-6-20260101").map(|(n, _)| n),
            Some("claude-sonnet-4-6")
        );
    }

    #[test]
    fn reads_priority_and_ultrafast_keys() {
        // The extract's gpt-4.1-mini `*_priority` keys.
        let table = PriceTable::from_litellm_json(EXTRACT.as_bytes()).unwrap();
        let mini = table.get("gpt-4.1-mini").map(|(_, p)| *p).unwrap();
        assert_eq!(
            (
                mini.priority_input,
                mini.priority_cached_input,
                mini.priority_output
            ),
            (Some(7e-07), Some(1.75e-07), Some(2.8e-06))
        );
        assert_eq!(mini.priority_cache_write, None);
        assert!(!mini.has_ultrafast());
        // Newer LiteLLM files carry `*_ultrafast` keys and priced cache writes per tier.
        let file = PriceTable::from_litellm_json(
            br#"{"gpt-5.6-sol": {"input_cost_per_token": 5e-06, "output_cost_per_token": 3e-05,
                 "cache_read_input_token_cost": 5e-07, "cache_creation_input_token_cost": 6.25e-06,
                 "input_cost_per_token_priority": 1e-05, "output_cost_per_token_priority": 6e-05,
                 "cache_creation_input_token_cost_priority": 1.25e-05,
                 "input_cost_per_token_ultrafast": 3e-05, "output_cost_per_token_ultrafast": 1.8e-04,
                 "cache_read_input_token_cost_ultrafast": 3e-06,
                 "cache_creation_input_token_cost_ultrafast": 3.75e-05,
                 "litellm_provider": "openai", "mode": "chat"}}"#,
        )
        .unwrap();
        let sol = file.get("gpt-5.6-sol").map(|(_, p)| *p).unwrap();
        assert_eq!(
            (
                sol.ultrafast_input,
                sol.ultrafast_output,
                sol.ultrafast_cached_input,
                sol.ultrafast_cache_write
            ),
            (Some(3e-05), Some(1.8e-04), Some(3e-06), Some(3.75e-05))
        );
        assert_eq!(sol.priority_cache_write, Some(1.25e-05));
        // A negative tier rate drops the entry like any other negative rate.
        let bad = PriceTable::from_litellm_json(
            br#"{"m": {"input_cost_per_token": 1e-06, "input_cost_per_token_ultrafast": -1e-06,
                 "litellm_provider": "openai"}}"#,
        )
        .unwrap();
        assert!(bad.is_empty());
    }

    #[test]
    fn reads_the_above_200k_keys_of_gemini_2_5_pro() {
        // prices.md's LiteLLM extract of `gemini/gemini-2.5-pro`, every `_above_200k_tokens` key.
        let file = PriceTable::from_litellm_json(
            br#"{"gemini/gemini-2.5-pro": {
              "cache_read_input_token_cost": 1.25e-07,
              "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
              "cache_read_input_token_cost_above_200k_tokens_batches": 2.5e-07,
              "cache_read_input_token_cost_above_200k_tokens_flex": 2.5e-07,
              "cache_read_input_token_cost_above_200k_tokens_priority": 4.5e-07,
              "cache_read_input_token_cost_batches": 1.25e-07,
              "cache_read_input_token_cost_flex": 1.25e-07,
              "cache_read_input_token_cost_priority": 2.25e-07,
              "input_cost_per_token": 1.25e-06,
              "input_cost_per_token_above_200k_tokens": 2.5e-06,
              "input_cost_per_token_above_200k_tokens_batches": 1.25e-06,
              "input_cost_per_token_above_200k_tokens_flex": 1.25e-06,
              "input_cost_per_token_above_200k_tokens_priority": 4.5e-06,
              "input_cost_per_token_batches": 6.25e-07,
              "input_cost_per_token_flex": 6.25e-07,
              "input_cost_per_token_priority": 2.25e-06,
              "litellm_provider": "gemini",
              "max_input_tokens": 1048576,
              "max_output_tokens": 65536,
              "mode": "chat",
              "output_cost_per_token": 1e-05,
              "output_cost_per_token_above_200k_tokens": 1.5e-05,
              "output_cost_per_token_above_200k_tokens_batches": 7.5e-06,
              "output_cost_per_token_above_200k_tokens_flex": 7.5e-06,
              "output_cost_per_token_above_200k_tokens_priority": 2.7e-05,
              "output_cost_per_token_batches": 5e-06,
              "output_cost_per_token_flex": 5e-06,
              "output_cost_per_token_priority": 1.8e-05}}"#,
        )
        .unwrap();
        // The same row as the built-in one (from the official page [P8]), long tier included.
        let pro = file.get("gemini-2.5-pro").map(|(_, p)| *p).unwrap();
        assert_eq!(pro, builtin("gemini-2.5-pro"));
        let long = pro.long_context.unwrap();
        assert_eq!(long.above_tokens, 200_000);
        assert_eq!((long.input, long.output), (2.5e-06, 1.5e-05));
        // Only the long input rate listed: cached and output scaled by 2.5 / 1.25 = 2.
        let bare = PriceTable::from_litellm_json(
            br#"{"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06,
                 "cache_read_input_token_cost": 1e-07,
                 "input_cost_per_token_above_200k_tokens": 2e-06,
                 "output_cost_per_token_above_200k_tokens_batches": 1e-06,
                 "litellm_provider": "gemini"}}"#,
        )
        .unwrap();
        let long = bare.get("m").and_then(|(_, p)| p.long_context).unwrap();
        assert!((long.cached_input - 2e-07).abs() < 1e-18);
        assert!((long.output - 8e-06).abs() < 1e-18);
        assert_eq!(long.batch_output, Some(1e-06));
        // `_above_200k_tokens` tier keys without the long input rate are ignored.
        let none = PriceTable::from_litellm_json(
            br#"{"m": {"input_cost_per_token": 1e-06,
                 "output_cost_per_token_above_200k_tokens": 8e-06,
                 "litellm_provider": "gemini"}}"#,
        )
        .unwrap();
        assert_eq!(none.get("m").map(|(_, p)| p.long_context), Some(None));
        // A negative long rate drops the entry.
        let bad = PriceTable::from_litellm_json(
            br#"{"m": {"input_cost_per_token": 1e-06,
                 "input_cost_per_token_above_200k_tokens": -2e-06,
                 "litellm_provider": "gemini"}}"#,
        )
        .unwrap();
        assert!(bad.is_empty());
    }

    #[test]
    fn merged_file_overrides_builtin() {
        let file = PriceTable::from_litellm_json(
            br#"{"gpt-4o": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                 "litellm_provider": "openai", "mode": "chat"}}"#,
        )
        .unwrap();
        let table = PriceTable::builtin().merged(file);
        let p = table.get("gpt-4o").map(|(_, p)| *p).unwrap();
        assert_eq!(
            (p.input, p.cached_input, p.output, p.batch_input),
            (1e-06, 1e-06, 2e-06, None)
        );
        assert!(table.get("claude-sonnet-4-6").is_some());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(matches!(
            PriceTable::from_litellm_json(b"[]"),
            Err(PricingError::NotAnObject)
        ));
        assert!(matches!(
            PriceTable::from_litellm_json(b"{not json"),
            Err(PricingError::Json(_))
        ));
        let empty = PriceTable::from_litellm_json(b"{}").unwrap();
        assert!(empty.is_empty());
    }
}
