//! The metric series of one route, client, provider, model and tier, resolved once: a
//! labelled metric lookup hashes every label value and takes the family's lock, and an
//! answer touches up to ten series, so answers after the first find theirs by one hash
//! lookup here. Labels are closed sets, so the cache stays small; beyond
//! [`MAX_CACHED`] combinations answers use the labelled lookups directly.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{Counter, Gauge};

use crate::metrics::Metrics;
use crate::types::{Provider, Tier};

const MAX_CACHED: usize = 16_384;

/// The labels an answer's series share.
#[derive(Clone, Copy)]
pub struct SeriesKey<'a> {
    pub route: &'a str,
    pub client: &'a str,
    pub provider: Provider,
    /// The metric label, not the requested name.
    pub model: &'a str,
    pub tier: Tier,
}

impl SeriesKey<'_> {
    fn hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for s in [self.route, self.client, self.model] {
            h.update(s.as_bytes());
            h.update(&[0xff]); // never in UTF-8: "ab"+"c" and "a"+"bc" differ
        }
        h.update(&[self.provider as u8, self.tier as u8]);
        h.digest()
    }
}

struct Owned {
    route: Box<str>,
    client: Box<str>,
    provider: Provider,
    model: Box<str>,
    tier: Tier,
}

impl Owned {
    fn is(&self, k: &SeriesKey<'_>) -> bool {
        *self.route == *k.route
            && *self.client == *k.client
            && *self.model == *k.model
            && self.provider == k.provider
            && self.tier == k.tier
    }
}

/// Token kinds in `sluice_tokens_total`, in [`Series::tokens`] order.
pub const TOKEN_KINDS: [&str; 4] = ["input", "cached_input", "cache_write", "output"];

/// One combination's series, each created on first use (so a family shows only the label
/// values that have samples, as with labelled lookups).
#[derive(Default)]
pub struct Series {
    /// `sluice_requests_total` with status 200, the common answer.
    ok: OnceLock<Counter>,
    tokens: [OnceLock<Counter>; 4],
    cost: OnceLock<Counter>,
    baseline: OnceLock<Counter>,
    /// By lever, in `Savings::by_lever` order.
    savings: [OnceLock<Gauge>; 4],
}

impl Series {
    pub fn request(&self, m: &Metrics, k: &SeriesKey<'_>, status: &str) {
        let labels = |status| {
            [
                k.route,
                k.client,
                k.provider.as_str(),
                k.model,
                k.tier.as_str(),
                status,
            ]
        };
        if status == "200" {
            self.ok
                .get_or_init(|| m.requests.with_label_values(&labels("200")))
                .inc();
        } else {
            m.requests.with_label_values(&labels(status)).inc();
        }
    }

    pub fn tokens(&self, m: &Metrics, k: &SeriesKey<'_>, kind: usize, n: u64) {
        self.tokens[kind]
            .get_or_init(|| {
                m.tokens.with_label_values(&[
                    k.route,
                    k.provider.as_str(),
                    k.model,
                    TOKEN_KINDS[kind],
                ])
            })
            .inc_by(n as f64);
    }

    pub fn cost(&self, m: &Metrics, k: &SeriesKey<'_>, cost: f64, baseline: f64) {
        let labels = [
            k.route,
            k.client,
            k.provider.as_str(),
            k.model,
            k.tier.as_str(),
        ];
        self.cost
            .get_or_init(|| m.cost.with_label_values(&labels))
            .inc_by(cost);
        self.baseline
            .get_or_init(|| m.baseline.with_label_values(&labels))
            .inc_by(baseline);
    }

    pub fn saving(&self, m: &Metrics, k: &SeriesKey<'_>, lever: usize, name: &str, usd: f64) {
        self.savings[lever]
            .get_or_init(|| {
                m.savings.with_label_values(&[
                    k.route,
                    k.client,
                    k.provider.as_str(),
                    k.model,
                    name,
                ])
            })
            .add(usd);
    }
}

/// The combinations whose labels hash alike (almost always one).
type Bucket = Vec<(Owned, Arc<Series>)>;

#[derive(Default)]
pub struct SeriesCache {
    map: RwLock<HashMap<u64, Bucket>>,
}

impl SeriesCache {
    /// The series of `k`: cached, or new (and cached while there is room).
    pub fn get(&self, k: &SeriesKey<'_>) -> Arc<Series> {
        let hash = k.hash();
        if let Ok(map) = self.map.read() {
            if let Some((_, s)) = map.get(&hash).and_then(|v| v.iter().find(|(o, _)| o.is(k))) {
                return s.clone();
            }
        }
        let Ok(mut map) = self.map.write() else {
            return Arc::default();
        };
        if let Some((_, s)) = map.get(&hash).and_then(|v| v.iter().find(|(o, _)| o.is(k))) {
            return s.clone();
        }
        let series = Arc::new(Series::default());
        if map.len() < MAX_CACHED {
            let owned = Owned {
                route: k.route.into(),
                client: k.client.into(),
                provider: k.provider,
                model: k.model.into(),
                tier: k.tier,
            };
            map.entry(hash).or_default().push((owned, series.clone()));
        }
        series
    }
}
