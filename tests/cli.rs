//! The `sluice` binary's offline commands: check, estimate.

use std::process::Command;

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_PRICES")
        .env("RUST_LOG", "error");
    c
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_accepts_the_shipped_examples_and_prints_the_table() {
    let out = sluice()
        .arg("check")
        .env(
            "SLUICE_POLICIES",
            concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("keyed"), "{stdout}");
    for route in ["support-chat", "nightly-summaries", "faq-bot", "evals"] {
        assert!(stdout.contains(route), "{route} missing from\n{stdout}");
    }
}

#[test]
fn check_rejects_a_broken_policy_with_file_line_and_reason() {
    let dir = temp_dir("broken");
    let file = dir.join("team.toml");
    std::fs::write(
        &file,
        "[client]\nname = \"team\"\n\n[[route]]\nname = \"r\"\nsla = \"whenever\"\n",
    )
    .unwrap();
    let out = sluice()
        .arg("check")
        .env("SLUICE_POLICIES", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:6:", file.display());
    assert!(
        stderr.contains(&expected),
        "expected {expected} in: {stderr}"
    );
    assert!(stderr.contains("invalid SLA"), "{stderr}");

    // A syntax error names its line too.
    std::fs::write(&file, "[client]\nname = \"team\"\nkeys = [\"abc\"\n").unwrap();
    let out = sluice()
        .arg("check")
        .env("SLUICE_POLICIES", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("team.toml:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_rejects_a_broken_config() {
    let dir = temp_dir("config");
    let file = dir.join("sluice.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:8080\"\nmax_body_byts = 5\n").unwrap();
    let out = sluice()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sluice.toml:2:") && stderr.contains("max_body_byts"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn estimate_reproduces_the_cost_study() {
    let out = sluice()
        .args([
            "estimate",
            "--requests",
            "50000",
            "--prefix-tokens",
            "4000",
            "--output-tokens",
            "200",
            "--model",
            "claude-sonnet-4-6",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // sync = 50000*4000*$3/M + 50000*200*$15/M = 600 + 150
    // sync+cache = 4000*$3.75/M + 49999*4000*$0.30/M + 150 = 0.015 + 59.9988 + 150
    // batch = 750 / 2
    // batch+cache = 4000*$6/M*0.5 + 49999*4000*$0.15/M + 50000*200*$7.50/M = 0.012 + 29.9994 + 75
    for (scenario, total) in [
        ("sync", "750.00"),
        ("sync+cache", "210.01"),
        ("batch", "375.00"),
        ("batch+cache", "105.01"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(scenario))
            .unwrap_or_else(|| panic!("no {scenario} row in\n{stdout}"));
        assert!(line.contains(total), "{scenario}: {line}");
    }

    let out = sluice()
        .args([
            "estimate",
            "--requests",
            "10",
            "--prefix-tokens",
            "0",
            "--output-tokens",
            "1",
            "--model",
            "no-such-model",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model"));
}

#[test]
fn estimate_json_and_model_list() {
    let out = sluice()
        .args([
            "estimate",
            "--json",
            "--requests",
            "100",
            "--prefix-tokens",
            "2000",
            "--output-tokens",
            "100",
            "--model",
            "gpt-5-mini",
            "--sla",
            "24h",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object(), "{v}");
    let out = sluice()
        .args(["estimate", "--list-models"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("claude-sonnet-4-6") && stdout.contains("gpt-4o-mini"),
        "{stdout}"
    );
}

#[test]
fn demo_runs_the_mixed_workload_and_prints_the_savings_table() {
    let out = sluice().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (route, tier) in [
        ("support-chat", "interactive"),
        ("nightly-summaries", "batch"),
        ("ticket-triage", "flex"),
        ("faq-bot", "response_cache"),
        ("claims-assistant", "batch"),
        ("claims-assistant", "interactive"),
        ("doc-tagging", "batch"),
        ("doc-tagging", "flex"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(route) && l.split_whitespace().nth(1) == Some(tier)),
            "no {route}/{tier} row in\n{stdout}"
        );
    }
    assert!(stdout.lines().any(|l| l.starts_with("TOTAL")));
}

/// A `sluice serve` child, killed and reaped when dropped, whose stderr lines arrive on a
/// channel (closed when the process exits).
struct Serve {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a gateway may take to start or to fail.
const START: std::time::Duration = std::time::Duration::from_secs(60);

impl Serve {
    /// `sluice serve` in `dir` on a free port, with the environment cleared but for `env`.
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Serve {
        use std::io::BufRead as _;
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("serve")
            .env_clear()
            .env("RUST_LOG", "info")
            .env("SLUICE_LISTEN", "127.0.0.1:0")
            .env("SLUICE_POLICIES", &policies)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Serve { child, lines }
    }

    /// Every stderr line until the process exits (bounded by [`START`]), and its status.
    fn until_exit(mut self) -> (Option<i32>, Vec<String>) {
        let deadline = std::time::Instant::now() + START;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "sluice serve still running after {START:?}:\n{}",
                        seen.join("\n")
                    )
                }
            }
        }
        (self.child.wait().unwrap().code(), seen)
    }

    /// Waits (bounded) for the `listening` line; panics if the process exits first.
    fn until_listening(&mut self) -> Vec<String> {
        let deadline = std::time::Instant::now() + START;
        let mut seen = Vec::new();
        while !seen.iter().any(|l: &String| l.contains("listening")) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(e) => panic!("no `listening` ({e}):\n{}", seen.join("\n")),
            }
        }
        seen
    }
}

#[test]
fn serve_refuses_a_store_that_cannot_work_before_listening() {
    let dir = temp_dir("bad-stores");
    let missing_dir = format!("sqlite://{}/typo/sluice.db", dir.display());
    let cases = [
        ("sqlite://", "no database path"),
        ("sqlite:", "no database path"),
        (missing_dir.as_str(), "does not exist"),
        ("sqlite://sluice.db?mode=sideways", "unknown mode"),
        ("sqlite://sluice.db?colour=blue", "colour"),
        ("sqlite://sluice.db?mode=ro", "must be writable"),
        ("sluice.db", "invalid URL: no scheme"),
        (
            "mysql://sluice:hunter2@localhost/sluice",
            "unknown scheme \"mysql\"",
        ),
    ];
    for (url, reason) in cases {
        let (code, lines) = Serve::start(&dir, &[("SLUICE_STORE", url)]).until_exit();
        let all = lines.join("\n");
        assert_eq!(code, Some(1), "{url}:\n{all}");
        assert!(
            !lines.iter().any(|l| l.contains("listening")),
            "{url}: listened\n{all}"
        );
        let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{url}: one error line expected\n{all}");
        assert!(errors[0].contains(reason), "{url}: {}", errors[0]);
        assert!(!all.contains("hunter2"), "{url}: password printed\n{all}");
    }
    assert!(
        !dir.join("typo").exists(),
        "a missing directory was created"
    );
    assert!(
        !dir.join("sluice.db").exists(),
        "a refused store was created"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_creates_the_default_store_and_with_mode_rwc_its_directory() {
    let dir = temp_dir("good-stores");
    // The default, sqlite://sluice.db, in the working directory.
    let mut serve = Serve::start(&dir, &[]);
    serve.until_listening();
    drop(serve);
    assert!(dir.join("sluice.db").is_file());

    let db = dir.join("new").join("dir").join("store.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut serve = Serve::start(&dir, &[("SLUICE_STORE", &url)]);
    serve.until_listening();
    drop(serve);
    assert!(db.is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}
