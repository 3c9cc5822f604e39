//! deploy/replicas/, the three-replica compose example, checked offline with what this
//! machine has (its images cannot be pulled here): the compose file by `docker compose
//! config` (or `docker-compose`), the Prometheus config by promtool with the alert rules
//! mounted beside it, the nginx config by `nginx -t`, the replicas' config by `sluice
//! check`. A missing tool skips its check with a notice, unless
//! `SLUICE_REQUIRE_DEPLOY_TOOLS=1` makes that a failure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::prometheus::{Tools, which};
use super::{arg, deploy};

fn skip(check: &str, how: &str) {
    assert!(
        std::env::var("SLUICE_REQUIRE_DEPLOY_TOOLS").as_deref() != Ok("1"),
        "SLUICE_REQUIRE_DEPLOY_TOOLS=1 but {check} cannot run: {how}"
    );
    eprintln!("SKIPPED {check}: {how} (set SLUICE_REQUIRE_DEPLOY_TOOLS=1 to make this a failure)");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn replicas(file: &str) -> PathBuf {
    deploy(&format!("replicas/{file}"))
}

/// `docker compose` (the plugin), else `docker-compose`, if either runs here.
fn compose() -> Option<Command> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        let mut c = Command::new("docker");
        c.arg("compose");
        Some(c)
    } else if works("docker-compose", &["version"]) {
        Some(Command::new("docker-compose"))
    } else {
        None
    }
}

#[test]
fn the_replicas_compose_file_is_valid_and_mounts_files_that_exist() {
    let file = replicas("docker-compose.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    // Every host path it mounts (`./x:` or `../x:`, relative to deploy/replicas/) exists.
    let mounts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|l| l.starts_with("./") || l.starts_with("../"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(mounts.len() >= 6, "{mounts:?}");
    for m in mounts {
        assert!(
            replicas(m).exists(),
            "deploy/replicas/{m} is mounted but missing"
        );
    }
    // The image it builds compiles: the Dockerfile copies what the build embeds (the
    // store's migrations, read by `sqlx::migrate!`).
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"),
    )
    .unwrap();
    for dir in ["src", "migrations", "benches"] {
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with(&format!("COPY {dir} "))),
            "the Dockerfile does not copy {dir}/"
        );
    }
    let Some(mut base) = compose() else {
        skip(
            "the compose check of deploy/replicas",
            "neither `docker compose` nor `docker-compose` runs here (`apt-get install -y docker-compose`)",
        );
        return;
    };
    let services = run(base.args(["-f", &arg(&file), "config", "--services"]));
    let got: BTreeSet<String> = String::from_utf8_lossy(&services.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let want: BTreeSet<String> = [
        "postgres",
        "simulator",
        "sluice-a",
        "sluice-b",
        "sluice-c",
        "lb",
        "prometheus",
        "grafana",
        "traffic",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(got, want);
    // The resolved file: each replica its own id, all on the one PostgreSQL.
    let mut again = compose().unwrap();
    let resolved = run(again.args(["-f", &arg(&file), "config"]));
    let resolved = String::from_utf8_lossy(&resolved.stdout);
    for id in ["sluice-a", "sluice-b", "sluice-c"] {
        assert!(
            resolved.contains(&format!("SLUICE_REPLICA_ID: {id}")),
            "{resolved}"
        );
    }
    assert_eq!(
        resolved
            .matches("SLUICE_STORE: postgres://sluice:sluice@postgres:5432/sluice")
            .count(),
        3,
        "{resolved}"
    );
}

#[test]
fn the_replicas_prometheus_config_scrapes_each_replica() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let text = std::fs::read_to_string(replicas("prometheus.yml")).unwrap();
    for id in ["sluice-a", "sluice-b", "sluice-c"] {
        assert!(text.contains(&format!("\"{id}:8080\"")), "{text}");
    }
    // As the container has it: the stack's alert rules beside the config.
    let dir = Scratch::new("replicas-prometheus");
    std::fs::write(dir.0.join("prometheus.yml"), &text).unwrap();
    std::fs::copy(deploy("prometheus/alerts.yml"), dir.0.join("alerts.yml")).unwrap();
    let out = tools.promtool(
        &["check", "config", &arg(&dir.0.join("prometheus.yml"))],
        None,
    );
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}

#[test]
fn the_replicas_load_balancer_suits_held_connections_and_passes_nginx_t() {
    let text = std::fs::read_to_string(replicas("nginx.conf")).unwrap();
    // Held answers wait up to 24 h in silence; streams must not wait in a buffer.
    for directive in [
        "proxy_read_timeout 25h;",
        "proxy_send_timeout 25h;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_next_upstream error timeout;",
    ] {
        assert!(text.contains(directive), "nginx.conf lacks {directive}");
    }
    assert!(
        !text.contains("non_idempotent"),
        "a POST must never be retried"
    );
    let Some(nginx) = which("nginx") else {
        skip(
            "nginx -t of deploy/replicas/nginx.conf",
            "nginx is not on PATH (`apt-get install -y nginx-light`)",
        );
        return;
    };
    // The replicas' names resolve only inside the compose network; `-t` connects to none.
    let dir = Scratch::new("replicas-nginx");
    let local = text.replace("sluice-a:8080", "127.0.0.1:9");
    let local = local.replace("sluice-b:8080", "127.0.0.1:9");
    let local = local.replace("sluice-c:8080", "127.0.0.1:9");
    std::fs::write(dir.0.join("nginx.conf"), local).unwrap();
    let prefix = format!("{}/", dir.0.display());
    run(Command::new(nginx).args([
        "-t",
        "-q",
        "-p",
        &prefix,
        "-e",
        &arg(&dir.0.join("error.log")),
        "-c",
        &arg(&dir.0.join("nginx.conf")),
        "-g",
        &format!("pid {};", dir.0.join("nginx.pid").display()),
    ]));
}

#[test]
fn the_replicas_sluice_config_passes_sluice_check() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config", &arg(&replicas("sluice.toml"))])
        .env_clear()
        .env("SLUICE_POLICIES", deploy("sluice/policies"))
        .env("OPENAI_API_KEY", "sk-simulated"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("provider openai") && l.contains("http://simulator:8081/v1")),
        "{text}"
    );
}
