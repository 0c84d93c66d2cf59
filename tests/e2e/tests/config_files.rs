//! The shipped configuration files agree with each other and with the
//! filter's validator, and the harness renders them faithfully.

use std::path::Path;
use tollgate::config::Config;
use tollgate_e2e::envoy::{demo_document, demo_yaml, repo_root};
use tollgate_e2e::render::{self, Ports};
use tollgate_e2e::tokens::{DEMO_KEY_B64, DEMO_KEY_ENV};

fn tollgate_json() -> (String, serde_json::Value) {
    let path = repo_root().join("envoy/tollgate.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("envoy/tollgate.json is not JSON: {e}"));
    (text, json)
}

/// The demo edge credential the shipped document reads from the VM
/// (`authority.credential_env`), as the Makefile and docker-compose default it.
const EDGE_CREDENTIAL_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL";
const DEMO_EDGE_CREDENTIAL: &str = "demo-edge-credential-not-for-production-0001";

/// The VM environment envoy/envoy.yaml gives the filter (host_env_keys).
fn demo_env(name: &str) -> Option<String> {
    if name == DEMO_KEY_ENV {
        Some(DEMO_KEY_B64.to_owned())
    } else if name == EDGE_CREDENTIAL_ENV {
        Some(DEMO_EDGE_CREDENTIAL.to_owned())
    } else {
        None
    }
}

#[test]
fn document_in_envoy_yaml_equals_tollgate_json() {
    let (_, file) = tollgate_json();
    assert_eq!(
        demo_document(),
        file,
        "the configuration embedded in envoy/envoy.yaml differs from envoy/tollgate.json"
    );
}

#[test]
fn demo_documents_pass_the_filter_validator() {
    let embedded = render::embedded_document(&demo_yaml()).unwrap();
    let (file, _) = tollgate_json();
    for (name, doc) in [
        ("envoy/envoy.yaml", embedded.as_str()),
        ("envoy/tollgate.json", file.as_str()),
    ] {
        let config = Config::parse(doc.as_bytes(), &demo_env)
            .unwrap_or_else(|e| panic!("{name}: the demo document is refused: {e}"));
        assert_eq!(config.realm, "tollgate-demo", "{name}");
        // Without the key in the VM's environment it must be refused, naming the field.
        let err =
            Config::parse(doc.as_bytes(), &|_| None).expect_err("accepted without its secret");
        assert_eq!(err.field, "keys[0].secret_env", "{name}: {err}");
    }
}

#[test]
fn rendering_changes_only_ports_module_and_document() {
    let yaml = demo_yaml();
    let ports = Ports {
        listener: 41000,
        admin: 41001,
        upstream: 41002,
        authority: 41003,
    };
    let module = Path::new("/abs/path with space/tollgate.wasm");
    let rendered = render::render(&yaml, ports, module, None).unwrap();
    let before: Vec<&str> = yaml.lines().collect();
    let after: Vec<&str> = rendered.lines().collect();
    assert_eq!(before.len(), after.len());
    let changed: Vec<(&str, &str)> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    let expect = [
        ("port_value: 9901 }", "port_value: 41001 }"),
        ("port_value: 10000 }", "port_value: 41000 }"),
        (
            "filename: target/wasm32-wasip1/release/tollgate.wasm",
            "filename: \"/abs/path with space/tollgate.wasm\"",
        ),
        ("port_value: 8081 }", "port_value: 41002 }"),
        ("port_value: 8080 }", "port_value: 41003 }"),
    ];
    assert_eq!(changed.len(), expect.len(), "changed lines: {changed:#?}");
    for ((old, new), (want_old, want_new)) in changed.iter().zip(expect) {
        assert!(
            old.contains(want_old) && new.contains(want_new),
            "{old:?} -> {new:?}"
        );
        assert_eq!(old.replace(want_old, want_new), *new);
    }

    // A replaced document is what the embedded-document reader finds again,
    // and nothing else moves.
    let doc = serde_json::json!({"issuer": "x", "nested": {"a": [1, 2]}});
    let doc_text = serde_json::to_string_pretty(&doc).unwrap();
    let rendered = render::render(&yaml, ports, module, Some(&doc_text)).unwrap();
    let found: serde_json::Value =
        serde_json::from_str(&render::embedded_document(&rendered).unwrap()).unwrap();
    assert_eq!(found, doc);
    let tail = |s: &str| {
        s.split_once("- name: envoy.filters.http.router")
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(
        tail(&rendered),
        tail(&render::render(&yaml, ports, module, None).unwrap())
    );
}

#[test]
fn local_document_is_the_demo_without_callouts() {
    let demo = demo_document();
    let local = tollgate_e2e::local_document();
    let config = Config::parse(local.to_string().as_bytes(), &demo_env)
        .unwrap_or_else(|e| panic!("the local document is refused: {e}"));
    assert!(config.authority.is_none() && config.revocation.is_none() && config.refresh.is_none());
    assert!(!config.policy.has_fresh_rules());
    // Everything else is the demo's: put the callout parts back and compare.
    let mut back = local.clone();
    for section in ["authority", "revocation", "refresh"] {
        back[section] = demo[section].clone();
    }
    for (i, rule) in demo["rules"].as_array().unwrap().iter().enumerate() {
        for field in ["fresh", "max_staleness_ms"] {
            if let Some(v) = rule.get(field) {
                back["rules"][i][field] = v.clone();
            }
        }
    }
    assert_eq!(back, demo);
}
