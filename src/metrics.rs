//! Prometheus metrics named by CONTRACT.md, owned by one struct on a registry passed in.
//! Label values come from closed sets: policy names, priced/configured model names or
//! `other`, tier and lever names, HTTP status codes.

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: CounterVec,
    pub cost: CounterVec,
    pub baseline: CounterVec,
    /// Not a counter: a cache write is a negative saving, and a counter that went down would
    /// read as a reset to `rate()`. Kept in a gauge, exposed as untyped (see `render`);
    /// query it with `delta()` or plain sums.
    pub savings: GaugeVec,
    pub tokens: CounterVec,
    pub wasted: CounterVec,
    pub fallbacks: CounterVec,
    pub sla_violations: CounterVec,
    pub batch_queue_depth: GaugeVec,
    pub batches: CounterVec,
    pub batch_turnaround: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub overhead: HistogramVec,
    /// `sluice_build_info{replica,version} 1`: which replica (`SLUICE_REPLICA_ID`, the owner
    /// named in flush leases and logs) answers at a scrape target. The one family with a
    /// replica label: Prometheus tells replicas apart by `instance` already, and the
    /// contract's families are summed across replicas, or (queue depth) the same on each.
    pub build_info: GaugeVec,
    /// Every family above as (name, help, type), for the headers of those without samples.
    families: Vec<(String, String, &'static str)>,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<CounterVec> {
    let c = CounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    pub fn new(registry: Registry) -> prometheus::Result<Metrics> {
        let r = &registry;
        let tier_labels = ["route", "client", "provider", "model", "tier"];
        let batch_queue_depth = GaugeVec::new(
            Opts::new(
                "sluice_batch_queue_depth",
                "Deferred requests waiting to be flushed to a provider Batch API.",
            ),
            &["provider", "model"],
        )?;
        r.register(Box::new(batch_queue_depth.clone()))?;
        let build_info = GaugeVec::new(
            Opts::new(
                "sluice_build_info",
                "This replica's id (SLUICE_REPLICA_ID, the owner of its flush leases) and Sluice version; always 1.",
            ),
            &["replica", "version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        let mut m = Metrics {
            requests: counter(
                r,
                "sluice_requests_total",
                "Requests answered, by route, client, provider, model, tier and HTTP status.",
                &["route", "client", "provider", "model", "tier", "status"],
            )?,
            cost: counter(
                r,
                "sluice_cost_usd_total",
                "What the provider bills for the answered requests, in USD.",
                &tier_labels,
            )?,
            baseline: counter(
                r,
                "sluice_baseline_cost_usd_total",
                "What the same tokens would cost synchronously and uncached at list price, in USD.",
                &tier_labels,
            )?,
            savings: {
                let g = GaugeVec::new(
                    Opts::new(
                        SAVINGS,
                        "Baseline minus cost in USD, split by lever (negative for a cache write that has not paid off yet).",
                    ),
                    &["route", "client", "provider", "model", "lever"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            tokens: counter(
                r,
                "sluice_tokens_total",
                "Tokens billed, by kind: input, cached_input, cache_write, output.",
                &["route", "provider", "model", "kind"],
            )?,
            wasted: counter(
                r,
                "sluice_wasted_cost_usd_total",
                "Spend in USD on answers nobody used.",
                &["route", "reason"],
            )?,
            fallbacks: counter(
                r,
                "sluice_fallbacks_total",
                "Deferred requests answered synchronously instead.",
                &["route", "from_tier", "reason"],
            )?,
            sla_violations: counter(
                r,
                "sluice_sla_violations_total",
                "Answers later than their deadline.",
                &["route"],
            )?,
            batch_queue_depth,
            batches: counter(
                r,
                "sluice_batches_total",
                "Upstream batches by final status.",
                &["provider", "status"],
            )?,
            batch_turnaround: histogram(
                r,
                "sluice_batch_turnaround_seconds",
                "Upstream batch turnaround from submit to results, in seconds.",
                &["provider"],
                vec![
                    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0,
                    172800.0,
                ],
            )?,
            upstream_duration: histogram(
                r,
                "sluice_upstream_duration_seconds",
                "Time the provider took, from sending the request to the answer (response head for streams), in seconds.",
                &["provider", "tier"],
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 900.0,
                ],
            )?,
            overhead: histogram(
                r,
                "sluice_overhead_seconds",
                "Time the gateway itself added to an interactive request, in seconds.",
                &["route"],
                vec![
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                ],
            )?,
            build_info,
            registry,
            families: Vec::new(),
        };
        let mut families = Vec::new();
        let mut declare = |c: &dyn Collector, kind: &'static str| {
            families.extend(
                c.desc()
                    .into_iter()
                    .map(|d| (d.fq_name.clone(), d.help.clone(), kind)),
            );
        };
        for c in [
            &m.requests,
            &m.cost,
            &m.baseline,
            &m.tokens,
            &m.wasted,
            &m.fallbacks,
            &m.sla_violations,
            &m.batches,
        ] {
            declare(c, "counter");
        }
        declare(&m.savings, "untyped");
        declare(&m.batch_queue_depth, "gauge");
        declare(&m.build_info, "gauge");
        for h in [&m.batch_turnaround, &m.upstream_duration, &m.overhead] {
            declare(h, "histogram");
        }
        m.families = families;
        Ok(m)
    }

    /// Names the replica these metrics are of (`sluice_build_info`).
    pub fn identify(&self, replica: &str) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[replica, env!("CARGO_PKG_VERSION")])
            .set(1.0);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of everything registered. A family with no samples
    /// yet (or none left, like an emptied queue depth) still gets its `# HELP` and `# TYPE`:
    /// `gather` leaves it out, and alerts and dashboards would see "no data" instead of 0.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut families = self.registry.gather();
        for (name, help, kind) in &self.families {
            if !families.iter().any(|f| f.name() == name) {
                write_header(&mut buf, name, help, kind);
            }
        }
        // Savings go down on a cache write, so they are not a counter; Prometheus reserves
        // `_total` for counters except untyped metrics, and the contract fixes the name. The
        // crate's encoder cannot write untyped families, so this one is written here.
        let savings = families
            .iter()
            .position(|f| f.name() == SAVINGS)
            .map(|i| families.remove(i));
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        if let Some(f) = savings {
            write_untyped(&mut buf, &f);
        }
        buf
    }

    /// Per (route, tier) totals for the demo's table: requests, cost, baseline.
    pub fn summary(&self) -> Vec<SummaryRow> {
        use std::collections::BTreeMap;
        let mut rows: BTreeMap<(String, String), SummaryRow> = BTreeMap::new();
        for family in self.registry.gather() {
            let which = match family.name() {
                "sluice_requests_total" => 0,
                "sluice_cost_usd_total" => 1,
                "sluice_baseline_cost_usd_total" => 2,
                _ => continue,
            };
            for m in family.get_metric() {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                let key = (label("route"), label("tier"));
                let row = rows.entry(key.clone()).or_insert_with(|| SummaryRow {
                    route: key.0.clone(),
                    tier: key.1.clone(),
                    ..SummaryRow::default()
                });
                let v = m.get_counter().get_value();
                match which {
                    0 => row.requests += v as u64,
                    1 => row.cost_usd += v,
                    _ => row.baseline_usd += v,
                }
            }
        }
        rows.into_values().collect()
    }
}

const SAVINGS: &str = "sluice_savings_usd_total";

/// `# HELP` and `# TYPE` lines, escaped as the text format wants.
fn write_header(buf: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    use std::io::Write as _;
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(buf, "# HELP {name} {help}");
    let _ = writeln!(buf, "# TYPE {name} {kind}");
}

fn write_untyped(buf: &mut Vec<u8>, f: &prometheus::proto::MetricFamily) {
    use std::io::Write as _;
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    write_header(buf, f.name(), f.help(), "untyped");
    for m in f.get_metric() {
        let labels: Vec<String> = m
            .get_label()
            .iter()
            .map(|l| format!("{}=\"{}\"", l.name(), escape(l.value())))
            .collect();
        let _ = writeln!(
            buf,
            "{}{{{}}} {}",
            f.name(),
            labels.join(","),
            m.get_gauge().get_value()
        );
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryRow {
    pub route: String,
    pub tier: String,
    pub requests: u64,
    pub cost_usd: f64,
    pub baseline_usd: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONTRACT.md's Metrics table, with the type each family is exposed as.
    const FAMILIES: [(&str, &str); 13] = [
        ("sluice_requests_total", "counter"),
        ("sluice_cost_usd_total", "counter"),
        ("sluice_baseline_cost_usd_total", "counter"),
        ("sluice_savings_usd_total", "untyped"),
        ("sluice_tokens_total", "counter"),
        ("sluice_wasted_cost_usd_total", "counter"),
        ("sluice_fallbacks_total", "counter"),
        ("sluice_sla_violations_total", "counter"),
        ("sluice_batch_queue_depth", "gauge"),
        ("sluice_batches_total", "counter"),
        ("sluice_batch_turnaround_seconds", "histogram"),
        ("sluice_upstream_duration_seconds", "histogram"),
        ("sluice_overhead_seconds", "histogram"),
    ];

    fn headers_once(text: &str) {
        for (name, kind) in FAMILIES {
            let lines = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
            assert_eq!(lines(&format!("# HELP {name} ")), 1, "{name}:\n{text}");
            assert_eq!(
                lines(&format!("# TYPE {name} {kind}")),
                1,
                "{name}:\n{text}"
            );
        }
    }

    #[test]
    fn every_family_is_exposed_before_and_after_its_samples() {
        let m = Metrics::new(Registry::new()).unwrap();
        let fresh = String::from_utf8(m.render()).unwrap();
        headers_once(&fresh);
        assert!(fresh.lines().all(|l| l.starts_with('#')), "{fresh}");

        m.requests
            .with_label_values(&["r", "c", "openai", "gpt-4o-mini", "interactive", "200"])
            .inc();
        m.savings
            .with_label_values(&["r", "c", "openai", "gpt-4o-mini", "batch"])
            .add(0.5);
        m.overhead.with_label_values(&["r"]).observe(0.001);
        // A queue that drained leaves no series: the family must stay visible.
        m.batch_queue_depth
            .with_label_values(&["openai", "gpt-4o-mini"])
            .set(3.0);
        m.batch_queue_depth.reset();
        let text = String::from_utf8(m.render()).unwrap();
        headers_once(&text);
        assert!(text.contains("sluice_requests_total{"), "{text}");
        assert!(text.contains("sluice_savings_usd_total{"), "{text}");
        assert!(text.contains("sluice_overhead_seconds_count{"), "{text}");
        assert!(!text.contains("sluice_batch_queue_depth{"), "{text}");
    }

    #[test]
    fn build_info_names_one_replica() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.identify("first");
        m.identify("sluice-b");
        let text = String::from_utf8(m.render()).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sluice_build_info"))
            .collect();
        assert_eq!(
            series,
            [format!(
                "sluice_build_info{{replica=\"sluice-b\",version=\"{version}\"}} 1"
            )],
            "{text}"
        );
        assert!(text.contains("# TYPE sluice_build_info gauge"), "{text}");
    }
}
