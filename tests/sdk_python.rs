//! The official OpenAI Python SDK (and the Anthropic and google-genai SDKs) against the
//! gateway: starts the simulated provider and the gateway in-process on loopback, then runs
//! `pytest tests/python` against them.
//!
//! The interpreter is `$SLUICE_PYTHON`, else `.venv/bin/python` in the crate, else
//! `python3`; it needs `tests/python/requirements.txt` installed, and without
//! `SLUICE_PYTHON` the test creates `.venv` with `tests/python/setup.sh` first. With
//! `SLUICE_SKIP_PYTHON=1` the test is skipped when that interpreter cannot import the SDK.
//!
//! The deferred tiers (`tests/python/test_deferred.py`) run against a fast setup: batches
//! answered by the simulator in 200 ms, flushed after 200 ms, polled every 50 ms, with a
//! private SQLite store that is removed at the end. Vertex AI is wired to the simulator as
//! `serve --simulate` wires it (a simulated service account), and a models-only policy
//! sends `gemini-2.5-pro` to `vertex` while the other `gemini-*` models stay on the Gemini API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sluice::cli::{Loaded, serve_on, start_simulator};
use sluice::config::Config;
use sluice::policy::PolicySet;
use sluice::pricing::PriceTable;
use sluice::simulate::SimConfig;

const KEY: &str = "sk-sluice-python-sdk";
/// A second client's key: it must not see the first client's jobs.
const OTHER_KEY: &str = "sk-sluice-python-other";

const SETUP: &str = "sh tests/python/setup.sh";

fn policy(name: &str, key: &str) -> (String, String) {
    (
        format!("{name}.toml"),
        format!(
            "[client]\nname = \"{name}\"\nkeys = [\"{}\"]\n",
            hex::encode(sluice::policy::hash_key(key))
        ),
    )
}

/// A SQLite store private to this run, removed (with its `-wal` and `-shm`) when dropped.
struct TempStore(PathBuf);

impl TempStore {
    fn new() -> TempStore {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempStore(std::env::temp_dir().join(format!(
            "sluice-sdk-python-{}-{nanos}.db",
            std::process::id()
        )))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = manifest_dir().join(".venv").join("bin").join("python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A child Python that talks only to loopback, whatever proxy the environment sets.
fn python_command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.current_dir(manifest_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

async fn run(mut cmd: Command) -> std::io::Result<Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the blocking task running python panicked")
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `Ok(())` when the interpreter can import the SDK and pytest, else why not.
async fn check_interpreter(python: &Path) -> Result<(), String> {
    let mut cmd = python_command(python);
    cmd.args([
        "-c",
        "import openai, anthropic, google.genai, pytest; print(openai.__version__)",
    ]);
    match run(cmd).await {
        Ok(out) if out.status.success() => {
            println!(
                "using {} (openai {})",
                python.display(),
                text(&out.stdout).trim()
            );
            Ok(())
        }
        Ok(out) => Err(format!(
            "{} cannot import the pinned SDKs and pytest ({}):\n{}",
            python.display(),
            out.status,
            text(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run {}: {e}", python.display())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_against_the_gateway() {
    let mut python = python();
    if check_interpreter(&python).await.is_err() && std::env::var_os("SLUICE_PYTHON").is_none() {
        // A fresh checkout: create .venv with the pinned SDK, so `cargo test` is all it takes.
        println!("setting up .venv with `{SETUP}`");
        let mut setup = Command::new("sh");
        setup
            .arg("tests/python/setup.sh")
            .current_dir(manifest_dir());
        match run(setup).await {
            Ok(out) if out.status.success() => python = manifest_dir().join(".venv/bin/python"),
            Ok(out) => println!("setup failed: {}", text(&out.stderr)),
            Err(e) => println!("setup failed: {e}"),
        }
    }
    if let Err(why) = check_interpreter(&python).await {
        if std::env::var("SLUICE_SKIP_PYTHON").is_ok_and(|v| v == "1") {
            println!("SLUICE_SKIP_PYTHON=1: skipping the OpenAI Python SDK tests: {why}");
            return;
        }
        panic!(
            "{why}\nThe OpenAI Python SDK tests need a Python with the SDK: run `{SETUP}` in {} \
             (or point SLUICE_PYTHON at an interpreter that has it; SLUICE_SKIP_PYTHON=1 skips this test).",
            manifest_dir().display()
        );
    }

    let sim = start_simulator(SimConfig {
        batch_turnaround: Duration::from_millis(200),
        gemini: sluice::simulate::GeminiConfig {
            batch_turnaround: Duration::from_millis(200),
            ..Default::default()
        },
        vertex: sluice::simulate::VertexConfig {
            run_time: Duration::from_millis(200),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let sim_url = sim.base_url();
    let store = TempStore::new();
    let mut config = Config::load(None, &|_| None).expect("default config");
    config.use_simulator(&sim_url);
    let vertex_key = sim
        .wire_vertex(&mut config, &std::env::temp_dir())
        .expect("simulated Vertex AI");
    // Fast deferred tiers; interactive requests are unaffected.
    config.store = store.url();
    config.batch.max_wait = Duration::from_millis(200);
    config.batch.poll_interval = Duration::from_millis(50);
    config.batch.keep_alive = Duration::from_millis(50);
    let vertex_map = (
        "vertex.toml".to_owned(),
        "[models]\n\"gemini-2.5-pro\" = \"vertex\"\n".to_owned(),
    );
    let policies = PolicySet::from_sources(&[
        policy("python-sdk", KEY),
        policy("python-other", OTHER_KEY),
        vertex_map,
    ])
    .expect("policy");
    let loaded = Loaded {
        config,
        policies,
        prices: PriceTable::builtin(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("gateway address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, loaded, async {
        let _ = stop_rx.await;
    }));

    let mut cmd = python_command(&python);
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/python",
    ])
    .env("SLUICE_BASE_URL", format!("http://{addr}/v1"))
    .env("SLUICE_KEY", KEY)
    .env("SLUICE_OTHER_KEY", OTHER_KEY)
    .env("SIM_BASE_URL", &sim_url);
    let out = run(cmd).await.expect("run pytest");
    println!("{}", text(&out.stdout));
    eprintln!("{}", text(&out.stderr));

    let _ = stop_tx.send(());
    server.await.expect("gateway task").expect("gateway");
    sim.stop().await;
    drop(store);
    let _ = std::fs::remove_file(&vertex_key);
    assert!(
        out.status.success(),
        "pytest tests/python failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
