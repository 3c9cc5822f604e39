//! Configuration in two phases: the raw TOML shape (`RawConfig`, unknown keys rejected),
//! then `Config`, checked and typed, with environment variables applied on top.
//! Every setting has a default, so `sluice serve` runs with no file at all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::types::Provider;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

/// A secret that never prints: provider keys are never logged or returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    store: Option<String>,
    policies: Option<String>,
    prices: Option<String>,
    max_body_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    http2_keep_alive_interval: Option<String>,
    http2_keep_alive_timeout: Option<String>,
    http2_max_concurrent_streams: Option<u32>,
    tls: Option<RawTls>,
    upstream: Option<RawUpstream>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    batch: Option<RawBatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    pool_idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    base_url: Option<String>,
    /// The request fields Sluice may add for this provider (see [`Accepts`]).
    accepts: Option<Vec<String>>,
    /// Name of the environment variable holding the key (keys are not written in files).
    api_key_env: Option<String>,
    /// The former place of the `vertex` provider's settings (`[providers.gemini.vertex]`),
    /// still read: it configures the `vertex` provider.
    vertex: Option<RawVertex>,
    // `[providers.vertex]` (Vertex AI): its project, bucket and service account;
    // `base_url` is then the Vertex API root (`VERTEX_BASE_URL`).
    project: Option<String>,
    location: Option<String>,
    bucket: Option<String>,
    credentials_file: Option<String>,
    storage_url: Option<String>,
}

impl RawProvider {
    /// The Vertex AI settings of `[providers.vertex]`, if any is given.
    fn vertex_settings(&mut self) -> Option<RawVertex> {
        let v = RawVertex {
            project: self.project.take(),
            location: self.location.take(),
            bucket: self.bucket.take(),
            credentials_file: self.credentials_file.take(),
            base_url: self.base_url.take(),
            storage_url: self.storage_url.take(),
        };
        let any = v.project.is_some()
            || v.location.is_some()
            || v.bucket.is_some()
            || v.credentials_file.is_some()
            || v.base_url.is_some()
            || v.storage_url.is_some();
        any.then_some(v)
    }

    /// The name of a Vertex-only key given for another provider.
    fn vertex_only_key(&self) -> Option<&'static str> {
        [
            ("project", self.project.is_some()),
            ("location", self.location.is_some()),
            ("bucket", self.bucket.is_some()),
            ("credentials_file", self.credentials_file.is_some()),
            ("storage_url", self.storage_url.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVertex {
    project: Option<String>,
    location: Option<String>,
    bucket: Option<String>,
    credentials_file: Option<String>,
    base_url: Option<String>,
    storage_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max_wait: Option<String>,
    max_requests: Option<u32>,
    poll_interval: Option<String>,
    turnaround_prior: Option<String>,
    fallback_lead: Option<String>,
    result_retention: Option<String>,
    keep_alive: Option<String>,
    replica_id: Option<String>,
    lease: Option<String>,
    interactive_below: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub provider: Provider,
    /// Without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The request fields Sluice may add on the way to this provider.
    pub accepts: Accepts,
    /// The `vertex` provider's project, bucket and service account, when configured
    /// (`[providers.vertex]`, the older `[providers.gemini.vertex]`, or `VERTEX_PROJECT`);
    /// `None` for every other provider.
    pub vertex: Option<VertexConfig>,
}

/// Where Gemini batches go on Vertex AI (provider-apis.md 3.6): the project and region of
/// the jobs, the Cloud Storage bucket for their input and output, and the service-account
/// key that authorizes both. The key file is read when the client is built, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexConfig {
    pub project: String,
    /// A region such as `us-central1`, or `global`.
    pub location: String,
    pub bucket: String,
    /// The service-account key JSON (`credentials_file`, or `GOOGLE_APPLICATION_CREDENTIALS`).
    pub credentials_file: PathBuf,
    /// The Vertex AI API without a trailing slash: by default
    /// `https://{location}-aiplatform.googleapis.com/v1` (`https://aiplatform.googleapis.com/v1`
    /// for `global`); `VERTEX_BASE_URL` overrides.
    pub base_url: String,
    /// The Cloud Storage JSON API root, by default `https://storage.googleapis.com`;
    /// `GCS_BASE_URL` overrides.
    pub storage_url: String,
}

/// The `vertex` provider: configured by `[providers.vertex]`, else the older
/// `[providers.gemini.vertex]`, else `VERTEX_PROJECT` alone (CONTRACT.md) — not by an
/// ambient `GOOGLE_APPLICATION_CREDENTIALS`, which many Google hosts set. Its base URL is
/// the publisher path of interactive calls; it has no API key (a service account).
fn vertex_provider(
    mut rp: RawProvider,
    legacy: Option<RawVertex>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderConfig, String> {
    if rp.vertex.is_some() {
        return Err("providers.vertex.vertex: the settings go in [providers.vertex] itself".into());
    }
    if rp.api_key_env.is_some() {
        return Err(
            "providers.vertex.api_key_env: Vertex AI authenticates with a service account (credentials_file)"
                .into(),
        );
    }
    let accepts = match &rp.accepts {
        Some(names) => {
            Accepts::parse(names).map_err(|e| format!("providers.vertex.accepts: {e}"))?
        }
        None => Accepts::NONE,
    };
    let (raw, origin) = match (rp.vertex_settings(), legacy) {
        (Some(_), Some(_)) => {
            return Err(
                "providers.gemini.vertex: Vertex AI is configured in [providers.vertex] too; keep one"
                    .into(),
            );
        }
        (Some(v), None) => (Some(v), "providers.vertex"),
        (None, Some(v)) => (Some(v), "providers.gemini.vertex"),
        (None, None) => (
            env("VERTEX_PROJECT")
                .is_some_and(|v| !v.is_empty())
                .then(RawVertex::default),
            "providers.vertex",
        ),
    };
    let vertex = match raw {
        Some(raw) => Some(VertexConfig::resolve(raw, env).map_err(|e| format!("{origin}: {e}"))?),
        None => None,
    };
    let base_url = match &vertex {
        Some(v) => v.publisher_base(),
        None => "https://us-central1-aiplatform.googleapis.com/v1".to_owned(),
    };
    Ok(ProviderConfig {
        provider: Provider::Vertex,
        base_url,
        api_key: None,
        accepts,
        vertex,
    })
}

impl VertexConfig {
    /// The base URL of interactive calls: the publisher path of the project and location
    /// (`{base_url}/projects/{p}/locations/{l}/publishers/google`).
    pub fn publisher_base(&self) -> String {
        format!(
            "{}/projects/{}/locations/{}/publishers/google",
            self.base_url, self.project, self.location
        )
    }

    /// Checks the raw table; environment variables win over the file, as everywhere else
    /// in this config.
    fn resolve(
        raw: RawVertex,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<VertexConfig, String> {
        let field = |v: Option<String>, name: &str| -> Result<String, String> {
            v.map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{name} is required"))
        };
        // CONTRACT.md's variables win over the table, as everywhere else in this config.
        let env_or = |name: &str, v: Option<String>| env(name).filter(|s| !s.is_empty()).or(v);
        let project = field(env_or("VERTEX_PROJECT", raw.project), "project")?;
        // Project ids are lower-case letters, digits and hyphens (domain-scoped ones add
        // `.` and `:`); anything else would change the meaning of the job URLs.
        if !project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
        {
            return Err(format!(
                "project {project:?} is not a Google Cloud project id"
            ));
        }
        let location = env_or("VERTEX_LOCATION", raw.location)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "us-central1".to_owned());
        if !location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "location {location:?} is not a region such as us-central1 (or global)"
            ));
        }
        let bucket = field(env_or("VERTEX_BUCKET", raw.bucket), "bucket")?;
        let bucket = bucket
            .strip_prefix("gs://")
            .unwrap_or(&bucket)
            .trim_end_matches('/');
        let bucket_ok = (3..=222).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !bucket_ok {
            return Err(format!(
                "bucket {bucket:?} is not a Cloud Storage bucket name (3-222 lower-case letters, digits, -, _ or .; no path)"
            ));
        }
        let credentials_file = env("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|s| !s.is_empty())
            .or(raw.credentials_file)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                "credentials_file (or GOOGLE_APPLICATION_CREDENTIALS) must name a service-account key JSON".to_owned()
            })?;
        let url = |name: &str, v: String| -> Result<String, String> {
            let v = v.trim_end_matches('/').to_owned();
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(v)
            } else {
                Err(format!("{name} {v:?} must start with http:// or https://"))
            }
        };
        let default_base = if location == "global" {
            "https://aiplatform.googleapis.com/v1".to_owned()
        } else {
            format!("https://{location}-aiplatform.googleapis.com/v1")
        };
        let base_url = url(
            "base_url",
            env("VERTEX_BASE_URL")
                .or(raw.base_url)
                .unwrap_or(default_base),
        )?;
        let storage_url = url(
            "storage_url",
            env("GCS_BASE_URL")
                .or(raw.storage_url)
                .unwrap_or_else(|| "https://storage.googleapis.com".to_owned()),
        )?;
        Ok(VertexConfig {
            project,
            location,
            bucket: bucket.to_owned(),
            credentials_file: PathBuf::from(credentials_file),
            base_url,
            storage_url,
        })
    }
}

/// The request fields Sluice adds only where the destination is known to accept them:
/// a strict OpenAI-compatible server answers an unknown field with a 400 (Google's
/// compatible layer refuses `prompt_cache_key`), so a field the client did not send is
/// added only for the provider's own API, or where the config says the server takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// Sluice's prompt-cache routing hint.
    pub prompt_cache_key: bool,
    /// `stream_options.include_usage`, so a stream's usage can be metered.
    pub stream_options: bool,
    /// `service_tier: "flex"` (the flex tier).
    pub service_tier: bool,
}

impl Accepts {
    pub const NONE: Accepts = Accepts {
        prompt_cache_key: false,
        stream_options: false,
        service_tier: false,
    };
    pub const FIELDS: [&'static str; 3] = ["prompt_cache_key", "stream_options", "service_tier"];

    /// What the provider's own API takes (provider-apis.md 1.3, 3.5). Anthropic's Messages
    /// API gets none of these (its caching is `cache_control`, added by its own rules).
    pub fn official(p: Provider) -> Accepts {
        match p {
            Provider::OpenAi => Accepts {
                prompt_cache_key: true,
                stream_options: true,
                service_tier: true,
            },
            // Google's OpenAI-compatible layer: `stream_options` yes, `prompt_cache_key`
            // no; `service_tier` exists there but how the served tier is reported is
            // unconfirmed, so Sluice does not pick flex through it.
            Provider::Gemini => Accepts {
                stream_options: true,
                ..Accepts::NONE
            },
            // Vertex AI gets native requests only: none of these fields apply.
            Provider::Anthropic | Provider::Vertex => Accepts::NONE,
        }
    }

    fn parse(names: &[String]) -> Result<Accepts, String> {
        let mut a = Accepts::NONE;
        for n in names {
            match n.as_str() {
                "prompt_cache_key" => a.prompt_cache_key = true,
                "stream_options" => a.stream_options = true,
                "service_tier" => a.service_tier = true,
                other => {
                    return Err(format!(
                        "unknown field {other:?} (expected some of {})",
                        Accepts::FIELDS.join(", ")
                    ));
                }
            }
        }
        Ok(a)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Until the response head arrives; bodies then stream for as long as they take.
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_wait: Duration,
    pub max_requests: Option<u32>,
    pub poll_interval: Duration,
    /// Batch turnaround (p95) assumed before any is observed.
    pub turnaround_prior: Duration,
    /// Send a deferred job synchronously when it is still unanswered this long before its deadline.
    pub fallback_lead: Duration,
    /// How long finished results stay readable.
    pub result_retention: Duration,
    /// Interval of SSE `: keep-alive` comments on held streaming requests.
    pub keep_alive: Duration,
    /// This replica's name in flush leases (`SLUICE_REPLICA_ID`, default the host name).
    pub replica_id: String,
    /// How long a replica owns a flush it leased without renewing it (each loop renews it):
    /// after a replica dies, another takes its flushes over once this lapsed
    /// (`[batch] lease`, `SLUICE_BATCH_LEASE`, default `60s`).
    pub lease: Duration,
    /// SLAs shorter than this are always served interactively.
    pub interactive_below: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: String,
    pub policies: PathBuf,
    pub prices: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// `header_read_timeout` (default `10s`): a connection must complete its TLS handshake
    /// and send its first full request head within this time of being accepted (protocol
    /// detection and a half-sent HTTP/2 preface included); on HTTP/1.1 it also bounds every
    /// later request head, counted from the end of the previous response.
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// `idle_timeout` (default `60s`): a connection with no request in flight (HTTP/1.1
    /// keep-alive, HTTP/2 with no open stream) is closed after this long. Held deferred
    /// requests and long SSE streams are in flight and never cut by it.
    pub idle_timeout: Duration,
    /// `max_connections` (default `10000`): open client connections at most. At the cap a new
    /// connection evicts the longest-idle one; if every connection has a request in flight,
    /// the new one is closed at once. At startup the soft `RLIMIT_NOFILE` is raised toward the
    /// hard limit as far as needed, and the cap lowered (with a warning) if it still does not
    /// fit with headroom for upstream connections and the store.
    pub max_connections: usize,
    /// `http2_keep_alive_interval` (default `30s`): HTTP/2 PING interval.
    pub http2_keep_alive_interval: Duration,
    /// `http2_keep_alive_timeout` (default `10s`): an HTTP/2 peer that does not answer a PING
    /// within this time is closed, requests in flight included (it is dead).
    pub http2_keep_alive_timeout: Duration,
    /// `http2_max_concurrent_streams` (default `200`): requests one HTTP/2 connection may
    /// have in flight. A client holding many deferred requests multiplexes them on a few
    /// connections (a held stream costs a fraction of a held HTTP/1.1 connection).
    pub http2_max_concurrent_streams: u32,
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    pub providers: Vec<ProviderConfig>,
    pub batch: BatchConfig,
}

/// The project of [`Config::use_simulated_vertex`].
pub const SIMULATED_VERTEX_PROJECT: &str = "sim-project";

pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// hyper's own default, pinned here so that it cannot change under us.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 200;

impl Config {
    /// Loads the optional file, then applies the environment (`env` is injected so tests
    /// never touch the process environment).
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (raw, origin) = match path {
            Some(p) => {
                let origin = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: origin.clone(),
                    source,
                })?;
                (parse_toml::<RawConfig>(&text, &origin)?, origin)
            }
            None => (RawConfig::default(), "defaults".to_owned()),
        };
        Self::resolve(raw, &origin, env)
    }

    fn resolve(
        raw: RawConfig,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            reason,
        };
        let dur = |name: &str, v: Option<String>, default: &str| -> Result<Duration, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_owned());
            parse_duration(&v).map_err(|e| invalid(format!("{name}: {e}")))
        };

        let listen_s = env("SLUICE_LISTEN")
            .or(raw.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            invalid(format!(
                "listen: {listen_s:?} is not an address such as 127.0.0.1:8080"
            ))
        })?;

        let upstream_raw = raw.upstream.unwrap_or_default();
        let upstream = UpstreamConfig {
            connect_timeout: dur(
                "upstream.connect_timeout",
                upstream_raw.connect_timeout,
                "5s",
            )?,
            response_timeout: dur(
                "upstream.response_timeout",
                upstream_raw.response_timeout,
                "15m",
            )?,
            pool_idle_timeout: dur(
                "upstream.pool_idle_timeout",
                upstream_raw.pool_idle_timeout,
                "90s",
            )?,
        };

        let mut raw_providers = raw.providers;
        for name in raw_providers.keys() {
            if Provider::parse(name).is_none() {
                return Err(invalid(format!(
                    "providers.{name}: unknown provider (expected openai, anthropic, gemini or vertex)"
                )));
            }
        }
        // `[providers.gemini.vertex]` is where the `vertex` provider used to be configured.
        let mut legacy_vertex = raw_providers
            .get_mut("gemini")
            .and_then(|g| g.vertex.take());
        let providers = Provider::ALL
            .into_iter()
            .map(|p| {
                let rp = raw_providers.remove(p.as_str()).unwrap_or_default();
                if p == Provider::Vertex {
                    return vertex_provider(rp, legacy_vertex.take(), env).map_err(invalid);
                }
                if let Some(key) = rp.vertex_only_key() {
                    return Err(invalid(format!(
                        "providers.{}.{key}: only the vertex provider takes it",
                        p.as_str()
                    )));
                }
                let (key_var, url_var, default_url) = match p {
                    Provider::OpenAi => (
                        "OPENAI_API_KEY",
                        "OPENAI_BASE_URL",
                        "https://api.openai.com/v1",
                    ),
                    Provider::Anthropic => (
                        "ANTHROPIC_API_KEY",
                        "ANTHROPIC_BASE_URL",
                        "https://api.anthropic.com/v1",
                    ),
                    Provider::Gemini | Provider::Vertex => (
                        "GEMINI_API_KEY",
                        "GEMINI_BASE_URL",
                        "https://generativelanguage.googleapis.com/v1beta",
                    ),
                };
                let base_url = env(url_var)
                    .or(rp.base_url)
                    .unwrap_or_else(|| default_url.into())
                    .trim_end_matches('/')
                    .to_owned();
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return Err(invalid(format!(
                        "{} base URL {base_url:?} must start with http:// or https://",
                        p.as_str()
                    )));
                }
                let key_var = rp.api_key_env.as_deref().unwrap_or(key_var);
                let api_key = env(key_var).filter(|k| !k.is_empty()).map(Secret);
                // Another base URL is another server (vLLM, a proxy): it gets nothing the
                // client did not send unless `accepts` says it takes it.
                let accepts = match &rp.accepts {
                    Some(names) => Accepts::parse(names)
                        .map_err(|e| invalid(format!("providers.{}.accepts: {e}", p.as_str())))?,
                    None if base_url == default_url => Accepts::official(p),
                    None => Accepts::NONE,
                };
                if rp.vertex.is_some() {
                    return Err(invalid(format!(
                        "providers.{}.vertex: Vertex AI is configured as [providers.vertex]",
                        p.as_str()
                    )));
                }
                Ok(ProviderConfig {
                    provider: p,
                    base_url,
                    api_key,
                    accepts,
                    vertex: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let batch_raw = raw.batch.unwrap_or_default();
        let max_requests = match env("SLUICE_BATCH_MAX_REQUESTS") {
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                invalid(format!(
                    "SLUICE_BATCH_MAX_REQUESTS: {v:?} is not a positive integer"
                ))
            })?),
            None => batch_raw.max_requests,
        };
        if max_requests == Some(0) {
            return Err(invalid(
                "batch.max_requests must be greater than zero".into(),
            ));
        }
        let batch = BatchConfig {
            max_wait: dur(
                "batch.max_wait",
                env("SLUICE_BATCH_MAX_WAIT").or(batch_raw.max_wait),
                "10m",
            )?,
            max_requests,
            poll_interval: dur(
                "batch.poll_interval",
                env("SLUICE_BATCH_POLL_INTERVAL").or(batch_raw.poll_interval),
                "30s",
            )?,
            turnaround_prior: dur(
                "batch.turnaround_prior",
                env("SLUICE_BATCH_TURNAROUND_PRIOR").or(batch_raw.turnaround_prior),
                "6h",
            )?,
            fallback_lead: dur(
                "batch.fallback_lead",
                env("SLUICE_BATCH_FALLBACK_LEAD").or(batch_raw.fallback_lead),
                "5m",
            )?,
            result_retention: dur(
                "batch.result_retention",
                env("SLUICE_RESULT_RETENTION").or(batch_raw.result_retention),
                "7d",
            )?,
            keep_alive: dur("batch.keep_alive", batch_raw.keep_alive, "15s")?,
            interactive_below: dur(
                "batch.interactive_below",
                batch_raw.interactive_below,
                "60s",
            )?,
            replica_id: env("SLUICE_REPLICA_ID")
                .or(batch_raw.replica_id)
                .or_else(|| env("HOSTNAME"))
                .unwrap_or_else(|| "sluice".into()),
            lease: dur(
                "batch.lease",
                env("SLUICE_BATCH_LEASE").or(batch_raw.lease),
                "60s",
            )?,
        };
        if batch.lease.is_zero() {
            return Err(invalid("batch.lease must be greater than zero".into()));
        }

        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(invalid("max_body_bytes must be greater than zero".into()));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("max_connections must be greater than zero".into()));
        }
        let http2_max_concurrent_streams = raw
            .http2_max_concurrent_streams
            .unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS);
        if http2_max_concurrent_streams == 0 {
            return Err(invalid(
                "http2_max_concurrent_streams must be greater than zero".into(),
            ));
        }
        // A zero timeout would close every connection at once, or disable a bound.
        let positive = |name: &str, v: Option<String>, default: &str| {
            let d = dur(name, v, default)?;
            if d.is_zero() {
                return Err(invalid(format!("{name} must be greater than zero")));
            }
            Ok(d)
        };

        Ok(Config {
            listen,
            store: env("SLUICE_STORE")
                .or(raw.store)
                .unwrap_or_else(|| "sqlite://sluice.db".into()),
            policies: PathBuf::from(
                env("SLUICE_POLICIES")
                    .or(raw.policies)
                    .unwrap_or_else(|| "policies/".into()),
            ),
            prices: env("SLUICE_PRICES").or(raw.prices).map(PathBuf::from),
            max_body_bytes,
            header_read_timeout: positive("header_read_timeout", raw.header_read_timeout, "10s")?,
            body_read_timeout: dur("body_read_timeout", raw.body_read_timeout, "60s")?,
            idle_timeout: positive("idle_timeout", raw.idle_timeout, "60s")?,
            max_connections,
            http2_keep_alive_interval: positive(
                "http2_keep_alive_interval",
                raw.http2_keep_alive_interval,
                "30s",
            )?,
            http2_keep_alive_timeout: positive(
                "http2_keep_alive_timeout",
                raw.http2_keep_alive_timeout,
                "10s",
            )?,
            http2_max_concurrent_streams,
            tls: raw.tls.map(|t| TlsConfig {
                cert: PathBuf::from(t.cert),
                key: PathBuf::from(t.key),
            }),
            upstream,
            providers,
            batch,
        })
    }

    pub fn provider(&self, p: Provider) -> &ProviderConfig {
        // `providers` always holds one entry per provider, in `Provider::ALL` order.
        &self.providers[p as usize]
    }

    /// Points the `vertex` provider at the simulator at `sim_root` (`http://HOST:PORT`): its
    /// Vertex API below `/v1`, Cloud Storage at the root, project `sim-project` in
    /// `us-central1`, bucket `sim-bucket`, authorized by the service-account key in
    /// `credentials_file` (whose `token_uri` is the simulator's `/token`).
    pub fn use_simulated_vertex(&mut self, sim_root: &str, credentials_file: PathBuf) {
        let root = sim_root.trim_end_matches('/');
        let v = VertexConfig {
            project: SIMULATED_VERTEX_PROJECT.to_owned(),
            location: "us-central1".to_owned(),
            bucket: "sim-bucket".to_owned(),
            credentials_file,
            base_url: format!("{root}/v1"),
            storage_url: root.to_owned(),
        };
        for p in &mut self.providers {
            if p.provider == Provider::Vertex {
                p.base_url = v.publisher_base();
                p.api_key = None;
                p.accepts = Accepts::NONE;
                p.vertex = Some(v.clone());
            }
        }
    }

    /// Points every provider at one base URL with a placeholder key (`serve --simulate`, demo, tests).
    pub fn use_simulator(&mut self, base_url: &str) {
        for p in &mut self.providers {
            if p.provider == Provider::Vertex {
                // A service account, not a key: see `use_simulated_vertex`.
                continue;
            }
            p.base_url = base_url.trim_end_matches('/').to_owned();
            p.api_key = Some(Secret::new("sk-sluice-simulated"));
            // The simulator speaks each provider's own API, field rules included.
            p.accepts = Accepts::official(p.provider);
        }
    }
}

/// Parses TOML, turning a syntax or type error into `file:line: reason`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        reason: e.message().to_owned(),
    })
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::load(None, &no_env).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store, "sqlite://sluice.db");
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.batch.max_wait, Duration::from_secs(600));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.http2_keep_alive_interval, Duration::from_secs(30));
        assert_eq!(c.http2_keep_alive_timeout, Duration::from_secs(10));
        assert_eq!(
            c.provider(Provider::OpenAi).base_url,
            "https://api.openai.com/v1"
        );
        assert!(c.provider(Provider::OpenAi).api_key.is_none());
    }

    #[test]
    fn added_fields_only_where_the_destination_takes_them() {
        let c = Config::load(None, &no_env).unwrap();
        assert_eq!(
            c.provider(Provider::OpenAi).accepts,
            Accepts::official(Provider::OpenAi)
        );
        let gemini = c.provider(Provider::Gemini).accepts;
        assert!(gemini.stream_options && !gemini.prompt_cache_key && !gemini.service_tier);
        assert_eq!(c.provider(Provider::Anthropic).accepts, Accepts::NONE);
        // Another server behind OPENAI_BASE_URL (vLLM, a proxy) gets nothing extra ...
        let env = |k: &str| (k == "OPENAI_BASE_URL").then(|| "http://127.0.0.1:1/v1".to_owned());
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.provider(Provider::OpenAi).accepts, Accepts::NONE);
        // ... unless the config says what it takes.
        let dir = std::env::temp_dir().join(format!("sluice-accepts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sluice.toml");
        std::fs::write(
            &file,
            "[providers.openai]\nbase_url = \"http://127.0.0.1:1/v1\"\naccepts = [\"stream_options\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &no_env).unwrap();
        let a = c.provider(Provider::OpenAi).accepts;
        assert!(a.stream_options && !a.prompt_cache_key && !a.service_tier);
        std::fs::write(&file, "[providers.openai]\naccepts = [\"seed\"]\n").unwrap();
        let e = Config::load(Some(&file), &no_env).unwrap_err().to_string();
        assert!(
            e.contains("providers.openai.accepts") && e.contains("seed"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn environment_overrides_and_keys_never_print() {
        let env = |k: &str| match k {
            "SLUICE_LISTEN" => Some("0.0.0.0:9000".to_owned()),
            "OPENAI_API_KEY" => Some("sk-secret".to_owned()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:1/v1/".to_owned()),
            "SLUICE_BATCH_MAX_WAIT" => Some("90s".to_owned()),
            "SLUICE_BATCH_LEASE" => Some("2s".to_owned()),
            _ => None,
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.batch.lease, Duration::from_secs(2));
        assert_eq!(
            Config::load(None, &no_env).unwrap().batch.lease,
            Duration::from_secs(60)
        );
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(
            c.provider(Provider::OpenAi).base_url,
            "http://127.0.0.1:1/v1"
        );
        assert_eq!(c.batch.max_wait, Duration::from_secs(90));
        assert!(!format!("{c:?}").contains("sk-secret"));
    }

    #[test]
    fn unknown_keys_name_file_and_line() {
        let text = "listen = \"127.0.0.1:1\"\n\n[upstream]\nconect_timeout = \"5s\"\n";
        let err = parse_toml::<RawConfig>(text, "sluice.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sluice.toml:4:"), "{err}");
        assert!(err.contains("conect_timeout"), "{err}");
    }

    #[test]
    fn connection_limits_must_be_positive() {
        for text in [
            "max_connections = 0",
            "idle_timeout = \"0s\"",
            "http2_keep_alive_timeout = \"0ms\"",
            "http2_max_concurrent_streams = 0",
        ] {
            let raw: RawConfig = parse_toml(text, "x").unwrap();
            let err = Config::resolve(raw, "x", &no_env).unwrap_err().to_string();
            let key = text.split(' ').next().unwrap();
            assert!(err.contains(key), "{err}");
        }
        let raw: RawConfig = parse_toml(
            "idle_timeout = \"5s\"\nmax_connections = 32\nhttp2_keep_alive_interval = \"1s\"",
            "x",
        )
        .unwrap();
        let c = Config::resolve(raw, "x", &no_env).unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 32);
        assert_eq!(c.http2_keep_alive_interval, Duration::from_secs(1));
        assert_eq!(c.http2_max_concurrent_streams, 200);
        let raw: RawConfig = parse_toml("http2_max_concurrent_streams = 5000", "x").unwrap();
        let c = Config::resolve(raw, "x", &no_env).unwrap();
        assert_eq!(c.http2_max_concurrent_streams, 5000);
        for bad in [
            "http2_max_concurrent_streams = -1",
            "http2_max_concurrent_streams = \"x\"",
        ] {
            let err = parse_toml::<RawConfig>(bad, "x").unwrap_err().to_string();
            assert!(err.starts_with("x:1:"), "{bad}: {err}");
        }
    }

    fn vertex_of(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<VertexConfig>, String> {
        let raw: RawConfig = parse_toml(text, "sluice.toml").map_err(|e| e.to_string())?;
        Config::resolve(raw, "sluice.toml", env)
            .map(|c| {
                assert!(c.provider(Provider::Gemini).vertex.is_none());
                c.provider(Provider::Vertex).vertex.clone()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_vertex_provider_has_its_own_table_and_a_publisher_base_url() {
        let text = "[providers.vertex]\nproject = \"my-project\"\nlocation = \"europe-west4\"\nbucket = \"b-1\"\ncredentials_file = \"/etc/sa.json\"\nbase_url = \"http://127.0.0.1:9/v1\"\nstorage_url = \"http://127.0.0.1:9\"\n";
        let raw: RawConfig = parse_toml(text, "sluice.toml").unwrap();
        let c = Config::resolve(raw, "sluice.toml", &no_env).unwrap();
        let p = c.provider(Provider::Vertex);
        assert_eq!(p.provider, Provider::Vertex);
        assert!(p.api_key.is_none());
        let v = p.vertex.as_ref().unwrap();
        assert_eq!(
            (v.project.as_str(), v.bucket.as_str()),
            ("my-project", "b-1")
        );
        assert_eq!(v.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(v.storage_url, "http://127.0.0.1:9");
        assert_eq!(
            p.base_url,
            "http://127.0.0.1:9/v1/projects/my-project/locations/europe-west4/publishers/google"
        );
        // The Gemini API is another provider, configured on its own.
        assert!(c.provider(Provider::Gemini).vertex.is_none());
        for (text, want) in [
            (
                "[providers.vertex]\napi_key_env = \"K\"\n",
                "service account",
            ),
            (
                "[providers.gemini]\nbucket = \"b-1\"\n",
                "providers.gemini.bucket: only the vertex provider takes it",
            ),
            (
                "[providers.vertex]\nproject = \"p\"\nbucket = \"b-1\"\ncredentials_file = \"k\"\n[providers.gemini.vertex]\nproject = \"p\"\n",
                "keep one",
            ),
            (
                "[providers.vertex]\nbucket = \"b-1\"\ncredentials_file = \"k\"\n",
                "providers.vertex: project is required",
            ),
            (
                "[providers.vertexai]\n",
                "expected openai, anthropic, gemini or vertex",
            ),
        ] {
            let e = vertex_of(text, &no_env).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn vertex_table_defaults_and_env_overrides() {
        assert_eq!(vertex_of("", &no_env).unwrap(), None);
        let text = "[providers.gemini.vertex]\nproject = \"my-project\"\nbucket = \"gs://my-bucket/\"\ncredentials_file = \"/etc/sa.json\"\n";
        let v = vertex_of(text, &no_env).unwrap().unwrap();
        assert_eq!(v.project, "my-project");
        assert_eq!(v.location, "us-central1");
        assert_eq!(v.bucket, "my-bucket");
        assert_eq!(v.credentials_file, PathBuf::from("/etc/sa.json"));
        assert_eq!(
            v.base_url,
            "https://us-central1-aiplatform.googleapis.com/v1"
        );
        assert_eq!(v.storage_url, "https://storage.googleapis.com");
        let global = format!("{text}location = \"global\"\n");
        assert_eq!(
            vertex_of(&global, &no_env).unwrap().unwrap().base_url,
            "https://aiplatform.googleapis.com/v1"
        );
        let env = |k: &str| match k {
            "GOOGLE_APPLICATION_CREDENTIALS" => Some("/run/key.json".to_owned()),
            "VERTEX_BASE_URL" => Some("http://127.0.0.1:9/v1/".to_owned()),
            "GCS_BASE_URL" => Some("http://127.0.0.1:9".to_owned()),
            _ => None,
        };
        let v = vertex_of(text, &env).unwrap().unwrap();
        assert_eq!(v.credentials_file, PathBuf::from("/run/key.json"));
        assert_eq!(v.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(v.storage_url, "http://127.0.0.1:9");
        // The environment alone names the key file.
        let no_file = "[providers.gemini.vertex]\nproject = \"p-1\"\nbucket = \"b-1\"\n";
        assert!(vertex_of(no_file, &env).unwrap().is_some());
        // CONTRACT.md's variables alone turn it on; an ambient key file alone does not.
        assert_eq!(vertex_of("", &env).unwrap(), None);
        let contract = |k: &str| match k {
            "VERTEX_PROJECT" => Some("proj-9".to_owned()),
            "VERTEX_LOCATION" => Some("europe-west4".to_owned()),
            "VERTEX_BUCKET" => Some("stage-9".to_owned()),
            other => env(other),
        };
        let v = vertex_of("", &contract).unwrap().unwrap();
        assert_eq!(
            (v.project.as_str(), v.location.as_str(), v.bucket.as_str()),
            ("proj-9", "europe-west4", "stage-9")
        );
        assert_eq!(v.credentials_file, PathBuf::from("/run/key.json"));
        // The variables win over the table.
        assert_eq!(
            vertex_of(text, &contract).unwrap().unwrap().project,
            "proj-9"
        );
    }

    #[test]
    fn vertex_table_errors_name_the_key() {
        let cases = [
            (
                "[providers.gemini.vertex]\nbucket = \"b-1\"\ncredentials_file = \"k\"\n",
                "providers.gemini.vertex: project is required",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p\"\ncredentials_file = \"k\"\n",
                "bucket is required",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p\"\nbucket = \"b-1\"\n",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p/../x\"\nbucket = \"b-1\"\ncredentials_file = \"k\"\n",
                "not a Google Cloud project id",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p\"\nbucket = \"b-1/in\"\ncredentials_file = \"k\"\n",
                "not a Cloud Storage bucket name",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p\"\nlocation = \"US Central\"\nbucket = \"b-1\"\ncredentials_file = \"k\"\n",
                "location",
            ),
            (
                "[providers.gemini.vertex]\nproject = \"p\"\nbucket = \"b-1\"\ncredentials_file = \"k\"\nbase_url = \"ftp://x\"\n",
                "base_url",
            ),
            (
                "[providers.openai.vertex]\nproject = \"p\"\n",
                "providers.openai.vertex: Vertex AI is configured as [providers.vertex]",
            ),
            ("[providers.gemini.vertex]\nprojet = \"p\"\n", "projet"),
        ];
        for (text, want) in cases {
            let e = vertex_of(text, &no_env).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn bad_duration_is_rejected() {
        let raw: RawConfig = parse_toml("header_read_timeout = \"10 seconds\"", "x").unwrap();
        let err = Config::resolve(raw, "x", &no_env).unwrap_err().to_string();
        assert!(err.contains("header_read_timeout"), "{err}");
    }
}
