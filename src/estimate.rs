//! `sluice estimate`: what a workload costs on each tier, with and without the prompt cache,
//! which tier an SLA allows, and where a reserved GPU would break even.
//!
//! The workload is `N` requests, each sending a shared prefix of `P` tokens (a system prompt), `I`
//! unique input tokens, and receiving `O` output tokens. Every scenario is priced by
//! [`crate::pricing::price`] on the whole workload's token counts, so the estimate and the gateway's
//! per-request accounting share one set of rates and fallback rules:
//!
//! | scenario | tier | input |
//! |---|---|---|
//! | `sync` | interactive | N×(P+I) uncached |
//! | `sync+cache` | interactive | one 5-minute cache write of P, N−1 cache reads of P, N×I uncached |
//! | `batch` | batch | N×(P+I) uncached at batch rates |
//! | `batch+cache` | batch | one 1-hour cache write of P, N−1 reads, N×I, at batch rates |
//! | `flex`, `flex+cache` | flex | as sync / sync+cache at flex rates (OpenAI models with flex prices) |
//!
//! A cache write costs the model's write rate where it has one (Anthropic) and the input rate
//! otherwise (OpenAI before GPT-5.6, Gemini implicit caching). Batches use the 1-hour cache because
//! a batch's requests are processed far apart. Below [`MIN_CACHEABLE_PREFIX_TOKENS`] nothing is
//! cached, so the `+cache` scenarios equal their uncached ones. The model is the best case: one
//! write, then every request hits (in reality parallel first requests each pay the write).

mod render;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::pricing::{ModelPrice, PriceTable, PricingError, price};
use crate::triage::{BATCH_TURNAROUND_PRIOR, INTERACTIVE_BELOW};
use crate::types::{Provider, Tier, Usage};

/// Below this many prefix tokens no provider caches the prefix. 1024 is OpenAI's documented
/// threshold and the lowest of Anthropic's (which varies by model and doc snapshot up to 4096).
pub const MIN_CACHEABLE_PREFIX_TOKENS: u64 = 1024;

/// The shortest prefix `model` caches. Gemini's implicit cache starts at 2,048 tokens on the
/// 2.5 models and 4,096 on the 3.x ones (provider-apis.md 5.10); an older doc copy said 1,024
/// for some, so the larger figure is used: an estimate never promises a cache hit that the
/// provider may not give. Other providers: [`MIN_CACHEABLE_PREFIX_TOKENS`].
pub fn min_cacheable_prefix(provider: Provider, model: &str) -> u64 {
    match provider {
        Provider::Gemini | Provider::Vertex if model.starts_with("gemini-2.5") => 2048,
        Provider::Gemini | Provider::Vertex => 4096,
        Provider::OpenAi | Provider::Anthropic => MIN_CACHEABLE_PREFIX_TOKENS,
    }
}

/// Estimate what a workload costs synchronously, in batches and on flex, with and without the
/// prompt cache; the tier an SLA allows; the break-even against a reserved GPU.
#[derive(clap::Args, Debug, Clone)]
pub struct EstimateArgs {
    /// Number of requests in the workload.
    #[arg(long, value_name = "N", required_unless_present = "list_models",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Tokens of the prefix every request shares (e.g. a system prompt); cacheable.
    #[arg(long, value_name = "N", required_unless_present = "list_models")]
    pub prefix_tokens: Option<u64>,
    /// Unique input tokens per request.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub input_tokens: u64,
    /// Output tokens per request.
    #[arg(long, value_name = "N", required_unless_present = "list_models")]
    pub output_tokens: Option<u64>,
    /// Model name as in the price table (`--list-models`); a date snapshot suffix is accepted.
    #[arg(long, value_name = "NAME", required_unless_present = "list_models")]
    pub model: Option<String>,
    /// The latest acceptable answer time (e.g. 30s, 15m, 24h): shows the tier it allows.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub sla: Option<Duration>,
    /// Hourly price of a reserved GPU, for the break-even.
    #[arg(long, value_name = "X", requires = "gpu_tokens_per_second", value_parser = positive_f64)]
    pub gpu_hourly_usd: Option<f64>,
    /// Tokens per second that GPU processes (input and output together).
    #[arg(long, value_name = "N", requires = "gpu_hourly_usd", value_parser = positive_f64)]
    pub gpu_tokens_per_second: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List the priced models and their rates, then exit.
    #[arg(long)]
    pub list_models: bool,
    /// A LiteLLM `model_prices_and_context_window.json` whose entries override the built-in ones.
    #[arg(long, value_name = "FILE", env = "SLUICE_PRICES")]
    pub prices: Option<PathBuf>,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive number".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(
        "unknown model {0:?}: not in the price table (`sluice estimate --list-models` lists the \
         known models; --prices FILE adds a LiteLLM price file)"
    )]
    UnknownModel(String),
    #[error("missing argument {0}")]
    MissingArgument(&'static str),
    #[error("invalid {flag}: {reason}")]
    InvalidArgument {
        flag: &'static str,
        reason: &'static str,
    },
    #[error("cannot write the estimate: {0}")]
    Write(#[from] std::io::Error),
}

/// A reserved GPU to compare against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpu {
    pub hourly_usd: f64,
    pub tokens_per_second: f64,
}

/// What is being estimated: `requests` × (`prefix_tokens` + `input_tokens` in,
/// `output_tokens` out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub requests: u64,
    pub prefix_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub sla: Option<Duration>,
    pub gpu: Option<Gpu>,
}

impl Workload {
    /// Whether the shared prefix is long enough to be cached (`min`: the model's minimum).
    pub fn prefix_cacheable(&self, min: u64) -> bool {
        self.prefix_tokens >= min
    }

    /// All tokens the workload moves, input and output.
    pub fn total_tokens(&self) -> u64 {
        self.requests.saturating_mul(self.tokens_per_request())
    }

    fn tokens_per_request(&self) -> u64 {
        self.prefix_tokens
            .saturating_add(self.input_tokens)
            .saturating_add(self.output_tokens)
    }

    /// The workload's token counts for one scenario (see the module docs).
    fn usage(&self, kind: ScenarioKind, min_cacheable: u64) -> Usage {
        let n = self.requests;
        let output_tokens = n.saturating_mul(self.output_tokens);
        if !kind.cached() || n == 0 || !self.prefix_cacheable(min_cacheable) {
            return Usage {
                input_tokens: n
                    .saturating_mul(self.prefix_tokens.saturating_add(self.input_tokens)),
                output_tokens,
                ..Usage::default()
            };
        }
        let mut usage = Usage {
            input_tokens: n.saturating_mul(self.input_tokens),
            cached_input_tokens: (n - 1).saturating_mul(self.prefix_tokens),
            output_tokens,
            ..Usage::default()
        };
        if kind.tier() == Tier::Batch {
            usage.cache_write_1h_tokens = self.prefix_tokens;
        } else {
            usage.cache_write_5m_tokens = self.prefix_tokens;
        }
        usage
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScenarioKind {
    Sync,
    SyncCache,
    Batch,
    BatchCache,
    Flex,
    FlexCache,
}

impl ScenarioKind {
    /// Display order: sync, batch, then flex, each uncached then cached.
    pub const ALL: [ScenarioKind; 6] = [
        ScenarioKind::Sync,
        ScenarioKind::SyncCache,
        ScenarioKind::Batch,
        ScenarioKind::BatchCache,
        ScenarioKind::Flex,
        ScenarioKind::FlexCache,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Sync => "sync",
            ScenarioKind::SyncCache => "sync+cache",
            ScenarioKind::Batch => "batch",
            ScenarioKind::BatchCache => "batch+cache",
            ScenarioKind::Flex => "flex",
            ScenarioKind::FlexCache => "flex+cache",
        }
    }

    pub fn tier(self) -> Tier {
        match self {
            ScenarioKind::Sync | ScenarioKind::SyncCache => Tier::Interactive,
            ScenarioKind::Batch | ScenarioKind::BatchCache => Tier::Batch,
            ScenarioKind::Flex | ScenarioKind::FlexCache => Tier::Flex,
        }
    }

    pub fn cached(self) -> bool {
        matches!(
            self,
            ScenarioKind::SyncCache | ScenarioKind::BatchCache | ScenarioKind::FlexCache
        )
    }

    /// The scenario an SLA allows: under [`INTERACTIVE_BELOW`] only a synchronous call answers in
    /// time; from [`BATCH_TURNAROUND_PRIOR`] on a batch does; in between flex where the model has
    /// it, else synchronous. The prompt cache is used on every tier.
    pub fn for_sla(sla: Duration, has_flex: bool) -> ScenarioKind {
        if sla < INTERACTIVE_BELOW {
            ScenarioKind::SyncCache
        } else if sla >= BATCH_TURNAROUND_PRIOR {
            ScenarioKind::BatchCache
        } else if has_flex {
            ScenarioKind::FlexCache
        } else {
            ScenarioKind::SyncCache
        }
    }
}

/// One row of the estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub kind: ScenarioKind,
    pub total_usd: f64,
    pub usd_per_request: f64,
    /// `total_usd` as a percentage of the `sync` (uncached, synchronous) baseline.
    pub pct_of_baseline: f64,
}

/// Why a scenario was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The tier this SLA allows.
    Sla(Duration),
    /// No SLA given: the cheapest scenario.
    Cheapest,
}

/// The recommended scenario and what it saves against the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub kind: ScenarioKind,
    pub basis: Basis,
    pub total_usd: f64,
    pub savings_usd: f64,
    pub savings_pct: f64,
}

/// The workload on a reserved GPU against the cheapest API scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuComparison {
    pub gpu: Gpu,
    pub total_tokens: u64,
    /// GPU time the workload takes: total tokens / tokens per second, in hours.
    pub gpu_hours: f64,
    /// `gpu_hours` × hourly price.
    pub gpu_cost_usd: f64,
    /// 24 × hourly price: a GPU reserved around the clock.
    pub reserved_usd_per_day: f64,
    /// The cheapest API scenario.
    pub api_kind: ScenarioKind,
    pub api_total_usd: f64,
    pub api_usd_per_request: f64,
    /// Requests per day at which the reserved GPU costs as much as the API;
    /// `None` when the API costs nothing per request.
    pub breakeven_requests_per_day: Option<f64>,
    /// How many of these requests one GPU can serve per day; `None` for empty requests.
    pub capacity_requests_per_day: Option<f64>,
    /// Whether the GPU time for this workload costs less than the cheapest API scenario.
    pub gpu_cheaper: bool,
}

/// The result of [`estimate`]; [`Estimate::render_table`] and [`Estimate::to_json`] print it.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub model: String,
    pub provider: Provider,
    pub workload: Workload,
    /// The shortest prefix the model caches ([`min_cacheable_prefix`]).
    pub min_cacheable_prefix_tokens: u64,
    /// The `sync` total: every token synchronous, uncached, at list price.
    pub baseline_usd: f64,
    /// In [`ScenarioKind::ALL`] order; the flex rows only when the model has flex prices.
    pub scenarios: Vec<Scenario>,
    pub choice: Choice,
    pub gpu: Option<GpuComparison>,
}

impl Estimate {
    pub fn scenario(&self, kind: ScenarioKind) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.kind == kind)
    }

    /// The cheapest scenario (the first of equals, in display order).
    pub fn cheapest(&self) -> Scenario {
        cheapest(&self.scenarios)
    }
}

fn cheapest(scenarios: &[Scenario]) -> Scenario {
    let mut best = scenarios.first().copied().unwrap_or(Scenario {
        kind: ScenarioKind::Sync,
        total_usd: 0.0,
        usd_per_request: 0.0,
        pct_of_baseline: 100.0,
    });
    for s in scenarios {
        if s.total_usd < best.total_usd {
            best = *s;
        }
    }
    best
}

fn pct_of(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        100.0 * value / baseline
    } else {
        100.0
    }
}

fn per_request(total: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        total / requests as f64
    }
}

/// Prices `w` on every scenario the model offers. Pure: no I/O.
pub fn estimate(price_row: &ModelPrice, model: &str, w: &Workload) -> Estimate {
    let has_flex = price_row.has_flex();
    let min = min_cacheable_prefix(price_row.provider, model);
    let baseline_usd = price(
        price_row,
        Tier::Interactive,
        &w.usage(ScenarioKind::Sync, min),
    )
    .baseline_usd;
    let scenarios: Vec<Scenario> = ScenarioKind::ALL
        .into_iter()
        .filter(|k| has_flex || k.tier() != Tier::Flex)
        .map(|kind| {
            let total_usd = price(price_row, kind.tier(), &w.usage(kind, min)).cost_usd;
            Scenario {
                kind,
                total_usd,
                usd_per_request: per_request(total_usd, w.requests),
                pct_of_baseline: pct_of(total_usd, baseline_usd),
            }
        })
        .collect();

    let (kind, basis) = match w.sla {
        Some(sla) => (ScenarioKind::for_sla(sla, has_flex), Basis::Sla(sla)),
        None => (cheapest(&scenarios).kind, Basis::Cheapest),
    };
    let total_usd = scenarios
        .iter()
        .find(|s| s.kind == kind)
        .map_or(baseline_usd, |s| s.total_usd);
    let choice = Choice {
        kind,
        basis,
        total_usd,
        savings_usd: baseline_usd - total_usd,
        savings_pct: pct_of(baseline_usd - total_usd, baseline_usd),
    };

    let gpu = w.gpu.map(|gpu| {
        let api = cheapest(&scenarios);
        let total_tokens = w.total_tokens();
        let gpu_hours = total_tokens as f64 / gpu.tokens_per_second / 3600.0;
        let gpu_cost_usd = gpu_hours * gpu.hourly_usd;
        let reserved_usd_per_day = 24.0 * gpu.hourly_usd;
        let tokens_per_request = w.tokens_per_request();
        GpuComparison {
            gpu,
            total_tokens,
            gpu_hours,
            gpu_cost_usd,
            reserved_usd_per_day,
            api_kind: api.kind,
            api_total_usd: api.total_usd,
            api_usd_per_request: api.usd_per_request,
            breakeven_requests_per_day: (api.usd_per_request > 0.0)
                .then(|| reserved_usd_per_day / api.usd_per_request),
            capacity_requests_per_day: (tokens_per_request > 0)
                .then(|| gpu.tokens_per_second * 86_400.0 / tokens_per_request as f64),
            gpu_cheaper: gpu_cost_usd < api.total_usd,
        }
    });

    Estimate {
        model: model.to_owned(),
        provider: price_row.provider,
        workload: *w,
        min_cacheable_prefix_tokens: min,
        baseline_usd,
        scenarios,
        choice,
        gpu,
    }
}

impl EstimateArgs {
    /// The workload these flags describe; errors name the missing or invalid flag.
    pub fn workload(&self) -> Result<Workload, EstimateError> {
        let requests = self
            .requests
            .ok_or(EstimateError::MissingArgument("--requests"))?;
        if requests == 0 {
            return Err(EstimateError::InvalidArgument {
                flag: "--requests",
                reason: "must be at least 1",
            });
        }
        let gpu = match (self.gpu_hourly_usd, self.gpu_tokens_per_second) {
            (None, None) => None,
            (Some(hourly_usd), Some(tokens_per_second)) => {
                if !(hourly_usd.is_finite() && hourly_usd > 0.0) {
                    return Err(EstimateError::InvalidArgument {
                        flag: "--gpu-hourly-usd",
                        reason: "must be a positive number",
                    });
                }
                if !(tokens_per_second.is_finite() && tokens_per_second > 0.0) {
                    return Err(EstimateError::InvalidArgument {
                        flag: "--gpu-tokens-per-second",
                        reason: "must be a positive number",
                    });
                }
                Some(Gpu {
                    hourly_usd,
                    tokens_per_second,
                })
            }
            (None, Some(_)) => return Err(EstimateError::MissingArgument("--gpu-hourly-usd")),
            (Some(_), None) => {
                return Err(EstimateError::MissingArgument("--gpu-tokens-per-second"));
            }
        };
        Ok(Workload {
            requests,
            prefix_tokens: self
                .prefix_tokens
                .ok_or(EstimateError::MissingArgument("--prefix-tokens"))?,
            input_tokens: self.input_tokens,
            output_tokens: self
                .output_tokens
                .ok_or(EstimateError::MissingArgument("--output-tokens"))?,
            sla: self.sla,
            gpu,
        })
    }
}

/// The built-in table, overridden by the `--prices` file if one is given.
pub fn load_table(prices: Option<&std::path::Path>) -> Result<PriceTable, PricingError> {
    let builtin = PriceTable::builtin();
    match prices {
        Some(path) => Ok(builtin.merged(PriceTable::load(path)?)),
        None => Ok(builtin),
    }
}

/// Runs `sluice estimate`: prints the model list, the table or the JSON to `out`.
pub fn run(args: &EstimateArgs, out: &mut impl Write) -> Result<(), EstimateError> {
    let table = load_table(args.prices.as_deref())?;
    if args.list_models {
        let listing = if args.json {
            format!("{:#}\n", render::models_json(&table))
        } else {
            render::models_table(&table)
        };
        out.write_all(listing.as_bytes())?;
        return Ok(());
    }
    let wanted = args
        .model
        .as_deref()
        .ok_or(EstimateError::MissingArgument("--model"))?;
    let (name, price_row) = table
        .get(wanted)
        .ok_or_else(|| EstimateError::UnknownModel(wanted.to_owned()))?;
    let est = estimate(price_row, name, &args.workload()?);
    if args.json {
        writeln!(out, "{:#}", est.to_json())?;
    } else {
        out.write_all(est.render_table().as_bytes())?;
    }
    Ok(())
}
