//! The durable ledger agrees with the metrics: for the same traffic (interactive JSON and
//! streams, batched answers), `sluice report`'s rows (the store's `report`) add up to the
//! requests and dollars `/metrics` counted, per tier and in total.

mod common;

use std::time::Duration;

use common::{Gateway, metric};
use http::StatusCode;
use sluice::simulate::SimConfig;
use sluice::types::Tier;

fn chat(user: &str, stream: bool) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "stream_options": if stream { serde_json::json!({"include_usage": true}) } else { serde_json::Value::Null },
        "messages": [
            {"role": "system", "content": "You summarise tickets. ".repeat(80)},
            {"role": "user", "content": user}
        ]
    })
    .to_string()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-6 * a.abs().max(b.abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_totals_equal_the_metrics_totals() {
    let sim = SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    };
    let gw = Gateway::start_sim(sim, vec![], |c| {
        c.batch.max_wait = Duration::from_millis(300);
    })
    .await;
    for i in 0..6 {
        let (s, _, _) = gw
            .post(
                "/v1/chat/completions",
                &[],
                &chat(&format!("now {i}"), i % 2 == 1),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let held = (0..3).map(|i| {
        let gw = &gw;
        async move {
            gw.post(
                "/v1/chat/completions",
                &[("x-sla", "24h")],
                &chat(&format!("later {i}"), false),
            )
            .await
        }
    });
    for (s, h, _) in futures_util::future::join_all(held).await {
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-sluice-tier"], "batch");
    }

    let metrics = gw.metrics().await;
    let requests = metric(&metrics, "sluice_requests_total", &[]);
    assert_eq!(requests, 9.0, "{metrics}");
    let store = sluice::store::open(&format!("sqlite://{}", gw.db.display()))
        .await
        .unwrap();
    // Interactive entries reach the store from a background writer within its linger.
    let mut rows = Vec::new();
    for _ in 0..400 {
        rows = store.report(0).await.unwrap();
        if rows.iter().map(|r| r.requests).sum::<u64>() == 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 9, "{rows:?}");
    for tier in [Tier::Interactive, Tier::Batch] {
        let of_tier: Vec<_> = rows.iter().filter(|r| r.tier == tier).collect();
        let labels = [("tier", tier.as_str())];
        let n: u64 = of_tier.iter().map(|r| r.requests).sum();
        assert_eq!(
            n as f64,
            metric(&metrics, "sluice_requests_total", &labels),
            "{tier}"
        );
        let cost: f64 = of_tier.iter().map(|r| r.cost_usd).sum();
        let want = metric(&metrics, "sluice_cost_usd_total", &labels);
        assert!(
            want > 0.0 && close(cost, want),
            "{tier}: report {cost} vs metrics {want}"
        );
        let baseline: f64 = of_tier.iter().map(|r| r.baseline_usd).sum();
        let want = metric(&metrics, "sluice_baseline_cost_usd_total", &labels);
        assert!(
            close(baseline, want),
            "{tier}: report {baseline} vs metrics {want}"
        );
    }
    gw.stop().await;
}
