//! The observability deliverables against a real Prometheus (Debian's `prometheus`
//! package: `prometheus` and `promtool`): the deploy/ config and alert rules pass promtool
//! (including the rules' unit tests), the gateway's `/metrics` passes `promtool check
//! metrics`, and with Prometheus scraping a gateway that serves a mixed workload from the
//! simulated provider, every query of every dashboard panel returns data, the alert rules
//! evaluate cleanly, and the ones the workload should trip do.

mod common;
#[path = "observability/dashboard.rs"]
mod dashboard;
#[path = "observability/prometheus.rs"]
mod prometheus;
#[path = "observability/replicas_deploy.rs"]
mod replicas_deploy;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Gateway, metric};
use http::StatusCode;
use prometheus::{Prometheus, Tools};
use sluice::simulate::SimConfig;

const AUTH: (&str, &str) = ("authorization", "Bearer sk-sluice-demo");
const CHAT: &str = "/v1/chat/completions";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// A long, stable system prompt (well over 1,024 tokens) so prompt caching shows.
fn handbook() -> String {
    let mut s = String::from("You are the support assistant of Example Corp.\n");
    for i in 1..=120 {
        let _ = writeln!(
            s,
            "Rule {i}: answer politely, cite the relevant policy section, never invent order numbers."
        );
    }
    s
}

fn chat(model: &str, system: &str, user: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]
    })
    .to_string()
}

fn tier(h: &http::HeaderMap) -> &str {
    h.get("x-sluice-tier")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// One wave of the mixed workload on deploy/sluice/policies/demo.toml's routes: every
/// tier, every lever, a streaming answer, both kinds of fallback (with waste), 5xx errors.
async fn workload(gw: &Gateway, wave: u32) {
    let handbook = handbook();
    // support: nightly summaries with a 24 h SLA, held while they go through one batch.
    let batch = futures_util::future::join_all((0..4).map(|i| {
        let body = chat(
            "gpt-4.1-mini",
            &handbook,
            &format!("Summarise ticket {wave}-{i}."),
            false,
        );
        async move { gw.post(CHAT, &[AUTH, ("x-sla", "24h")], &body).await }
    }));
    // support: a 2-minute SLA the slow batch cannot meet: the watchdog answers it
    // synchronously and the late batch line is wasted spend. Each wave uses a model
    // whose turnaround is not yet observed (believed 1 s): once observed, triage would
    // no longer batch it.
    let deadline = async {
        let body = chat(
            ["gpt-4o", "gpt-4.1"][wave as usize - 1],
            "You summarise tickets.",
            &format!("hurry {wave}"),
            false,
        );
        gw.post(CHAT, &[AUTH, ("x-sla", "2m")], &body).await
    };
    let synchronous = async {
        // support: interactive, sharing the handbook prefix (prompt cache after the first).
        for i in 0..3 {
            let body = chat(
                "gpt-4o-mini",
                &handbook,
                &format!("Customer {wave}-{i}: where is my parcel?"),
                false,
            );
            let (s, h, _) = gw.post(CHAT, &[AUTH], &body).await;
            assert_eq!((s, tier(&h)), (StatusCode::OK, "interactive"));
        }
        let body = chat("gpt-4o-mini", &handbook, &format!("stream {wave}"), true);
        let (s, h, b) = gw.post(CHAT, &[AUTH], &body).await;
        assert_eq!(s, StatusCode::OK);
        assert!(String::from_utf8_lossy(&b).ends_with("data: [DONE]\n\n"));
        assert_eq!(h["content-type"], "text/event-stream");
        // support: provider errors, passed through.
        for _ in 0..2 {
            let body = chat("gpt-4o-mini", "Be brief.", "fail", false);
            let (s, _, _) = gw.post(CHAT, &[AUTH, ("x-sim-fault", "500")], &body).await;
            assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        }
        // ticket-triage: flex, and one flex 429 answered by the synchronous fallback.
        let body = chat(
            "gpt-5-mini",
            "Refund or bug?",
            &format!("Ticket {wave}: it crashes."),
            false,
        );
        let (s, h, _) = gw.post(CHAT, &[AUTH, ("x-sla", "semi")], &body).await;
        assert_eq!((s, tier(&h)), (StatusCode::OK, "flex"));
        let (s, h, _) = gw
            .post(
                CHAT,
                &[AUTH, ("x-sla", "semi"), ("x-sim-fault", "flex-429")],
                &body,
            )
            .await;
        assert_eq!((s, tier(&h)), (StatusCode::OK, "interactive"));
        // faq-bot: the same question twice, the second from the response cache.
        let body = chat(
            "gpt-5",
            "One sentence.",
            "What are your opening hours?",
            false,
        );
        for i in 0..2 {
            let (s, h, _) = gw.post(CHAT, &[AUTH], &body).await;
            assert_eq!(s, StatusCode::OK);
            if wave > 1 || i == 1 {
                assert_eq!(tier(&h), "response_cache");
            }
        }
        // default route: embeddings.
        let body = serde_json::json!({"model": "text-embedding-3-small",
            "input": [format!("document {wave}")], "encoding_format": "float"})
        .to_string();
        let (s, _, _) = gw.post("/v1/embeddings", &[AUTH], &body).await;
        assert_eq!(s, StatusCode::OK);
    };
    let (batch, (ds, dh, db), ()) = tokio::join!(batch, deadline, synchronous);
    for (s, h, b) in batch {
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(tier(&h), "batch");
    }
    assert_eq!(ds, StatusCode::OK, "{}", String::from_utf8_lossy(&db));
    assert_eq!(
        tier(&dh),
        "interactive",
        "answered by the deadline fallback"
    );
}

/// Waits (bounded) until the gateway recorded the wave's asynchronous outcomes (closed
/// batches, the late line's waste), then until Prometheus has scraped that state.
async fn settle(gw: &Gateway, prom: &Prometheus, wave: u32, wasted_before: f64) -> f64 {
    let m = gw
        .metrics_until("the wave's batches closed and its waste counted", |m| {
            metric(m, "sluice_wasted_cost_usd_total", &[]) > wasted_before
                && metric(m, "sluice_batch_turnaround_seconds_count", &[]) >= 2.0 * wave as f64
                && metric(m, "sluice_fallbacks_total", &[]) >= 2.0 * wave as f64
        })
        .await;
    let requests = metric(&m, "sluice_requests_total", &[]);
    let wasted = metric(&m, "sluice_wasted_cost_usd_total", &[]);
    prom.until(
        "the gateway's request count",
        "sum(sluice_requests_total)",
        |v| v >= requests,
    )
    .await;
    prom.until(
        "the gateway's wasted spend",
        "sum(sluice_wasted_cost_usd_total)",
        |v| v >= wasted * 0.999_999,
    )
    .await;
    wasted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_alerts_and_metrics_work_against_a_real_prometheus() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let config = deploy("prometheus/prometheus.yml");
    let alerts = deploy("prometheus/alerts.yml");
    tools.promtool(&["check", "config", &arg(&config)], None);
    tools.promtool(&["check", "rules", &arg(&alerts)], None);
    let unit = tools.promtool(
        &["test", "rules", &arg(&deploy("prometheus/alerts_test.yml"))],
        None,
    );
    assert!(unit.contains("SUCCESS"), "{unit}");

    let dash = dashboard::load(&deploy("grafana/sluice-dashboard.json"));
    let problems = dashboard::problems(&dash);
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
    let targets = dashboard::targets(&dash);

    // The gateway with the demo stack's policy, against the simulator; batches are slow
    // enough (1.5 s) that a 2-minute SLA with a 118.5 s fallback lead (so the watchdog
    // fires 1.5 s after arrival) misses its batch, which a 1 s prior let it join.
    let policy = std::fs::read_to_string(deploy("sluice/policies/demo.toml")).unwrap();
    let sim = SimConfig {
        batch_turnaround: Duration::from_millis(1500),
        ..SimConfig::default()
    };
    let gw = Gateway::start_sim(sim, vec![("demo.toml".into(), policy)], |c| {
        c.batch.turnaround_prior = Duration::from_secs(1);
        c.batch.fallback_lead = Duration::from_millis(118_500);
    })
    .await;
    // Before any traffic every contract family is already exposed, and the text parses.
    let fresh = gw.metrics().await;
    for (name, _) in dashboard::CONTRACT {
        for line in ["# HELP", "# TYPE"] {
            assert!(
                fresh.contains(&format!("{line} {name} ")),
                "fresh /metrics lacks `{line} {name}`:\n{fresh}"
            );
        }
    }
    tools.promtool(&["check", "metrics"], Some(&fresh));

    let prom = Prometheus::start(&tools, gw.addr, &alerts).await;
    prom.until("a successful scrape", "up{job=\"sluice\"}", |v| v == 1.0)
        .await;
    // Prometheus took every family's metadata from that first, sample-less scrape.
    let metadata = prom.api("/api/v1/metadata").await.unwrap();
    for (name, _) in dashboard::CONTRACT {
        assert!(
            metadata[name].is_array(),
            "Prometheus has no metadata for {name}: {metadata}"
        );
    }

    // Two waves, Prometheus caught up after each: every counter series exists before the
    // second wave moves it, so rate() and increase() have something to show.
    let mut wasted = 0.0;
    for wave in 1..=2 {
        workload(&gw, wave).await;
        wasted = settle(&gw, &prom, wave, wasted).await;
    }

    let text = gw.metrics().await;
    tools.promtool(&["check", "metrics"], Some(&text));
    prom.until(
        "several scrapes",
        "count_over_time(up{job=\"sluice\"}[1m])",
        |v| v >= 4.0,
    )
    .await;

    // The workload reached every metric the dashboard reads, except the two that are
    // legitimately absent: no SLA violation happened, and the queue is empty between flushes.
    let mut failures = Vec::new();
    let mut used: Vec<&str> = targets
        .iter()
        .flat_map(|t| dashboard::selectors(&t.expr))
        .filter_map(|(n, _)| dashboard::contract_metric(&n).map(|c| c.0))
        .collect();
    used.sort_unstable();
    used.dedup();
    for name in used {
        if ["sluice_sla_violations_total", "sluice_batch_queue_depth"].contains(&name) {
            continue;
        }
        let series =
            if dashboard::contract_metric(&format!("{name}_bucket")).is_some_and(|c| c.0 == name) {
                format!("{name}_count")
            } else {
                name.to_owned()
            };
        if prom
            .value(&format!("count(last_over_time({series}[5m]))"))
            .await
            .is_none()
        {
            failures.push(format!("the workload produced no `{series}` series"));
        }
    }

    // Every panel query, as Grafana would send it with "All" selected.
    for t in &targets {
        let q = dashboard::substitute(&t.expr);
        match prom.query(&q).await {
            Err(e) => failures.push(format!("panel {:?}: {e}\n  expr: {q}", t.panel)),
            Ok(r) if r.is_empty() => {
                failures.push(format!("panel {:?}: no series\n  expr: {q}", t.panel))
            }
            Ok(r) => {
                let values: Vec<String> = r
                    .iter()
                    .map(|s| {
                        let v = s.get("value").unwrap_or(s);
                        format!("{}{}", s["metric"], v[1].as_str().unwrap_or("?"))
                    })
                    .collect();
                println!("ok  {:<45} {}", t.panel, values.join(" "));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The alert rules evaluate without errors on live data, and the workload trips the ones
    // it should: fallbacks on ticket-triage (1 in 2) and 5xx answers (2 in 16).
    let mut last = serde_json::Value::Null;
    let mut settled = false;
    for _ in 0..300 {
        last = prom.api("/api/v1/rules?type=alert").await.unwrap();
        let rules: Vec<&serde_json::Value> = last["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(rules.len(), 7, "{last}");
        let bad: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(bad.is_empty(), "alert rules failed to evaluate: {bad:?}");
        let active = |name: &str, label: (&str, &str)| {
            rules.iter().any(|r| {
                r["name"] == name
                    && r["alerts"].as_array().into_iter().flatten().any(|a| {
                        a["labels"][label.0] == label.1
                            && (a["state"] == "pending" || a["state"] == "firing")
                    })
            })
        };
        if rules.iter().all(|r| r["health"] == "ok")
            && active("SluiceFallbackRateHigh", ("route", "ticket-triage"))
            && active("SluiceUpstreamErrorRateHigh", ("provider", "openai"))
        {
            for quiet in ["SluiceDown", "SluiceSlaViolations", "SluiceBatchQueueStuck"] {
                assert!(
                    rules
                        .iter()
                        .any(|r| r["name"] == quiet && r["state"] == "inactive"),
                    "{quiet} should be inactive: {last}"
                );
            }
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "the expected alerts never became active: {last}");
    println!("wasted spend seen: {wasted}");

    drop(prom);
    gw.stop().await;
}
