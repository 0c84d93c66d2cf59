#![cfg(not(target_arch = "wasm32"))]
//! Every door carries envoy/tollgate.json: envoy/envoy.yaml (native and
//! docker-compose) verbatim, the Kubernetes manifests except for the per-door
//! fields. The document is accepted by the filter's own validation
//! (`Config::parse`, the code that runs at `on_configure`), states the
//! request semantics it enforces (`strict_paths`), reads its edge credential
//! from the VM's environment, and its rules give `/admin` in every spelling
//! to the admin rule and every write under `/api` to the write rule.
//!
//! The overlays carry the document as generated JSON6902 patches
//! (`envoy/k8s/overlays/*/plugin-config.patch.json`, written by
//! scripts/deploy/sync-plugin-config.py from envoy/tollgate.json plus the
//! overlay's `plugin-config.override.json`); kustomize puts it in the Istio
//! WasmPlugin's `pluginConfig` and in the Envoy Gateway
//! EnvoyExtensionPolicy's `wasm[0].config`. An override may only replace
//! [`PER_DOOR_FIELDS`] (where the authority is, per door): a difference
//! anywhere else is drift. scripts/deploy/test.sh checks the built manifests
//! too (the cluster names against the Service and the EnvoyPatchPolicy, the
//! request semantics and credential wiring of each door, Secrets and
//! NetworkPolicies), and loads them into a real Envoy.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tollgate::config::Config;

const DEMO_KEY: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";
/// The demo edge credential (the Makefile's and docker-compose's default).
const DEMO_EDGE_CREDENTIAL: &str = "demo-edge-credential-not-for-production-0001";
/// The VM environment variable every door passes the edge credential in.
const EDGE_CREDENTIAL_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL";

/// The only fields an overlay's document may set differently from
/// envoy/tollgate.json (scripts/deploy/sync-plugin-config.py: PER_DOOR_FIELDS).
const PER_DOOR_FIELDS: [&str; 2] = ["authority.cluster", "authority.host"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap().to_string_lossy().into_owned()
}

struct Overlay {
    /// The overlay's plugin-config.patch.json.
    patch: PathBuf,
    /// The JSON6902 path it adds the document at.
    target: String,
    /// The document the patch carries.
    doc: Value,
    /// The overlay's plugin-config.override.json.
    override_doc: Value,
}

/// Every `plugin-config.patch.json` under envoy/k8s, with its target path,
/// its document and its overlay's override.
fn overlays() -> Vec<Overlay> {
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
                let override_path = path.with_file_name("plugin-config.override.json");
                assert!(override_path.exists(), "{} has no {}", rel(&path), rel(&override_path));
                found.push(Overlay {
                    patch: path.clone(),
                    target: op["path"].as_str().unwrap().to_owned(),
                    doc: op["value"].clone(),
                    override_doc: read_json(&override_path),
                });
            }
        }
    }
    found.sort_by(|a, b| a.patch.cmp(&b.patch));
    found
}

/// (dotted path, value) of every non-object value of an override.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    let Some(obj) = v.as_object().filter(|o| !o.is_empty()) else {
        return Err(format!("{}: must be a non-empty JSON object", if prefix.is_empty() { "the override" } else { prefix }));
    };
    for (k, v) in obj {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if v.is_object() {
            leaves(v, &path, out)?;
        } else {
            out.push((path, v.clone()));
        }
    }
    Ok(())
}

/// envoy/tollgate.json's document with the override's per-door fields
/// replaced: what the overlay must carry. The same rules as
/// sync-plugin-config.py's `apply_override`.
fn apply_override(doc: &Value, override_doc: &Value) -> Result<Value, String> {
    let mut out = doc.clone();
    let mut fields = Vec::new();
    leaves(override_doc, "", &mut fields)?;
    for (path, value) in fields {
        if !PER_DOOR_FIELDS.contains(&path.as_str()) {
            return Err(format!("{path}: not a per-door field (only {})", PER_DOOR_FIELDS.join(", ")));
        }
        let pointer = format!("/{}", path.replace('.', "/"));
        let slot = out
            .pointer_mut(&pointer)
            .ok_or_else(|| format!("{path}: envoy/tollgate.json has no such field to override"))?;
        if std::mem::discriminant(slot) != std::mem::discriminant(&value) {
            return Err(format!("{path}: a different JSON type from envoy/tollgate.json's"));
        }
        *slot = value;
    }
    Ok(out)
}

fn env(name: &str) -> Option<String> {
    // The doors pass exactly these variables to the VM (host_env_keys /
    // vmConfig.env / env.hostKeys); scripts/deploy/check_manifests.py
    // (`credentials`) checks that they do.
    match name {
        "TOLLGATE_DEMO_KEY" => Some(DEMO_KEY.to_owned()),
        EDGE_CREDENTIAL_ENV => Some(DEMO_EDGE_CREDENTIAL.to_owned()),
        _ => None,
    }
}

fn tollgate_json() -> Value {
    read_json(&root().join("envoy/tollgate.json"))
}

#[test]
fn every_overlay_carries_the_document() {
    let got: Vec<_> = overlays().into_iter().map(|o| (rel(&o.patch), o.target)).collect();
    assert_eq!(
        got,
        vec![
            ("envoy/k8s/overlays/envoy-gateway/plugin-config.patch.json".to_owned(), "/spec/wasm/0/config".to_owned()),
            ("envoy/k8s/overlays/istio/plugin-config.patch.json".to_owned(), "/spec/pluginConfig".to_owned()),
        ]
    );
}

/// The comparison the manifests test makes: the overlay's document must be
/// `base` (envoy/tollgate.json) with the overlay's override applied.
fn overlay_in_sync(base: &Value, o: &Overlay) -> Result<(), String> {
    let want = apply_override(base, &o.override_doc)
        .map_err(|e| format!("{}: override refused: {e}", rel(&o.patch.with_file_name("plugin-config.override.json"))))?;
    if o.doc != want {
        return Err(format!(
            "{} differs from envoy/tollgate.json + plugin-config.override.json: run scripts/deploy/sync-plugin-config.py",
            rel(&o.patch)
        ));
    }
    Ok(())
}

#[test]
fn manifests_document_equals_envoy_tollgate_json_plus_override() {
    let base = tollgate_json();
    for o in overlays() {
        overlay_in_sync(&base, &o).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn overrides_hold_only_the_authority_location() {
    // Every override sets exactly the per-door fields, and they do differ
    // from the native door's (envoy.yaml's static cluster `authority` exists
    // in no Kubernetes gateway).
    let base = tollgate_json();
    for o in overlays() {
        let mut fields = Vec::new();
        leaves(&o.override_doc, "", &mut fields).unwrap();
        let mut names: Vec<_> = fields.iter().map(|(p, _)| p.as_str()).collect();
        names.sort();
        assert_eq!(names, ["authority.cluster", "authority.host"], "{}", rel(&o.patch));
        assert_ne!(o.doc["authority"]["cluster"], base["authority"]["cluster"], "{}", rel(&o.patch));
        // In Kubernetes the authority is the Service, by its cluster DNS name.
        let host = o.doc["authority"]["host"].as_str().unwrap();
        assert!(host.ends_with(".svc.cluster.local"), "{}: authority.host {host}", rel(&o.patch));
        if o.target == "/spec/pluginConfig" {
            // Istio: the cluster of that Service's port.
            let cluster = o.doc["authority"]["cluster"].as_str().unwrap();
            let rest = cluster.strip_prefix("outbound|").unwrap_or_else(|| panic!("{cluster}: not outbound|..."));
            let (port, svc_host) = rest.split_once("||").unwrap_or_else(|| panic!("{cluster}"));
            assert!(port.parse::<u16>().is_ok(), "{cluster}: port");
            assert_eq!(svc_host, host, "Istio cluster {cluster} is not the cluster of authority.host");
        }
    }
}

#[test]
fn a_drift_outside_the_overrides_fails_the_comparison() {
    // The comparison the manifests test runs (`overlay_in_sync`) has teeth:
    // a change of any field but the per-door ones, in an overlay's document
    // or in envoy/tollgate.json, fails it; and an override that tries to
    // carry such a change is refused.
    let base = tollgate_json();
    let fresh_rule = base["rules"].as_array().unwrap().iter().position(|r| r.get("fresh").is_some()).unwrap();
    let drifts = [
        ("/revocation/on_stale".to_owned(), Value::from("allow")),
        ("/refresh/set_cookie/secure".to_owned(), Value::from(false)),
        ("/authority/timeout_ms".to_owned(), Value::from(5000)),
        (format!("/rules/{fresh_rule}/fresh"), Value::from(false)),
    ];
    for o in overlays() {
        overlay_in_sync(&base, &o).unwrap_or_else(|e| panic!("the checked-in overlay must pass first: {e}"));
        for (pointer, value) in &drifts {
            assert_ne!(base.pointer(pointer), Some(value), "{pointer}: the drift must change the value");
            // The overlay drifted from envoy/tollgate.json...
            let mut drifted = Overlay { patch: o.patch.clone(), target: o.target.clone(), doc: o.doc.clone(), override_doc: o.override_doc.clone() };
            *drifted.doc.pointer_mut(pointer).unwrap() = value.clone();
            let e = overlay_in_sync(&base, &drifted).expect_err(&format!("{}: a drift of {pointer} in the overlay went unnoticed", rel(&o.patch)));
            assert!(e.contains("differs from envoy/tollgate.json"), "{e}");
            // ...and envoy/tollgate.json changed without syncing the overlay.
            let mut changed_base = base.clone();
            *changed_base.pointer_mut(pointer).unwrap() = value.clone();
            let e = overlay_in_sync(&changed_base, &o).expect_err(&format!("{}: a change of {pointer} in envoy/tollgate.json went unnoticed", rel(&o.patch)));
            assert!(e.contains("differs from envoy/tollgate.json"), "{e}");
        }
        for (section, field, value) in [
            ("revocation", "on_stale", Value::from("allow")),
            ("refresh", "client_id", Value::from("other")),
            ("authority", "timeout_ms", Value::from(5000)),
        ] {
            let mut sneaky = Overlay { patch: o.patch.clone(), target: o.target.clone(), doc: o.doc.clone(), override_doc: o.override_doc.clone() };
            let obj = sneaky.override_doc.as_object_mut().unwrap();
            let sec = obj.entry(section).or_insert_with(|| Value::Object(Default::default()));
            sec.as_object_mut().unwrap().insert(field.to_owned(), value.clone());
            *sneaky.doc.pointer_mut(&format!("/{section}/{field}")).unwrap() = value;
            let e = overlay_in_sync(&base, &sneaky).unwrap_err();
            assert!(e.contains("not a per-door field"), "{section}.{field}: {e}");
        }
        // An override cannot add a field envoy/tollgate.json lacks.
        let mut no_authority = base.clone();
        no_authority.as_object_mut().unwrap().remove("authority");
        let e = overlay_in_sync(&no_authority, &o).unwrap_err();
        assert!(e.contains("no such field"), "{e}");
    }
}

#[test]
fn manifests_document_is_accepted_by_the_filter() {
    for o in overlays() {
        let bytes = serde_json::to_vec(&o.doc).unwrap();
        if let Err(e) = Config::parse(&bytes, &env) {
            panic!("{}: the filter refuses its document: {e}", rel(&o.patch));
        }
    }
}

#[test]
fn a_drifted_document_is_refused() {
    // The check above has teeth: the same document with an unknown field, or
    // without the secret in the VM's environment, is refused.
    let mut doc = overlays().into_iter().next().unwrap().doc;
    doc["issuer_url"] = Value::from("https://elsewhere");
    let e = Config::parse(&serde_json::to_vec(&doc).unwrap(), &env).unwrap_err();
    assert!(e.to_string().contains("issuer_url"), "{e}");
    let doc = overlays().into_iter().next().unwrap().doc;
    assert!(Config::parse(&serde_json::to_vec(&doc).unwrap(), &|_| None).is_err());
}

// ---- every door, the native one included ---------------------------------------

/// The text of the literal block under envoy/envoy.yaml's one `value: |`
/// line, de-indented (the block scripts/deploy/sync-plugin-config.py writes
/// and tests/e2e/src/render.rs replaces).
fn envoy_yaml_document() -> String {
    let path = root().join("envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim() == "value: |").collect();
    assert_eq!(starts.len(), 1, "envoy/envoy.yaml: one `value: |` block expected");
    let outer = indent(lines[starts[0]]);
    let body: Vec<&str> = lines[starts[0] + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > outer)
        .copied()
        .collect();
    let inner = body.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min().unwrap();
    let mut doc: String = body.iter().map(|l| format!("{}\n", l.get(inner..).unwrap_or(""))).collect();
    while doc.ends_with("\n\n") {
        doc.pop();
    }
    doc
}

/// (door, its document) for every door: envoy.yaml's and each overlay's.
fn door_documents() -> Vec<(String, Value)> {
    let mut docs = vec![(
        "envoy/envoy.yaml".to_owned(),
        serde_json::from_str(&envoy_yaml_document()).expect("envoy/envoy.yaml: the document is not JSON"),
    )];
    docs.extend(overlays().into_iter().map(|o| (rel(&o.patch), o.doc)));
    docs
}

#[test]
fn envoy_yaml_carries_tollgate_json_verbatim() {
    let file = std::fs::read_to_string(root().join("envoy/tollgate.json")).unwrap();
    assert!(
        envoy_yaml_document() == file,
        "the document in envoy/envoy.yaml is not envoy/tollgate.json's text: run scripts/deploy/sync-plugin-config.py"
    );
}

/// What a door's document must state about request semantics and the edge
/// credential; the list of what it does not.
fn stated_semantics(doc: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    if doc.get("strict_paths") != Some(&Value::Bool(true)) {
        wrong.push(format!("strict_paths is {:?}, must be stated: true", doc.get("strict_paths")));
    }
    let authority = &doc["authority"];
    if authority["credential_env"] != EDGE_CREDENTIAL_ENV {
        wrong.push(format!("authority.credential_env is {}, must be {EDGE_CREDENTIAL_ENV}", authority["credential_env"]));
    }
    if authority.get("credential").is_some() {
        wrong.push("authority.credential is inline (tests only)".to_owned());
    }
    wrong
}

#[test]
fn every_door_states_strict_paths_and_reads_its_credential_from_the_vm() {
    for (door, doc) in door_documents() {
        let wrong = stated_semantics(&doc);
        assert!(wrong.is_empty(), "{door}: {wrong:?}");
    }
    // Each requirement can fail.
    let (_, doc) = door_documents().remove(0);
    for (pointer, value) in [
        ("/strict_paths", Value::from(false)),
        ("/authority/credential_env", Value::from("TOLLGATE_DEMO_KEY")),
    ] {
        let mut bad = doc.clone();
        *bad.pointer_mut(pointer).unwrap() = value;
        assert_eq!(stated_semantics(&bad).len(), 1, "{pointer}");
    }
    let mut implicit = doc.clone();
    implicit.as_object_mut().unwrap().remove("strict_paths");
    assert_eq!(stated_semantics(&implicit).len(), 1, "strict_paths left to its default");
    let mut inline = doc;
    inline["authority"]["credential"] = Value::from(DEMO_EDGE_CREDENTIAL);
    assert_eq!(stated_semantics(&inline).len(), 1, "inline credential");
}

/// (method, path, the rule that must govern it). Paths as the filter matches
/// them: normalized by Envoy, percent-decoded; `default` is the fallback
/// (a token, no scope).
const RULE_TABLE: &[(&str, &str, &str)] = &[
    ("GET", "/admin", "admin"),
    ("GET", "/admin/", "admin"),
    ("GET", "/admin/users/1", "admin"),
    ("GET", "/ADMIN", "admin"),
    ("GET", "/Admin/users", "admin"),
    ("POST", "/aDmIn/x", "admin"),
    ("DELETE", "/admin/sessions/1", "admin"),
    ("GET", "/administrator", "default"),
    ("GET", "/admin-panel", "default"),
    ("POST", "/api", "write"),
    ("POST", "/api/things", "write"),
    ("POST", "/api/things/1/parts", "write"),
    ("PUT", "/api/things/1", "write"),
    ("PATCH", "/Api/x/y/z", "write"),
    ("DELETE", "/API/things/1", "write"),
    ("GET", "/api/things", "read"),
    ("GET", "/api/things/1/parts", "read"),
    ("GET", "/API/things", "read"),
    ("HEAD", "/api/things", "read"),
    ("GET", "/apiary", "default"),
    ("POST", "/apiary", "default"),
    ("GET", "/public/hello", "public"),
    ("GET", "/healthz", "health"),
    ("POST", "/v1/token", "authority-token-endpoint"),
];

/// The rows of RULE_TABLE a document's policy gets wrong, and whether its
/// admin, write and read rules ask for what they must.
fn rule_mismatches(doc: &Value) -> Result<Vec<String>, String> {
    let config = Config::parse(&serde_json::to_vec(doc).unwrap(), &env).map_err(|e| e.to_string())?;
    let mut wrong = Vec::new();
    for &(method, path, want) in RULE_TABLE {
        let rule = config.policy.rule_for(method, path);
        if rule.name != want {
            wrong.push(format!("{method} {path}: rule {}, must be {want}", rule.name));
            continue;
        }
        let ok = match want {
            "admin" => rule.admin && rule.fresh,
            "write" => rule.scopes == ["write"],
            "read" => rule.scopes == ["read"],
            "default" => !rule.anonymous,
            _ => true,
        };
        if !ok {
            wrong.push(format!("{method} {path}: rule {want} does not require what it must: {rule:?}"));
        }
    }
    Ok(wrong)
}

#[test]
fn every_door_governs_admin_and_api_in_every_spelling() {
    for (door, doc) in door_documents() {
        let wrong = rule_mismatches(&doc).unwrap_or_else(|e| panic!("{door}: the filter refuses its document: {e}"));
        assert!(wrong.is_empty(), "{door}:\n{}", wrong.join("\n"));
    }
}

#[test]
fn the_rule_table_catches_the_old_narrow_rules() {
    // The rules this repository shipped before: `/admin/` without
    // ignore_case, writes only one segment under /api/. The table must
    // catch each.
    let (_, doc) = door_documents().remove(0);
    let rules = doc["rules"].as_array().unwrap();
    let at = |name: &str| rules.iter().position(|r| r["name"] == name).unwrap();
    let mut cased = doc.clone();
    cased["rules"][at("admin")].as_object_mut().unwrap().remove("ignore_case");
    let mut shallow = doc.clone();
    shallow["rules"][at("write")]["path"] = serde_json::json!({ "regex": "/api/[^/]+" });
    for (what, bad, row) in [("admin without ignore_case", cased, "GET /ADMIN"), ("one-segment write rule", shallow, "POST /api/things/1/parts")] {
        let wrong = rule_mismatches(&bad).unwrap_or_else(|e| panic!("{what}: refused: {e}"));
        assert!(wrong.iter().any(|w| w.starts_with(&format!("{row}:"))), "{what}: {wrong:?}");
    }
}
