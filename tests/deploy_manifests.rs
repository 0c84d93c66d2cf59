#![cfg(not(target_arch = "wasm32"))]
//! The filter document in the Kubernetes manifests is envoy/tollgate.json and
//! is accepted by the filter's own validation (`Config::parse`, the code that
//! runs at `on_configure`).
//!
//! The overlays carry the document as generated JSON6902 patches
//! (`envoy/k8s/overlays/*/plugin-config.patch.json`, written by
//! scripts/deploy/sync-plugin-config.py); kustomize puts it in the Istio
//! WasmPlugin's `pluginConfig` and in the Envoy Gateway
//! EnvoyExtensionPolicy's `wasm[0].config`. scripts/deploy/test.sh checks the
//! built manifests too, and loads them into a real Envoy.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tollgate::config::Config;

const DEMO_KEY: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `plugin-config.patch.json` under envoy/k8s, with its target path and document.
fn patches() -> Vec<(PathBuf, String, Value)> {
    let mut found = Vec::new();
    let mut dirs = vec![root().join("envoy/k8s")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "plugin-config.patch.json") {
                let ops = read_json(&path);
                let ops = ops.as_array().unwrap_or_else(|| panic!("{}: not a JSON6902 patch", path.display()));
                assert_eq!(ops.len(), 1, "{}: one operation expected", path.display());
                let op = &ops[0];
                assert_eq!(op["op"], "add", "{}", path.display());
                found.push((path.clone(), op["path"].as_str().unwrap().to_owned(), op["value"].clone()));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn env(name: &str) -> Option<String> {
    // The manifests pass exactly this variable to the VM (vmConfig.env /
    // env.hostKeys); scripts/deploy/check_manifests.py checks that they do.
    (name == "TOLLGATE_DEMO_KEY").then(|| DEMO_KEY.to_owned())
}

#[test]
fn every_overlay_carries_the_document() {
    let paths: Vec<_> = patches().into_iter().map(|(p, target, _)| (p, target)).collect();
    let rel = |p: &Path| p.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
    let got: Vec<_> = paths.iter().map(|(p, t)| (rel(p), t.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("envoy/k8s/overlays/envoy-gateway/plugin-config.patch.json".to_owned(), "/spec/wasm/0/config"),
            ("envoy/k8s/overlays/istio/plugin-config.patch.json".to_owned(), "/spec/pluginConfig"),
        ]
    );
}

#[test]
fn manifests_document_equals_envoy_tollgate_json() {
    let want = read_json(&root().join("envoy/tollgate.json"));
    for (path, _, doc) in patches() {
        assert!(
            doc == want,
            "{} differs from envoy/tollgate.json: run scripts/deploy/sync-plugin-config.py",
            path.display()
        );
    }
}

#[test]
fn manifests_document_is_accepted_by_the_filter() {
    for (path, _, doc) in patches() {
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Err(e) = Config::parse(&bytes, &env) {
            panic!("{}: the filter refuses its document: {e}", path.display());
        }
    }
}

#[test]
fn a_drifted_document_is_refused() {
    // The check above has teeth: the same document with an unknown field, or
    // without the secret in the VM's environment, is refused.
    let (_, _, mut doc) = patches().into_iter().next().unwrap();
    doc["issuer_url"] = Value::from("https://elsewhere");
    let e = Config::parse(&serde_json::to_vec(&doc).unwrap(), &env).unwrap_err();
    assert!(e.to_string().contains("issuer_url"), "{e}");
    let (_, _, doc) = patches().into_iter().next().unwrap();
    assert!(Config::parse(&serde_json::to_vec(&doc).unwrap(), &|_| None).is_err());
}
