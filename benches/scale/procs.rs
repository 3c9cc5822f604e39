//! The processes and databases a scenario runs against: the simulated provider, fresh
//! gateways on their own SQLite file or PostgreSQL database, and what is read off them
//! (readiness, queue depth, resident memory). Children are killed and stores deleted when
//! their handles drop, also on panic.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use sqlx::Connection;

use crate::BoxError;
use crate::generator::{self, HttpClient};

const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Gateways run on this core, everything else of the bench on the other (two or more CPUs).
const GATEWAY_CORE: usize = 0;
const BENCH_CORE: usize = 1;

/// What every scenario shares: the binary, the run's size, the PostgreSQL server if any.
pub struct Env {
    pub sluice: PathBuf,
    pub quick: bool,
    pinned: bool,
    /// The server's URL, `None` when it cannot be reached (those scenarios skip).
    postgres: Result<String, String>,
}

impl Env {
    pub fn new(quick: bool) -> Result<Env, BoxError> {
        let sluice = build_sluice()?;
        let pinned = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        if pinned {
            pin_self(BENCH_CORE)?;
        }
        raise_nofile();
        let server =
            std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.into());
        let postgres = std::thread::spawn(move || reachable(&server).map(|()| server))
            .join()
            .map_err(|_| "PostgreSQL probe panicked")?;
        Ok(Env {
            sluice,
            quick,
            pinned,
            postgres,
        })
    }

    pub fn pinning(&self) -> String {
        if self.pinned {
            format!(
                "gateways pinned to core {GATEWAY_CORE}, load generator and simulator to core {BENCH_CORE}, PostgreSQL unpinned"
            )
        } else {
            "fewer than 2 CPUs: nothing pinned".to_owned()
        }
    }

    /// A fresh PostgreSQL database for `tag`, or `None` after a notice naming `scenario`.
    pub async fn database(&self, scenario: &str, tag: &str) -> Option<Database> {
        let server = match &self.postgres {
            Ok(s) => s.clone(),
            Err(why) => {
                println!(
                    "\n{scenario}: skipped, PostgreSQL is unreachable ({why}); set SLUICE_TEST_POSTGRES"
                );
                return None;
            }
        };
        match Database::create(&server, tag).await {
            Ok(db) => Some(db),
            Err(e) => {
                println!("\n{scenario}: skipped, cannot create a database: {e}");
                None
            }
        }
    }

    fn pin(&self, core: usize, cmd: Command) -> Command {
        if !self.pinned {
            return cmd;
        }
        let mut t = Command::new("taskset");
        t.args(["-c", &core.to_string()]).arg(cmd.get_program());
        t.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => t.env(k, v),
                None => t.env_remove(k),
            };
        }
        t
    }
}

/// Raises this process's soft open-file limit to the hard one: the bench holds one
/// descriptor per HTTP/1.1 connection it keeps open.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The soft open-file limit of this process.
pub fn nofile() -> u64 {
    // SAFETY: getrlimit only writes the struct passed.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur
        } else {
            1024
        }
    }
}

fn pin_self(core: usize) -> Result<(), BoxError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write that set, for this process (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity: {}", std::io::Error::last_os_error()).into());
        }
    }
    Ok(())
}

/// Whether the server answers within 5 s.
fn reachable(server: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let conn =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(server))
                .await
                .map_err(|_| "no connection within 5 s".to_owned())?
                .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        Ok(())
    })
}

/// Builds the `sluice` binary in release mode and returns its path; `SLUICE_BENCH_BIN`
/// names a binary to use instead (the build without the bench's dev-dependency features
/// rebuilds much of the tree once).
fn build_sluice() -> Result<PathBuf, BoxError> {
    if let Some(bin) = std::env::var_os("SLUICE_BENCH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "sluice"])
        .current_dir(&manifest)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --bin sluice failed ({status})").into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("target"), |d| manifest.join(d));
    let bin = target.join("release").join("sluice");
    if !bin.is_file() {
        return Err(format!("{} not found after the build", bin.display()).into());
    }
    Ok(bin)
}

/// A free loopback address (bound, then released).
pub fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One child process, killed when dropped.
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Result<Proc, BoxError> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `url` until it answers 200; fails if the process exits or 60 s pass.
    async fn wait_ready(&mut self, client: &HttpClient, url: String) -> Result<(), BoxError> {
        let url: Uri = url.parse()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited early ({status})", self.name).into());
            }
            if generator::get_ok(client, &url).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{} not ready at {url} after 60 s", self.name).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice simulate` on a free port, on the bench's core.
pub struct Simulator {
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Simulator {
    pub async fn start(env: &Env, args: &[&str]) -> Result<Simulator, BoxError> {
        let addr = free_addr()?;
        let mut cmd = Command::new(&env.sluice);
        cmd.args(["simulate", "--listen", &addr.to_string()])
            .args(args)
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("simulator", &mut env.pin(BENCH_CORE, cmd))?;
        let url = format!("http://{addr}/v1/models");
        proc.wait_ready(&generator::client(), url).await?;
        Ok(Simulator { addr, _proc: proc })
    }
}

/// Where a gateway keeps its state.
pub enum Store<'a> {
    /// A fresh SQLite file in a temp directory of its own.
    Sqlite,
    Postgres(&'a Database),
}

/// Temp files of this run are told apart by this counter.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory under the temp dir, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, BoxError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sluice-scale-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `sluice serve` process; killed before its temp directory (SQLite store) is removed.
pub struct Gateway {
    pub addr: SocketAddr,
    proc: Proc,
    _dir: TempDir,
}

impl Gateway {
    /// A fresh gateway forwarding to `sim`, pinned to the gateway core, with
    /// `max_connections` large enough for every held connection and `vars` on top.
    pub async fn start(
        env: &Env,
        sim: SocketAddr,
        store: Store<'_>,
        vars: &[(&str, &str)],
    ) -> Result<Gateway, BoxError> {
        let addr = free_addr()?;
        let dir = TempDir::new("gateway")?;
        let config = dir.0.join("sluice.toml");
        std::fs::write(&config, "max_connections = 30000\n")?;
        let store_url = match store {
            Store::Sqlite => format!("sqlite://{}", dir.0.join("sluice.db").display()),
            Store::Postgres(db) => db.url.clone(),
        };
        let mut cmd = Command::new(&env.sluice);
        cmd.arg("serve")
            .env("SLUICE_CONFIG", &config)
            .env("SLUICE_LISTEN", addr.to_string())
            .env("OPENAI_BASE_URL", format!("http://{sim}/v1"))
            .env("OPENAI_API_KEY", "sk-bench")
            .env("SLUICE_POLICIES", "/nonexistent-dir")
            .env("SLUICE_STORE", store_url)
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied());
        let mut proc = Proc::spawn("sluice serve", &mut env.pin(GATEWAY_CORE, cmd))?;
        proc.wait_ready(&generator::client(), format!("http://{addr}/readyz"))
            .await?;
        Ok(Gateway {
            addr,
            proc,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn chat_url(&self) -> Uri {
        format!("http://{}/v1/chat/completions", self.addr)
            .parse()
            .expect("valid URI")
    }

    /// The sum of `sluice_batch_queue_depth` over its labels, if `/metrics` answers.
    pub async fn queue_depth(&self, client: &HttpClient) -> Option<u64> {
        let req = Request::get(format!("http://{}/metrics", self.addr))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
            .await
            .ok()?
            .ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let sum: f64 = String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("sluice_batch_queue_depth"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(sum.round() as u64)
    }

    /// Polls the queue depth until it reaches `want` or `limit` passes; the last depth seen.
    pub async fn wait_depth(&self, client: &HttpClient, want: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let mut seen = 0;
        loop {
            seen = self.queue_depth(client).await.unwrap_or(seen);
            if seen >= want || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> Result<u64, BoxError> {
        rss_kib(self.pid())
    }
}

/// `VmRSS` of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

/// A PostgreSQL database of the bench's own, dropped (connections and all) with it: its
/// `pg_stat_database` row counts only the bench's gateways.
pub struct Database {
    server: String,
    pub name: String,
    pub url: String,
}

impl Database {
    async fn create(server: &str, tag: &str) -> Result<Database, BoxError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("sluice_scale_{}_{tag}_{n}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(server).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(Database {
            server: server.to_owned(),
            url: with_database(server, &name),
            name,
        })
    }

    pub async fn connect(&self) -> Result<sqlx::PgConnection, BoxError> {
        Ok(sqlx::PgConnection::connect(&self.url).await?)
    }

    /// Transactions committed and rolled back in this database so far, as the statistics
    /// collector has them (each backend reports at least once a second while busy).
    pub async fn transactions(&self, conn: &mut sqlx::PgConnection) -> Result<i64, BoxError> {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *conn)
            .await?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n)
    }
}

/// `server` with its database path replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl Drop for Database {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside the bench's runtime: the clean-up gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&sql).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
