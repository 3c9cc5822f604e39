use super::*;

fn set(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
    let owned: Vec<(String, String)> = files
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    PolicySet::from_sources(&owned)
}

fn key_hash(k: &str) -> String {
    hex::encode(hash_key(k))
}

#[test]
fn no_keys_means_open_default_client() {
    let s = set(&[]).unwrap();
    assert!(s.is_open());
    assert_eq!(&*s.identify(None).unwrap().name, "default");
    assert_eq!(&*s.identify(Some("anything")).unwrap().name, "default");
}

#[test]
fn keys_identify_clients_and_unknown_is_401() {
    let text = format!(
        "[client]\nname = \"acme\"\nkeys = [\"{}\"]\n",
        key_hash("sk-acme")
    );
    let s = set(&[("acme.toml", &text)]).unwrap();
    assert_eq!(&*s.identify(Some("sk-acme")).unwrap().name, "acme");
    assert!(matches!(
        s.identify(Some("sk-other")),
        Err(GatewayError::UnknownKey)
    ));
    assert!(matches!(s.identify(None), Err(GatewayError::MissingKey)));
}

#[test]
fn routes_match_by_path_and_model_prefix_and_hint() {
    let text = r#"
[client]
name = "acme"

[[route]]
name = "summaries"
paths = ["/v1/chat/completions"]
models = ["gpt-4o*"]
sla = "24h"

[[route]]
name = "embed"
paths = ["/v1/embeddings"]
"#;
    let s = set(&[("acme.toml", text)]).unwrap();
    let c = s.identify(None).unwrap();
    // open mode: "default" client is built in; look the named client up directly.
    assert_eq!(&*c.name, "default");
    let acme = s.clients().iter().find(|c| &*c.name == "acme").unwrap();
    assert_eq!(
        &*acme
            .route("/v1/chat/completions", "gpt-4o-mini", None)
            .unwrap()
            .name,
        "summaries"
    );
    assert_eq!(
        &*acme
            .route("/v1/chat/completions", "gpt-5", None)
            .unwrap()
            .name,
        "default"
    );
    assert_eq!(
        &*acme.route("/v1/embeddings", "x", None).unwrap().name,
        "embed"
    );
    assert_eq!(
        &*acme
            .route("/v1/embeddings", "x", Some("summaries"))
            .unwrap()
            .name,
        "summaries"
    );
    assert!(matches!(
        acme.route("/v1/embeddings", "x", Some("nope")),
        Err(GatewayError::UnknownRoute { .. })
    ));
    let r = acme.route("/v1/chat/completions", "gpt-4o", None).unwrap();
    assert_eq!(acme.effective_sla(r, None), Sla::BATCH);
}

#[test]
fn sla_override_is_clamped_or_ignored() {
    let text =
        "[client]\nname = \"a\"\ndefault_sla = \"semi\"\nmin_sla = \"90s\"\nmax_sla = \"1h\"\n";
    let s = set(&[("a.toml", text)]).unwrap();
    let a = s.clients().iter().find(|c| &*c.name == "a").unwrap();
    let r = &a.default_route;
    assert_eq!(a.effective_sla(r, None), Sla::SEMI);
    assert_eq!(
        a.effective_sla(r, Some(Sla::INTERACTIVE)),
        Sla::within(Duration::from_secs(90))
    );
    assert_eq!(
        a.effective_sla(r, Some(Sla::BATCH)),
        Sla::within(Duration::from_secs(3600))
    );
    let text = "[client]\nname = \"b\"\ndefault_sla = \"batch\"\nallow_sla_override = false\n";
    let s = set(&[("b.toml", text)]).unwrap();
    let b = s.clients().iter().find(|c| &*c.name == "b").unwrap();
    assert_eq!(
        b.effective_sla(&b.default_route, Some(Sla::INTERACTIVE)),
        Sla::BATCH
    );
}

#[test]
fn model_map_defaults_and_overrides() {
    let s = set(&[(
        "m.toml",
        "[models]\n\"claude-local*\" = \"openai\"\n\"my-ft\" = \"anthropic\"\n",
    )])
    .unwrap();
    assert_eq!(s.models.provider_for("gpt-4o"), Provider::OpenAi);
    assert_eq!(s.models.provider_for("o3-mini"), Provider::OpenAi);
    assert_eq!(
        s.models.provider_for("text-embedding-3-small"),
        Provider::OpenAi
    );
    assert_eq!(
        s.models.provider_for("claude-sonnet-4-6"),
        Provider::Anthropic
    );
    assert_eq!(s.models.provider_for("gemini-2.5-pro"), Provider::Gemini);
    assert_eq!(s.models.provider_for("claude-local-7b"), Provider::OpenAi);
    assert_eq!(s.models.provider_for("my-ft"), Provider::Anthropic);
    assert!(s.models.is_configured("my-ft"));
}

#[test]
fn errors_name_file_line_and_reason() {
    let cases: [(&str, usize, &str); 6] = [
        (
            "[client]\nname = \"a\"\nkeys = [\"sk-plaintext\"]\n",
            3,
            "SHA-256",
        ),
        (
            "[client]\nname = \"a\"\ndefault_sla = \"soonish\"\n",
            3,
            "invalid SLA",
        ),
        (
            "[client]\nname = \"a\"\n\n[[route]]\nname = \"r\"\npin_tier = \"fast\"\n",
            6,
            "unknown tier",
        ),
        ("[client]\nname = \"a\"\nbogus = 1\n", 3, "bogus"),
        (
            "[client]\nname = \"a\"\n\n[[route]]\nname = \"r\"\nresponse_cache_ttl = \"5 min\"\n",
            6,
            "invalid duration",
        ),
        ("[models]\n\"x\" = \"azure\"\n", 2, "unknown provider"),
    ];
    for (text, line, reason) in cases {
        let e = set(&[("policies/a.toml", text)]).unwrap_err();
        assert_eq!(e.file, "policies/a.toml");
        assert_eq!(e.line, line, "{text}: {e}");
        assert!(e.reason.contains(reason), "{text}: {e}");
    }
}

#[test]
fn duplicates_across_files_are_rejected() {
    let e = set(&[
        ("a.toml", "[client]\nname = \"x\"\n"),
        ("b.toml", "[client]\nname = \"x\"\n"),
    ])
    .unwrap_err();
    assert_eq!(e.file, "b.toml");
    assert!(e.reason.contains("already defined in a.toml"), "{e}");
}

#[test]
fn client_tier_rules_are_route_defaults() {
    let text = "[client]\nname = \"c\"\nforbid_tiers = [\"batch\"]\n\n[[route]]\nname = \"inherits\"\nmodels = [\"a\"]\n\n[[route]]\nname = \"own\"\nmodels = [\"b\"]\npin_tier = \"batch\"\n";
    let s = set(&[("c.toml", text)]).unwrap();
    let c = s.clients().iter().find(|c| &*c.name == "c").unwrap();
    assert_eq!(c.routes[0].forbid_tiers, vec![Tier::Batch]);
    assert_eq!(c.routes[1].pin_tier, Some(Tier::Batch));
    assert!(c.routes[1].forbid_tiers.is_empty());
    assert_eq!(c.default_route.forbid_tiers, vec![Tier::Batch]);
    let bad = "[client]\nname = \"d\"\npin_tier = \"flex\"\nforbid_tiers = [\"flex\"]\n";
    assert!(
        set(&[("d.toml", bad)])
            .unwrap_err()
            .reason
            .contains("also forbids")
    );
}

#[test]
fn models_can_be_sent_to_vertex_and_the_gemini_default_can_move_there() {
    let files = vec![(
        "m.toml".to_owned(),
        "[models]\n\"gemini-2.5-pro\" = \"vertex\"\n\"tuned-*\" = \"vertex\"\n".to_owned(),
    )];
    let mut set = PolicySet::from_sources(&files).unwrap();
    let m = &set.models;
    assert_eq!(m.provider_for("gemini-2.5-pro"), Provider::Vertex);
    assert_eq!(m.provider_for("tuned-x"), Provider::Vertex);
    assert_eq!(m.provider_for("gemini-2.5-flash"), Provider::Gemini);
    set.models.default_gemini_to(Provider::Vertex);
    assert_eq!(
        set.models.provider_for("gemini-2.5-flash"),
        Provider::Vertex
    );
    // A policy's own `gemini-*` entry is never moved.
    let own = vec![(
        "m.toml".to_owned(),
        "[models]\n\"gemini-*\" = \"gemini\"\n".to_owned(),
    )];
    let mut set = PolicySet::from_sources(&own).unwrap();
    set.models.default_gemini_to(Provider::Vertex);
    assert_eq!(
        set.models.provider_for("gemini-2.5-flash"),
        Provider::Gemini
    );
    let bad = vec![(
        "m.toml".to_owned(),
        "[models]\n\"x\" = \"vertexai\"\n".to_owned(),
    )];
    let e = PolicySet::from_sources(&bad).unwrap_err().to_string();
    assert!(e.contains("gemini or vertex"), "{e}");
}
