//! The built-in price rows.
//!
//! Every row of `shared/reference/prices.md` whose API id is known, values copied from the LiteLLM
//! 1.110.2 extract in that file (USD per token; MIT License, Copyright (c) 2023 Berri AI), flex
//! and priority fields included where LiteLLM lists them. Each row names its source tags from
//! prices.md (`[P1]` LiteLLM, `[P2]` Anthropic pricing page, `[P3]` OpenAI caching guide, `[P4]`
//! third-party copies of OpenAI's page, `[P5]` Anthropic batch guide, `[P6]` Gemini batch guide,
//! `[P8]` Gemini pricing page, `[P9]` OpenAI Fast mode page, `[P10]` OpenAI Priority processing
//! page, `[P14]` secondary copies of OpenAI's pricing page).
//!
//! Priority (Fast) rates are those of prices.md's "OpenAI Fast (formerly Priority)" table, which
//! equal LiteLLM's `*_priority` keys for the older rows, and the Gemini Priority rows [P8]. No row
//! lists ultrafast rates (prices.md has only a secondary 6× figure): an ultrafast answer is billed
//! at standard rates unless a LiteLLM file with `*_ultrafast` keys is loaded. `gpt-5.5` and
//! `gpt-5.6-sol` come from the Fast table alone: their standard rates are secondary and they list no
//! batch rates (the 50% fallback applies).
//!
//! Gemini rows follow prices.md's "Google Gemini tiers" table ([P8] page copy fetched 2026-08-04,
//! [P8b] scrape dated 2026-03-30, [P13] secondary quotes last updated 2026-10-01): standard,
//! batch, flex and priority rates, batch and flex cache reads at the standard cached rate (no
//! stacking [P6b][P12]), and the > 200k-prompt tier of 2.5 Pro and 3.1 Pro Preview
//! ([`super::LongContext`]). Where the reference marks a rate UNCONFIRMED the row takes the figure
//! that never under-reports cost (each case is commented on the row). Not modelled: the audio
//! input rates of the Flash models (`Usage` has no modality split, so audio input is billed at
//! the text rate — an under-report for audio prompts), and explicit-cache storage (per
//! token-hour, not part of an answer's usage).
//!
//! Left out: "Claude Opus 4.1" and "Claude Haiku 3.5" (API ids not verified in prices.md). None of
//! the sources states a "prices as of" date: re-check before billing.

use super::{GEMINI_LONG_CONTEXT_ABOVE, LongContext, Mode, ModelPrice};
use crate::types::Provider;

/// A built-in price row and where its figures come from.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRow {
    pub name: &'static str,
    /// Source tags as cited in `shared/reference/prices.md`.
    pub source: &'static str,
    pub price: ModelPrice,
}

/// A row with nothing listed beyond the standard rates, for struct-update syntax below.
const UNLISTED: ModelPrice = ModelPrice {
    provider: Provider::OpenAi,
    mode: Mode::Chat,
    input: 0.0,
    cached_input: 0.0,
    cache_write_5m: None,
    cache_write_1h: None,
    output: 0.0,
    batch_input: None,
    batch_output: None,
    batch_cached_input: None,
    batch_cache_write: None,
    flex_input: None,
    flex_output: None,
    flex_cached_input: None,
    priority_input: None,
    priority_output: None,
    priority_cached_input: None,
    priority_cache_write: None,
    ultrafast_input: None,
    ultrafast_output: None,
    ultrafast_cached_input: None,
    ultrafast_cache_write: None,
    long_context: None,
};

/// `price` with priority (Fast) input, cached-input and output rates.
const fn priority(price: ModelPrice, input: f64, cached: f64, output: f64) -> ModelPrice {
    ModelPrice {
        priority_input: Some(input),
        priority_cached_input: Some(cached),
        priority_output: Some(output),
        ..price
    }
}

/// OpenAI chat model with standard, cached and batch rates only (no write fee before GPT-5.6 [P3]).
const fn openai(input: f64, cached: f64, output: f64, batch_in: f64, batch_out: f64) -> ModelPrice {
    ModelPrice {
        provider: Provider::OpenAi,
        input,
        cached_input: cached,
        output,
        batch_input: Some(batch_in),
        batch_output: Some(batch_out),
        ..UNLISTED
    }
}

/// Anthropic model: standard, cache (5m / 1h write, read) and batch rates, in LiteLLM's order.
#[allow(clippy::too_many_arguments)]
const fn anthropic(
    input: f64,
    cached: f64,
    write_5m: f64,
    write_1h: f64,
    output: f64,
    batch_in: f64,
    batch_out: f64,
    batch_cached: f64,
    batch_write: f64,
) -> ModelPrice {
    ModelPrice {
        provider: Provider::Anthropic,
        input,
        cached_input: cached,
        cache_write_5m: Some(write_5m),
        cache_write_1h: Some(write_1h),
        output,
        batch_input: Some(batch_in),
        batch_output: Some(batch_out),
        batch_cached_input: Some(batch_cached),
        batch_cache_write: Some(batch_write),
        ..UNLISTED
    }
}

const OPUS_4: ModelPrice = anthropic(
    5e-06, 5e-07, 6.25e-06, 1e-05, 2.5e-05, 2.5e-06, 1.25e-05, 2.5e-07, 3.125e-06,
);
const SONNET_4: ModelPrice = anthropic(
    3e-06, 3e-07, 3.75e-06, 6e-06, 1.5e-05, 1.5e-06, 7.5e-06, 1.5e-07, 1.875e-06,
);
const ANTHROPIC_SOURCE: &str = "[P2] official table; batch = 50% [P5]; LiteLLM 1.110.2 [P1] agrees";
const OPENAI_P1_P4: &str =
    "[P1] LiteLLM 1.110.2 (corroborated [P4]); priority = [P10] Priority processing page = [P1]";
const OPENAI_P1: &str = "[P1] LiteLLM 1.110.2; priority = prices.md Fast table ([P9]/[P10]) = [P1]";
const GEMINI_SOURCE: &str = "[P8] official page (copy fetched 2026-08-04), Standard / Batch / Flex / \
     Priority incl. > 200k; [P1] LiteLLM 1.110.2 (key gemini/...) agrees; batch cache rule [P6][P6b]";

/// A Gemini row: standard, batch and flex rates, batch and flex cache reads at the standard cached
/// rate (Google's discounts do not stack on cache hits [P6b][P12]), and priority rates.
#[allow(clippy::too_many_arguments)]
const fn gemini(
    input: f64,
    cached: f64,
    output: f64,
    batch_in: f64,
    batch_out: f64,
    flex_in: f64,
    flex_out: f64,
    priority_in: f64,
    priority_cached: f64,
    priority_out: f64,
) -> ModelPrice {
    ModelPrice {
        provider: Provider::Gemini,
        input,
        cached_input: cached,
        output,
        batch_input: Some(batch_in),
        batch_output: Some(batch_out),
        batch_cached_input: Some(cached),
        flex_input: Some(flex_in),
        flex_output: Some(flex_out),
        flex_cached_input: Some(cached),
        priority_input: Some(priority_in),
        priority_output: Some(priority_out),
        priority_cached_input: Some(priority_cached),
        ..UNLISTED
    }
}

/// The long-context (> 200k prompt) tier of a Gemini row, in the same order as [`gemini`].
#[allow(clippy::too_many_arguments)]
const fn gemini_long(
    input: f64,
    cached: f64,
    output: f64,
    batch_in: f64,
    batch_out: f64,
    flex_in: f64,
    flex_out: f64,
    priority_in: f64,
    priority_cached: f64,
    priority_out: f64,
) -> Option<LongContext> {
    Some(LongContext {
        above_tokens: GEMINI_LONG_CONTEXT_ABOVE,
        input,
        cached_input: cached,
        output,
        batch_input: Some(batch_in),
        batch_output: Some(batch_out),
        batch_cached_input: Some(cached),
        flex_input: Some(flex_in),
        flex_output: Some(flex_out),
        flex_cached_input: Some(cached),
        priority_input: Some(priority_in),
        priority_output: Some(priority_out),
        priority_cached_input: Some(priority_cached),
    })
}

pub const BUILTIN: &[BuiltinRow] = &[
    BuiltinRow {
        name: "gpt-4o",
        source: OPENAI_P1_P4,
        price: priority(
            openai(2.5e-06, 1.25e-06, 1e-05, 1.25e-06, 5e-06),
            4.25e-06,
            2.125e-06,
            1.7e-05,
        ),
    },
    BuiltinRow {
        name: "gpt-4o-mini",
        source: OPENAI_P1_P4,
        price: priority(
            openai(1.5e-07, 7.5e-08, 6e-07, 7.5e-08, 3e-07),
            2.5e-07,
            1.25e-07,
            1e-06,
        ),
    },
    BuiltinRow {
        name: "gpt-4.1",
        source: OPENAI_P1_P4,
        price: priority(
            openai(2e-06, 5e-07, 8e-06, 1e-06, 4e-06),
            3.5e-06,
            8.75e-07,
            1.4e-05,
        ),
    },
    BuiltinRow {
        name: "gpt-4.1-mini",
        source: OPENAI_P1_P4,
        price: priority(
            openai(4e-07, 1e-07, 1.6e-06, 2e-07, 8e-07),
            7e-07,
            1.75e-07,
            2.8e-06,
        ),
    },
    BuiltinRow {
        name: "gpt-5",
        source: OPENAI_P1,
        price: priority(
            ModelPrice {
                batch_cached_input: Some(6.25e-08),
                flex_input: Some(6.25e-07),
                flex_output: Some(5e-06),
                flex_cached_input: Some(6.25e-08),
                ..openai(1.25e-06, 1.25e-07, 1e-05, 6.25e-07, 5e-06)
            },
            2.5e-06,
            2.5e-07,
            2e-05,
        ),
    },
    BuiltinRow {
        name: "gpt-5-mini",
        source: OPENAI_P1,
        price: priority(
            ModelPrice {
                batch_cached_input: Some(1.25e-08),
                flex_input: Some(1.25e-07),
                flex_output: Some(1e-06),
                flex_cached_input: Some(1.25e-08),
                ..openai(2.5e-07, 2.5e-08, 2e-06, 1.25e-07, 1e-06)
            },
            4.5e-07,
            4.5e-08,
            3.6e-06,
        ),
    },
    BuiltinRow {
        name: "o3",
        source: OPENAI_P1,
        price: priority(
            ModelPrice {
                flex_input: Some(1e-06),
                flex_output: Some(4e-06),
                flex_cached_input: Some(2.5e-07),
                ..openai(2e-06, 5e-07, 8e-06, 1e-06, 4e-06)
            },
            3.5e-06,
            8.75e-07,
            1.4e-05,
        ),
    },
    BuiltinRow {
        name: "o4-mini",
        source: OPENAI_P1,
        price: priority(
            ModelPrice {
                flex_input: Some(5.5e-07),
                flex_output: Some(2.2e-06),
                flex_cached_input: Some(1.38e-07),
                ..openai(1.1e-06, 2.75e-07, 4.4e-06, 5.5e-07, 2.2e-06)
            },
            2e-06,
            5e-07,
            8e-06,
        ),
    },
    BuiltinRow {
        name: "gpt-5.5",
        source: "Fast = [P9]; standard SECONDARY [P14]; batch not listed (50% fallback)",
        price: priority(
            ModelPrice {
                provider: Provider::OpenAi,
                input: 5e-06,
                cached_input: 5e-07,
                output: 3e-05,
                ..UNLISTED
            },
            1.25e-05,
            1.25e-06,
            7.5e-05,
        ),
    },
    BuiltinRow {
        name: "gpt-5.6-sol",
        source: "standard SECONDARY [P14] (a promotional price, re-check); cache write 1.25x input \
                 [P3]; Fast = the later copy of [P9], short context (an earlier copy: $10 / $1 / $60); \
                 batch not listed (50% fallback)",
        price: priority(
            ModelPrice {
                provider: Provider::OpenAi,
                input: 5e-06,
                cached_input: 5e-07,
                cache_write_5m: Some(6.25e-06),
                output: 3e-05,
                ..UNLISTED
            },
            8e-06,
            8e-07,
            4e-05,
        ),
    },
    BuiltinRow {
        name: "claude-opus-4-6",
        source: ANTHROPIC_SOURCE,
        price: OPUS_4,
    },
    BuiltinRow {
        name: "claude-opus-4-5",
        source: ANTHROPIC_SOURCE,
        price: OPUS_4,
    },
    BuiltinRow {
        name: "claude-sonnet-4-6",
        source: ANTHROPIC_SOURCE,
        price: SONNET_4,
    },
    BuiltinRow {
        name: "claude-sonnet-4-5",
        source: ANTHROPIC_SOURCE,
        price: SONNET_4,
    },
    BuiltinRow {
        name: "claude-haiku-4-5",
        source: ANTHROPIC_SOURCE,
        price: anthropic(
            1e-06, 1e-07, 1.25e-06, 2e-06, 5e-06, 5e-07, 2.5e-06, 5e-08, 6.25e-07,
        ),
    },
    // Gemini: implicit caching has no write fee; explicit-cache storage (per token-hour) is billed
    // separately by Google and is not modelled (UNCONFIRMED rate, see prices.md).
    // gemini-2.5-pro, ≤ 200k / > 200k prompt: standard 1.25 / 2.50 in, 0.125 / 0.25 cached,
    // 10 / 15 out; batch = flex 0.625 / 1.25 in, 5 / 7.50 out, cached as standard; priority
    // (1.8×) 2.25 / 4.50 in, 0.225 / 0.45 cached, 18 / 27 out [P8].
    BuiltinRow {
        name: "gemini-2.5-pro",
        source: GEMINI_SOURCE,
        price: ModelPrice {
            long_context: gemini_long(
                2.5e-06, 2.5e-07, 1.5e-05, 1.25e-06, 7.5e-06, 1.25e-06, 7.5e-06, 4.5e-06, 4.5e-07,
                2.7e-05,
            ),
            ..gemini(
                1.25e-06, 1.25e-07, 1e-05, 6.25e-07, 5e-06, 6.25e-07, 5e-06, 2.25e-06, 2.25e-07,
                1.8e-05,
            )
        },
    },
    // gemini-2.5-flash, one rate at any prompt size (text/image/video; audio 1.00 in / 0.10
    // cached is not modelled): 0.30 / 0.03 / 2.50; batch = flex 0.15 / 1.25; priority 0.54 /
    // 0.054 / 4.50 [P8].
    BuiltinRow {
        name: "gemini-2.5-flash",
        source: GEMINI_SOURCE,
        price: gemini(
            3e-07, 3e-08, 2.5e-06, 1.5e-07, 1.25e-06, 1.5e-07, 1.25e-06, 5.4e-07, 5.4e-08, 4.5e-06,
        ),
    },
    // gemini-3.1-pro-preview, ≤ 200k / > 200k: standard 2 / 4 in, 0.20 / 0.40 cached, 12 / 18
    // out; batch 1 / 2 in, 6 / 9 out, cached as standard [P8b]. Flex is supported [P11] but its
    // rates are UNCONFIRMED: 50% of standard on input/output per the Flex guide ("priced at 50%
    // of the standard API" [P11]), cache reads at the standard cached rate (never below it).
    // Priority is supported [P11], rates UNCONFIRMED: the Priority guide says "75-100% more", so
    // 2.0× standard on every rate (4 / 8 in, 0.40 / 0.80 cached, 24 / 36 out) — the top of the
    // range, never under-reporting (1.8× would give 3.60 / 7.20, 21.60 / 32.40).
    BuiltinRow {
        name: "gemini-3.1-pro-preview",
        source: "[P8b] official page (scrape dated 2026-03-30), Standard and Batch incl. > 200k; \
                 re-confirmed by SECONDARY [P13] (2026-10); flex 0.5× [P11] and priority 2.0× \
                 (\"75-100% more\" [P11]) UNCONFIRMED; batch cache rule [P6b]",
        price: ModelPrice {
            long_context: gemini_long(
                4e-06, 4e-07, 1.8e-05, 2e-06, 9e-06, 2e-06, 9e-06, 8e-06, 8e-07, 3.6e-05,
            ),
            ..gemini(
                2e-06, 2e-07, 1.2e-05, 1e-06, 6e-06, 1e-06, 6e-06, 4e-06, 4e-07, 2.4e-05,
            )
        },
    },
    // gemini-3-flash-preview, one rate (text/image/video; audio 1.00 / 0.10 not modelled):
    // 0.50 / 0.05 / 3.00; batch 0.25 / 1.50, batch cached 0.05 ("Same as Standard") [P8b].
    // Flex (supported [P11]) UNCONFIRMED: 0.5× → 0.25 / 1.50, cached 0.05. Priority (supported
    // [P11]) UNCONFIRMED: 2.0× ("75-100% more", the top) → 1.00 / 0.10 / 6.00.
    BuiltinRow {
        name: "gemini-3-flash-preview",
        source: "[P8b] official page (scrape dated 2026-03-30), Standard and Batch; flex 0.5× \
                 [P11] and priority 2.0× (\"75-100% more\" [P11]) UNCONFIRMED",
        price: gemini(
            5e-07, 5e-08, 3e-06, 2.5e-07, 1.5e-06, 2.5e-07, 1.5e-06, 1e-06, 1e-07, 6e-06,
        ),
    },
    // gemini-3.8-flash: SECONDARY quotes of the official page [P13] give introductory rates
    // "through December 31, 2026" (0.75 / 0.075 / 3.75; batch = flex 0.375 / 1.875; priority
    // 1.35 / 6.75) and 1.50 / 0.15 / 7.50 "starting January 1, 2027". A built-in row has no
    // date to pick by, so it carries the 2027 rates, the higher ones: it over-reports during the
    // introductory period and never under-reports (UNCONFIRMED how long the introductory rate
    // lasts in practice). 2027 batch and flex UNCONFIRMED: 50% → 0.75 / 3.75, cache reads at the
    // standard 0.15 (no stacking). 2027 priority UNCONFIRMED: 2.0× → 3.00 / 0.30 / 15.00 (the
    // introductory 1.35 is 1.8×). Load a LiteLLM file to bill the introductory rates instead.
    BuiltinRow {
        name: "gemini-3.8-flash",
        source: "SECONDARY [P13] quotes of the official page (last updated 2026-10-01): rates \
                 \"starting January 1, 2027\"; batch / flex 0.5× and priority 2.0× UNCONFIRMED",
        price: gemini(
            1.5e-06, 1.5e-07, 7.5e-06, 7.5e-07, 3.75e-06, 7.5e-07, 3.75e-06, 3e-06, 3e-07, 1.5e-05,
        ),
    },
    // The two embedding models are NOT in prices.md: the figures are OpenAI's list price
    // (text-embedding-3-small $0.02 / 1M input, Batch API $0.01 / 1M; text-embedding-3-large
    // $0.13 / 1M, Batch API $0.065 / 1M). Embeddings have no output tokens and no prompt cache.
    BuiltinRow {
        name: "text-embedding-3-small",
        source: "not in prices.md: OpenAI list price (platform.openai.com/docs/pricing)",
        price: ModelPrice {
            mode: Mode::Embedding,
            ..openai(2e-08, 2e-08, 0.0, 1e-08, 0.0)
        },
    },
    BuiltinRow {
        name: "text-embedding-3-large",
        source: "not in prices.md: OpenAI list price (platform.openai.com/docs/pricing)",
        price: ModelPrice {
            mode: Mode::Embedding,
            ..openai(1.3e-07, 1.3e-07, 0.0, 6.5e-08, 0.0)
        },
    },
];
