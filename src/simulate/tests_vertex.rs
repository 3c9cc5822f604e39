//! In-process tests of Vertex AI batch prediction: the OAuth token endpoint, Cloud
//! Storage, jobs over paused time, cancel, cutoff, expiry, shuffled output and faults.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::tests::Answer;
use super::tests_gemini::{call, google_error};
use super::{SimConfig, Simulator, VertexConfig};

const JOBS: &str = "/v1/projects/my-project/locations/us-central1/batchPredictionJobs";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(header: &Value, claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", enc(header), enc(claims))
}

fn claims(iat: i64, exp: i64) -> Value {
    json!({"iss": "sa@my-project.iam.gserviceaccount.com",
           "scope": "https://www.googleapis.com/auth/cloud-platform",
           "aud": "https://oauth2.googleapis.com/token", "iat": iat, "exp": exp})
}

async fn grant(sim: &Simulator, assertion: &str, grant_type: &str) -> Answer {
    let body = format!(
        "grant_type={}&assertion={assertion}",
        grant_type.replace(':', "%3A")
    );
    call(
        sim,
        Method::POST,
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
    )
    .await
}

async fn token(sim: &Simulator) -> String {
    let t = now();
    let a = grant(
        sim,
        &jwt(
            &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
            &claims(t, t + 3600),
        ),
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    format!("Bearer {}", v["access_token"].as_str().unwrap())
}

async fn send(
    sim: &Simulator,
    auth: &str,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> Answer {
    call(
        sim,
        method,
        path,
        &[
            ("authorization", auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

async fn upload(sim: &Simulator, auth: &str, bucket: &str, name: &str, data: &str) -> Answer {
    let path = format!(
        "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
        name.replace('/', "%2F").replace(' ', "%20")
    );
    call(
        sim,
        Method::POST,
        &path,
        &[
            ("authorization", auth),
            ("content-type", "application/jsonl"),
        ],
        data.to_owned(),
    )
    .await
}

fn line(id: &str, text: &str) -> String {
    json!({"request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                       "labels": {"gw_id": id}}})
    .to_string()
}

fn job_body(input: &str, out: &str) -> String {
    json!({"displayName": "gwb_0001", "model": "publishers/google/models/gemini-2.5-flash",
           "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [input]}},
           "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": out}}})
    .to_string()
}

fn vertex(config: VertexConfig) -> SimConfig {
    SimConfig {
        vertex: config,
        ..SimConfig::default()
    }
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Uploads `n` rows and creates a job; returns its `/v1/...` path.
async fn start_job(sim: &Simulator, auth: &str, n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| line(&format!("r{i}"), &format!("question {i}")))
        .collect();
    let up = upload(sim, auth, "sim-bucket", "in/b.jsonl", &rows.join("\n")).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let a = send(
        sim,
        auth,
        Method::POST,
        JOBS,
        job_body("gs://sim-bucket/in/b.jsonl", "gs://sim-bucket/out/b/"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["state"], "JOB_STATE_QUEUED");
    format!("/v1/{}", v["name"].as_str().unwrap())
}

async fn get_job(sim: &Simulator, auth: &str, path: &str) -> Value {
    let a = send(sim, auth, Method::GET, path, Bytes::new()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

/// The prediction lines under the job's output directory (listed, then downloaded).
async fn predictions(sim: &Simulator, auth: &str, job: &Value) -> Vec<Value> {
    let dir = job["outputInfo"]["gcsOutputDirectory"].as_str().unwrap();
    let prefix = dir.strip_prefix("gs://sim-bucket/").unwrap();
    let list = send(
        sim,
        auth,
        Method::GET,
        &format!(
            "/storage/v1/b/sim-bucket/o?prefix={}",
            prefix.replace('/', "%2F").replace(':', "%3A")
        ),
        Bytes::new(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let Some(items) = list.json()["items"].as_array().cloned() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let name = item["name"]
            .as_str()
            .unwrap()
            .replace('/', "%2F")
            .replace(':', "%3A");
        let a = send(
            sim,
            auth,
            Method::GET,
            &format!("/storage/v1/b/sim-bucket/o/{name}?alt=media"),
            Bytes::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        out.extend(
            a.text()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    out
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["request"]["labels"]["gw_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn token_endpoint_checks_the_grant_and_the_jwt() {
    let sim = Simulator::new(SimConfig::default());
    let t = now();
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let cases = [
        (grant(&sim, &jwt(&header, &claims(t, t + 3600)), "client_credentials").await, "unsupported_grant_type"),
        (grant(&sim, "not-a-jwt", bearer).await, "invalid_grant"),
        (grant(&sim, "e30.e30", bearer).await, "invalid_grant"),
        (grant(&sim, &jwt(&json!({"alg": "HS256"}), &claims(t, t + 3600)), bearer).await, "invalid_grant"),
        (grant(&sim, &jwt(&header, &claims(t - 7200, t - 3600)), bearer).await, "invalid_grant"),
        (grant(&sim, &jwt(&header, &claims(t, t + 3601)), bearer).await, "invalid_grant"),
        (grant(&sim, &jwt(&header, &json!({"iss": "x", "scope": "https://www.googleapis.com/auth/cloud-platform", "aud": "https://evil/token", "iat": t, "exp": t + 60})), bearer).await, "invalid_grant"),
        (grant(&sim, &jwt(&header, &json!({"iss": "x", "scope": "email", "aud": "https://oauth2.googleapis.com/token", "iat": t, "exp": t + 60})), bearer).await, "invalid_scope"),
    ];
    for (a, error) in cases {
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        let v = a.json();
        assert_eq!(v["error"], error, "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    // Not a form body.
    let a = call(
        &sim,
        Method::POST,
        "/token",
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(a.json()["error"], "invalid_request");
    token(&sim).await;
}

#[tokio::test(start_paused = true)]
async fn routes_need_a_live_issued_token() {
    let sim = Simulator::new(SimConfig::default());
    for auth in ["", "Bearer ya29.made-up"] {
        let a = send(&sim, auth, Method::GET, JOBS, Bytes::new()).await;
        google_error(&a, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
        let g = send(
            &sim,
            auth,
            Method::GET,
            "/storage/v1/b/sim-bucket/o",
            Bytes::new(),
        )
        .await;
        assert_eq!(g.status, StatusCode::UNAUTHORIZED);
        assert_eq!(g.json()["error"]["errors"][0]["reason"], "required");
    }
    let auth = token(&sim).await;
    assert_eq!(
        send(&sim, &auth, Method::GET, JOBS, Bytes::new())
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::advance(Duration::from_secs(3599)).await;
    let a = send(&sim, &auth, Method::GET, JOBS, Bytes::new()).await;
    google_error(&a, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    // Logged like every other request.
    assert!(sim.requests().iter().any(|r| r.uri.path() == "/token"));
}

#[tokio::test]
async fn online_generate_content_answers_as_the_gemini_api_with_a_token() {
    let sim = Simulator::new(SimConfig::default());
    let path =
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash";
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"online please"}]}]}"#;
    // A Gemini API key is no OAuth token.
    let a = call(
        &sim,
        Method::POST,
        &format!("{path}:generateContent"),
        &[
            ("x-goog-api-key", "k"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    google_error(&a, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let auth = token(&sim).await;
    let a = send(
        &sim,
        &auth,
        Method::POST,
        &format!("{path}:generateContent"),
        body,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("online please"), "{v}");
    assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    // The same answer as the Gemini API's generateContent.
    let g = call(
        &sim,
        Method::POST,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[
            ("x-goog-api-key", "k"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    let gv = g.json();
    assert_eq!(gv["candidates"], v["candidates"]);
    assert_eq!(gv["usageMetadata"], v["usageMetadata"]);
    let a = send(
        &sim,
        &auth,
        Method::POST,
        &format!("{path}:streamGenerateContent?alt=sse"),
        body,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().matches("data: ").count() > 1, "{}", a.text());
    // Unknown models and methods: 404.
    let a = send(
        &sim,
        &auth,
        Method::POST,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gpt-4o:generateContent",
        body,
    )
    .await;
    google_error(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    let a = send(
        &sim,
        &auth,
        Method::GET,
        &format!("{path}:generateContent"),
        "",
    )
    .await;
    google_error(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test(start_paused = true)]
async fn gcs_upload_list_pages_download_and_errors() {
    let sim = Simulator::new(SimConfig::default());
    let auth = token(&sim).await;
    let up = upload(&sim, &auth, "sim-bucket", "in/a b.jsonl", "x\n").await;
    let meta = up.json();
    assert_eq!(meta["kind"], "storage#object");
    assert_eq!(meta["name"], "in/a b.jsonl");
    assert_eq!(meta["size"], "2");
    assert_eq!(meta["contentType"], "application/jsonl");
    for name in ["in/c.jsonl", "in/d.jsonl", "other.txt"] {
        upload(&sim, &auth, "sim-bucket", name, "y").await;
    }
    let page1 = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o?prefix=in%2F&maxResults=2",
        Bytes::new(),
    )
    .await
    .json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let tok = page1["nextPageToken"].as_str().unwrap();
    let page2 = send(
        &sim,
        &auth,
        Method::GET,
        &format!("/storage/v1/b/sim-bucket/o?prefix=in%2F&maxResults=2&pageToken={tok}"),
        Bytes::new(),
    )
    .await
    .json();
    assert_eq!(page2["items"][0]["name"], "in/d.jsonl");
    assert!(page2.get("nextPageToken").is_none());
    let dl = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o/in%2Fa%20b.jsonl?alt=media",
        Bytes::new(),
    )
    .await;
    assert_eq!(dl.text(), "x\n");
    let md = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o/in%2Fa%20b.jsonl",
        Bytes::new(),
    )
    .await;
    assert_eq!(md.json()["bucket"], "sim-bucket");
    let none = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o?prefix=zzz",
        Bytes::new(),
    )
    .await
    .json();
    assert!(none.get("items").is_none());
    let missing = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o/nope?alt=media",
        Bytes::new(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bucket = upload(&sim, &auth, "no-such-bucket", "a", "x").await;
    assert_eq!(bucket.status, StatusCode::NOT_FOUND);
    assert_eq!(bucket.json()["error"]["errors"][0]["reason"], "notFound");
}

#[tokio::test(start_paused = true)]
async fn job_runs_and_writes_shuffled_predictions() {
    let sim = Simulator::new(vertex(VertexConfig {
        queue_delay: Duration::from_secs(100),
        run_time: Duration::from_secs(1000),
        ..VertexConfig::default()
    }));
    let auth = token(&sim).await;
    let path = start_job(&sim, &auth, 6).await;
    assert!(path.contains("/projects/") && !path.contains("my-project"));
    assert_eq!(
        get_job(&sim, &auth, &path).await["state"],
        "JOB_STATE_QUEUED"
    );
    tokio::time::advance(Duration::from_secs(100)).await;
    let pending = get_job(&sim, &auth, &path).await;
    assert_eq!(pending["state"], "JOB_STATE_PENDING");
    assert!(pending["startTime"].is_string());
    tokio::time::advance(Duration::from_secs(100)).await;
    assert_eq!(
        get_job(&sim, &auth, &path).await["state"],
        "JOB_STATE_RUNNING"
    );
    tokio::time::advance(Duration::from_secs(900)).await;
    let done = get_job(&sim, &auth, &path).await;
    assert_eq!(done["state"], "JOB_STATE_SUCCEEDED", "{done}");
    assert_eq!(done["completionStats"]["successfulCount"], "6");
    assert!(done.get("error").is_none());
    let lines = predictions(&sim, &auth, &done).await;
    let got = ids(&lines);
    assert_eq!(got.len(), 6);
    assert_ne!(
        got,
        (0..6).map(|i| format!("r{i}")).collect::<Vec<_>>(),
        "output must not be in input order"
    );
    for l in &lines {
        assert_eq!(l["status"], "");
        assert!(l["processed_time"].is_string());
        let id = l["request"]["labels"]["gw_id"].as_str().unwrap();
        let n = id.strip_prefix('r').unwrap();
        let text = l["response"]["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(text.contains(&format!("question {n}")), "{text}");
    }
    // Cancel of a finished job; then delete.
    let c = send(
        &sim,
        &auth,
        Method::POST,
        &format!("{path}:cancel"),
        Bytes::new(),
    )
    .await;
    google_error(&c, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    let d = send(&sim, &auth, Method::DELETE, &path, Bytes::new()).await;
    assert_eq!(d.json()["done"], true);
    let gone = send(&sim, &auth, Method::GET, &path, Bytes::new()).await;
    google_error(&gone, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test(start_paused = true)]
async fn cancel_keeps_completed_rows_and_create_is_not_idempotent() {
    let sim = Simulator::new(vertex(VertexConfig {
        run_time: Duration::from_secs(1000),
        ..VertexConfig::default()
    }));
    let auth = token(&sim).await;
    let path = start_job(&sim, &auth, 10).await;
    let again = send(
        &sim,
        &auth,
        Method::POST,
        JOBS,
        job_body("gs://sim-bucket/in/b.jsonl", "gs://sim-bucket/out/b2/"),
    )
    .await
    .json();
    assert_ne!(format!("/v1/{}", again["name"].as_str().unwrap()), path);
    // Rows complete evenly over [100 s, 1000 s): 5 done at 550 s.
    tokio::time::advance(Duration::from_secs(550)).await;
    let d = send(&sim, &auth, Method::DELETE, &path, Bytes::new()).await;
    google_error(&d, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    let c = send(
        &sim,
        &auth,
        Method::POST,
        &format!("{path}:cancel"),
        Bytes::new(),
    )
    .await;
    assert_eq!(c.json(), json!({}));
    let job = get_job(&sim, &auth, &path).await;
    assert_eq!(job["state"], "JOB_STATE_CANCELLED");
    assert_eq!(job["error"]["code"], 1);
    assert_eq!(job["completionStats"]["successfulCount"], "5");
    assert_eq!(job["completionStats"]["incompleteCount"], "5");
    assert_eq!(predictions(&sim, &auth, &job).await.len(), 5);
    let list = send(
        &sim,
        &auth,
        Method::GET,
        &format!("{JOBS}?pageSize=1"),
        Bytes::new(),
    )
    .await
    .json();
    assert_eq!(list["batchPredictionJobs"].as_array().unwrap().len(), 1);
    assert!(list["nextPageToken"].is_string());
}

#[tokio::test(start_paused = true)]
async fn run_cutoff_exports_partial_rows_and_queue_expiry_has_none() {
    let sim = Simulator::new(vertex(VertexConfig {
        run_time: hours(40),
        ..VertexConfig::default()
    }));
    let auth = token(&sim).await;
    let path = start_job(&sim, &auth, 12).await;
    tokio::time::advance(hours(24)).await;
    let auth = token(&sim).await;
    let job = get_job(&sim, &auth, &path).await;
    assert_eq!(job["state"], "JOB_STATE_CANCELLED", "{job}");
    assert_eq!(job["error"]["code"], 4);
    // Rows complete over [4 h, 40 h): 20/36 of 12 = 6 by 24 h.
    assert_eq!(job["completionStats"]["successfulCount"], "6");
    assert_eq!(predictions(&sim, &auth, &job).await.len(), 6);

    let sim = Simulator::new(vertex(VertexConfig {
        queue_delay: hours(100),
        ..VertexConfig::default()
    }));
    let auth = token(&sim).await;
    let path = start_job(&sim, &auth, 2).await;
    tokio::time::advance(hours(72) - Duration::from_secs(1)).await;
    let auth = token(&sim).await;
    assert_eq!(
        get_job(&sim, &auth, &path).await["state"],
        "JOB_STATE_QUEUED"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let job = get_job(&sim, &auth, &path).await;
    assert_eq!(job["state"], "JOB_STATE_EXPIRED");
    assert!(job.get("outputInfo").is_none());
    let list = send(
        &sim,
        &auth,
        Method::GET,
        "/storage/v1/b/sim-bucket/o?prefix=out%2F",
        Bytes::new(),
    )
    .await
    .json();
    assert!(list.get("items").is_none(), "{list}");
}

#[tokio::test(start_paused = true)]
async fn missing_input_bad_rows_and_forced_faults() {
    let sim = Simulator::new(vertex(VertexConfig {
        run_time: Duration::ZERO,
        ..VertexConfig::default()
    }));
    let auth = token(&sim).await;
    // A missing input object fails the job, not the create call.
    let a = send(
        &sim,
        &auth,
        Method::POST,
        JOBS,
        job_body("gs://sim-bucket/in/missing.jsonl", "gs://sim-bucket/out/m/"),
    )
    .await;
    let path = format!("/v1/{}", a.json()["name"].as_str().unwrap());
    let job = get_job(&sim, &auth, &path).await;
    assert_eq!(job["state"], "JOB_STATE_FAILED");
    assert_eq!(job["error"]["code"], 5);
    // Create validation.
    let bad = send(&sim, &auth, Method::POST, JOBS, json!({"displayName": "x", "model": "publishers/google/models/gemini-2.5-flash", "bogus": 1}).to_string()).await;
    google_error(&bad, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    // An invalid row and a line error: partially succeeded.
    let rows = [
        line("ok", "fine"),
        json!({"request": {"contents": []}, "key": "k"}).to_string(),
        line("boom", "x"),
    ]
    .join("\n");
    upload(&sim, &auth, "sim-bucket", "in/p.jsonl", &rows).await;
    let f = call(
        &sim,
        Method::POST,
        "/sim/batch-faults",
        &[],
        r#"{"line_errors": ["boom"]}"#,
    )
    .await;
    assert_eq!(f.status, StatusCode::OK);
    let a = send(
        &sim,
        &auth,
        Method::POST,
        JOBS,
        job_body("gs://sim-bucket/in/p.jsonl", "gs://sim-bucket/out/p/"),
    )
    .await;
    let path = format!("/v1/{}", a.json()["name"].as_str().unwrap());
    let job = get_job(&sim, &auth, &path).await;
    assert_eq!(job["state"], "JOB_STATE_PARTIALLY_SUCCEEDED", "{job}");
    assert_eq!(job["completionStats"]["failedCount"], "2");
    let lines = predictions(&sim, &auth, &job).await;
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["status"] != "" && l.get("response").is_none())
            .count(),
        2
    );
    // Forced failure, expiry and 429.
    call(
        &sim,
        Method::POST,
        "/sim/batch-faults",
        &[],
        r#"{"fail_validation": 1, "expire": 1, "create_429": 1}"#,
    )
    .await;
    let body = job_body("gs://sim-bucket/in/p.jsonl", "gs://sim-bucket/out/q/");
    let limited = send(&sim, &auth, Method::POST, JOBS, body.clone()).await;
    google_error(
        &limited,
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
    );
    let failed = send(&sim, &auth, Method::POST, JOBS, body.clone())
        .await
        .json();
    let job = get_job(
        &sim,
        &auth,
        &format!("/v1/{}", failed["name"].as_str().unwrap()),
    )
    .await;
    assert_eq!(job["state"], "JOB_STATE_FAILED");
    assert_eq!(job["error"]["code"], 13);
    let expiring = send(&sim, &auth, Method::POST, JOBS, body).await.json();
    let epath = format!("/v1/{}", expiring["name"].as_str().unwrap());
    assert_eq!(
        get_job(&sim, &auth, &epath).await["state"],
        "JOB_STATE_QUEUED"
    );
    tokio::time::advance(hours(72)).await;
    let auth = token(&sim).await;
    assert_eq!(
        get_job(&sim, &auth, &epath).await["state"],
        "JOB_STATE_EXPIRED"
    );
}
