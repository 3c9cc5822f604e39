//! Text and JSON output of `sluice estimate`.

use std::fmt;

use serde_json::{Value, json};

use super::{Basis, Estimate};
use crate::duration::format_duration;
use crate::pricing::{ModelPrice, PriceTable};

const HEADER: [&str; 4] = [
    "scenario",
    "total_usd",
    "usd_per_request",
    "pct_of_baseline",
];

/// Writes rows as a fixed-width table: the first `text_columns` columns left-aligned, the
/// others (numbers) right-aligned, two spaces between columns, each as wide as its widest cell.
fn write_table<const N: usize>(
    f: &mut impl fmt::Write,
    text_columns: usize,
    header: [&str; N],
    rows: &[[String; N]],
) -> fmt::Result {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: [&str; N]| -> fmt::Result {
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            if i + 1 == N && i < text_columns {
                write!(f, "{sep}{cell}")?;
            } else if i < text_columns {
                write!(f, "{sep}{cell:<width$}")?;
            } else {
                write!(f, "{sep}{cell:>width$}")?;
            }
        }
        writeln!(f)
    };
    line(header)?;
    for row in rows {
        line(row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

impl Estimate {
    /// The human-readable table (what `sluice estimate` prints without `--json`).
    pub fn render_table(&self) -> String {
        self.to_string()
    }

    /// The same content as JSON (`--json`); money in USD, unrounded.
    pub fn to_json(&self) -> Value {
        let w = &self.workload;
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|s| {
                json!({
                    "scenario": s.kind.as_str(),
                    "tier": s.kind.tier().as_str(),
                    "total_usd": s.total_usd,
                    "usd_per_request": s.usd_per_request,
                    "pct_of_baseline": s.pct_of_baseline,
                })
            })
            .collect();
        let c = &self.choice;
        let (basis, sla) = match c.basis {
            Basis::Sla(sla) => ("sla", Some(format_duration(sla))),
            Basis::Cheapest => ("cheapest", None),
        };
        let gpu = self.gpu.map(|g| {
            json!({
                "hourly_usd": g.gpu.hourly_usd,
                "tokens_per_second": g.gpu.tokens_per_second,
                "total_tokens": g.total_tokens,
                "gpu_hours": g.gpu_hours,
                "gpu_cost_usd": g.gpu_cost_usd,
                "reserved_usd_per_day": g.reserved_usd_per_day,
                "api_scenario": g.api_kind.as_str(),
                "api_total_usd": g.api_total_usd,
                "api_usd_per_request": g.api_usd_per_request,
                "breakeven_requests_per_day": g.breakeven_requests_per_day,
                "capacity_requests_per_day": g.capacity_requests_per_day,
                "cheaper": if g.gpu_cheaper { "gpu" } else { "api" },
            })
        });
        json!({
            "model": self.model,
            "provider": self.provider.as_str(),
            "workload": {
                "requests": w.requests,
                "prefix_tokens": w.prefix_tokens,
                "input_tokens": w.input_tokens,
                "output_tokens": w.output_tokens,
                "sla": w.sla.map(format_duration),
                "prefix_cacheable": w.prefix_cacheable(self.min_cacheable_prefix_tokens),
                "min_cacheable_prefix_tokens": self.min_cacheable_prefix_tokens,
            },
            "baseline_usd": self.baseline_usd,
            "scenarios": scenarios,
            "choice": {
                "basis": basis,
                "sla": sla,
                "scenario": c.kind.as_str(),
                "tier": c.kind.tier().as_str(),
                "total_usd": c.total_usd,
                "savings_usd": c.savings_usd,
                "savings_pct": c.savings_pct,
            },
            "gpu": gpu,
        })
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        writeln!(
            f,
            "{} ({}): N={} requests, P={} prefix tokens, I={} input tokens, O={} output tokens",
            self.model, self.provider, w.requests, w.prefix_tokens, w.input_tokens, w.output_tokens
        )?;
        let rows: Vec<[String; 4]> = self
            .scenarios
            .iter()
            .map(|s| {
                [
                    s.kind.as_str().to_owned(),
                    format!("{:.2}", s.total_usd),
                    format!("{:.6}", s.usd_per_request),
                    format!("{:.1}", s.pct_of_baseline),
                ]
            })
            .collect();
        write_table(f, 1, HEADER, &rows)?;
        if w.prefix_cacheable(self.min_cacheable_prefix_tokens) {
            writeln!(
                f,
                "+cache: the first request writes the prefix (batch: 1-hour cache), the other {} read it",
                w.requests.saturating_sub(1)
            )?;
        } else {
            writeln!(
                f,
                "+cache: no effect, the prefix is below the {}-token minimum cacheable length",
                self.min_cacheable_prefix_tokens
            )?;
        }

        let c = &self.choice;
        match c.basis {
            Basis::Sla(sla) => write!(
                f,
                "sla {} allows the {} tier: {}",
                format_duration(sla),
                c.kind.tier(),
                c.kind.as_str()
            )?,
            Basis::Cheapest => write!(f, "cheapest: {} ({} tier)", c.kind.as_str(), c.kind.tier())?,
        }
        if c.savings_usd >= 0.0 {
            writeln!(
                f,
                " ${:.2}, saves ${:.2} ({:.1}%) vs sync",
                c.total_usd, c.savings_usd, c.savings_pct
            )?;
        } else {
            writeln!(
                f,
                " ${:.2}, costs ${:.2} ({:.1}%) more than sync",
                c.total_usd, -c.savings_usd, -c.savings_pct
            )?;
        }

        if let Some(g) = &self.gpu {
            writeln!(
                f,
                "gpu: {} tokens / {} tokens/s = {:.2} GPU-hours x ${:.2}/h = ${:.2}",
                g.total_tokens,
                g.gpu.tokens_per_second,
                g.gpu_hours,
                g.gpu.hourly_usd,
                g.gpu_cost_usd
            )?;
            let api = g.api_kind.as_str();
            match g.breakeven_requests_per_day {
                Some(breakeven) => write!(
                    f,
                    "break-even: a reserved GPU (${:.2}/day) costs as much as {api} (${:.6}/request) \
                     at {breakeven:.0} requests/day",
                    g.reserved_usd_per_day, g.api_usd_per_request
                )?,
                None => write!(f, "break-even: none, {api} costs nothing per request")?,
            }
            match g.capacity_requests_per_day {
                Some(capacity) => {
                    writeln!(f, "; one GPU serves at most {capacity:.0} requests/day")?
                }
                None => writeln!(f)?,
            }
            if g.gpu_cheaper {
                writeln!(
                    f,
                    "cheaper for this workload: the GPU, ${:.2} of GPU time vs ${:.2} for {api}",
                    g.gpu_cost_usd, g.api_total_usd
                )?;
            } else {
                writeln!(
                    f,
                    "cheaper for this workload: the API, ${:.2} for {api} vs ${:.2} of GPU time",
                    g.api_total_usd, g.gpu_cost_usd
                )?;
            }
        }
        Ok(())
    }
}

/// Rates per 1M tokens, trimmed (`0.0625`, `3.75`, `10`); `-` when not listed.
fn per_million(rate: Option<f64>) -> String {
    match rate {
        None => "-".to_owned(),
        Some(r) => {
            let s = format!("{:.4}", r * 1e6);
            let s = s.trim_end_matches('0').trim_end_matches('.');
            s.to_owned()
        }
    }
}

/// `--list-models`: every priced model with its listed rates in USD per 1M tokens.
pub(super) fn models_table(table: &PriceTable) -> String {
    const COLUMNS: [&str; 17] = [
        "model",
        "provider",
        "mode",
        "input",
        "cached",
        "write_5m",
        "write_1h",
        "output",
        "batch_in",
        "batch_out",
        "batch_cached",
        "flex_in",
        "flex_out",
        "flex_cached",
        "prio_in",
        "prio_out",
        "prio_cached",
    ];
    let rows: Vec<[String; 17]> = table
        .iter()
        .map(|(name, p)| {
            [
                name.to_owned(),
                p.provider.as_str().to_owned(),
                p.mode.as_str().to_owned(),
                per_million(Some(p.input)),
                per_million(Some(p.cached_input)),
                per_million(p.cache_write_5m),
                per_million(p.cache_write_1h),
                per_million(Some(p.output)),
                per_million(p.batch_input),
                per_million(p.batch_output),
                per_million(p.batch_cached_input),
                per_million(p.flex_input),
                per_million(p.flex_output),
                per_million(p.flex_cached_input),
                per_million(p.priority_input),
                per_million(p.priority_output),
                per_million(p.priority_cached_input),
            ]
        })
        .collect();
    let mut out = String::from(
        "USD per 1M tokens; - = not listed (missing batch/flex rates fall back to 50% of standard; \
         a tier without priority rates is billed at standard)\n",
    );
    // Writing into a String cannot fail.
    let _ = write_table(&mut out, 3, COLUMNS, &rows);
    out
}

/// `--list-models --json`: the same, USD per single token as in LiteLLM's file.
pub(super) fn models_json(table: &PriceTable) -> Value {
    Value::Array(table.iter().map(|(name, p)| model_json(name, p)).collect())
}

fn model_json(name: &str, p: &ModelPrice) -> Value {
    json!({
        "model": name,
        "provider": p.provider.as_str(),
        "mode": p.mode.as_str(),
        "usd_per_token": {
            "input": p.input,
            "cached_input": p.cached_input,
            "cache_write_5m": p.cache_write_5m,
            "cache_write_1h": p.cache_write_1h,
            "output": p.output,
            "batch_input": p.batch_input,
            "batch_output": p.batch_output,
            "batch_cached_input": p.batch_cached_input,
            "batch_cache_write": p.batch_cache_write,
            "flex_input": p.flex_input,
            "flex_output": p.flex_output,
            "flex_cached_input": p.flex_cached_input,
            "priority_input": p.priority_input,
            "priority_output": p.priority_output,
            "priority_cached_input": p.priority_cached_input,
            "priority_cache_write": p.priority_cache_write,
            "ultrafast_input": p.ultrafast_input,
            "ultrafast_output": p.ultrafast_output,
            "ultrafast_cached_input": p.ultrafast_cached_input,
            "ultrafast_cache_write": p.ultrafast_cache_write,
        },
    })
}
