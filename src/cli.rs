//! The commands of the `sluice` binary, callable in-process (tests, demo).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::gateway::App;
use crate::lifecycle::{self, Deadlines, Tasks};
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::pricing::PriceTable;
use crate::server::{self, ServerOptions};
use crate::simulate::{self, SimConfig};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Pricing(#[from] crate::pricing::PricingError),
    #[error("{0}")]
    Setup(String),
    /// The store URL names no store that can work (printed with its password redacted).
    #[error("store {url:?}: {source}")]
    Store {
        url: String,
        source: crate::store::StoreError,
    },
    #[error("store {url:?} does not accept writes: {source}")]
    StoreNotWritable {
        url: String,
        source: crate::store::StoreError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Config, policies and prices, loaded and checked together.
pub struct Loaded {
    pub config: Config,
    pub policies: PolicySet,
    pub prices: PriceTable,
}

pub fn load(config_path: Option<&std::path::Path>) -> Result<Loaded, CliError> {
    let config = Config::load(config_path, &process_env)?;
    let policies = PolicySet::load_dir(&config.policies)?;
    let mut prices = PriceTable::builtin();
    if let Some(p) = &config.prices {
        prices = prices.merged(PriceTable::load(p)?);
    }
    Ok(Loaded {
        config,
        policies,
        prices,
    })
}

/// A running simulated provider on loopback.
pub struct SimHandle {
    pub addr: SocketAddr,
    /// The simulator's server task; stopping it stops the simulator.
    tasks: Tasks,
}

impl SimHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops the simulator and waits until it has finished its connections.
    pub async fn stop(self) {
        let deadline = tokio::time::Instant::now() + lifecycle::SHUTDOWN_TIMEOUT;
        if let Err(e) = self.tasks.shutdown(deadline).await {
            tracing::warn!(error = %e, "the simulator did not stop");
        }
    }
}

/// A throwaway RSA key for the simulated service account (the simulator checks no
/// signatures; this key authorizes nothing anywhere else).
const SIMULATED_SA_KEY: &str = include_str!("providers/vertex/testdata/test_key.pem");

impl SimHandle {
    /// Writes a service-account key JSON whose `token_uri` is this simulator's into `dir`
    /// and points the config's `vertex` provider at the simulator with it
    /// ([`Config::use_simulated_vertex`]). Returns the key file's path (the caller removes it).
    pub fn wire_vertex(&self, config: &mut Config, dir: &Path) -> Result<PathBuf, CliError> {
        let root = format!("http://{}", self.addr);
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": crate::config::SIMULATED_VERTEX_PROJECT,
            "private_key_id": "simulated",
            "private_key": SIMULATED_SA_KEY,
            "client_email": "sluice@sim-project.iam.gserviceaccount.com",
            "token_uri": format!("{root}/token"),
        });
        let path = dir.join(format!(
            "sluice-simulated-sa-{}-{}.json",
            std::process::id(),
            self.addr.port()
        ));
        std::fs::write(&path, key.to_string()).map_err(|source| CliError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        })?;
        config.use_simulated_vertex(&root, path.clone());
        Ok(path)
    }
}

pub async fn start_simulator(cfg: SimConfig) -> Result<SimHandle, CliError> {
    let listener = bind(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::Setup("bad address".into()))?,
    )
    .await?;
    let addr = listener.local_addr().map_err(|source| CliError::Io {
        context: "simulator address".into(),
        source,
    })?;
    let tasks = Tasks::new("simulator");
    let stop = tasks.token().clone().cancelled_owned();
    tasks.spawn(async move {
        if let Err(e) = simulate::serve(listener, cfg, stop).await {
            tracing::warn!(error = %e, "the simulator failed");
        }
    });
    Ok(SimHandle { addr, tasks })
}

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Io {
            context: format!("cannot listen on {addr}"),
            source,
        })
}

/// Opens the store `url` names and checks that it takes a write: a store that cannot work
/// fails the start, not the first deferred request.
pub async fn open_store(url: &str) -> Result<Arc<dyn crate::store::Store>, CliError> {
    let store = crate::store::open(url)
        .await
        .map_err(|source| CliError::Store {
            url: crate::store::redacted(url),
            source,
        })?;
    store
        .probe_write(crate::batch::now_ms())
        .await
        .map_err(|source| CliError::StoreNotWritable {
            url: crate::store::redacted(url),
            source,
        })?;
    Ok(store)
}

/// Builds the app: store, engine, and every stage's handles.
pub async fn build(loaded: Loaded, metrics: Arc<Metrics>) -> Result<Arc<App>, CliError> {
    let store = open_store(&loaded.config.store).await?;
    let app = App::new(
        &loaded.config,
        loaded.policies,
        loaded.prices,
        metrics,
        Some(store),
    )
    .map_err(CliError::Setup)?;
    Ok(Arc::new(app))
}

/// Serves `app` on `listener` until `shutdown`, with the deferred-tier engine beside it;
/// then shuts down gracefully within `opts.shutdown_timeout` (the sequence is in
/// [`lifecycle`]): every task the app started has ended, or is reported, when this returns.
pub async fn run_app(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let timeout = opts.shutdown_timeout;
    let engine = app.engine();
    // The loop: asked to stop when shutdown begins; dropped mid-step, if it is still in one,
    // when the engine's tasks are stopped at the drain deadline (every step is crash-safe).
    let engine_loop = Tasks::new("engine loop");
    if let Some(e) = &engine {
        let stop = engine_loop.token().clone().cancelled_owned();
        let cut = e.tasks().token().clone();
        engine_loop.spawn(lifecycle::until_cut(cut, e.clone().run(stop)));
    }
    let began = std::sync::OnceLock::new();
    let signal = async {
        shutdown.await;
        let _ = began.set(tokio::time::Instant::now());
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            "shutdown: listener closed; requests in flight may finish, held callers are released"
        );
        stop_engine(&engine_loop, engine.as_deref());
    };
    let served = server::run(listener, app, opts, signal).await;
    // Connections are closed. (Had the server failed by itself, shut down from now.)
    let started = began
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now);
    let deadlines = Deadlines::after(started, timeout);
    stop_engine(&engine_loop, engine.as_deref());
    if let Some(e) = &engine {
        shut_down_engine(e, &engine_loop, deadlines).await;
    }
    tracing::info!("shutdown complete");
    served.map_err(|source| CliError::Io {
        context: "server".into(),
        source,
    })
}

/// Shutdown began: the loop stops at its next step, held callers are released.
fn stop_engine(engine_loop: &Tasks, engine: Option<&crate::batch::engine::Engine>) {
    engine_loop.stop();
    if let Some(e) = engine {
        e.release_waiters();
    }
}

/// After the server: the engine's work in flight may finish until the drain deadline, then
/// is handed back; the ledger writes everything recorded; the store commits and closes.
async fn shut_down_engine(
    engine: &crate::batch::engine::Engine,
    engine_loop: &Tasks,
    deadlines: Deadlines,
) {
    let drained = engine_loop.wait(deadlines.drain).await.is_ok()
        && engine.tasks().wait(deadlines.drain).await.is_ok();
    if !drained {
        tracing::warn!(
            fallbacks_and_streams = engine.tasks().len(),
            "shutdown: deferred work still running at the drain deadline; handing it back"
        );
    }
    engine.tasks().stop();
    let ended = [
        engine_loop.wait(deadlines.exit).await,
        engine.tasks().wait(deadlines.exit).await,
        engine.accountant().close_ledger(deadlines.exit).await,
    ];
    for e in ended.into_iter().filter_map(Result::err) {
        tracing::warn!(error = %e, "shutdown: abandoned at the deadline");
    }
    if tokio::time::timeout_at(deadlines.exit, engine.store().close())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: the store did not close by the deadline");
    }
}

/// The app (store open and writable) and its server options: everything that can fail
/// before the gateway listens.
async fn prepare(loaded: Loaded) -> Result<(Arc<App>, ServerOptions), CliError> {
    let tls = match &loaded.config.tls {
        Some(t) => Some(server::tls_acceptor(&t.cert, &t.key).map_err(CliError::Setup)?),
        None => None,
    };
    let metrics = Arc::new(
        Metrics::new(prometheus::Registry::new()).map_err(|e| CliError::Setup(e.to_string()))?,
    );
    metrics.identify(&loaded.config.batch.replica_id);
    let opts = ServerOptions::new(&loaded.config, tls);
    let app = build(loaded, metrics).await?;
    Ok((app, opts))
}

/// Builds the app and serves on `listener` until `shutdown`.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    loaded: Loaded,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let (app, opts) = prepare(loaded).await?;
    run_app(listener, app, opts, shutdown).await
}

/// `sluice serve [--config FILE] [--simulate]`.
pub async fn serve(config_path: Option<PathBuf>, simulate: bool) -> Result<(), CliError> {
    let mut loaded = load(config_path.as_deref())?;
    let sim = if simulate {
        let sim = start_simulator(SimConfig::default()).await?;
        loaded.config.use_simulator(&sim.base_url());
        // Vertex AI too: a simulated service account, project and bucket.
        let key = sim.wire_vertex(&mut loaded.config, &std::env::temp_dir())?;
        // The simulator answers batches in seconds: don't make a tryout wait ten minutes.
        if process_env("SLUICE_BATCH_MAX_WAIT").is_none() {
            loaded.config.batch.max_wait = std::time::Duration::from_secs(2);
        }
        if process_env("SLUICE_BATCH_POLL_INTERVAL").is_none() {
            loaded.config.batch.poll_interval = std::time::Duration::from_millis(250);
        }
        tracing::info!(url = %sim.base_url(), "simulated provider started");
        Some((sim, key))
    } else {
        None
    };
    let scheme = if loaded.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listen = loaded.config.listen;
    let access = if loaded.policies.is_open() {
        "open"
    } else {
        "keyed"
    };
    let clients = loaded.policies.clients().len();
    // Store, TLS and every other setup step before `listening`: a gateway that logs it can work.
    let served = async {
        let (app, opts) = prepare(loaded).await?;
        let listener = bind(listen).await?;
        tracing::info!(
            "sluice listening on {scheme}://{}  (policies: {access}, clients: {clients})",
            listener.local_addr().unwrap_or(listen)
        );
        run_app(listener, app, opts, shutdown_signal()).await
    }
    .await;
    if let Some((sim, key)) = sim {
        sim.stop().await;
        if let Err(e) = std::fs::remove_file(&key) {
            tracing::debug!(error = %e, "the simulated service-account key was not removed");
        }
    }
    served
}

/// `sluice simulate [--listen ADDR]`.
pub async fn simulate(listen: SocketAddr, cfg: SimConfig) -> Result<(), CliError> {
    let listener = bind(listen).await?;
    tracing::info!("simulated provider listening on http://{listen}/v1");
    simulate::serve(listener, cfg, shutdown_signal())
        .await
        .map_err(|source| CliError::Io {
            context: "simulator".into(),
            source,
        })
}

/// `sluice check [--config FILE]`: prints the resolved table, or the first error.
pub fn check(config_path: Option<PathBuf>, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let loaded = load(config_path.as_deref())?;
    let c = &loaded.config;
    let io = |source| CliError::Io {
        context: "stdout".into(),
        source,
    };
    writeln!(
        out,
        "config ok: listen {}, store {}, policies {}",
        c.listen,
        crate::store::redacted(&c.store),
        c.policies.display()
    )
    .map_err(io)?;
    for p in &c.providers {
        writeln!(
            out,
            "provider {:<9} {} ({} {})",
            p.provider.as_str(),
            p.base_url,
            crate::providers::credential_kind(p.provider),
            if p.api_key.is_some() || p.vertex.is_some() {
                "set"
            } else {
                "not set"
            }
        )
        .map_err(io)?;
    }
    writeln!(out, "prices: {} models", loaded.prices.len()).map_err(io)?;
    write!(out, "{}", loaded.policies.describe()).map_err(io)?;
    Ok(())
}

/// `sluice report [--since DUR]`: savings per route, client and tier from the ledger.
pub async fn report(
    config_path: Option<PathBuf>,
    since: Option<std::time::Duration>,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let config = Config::load(config_path.as_deref(), &process_env)?;
    let store = crate::store::open(&config.store)
        .await
        .map_err(|source| CliError::Store {
            url: crate::store::redacted(&config.store),
            source,
        })?;
    let since_ms = since.map_or(0, |d| crate::batch::now_ms() - d.as_millis() as i64);
    let rows = store
        .report(since_ms)
        .await
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let io = |source| CliError::Io {
        context: "stdout".into(),
        source,
    };
    let window = since.map_or("all time".to_owned(), |d| {
        format!("last {}", crate::duration::format_duration(d))
    });
    // The URL may carry a PostgreSQL password: printed redacted, as `check` does.
    writeln!(
        out,
        "sluice report: {} ({window})",
        crate::store::redacted(&config.store)
    )
    .map_err(io)?;
    write!(out, "{}", render_report(&rows)).map_err(io)
}

/// The report table: one row per route, client and tier, then the total.
pub fn render_report(rows: &[crate::store::ReportRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<16} {:<15} {:>9} {:>12} {:>12} {:>12} {:>7} {:>10}",
        "route",
        "client",
        "tier",
        "requests",
        "cost_usd",
        "baseline_usd",
        "savings_usd",
        "saved",
        "wasted_usd"
    );
    let (mut n, mut cost, mut base, mut saved, mut wasted) = (0u64, 0.0, 0.0, 0.0, 0.0);
    let pct = |saved: f64, base: f64| {
        if base > 0.0 {
            100.0 * saved / base
        } else {
            0.0
        }
    };
    for r in rows {
        n += r.requests;
        cost += r.cost_usd;
        base += r.baseline_usd;
        saved += r.savings_usd;
        wasted += r.wasted_usd;
        let _ = writeln!(
            s,
            "{:<20} {:<16} {:<15} {:>9} {:>12.6} {:>12.6} {:>12.6} {:>6.1}% {:>10.6}",
            r.route,
            r.client,
            r.tier.as_str(),
            r.requests,
            r.cost_usd,
            r.baseline_usd,
            r.savings_usd,
            pct(r.savings_usd, r.baseline_usd),
            r.wasted_usd
        );
    }
    let _ = writeln!(
        s,
        "{:<20} {:<16} {:<15} {:>9} {:>12.6} {:>12.6} {:>12.6} {:>6.1}% {:>10.6}",
        "TOTAL",
        "",
        "",
        n,
        cost,
        base,
        saved,
        pct(saved, base),
        wasted
    );
    s
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
