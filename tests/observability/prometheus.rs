//! A real Prometheus for tests: finding `prometheus` and `promtool`, running promtool
//! checks, and a Prometheus child process on 127.0.0.1 (killed, its data removed, on drop)
//! with a small client for its HTTP API.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Paths of the Prometheus binaries.
pub struct Tools {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    /// Both binaries from PATH. Missing: a panic with instructions when
    /// `SLUICE_REQUIRE_PROMETHEUS=1` (CI), else a SKIPPED notice and `None`.
    pub fn find() -> Option<Tools> {
        match (which("prometheus"), which("promtool")) {
            (Some(prometheus), Some(promtool)) => Some(Tools {
                prometheus,
                promtool,
            }),
            _ => {
                let how = "install Prometheus and promtool: `apt-get install -y prometheus` \
                           (Debian/Ubuntu), or put both binaries from \
                           https://prometheus.io/download/ on PATH";
                if std::env::var("SLUICE_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
                    panic!(
                        "SLUICE_REQUIRE_PROMETHEUS=1 but prometheus/promtool are not on PATH: {how}"
                    );
                }
                eprintln!(
                    "SKIPPED tests/observability.rs: prometheus/promtool not on PATH ({how}; \
                     set SLUICE_REQUIRE_PROMETHEUS=1 to make this a failure)"
                );
                None
            }
        }
    }

    /// `promtool ARGS...` (with `stdin` piped in, if given); panics unless it exits 0.
    pub fn promtool(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(&self.promtool)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "promtool {} failed ({}):\n{text}",
            args.join(" "),
            out.status
        );
        text
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A running Prometheus scraping one target every second.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub base: String,
    client: HttpClient,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every 1 s (rules evaluated every 1 s from
    /// `rules`), waits for `/-/ready`. Retries on another port if the chosen one was taken.
    pub async fn start(tools: &Tools, target: SocketAddr, rules: &Path) -> Prometheus {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "sluice-prometheus-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("data")).unwrap();
            let q = |s: &str| serde_json::to_string(s).unwrap();
            let config = format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sluice\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [{}]\n",
                q(&rules.display().to_string()),
                q(&target.to_string())
            );
            let config_path = dir.join("prometheus.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.join("prometheus.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let port = free_port();
            let child = Command::new(&tools.prometheus)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
            let mut prom = Prometheus {
                child,
                dir,
                base: format!("http://127.0.0.1:{port}"),
                client: Client::builder(TokioExecutor::new()).build_http(),
            };
            // Bounded: up to 30 s for Prometheus to open its TSDB and become ready.
            for _ in 0..300 {
                if let Ok(Some(_)) = prom.child.try_wait() {
                    break;
                }
                if let Ok((200, _)) = prom.get("/-/ready").await {
                    return prom;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last_log = prom.log();
            if !last_log.contains("address already in use") {
                break;
            }
        }
        panic!("prometheus did not become ready:\n{last_log}");
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path_and_query: &str) -> Result<(u16, Bytes), String> {
        let req = http::Request::get(format!("{}{path_and_query}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// `GET path` on the HTTP API; the `data` of a `success` answer, else the error text.
    pub async fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (status, body) = self.get(path_and_query).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "HTTP {status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {status}: {}: {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("?")
            ));
        }
        if let Some(w) = v.get("warnings") {
            eprintln!("prometheus warnings for {path_and_query}: {w}");
        }
        Ok(v["data"].clone())
    }

    /// An instant query: the result's samples (a scalar counts as one), or the API's error.
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(data["result"].as_array().cloned().unwrap_or_default())
            }
            Some("scalar") | Some("string") => Ok(vec![data["result"].clone()]),
            other => Err(format!("unexpected resultType {other:?}")),
        }
    }

    /// The value of a one-sample instant query (None if empty or an error).
    pub async fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql).await.ok()?;
        let sample = r.first()?;
        let v = sample.get("value").unwrap_or(sample);
        v[1].as_str()?.parse().ok()
    }

    /// Polls (bounded, 30 s) until `pred` holds for the value of `promql`.
    pub async fn until(&self, what: &str, promql: &str, pred: impl Fn(f64) -> bool) {
        let mut last = None;
        for _ in 0..300 {
            last = self.value(promql).await;
            if last.is_some_and(&pred) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prometheus never showed {what} ({promql} = {last:?}); its log:\n{}",
            self.log()
        );
    }
}
