//! The shipped configuration files agree with each other and with the
//! filter's validator, and the harness renders them faithfully. Each test
//! covers both hosts' files (`envoy/envoy.yaml`, `envoy/envoy-native.yaml`),
//! whichever host the suite runs on: they are text, no Envoy runs.

use std::path::Path;
use tollgate::config::Config;
use tollgate_e2e::envoy::{demo_document, repo_root, shipped_document, shipped_yaml};
use tollgate_e2e::render::{self, Ports};
use tollgate_e2e::tokens::{DEMO_KEY_B64, DEMO_KEY_ENV};
use tollgate_e2e::Host;

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

/// The environment the shipped configurations give the filter (the Wasm
/// VM's `host_env_keys`; Envoy's process environment for the native module).
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
fn the_document_in_each_envoy_config_equals_tollgate_json() {
    let (_, file) = tollgate_json();
    for host in Host::ALL {
        assert_eq!(
            shipped_document(host),
            file,
            "the configuration embedded in {} differs from envoy/tollgate.json",
            host.yaml_file()
        );
    }
}

#[test]
fn demo_documents_pass_the_filter_validator() {
    let (file, _) = tollgate_json();
    let mut docs: Vec<(&str, String)> = Host::ALL
        .iter()
        .map(|h| (h.yaml_file(), render::embedded_document(&shipped_yaml(*h)).unwrap()))
        .collect();
    docs.push(("envoy/tollgate.json", file));
    for (name, doc) in &docs {
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
    for host in Host::ALL {
        rendering_changes_only_ports_module_and_document_of(host);
    }
}

fn rendering_changes_only_ports_module_and_document_of(host: Host) {
    let yaml = shipped_yaml(host);
    let ports = Ports {
        listener: 41000,
        admin: 41001,
        upstream: 41002,
        authority: 41003,
    };
    let module = Path::new("/abs/path with space/the module");
    let rendered = render::render(&yaml, host, ports, module, None).unwrap();
    let before: Vec<&str> = yaml.lines().collect();
    let after: Vec<&str> = rendered.lines().collect();
    assert_eq!(before.len(), after.len());
    let changed: Vec<(&str, &str)> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    let module_line = format!("filename: {}", host.module_as_written());
    let expect = [
        ("port_value: 9901 }", "port_value: 41001 }"),
        ("port_value: 10000 }", "port_value: 41000 }"),
        (
            module_line.as_str(),
            "filename: \"/abs/path with space/the module\"",
        ),
        ("port_value: 8081 }", "port_value: 41002 }"),
        ("port_value: 8080 }", "port_value: 41003 }"),
    ];
    assert_eq!(changed.len(), expect.len(), "{host}: changed lines: {changed:#?}");
    for ((old, new), (want_old, want_new)) in changed.iter().zip(expect) {
        assert!(
            old.contains(want_old) && new.contains(want_new),
            "{host}: {old:?} -> {new:?}"
        );
        assert_eq!(old.replace(want_old, want_new), *new);
    }

    // A replaced document is what the embedded-document reader finds again,
    // and nothing else moves.
    let doc = serde_json::json!({"issuer": "x", "nested": {"a": [1, 2]}});
    let doc_text = serde_json::to_string_pretty(&doc).unwrap();
    let rendered = render::render(&yaml, host, ports, module, Some(&doc_text)).unwrap();
    let found: serde_json::Value =
        serde_json::from_str(&render::embedded_document(&rendered).unwrap()).unwrap();
    assert_eq!(found, doc, "{host}");
    let tail = |s: &str| {
        s.split_once("- name: envoy.filters.http.router")
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(
        tail(&rendered),
        tail(&render::render(&yaml, host, ports, module, None).unwrap()),
        "{host}"
    );
}

/// `yaml` without comments and blank lines, the filter's block (from its
/// `- name: tollgate` entry to the next filter) cut out: what must be the
/// same in both hosts' configurations.
fn outside_the_filter(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skipping: Option<usize> = None;
    for line in yaml.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(at) = skipping {
            if indent > at || (indent == at && !trimmed.starts_with("- ")) {
                continue;
            }
            skipping = None;
        }
        if trimmed == "- name: tollgate" {
            skipping = Some(indent);
            continue;
        }
        out.push(line.trim_end().to_owned());
    }
    out
}

/// `envoy-native.yaml` says it is `envoy.yaml` but for the filter, and the
/// suite runs the same tests on both: the listener, the connection
/// manager's request semantics (path normalization, escaped slashes,
/// header names with `_`), the routes and the clusters must be the same,
/// or a test proves one host's Envoy settings and not the other's.
#[test]
fn envoy_native_yaml_is_envoy_yaml_but_for_the_filter() {
    let wasm = outside_the_filter(&shipped_yaml(Host::Wasm));
    let native = outside_the_filter(&shipped_yaml(Host::Native));
    assert!(
        wasm.iter().any(|l| l.trim() == "- name: envoy.filters.http.router")
            && wasm.iter().all(|l| !l.contains("envoy.filters.http.wasm")),
        "the filter block was not cut out of envoy.yaml: {wasm:#?}"
    );
    assert!(
        native.iter().all(|l| !l.contains("dynamic_modules")),
        "the filter block was not cut out of envoy-native.yaml: {native:#?}"
    );
    let differ: Vec<String> = wasm
        .iter()
        .map(|l| ("envoy.yaml", l))
        .filter(|(_, l)| !native.contains(l))
        .chain(native.iter().map(|l| ("envoy-native.yaml", l)).filter(|(_, l)| !wasm.contains(l)))
        .map(|(f, l)| format!("only in {f}: {l}"))
        .collect();
    assert!(differ.is_empty(), "the two configurations differ outside the filter:\n{}", differ.join("\n"));
    assert_eq!(wasm, native, "the same lines, in another order");
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
