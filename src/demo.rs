//! `sluice demo`: the simulated provider and the gateway on loopback, a mixed sample
//! workload through the gateway, then the savings table per route and tier.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::cli::{CliError, Loaded, bind, start_simulator};
use crate::config::Config;
use crate::metrics::SummaryRow;
use crate::policy::PolicySet;
use crate::pricing::PriceTable;
use crate::simulate::SimConfig;

const DEMO_KEY: &str = "sk-sluice-demo";

/// The demo team's policy: four routes with different patience and cache settings.
fn demo_policy() -> String {
    format!(
        r#"
[client]
name = "demo-team"
keys = ["{}"]

[[route]]
name = "support-chat"
models = ["gpt-4o-mini"]

[[route]]
name = "nightly-summaries"
models = ["gpt-4.1-mini"]
sla = "24h"

[[route]]
name = "ticket-triage"
models = ["gpt-5-mini"]
sla = "semi"

[[route]]
name = "faq-bot"
models = ["gpt-5"]
response_cache_ttl = "10m"

[[route]]
name = "doc-index"
paths = ["/v1/embeddings"]

[[route]]
name = "claims-assistant"
models = ["claude-*"]

[[route]]
name = "doc-tagging"
models = ["gemini-*"]
"#,
        hex::encode(crate::policy::hash_key(DEMO_KEY))
    )
}

/// A long, stable system prompt (well over 1,024 tokens) so prompt caching shows.
fn handbook() -> String {
    let mut s = String::from(
        "You are the support assistant of Example Corp. Follow the handbook below exactly.\n",
    );
    for i in 1..=120 {
        let _ = writeln!(
            s,
            "Rule {i}: answer politely, cite the relevant policy section, and never invent order numbers."
        );
    }
    s
}

struct Demo {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Demo {
    async fn post(
        &self,
        path: &str,
        sla: Option<&str>,
        body: serde_json::Value,
    ) -> Result<(u16, Bytes), CliError> {
        let mut req = http::Request::post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {DEMO_KEY}"))
            .header("content-type", "application/json");
        if let Some(s) = sla {
            req = req.header("x-sla", s);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| CliError::Setup(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| CliError::Setup(format!("demo request failed: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::Setup(format!("demo response failed: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }
}

fn chat(model: &str, system: &str, user: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user}
        ]
    })
}

/// The triage function the demo's tool-calling request offers.
fn route_ticket_tool() -> serde_json::Value {
    serde_json::json!([{"type": "function", "function": {
        "name": "route_ticket",
        "description": "Route a support ticket to a queue",
        "parameters": {
            "type": "object",
            "properties": {
                "queue": {"type": "string", "enum": ["refund", "bug"]},
                "priority": {"type": "integer", "minimum": 1, "maximum": 3}
            },
            "required": ["queue", "priority"],
            "additionalProperties": false
        },
        "strict": true
    }}])
}

pub async fn run(out: &mut impl std::io::Write) -> Result<(), CliError> {
    let sim = start_simulator(SimConfig::default()).await?;
    let mut config = Config::load(None, &|_| None)?;
    config.use_simulator(&sim.base_url());
    let db = std::env::temp_dir().join(format!("sluice-demo-{}.db", std::process::id()));
    config.store = format!("sqlite://{}", db.display());
    // A demo cannot wait ten minutes: flush batches after a second and poll often.
    config.batch.max_wait = std::time::Duration::from_secs(1);
    config.batch.poll_interval = std::time::Duration::from_millis(100);
    let policies = PolicySet::from_sources(&[("demo-team.toml".into(), demo_policy())])?;
    let loaded = Loaded {
        config,
        policies,
        prices: PriceTable::builtin(),
    };
    let listener = bind(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::Setup("address".into()))?,
    )
    .await?;
    let addr = listener.local_addr().map_err(|source| CliError::Io {
        context: "gateway address".into(),
        source,
    })?;
    let metrics = std::sync::Arc::new(
        crate::metrics::Metrics::new(prometheus::Registry::new())
            .map_err(|e| CliError::Setup(e.to_string()))?,
    );
    let opts = crate::server::ServerOptions::new(&loaded.config, None);
    let app = crate::cli::build(loaded, metrics.clone()).await?;
    // The gateway runs as a tracked task beside the workload; stopping it shuts it down.
    let gateway = crate::lifecycle::Tasks::new("demo gateway");
    let stop = gateway.token().clone().cancelled_owned();
    let server = gateway.spawn(crate::cli::run_app(listener, app, opts, stop));

    let demo = Demo {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{addr}"),
    };
    let handbook = handbook();
    let mut failures = 0u32;
    let mut check = |(status, _): (u16, Bytes)| {
        if status != 200 {
            failures += 1;
        }
    };
    writeln!(
        out,
        "sluice demo: gateway http://{addr} -> simulated provider {}",
        sim.base_url()
    )
    .ok();
    writeln!(
        out,
        "sending a mixed workload (interactive, streaming, semi with a tool call, batch, cached, embeddings)...\n"
    )
    .ok();
    // Batch traffic: the callers wait on held connections while Sluice accumulates their
    // requests into one upstream batch (sent together, answered together).
    let batch_calls = (0..12).map(|i| {
        let body = chat(
            "gpt-4.1-mini",
            &handbook,
            &format!("Summarise yesterday's ticket #{i}."),
            i % 3 == 2,
        );
        demo.post("/v1/chat/completions", Some("batch"), body)
    });
    let interactive_calls = async {
        let mut results = Vec::new();
        for i in 0..16 {
            let body = chat(
                "gpt-4o-mini",
                &handbook,
                &format!("Customer {i}: where is my parcel?"),
                i % 4 == 3,
            );
            results.push(
                demo.post("/v1/chat/completions", Some("interactive"), body)
                    .await,
            );
        }
        results
    };
    let (batch_results, interactive_results) = tokio::join!(
        futures_util::future::join_all(batch_calls),
        interactive_calls
    );
    for r in batch_results.into_iter().chain(interactive_results) {
        check(r?);
    }
    for i in 0..8 {
        let mut body = chat(
            "gpt-5-mini",
            &handbook,
            &format!("Classify ticket #{i}: refund or bug?"),
            i % 2 == 0,
        );
        // One triage answer comes back as a tool call (structured, schema-valid arguments).
        let tool = i == 1;
        if tool {
            body["tools"] = route_ticket_tool();
            body["tool_choice"] = serde_json::json!("required");
        }
        let (status, bytes) = demo
            .post("/v1/chat/completions", Some("semi"), body)
            .await?;
        let called = !tool
            || serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v["choices"][0]["finish_reason"] == "tool_calls");
        check((if called { status } else { 0 }, bytes));
    }
    for i in 0..10 {
        let body = chat(
            "gpt-5",
            "You answer FAQs in one sentence.",
            [
                "How do I reset my password?",
                "What are your opening hours?",
            ][i % 2],
            false,
        );
        check(demo.post("/v1/chat/completions", None, body).await?);
    }
    for i in 0..6 {
        let body = serde_json::json!({"model": "text-embedding-3-small", "input": [format!("document {i} part a"), format!("document {i} part b")], "encoding_format": "float"});
        check(demo.post("/v1/embeddings", Some("batch"), body).await?);
    }

    // Claude: OpenAI-SDK requests translated to the Messages API (with automatic cache
    // breakpoints), and Anthropic-native requests that can wait going through Message Batches.
    for i in 0..6 {
        let body = chat(
            "claude-sonnet-4-5",
            &handbook,
            &format!("Is claim #{i} covered?"),
            i % 3 == 2,
        );
        check(
            demo.post("/v1/chat/completions", Some("interactive"), body)
                .await?,
        );
    }
    let claude_batch = (0..4).map(|i| {
        let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 128, "system": handbook,
            "messages": [{"role": "user", "content": format!("Summarise claim file #{i}.")}]});
        demo.post("/v1/messages", Some("batch"), body)
    });
    for r in futures_util::future::join_all(claude_batch).await {
        check(r?);
    }

    // Gemini: native google-genai requests with minutes to spare go to Flex (first: once a
    // Gemini batch turnaround is observed, seconds here, `semi` would batch them too), and
    // OpenAI-SDK requests that can wait go through Gemini Batch Mode (translated both ways).
    for i in 0..3 {
        let body = serde_json::json!({"contents": [{"role": "user", "parts": [{"text": format!("Tag the attachment of mail #{i}.")}]}]});
        check(
            demo.post(
                "/v1beta/models/gemini-2.5-flash:generateContent",
                Some("semi"),
                body,
            )
            .await?,
        );
    }

    let gemini_batch = (0..4).map(|i| {
        let body = chat(
            "gemini-2.5-flash",
            "You tag documents with three keywords.",
            &format!("Tag document #{i}."),
            false,
        );
        demo.post("/v1/chat/completions", Some("batch"), body)
    });
    for r in futures_util::future::join_all(gemini_batch).await {
        check(r?);
    }
    let rows = metrics.summary();
    write!(out, "{}", render(&rows)).ok();
    writeln!(
        out,
        "\nbatch: deferred into one upstream Batch API / Message Batches call at 50% off; semi: flex tier where the model has it; faq-bot repeats: response cache; claims-assistant: Claude with automatic cache breakpoints; doc-tagging: Gemini Batch Mode and Gemini Flex; ticket-triage: one ticket is routed by a tool call."
    )
    .ok();
    gateway.stop();
    let _ = server.await;
    sim.stop().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    if failures > 0 {
        return Err(CliError::Setup(format!("{failures} demo requests failed")));
    }
    Ok(())
}

/// The savings table: one row per route and tier, then the total.
pub fn render(rows: &[SummaryRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<15} {:>8} {:>12} {:>12} {:>12} {:>8}",
        "route", "tier", "requests", "cost_usd", "baseline_usd", "savings_usd", "saved"
    );
    let mut total = SummaryRow {
        route: "TOTAL".into(),
        ..SummaryRow::default()
    };
    for r in rows {
        total.requests += r.requests;
        total.cost_usd += r.cost_usd;
        total.baseline_usd += r.baseline_usd;
    }
    for r in rows.iter().chain(std::iter::once(&total)) {
        let savings = r.baseline_usd - r.cost_usd;
        let pct = if r.baseline_usd > 0.0 {
            100.0 * savings / r.baseline_usd
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "{:<18} {:<15} {:>8} {:>12.6} {:>12.6} {:>12.6} {:>7.1}%",
            r.route, r.tier, r.requests, r.cost_usd, r.baseline_usd, savings, pct
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_totals_rows() {
        let rows = vec![
            SummaryRow {
                route: "a".into(),
                tier: "interactive".into(),
                requests: 2,
                cost_usd: 1.0,
                baseline_usd: 2.0,
            },
            SummaryRow {
                route: "b".into(),
                tier: "response_cache".into(),
                requests: 1,
                cost_usd: 0.0,
                baseline_usd: 1.0,
            },
        ];
        let t = render(&rows);
        assert!(t.contains("TOTAL"), "{t}");
        let total = t.lines().last().unwrap();
        assert!(total.contains(" 3 ") && total.contains("66.7%"), "{total}");
    }

    #[test]
    fn demo_policy_is_valid() {
        let set = PolicySet::from_sources(&[("demo.toml".into(), demo_policy())]).unwrap();
        assert!(!set.is_open());
        assert_eq!(&*set.identify(Some(DEMO_KEY)).unwrap().name, "demo-team");
    }
}
