//! Running the official SDKs' scripts (Python, Node) from a test: loopback only, the
//! pinned SDKs, skipped only when asked.

use std::path::{Path, PathBuf};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$SLUICE_PYTHON`, else the crate's `.venv` (made by `tests/python/setup.sh`).
pub fn python() -> PathBuf {
    std::env::var_os("SLUICE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv/bin/python"))
}

/// `$SLUICE_NODE`, else `node`.
pub fn node() -> PathBuf {
    std::env::var_os("SLUICE_NODE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// The check that the pinned Node OpenAI SDK is installed (`tests/node/setup.sh`).
pub fn node_sdk_check() -> String {
    let sdk = manifest_dir().join("tests/node/node_modules/openai/package.json");
    format!("require({:?})", sdk.display().to_string())
}

/// A child process that talks only to loopback, whatever proxy the environment sets.
pub fn loopback(program: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.current_dir(manifest_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1");
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
        "OPENAI_LOG",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

pub async fn run(mut cmd: std::process::Command) -> std::io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the blocking task panicked")
}

/// Whether `program check...` loads the SDK; when it cannot, the test fails unless
/// `skip_var` is `1` (then it says it skipped, and the caller returns).
pub async fn ready(program: &Path, check: &[&str], skip_var: &str) -> bool {
    let mut probe = loopback(program);
    probe.args(check);
    if matches!(run(probe).await, Ok(o) if o.status.success()) {
        return true;
    }
    assert!(
        std::env::var(skip_var).is_ok_and(|v| v == "1"),
        "{} cannot load the pinned SDK: run tests/python/setup.sh and tests/node/setup.sh \
         ({skip_var}=1 skips this test)",
        program.display()
    );
    println!("{skip_var}=1: skipped");
    false
}
