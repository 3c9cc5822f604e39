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
//! The tier the provider reports ([`Usage::served_tier`]) decides the rates on the synchronous
//! tiers ([`billing`]): a tier Sluice did not ask for (the caller's `service_tier`, or the
//! project's default) is billed at that tier's rates with baseline = cost, since sending the
//! request directly would have cost the same; a flex request the provider served at `default`
//! is billed at standard rates.
//!
//! Gemini (prices.md "Google Gemini tiers"): a row may carry a [`LongContext`] tier (prompts over
//! 200k tokens, cached tokens included, bill the whole request at higher rates on every tier);
//! batch and flex discounts do not stack on cache hits (cached tokens cost the standard cached
//! rate, and their saving is the prompt cache's, not the tier's); flex and priority answers are
//! billed at the tier Google reports, like OpenAI's.
//!
//! Fallback rules when a row lacks a rate (all documented on [`ModelPrice::rates`]):
//! * interactive: a missing cache-write rate bills written tokens at the input rate (OpenAI and
//!   Gemini charge no write fee);
//! * batch: missing batch rates are 50% of the standard ones; a missing batch cached rate is 50% of
//!   the cached rate (LiteLLM's assumption, UNCONFIRMED in prices.md);
//! * flex: `flex_*`, else `batch_*`, else 50% of standard; a missing flex cached rate scales the
//!   cached rate by the flex/standard input ratio;
//! * priority / ultrafast: `priority_*` / `ultrafast_*`; a missing cached, cache-write or output
//!   rate scales the standard one by the tier/standard input ratio; a row with neither an input
//!   nor an output rate for the tier bills it at standard rates ([`Priced::unrated_tier`] says
//!   so), as are `scale` and unknown tiers.

mod builtin;
mod litellm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::types::{Lever, Provider, ServedTier, Tier, Usage};

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
    /// Priority / Fast tier (LiteLLM `input_cost_per_token_priority`, `output_…`,
    /// `cache_read_input_token_cost_priority`, `cache_creation_input_token_cost_priority`).
    pub priority_input: Option<f64>,
    pub priority_output: Option<f64>,
    pub priority_cached_input: Option<f64>,
    pub priority_cache_write: Option<f64>,
    /// Ultrafast tier (LiteLLM `*_ultrafast`, the same four fields; newer files than 1.110.2).
    pub ultrafast_input: Option<f64>,
    pub ultrafast_output: Option<f64>,
    pub ultrafast_cached_input: Option<f64>,
    pub ultrafast_cache_write: Option<f64>,
    /// Higher rates for long prompts (Gemini 2.5 Pro, 3.1 Pro: prompts over 200k tokens). When a
    /// prompt is over the threshold the **whole request** (input, cached input and output, on
    /// every tier) is billed at these rates ([`ModelPrice::for_prompt`]).
    pub long_context: Option<LongContext>,
}

/// A model's long-context tier: the rates billed for the whole request when the prompt is over
/// `above_tokens` (prices.md "Long-context (> 200k prompt) rates apply to the whole request when
/// the prompt exceeds 200k tokens"). The prompt is counted with cached tokens included
/// ([`Usage::total_input`]; Gemini's `promptTokenCount` includes `cachedContentTokenCount`).
/// `None` tier rates fall back as documented on [`ModelPrice::for_prompt`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongContext {
    /// The largest prompt still billed at the ordinary rates (Gemini: 200,000; "200k" read as
    /// 200,000 rather than 204,800, the lower of the two, so a prompt in between is never
    /// under-billed — UNCONFIRMED).
    pub above_tokens: u64,
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
    pub batch_input: Option<f64>,
    pub batch_output: Option<f64>,
    pub batch_cached_input: Option<f64>,
    pub flex_input: Option<f64>,
    pub flex_output: Option<f64>,
    pub flex_cached_input: Option<f64>,
    pub priority_input: Option<f64>,
    pub priority_output: Option<f64>,
    pub priority_cached_input: Option<f64>,
}

/// Gemini's long-context threshold: prompts over 200k tokens [P8][P8b].
pub const GEMINI_LONG_CONTEXT_ABOVE: u64 = 200_000;

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

/// A premium tier's listed rates (priority or ultrafast), before the fallbacks.
#[derive(Debug, Clone, Copy)]
struct Listed {
    input: Option<f64>,
    output: Option<f64>,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
}

impl ModelPrice {
    /// Whether the row lists priority (Fast) rates of its own.
    pub fn has_priority(&self) -> bool {
        self.priority_input.is_some() || self.priority_output.is_some()
    }

    /// Whether the row lists ultrafast rates of its own.
    pub fn has_ultrafast(&self) -> bool {
        self.ultrafast_input.is_some() || self.ultrafast_output.is_some()
    }

    /// Whether the model has flex prices: OpenAI's `service_tier: "flex"` and Gemini's Flex
    /// (CONTRACT.md "Triage"). Where Sluice may choose the tier is the provider seam's call
    /// (`providers::flex`): Gemini's only on its native API, which reports the served tier.
    pub fn has_flex(&self) -> bool {
        self.flex_input.is_some() || self.flex_output.is_some()
    }

    /// Whether a tier's discount leaves cache reads alone (Gemini: "the discounts for cache and
    /// batch don't stack. The 90% cache hit discount takes precedence" [P12]; batch and flex cache
    /// reads are listed at the standard cached rate [P6b][P8]).
    fn cache_takes_precedence(&self) -> bool {
        self.provider == Provider::Gemini
    }

    /// The row that bills a request whose prompt (cached tokens included) is `prompt_tokens`
    /// long: `self`, or — when the row has a [`LongContext`] tier and the prompt is over its
    /// threshold — the long-context rates for the whole request. Exactly at the threshold the
    /// ordinary rates apply (Google: "prompts <= 200k tokens").
    ///
    /// A tier rate the long-context tier does not list is the short-prompt tier rate scaled by the
    /// long/short standard ratio of the same kind (input, cached, output), so a long prompt is
    /// never billed below its standard long rate × the tier's discount; with no short-prompt
    /// tier rate either, the ordinary fallbacks of [`ModelPrice::rates`] apply to the long rates.
    pub fn for_prompt(&self, prompt_tokens: u64) -> ModelPrice {
        let Some(lc) = self.long_context else {
            return *self;
        };
        if prompt_tokens <= lc.above_tokens {
            return *self;
        }
        let ratio = |long: f64, short: f64| if short > 0.0 { long / short } else { 1.0 };
        let (ri, rc, ro) = (
            ratio(lc.input, self.input),
            ratio(lc.cached_input, self.cached_input),
            ratio(lc.output, self.output),
        );
        let scaled =
            |listed: Option<f64>, short: Option<f64>, r: f64| listed.or(short.map(|v| v * r));
        ModelPrice {
            input: lc.input,
            cached_input: lc.cached_input,
            output: lc.output,
            batch_input: scaled(lc.batch_input, self.batch_input, ri),
            batch_output: scaled(lc.batch_output, self.batch_output, ro),
            batch_cached_input: scaled(lc.batch_cached_input, self.batch_cached_input, rc),
            flex_input: scaled(lc.flex_input, self.flex_input, ri),
            flex_output: scaled(lc.flex_output, self.flex_output, ro),
            flex_cached_input: scaled(lc.flex_cached_input, self.flex_cached_input, rc),
            priority_input: scaled(lc.priority_input, self.priority_input, ri),
            priority_output: scaled(lc.priority_output, self.priority_output, ro),
            priority_cached_input: scaled(lc.priority_cached_input, self.priority_cached_input, rc),
            long_context: None,
            ..*self
        }
    }

    /// The rates a tier is billed at, with these fallbacks for rates the row does not list:
    ///
    /// * `Interactive`: standard rates; a missing 5m or 1h cache-write rate is the input rate.
    /// * `Batch`: `batch_input`/`batch_output`, else 50% of standard. Cached reads at
    ///   `batch_cached_input`, else `cached_input` × 0.5 — the 50% batch discount stacking on cache
    ///   reads is LiteLLM's assumption, UNCONFIRMED in prices.md. On a Gemini row a missing
    ///   batch cached rate is the standard cached rate: Google's discounts do not stack on cache
    ///   hits [P6b][P12]. 5m writes at `batch_cache_write`, else
    ///   `cache_write_5m` × 0.5; 1h writes at `cache_write_1h` × 0.5; with no write rate listed,
    ///   written tokens are billed at the batch input rate.
    /// * `Flex`: `flex_*`, else `batch_*`, else 50% of standard. Cached reads at
    ///   `flex_cached_input`, else `cached_input` × (flex input / input) (Gemini: else the
    ///   standard cached rate, "cache-read and storage unchanged" on Flex [P8]); cache writes, if the row
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
                    cached_input: self.batch_cached_input.unwrap_or(
                        if self.cache_takes_precedence() {
                            self.cached_input
                        } else {
                            self.cached_input * BATCH_DISCOUNT_FACTOR
                        },
                    ),
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
                    cached_input: self.flex_cached_input.unwrap_or(
                        if self.cache_takes_precedence() {
                            self.cached_input
                        } else {
                            self.cached_input * ratio
                        },
                    ),
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

    /// The rates of a tier the provider reported, and whether the row rates that tier
    /// (`false`: billed at standard rates instead).
    ///
    /// * `Standard`: [`Tier::Interactive`] rates. `Flex`, `Batch`: [`Tier::Flex`] and
    ///   [`Tier::Batch`] rates, with their fallbacks.
    /// * `Priority`, `Ultrafast`: `priority_*` / `ultrafast_*`. A missing cached, cache-write
    ///   or output rate is the standard one × (tier input / standard input); a missing input
    ///   rate is the standard one. Neither input nor output listed → standard, unrated.
    /// * `Scale` (contract-priced) and `Other`: standard, unrated.
    pub fn served_rates(&self, served: ServedTier) -> (Rates, bool) {
        let standard = self.rates(Tier::Interactive);
        let premium = match served {
            ServedTier::Standard => return (standard, true),
            ServedTier::Flex => return (self.rates(Tier::Flex), true),
            ServedTier::Batch => return (self.rates(Tier::Batch), true),
            ServedTier::Scale | ServedTier::Other => return (standard, false),
            ServedTier::Priority => Listed {
                input: self.priority_input,
                output: self.priority_output,
                cached_input: self.priority_cached_input,
                cache_write: self.priority_cache_write,
            },
            ServedTier::Ultrafast => Listed {
                input: self.ultrafast_input,
                output: self.ultrafast_output,
                cached_input: self.ultrafast_cached_input,
                cache_write: self.ultrafast_cache_write,
            },
        };
        match self.premium_rates(premium) {
            Some(rates) => (rates, true),
            None => (standard, false),
        }
    }

    fn premium_rates(&self, l: Listed) -> Option<Rates> {
        if l.input.is_none() && l.output.is_none() {
            return None;
        }
        let input = l.input.unwrap_or(self.input);
        let ratio = match l.input {
            Some(i) if self.input > 0.0 => i / self.input,
            _ => 1.0,
        };
        Some(Rates {
            input,
            cached_input: l.cached_input.unwrap_or(self.cached_input * ratio),
            cache_write_5m: l
                .cache_write
                .or(self.cache_write_5m.map(|w| w * ratio))
                .unwrap_or(input),
            cache_write_1h: self.cache_write_1h.map_or(input, |w| w * ratio),
            output: l.output.unwrap_or(self.output * ratio),
        })
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
    /// The same tokens synchronous, uncached, at list price; for a tier Sluice did not choose
    /// ([`Billing::Reported`]), the cost itself.
    pub baseline_usd: f64,
    /// `baseline_usd - cost_usd`, split by lever.
    pub savings: Savings,
    /// The provider reported this tier but the price row has no rates for it, so the answer
    /// was billed at standard rates (an ultrafast or priority answer of a row without those
    /// rates, `scale`, an unknown tier).
    pub unrated_tier: Option<ServedTier>,
}

/// Which rates an answer is billed at, from Sluice's tier and the tier the provider reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// The tier Sluice chose, with savings against the synchronous uncached baseline.
    Sluice(Tier),
    /// A tier Sluice did not ask for (the caller's `service_tier`, the project's default):
    /// billed at its rates ([`ModelPrice::served_rates`]), baseline = cost, no savings.
    Reported(ServedTier),
}

/// How an answer on `tier` that the provider reported serving at `served` is billed:
///
/// | Sluice's tier | reported | billed |
/// |---|---|---|
/// | `response_cache`, `batch` | anything (a batch line's tier is not relied on) | Sluice's tier |
/// | `interactive`, `flex` | nothing | Sluice's tier |
/// | `interactive` | `default` / `standard` | interactive |
/// | `flex` | `flex` | flex |
/// | `flex` | `default` / `standard` | interactive (served at standard: no flex saving) |
/// | `interactive` | `flex`, `priority`/`fast`, `ultrafast`, `scale`, `batch`, unknown | [`Billing::Reported`] |
/// | `flex` | `priority`/`fast`, `ultrafast`, `scale`, `batch`, unknown | [`Billing::Reported`] |
pub fn billing(tier: Tier, served: Option<ServedTier>) -> Billing {
    match (tier, served) {
        (Tier::ResponseCache | Tier::Batch, _) | (_, None) => Billing::Sluice(tier),
        (Tier::Interactive | Tier::Flex, Some(ServedTier::Standard)) => {
            Billing::Sluice(Tier::Interactive)
        }
        (Tier::Flex, Some(ServedTier::Flex)) => Billing::Sluice(Tier::Flex),
        (_, Some(s)) => Billing::Reported(s),
    }
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

/// Prices one answer served on `tier` with `usage`, at the rates [`billing`] picks from `tier`
/// and `usage.served_tier`.
///
/// A row with a [`LongContext`] tier is first resolved for the prompt size
/// ([`ModelPrice::for_prompt`] of [`Usage::total_input`]).
///
/// On Sluice's own tier, the tier's lever gets baseline minus "every input token at the tier's
/// input rate plus output at its output rate" — except where the tier's discount does not stack
/// with cache reads (Gemini): there the tier's lever gets "the answer at standard rates, cache
/// hits included" minus cost, so cached tokens count for the prompt cache only. The prompt-cache
/// lever gets the rest, so the savings always sum to `baseline_usd - cost_usd`. A response-cache hit costs nothing and saves the whole
/// baseline. A reported tier Sluice did not choose costs what its rates say, and so does its
/// baseline: no savings.
pub fn price(p: &ModelPrice, tier: Tier, usage: &Usage) -> Priced {
    // A long prompt bills the whole request, baseline included, at the long-context rates: the
    // same prompt sent synchronously would have been just as long.
    let p = &p.for_prompt(usage.total_input());
    match billing(tier, usage.served_tier) {
        Billing::Sluice(t) => price_at(p, t, usage),
        Billing::Reported(served) => {
            let (rates, rated) = p.served_rates(served);
            let cost_usd = rates.cost(usage);
            Priced {
                cost_usd,
                baseline_usd: cost_usd,
                savings: Savings::default(),
                unrated_tier: (!rated).then_some(served),
            }
        }
    }
}

/// [`price`] on a tier Sluice chose.
fn price_at(p: &ModelPrice, tier: Tier, usage: &Usage) -> Priced {
    let baseline_usd = p.rates(Tier::Interactive).uncached_cost(usage);
    let mut savings = Savings::default();
    if tier == Tier::ResponseCache {
        savings.response_cache = baseline_usd;
        return Priced {
            cost_usd: 0.0,
            baseline_usd,
            savings,
            unrated_tier: None,
        };
    }
    let rates = p.rates(tier);
    let cost_usd = rates.cost(usage);
    let tier_saving = if p.cache_takes_precedence() {
        // No stacking (Gemini): a cache hit costs the cached rate whatever the tier, so the tier
        // saved only what it discounts on the answer as billed interactively, cache hits
        // included; the cache gets the full standard-rate discount on its tokens. Crediting
        // the tier with its input discount on cached tokens would inflate it by
        // cached × (input − tier input), which it never saved.
        p.rates(Tier::Interactive).cost(usage) - cost_usd
    } else {
        baseline_usd - rates.uncached_cost(usage)
    };
    let tier_saving = match lever_for(tier) {
        Some(Lever::Batch) => {
            savings.batch = tier_saving;
            tier_saving
        }
        Some(Lever::Flex) => {
            savings.flex = tier_saving;
            tier_saving
        }
        _ => 0.0,
    };
    savings.prompt_cache = baseline_usd - cost_usd - tier_saving;
    Priced {
        cost_usd,
        baseline_usd,
        savings,
        unrated_tier: None,
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
            "gpt-5.5",
            "gpt-5.6-sol",
            "o3",
            "o4-mini",
            "claude-opus-4-6",
            "claude-opus-4-5",
            "claude-sonnet-4-6",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-3.1-pro-preview",
            "gemini-3-flash-preview",
            "gemini-3.8-flash",
            "text-embedding-3-small",
            "text-embedding-3-large",
        ] {
            assert!(table.get(name).is_some(), "{name}");
        }
        assert_eq!(table.len(), 22);
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
        assert!(model("gemini-2.5-flash").has_flex());
    }

    // ---- Service tiers: priced at the tier the provider reports back ----

    /// `usage` as answered at the reported tier `served`.
    fn served(usage: Usage, served: &str) -> Usage {
        Usage {
            served_tier: Some(ServedTier::parse(served)),
            ..usage
        }
    }

    const NO_SAVINGS: Savings = Savings {
        batch: 0.0,
        flex: 0.0,
        prompt_cache: 0.0,
        response_cache: 0.0,
    };

    /// 1000 uncached input, 2000 cached input, 500 output tokens.
    const MIXED: Usage = Usage {
        input_tokens: 1000,
        cached_input_tokens: 2000,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        output_tokens: 500,
        served_tier: None,
    };

    /// The reference's chat sample (provider-apis.md 1.4): 2006 prompt tokens, 1920 cached, 3 out.
    const SAMPLE: Usage = Usage {
        input_tokens: 86,
        cached_input_tokens: 1920,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        output_tokens: 3,
        served_tier: None,
    };

    #[test]
    fn billing_follows_the_reported_tier_on_the_synchronous_tiers() {
        use ServedTier as S;
        let all = [
            S::Standard,
            S::Flex,
            S::Priority,
            S::Ultrafast,
            S::Scale,
            S::Batch,
            S::Other,
        ];
        for t in Tier::ALL {
            assert_eq!(billing(t, None), Billing::Sluice(t), "{t}");
        }
        // A batch line's or a cached answer's reported tier is not relied on.
        for s in all {
            assert_eq!(billing(Tier::Batch, Some(s)), Billing::Sluice(Tier::Batch));
            assert_eq!(
                billing(Tier::ResponseCache, Some(s)),
                Billing::Sluice(Tier::ResponseCache)
            );
        }
        assert_eq!(
            billing(Tier::Interactive, Some(S::Standard)),
            Billing::Sluice(Tier::Interactive)
        );
        assert_eq!(
            billing(Tier::Flex, Some(S::Flex)),
            Billing::Sluice(Tier::Flex)
        );
        assert_eq!(
            billing(Tier::Flex, Some(S::Standard)),
            Billing::Sluice(Tier::Interactive),
            "a flex request served at default is billed at standard"
        );
        for s in [
            S::Flex,
            S::Priority,
            S::Ultrafast,
            S::Scale,
            S::Batch,
            S::Other,
        ] {
            assert_eq!(billing(Tier::Interactive, Some(s)), Billing::Reported(s));
        }
    }

    #[test]
    fn a_caller_chosen_flex_answer_costs_flex_rates_and_saves_nothing() {
        // gpt-5 flex: input $0.625/M, cached $0.0625/M, output $5/M.
        let p = price(&model("gpt-5"), Tier::Interactive, &served(MIXED, "flex"));
        // cost = 1000×0.625e-6 + 2000×0.0625e-6 + 500×5e-6 = 0.000625 + 0.000125 + 0.0025
        close(p.cost_usd, 0.00325);
        // Sending it directly would have cost the same: no saving on any lever.
        close(p.baseline_usd, 0.00325);
        assert_eq!(p.savings, NO_SAVINGS);
        assert_eq!(p.unrated_tier, None);
    }

    #[test]
    fn sluice_flex_is_unchanged_and_a_flex_request_served_at_default_costs_standard() {
        let gpt5 = model("gpt-5");
        assert_eq!(
            price(&gpt5, Tier::Flex, &served(MIXED, "flex")),
            price(&gpt5, Tier::Flex, &MIXED),
            "reported flex on Sluice's flex tier = flex as before"
        );
        let p = price(&gpt5, Tier::Flex, &served(MIXED, "default"));
        // Standard: 1000×1.25e-6 + 2000×0.125e-6 + 500×10e-6 = 0.00125 + 0.00025 + 0.005
        close(p.cost_usd, 0.0065);
        // baseline = 3000×1.25e-6 + 500×10e-6 = 0.00375 + 0.005
        close(p.baseline_usd, 0.00875);
        close(p.savings.flex, 0.0);
        // prompt_cache = 2000 × (1.25 − 0.125)e-6
        close(p.savings.prompt_cache, 0.00225);
        assert_split_sums(&p);
    }

    #[test]
    fn priority_reported_as_priority_costs_priority_rates() {
        // gpt-5 Fast / Priority (prices.md): input $2.50/M, cached $0.25/M, output $20/M.
        let p = price(
            &model("gpt-5"),
            Tier::Interactive,
            &served(MIXED, "priority"),
        );
        // cost = 1000×2.5e-6 + 2000×0.25e-6 + 500×20e-6 = 0.0025 + 0.0005 + 0.01
        close(p.cost_usd, 0.013);
        close(p.baseline_usd, 0.013);
        assert_eq!(p.savings, NO_SAVINGS);
        assert_eq!(p.unrated_tier, None);
    }

    #[test]
    fn priority_reported_as_fast_costs_the_same_priority_rates() {
        // gpt-4.1-mini Fast / Priority: input $0.70/M, cached $0.175/M, output $2.80/M.
        let mini = model("gpt-4.1-mini");
        let p = price(&mini, Tier::Interactive, &served(SAMPLE, "fast"));
        // cost = 86×0.70e-6 + 1920×0.175e-6 + 3×2.80e-6 = 60.2e-6 + 336e-6 + 8.4e-6
        close(p.cost_usd, 404.6e-6);
        close(p.baseline_usd, 404.6e-6);
        assert_eq!(p.savings, NO_SAVINGS);
        assert_eq!(
            p,
            price(&mini, Tier::Interactive, &served(SAMPLE, "priority"))
        );
        assert_eq!(p, price(&mini, Tier::Interactive, &served(SAMPLE, "FAST")));
    }

    #[test]
    fn an_unknown_or_scale_tier_costs_standard_rates_and_says_so() {
        let mini = model("gpt-4.1-mini");
        for tier in ["turbo-2027", "scale"] {
            let p = price(&mini, Tier::Interactive, &served(SAMPLE, tier));
            // Standard: 86×0.40e-6 + 1920×0.10e-6 + 3×1.60e-6 = 34.4e-6 + 192e-6 + 4.8e-6
            close(p.cost_usd, 231.2e-6);
            close(p.baseline_usd, 231.2e-6);
            assert_eq!(p.savings, NO_SAVINGS);
            assert_eq!(p.unrated_tier, Some(ServedTier::parse(tier)), "{tier}");
        }
        // `default` (and `auto`) is the ordinary interactive answer, prompt-cache saving included.
        for tier in ["default", "auto"] {
            let p = price(&mini, Tier::Interactive, &served(SAMPLE, tier));
            assert_eq!(p, price(&mini, Tier::Interactive, &SAMPLE), "{tier}");
            close(p.baseline_usd, 807.2e-6);
        }
    }

    #[test]
    fn anthropic_priority_costs_standard_rates_as_no_priority_rate_is_listed() {
        // usage.service_tier "priority" on claude-sonnet-4-6; prices.md lists no Anthropic
        // priority rates, so standard: input $3/M, cache read $0.30/M, 5m write $3.75/M, out $15/M.
        let usage = Usage {
            input_tokens: 10,
            cached_input_tokens: 4000,
            cache_write_5m_tokens: 500,
            output_tokens: 100,
            served_tier: Some(ServedTier::Priority),
            ..Usage::default()
        };
        let p = price(&model("claude-sonnet-4-6"), Tier::Interactive, &usage);
        // cost = 10×3e-6 + 4000×0.3e-6 + 500×3.75e-6 + 100×15e-6
        //      = 0.00003 + 0.0012 + 0.001875 + 0.0015 = 0.004605
        close(p.cost_usd, 0.004605);
        close(p.baseline_usd, 0.004605);
        assert_eq!(p.savings, NO_SAVINGS);
        assert_eq!(p.unrated_tier, Some(ServedTier::Priority));
        // A Message Batches line reports "batch": Sluice's batch tier prices it as before.
        let batch = Usage {
            served_tier: Some(ServedTier::Batch),
            ..usage
        };
        assert_eq!(
            price(&model("claude-sonnet-4-6"), Tier::Batch, &batch),
            price(
                &model("claude-sonnet-4-6"),
                Tier::Batch,
                &Usage {
                    served_tier: None,
                    ..usage
                }
            )
        );
    }

    #[test]
    fn ultrafast_costs_its_rate_when_listed_else_standard() {
        // gpt-5.6-sol lists no ultrafast rate: standard $5 / $0.50 / $30, and said so.
        let sol = model("gpt-5.6-sol");
        let p = price(&sol, Tier::Interactive, &served(MIXED, "ultrafast"));
        // 1000×5e-6 + 2000×0.5e-6 + 500×30e-6 = 0.005 + 0.001 + 0.015
        close(p.cost_usd, 0.021);
        close(p.baseline_usd, 0.021);
        assert_eq!(p.unrated_tier, Some(ServedTier::Ultrafast));
        // With ultrafast rates (a LiteLLM file's `*_ultrafast` keys): $30 / $3 / $180.
        let listed = ModelPrice {
            ultrafast_input: Some(30e-6),
            ultrafast_cached_input: Some(3e-6),
            ultrafast_output: Some(180e-6),
            ..sol
        };
        let p = price(&listed, Tier::Interactive, &served(MIXED, "ultrafast"));
        // 1000×30e-6 + 2000×3e-6 + 500×180e-6 = 0.03 + 0.006 + 0.09
        close(p.cost_usd, 0.126);
        close(p.baseline_usd, 0.126);
        assert_eq!(p.unrated_tier, None);
    }

    #[test]
    fn premium_tier_fallbacks() {
        // gpt-5.6-sol Fast: $8 / $0.80 / $40; the 5m cache write ($6.25) scaled by 8/5 = $10.
        let (r, rated) = model("gpt-5.6-sol").served_rates(ServedTier::Priority);
        assert!(rated);
        close(r.input, 8e-6);
        close(r.cached_input, 0.8e-6);
        close(r.output, 40e-6);
        close(r.cache_write_5m, 10e-6);
        close(r.cache_write_1h, 8e-6);
        // Only an input rate listed: cached and output scaled by the input ratio (4 / 2 = ×2).
        let half = ModelPrice {
            priority_input: Some(4e-6),
            priority_output: None,
            priority_cached_input: None,
            ..model("gpt-4.1")
        };
        let (r, rated) = half.served_rates(ServedTier::Priority);
        assert!(rated);
        close(r.cached_input, 1e-6);
        close(r.output, 16e-6);
        // No priority rates at all: standard, unrated.
        let (r, rated) = model("claude-haiku-4-5").served_rates(ServedTier::Priority);
        assert!(!rated);
        assert_eq!(r, model("claude-haiku-4-5").rates(Tier::Interactive));
    }

    #[test]
    fn builtin_priority_rates_are_the_fast_table() {
        // prices.md "OpenAI Fast (formerly Priority)" and the Gemini Priority rows, per 1M.
        for (name, input, cached, output) in [
            ("gpt-5", 2.50, 0.25, 20.00),
            ("gpt-5-mini", 0.45, 0.045, 3.60),
            ("gpt-4.1", 3.50, 0.875, 14.00),
            ("gpt-4.1-mini", 0.70, 0.175, 2.80),
            ("gpt-4o", 4.25, 2.125, 17.00),
            ("gpt-4o-mini", 0.25, 0.125, 1.00),
            ("o3", 3.50, 0.875, 14.00),
            ("o4-mini", 2.00, 0.50, 8.00),
            ("gpt-5.5", 12.50, 1.25, 75.00),
            ("gpt-5.6-sol", 8.00, 0.80, 40.00),
            ("gemini-2.5-pro", 2.25, 0.225, 18.00),
            ("gemini-2.5-flash", 0.54, 0.054, 4.50),
        ] {
            let p = model(name);
            assert!(p.has_priority(), "{name}");
            let (r, _) = p.served_rates(ServedTier::Priority);
            for (got, want) in [
                (r.input, input),
                (r.cached_input, cached),
                (r.output, output),
            ] {
                assert!((got * 1e6 - want).abs() < 1e-9, "{name}: {got:e} vs {want}");
            }
        }
        for (name, p) in PriceTable::builtin().iter() {
            assert!(!p.has_ultrafast(), "{name}");
            if p.provider == Provider::Anthropic || p.mode == Mode::Embedding {
                assert!(!p.has_priority(), "{name}");
            }
        }
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
        assert_eq!(table.len(), 23);
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

    // ---- Gemini (prices.md "Google Gemini tiers", per 1M tokens) ----

    fn gemini_usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
            ..Usage::default()
        }
    }

    #[test]
    fn gemini_long_context_boundary_counts_cached_tokens() {
        let pro = model("gemini-2.5-pro");
        // Exactly 200,000 prompt tokens (150,000 + 50,000 cached): the ≤ 200k rates
        // 1.25 in / 0.125 cached / 10 out.
        let p = price(
            &pro,
            Tier::Interactive,
            &gemini_usage(150_000, 50_000, 1_000),
        );
        // cost = 150000×1.25e-6 + 50000×0.125e-6 + 1000×10e-6 = 0.1875 + 0.00625 + 0.01
        close(p.cost_usd, 0.20375);
        // baseline = 200000×1.25e-6 + 0.01 = 0.26
        close(p.baseline_usd, 0.26);
        // prompt_cache = 50000 × (1.25 − 0.125)e-6 = 0.05625
        close(p.savings.prompt_cache, 0.05625);
        assert_split_sums(&p);
        // One above (200,001): the whole request at 2.50 / 0.25 / 15.
        let p = price(
            &pro,
            Tier::Interactive,
            &gemini_usage(150_001, 50_000, 1_000),
        );
        // cost = 150001×2.5e-6 + 50000×0.25e-6 + 1000×15e-6 = 0.3750025 + 0.0125 + 0.015
        close(p.cost_usd, 0.4025025);
        // baseline = 200001×2.5e-6 + 0.015 = 0.5150025
        close(p.baseline_usd, 0.5150025);
        // prompt_cache = 50000 × (2.5 − 0.25)e-6 = 0.1125
        close(p.savings.prompt_cache, 0.1125);
        assert_split_sums(&p);
        // Cached tokens count toward the threshold: 1 + 200,000 cached = 200,001 → long.
        let p = price(&pro, Tier::Interactive, &gemini_usage(1, 200_000, 0));
        // cost = 1×2.5e-6 + 200000×0.25e-6 = 0.0500025
        close(p.cost_usd, 0.0500025);
        // A model without a long tier has one rate: 2.5 Flash at 300,000 prompt tokens.
        let p = price(
            &model("gemini-2.5-flash"),
            Tier::Interactive,
            &gemini_usage(300_000, 0, 0),
        );
        // 300000 × 0.30e-6 = 0.09
        close(p.cost_usd, 0.09);
    }

    #[test]
    fn gemini_batch_does_not_stack_on_cache_hits() {
        let pro = model("gemini-2.5-pro");
        // 10,000 uncached + 90,000 cached, 2,000 out, on Sluice's batch tier.
        let p = price(&pro, Tier::Batch, &gemini_usage(10_000, 90_000, 2_000));
        // Batch: 0.625 in, cached 0.125 (= standard, no 50% on cache hits [P6b]), 5 out.
        // cost = 10000×0.625e-6 + 90000×0.125e-6 + 2000×5e-6 = 0.00625 + 0.01125 + 0.01
        close(p.cost_usd, 0.0275);
        // baseline = 100000×1.25e-6 + 2000×10e-6 = 0.125 + 0.02 = 0.145
        close(p.baseline_usd, 0.145);
        // The same answer at standard rates, cache hits included:
        // 10000×1.25e-6 + 90000×0.125e-6 + 2000×10e-6 = 0.0125 + 0.01125 + 0.02 = 0.04375.
        // batch = 0.04375 − 0.0275 = 0.01625 (= 10000×0.625e-6 + 2000×5e-6): nothing on the
        // cached tokens, which cost 0.125 either way.
        close(p.savings.batch, 0.01625);
        // prompt_cache = 0.145 − 0.04375 = 0.10125 (= 90000 × (1.25 − 0.125)e-6)
        close(p.savings.prompt_cache, 0.10125);
        assert_split_sums(&p);
        // Stacking the levers would have credited batch with 100000×0.625e-6 + 0.01 = 0.0725.
        assert!(p.savings.batch < 0.0725);

        // Long context in batch: 100,000 + 150,000 cached = 250,000 > 200k, 1,000 out.
        let p = price(&pro, Tier::Batch, &gemini_usage(100_000, 150_000, 1_000));
        // Batch > 200k: 1.25 in, cached 0.25, 7.50 out.
        // cost = 100000×1.25e-6 + 150000×0.25e-6 + 1000×7.5e-6 = 0.125 + 0.0375 + 0.0075 = 0.17
        close(p.cost_usd, 0.17);
        // baseline = 250000×2.5e-6 + 1000×15e-6 = 0.625 + 0.015 = 0.64
        close(p.baseline_usd, 0.64);
        // standard with cache = 100000×2.5e-6 + 0.0375 + 0.015 = 0.3025; batch = 0.3025 − 0.17
        close(p.savings.batch, 0.1325);
        // prompt_cache = 0.64 − 0.3025 = 0.3375 (= 150000 × (2.5 − 0.25)e-6)
        close(p.savings.prompt_cache, 0.3375);
        assert_split_sums(&p);
    }

    #[test]
    fn gemini_batch_boundary_on_3_1_pro() {
        let pro = model("gemini-3.1-pro-preview");
        // Exactly 200,000 prompt tokens, 10,000 out: batch ≤ 200k 1.00 / 6.00.
        let p = price(&pro, Tier::Batch, &gemini_usage(200_000, 0, 10_000));
        // cost = 200000×1e-6 + 10000×6e-6 = 0.2 + 0.06 = 0.26
        close(p.cost_usd, 0.26);
        // baseline = 200000×2e-6 + 10000×12e-6 = 0.4 + 0.12 = 0.52; all of it batch's.
        close(p.baseline_usd, 0.52);
        close(p.savings.batch, 0.26);
        close(p.savings.prompt_cache, 0.0);
        // 200,001: batch > 200k 2.00 / 9.00, baseline at 4.00 / 18.00.
        let p = price(&pro, Tier::Batch, &gemini_usage(200_001, 0, 10_000));
        // cost = 200001×2e-6 + 10000×9e-6 = 0.400002 + 0.09 = 0.490002
        close(p.cost_usd, 0.490002);
        // baseline = 200001×4e-6 + 10000×18e-6 = 0.800004 + 0.18 = 0.980004
        close(p.baseline_usd, 0.980004);
        close(p.savings.batch, 0.490002);
        assert_split_sums(&p);
    }

    #[test]
    fn gemini_flex_is_priced_at_the_served_tier() {
        let flash = model("gemini-2.5-flash");
        // Sluice's flex tier, Google reports `flex`: 0.15 in, cached 0.03 (unchanged), 1.25 out.
        let p = price(&flash, Tier::Flex, &served(MIXED, "flex"));
        // cost = 1000×0.15e-6 + 2000×0.03e-6 + 500×1.25e-6 = 0.00015 + 0.00006 + 0.000625
        close(p.cost_usd, 0.000835);
        // baseline = 3000×0.30e-6 + 500×2.5e-6 = 0.0009 + 0.00125 = 0.00215
        close(p.baseline_usd, 0.00215);
        // standard with cache = 1000×0.30e-6 + 0.00006 + 0.00125 = 0.00161;
        // flex = 0.00161 − 0.000835 = 0.000775 (= 1000×0.15e-6 + 500×1.25e-6)
        close(p.savings.flex, 0.000775);
        // prompt_cache = 0.00215 − 0.00161 = 0.00054 (= 2000 × (0.30 − 0.03)e-6)
        close(p.savings.prompt_cache, 0.00054);
        close(p.savings.batch, 0.0);
        assert_split_sums(&p);
        // Flex served at `standard` (Google never upgrades Flex, but should it): standard rates.
        let p = price(&flash, Tier::Flex, &served(MIXED, "standard"));
        // cost = 1000×0.30e-6 + 2000×0.03e-6 + 500×2.5e-6 = 0.00161
        close(p.cost_usd, 0.00161);
        close(p.savings.flex, 0.0);
        // A caller's own `service_tier: flex` on 2.5 Pro: flex rates, baseline = cost.
        let pro = model("gemini-2.5-pro");
        let p = price(&pro, Tier::Interactive, &served(MIXED, "flex"));
        // cost = 1000×0.625e-6 + 2000×0.125e-6 + 500×5e-6 = 0.000625 + 0.00025 + 0.0025
        close(p.cost_usd, 0.003375);
        close(p.baseline_usd, 0.003375);
        assert_eq!(p.savings, NO_SAVINGS);
        // … and over 200k: flex > 200k 1.25 / 7.50. 210000×1.25e-6 + 1000×7.5e-6 = 0.27
        let long = served(gemini_usage(210_000, 0, 1_000), "flex");
        close(price(&pro, Tier::Interactive, &long).cost_usd, 0.27);
    }

    #[test]
    fn gemini_priority_is_priced_at_the_served_tier() {
        let pro = model("gemini-2.5-pro");
        // Priority (1.8×): 2.25 in, 0.225 cached, 18 out.
        let p = price(&pro, Tier::Interactive, &served(MIXED, "priority"));
        // cost = 1000×2.25e-6 + 2000×0.225e-6 + 500×18e-6 = 0.00225 + 0.00045 + 0.009
        close(p.cost_usd, 0.0117);
        close(p.baseline_usd, 0.0117);
        assert_eq!(p.savings, NO_SAVINGS);
        assert_eq!(p.unrated_tier, None);
        // Over 200k: 4.50 in, 27 out. 200001×4.5e-6 + 100×27e-6 = 0.9000045 + 0.0027
        let long = served(gemini_usage(200_001, 0, 100), "priority");
        close(price(&pro, Tier::Interactive, &long).cost_usd, 0.9027045);
        // Downgraded to Standard (`x-gemini-service-tier: standard`): billed at Standard.
        let p = price(&pro, Tier::Interactive, &served(MIXED, "standard"));
        // 1000×1.25e-6 + 2000×0.125e-6 + 500×10e-6 = 0.00125 + 0.00025 + 0.005
        close(p.cost_usd, 0.0065);
        // 3.1 Pro Preview priority is UNCONFIRMED: 2.0× ("75-100% more"), 4 / 0.40 / 24.
        let p = price(
            &model("gemini-3.1-pro-preview"),
            Tier::Interactive,
            &served(MIXED, "priority"),
        );
        // 1000×4e-6 + 2000×0.4e-6 + 500×24e-6 = 0.004 + 0.0008 + 0.012
        close(p.cost_usd, 0.0168);
        assert_eq!(p.unrated_tier, None);
    }

    #[test]
    fn gemini_rows_match_the_tier_table() {
        // (model, tier, input, cached, output) per 1M, ≤ 200k, from prices.md.
        for (name, served_tier, input, cached, output) in [
            ("gemini-2.5-pro", ServedTier::Standard, 1.25, 0.125, 10.0),
            ("gemini-2.5-pro", ServedTier::Batch, 0.625, 0.125, 5.0),
            ("gemini-2.5-pro", ServedTier::Flex, 0.625, 0.125, 5.0),
            ("gemini-2.5-pro", ServedTier::Priority, 2.25, 0.225, 18.0),
            ("gemini-2.5-flash", ServedTier::Standard, 0.30, 0.03, 2.5),
            ("gemini-2.5-flash", ServedTier::Batch, 0.15, 0.03, 1.25),
            ("gemini-2.5-flash", ServedTier::Flex, 0.15, 0.03, 1.25),
            ("gemini-2.5-flash", ServedTier::Priority, 0.54, 0.054, 4.5),
            (
                "gemini-3.1-pro-preview",
                ServedTier::Standard,
                2.0,
                0.20,
                12.0,
            ),
            ("gemini-3.1-pro-preview", ServedTier::Batch, 1.0, 0.20, 6.0),
            (
                "gemini-3-flash-preview",
                ServedTier::Standard,
                0.50,
                0.05,
                3.0,
            ),
            ("gemini-3-flash-preview", ServedTier::Batch, 0.25, 0.05, 1.5),
            ("gemini-3.8-flash", ServedTier::Standard, 1.50, 0.15, 7.5),
        ] {
            let (r, rated) = model(name).served_rates(served_tier);
            assert!(rated, "{name} {served_tier}");
            for (got, want) in [
                (r.input, input),
                (r.cached_input, cached),
                (r.output, output),
            ] {
                assert!(
                    (got * 1e6 - want).abs() < 1e-9,
                    "{name} {served_tier}: {got:e} vs {want}"
                );
            }
        }
        // > 200k rows.
        for (name, served_tier, input, cached, output) in [
            ("gemini-2.5-pro", ServedTier::Standard, 2.50, 0.25, 15.0),
            ("gemini-2.5-pro", ServedTier::Batch, 1.25, 0.25, 7.5),
            ("gemini-2.5-pro", ServedTier::Flex, 1.25, 0.25, 7.5),
            ("gemini-2.5-pro", ServedTier::Priority, 4.50, 0.45, 27.0),
            (
                "gemini-3.1-pro-preview",
                ServedTier::Standard,
                4.0,
                0.40,
                18.0,
            ),
            ("gemini-3.1-pro-preview", ServedTier::Batch, 2.0, 0.40, 9.0),
        ] {
            let (r, _) = model(name).for_prompt(200_001).served_rates(served_tier);
            for (got, want) in [
                (r.input, input),
                (r.cached_input, cached),
                (r.output, output),
            ] {
                assert!(
                    (got * 1e6 - want).abs() < 1e-9,
                    "{name} {served_tier} > 200k: {got:e} vs {want}"
                );
            }
        }
        for (name, p) in PriceTable::builtin().iter() {
            if p.provider == Provider::Gemini {
                // Batch and flex cache reads never below the standard cached rate (no stacking).
                assert_eq!(p.rates(Tier::Batch).cached_input, p.cached_input, "{name}");
                assert_eq!(p.rates(Tier::Flex).cached_input, p.cached_input, "{name}");
                assert!(p.has_priority(), "{name}");
                assert!(p.has_flex(), "{name}");
            }
        }
    }

    #[test]
    fn gemini_fallbacks_never_stack_or_drop_a_long_tier_rate() {
        // A Gemini row listing no batch / flex cached rate: the standard cached rate.
        let bare = ModelPrice {
            batch_cached_input: None,
            flex_cached_input: None,
            ..model("gemini-2.5-pro")
        };
        close(bare.rates(Tier::Batch).cached_input, 0.125e-6);
        close(bare.rates(Tier::Flex).cached_input, 0.125e-6);
        // A long tier without priority rates: the short priority rates × long/short (2.0).
        let pro = model("gemini-2.5-pro");
        let partial = ModelPrice {
            long_context: pro.long_context.map(|l| LongContext {
                priority_input: None,
                priority_output: None,
                priority_cached_input: None,
                ..l
            }),
            ..pro
        };
        let (r, rated) = partial
            .for_prompt(250_000)
            .served_rates(ServedTier::Priority);
        assert!(rated);
        // 2.25 × 2 = 4.50, 0.225 × 2 = 0.45, 18 × 1.5 = 27
        close(r.input, 4.5e-6);
        close(r.cached_input, 0.45e-6);
        close(r.output, 27e-6);
        assert_eq!(pro.for_prompt(200_000), pro);
        assert_eq!(pro.for_prompt(200_001).long_context, None);
    }
}
