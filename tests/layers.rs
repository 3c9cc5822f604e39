//! The import direction of the layers (README "Layout"), checked on the source: data flows
//! one way, so no module imports from a module that calls it, providers know nothing of
//! the gateway, and the pure stages import no I/O. Test code is not checked (it may reach
//! anywhere); everything from a file's first `#[cfg(test)]` on counts as test code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's modules that do I/O (sockets, the store, tasks).
const IO: &[&str] = &[
    "upstream",
    "forward",
    "relay",
    "gateway",
    "deliver",
    "server",
    "store",
    "batch::engine",
    "providers::control",
    "account",
    "response_cache",
    "simulate",
    "cli",
    "demo",
    "lifecycle",
];

/// Pure stages: functions of their input, testable without a runtime.
const PURE: &[&str] = &[
    "types",
    "error",
    "duration",
    "sla",
    "prefer",
    "client_hints",
    "triage",
    "inspect",
    "usage",
    "pricing",
    "synth",
    "policy",
    "strict_json",
    "clock",
    "batch::accumulator",
    "providers::openai::wire",
    "providers::anthropic::batch_wire",
    "providers::anthropic::translate",
    "providers::anthropic::cache",
    "providers::gemini::batch_wire",
    "providers::gemini::translate",
    "providers::vertex::wire",
];

/// Crates that mean I/O or a runtime. (Reading a policy or price file at startup is not
/// counted: `policy` and `pricing` load their own files.)
const IO_CRATES: &[&str] = &["tokio::", "hyper::", "hyper_util::", "sqlx::", "std::net"];

/// (module, modules it must never import): the callers of each layer.
const NEVER: &[(&str, &[&str])] = &[
    (
        "providers",
        &[
            "gateway",
            "batch",
            "store",
            "deliver",
            "server",
            "account",
            "policy",
            "cli",
            "demo",
            "response_cache",
        ],
    ),
    ("batch", &["gateway", "deliver", "server", "cli", "demo"]),
    (
        "store",
        &[
            "gateway",
            "batch",
            "providers",
            "forward",
            "deliver",
            "server",
            "account",
        ],
    ),
    (
        "forward",
        &["gateway", "batch", "deliver", "server", "account", "store"],
    ),
    (
        "account",
        &[
            "gateway",
            "batch",
            "deliver",
            "server",
            "forward",
            "providers",
        ],
    ),
    ("deliver", &["gateway", "server", "cli"]),
    ("gateway", &["server", "cli", "demo"]),
    (
        "upstream",
        &[
            "gateway",
            "batch",
            "forward",
            "providers",
            "deliver",
            "server",
        ],
    ),
    (
        "relay",
        &["gateway", "batch", "forward", "deliver", "server"],
    ),
];

struct Source {
    module: String,
    /// `crate::a::b` paths the non-test code names, as `a::b`.
    imports: BTreeSet<String>,
    code: String,
}

fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn is_test_file(file: &Path) -> bool {
    let name = file.file_stem().unwrap().to_string_lossy();
    name == "tests" || name == "proptests" || name.starts_with("tests_") || name == "fake"
}

fn sources() -> Vec<Source> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !is_test_file(&p) {
                files.push(p);
            }
        }
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let imports = imports(&code);
            Source {
                module: module_of(&root, &f),
                imports,
                code,
            }
        })
        .collect()
}

/// Every `crate::x::y` path (and the members of `crate::x::{y, z}` groups, one level).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':').to_owned();
        if !path.is_empty() {
            out.insert(path);
        }
    }
    out
}

/// Whether `import` (a path) is inside module `m` (`a::b` is inside `a`).
fn within(import: &str, m: &str) -> bool {
    import == m || import.starts_with(&format!("{m}::"))
}

#[test]
fn no_layer_imports_from_its_callers() {
    let mut violations = Vec::new();
    for s in sources() {
        for (layer, never) in NEVER {
            if !within(&s.module, layer) {
                continue;
            }
            for import in &s.imports {
                if let Some(bad) = never.iter().find(|n| within(import, n)) {
                    violations.push(format!(
                        "{} imports crate::{import} ({bad} calls {layer})",
                        s.module
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn pure_stages_import_no_io() {
    let mut violations = Vec::new();
    let mut checked = 0;
    for s in sources() {
        if !PURE.iter().any(|p| within(&s.module, p)) {
            continue;
        }
        checked += 1;
        for import in &s.imports {
            if let Some(io) = IO.iter().find(|io| within(import, io)) {
                violations.push(format!("{} imports crate::{import} (I/O: {io})", s.module));
            }
        }
        for krate in IO_CRATES {
            if s.code.contains(krate) {
                violations.push(format!("{} uses {krate}", s.module));
            }
        }
    }
    assert!(
        checked >= PURE.len(),
        "every pure stage was found ({checked})"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_provider_enum_is_matched_only_behind_the_seam() {
    // `match` arms on providers outside `providers/` (and the leaf vocabulary, pricing
    // tables, the simulator and tools) mean a provider decision leaked into the tree.
    let allowed = [
        "providers",
        "types",
        "pricing",
        "simulate",
        "estimate",
        "config",
        "policy",
    ];
    let mut violations = Vec::new();
    for s in sources() {
        if allowed.iter().any(|a| within(&s.module, a)) {
            continue;
        }
        for (n, line) in s.code.lines().enumerate() {
            if line.contains("Provider::OpenAi")
                || line.contains("Provider::Anthropic")
                || line.contains("Provider::Gemini")
                || line.contains("Provider::Vertex")
            {
                violations.push(format!("{}:{}: {}", s.module, n + 1, line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_imports() {
    // The rules above would pass vacuously if nothing were parsed.
    let s = imports("use crate::store::{Job, Store};\nlet x = crate::types::Tier::Batch;");
    assert!(
        s.contains("store") && s.contains("types::Tier::Batch"),
        "{s:?}"
    );
    assert!(within("batch::engine::flush", "batch::engine"));
    assert!(!within("batchy", "batch"));
}
