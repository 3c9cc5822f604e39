//! The Grafana dashboard as data: its panels' queries, Grafana's template variables
//! substituted, and static checks (contract metric names, variable filters, units).

use serde_json::Value;

/// The contract's metrics (CONTRACT.md, "Metrics") and which of the dashboard's filter
/// labels (`route`, `client`, `model`) each one carries.
pub const CONTRACT: &[(&str, &[&str])] = &[
    ("sluice_requests_total", &["route", "client", "model"]),
    ("sluice_cost_usd_total", &["route", "client", "model"]),
    (
        "sluice_baseline_cost_usd_total",
        &["route", "client", "model"],
    ),
    ("sluice_savings_usd_total", &["route", "client", "model"]),
    ("sluice_tokens_total", &["route", "model"]),
    ("sluice_wasted_cost_usd_total", &["route"]),
    ("sluice_fallbacks_total", &["route"]),
    ("sluice_sla_violations_total", &["route"]),
    ("sluice_batch_queue_depth", &["model"]),
    ("sluice_batches_total", &[]),
    ("sluice_batch_turnaround_seconds", &[]),
    ("sluice_upstream_duration_seconds", &[]),
    ("sluice_overhead_seconds", &["route"]),
];

const HISTOGRAMS: &[&str] = &[
    "sluice_batch_turnaround_seconds",
    "sluice_upstream_duration_seconds",
    "sluice_overhead_seconds",
];

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct Target {
    pub panel: String,
    pub expr: String,
}

pub fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, including those nested in (collapsed) rows.
pub fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Every panel's `targets[].expr`.
pub fn targets(dash: &Value) -> Vec<Target> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("(untitled)").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| {
                    t["expr"].as_str().map(|e| Target {
                        panel: title.clone(),
                        expr: e.to_owned(),
                    })
                })
        })
        .collect()
}

/// Grafana's variables as an "All" selection and a 5-minute range would expand them.
pub fn substitute(expr: &str) -> String {
    let mut e = expr.to_owned();
    for (var, value) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "1m"),
        ("$__interval", "1m"),
        ("${__range}", "5m"),
        ("$__range", "5m"),
        ("${route}", ".*"),
        ("$route", ".*"),
        ("${client}", ".*"),
        ("$client", ".*"),
        ("${model}", ".*"),
        ("$model", ".*"),
    ] {
        e = e.replace(var, value);
    }
    e
}

/// The contract metric a series name belongs to (`_bucket`/`_sum`/`_count` of histograms).
pub fn contract_metric(name: &str) -> Option<&'static (&'static str, &'static [&'static str])> {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
        .unwrap_or(name);
    CONTRACT.iter().find(|(n, _)| *n == base)
}

/// Each metric name in `expr` (identifiers starting `sluice_`), with its `{...}` selector
/// if one follows it.
pub fn selectors(expr: &str) -> Vec<(String, Option<String>)> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_string = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = in_string {
            if c == '\\' {
                i += 1;
            } else if c == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            in_string = Some(c);
            i += 1;
            continue;
        }
        if ident(c) && (i == 0 || !ident(chars[i - 1])) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name.starts_with("sluice_") {
                let selector = (chars.get(i) == Some(&'{')).then(|| {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .map_or(chars.len(), |p| i + p);
                    chars[i + 1..end].iter().collect::<String>()
                });
                out.push((name, selector));
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Everything statically wrong with the dashboard (empty when it is fine).
pub fn problems(dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if dash["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        out.push(format!(
            "schemaVersion {} (want ~39)",
            dash["schemaVersion"]
        ));
    }
    if dash["uid"].as_str().is_none_or(str::is_empty)
        || dash["title"].as_str().is_none_or(str::is_empty)
    {
        out.push("the dashboard needs a uid and a title".into());
    }
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n);
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => out.push("no `datasource` variable of type datasource, query prometheus".into()),
    }
    for name in ["route", "client", "model"] {
        match var(name) {
            Some(v)
                if v["type"] == "query"
                    && v["multi"] == true
                    && v["includeAll"] == true
                    && v["allValue"] == ".*"
                    && v["definition"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("label_values(sluice_requests_total")
                            && d.ends_with(&format!(", {name})"))) => {}
            _ => out.push(format!(
                "variable `{name}`: want a multi-select query variable label_values(sluice_requests_total..., {name}) with includeAll and allValue .*"
            )),
        }
    }
    for p in panels(dash) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or_default();
        if title.is_empty() {
            out.push(format!("panel id {} has no title", p["id"]));
        }
        let unit = p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        if !["currencyUSD", "percentunit", "s", "short"].contains(&unit) {
            out.push(format!("{title}: unit {unit:?}"));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            out.push(format!(
                "{title}: datasource is not the $datasource variable"
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            out.push(format!("{title}: no queries"));
        }
        for t in targets {
            let Some(expr) = t["expr"].as_str() else {
                out.push(format!("{title}: a target without expr"));
                continue;
            };
            let found = selectors(expr);
            if found.is_empty() {
                out.push(format!("{title}: `{expr}` uses no sluice metric"));
            }
            for (name, selector) in found {
                let Some((_, labels)) = contract_metric(&name) else {
                    out.push(format!("{title}: `{name}` is not a contract metric"));
                    continue;
                };
                let sel = selector.unwrap_or_default();
                for l in *labels {
                    if !sel.contains(&format!("{l}=~\"${l}\"")) {
                        out.push(format!(
                            "{title}: `{name}` not filtered by {l}=~\"${l}\" in `{expr}`"
                        ));
                    }
                }
            }
            let expanded = substitute(expr);
            if expanded.contains('$') {
                out.push(format!("{title}: unknown variable left in `{expanded}`"));
            }
        }
    }
    out
}
