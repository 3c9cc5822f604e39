//! Micro-benchmarks of the per-request work on the interactive path, each beside a naive
//! baseline where one makes sense: SLA parsing, policy lookup, triage, request inspection,
//! usage extraction and pricing. Run with `cargo bench --bench hot_path`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice::inspect::{Additions, cache_key, inspect, rewrite};
use sluice::policy::{PolicySet, hash_key};
use sluice::pricing::{PriceTable, price};
use sluice::sla::Sla;
use sluice::triage::{Capabilities, Facts, triage};
use sluice::types::{Endpoint, Tier};

fn policies() -> PolicySet {
    let mut files = Vec::new();
    for i in 0..50 {
        files.push((
            format!("team{i}.toml"),
            format!(
                "[client]\nname = \"team{i}\"\nkeys = [\"{}\"]\n\n[[route]]\nname = \"a\"\nmodels = [\"gpt-4o*\"]\n\n[[route]]\nname = \"b\"\npaths = [\"/v1/embeddings\"]\n",
                hex::encode(hash_key(&format!("sk-team-{i}")))
            ),
        ));
    }
    PolicySet::from_sources(&files).unwrap()
}

fn chat_body(system_chars: usize) -> Bytes {
    let system = "You are a careful support classifier. ".repeat(system_chars / 38 + 1);
    Bytes::from(
        serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "My invoice is wrong, please help."}
            ]
        })
        .to_string(),
    )
}

fn benches(c: &mut Criterion) {
    c.bench_function("sla/parse_duration", |b| {
        b.iter(|| Sla::parse(black_box("15m")))
    });
    c.bench_function("sla/parse_named", |b| {
        b.iter(|| Sla::parse(black_box("interactive")))
    });

    let set = policies();
    c.bench_function("policy/identify_and_route", |b| {
        b.iter(|| {
            let client = set.identify(Some(black_box("sk-team-37"))).unwrap();
            client
                .route("/v1/chat/completions", black_box("gpt-4o-mini"), None)
                .unwrap()
                .name
                .len()
        })
    });
    let client = set.identify(Some("sk-team-37")).unwrap();
    let route = client
        .route("/v1/chat/completions", "gpt-4o-mini", None)
        .unwrap();
    let facts = Facts {
        endpoint: Endpoint::ChatCompletions,
        stream: false,
        flex_capable: true,
    };
    c.bench_function("triage/decide", |b| {
        b.iter(|| {
            triage(
                route,
                black_box(&facts),
                black_box(Sla::SEMI),
                &Capabilities::INTERACTIVE_ONLY,
            )
        })
    });

    for (name, chars) in [
        ("inspect/chat_1KiB", 1024),
        ("inspect/chat_16KiB", 16 * 1024),
    ] {
        let body = chat_body(chars);
        c.bench_function(name, |b| {
            b.iter(|| inspect(Endpoint::ChatCompletions, black_box(&body)).unwrap())
        });
    }
    let body = chat_body(16 * 1024);
    // Baseline: what a full serde_json::Value parse of the same body costs.
    c.bench_function("inspect/baseline_value_parse_16KiB", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    let facts16 = inspect(Endpoint::ChatCompletions, &body).unwrap();
    c.bench_function("inspect/rewrite_16KiB", |b| {
        b.iter(|| {
            let add = Additions {
                prompt_cache_key: Some(cache_key("team37", "a", facts16.prefix_hash.unwrap())),
                include_usage: true,
                flex: false,
            };
            rewrite(black_box(&body), &facts16, &add)
        })
    });

    let answer = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4.1-mini","choices":[{"index":0,"message":{"role":"assistant","content":"billing"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1920}}}"#;
    c.bench_function("usage/from_json", |b| {
        b.iter(|| sluice::usage::from_json(black_box(answer)))
    });
    let chunk = br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}],"usage":null}"#;
    c.bench_function("usage/content_chunk_skip", |b| {
        b.iter(|| sluice::usage::from_event_data(black_box(chunk)))
    });

    let table = PriceTable::builtin();
    let usage = sluice::usage::from_json(answer).unwrap();
    c.bench_function("pricing/lookup_and_price", |b| {
        b.iter(|| {
            let (_, p) = table.get(black_box("gpt-4.1-mini-2025-04-14")).unwrap();
            price(p, Tier::Interactive, black_box(&usage))
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
