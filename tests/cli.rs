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
