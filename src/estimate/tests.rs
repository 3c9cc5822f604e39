use std::time::Duration;

use clap::Parser;

use super::*;

/// Relative tolerance: totals are in the hundreds of dollars, so compare relative to size.
fn close(actual: f64, expected: f64) {
    let tol = 1e-12 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() < tol,
        "got {actual}, expected {expected}"
    );
}

fn price_of(model: &str) -> ModelPrice {
    match PriceTable::builtin().get(model) {
        Some((_, p)) => *p,
        None => panic!("{model} not built in"),
    }
}

/// The cost study of CONTRACT.md: 50,000 documents, a 4,000-token shared prompt, 200 output tokens.
fn study() -> Workload {
    Workload {
        requests: 50_000,
        prefix_tokens: 4000,
        input_tokens: 0,
        output_tokens: 200,
        sla: None,
        gpu: None,
    }
}

fn total(est: &Estimate, kind: ScenarioKind) -> f64 {
    match est.scenario(kind) {
        Some(s) => s.total_usd,
        None => panic!("no {} scenario", kind.as_str()),
    }
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: EstimateArgs,
}

fn parse(argv: &[&str]) -> EstimateArgs {
    let argv = std::iter::once("estimate").chain(argv.iter().copied());
    Cli::try_parse_from(argv).unwrap().args
}

fn run_to_string(args: &EstimateArgs) -> String {
    let mut out = Vec::new();
    run(args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn acceptance_claude_sonnet_4_6_study() {
    // sluice estimate --requests 50000 --prefix-tokens 4000 --output-tokens 200
    //                 --model claude-sonnet-4-6
    let args = parse(&[
        "--requests",
        "50000",
        "--prefix-tokens",
        "4000",
        "--output-tokens",
        "200",
        "--model",
        "claude-sonnet-4-6",
    ]);
    assert_eq!(args.workload().unwrap(), study());
    let est = estimate(
        &price_of("claude-sonnet-4-6"),
        "claude-sonnet-4-6",
        &study(),
    );

    // sync = 50000×4000×3e-6 + 50000×200×15e-6 = 600 + 150 = 750.00
    let sync = 50_000.0 * 4000.0 * 3e-6 + 50_000.0 * 200.0 * 15e-6;
    close(sync, 750.0);
    // sync+cache: one 5-minute write, 49,999 reads:
    //   4000×3.75e-6 + 49999×4000×0.3e-6 + 150 = 0.015 + 59.9988 + 150 = 210.0138
    let sync_cache = 4000.0 * 3.75e-6 + 49_999.0 * 4000.0 * 0.3e-6 + 150.0;
    close(sync_cache, 210.0138);
    // batch = 50000×4000×1.5e-6 + 50000×200×7.5e-6 = 300 + 75 = 375.00
    let batch = 50_000.0 * 4000.0 * 1.5e-6 + 50_000.0 * 200.0 * 7.5e-6;
    close(batch, 375.0);
    // batch+cache: one 1-hour write at 50%, 49,999 reads at the batch cached rate:
    //   4000×6e-6×0.5 + 49999×4000×0.15e-6 + 50000×200×7.5e-6 = 0.012 + 29.9994 + 75 = 105.0114
    let batch_cache = 4000.0 * 6e-6 * 0.5 + 49_999.0 * 4000.0 * 0.15e-6 + 50_000.0 * 200.0 * 7.5e-6;
    close(batch_cache, 105.0114);

    close(est.baseline_usd, 750.0);
    let kinds: Vec<ScenarioKind> = est.scenarios.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            ScenarioKind::Sync,
            ScenarioKind::SyncCache,
            ScenarioKind::Batch,
            ScenarioKind::BatchCache
        ],
        "no flex rows: Anthropic has no flex prices"
    );
    close(total(&est, ScenarioKind::Sync), 750.0);
    close(total(&est, ScenarioKind::SyncCache), 210.0138);
    close(total(&est, ScenarioKind::Batch), 375.0);
    close(total(&est, ScenarioKind::BatchCache), 105.0114);
    // Per request: 210.0138 / 50000 = 0.004200276; 105.0114 / 50000 = 0.002100228.
    let sc = est.scenario(ScenarioKind::SyncCache).unwrap();
    close(sc.usd_per_request, 0.004200276);
    // % of baseline: 210.0138 / 750 = 28.00184%; 105.0114 / 750 = 14.00152%.
    close(sc.pct_of_baseline, 28.00184);
    let bc = est.scenario(ScenarioKind::BatchCache).unwrap();
    close(bc.usd_per_request, 0.002100228);
    close(bc.pct_of_baseline, 14.00152);

    // No SLA: the cheapest, batch+cache, saves 750 − 105.0114 = 644.9886 (85.99848%).
    assert_eq!(est.choice.kind, ScenarioKind::BatchCache);
    assert_eq!(est.choice.basis, Basis::Cheapest);
    close(est.choice.savings_usd, 644.9886);
    close(est.choice.savings_pct, 85.99848);

    let table = est.render_table();
    let expected = "\
claude-sonnet-4-6 (anthropic): N=50000 requests, P=4000 prefix tokens, I=0 input tokens, O=200 output tokens
scenario     total_usd  usd_per_request  pct_of_baseline
sync            750.00         0.015000            100.0
sync+cache      210.01         0.004200             28.0
batch           375.00         0.007500             50.0
batch+cache     105.01         0.002100             14.0
";
    assert!(table.starts_with(expected), "{table}");
    assert!(
        table.contains("cheapest: batch+cache (batch tier) $105.01, saves $644.99 (86.0%) vs sync"),
        "{table}"
    );
    assert_eq!(run_to_string(&args), table);
}

#[test]
fn json_output() {
    // gpt-5 has flex prices. N=1000, P=2000, I=500, O=300, --sla 15m.
    let w = Workload {
        requests: 1000,
        prefix_tokens: 2000,
        input_tokens: 500,
        output_tokens: 300,
        sla: Some(Duration::from_secs(15 * 60)),
        gpu: None,
    };
    let est = estimate(&price_of("gpt-5"), "gpt-5", &w);
    let v = est.to_json();
    let num = |pointer: &str| match v.pointer(pointer).and_then(serde_json::Value::as_f64) {
        Some(x) => x,
        None => panic!("{pointer} missing in {v:#}"),
    };
    // sync = 1000×2500×1.25e-6 + 1000×300×10e-6 = 3.125 + 3 = 6.125
    close(num("/baseline_usd"), 6.125);
    close(num("/scenarios/0/total_usd"), 6.125);
    // sync+cache (OpenAI: the write is billed at the input rate):
    //   2000×1.25e-6 + 999×2000×0.125e-6 + 1000×500×1.25e-6 + 3 = 0.0025 + 0.24975 + 0.625 + 3
    //   = 3.87725
    close(num("/scenarios/1/total_usd"), 3.87725);
    // batch = 1000×2500×0.625e-6 + 1000×300×5e-6 = 1.5625 + 1.5 = 3.0625
    close(num("/scenarios/2/total_usd"), 3.0625);
    // batch+cache = 2000×0.625e-6 + 999×2000×0.0625e-6 + 1000×500×0.625e-6 + 1.5
    //             = 0.00125 + 0.124875 + 0.3125 + 1.5 = 1.938625
    close(num("/scenarios/3/total_usd"), 1.938625);
    // flex rates equal batch rates for gpt-5: 3.0625 and 1.938625.
    close(num("/scenarios/4/total_usd"), 3.0625);
    close(num("/scenarios/5/total_usd"), 1.938625);
    close(num("/scenarios/5/usd_per_request"), 0.001938625);
    assert_eq!(v["scenarios"][5]["scenario"], "flex+cache");
    assert_eq!(v["scenarios"][5]["tier"], "flex");
    assert_eq!(v["scenarios"].as_array().map(Vec::len), Some(6));
    // 15m: between 60 s and 6 h, gpt-5 has flex → flex+cache; saves 6.125 − 1.938625 = 4.186375,
    // 4.186375 / 6.125 = 68.34897959…%.
    assert_eq!(v["choice"]["basis"], "sla");
    assert_eq!(v["choice"]["sla"], "15m");
    assert_eq!(v["choice"]["scenario"], "flex+cache");
    assert_eq!(v["choice"]["tier"], "flex");
    close(num("/choice/savings_usd"), 4.186375);
    close(num("/choice/savings_pct"), 4.186375 / 6.125 * 100.0);
    assert_eq!(v["model"], "gpt-5");
    assert_eq!(v["provider"], "openai");
    assert_eq!(v["workload"]["sla"], "15m");
    assert_eq!(v["workload"]["prefix_cacheable"], true);
    assert!(v["gpu"].is_null());

    // `run --json` prints the same document.
    let args = parse(&[
        "--requests",
        "1000",
        "--prefix-tokens",
        "2000",
        "--input-tokens",
        "500",
        "--output-tokens",
        "300",
        "--model",
        "gpt-5",
        "--sla",
        "15m",
        "--json",
    ]);
    assert_eq!(run_to_string(&args), format!("{v:#}\n"));
}

#[test]
fn gpu_break_even() {
    let w = Workload {
        gpu: Some(Gpu {
            hourly_usd: 2.0,
            tokens_per_second: 2500.0,
        }),
        ..study()
    };
    let est = estimate(&price_of("claude-sonnet-4-6"), "claude-sonnet-4-6", &w);
    let g = est.gpu.unwrap();
    // tokens = 50000 × (4000 + 0 + 200) = 210,000,000
    assert_eq!(g.total_tokens, 210_000_000);
    // hours = 210e6 / 2500 / 3600 = 84,000 s / 3600 = 23.333… h; cost = 23.333… × $2 = $46.666…
    close(g.gpu_hours, 210e6 / 2500.0 / 3600.0);
    close(g.gpu_cost_usd, 140.0 / 3.0);
    // reserved around the clock: 24 × $2 = $48/day
    close(g.reserved_usd_per_day, 48.0);
    // cheapest API scenario: batch+cache, $105.0114 / 50000 = $0.002100228 per request;
    // break-even = 48 / 0.002100228 = 2,400,000 / 105.0114 = 22854.66… requests/day
    assert_eq!(g.api_kind, ScenarioKind::BatchCache);
    close(g.api_usd_per_request, 0.002100228);
    close(
        g.breakeven_requests_per_day.unwrap(),
        2_400_000.0 / 105.0114,
    );
    // one GPU: 2500 × 86400 / 4200 = 51428.57… requests/day
    close(
        g.capacity_requests_per_day.unwrap(),
        2500.0 * 86_400.0 / 4200.0,
    );
    // $46.67 of GPU time < $105.01 of API: the GPU is cheaper for this workload.
    assert!(g.gpu_cheaper);

    let table = est.render_table();
    assert!(
        table
            .contains("gpu: 210000000 tokens / 2500 tokens/s = 23.33 GPU-hours x $2.00/h = $46.67"),
        "{table}"
    );
    assert!(
        table.contains(
            "break-even: a reserved GPU ($48.00/day) costs as much as batch+cache \
             ($0.002100/request) at 22855 requests/day; one GPU serves at most 51429 requests/day"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "cheaper for this workload: the GPU, $46.67 of GPU time vs $105.01 for batch+cache"
        ),
        "{table}"
    );
    let v = est.to_json();
    assert_eq!(v["gpu"]["cheaper"], "gpu");
    assert_eq!(v["gpu"]["total_tokens"], 210_000_000);

    // At $20/h the same GPU time costs $466.67 > $105.01: the API is cheaper;
    // break-even = 480 / 0.002100228 = 228546.6… requests/day.
    let w = Workload {
        gpu: Some(Gpu {
            hourly_usd: 20.0,
            tokens_per_second: 2500.0,
        }),
        ..study()
    };
    let est_api = estimate(&price_of("claude-sonnet-4-6"), "claude-sonnet-4-6", &w);
    let g = est_api.gpu.unwrap();
    close(g.gpu_cost_usd, 1400.0 / 3.0);
    close(
        g.breakeven_requests_per_day.unwrap(),
        24_000_000.0 / 105.0114,
    );
    assert!(!g.gpu_cheaper);
}

#[test]
fn sla_picks_the_tier() {
    let secs = Duration::from_secs;
    // Anthropic (no flex): 30s → interactive, 15m → interactive, 24h → batch.
    assert_eq!(
        ScenarioKind::for_sla(secs(30), false),
        ScenarioKind::SyncCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(15 * 60), false),
        ScenarioKind::SyncCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(24 * 3600), false),
        ScenarioKind::BatchCache
    );
    // With flex prices: 15m → flex.
    assert_eq!(
        ScenarioKind::for_sla(secs(30), true),
        ScenarioKind::SyncCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(15 * 60), true),
        ScenarioKind::FlexCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(24 * 3600), true),
        ScenarioKind::BatchCache
    );
    // Boundaries: INTERACTIVE_BELOW = 60 s (exclusive), BATCH_TURNAROUND_PRIOR = 6 h (inclusive).
    assert_eq!(
        ScenarioKind::for_sla(secs(59), true),
        ScenarioKind::SyncCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(60), true),
        ScenarioKind::FlexCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(6 * 3600 - 1), true),
        ScenarioKind::FlexCache
    );
    assert_eq!(
        ScenarioKind::for_sla(secs(6 * 3600), false),
        ScenarioKind::BatchCache
    );

    // Through the CLI, on the study workload.
    let study_with = |sla: &str| {
        let args = parse(&[
            "--requests",
            "50000",
            "--prefix-tokens",
            "4000",
            "--output-tokens",
            "200",
            "--model",
            "claude-sonnet-4-6",
            "--sla",
            sla,
        ]);
        (args.workload().unwrap(), run_to_string(&args))
    };
    let (w, out) = study_with("30s");
    assert_eq!(w.sla, Some(secs(30)));
    // sync+cache: 750 − 210.0138 = 539.9862 saved, 71.99816%.
    assert!(
        out.contains(
            "sla 30s allows the interactive tier: sync+cache $210.01, saves $539.99 (72.0%) vs sync"
        ),
        "{out}"
    );
    let (_, out) = study_with("15m");
    assert!(
        out.contains("sla 15m allows the interactive tier: sync+cache $210.01"),
        "{out}"
    );
    // batch+cache: 750 − 105.0114 = 644.9886 saved, 85.99848%. (24h prints as 1d.)
    let (_, out) = study_with("24h");
    assert!(
        out.contains(
            "sla 1d allows the batch tier: batch+cache $105.01, saves $644.99 (86.0%) vs sync"
        ),
        "{out}"
    );

    let est = estimate(
        &price_of("o3"),
        "o3",
        &Workload {
            sla: Some(secs(15 * 60)),
            ..study()
        },
    );
    assert_eq!(est.choice.kind, ScenarioKind::FlexCache);
    assert_eq!(est.choice.basis, Basis::Sla(secs(15 * 60)));
    assert!(
        est.render_table()
            .contains("sla 15m allows the flex tier: flex+cache $")
    );
}

#[test]
fn short_prefix_is_not_cached() {
    // 500 < 1024 tokens: sync+cache = sync = 100 × 700 × 3e-6 + 100 × 50 × 15e-6
    //                                     = 0.21 + 0.075 = 0.285
    let w = Workload {
        requests: 100,
        prefix_tokens: 500,
        input_tokens: 200,
        output_tokens: 50,
        sla: None,
        gpu: None,
    };
    let est = estimate(&price_of("claude-sonnet-4-6"), "claude-sonnet-4-6", &w);
    close(total(&est, ScenarioKind::Sync), 0.285);
    close(total(&est, ScenarioKind::SyncCache), 0.285);
    close(
        total(&est, ScenarioKind::BatchCache),
        total(&est, ScenarioKind::Batch),
    );
    assert!(est.render_table().contains("below the 1024-token minimum"));
    // The first of equal scenarios wins: batch (0.1425) before batch+cache.
    assert_eq!(est.choice.kind, ScenarioKind::Batch);
}

#[test]
fn single_request_pays_the_write() {
    // One request: the 5-minute write costs more than it saves:
    // sync+cache = 4000×3.75e-6 + 200×15e-6 = 0.015 + 0.003 = 0.018 > sync = 0.012 + 0.003 = 0.015.
    let w = Workload {
        requests: 1,
        ..study()
    };
    let est = estimate(
        &price_of("claude-sonnet-4-6"),
        "claude-sonnet-4-6",
        &Workload {
            sla: Some(Duration::from_secs(1)),
            ..w
        },
    );
    close(total(&est, ScenarioKind::Sync), 0.015);
    close(total(&est, ScenarioKind::SyncCache), 0.018);
    close(est.choice.savings_usd, -0.003);
    assert!(
        est.render_table()
            .contains("costs $0.00 (20.0%) more than sync")
    );
}

#[test]
fn cli_flags_and_errors() {
    // --list-models needs nothing else.
    let args = parse(&["--list-models"]);
    let listing = run_to_string(&args);
    assert!(listing.contains("claude-sonnet-4-6"), "{listing}");
    assert!(listing.contains("text-embedding-3-small"), "{listing}");
    let sonnet = listing
        .lines()
        .find(|l| l.starts_with("claude-sonnet-4-6 "))
        .unwrap();
    let cells: Vec<&str> = sonnet.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "claude-sonnet-4-6",
            "anthropic",
            "chat",
            "3",
            "0.3",
            "3.75",
            "6",
            "15",
            "1.5",
            "7.5",
            "0.15",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-"
        ]
    );
    // gpt-5: flex and priority (Fast) columns, USD per 1M.
    let gpt5 = listing.lines().find(|l| l.starts_with("gpt-5 ")).unwrap();
    let cells: Vec<&str> = gpt5.split_whitespace().collect();
    assert_eq!(cells[11..], ["0.625", "5", "0.0625", "2.5", "20", "0.25"]);
    let args = parse(&["--list-models", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run_to_string(&args)).unwrap();
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(PriceTable::builtin().len())
    );

    // Required flags without --list-models; bad values rejected by clap.
    let base = [
        "estimate",
        "--requests",
        "10",
        "--prefix-tokens",
        "0",
        "--output-tokens",
        "1",
    ];
    assert!(Cli::try_parse_from(base).is_err(), "--model is required");
    let with_model = |extra: &[&str]| {
        let argv: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--model", "gpt-4o"])
            .chain(extra.iter().copied())
            .collect();
        Cli::try_parse_from(argv).map(|c| c.args)
    };
    assert!(with_model(&[]).is_ok());
    assert!(with_model(&["--sla", "10 m"]).is_err());
    assert!(
        with_model(&["--gpu-hourly-usd", "2"]).is_err(),
        "GPU flags go together"
    );
    assert!(with_model(&["--gpu-hourly-usd", "2", "--gpu-tokens-per-second", "0"]).is_err());
    assert!(
        Cli::try_parse_from([
            "estimate",
            "--requests",
            "0",
            "--prefix-tokens",
            "0",
            "--output-tokens",
            "1",
            "--model",
            "x"
        ])
        .is_err()
    );

    // A date-suffixed name resolves to its canonical row.
    let args = with_model(&[]).map(|a| EstimateArgs {
        model: Some("gpt-4.1-2025-04-14".into()),
        ..a
    });
    let out = run_to_string(&args.unwrap());
    assert!(out.starts_with("gpt-4.1 (openai): N=10 requests"), "{out}");

    // Unknown model: a clear error naming the model.
    let args = with_model(&[]).map(|a| EstimateArgs {
        model: Some("no-such-model".into()),
        ..a
    });
    let err = run(&args.unwrap(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, EstimateError::UnknownModel(_)));
    assert!(err.to_string().contains("\"no-such-model\""), "{err}");
}

#[test]
fn prices_file_overrides_builtin() {
    let path = std::env::temp_dir().join(format!(
        "sluice-estimate-prices-{}.json",
        std::process::id()
    ));
    std::fs::write(
        &path,
        br#"{"my-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
             "litellm_provider": "openai", "mode": "chat"}}"#,
    )
    .unwrap();
    let args = parse(&[
        "--requests",
        "1000",
        "--prefix-tokens",
        "0",
        "--input-tokens",
        "100",
        "--output-tokens",
        "10",
        "--model",
        "my-model",
        "--json",
        "--prices",
        path.to_str().unwrap(),
    ]);
    let out = run_to_string(&args);
    let missing = EstimateArgs {
        prices: Some(path.with_extension("missing")),
        ..args.clone()
    };
    let err = run(&missing, &mut Vec::new()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // sync = 1000×100×1e-6 + 1000×10×2e-6 = 0.1 + 0.02 = 0.12; no batch rates listed → 50%: 0.06.
    close(v["baseline_usd"].as_f64().unwrap(), 0.12);
    close(v["scenarios"][2]["total_usd"].as_f64().unwrap(), 0.06);
    assert!(err.to_string().contains("sluice-estimate-prices-"), "{err}");
}

#[test]
fn gemini_batch_does_not_discount_cache_reads() {
    // gemini-2.5-flash: 0.30 in, 0.03 cached, 2.50 out; batch 0.15 / 1.25 with cache reads at
    // the standard 0.03 (no stacking); flex the same. N=1000, P=2400, I=500, O=300, --sla 24h.
    let w = Workload {
        requests: 1000,
        prefix_tokens: 2400,
        input_tokens: 500,
        output_tokens: 300,
        sla: Some(Duration::from_secs(24 * 3600)),
        gpu: None,
    };
    let est = estimate(&price_of("gemini-2.5-flash"), "gemini-2.5-flash", &w);
    assert_eq!(est.min_cacheable_prefix_tokens, 2048);
    // sync = 1000×2900×0.3e-6 + 1000×300×2.5e-6 = 0.87 + 0.75 = 1.62
    close(est.baseline_usd, 1.62);
    close(total(&est, ScenarioKind::Sync), 1.62);
    // sync+cache: the write at the input rate (implicit caching has no write premium):
    //   2400×0.3e-6 + 999×2400×0.03e-6 + 1000×500×0.3e-6 + 0.75
    //   = 0.00072 + 0.071928 + 0.15 + 0.75 = 0.972648
    close(total(&est, ScenarioKind::SyncCache), 0.972648);
    // batch = 1000×2900×0.15e-6 + 1000×300×1.25e-6 = 0.435 + 0.375 = 0.81
    close(total(&est, ScenarioKind::Batch), 0.81);
    // batch+cache: reads stay at 0.03 = 2400×0.15e-6 + 999×2400×0.03e-6 + 1000×500×0.15e-6 + 0.375
    //   = 0.00036 + 0.071928 + 0.075 + 0.375 = 0.522288 (not 0.486324, the stacked price)
    close(total(&est, ScenarioKind::BatchCache), 0.522288);
    close(total(&est, ScenarioKind::Flex), 0.81);
    close(total(&est, ScenarioKind::FlexCache), 0.522288);
    assert_eq!(est.choice.kind, ScenarioKind::BatchCache);
    close(est.choice.savings_usd, 1.62 - 0.522288);

    // Below Gemini's 2,048-token minimum nothing is cached, although OpenAI would cache it.
    let short = Workload {
        prefix_tokens: 2000,
        ..w
    };
    let est = estimate(&price_of("gemini-2.5-flash"), "gemini-2.5-flash", &short);
    close(
        total(&est, ScenarioKind::BatchCache),
        total(&est, ScenarioKind::Batch),
    );
    assert!(est.render_table().contains("below the 2048-token minimum"));
    let est = estimate(
        &price_of("gemini-3-flash-preview"),
        "gemini-3-flash-preview",
        &w,
    );
    assert_eq!(est.min_cacheable_prefix_tokens, 4096);
    close(
        total(&est, ScenarioKind::SyncCache),
        total(&est, ScenarioKind::Sync),
    );
}
