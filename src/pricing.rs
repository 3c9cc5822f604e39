//! Prices and the pricing of one answer.
//!
//! A [`PriceTable`] maps model names to [`ModelPrice`] rows (USD per single token, like LiteLLM's
//! `model_prices_and_context_window.json`). The built-in rows come from `shared/reference/prices.md`
//! ([`builtin`]); a LiteLLM file can replace or extend them ([`PriceTable::from_litellm_json`]).
//!
//! [`price`] turns a tier and a normalised [`Usage`] into what the provider bills, what the same
//! tokens cost synchronously and uncached at list price (the baseline), and the difference split by
//! lever. It is pure and allocation-free: it runs once per answered request.
//!
//! Fallback rules when a row lacks a rate (all documented on [`ModelPrice::rates`]):
//! * interactive: a missing cache-write rate bills written tokens at the input rate (OpenAI and
//!   Gemini charge no write fee);
//! * batch: missing batch rates are 50% of the standard ones; a missing batch cached rate is 50% of
//!   the cached rate (LiteLLM's assumption, UNCONFIRMED in prices.md);
//! * flex: `flex_*`, else `batch_*`, else 50% of standard; a missing flex cached rate scales the
//!   cached rate by the flex/standard input ratio.

mod builtin;
mod litellm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::types::{Lever, Provider, Tier, Usage};

pub use builtin::{BUILTIN, BuiltinRow};

/// What kind of endpoint a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Chat,
    Embedding,
    Completion,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Embedding => "embedding",
            Mode::Completion => "completion",
        }
    }
}

/// One model's list prices, USD per single token (multiply by 1e6 for the usual per-1M figure).
/// `None` means "not listed"; [`ModelPrice::rates`] says what is charged instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub provider: Provider,
    pub mode: Mode,
    pub input: f64,
    /// Cache read (hit). Equal to `input` when the model has no cache discount.
    pub cached_input: f64,
    /// Anthropic 5-minute cache write (LiteLLM `cache_creation_input_token_cost`).
    pub cache_write_5m: Option<f64>,
    /// Anthropic 1-hour cache write (LiteLLM `cache_creation_input_token_cost_above_1hr`).
    pub cache_write_1h: Option<f64>,
    pub output: f64,
    pub batch_input: Option<f64>,
    pub batch_output: Option<f64>,
    pub batch_cached_input: Option<f64>,
    /// 5-minute cache write inside a batch (LiteLLM `cache_creation_input_token_cost_batches`).
    pub batch_cache_write: Option<f64>,
    pub flex_input: Option<f64>,
    pub flex_output: Option<f64>,
    pub flex_cached_input: Option<f64>,
}

/// The discount a Batch API (and, failing better data, flex) gives on standard rates.
pub const BATCH_DISCOUNT_FACTOR: f64 = 0.5;

/// Effective USD-per-token rates for one tier, after the fallback rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub input: f64,
    pub cached_input: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub output: f64,
}

impl Rates {
    const ZERO: Rates = Rates {
        input: 0.0,
        cached_input: 0.0,
        cache_write_5m: 0.0,
        cache_write_1h: 0.0,
        output: 0.0,
    };

    /// What `usage` costs at these rates, each input bucket at its own rate.
    pub fn cost(&self, usage: &Usage) -> f64 {
        usage.input_tokens as f64 * self.input
            + usage.cached_input_tokens as f64 * self.cached_input
            + usage.cache_write_5m_tokens as f64 * self.cache_write_5m
            + usage.cache_write_1h_tokens as f64 * self.cache_write_1h
            + usage.output_tokens as f64 * self.output
    }

    /// What `usage` would cost at these rates with no prompt cache: every input token at `input`.
    pub fn uncached_cost(&self, usage: &Usage) -> f64 {
        usage.total_input() as f64 * self.input + usage.output_tokens as f64 * self.output
    }
}

impl ModelPrice {
    /// Whether the model can be served on Sluice's flex tier: an OpenAI model with flex prices of
    /// its own (`service_tier: "flex"`, CONTRACT.md "Triage"). Gemini rows carry LiteLLM's flex
    /// prices too, but the flex tier is OpenAI's, so they do not count.
    pub fn has_flex(&self) -> bool {
        self.provider == Provider::OpenAi
            && (self.flex_input.is_some() || self.flex_output.is_some())
    }

    /// The rates a tier is billed at, with these fallbacks for rates the row does not list:
    ///
    /// * `Interactive`: standard rates; a missing 5m or 1h cache-write rate is the input rate.
    /// * `Batch`: `batch_input`/`batch_output`, else 50% of standard. Cached reads at
    ///   `batch_cached_input`, else `cached_input` × 0.5 — the 50% batch discount stacking on cache
    ///   reads is LiteLLM's assumption, UNCONFIRMED in prices.md (Gemini rows list the standard
    ///   cached rate, per Google's batch guide [P6]). 5m writes at `batch_cache_write`, else
    ///   `cache_write_5m` × 0.5; 1h writes at `cache_write_1h` × 0.5; with no write rate listed,
    ///   written tokens are billed at the batch input rate.
    /// * `Flex`: `flex_*`, else `batch_*`, else 50% of standard. Cached reads at
    ///   `flex_cached_input`, else `cached_input` × (flex input / input); cache writes, if the row
    ///   lists any, scaled by the same ratio, else at the flex input rate.
    /// * `ResponseCache`: zero; no upstream call is made.
    pub fn rates(&self, tier: Tier) -> Rates {
        match tier {
            Tier::Interactive => Rates {
                input: self.input,
                cached_input: self.cached_input,
                cache_write_5m: self.cache_write_5m.unwrap_or(self.input),
                cache_write_1h: self.cache_write_1h.unwrap_or(self.input),
                output: self.output,
            },
            Tier::Batch => {
                let input = self
                    .batch_input
                    .unwrap_or(self.input * BATCH_DISCOUNT_FACTOR);
                Rates {
                    input,
                    cached_input: self
                        .batch_cached_input
                        .unwrap_or(self.cached_input * BATCH_DISCOUNT_FACTOR),
                    cache_write_5m: self
                        .batch_cache_write
                        .or(self.cache_write_5m.map(|w| w * BATCH_DISCOUNT_FACTOR))
                        .unwrap_or(input),
                    cache_write_1h: self
                        .cache_write_1h
                        .map_or(input, |w| w * BATCH_DISCOUNT_FACTOR),
                    output: self
                        .batch_output
                        .unwrap_or(self.output * BATCH_DISCOUNT_FACTOR),
                }
            }
            Tier::Flex => {
                let input = self
                    .flex_input
                    .or(self.batch_input)
                    .unwrap_or(self.input * BATCH_DISCOUNT_FACTOR);
                let ratio = if self.input > 0.0 {
                    input / self.input
                } else {
                    BATCH_DISCOUNT_FACTOR
                };
                Rates {
                    input,
                    cached_input: self.flex_cached_input.unwrap_or(self.cached_input * ratio),
                    cache_write_5m: self.cache_write_5m.map_or(input, |w| w * ratio),
                    cache_write_1h: self.cache_write_1h.map_or(input, |w| w * ratio),
                    output: self
                        .flex_output
                        .or(self.batch_output)
                        .unwrap_or(self.output * BATCH_DISCOUNT_FACTOR),
                }
            }
            Tier::ResponseCache => Rates::ZERO,
        }
    }
}

/// Savings (baseline minus cost) split by lever. Any field may be negative: a prompt-cache write
/// that is never read costs more than it saves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Savings {
    pub batch: f64,
    pub flex: f64,
    pub prompt_cache: f64,
    pub response_cache: f64,
}

impl Savings {
    pub fn get(&self, lever: Lever) -> f64 {
        match lever {
            Lever::Batch => self.batch,
            Lever::Flex => self.flex,
            Lever::PromptCache => self.prompt_cache,
            Lever::ResponseCache => self.response_cache,
        }
    }

    /// One entry per lever, in a fixed order, for emitting `sluice_savings_usd_total{lever}`.
    pub fn by_lever(&self) -> [(Lever, f64); 4] {
        [
            (Lever::Batch, self.batch),
            (Lever::Flex, self.flex),
            (Lever::PromptCache, self.prompt_cache),
            (Lever::ResponseCache, self.response_cache),
        ]
    }

    pub fn total(&self) -> f64 {
        self.batch + self.flex + self.prompt_cache + self.response_cache
    }
}

/// The price of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Priced {
    /// What the provider bills.
    pub cost_usd: f64,
    /// The same tokens synchronous, uncached, at list price.
    pub baseline_usd: f64,
    /// `baseline_usd - cost_usd`, split by lever.
    pub savings: Savings,
}

/// The lever a tier itself pulls. `Interactive` has none (its only saving is the prompt cache).
pub fn lever_for(tier: Tier) -> Option<Lever> {
    match tier {
        Tier::ResponseCache => Some(Lever::ResponseCache),
        Tier::Batch => Some(Lever::Batch),
        Tier::Flex => Some(Lever::Flex),
        Tier::Interactive => None,
    }
}

/// Prices one answer served on `tier` with `usage`.
///
/// The tier's own lever gets baseline minus "every input token at the tier's input rate plus
/// output at its output rate"; the prompt-cache lever gets the rest, so the savings always sum to
/// `baseline_usd - cost_usd`. A response-cache hit costs nothing and saves the whole baseline.
pub fn price(p: &ModelPrice, tier: Tier, usage: &Usage) -> Priced {
    let baseline_usd = p.rates(Tier::Interactive).uncached_cost(usage);
    let mut savings = Savings::default();
    if tier == Tier::ResponseCache {
        savings.response_cache = baseline_usd;
        return Priced {
            cost_usd: 0.0,
            baseline_usd,
            savings,
        };
    }
    let rates = p.rates(tier);
    let cost_usd = rates.cost(usage);
    let uncached_at_tier = rates.uncached_cost(usage);
    savings.prompt_cache = uncached_at_tier - cost_usd;
    match lever_for(tier) {
        Some(Lever::Batch) => savings.batch = baseline_usd - uncached_at_tier,
        Some(Lever::Flex) => savings.flex = baseline_usd - uncached_at_tier,
        _ => {}
    }
    Priced {
        cost_usd,
        baseline_usd,
        savings,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read price file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid LiteLLM price JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid LiteLLM price JSON: expected an object mapping model names to price entries")]
    NotAnObject,
    #[error("price file {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<PricingError>,
    },
}

/// Model name → price. Lookups are one hash probe, plus one more after stripping a date suffix.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// The rows of `shared/reference/prices.md` whose API id is known, plus two embedding models.
    pub fn builtin() -> PriceTable {
        PriceTable {
            models: BUILTIN
                .iter()
                .map(|row| (row.name.to_owned(), row.price))
                .collect(),
        }
    }

    /// Parses a LiteLLM `model_prices_and_context_window.json`. See the `litellm` module for the
    /// rules (which entries are kept, how keys such as `gemini/gemini-2.5-pro` are aliased).
    pub fn from_litellm_json(bytes: &[u8]) -> Result<PriceTable, PricingError> {
        litellm::parse(bytes).map(|models| PriceTable { models })
    }

    /// Reads and parses a LiteLLM price file; errors name the file.
    pub fn load(path: &Path) -> Result<PriceTable, PricingError> {
        let bytes = std::fs::read(path).map_err(|source| PricingError::Read {
            path: path.to_owned(),
            source,
        })?;
        PriceTable::from_litellm_json(&bytes).map_err(|e| PricingError::File {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// `self` with `other`'s entries added, replacing same-named ones.
    pub fn merged(mut self, other: PriceTable) -> PriceTable {
        self.models.extend(other.models);
        self
    }

    pub fn insert(&mut self, name: impl Into<String>, price: ModelPrice) {
        self.models.insert(name.into(), price);
    }

    /// Exact match, else the name without a trailing date snapshot (`gpt-4.1-2025-04-14`,
    /// `claude-sonnet-4-5-20250929`). Returns the canonical (stored) name with the price.
    pub fn get(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        let found = self
            .models
            .get_key_value(model)
            .or_else(|| self.models.get_key_value(strip_date_suffix(model)?));
        found.map(|(name, price)| (name.as_str(), price))
    }

    /// Every entry, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        let mut rows: Vec<(&str, &ModelPrice)> =
            self.models.iter().map(|(n, p)| (n.as_str(), p)).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows.into_iter()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// `name-2025-04-14` → `name`, `name-20250929` → `name`; anything else → `None`. No allocation.
fn strip_date_suffix(model: &str) -> Option<&str> {
    fn digits(b: &[u8]) -> bool {
        b.iter().all(u8::is_ascii_digit)
    }
    let b = model.as_bytes();
    let n = b.len();
    // `-YYYY-MM-DD` (OpenAI snapshots).
    if n > 11 {
        let t = &b[n - 11..];
        if t[0] == b'-'
            && digits(&t[1..5])
            && t[5] == b'-'
            && digits(&t[6..8])
            && t[8] == b'-'
            && digits(&t[9..11])
        {
            return model.get(..n - 11);
        }
    }
    // `-YYYYMMDD` (Anthropic snapshots).
    if n > 9 {
        let t = &b[n - 9..];
        if t[0] == b'-' && digits(&t[1..]) {
            return model.get(..n - 9);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < EPS,
            "got {actual:e}, expected {expected:e}"
        );
    }

    fn model(name: &str) -> ModelPrice {
        match PriceTable::builtin().get(name) {
            Some((_, p)) => *p,
            None => panic!("{name} missing from the built-in table"),
        }
    }

    fn assert_split_sums(p: &Priced) {
        close(p.savings.total(), p.baseline_usd - p.cost_usd);
    }

    #[test]
    fn builtin_has_every_known_model() {
        let table = PriceTable::builtin();
        for name in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-5",
            "gpt-5-mini",
            "o3",
            "o4-mini",
            "claude-opus-4-6",
            "claude-opus-4-5",
            "claude-sonnet-4-6",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "text-embedding-3-small",
            "text-embedding-3-large",
        ] {
            assert!(table.get(name).is_some(), "{name}");
        }
        assert_eq!(table.len(), 17);
        let names: Vec<&str> = table.iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(BUILTIN.iter().all(|r| !r.source.is_empty()));
    }

    #[test]
    fn gpt_4_1_mini_interactive_with_cache_hit() {
        // 2006 prompt tokens, 1920 of them cached, 3 output tokens.
        let usage = Usage {
            input_tokens: 86,
            cached_input_tokens: 1920,
            output_tokens: 3,
            ..Usage::default()
        };
        let p = price(&model("gpt-4.1-mini"), Tier::Interactive, &usage);
        // cost = 86×0.40e-6 + 1920×0.10e-6 + 3×1.60e-6 = 34.4e-6 + 192e-6 + 4.8e-6 = 231.2e-6
        close(p.cost_usd, 231.2e-6);
        // baseline = 2006×0.40e-6 + 3×1.60e-6 = 802.4e-6 + 4.8e-6 = 807.2e-6
        close(p.baseline_usd, 807.2e-6);
        // prompt_cache = 807.2e-6 − 231.2e-6 = 576e-6 (= 1920 × (0.40 − 0.10)e-6)
        close(p.savings.prompt_cache, 576e-6);
        close(p.savings.batch, 0.0);
        close(p.savings.flex, 0.0);
        close(p.savings.response_cache, 0.0);
    }

    #[test]
    fn claude_cache_write_is_a_negative_saving() {
        // First request of a conversation: 5000 tokens written to the 5-minute cache.
        let usage = Usage {
            input_tokens: 10,
            cache_write_5m_tokens: 5000,
            output_tokens: 100,
            ..Usage::default()
        };
        let p = price(&model("claude-sonnet-4-6"), Tier::Interactive, &usage);
        // cost = 10×3e-6 + 5000×3.75e-6 + 100×15e-6 = 0.00003 + 0.01875 + 0.0015 = 0.02028
        close(p.cost_usd, 0.02028);
        // baseline = 5010×3e-6 + 100×15e-6 = 0.01503 + 0.0015 = 0.01653
        close(p.baseline_usd, 0.01653);
        // prompt_cache = 0.01653 − 0.02028 = −0.00375 (= 5000 × (3 − 3.75)e-6)
        close(p.savings.prompt_cache, -0.00375);

        // A 1-hour write: 5000×6e-6 = 0.03 instead of 5000×3e-6 = 0.015 → −0.015.
        let usage_1h = Usage {
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 5000,
            ..usage
        };
        let p = price(&model("claude-sonnet-4-6"), Tier::Interactive, &usage_1h);
        close(p.savings.prompt_cache, -0.015);
    }

    #[test]
    fn openai_cache_write_has_no_fee() {
        // gpt-4o lists no write rate: written tokens are billed at the input rate, saving 0.
        let usage = Usage {
            cache_write_5m_tokens: 2048,
            output_tokens: 10,
            ..Usage::default()
        };
        let p = price(&model("gpt-4o"), Tier::Interactive, &usage);
        // 2048×2.5e-6 + 10×10e-6 = 0.00512 + 0.0001 = 0.00522
        close(p.cost_usd, 0.00522);
        close(p.savings.prompt_cache, 0.0);
    }

    #[test]
    fn batch_split_sums_to_baseline_minus_cost() {
        let usage = Usage {
            input_tokens: 100,
            cached_input_tokens: 4000,
            output_tokens: 200,
            ..Usage::default()
        };
        let p = price(&model("claude-sonnet-4-6"), Tier::Batch, &usage);
        // cost = 100×1.5e-6 + 4000×0.15e-6 + 200×7.5e-6 = 0.00015 + 0.0006 + 0.0015 = 0.00225
        close(p.cost_usd, 0.00225);
        // baseline = 4100×3e-6 + 200×15e-6 = 0.0123 + 0.003 = 0.0153
        close(p.baseline_usd, 0.0153);
        // batch = 0.0153 − (4100×1.5e-6 + 200×7.5e-6) = 0.0153 − 0.00765 = 0.00765
        close(p.savings.batch, 0.00765);
        // prompt_cache = 0.00765 − 0.00225 = 0.0054 (= 4000 × (1.5 − 0.15)e-6)
        close(p.savings.prompt_cache, 0.0054);
        close(p.savings.flex, 0.0);
        assert_split_sums(&p);
    }

    #[test]
    fn batch_fallbacks() {
        // gpt-4o lists no batch cached rate: 1.25e-6 × 0.5 = 0.625e-6 (UNCONFIRMED, LiteLLM's rule).
        let r = model("gpt-4o").rates(Tier::Batch);
        close(r.cached_input, 0.625e-6);
        close(r.input, 1.25e-6);
        // No write fee on OpenAI: writes at the batch input rate.
        close(r.cache_write_5m, 1.25e-6);
        close(r.cache_write_1h, 1.25e-6);
        // Claude: 5m write from batch_cache_write (1.875e-6), 1h write = 6e-6 × 0.5 = 3e-6.
        let r = model("claude-sonnet-4-6").rates(Tier::Batch);
        close(r.cache_write_5m, 1.875e-6);
        close(r.cache_write_1h, 3e-6);
        // Gemini: batch cache reads at the standard cached rate [P6].
        close(
            model("gemini-2.5-flash").rates(Tier::Batch).cached_input,
            0.03e-6,
        );
        // A row with no batch data at all: 50% of everything.
        let bare = ModelPrice {
            batch_input: None,
            batch_output: None,
            batch_cached_input: None,
            batch_cache_write: None,
            ..model("claude-haiku-4-5")
        };
        let r = bare.rates(Tier::Batch);
        close(r.input, 0.5e-6);
        close(r.output, 2.5e-6);
        close(r.cached_input, 0.05e-6);
        close(r.cache_write_5m, 0.625e-6);
        close(r.cache_write_1h, 1e-6);
    }

    #[test]
    fn flex_split_sums_to_baseline_minus_cost() {
        let usage = Usage {
            input_tokens: 1000,
            cached_input_tokens: 2048,
            output_tokens: 500,
            ..Usage::default()
        };
        let p = price(&model("o4-mini"), Tier::Flex, &usage);
        // cost = 1000×0.55e-6 + 2048×0.138e-6 + 500×2.2e-6 = 0.00055 + 0.000282624 + 0.0011
        //      = 0.001932624
        close(p.cost_usd, 0.001932624);
        // baseline = 3048×1.1e-6 + 500×4.4e-6 = 0.0033528 + 0.0022 = 0.0055528
        close(p.baseline_usd, 0.0055528);
        // flex = 0.0055528 − (3048×0.55e-6 + 500×2.2e-6) = 0.0055528 − 0.0027764 = 0.0027764
        close(p.savings.flex, 0.0027764);
        // prompt_cache = 2048 × (0.55 − 0.138)e-6 = 0.000843776
        close(p.savings.prompt_cache, 0.000843776);
        close(p.savings.batch, 0.0);
        assert_split_sums(&p);
    }

    #[test]
    fn flex_fallbacks() {
        // gpt-4.1 has no flex fields: batch rates (1e-6 / 4e-6), cached 0.5e-6 × (1e-6 / 2e-6).
        let r = model("gpt-4.1").rates(Tier::Flex);
        close(r.input, 1e-6);
        close(r.output, 4e-6);
        close(r.cached_input, 0.25e-6);
        close(r.cache_write_5m, 1e-6);
        // Neither flex nor batch: 50% of standard, cached scaled by the same 0.5.
        let bare = ModelPrice {
            batch_input: None,
            batch_output: None,
            ..model("gpt-4.1")
        };
        let r = bare.rates(Tier::Flex);
        close(r.input, 1e-6);
        close(r.output, 4e-6);
        close(r.cached_input, 0.25e-6);
        assert!(!model("gpt-4.1").has_flex());
        assert!(model("gpt-5").has_flex());
        assert!(model("o4-mini").has_flex());
        assert!(
            !model("gemini-2.5-flash").has_flex(),
            "the flex tier is OpenAI's"
        );
    }

    #[test]
    fn response_cache_costs_nothing() {
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 100,
            ..Usage::default()
        };
        let p = price(&model("gpt-5-mini"), Tier::ResponseCache, &usage);
        close(p.cost_usd, 0.0);
        // baseline = 1000×0.25e-6 + 100×2e-6 = 0.00025 + 0.0002 = 0.00045
        close(p.baseline_usd, 0.00045);
        close(p.savings.response_cache, 0.00045);
        close(p.savings.get(Lever::PromptCache), 0.0);
        assert_split_sums(&p);
    }

    #[test]
    fn lever_per_tier() {
        assert_eq!(lever_for(Tier::Batch), Some(Lever::Batch));
        assert_eq!(lever_for(Tier::Flex), Some(Lever::Flex));
        assert_eq!(lever_for(Tier::ResponseCache), Some(Lever::ResponseCache));
        assert_eq!(lever_for(Tier::Interactive), None);
    }

    #[test]
    fn lookup_strips_date_suffixes() {
        let table = PriceTable::builtin();
        assert_eq!(
            table.get("gpt-4.1-mini").map(|(n, _)| n),
            Some("gpt-4.1-mini")
        );
        assert_eq!(
            table.get("gpt-4.1-2025-04-14").map(|(n, _)| n),
            Some("gpt-4.1")
        );
        assert_eq!(
            table.get("claude-sonnet-4-5-20250929").map(|(n, _)| n),
            Some("claude-sonnet-4-5")
        );
        assert!(table.get("gpt-4.1-2025-4-14").is_none());
        assert!(table.get("gpt-4.1-x2025-04-14").is_none());
        assert!(table.get("-20250929").is_none());
        assert!(table.get("unknown-model").is_none());
        assert!(table.get("").is_none());
        assert_eq!(strip_date_suffix("o3-2025-04-16"), Some("o3"));
        assert_eq!(
            strip_date_suffix("claude-3-5-haiku-20241022"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(strip_date_suffix("gpt-4o"), None);
        assert_eq!(strip_date_suffix("é-20250929"), Some("é"));
    }

    #[test]
    fn merged_overrides() {
        let mut other = PriceTable::default();
        let cheap = ModelPrice {
            input: 1e-9,
            ..model("gpt-4o")
        };
        other.insert("gpt-4o", cheap);
        other.insert("my-model", cheap);
        let table = PriceTable::builtin().merged(other);
        assert_eq!(table.len(), 18);
        assert_eq!(table.get("gpt-4o").map(|(_, p)| p.input), Some(1e-9));
        assert!(table.get("my-model").is_some());
    }

    #[test]
    fn load_names_the_file() {
        let path = std::env::temp_dir().join("sluice-pricing-test-does-not-exist.json");
        let err = PriceTable::load(&path).map(|_| ()).unwrap_err();
        assert!(
            err.to_string()
                .contains("sluice-pricing-test-does-not-exist.json"),
            "{err}"
        );

        let path =
            std::env::temp_dir().join(format!("sluice-pricing-bad-{}.json", std::process::id()));
        std::fs::write(&path, b"[1, 2]").unwrap();
        let err = PriceTable::load(&path).map(|_| ()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(err.to_string().contains("expected an object"), "{err}");
    }
}
