//! The official OpenAI Node SDK against the gateway: starts the simulated provider and
//! the gateway in-process on loopback, then runs `node --test` on
//! `tests/node/openai_sdk.test.mjs` and `tests/node/passthrough.test.mjs` against them.
//!
//! Node is `$SLUICE_NODE`, else `node` on the PATH; the SDK pinned in
//! `tests/node/package-lock.json` must be in `tests/node/node_modules`, and the test installs
//! it with `tests/node/setup.sh` (`npm ci`) first when it is missing. With
//! `SLUICE_SKIP_NODE=1` the test is skipped when Node cannot import the SDK.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice::cli::{Loaded, serve_on, start_simulator};
use sluice::config::Config;
use sluice::policy::PolicySet;
use sluice::pricing::PriceTable;
use sluice::simulate::SimConfig;

const KEY: &str = "sk-sluice-node-sdk";

const SETUP: &str = "sh tests/node/setup.sh";

const TESTS: [&str; 2] = [
    "tests/node/openai_sdk.test.mjs",
    "tests/node/passthrough.test.mjs",
];

fn policy() -> String {
    format!(
        "[client]\nname = \"node-sdk\"\nkeys = [\"{}\"]\n",
        hex::encode(sluice::policy::hash_key(KEY))
    )
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> PathBuf {
    std::env::var_os("SLUICE_NODE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// A child Node that talks only to loopback, whatever proxy the environment sets.
fn node_command(node: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(node);
    cmd.current_dir(dir);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NODE_USE_ENV_PROXY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_WEBHOOK_SECRET",
        "OPENAI_LOG",
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
        .expect("the blocking task running node panicked")
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Imports the SDK from `tests/node` and fails unless it is the version the lock file pins.
const CHECK: &str = r#"
import { readFileSync } from 'node:fs';
import { VERSION } from 'openai/version';
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const pinned = lock.packages['node_modules/openai'].version;
if (VERSION !== pinned) {
  console.error(`openai ${VERSION} is installed, package-lock.json pins ${pinned}`);
  process.exit(1);
}
console.log(`${process.version} (openai ${VERSION})`);
"#;

/// `Ok(())` when Node can import the pinned SDK from `tests/node`, else why not.
async fn check_node(node: &Path) -> Result<(), String> {
    let mut cmd = node_command(node, &manifest_dir().join("tests").join("node"));
    cmd.args(["--input-type=module", "-e", CHECK]);
    match run(cmd).await {
        Ok(out) if out.status.success() => {
            println!("using {} {}", node.display(), text(&out.stdout).trim());
            Ok(())
        }
        Ok(out) => Err(format!(
            "{} cannot import the pinned openai from tests/node ({}):\n{}",
            node.display(),
            out.status,
            text(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run {}: {e}", node.display())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_node_sdk_against_the_gateway() {
    let node = node();
    let mut ready = check_node(&node).await;
    if ready.is_err() {
        // A fresh checkout: install the pinned SDK, so `cargo test` is all it takes.
        println!("installing the OpenAI Node SDK with `{SETUP}`");
        let mut setup = Command::new("sh");
        setup.arg("tests/node/setup.sh").current_dir(manifest_dir());
        match run(setup).await {
            Ok(out) if out.status.success() => {}
            Ok(out) => println!(
                "setup failed ({}): {}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ),
            Err(e) => println!("setup failed: {e}"),
        }
        ready = check_node(&node).await;
    }
    if let Err(why) = ready {
        if std::env::var("SLUICE_SKIP_NODE").is_ok_and(|v| v == "1") {
            println!("SLUICE_SKIP_NODE=1: skipping the OpenAI Node SDK tests: {why}");
            return;
        }
        panic!(
            "{why}\nThe OpenAI Node SDK tests need Node.js (20 or later) and npm: run `{SETUP}` in {} \
             (or point SLUICE_NODE at a node binary; SLUICE_SKIP_NODE=1 skips this test).",
            manifest_dir().display()
        );
    }

    let sim = start_simulator(SimConfig::default())
        .await
        .expect("simulator");
    let sim_url = sim.base_url();
    let mut config = Config::load(None, &|_| None).expect("default config");
    config.use_simulator(&sim_url);
    let policies = PolicySet::from_sources(&[("node-sdk.toml".into(), policy())]).expect("policy");
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

    // An explicit file rather than a directory: Node 20 searches directories, Node 22+
    // takes glob patterns, and a file path means the same to both.
    let mut cmd = node_command(&node, &manifest_dir());
    cmd.args(["--test", "--test-reporter=spec"])
        .args(TESTS)
        .env("SLUICE_BASE_URL", format!("http://{addr}/v1"))
        .env("SLUICE_KEY", KEY)
        .env("SIM_BASE_URL", &sim_url);
    let out = run(cmd).await.expect("run node --test");
    println!("{}", text(&out.stdout));
    eprintln!("{}", text(&out.stderr));

    let _ = stop_tx.send(());
    server.await.expect("gateway task").expect("gateway");
    sim.stop().await;
    assert!(
        out.status.success(),
        "node --test {} failed ({}):\n{}\n{}",
        TESTS.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
