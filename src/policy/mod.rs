//! Client policies (`policies/*.toml`): who a caller is, how long it may wait, which named
//! route its request belongs to, and which provider serves a model. The schema is documented
//! in README.md ("Policies"); `policies/` ships commented examples.
//!
//! Loading is two-phase like the config: raw serde structs with unknown keys rejected and
//! spans kept, then a checked [`PolicySet`]. Lookups on the request path are hash-map reads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::config::{ConfigError, line_of, parse_toml};
use crate::duration::{format_duration, parse_duration};
use crate::error::GatewayError;
use crate::sla::Sla;
use crate::types::{Provider, Tier};

pub const DEFAULT_CLIENT: &str = "default";
pub const DEFAULT_ROUTE: &str = "default";

// ---------- raw shape ----------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    client: Option<RawClient>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default)]
    models: HashMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Spanned<String>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    default_sla: Option<Sla>,
    allow_sla_override: Option<bool>,
    min_sla: Option<Sla>,
    max_sla: Option<Sla>,
    cache_hints: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    response_cache_ttl: Option<Duration>,
    /// Defaults for the client's routes (a route's own setting wins).
    #[serde(default, deserialize_with = "de_opt_tier")]
    pin_tier: Option<Tier>,
    #[serde(default, deserialize_with = "de_tiers")]
    forbid_tiers: Vec<Tier>,
    /// Sent as `OpenAI-Organization` / `OpenAI-Project` on this client's OpenAI requests.
    openai_organization: Option<String>,
    openai_project: Option<String>,
    /// Let callers send their own `OpenAI-Organization` / `OpenAI-Project` (default false:
    /// the operator's key pays as the operator configured).
    allow_caller_openai_billing: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    sla: Option<Sla>,
    cache_hints: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    response_cache_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_tier")]
    pin_tier: Option<Tier>,
    #[serde(default, deserialize_with = "de_tiers")]
    forbid_tiers: Vec<Tier>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    batch_max_wait: Option<Duration>,
    batch_max_requests: Option<u32>,
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn tier_from(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| {
        format!("unknown tier {s:?}: expected interactive, flex, batch or response_cache")
    })
}

fn de_opt_tier<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Tier>, D::Error> {
    let s = String::deserialize(d)?;
    tier_from(&s).map(Some).map_err(serde::de::Error::custom)
}

fn de_tiers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Tier>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| tier_from(s))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

// ---------- checked shape ----------

/// A model name pattern: exact, or a prefix when it ends in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub fn new(s: &str) -> ModelPattern {
        match s.strip_suffix('*') {
            Some(p) => ModelPattern::Prefix(p.to_owned()),
            None => ModelPattern::Exact(s.to_owned()),
        }
    }
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(m) => m == model,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelPattern::Exact(m) => f.write_str(m),
            ModelPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub name: Arc<str>,
    /// Empty: any path.
    pub paths: Vec<String>,
    /// Empty: any model.
    pub models: Vec<ModelPattern>,
    pub sla: Option<Sla>,
    pub cache_hints: bool,
    pub response_cache_ttl: Option<Duration>,
    pub pin_tier: Option<Tier>,
    pub forbid_tiers: Vec<Tier>,
    pub batch_max_wait: Option<Duration>,
    pub batch_max_requests: Option<u32>,
}

impl RoutePolicy {
    fn matches(&self, path: &str, model: &str) -> bool {
        (self.paths.is_empty() || self.paths.iter().any(|p| p == path))
            && (self.models.is_empty() || self.models.iter().any(|m| m.matches(model)))
    }
}

#[derive(Debug, Clone)]
pub struct ClientPolicy {
    pub name: Arc<str>,
    pub key_count: usize,
    pub default_sla: Sla,
    pub allow_sla_override: bool,
    pub min_sla: Sla,
    pub max_sla: Sla,
    pub routes: Vec<RoutePolicy>,
    /// Serves requests no named route matches.
    pub default_route: RoutePolicy,
    /// Who pays at OpenAI for this client's requests.
    pub openai_billing: Billing,
}

impl ClientPolicy {
    fn builtin_default() -> ClientPolicy {
        ClientPolicy {
            name: DEFAULT_CLIENT.into(),
            key_count: 0,
            default_sla: Sla::INTERACTIVE,
            allow_sla_override: true,
            min_sla: Sla::INTERACTIVE,
            max_sla: Sla::BATCH,
            routes: Vec::new(),
            default_route: default_route(true, None, None, Vec::new()),
            openai_billing: Billing::default(),
        }
    }

    /// The billing headers for a request of this client to `provider`.
    pub fn billing(&self, provider: crate::types::Provider) -> &Billing {
        match provider {
            crate::types::Provider::OpenAi => &self.openai_billing,
            _ => Billing::NONE,
        }
    }

    /// The route a request belongs to: the `x-sluice-route` hint if given (it must name one
    /// of this client's routes), else the first route matching path and model.
    pub fn route(
        &self,
        path: &str,
        model: &str,
        hint: Option<&str>,
    ) -> Result<&RoutePolicy, GatewayError> {
        if let Some(h) = hint {
            return self
                .routes
                .iter()
                .chain(std::iter::once(&self.default_route))
                .find(|r| &*r.name == h)
                .ok_or_else(|| GatewayError::UnknownRoute {
                    route: h.to_owned(),
                    client: self.name.to_string(),
                });
        }
        Ok(self
            .routes
            .iter()
            .find(|r| r.matches(path, model))
            .unwrap_or(&self.default_route))
    }

    /// The SLA that applies: the caller's header when the policy lets it override (clamped to
    /// the client's min/max), else the route's, else the client's default.
    pub fn effective_sla(&self, route: &RoutePolicy, header: Option<Sla>) -> Sla {
        match header {
            Some(h) if self.allow_sla_override => h.clamp(self.min_sla, self.max_sla),
            _ => route.sla.unwrap_or(self.default_sla),
        }
    }
}

fn default_route(
    cache_hints: bool,
    ttl: Option<Duration>,
    pin_tier: Option<Tier>,
    forbid_tiers: Vec<Tier>,
) -> RoutePolicy {
    RoutePolicy {
        name: DEFAULT_ROUTE.into(),
        paths: Vec::new(),
        models: Vec::new(),
        sla: None,
        cache_hints,
        response_cache_ttl: ttl,
        pin_tier,
        forbid_tiers,
        batch_max_wait: None,
        batch_max_requests: None,
    }
}

/// Which provider serves a model name: policy entries first (exact, then longest prefix),
/// then the built-in map; anything else goes to OpenAI, whose API is the one clients speak.
#[derive(Debug, Clone)]
pub struct ModelMap {
    exact: HashMap<String, Provider>,
    prefixes: Vec<(String, Provider)>,
    /// A policy maps the `gemini-` prefix itself.
    user_gemini: bool,
}

const BUILTIN_PREFIXES: [(&str, Provider); 8] = [
    ("gpt-", Provider::OpenAi),
    ("o1", Provider::OpenAi),
    ("o3", Provider::OpenAi),
    ("o4", Provider::OpenAi),
    ("text-embedding-", Provider::OpenAi),
    ("chatgpt-", Provider::OpenAi),
    ("claude-", Provider::Anthropic),
    ("gemini-", Provider::Gemini),
];

impl ModelMap {
    fn new(entries: Vec<(ModelPattern, Provider)>) -> ModelMap {
        let mut exact = HashMap::new();
        let mut prefixes: Vec<(String, Provider)> = BUILTIN_PREFIXES
            .iter()
            .map(|(p, prov)| ((*p).to_owned(), *prov))
            .collect();
        let mut user_prefixes = Vec::new();
        for (pat, prov) in entries {
            match pat {
                ModelPattern::Exact(m) => {
                    exact.insert(m, prov);
                }
                ModelPattern::Prefix(p) => user_prefixes.push((p, prov)),
            }
        }
        let user_gemini = user_prefixes.iter().any(|(p, _)| p == "gemini-");
        // Policy prefixes win over built-in ones of the same length; longest prefix wins overall.
        user_prefixes.append(&mut prefixes);
        user_prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        ModelMap {
            exact,
            prefixes: user_prefixes,
            user_gemini,
        }
    }

    pub fn provider_for(&self, model: &str) -> Provider {
        if let Some(p) = self.exact.get(model) {
            return *p;
        }
        self.prefixes
            .iter()
            .find(|(p, _)| model.starts_with(p.as_str()))
            .map(|(_, prov)| *prov)
            .unwrap_or(Provider::OpenAi)
    }

    /// Sends the built-in `gemini-` prefix to `p` (Vertex AI when it is the only Google
    /// provider configured); a policy's own entries are left alone.
    pub fn default_gemini_to(&mut self, p: Provider) {
        if self.user_gemini {
            return;
        }
        for (prefix, prov) in &mut self.prefixes {
            if prefix == "gemini-" {
                *prov = p;
            }
        }
    }

    /// Model names a policy names exactly: allowed as a metric label though unpriced.
    pub fn is_configured(&self, model: &str) -> bool {
        self.exact.contains_key(model)
    }

    pub fn configured_models(&self) -> impl Iterator<Item = (&str, Provider)> {
        self.exact.iter().map(|(m, p)| (m.as_str(), *p))
    }
}

#[derive(Debug, Clone)]
pub struct PolicySet {
    clients: Vec<ClientPolicy>,
    /// SHA-256 of a gateway key → index into `clients`.
    keys: HashMap<[u8; 32], usize>,
    /// The client callers become when no policy names any key.
    open_client: usize,
    pub models: ModelMap,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl From<ConfigError> for PolicyError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Parse { path, line, reason } => PolicyError {
                file: path,
                line,
                reason,
            },
            ConfigError::Read { path, source } => PolicyError {
                file: path,
                line: 0,
                reason: format!("cannot read: {source}"),
            },
            ConfigError::Invalid { origin, reason } => PolicyError {
                file: origin,
                line: 0,
                reason,
            },
        }
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl PolicySet {
    /// No files: the gateway runs open and every caller is client `default`.
    pub fn open() -> PolicySet {
        PolicySet {
            clients: vec![ClientPolicy::builtin_default()],
            keys: HashMap::new(),
            open_client: 0,
            models: ModelMap::new(Vec::new()),
        }
    }

    /// Loads every `*.toml` in `dir` (sorted by name). A missing directory means no policies.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let mut files = Vec::new();
        if dir.exists() {
            let entries = std::fs::read_dir(dir).map_err(|e| PolicyError {
                file: dir.display().to_string(),
                line: 0,
                reason: format!("cannot read directory: {e}"),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError {
                        file: path.display().to_string(),
                        line: 0,
                        reason: format!("cannot read: {e}"),
                    })?;
                    files.push((path.display().to_string(), text));
                }
            }
        }
        files.sort();
        PolicySet::from_sources(&files)
    }

    /// Builds a set from (file name, TOML text) pairs; used by `load_dir`, the demo and tests.
    pub fn from_sources(files: &[(String, String)]) -> Result<PolicySet, PolicyError> {
        let mut clients = Vec::new();
        let mut keys: HashMap<[u8; 32], usize> = HashMap::new();
        let mut model_entries: Vec<(ModelPattern, Provider)> = Vec::new();
        let mut model_origin: HashMap<String, (String, Provider)> = HashMap::new();
        let mut client_origin: HashMap<String, String> = HashMap::new();

        for (file, text) in files {
            let raw: RawFile = parse_toml(text, file)?;
            let err = |span: std::ops::Range<usize>, reason: String| PolicyError {
                file: file.clone(),
                line: line_of(text, span.start),
                reason,
            };

            let mut names: Vec<(String, std::ops::Range<usize>)> = raw
                .models
                .iter()
                .map(|(k, v)| (k.clone(), v.span()))
                .collect();
            names.sort_by_key(|(_, s)| s.start);
            for (pattern, span) in names {
                let prov_s = raw.models[&pattern].get_ref();
                let prov = Provider::parse(prov_s).ok_or_else(|| {
                    err(
                        span.clone(),
                        format!("models.{pattern:?}: unknown provider {prov_s:?} (expected openai, anthropic, gemini or vertex)"),
                    )
                })?;
                if let Some((other, p)) = model_origin.get(&pattern) {
                    if *p != prov {
                        return Err(err(
                            span,
                            format!(
                                "model {pattern:?} is mapped to {} here and to {} in {other}",
                                prov, p
                            ),
                        ));
                    }
                    continue;
                }
                model_origin.insert(pattern.clone(), (file.clone(), prov));
                model_entries.push((ModelPattern::new(&pattern), prov));
            }

            let Some(c) = raw.client else {
                if !raw.routes.is_empty() {
                    let span = raw.routes[0].name.span();
                    return Err(err(
                        span,
                        "routes need a [client] table in the same file".into(),
                    ));
                }
                continue;
            };
            let name = c.name.get_ref().trim().to_owned();
            if !is_label_safe(&name) {
                return Err(err(
                    c.name.span(),
                    format!(
                        "client name {name:?} must be 1-64 characters of a-z, A-Z, 0-9, '_', '-', '.'"
                    ),
                ));
            }
            if let Some(other) = client_origin.insert(name.clone(), file.clone()) {
                return Err(err(
                    c.name.span(),
                    format!("client {name:?} is already defined in {other}"),
                ));
            }
            let idx = clients.len();
            for k in &c.keys {
                let hex_s = k.get_ref().trim().to_ascii_lowercase();
                let mut digest = [0u8; 32];
                if hex_s.len() != 64 || hex::decode_to_slice(&hex_s, &mut digest).is_err() {
                    return Err(err(
                        k.span(),
                        "keys must be SHA-256 hex digests (64 hex characters) of the gateway key, never the key itself; e.g. printf %s \"$KEY\" | sha256sum".into(),
                    ));
                }
                if keys.insert(digest, idx).is_some() {
                    return Err(err(
                        k.span(),
                        "this key hash is listed for more than one client".into(),
                    ));
                }
            }
            let min_sla = c.min_sla.unwrap_or(Sla::INTERACTIVE);
            let max_sla = c.max_sla.unwrap_or(Sla::BATCH);
            if min_sla > max_sla {
                return Err(err(
                    c.name.span(),
                    format!("min_sla {min_sla} is greater than max_sla {max_sla}"),
                ));
            }
            if let Some(t) = c.pin_tier.filter(|t| c.forbid_tiers.contains(t)) {
                return Err(err(
                    c.name.span(),
                    format!("client {name:?} pins tier {t} and also forbids it"),
                ));
            }
            let cache_hints = c.cache_hints.unwrap_or(true);
            let mut routes: Vec<RoutePolicy> = Vec::new();
            for r in raw.routes {
                let rname = r.name.get_ref().trim().to_owned();
                if !is_label_safe(&rname) || rname == DEFAULT_ROUTE {
                    return Err(err(
                        r.name.span(),
                        format!(
                            "route name {rname:?} must be 1-64 characters of a-z, A-Z, 0-9, '_', '-', '.' and not \"default\""
                        ),
                    ));
                }
                if routes.iter().any(|x| *x.name == *rname) {
                    return Err(err(
                        r.name.span(),
                        format!("route {rname:?} is defined twice for client {name:?}"),
                    ));
                }
                if let Some(p) = r.paths.iter().find(|p| !p.starts_with('/')) {
                    return Err(err(
                        r.name.span(),
                        format!("route {rname:?}: path {p:?} must start with '/'"),
                    ));
                }
                if let Some(t) = r.pin_tier {
                    if r.forbid_tiers.contains(&t) {
                        return Err(err(
                            r.name.span(),
                            format!("route {rname:?} pins tier {t} and also forbids it"),
                        ));
                    }
                }
                if r.batch_max_requests == Some(0) {
                    return Err(err(
                        r.name.span(),
                        format!("route {rname:?}: batch_max_requests must be greater than zero"),
                    ));
                }
                routes.push(RoutePolicy {
                    name: rname.into(),
                    paths: r.paths,
                    models: r.models.iter().map(|m| ModelPattern::new(m)).collect(),
                    sla: r.sla,
                    cache_hints: r.cache_hints.unwrap_or(cache_hints),
                    response_cache_ttl: r.response_cache_ttl.or(c.response_cache_ttl),
                    pin_tier: r.pin_tier.or(if r.forbid_tiers.is_empty() {
                        c.pin_tier
                    } else {
                        None
                    }),
                    forbid_tiers: if r.forbid_tiers.is_empty() && r.pin_tier.is_none() {
                        c.forbid_tiers.clone()
                    } else {
                        r.forbid_tiers
                    },
                    batch_max_wait: r.batch_max_wait,
                    batch_max_requests: r.batch_max_requests,
                });
            }
            let mut billing = Billing {
                headers: Vec::new(),
                pass_caller: c.allow_caller_openai_billing.unwrap_or(false),
            };
            for (header, value) in [
                ("openai-organization", &c.openai_organization),
                ("openai-project", &c.openai_project),
            ] {
                let Some(v) = value else { continue };
                let v = http::HeaderValue::from_str(v.trim())
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        err(
                            c.name.span(),
                            format!("{header} {v:?} must be a non-empty header value"),
                        )
                    })?;
                billing
                    .headers
                    .push((http::HeaderName::from_static(header), v));
            }
            clients.push(ClientPolicy {
                openai_billing: billing,
                name: name.into(),
                key_count: c.keys.len(),
                default_sla: c.default_sla.unwrap_or(Sla::INTERACTIVE),
                allow_sla_override: c.allow_sla_override.unwrap_or(true),
                min_sla,
                max_sla,
                routes,
                default_route: default_route(
                    cache_hints,
                    c.response_cache_ttl,
                    c.pin_tier,
                    c.forbid_tiers.clone(),
                ),
            });
        }

        let open_client = match clients.iter().position(|c| &*c.name == DEFAULT_CLIENT) {
            Some(i) => i,
            None => {
                clients.push(ClientPolicy::builtin_default());
                clients.len() - 1
            }
        };
        Ok(PolicySet {
            clients,
            keys,
            open_client,
            models: ModelMap::new(model_entries),
        })
    }

    /// True when no policy names a key: every caller is client `default`.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Who is calling. With keys configured, an absent or unknown key is a 401.
    pub fn identify(&self, key: Option<&str>) -> Result<&ClientPolicy, GatewayError> {
        if self.is_open() {
            return Ok(&self.clients[self.open_client]);
        }
        let key = key.ok_or(GatewayError::MissingKey)?;
        self.keys
            .get(&hash_key(key))
            .map(|&i| &self.clients[i])
            .ok_or(GatewayError::UnknownKey)
    }

    pub fn clients(&self) -> &[ClientPolicy] {
        &self.clients
    }

    /// The resolved client/route table `sluice check` prints.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mode = if self.is_open() {
            "open (no keys configured: every caller is client \"default\")"
        } else {
            "keyed (requests without a known key get 401)"
        };
        let _ = writeln!(out, "mode: {mode}");
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:>4} {:<12} {:<24} {:<28} {:<28} {:<5} {:<8} tiers",
            "client",
            "route",
            "keys",
            "sla",
            "override(min..max)",
            "paths",
            "models",
            "hints",
            "resp_ttl"
        );
        for c in &self.clients {
            if self.is_open() && &*c.name != DEFAULT_CLIENT {
                continue;
            }
            for r in c.routes.iter().chain(std::iter::once(&c.default_route)) {
                let join = |v: Vec<String>| {
                    if v.is_empty() {
                        "*".to_owned()
                    } else {
                        v.join(",")
                    }
                };
                let tiers = match (r.pin_tier, r.forbid_tiers.is_empty()) {
                    (Some(t), _) => format!("pin {t}"),
                    (None, false) => format!(
                        "forbid {}",
                        r.forbid_tiers
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    (None, true) => "any".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<16} {:<20} {:>4} {:<12} {:<24} {:<28} {:<28} {:<5} {:<8} {}",
                    c.name,
                    r.name,
                    c.key_count,
                    r.sla.unwrap_or(c.default_sla).to_string(),
                    if c.allow_sla_override {
                        format!("yes({}..{})", c.min_sla, c.max_sla)
                    } else {
                        "no".to_owned()
                    },
                    join(r.paths.clone()),
                    join(r.models.iter().map(|m| m.to_string()).collect()),
                    if r.cache_hints { "on" } else { "off" },
                    r.response_cache_ttl
                        .map(format_duration)
                        .unwrap_or_else(|| "off".into()),
                    tiers
                );
            }
        }
        let mut models: Vec<_> = self.models.configured_models().collect();
        models.sort();
        for (m, p) in models {
            let _ = writeln!(out, "model {m} -> {p}");
        }
        out
    }
}

fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests;

/// What a client's policy sets on its requests to a provider: the organization and project
/// that pay (OpenAI), and whether the caller may choose its own instead.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Billing {
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub pass_caller: bool,
}

impl Billing {
    pub const NONE: &'static Billing = &Billing {
        headers: Vec::new(),
        pass_caller: false,
    };
}
