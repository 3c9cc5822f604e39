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
//! Left out: "Claude Opus 4.1" and "Claude Haiku 3.5" (API ids not verified in prices.md), and the
//! Gemini 2.5 Pro > 200k-prompt tier (a single row per model here, so prompts over 200k tokens are
//! priced at the ≤ 200k rates). None of the sources states a "prices as of" date: re-check before
//! billing.

use super::{Mode, ModelPrice};
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
const GEMINI_SOURCE: &str =
    "[P1] LiteLLM 1.110.2 (key gemini/...); batch cache rule [P6]; flex and priority = [P8]";

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
    BuiltinRow {
        name: "gemini-2.5-pro",
        source: GEMINI_SOURCE,
        price: ModelPrice {
            provider: Provider::Gemini,
            input: 1.25e-06,
            cached_input: 1.25e-07,
            output: 1e-05,
            batch_input: Some(6.25e-07),
            batch_output: Some(5e-06),
            batch_cached_input: Some(1.25e-07),
            flex_input: Some(6.25e-07),
            flex_output: Some(5e-06),
            flex_cached_input: Some(1.25e-07),
            priority_input: Some(2.25e-06),
            priority_output: Some(1.8e-05),
            priority_cached_input: Some(2.25e-07),
            ..UNLISTED
        },
    },
    BuiltinRow {
        name: "gemini-2.5-flash",
        source: GEMINI_SOURCE,
        price: ModelPrice {
            provider: Provider::Gemini,
            input: 3e-07,
            cached_input: 3e-08,
            output: 2.5e-06,
            batch_input: Some(1.5e-07),
            batch_output: Some(1.25e-06),
            batch_cached_input: Some(3e-08),
            flex_input: Some(1.5e-07),
            flex_output: Some(1.25e-06),
            flex_cached_input: Some(3e-08),
            priority_input: Some(5.4e-07),
            priority_output: Some(4.5e-06),
            priority_cached_input: Some(5.4e-08),
            ..UNLISTED
        },
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
