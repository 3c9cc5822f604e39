//! The request head, as a stranger or an attacker sends it: repeated and conflicting
//! headers, odd `Prefer` forms, idempotency keys replayed with other requests, and errors
//! found before the body is read answered to clients that are still sending it.

mod common;

use std::time::Duration;

use common::{Gateway, keyed_policy};
use http::StatusCode;
use sluice::simulate::SimConfig;

const KEY: &str = "sk-team";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");
const CHAT: &str = "/v1/chat/completions";
const SIZE: usize = 200_000;

fn chat(user: &str) -> String {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]})
        .to_string()
}

fn error(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    v["error"].clone()
}

async fn start(sim: SimConfig) -> Gateway {
    Gateway::start_sim(
        sim,
        vec![keyed_policy(
            "team",
            KEY,
            "[[route]]\nname = \"nightly\"\nmodels = [\"gpt-4o-mini\"]\n",
        )],
        |_| {},
    )
    .await
}

fn fast() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_headers_are_400s_naming_the_header() {
    let gw = start(fast()).await;
    let body = chat("hi");
    for (headers, param) in [
        (
            vec![AUTH, ("x-sla", "24h"), ("x-sla", "interactive")],
            "x-sla",
        ),
        (
            vec![AUTH, ("authorization", "Bearer sk-other")],
            "authorization",
        ),
        (vec![AUTH, ("x-api-key", "sk-other")], "authorization"),
        (vec![AUTH, ("x-sluice-route", "nope")], "x-sluice-route"),
        (
            vec![
                AUTH,
                ("x-sluice-route", "nightly"),
                ("x-sluice-route", "default"),
            ],
            "x-sluice-route",
        ),
        (vec![AUTH, ("prefer", "wait=soon")], "prefer"),
        (
            vec![AUTH, ("idempotency-key", "a"), ("idempotency-key", "b")],
            "idempotency-key",
        ),
        (vec![AUTH, ("idempotency-key", "")], "idempotency-key"),
        (
            vec![AUTH, ("idempotency-key", "has space")],
            "idempotency-key",
        ),
        (
            vec![AUTH, ("idempotency-key", "\"unterminated\\\"")],
            "idempotency-key",
        ),
    ] {
        let (s, _, b) = gw.post(CHAT, &headers, &body).await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{headers:?}: {}",
            String::from_utf8_lossy(&b)
        );
        assert_eq!(error(&b)["param"], param, "{headers:?}");
        assert_eq!(error(&b)["type"], "invalid_request_error");
    }
    let long = "k".repeat(256);
    let (s, _, _) = gw
        .post(CHAT, &[AUTH, ("idempotency-key", &long)], &body)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Non-ASCII bytes in a header the SDKs never send that way.
    let req = http::Request::post(gw.url(CHAT))
        .header("authorization", "Bearer sk-team")
        .header(
            "x-sluice-route",
            http::HeaderValue::from_bytes(b"nightl\xc3\xbf").unwrap(),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
        .unwrap();
    let (s, _, b) = gw.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error(&b)["param"], "x-sluice-route");
    // The same value twice is not ambiguous; neither is the same key in both headers.
    for headers in [
        vec![AUTH, ("x-sla", "interactive"), ("x-sla", "interactive")],
        vec![AUTH, ("x-api-key", KEY)],
        vec![AUTH, AUTH],
        vec![AUTH, ("x-sluice-route", "nightly")],
    ] {
        let (s, _, b) = gw.post(CHAT, &headers, &body).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{headers:?}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_is_parsed_as_rfc_7240_says() {
    let gw = start(fast()).await;
    for (i, prefer) in [
        vec!["respond-async"],
        vec!["respond-async; foo=bar"],
        vec!["return=minimal, Respond-Async"],
        vec!["return=minimal", "respond-async, wait=100"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut h = vec![AUTH, ("x-sla", "24h")];
        h.extend(prefer.iter().map(|p| ("prefer", *p)));
        let (s, headers, b) = gw.post(CHAT, &h, &chat(&format!("async {i}"))).await;
        assert_eq!(
            s,
            StatusCode::ACCEPTED,
            "{prefer:?}: {}",
            String::from_utf8_lossy(&b)
        );
        assert!(
            headers["location"]
                .to_str()
                .unwrap()
                .starts_with("/sluice/v1/jobs/job_")
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_turns_a_held_request_into_a_job_after_n_seconds() {
    // Batches take 30 s here; the caller will wait 1 s.
    let gw = start(SimConfig {
        batch_turnaround: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let (s, h, b) = gw
        .post(
            CHAT,
            &[AUTH, ("x-sla", "24h"), ("prefer", "wait=1")],
            &chat("wait"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(job["object"], "sluice.job");
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("/sluice/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_names_one_request() {
    let gw = start(fast()).await;
    let key = ("idempotency-key", "order-42");
    let h = [AUTH, ("x-sla", "24h"), ("prefer", "respond-async"), key];
    let (s, _, first) = gw.post(CHAT, &h, &chat("one")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    // The same request again: the same job. As a quoted sf-string too.
    for k in ["order-42", "\"order-42\""] {
        let h = [
            AUTH,
            ("x-sla", "24h"),
            ("prefer", "respond-async"),
            ("idempotency-key", k),
        ];
        let (s, _, again) = gw.post(CHAT, &h, &chat("one")).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let again: serde_json::Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(again["id"], first["id"]);
    }
    // Another body, another model, another endpoint: 422, never the first answer.
    let other_model = serde_json::json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "one"}]}).to_string();
    let embed = serde_json::json!({"model": "text-embedding-3-small", "input": "one"}).to_string();
    for (path, body, what) in [
        (CHAT, chat("two"), "body"),
        (CHAT, other_model, "model"),
        ("/v1/embeddings", embed, "endpoint"),
    ] {
        let (s, _, b) = gw.post(path, &h, &body).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            String::from_utf8_lossy(&b)
        );
        let e = error(&b);
        assert_eq!(e["code"], "idempotency_key_mismatch");
        assert!(e["message"].as_str().unwrap().contains(what), "{e}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_open_mode_a_guessed_key_gets_no_one_elses_answer() {
    let gw = Gateway::start_sim(fast(), vec![], |_| {}).await;
    let h = [("x-sla", "24h"), ("idempotency-key", "1")];
    let (s, _, b) = gw.post(CHAT, &h, &chat("alice's secret")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&b).contains("alice's secret"));
    let (s, _, b) = gw.post(CHAT, &h, &chat("mallory")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!String::from_utf8_lossy(&b).contains("alice"));
    gw.stop().await;
}

/// A 40 KB body behind a head the gateway refuses: the client still sending it must get
/// the JSON error, not a reset. curl 7.88 over h2c lost these before the body was drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_errors_reach_clients_still_sending_their_body() {
    let gw = start(fast()).await;
    let body = chat(&"x".repeat(SIZE));
    let file = std::env::temp_dir().join(format!("sluice-early-{}.json", std::process::id()));
    std::fs::write(&file, &body).unwrap();
    for (extra, path, status) in [
        (
            vec!["-H", "x-sla: soon", "-H", "authorization: Bearer sk-team"],
            CHAT,
            400,
        ),
        (vec![], CHAT, 401),
        (vec!["-H", "authorization: Bearer sk-team"], "/v1/nope", 404),
    ] {
        for http in ["--http2-prior-knowledge", "--http1.1"] {
            let mut cmd = std::process::Command::new("curl");
            cmd.args([
                "-sS",
                http,
                "--max-time",
                "20",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .args(&extra)
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(gw.url(path));
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{http} {path}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (json, code) = text.rsplit_once('\n').unwrap();
            assert_eq!(code, status.to_string(), "{http} {path}: {text}");
            assert_eq!(
                error(json.as_bytes())["type"],
                "invalid_request_error",
                "{http} {path}"
            );
        }
    }
    let _ = std::fs::remove_file(&file);
    gw.stop().await;
}

/// Headers reach the provider through an allow-list; who pays at OpenAI is the policy's
/// choice, not the caller's, unless the policy lets callers choose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_headers_reach_the_provider_and_the_policy_picks_who_pays() {
    let gw = Gateway::start_sim(
        fast(),
        vec![
            keyed_policy("team", KEY, ""),
            keyed_policy(
                "billed",
                "sk-billed",
                "openai_organization = \"org-policy\"\nopenai_project = \"proj_policy\"\n",
            ),
            keyed_policy("free", "sk-free", "allow_caller_openai_billing = true\n"),
        ],
        |_| {},
    )
    .await;
    let caller = [
        ("openai-organization", "org-caller"),
        ("openai-project", "proj_caller"),
        ("cookie", "session=secret"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-stainless-lang", "python"),
        ("user-agent", "OpenAI/Python 1.0"),
        ("openai-beta", "assistants=v2"),
        ("x-custom-thing", "1"),
    ];
    let mut seen = Vec::new();
    for key in ["sk-team", "sk-billed", "sk-free"] {
        let auth = format!("Bearer {key}");
        let mut h = vec![("authorization", auth.as_str())];
        h.extend(caller);
        let (s, _, b) = gw.post(CHAT, &h, &chat(key)).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let log = gw.sim_requests().await;
        seen.push(log.last().unwrap()["headers"].clone());
    }
    for h in &seen {
        for dropped in [
            "cookie",
            "x-forwarded-for",
            "x-custom-thing",
            "x-sla",
            "idempotency-key",
        ] {
            assert!(
                h.get(dropped).is_none(),
                "{dropped} reached the provider: {h}"
            );
        }
        assert_eq!(h["x-stainless-lang"], "python");
        assert_eq!(h["user-agent"], "OpenAI/Python 1.0");
        assert_eq!(h["openai-beta"], "assistants=v2");
        assert_ne!(
            h["authorization"], "Bearer sk-team",
            "the gateway key never goes upstream"
        );
    }
    // team: neither the caller's organization nor project.
    assert!(seen[0].get("openai-organization").is_none(), "{}", seen[0]);
    assert!(seen[0].get("openai-project").is_none());
    // billed: the policy's, whatever the caller said.
    assert_eq!(seen[1]["openai-organization"], "org-policy");
    assert_eq!(seen[1]["openai-project"], "proj_policy");
    // free: the caller's, as its policy allows.
    assert_eq!(seen[2]["openai-organization"], "org-caller");
    assert_eq!(seen[2]["openai-project"], "proj_caller");
    // A client that pays from its own project is not mixed into shared batches.
    let (s, h, _) = gw
        .post(
            CHAT,
            &[("authorization", "Bearer sk-billed"), ("x-sla", "24h")],
            &chat("later"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    gw.stop().await;
}

/// Requests the gateway refuses are counted, under closed label sets; an answer later
/// than the caller's `x-sla` is an SLA violation even on the interactive tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_and_late_interactive_answers_are_counted() {
    let gw = Gateway::start_sim(fast(), vec![keyed_policy("team", KEY, "")], |c| {
        c.max_body_bytes = 1024;
    })
    .await;
    let body = chat("hi");
    let (s, _, _) = gw
        .post(CHAT, &[("authorization", "Bearer sk-wrong")], &body)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = gw.post(CHAT, &[AUTH, ("x-sla", "soon")], &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = gw.post(CHAT, &[AUTH], "{\"model\": 5}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = gw.post(CHAT, &[AUTH], &chat(&"x".repeat(2000))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, _) = gw.post("/v1/nope", &[AUTH], &body).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let huge_model = serde_json::json!({"model": "m".repeat(10_000), "messages": []}).to_string();
    let (s, _, _) = gw.post(CHAT, &[AUTH], &huge_model).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // 500 ms allowed, the provider takes 1.5 s: answered, and counted late.
    let (s, _, _) = gw
        .post(
            CHAT,
            &[AUTH, ("x-sla", "500ms"), ("x-sim-latency-ms", "1500")],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = gw.post(CHAT, &[AUTH, ("x-sla", "30s")], &body).await;
    assert_eq!(s, StatusCode::OK);
    // The same for a claude model translated to the Messages API.
    let claude = serde_json::json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (s, _, b) = gw
        .post(
            CHAT,
            &[AUTH, ("x-sla", "500ms"), ("x-sim-latency-ms", "1500")],
            &claude,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));

    let m = gw.metrics().await;
    let count = |labels: &[(&str, &str)]| common::metric(&m, "sluice_requests_total", labels);
    assert_eq!(
        count(&[
            ("status", "401"),
            ("client", "unknown"),
            ("route", "none"),
            ("tier", "none")
        ]),
        1.0
    );
    assert_eq!(
        count(&[("status", "400"), ("client", "team"), ("tier", "none")]),
        2.0
    );
    assert_eq!(
        count(&[("status", "413"), ("client", "team"), ("model", "other")]),
        2.0
    );
    // A /v1 path is identified before it is refused: its 404 is the caller's.
    assert_eq!(count(&[("status", "404"), ("client", "team")]), 1.0);
    assert_eq!(count(&[("status", "200"), ("tier", "interactive")]), 3.0);
    assert_eq!(
        common::metric(&m, "sluice_sla_violations_total", &[("route", "default")]),
        2.0
    );
    // Every label value is from a closed set: no raw model name, path or key.
    assert!(!m.contains("mmmmmmmm") && !m.contains("/v1/nope") && !m.contains("sk-wrong"));
    gw.stop().await;
}
