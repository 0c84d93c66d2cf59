//! The published JSON Schema of the filter's document
//! (`docs/filter-config.schema.json`) is what the filter's own tables
//! generate, and it agrees with the filter's validator: on every example
//! document in the repository, on every mutation the tables suggest of
//! them, and on the fuzz corpus. What the schema cannot say is listed in
//! `tollgate::config::SEMANTIC_RULES`, and each rule has a document here
//! that the schema accepts and the validator refuses. Native only.
#![cfg(not(target_arch = "wasm32"))]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tollgate::config::{self, Config, Kind, Syntax, Table, DOCUMENT, SEMANTIC_RULES};

const REGENERATE: &str = "TOLLGATE_WRITE_SCHEMA=1 cargo test -p tollgate --test config_schema";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*_env` variable is set, to a value valid as any secret (64 bytes,
/// base64url) and as an edge credential.
fn env(_: &str) -> Option<String> {
    Some(tollgate::token::b64::encode(&[0x5a; 64]))
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&config::schema()).expect("the generated schema is a valid 2020-12 schema")
}

fn structure_ok(doc: &Value) -> Result<(), String> {
    config::check_structure(doc.to_string().as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = root().join("docs/filter-config.schema.json");
    let generated = config::schema_text();
    if std::env::var_os("TOLLGATE_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "docs/filter-config.schema.json is not what the code generates; run `{REGENERATE}`");
}

/// The example documents: envoy/tollgate.json, the document in both Envoy
/// configs (the literal block under `value: |`), each overlay's JSON6902
/// patch value (Istio `pluginConfig`, Envoy Gateway `wasm.config`).
fn examples() -> Vec<(String, Value)> {
    let read = |rel: &str| std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut out = vec![("envoy/tollgate.json".to_owned(), serde_json::from_str(&read("envoy/tollgate.json")).expect("JSON"))];
    for yaml in ["envoy/envoy.yaml", "envoy/envoy-native.yaml"] {
        let doc = embedded_document(&read(yaml)).unwrap_or_else(|| panic!("{yaml}: no `value: |` block"));
        out.push((yaml.to_owned(), serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{yaml}: {e}"))));
    }
    for overlay in ["istio", "envoy-gateway"] {
        let rel = format!("envoy/k8s/overlays/{overlay}/plugin-config.patch.json");
        let patch: Value = serde_json::from_str(&read(&rel)).expect("JSON");
        let doc = patch.as_array().and_then(|ops| ops.iter().find_map(|op| op.get("value").filter(|v| v.is_object())));
        out.push((rel.clone(), doc.unwrap_or_else(|| panic!("{rel}: no document")).clone()));
    }
    out
}

/// The de-indented literal block under the one `value: |` line.
fn embedded_document(yaml: &str) -> Option<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let start = lines.iter().position(|l| l.trim() == "value: |")?;
    let outer = indent(lines[start]);
    let body: Vec<&str> =
        lines[start + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > outer).copied().collect();
    let inner = body.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min()?;
    Some(body.iter().map(|l| format!("{}\n", l.get(inner..).unwrap_or(""))).collect())
}

/// Every field of every section set, both refresh modes, a rule of each kind.
fn maximal() -> Value {
    json!({
        "$schema": config::SCHEMA_ID,
        "issuer": "https://auth.test",
        "audiences": ["api", "web"],
        "keys": [
            {"kid": "a", "alg": "HS256", "secret_env": "KEY_A"},
            {"kid": "b", "alg": "HS512", "secret": env("").unwrap()}
        ],
        "token_types": ["at+jwt", "jwt"],
        "clock_skew_seconds": 60,
        "max_token_bytes": 4096,
        "allow_never_expiring": false,
        "realm": "edge",
        "admin_scope": "ops:admin",
        "sources": {
            "authorization_header": true,
            "cookie": "tg_access",
            "header_pair": {"token": "token-code", "user": "token-user"},
            "query": {"enabled": true, "name": "t"},
            "passthrough_schemes": ["Basic"]
        },
        "client_address": {"from": "x_forwarded_for", "trusted_hops": 1},
        "identity_headers": {"subject": "x-sub", "scope": "x-scope", "session": "x-sid", "version": "x-ver"},
        "forward_token": false,
        "strict_paths": true,
        "token_cache": {"entries": 64},
        "rules": [
            {"name": "health", "path": {"exact": "/healthz"}, "anonymous": true, "methods": ["GET"]},
            {"path": {"prefix": "/admin"}, "admin": true, "fresh": true, "max_staleness_ms": 500, "enforce_hosts": false},
            {"path": {"regex": "/api/v[0-9]+/.*"}, "ignore_case": true, "scopes": ["read", "write"]}
        ],
        "authority": {"cluster": "authority", "host": "auth.internal", "timeout_ms": 500, "credential_env": "EDGE"},
        "revocation": {"sync_interval_ms": 1000, "max_staleness_ms": 4000, "on_stale": "allow", "wait_ms": 20000},
        "refresh": {
            "cookie": "tg_refresh",
            "header": {"request": "x-refresh", "access_response": "x-new-access", "refresh_response": "x-new-refresh"},
            "refresh_before_seconds": 60,
            "wait_ms": 2000,
            "client_id": "edge",
            "share_ms": 5000,
            "set_cookie": {"secure": true, "http_only": true, "same_site": "Strict", "path": "/", "domain": "example.com", "refresh_max_age_seconds": 3600}
        }
    })
}

#[test]
fn every_example_document_is_accepted_by_both() {
    let schema = validator();
    let mut docs = examples();
    docs.push(("maximal (this test)".to_owned(), maximal()));
    assert!(docs.len() >= 6, "examples not found: {docs:?}");
    for (name, doc) in &docs {
        let errors: Vec<String> = schema.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: the schema refuses it: {errors:?}");
        Config::parse(doc.to_string().as_bytes(), &env).unwrap_or_else(|e| panic!("{name}: the filter refuses it: {e}"));
    }
}

/// A value of another JSON type than `kind` holds.
fn wrong_type(kind: &Kind) -> Value {
    match kind {
        Kind::Bool => json!("true"),
        Kind::Str(_) | Kind::Enum(_) => json!(5),
        Kind::UInt { .. } => json!("10"),
        Kind::Array { .. } => json!({}),
        Kind::Object(_) => json!([]),
    }
}

/// A string that breaks `syntax`.
fn bad_string(syntax: Syntax) -> Option<&'static str> {
    match syntax {
        Syntax::Any => None,
        Syntax::NonEmpty => Some(""),
        Syntax::Token(_) | Syntax::HostName => Some("two words"),
        Syntax::Scope => Some("a b"),
        Syntax::Quotable => Some("say \"hi\""),
        Syntax::Method => Some("G3T"),
        Syntax::CookiePath => Some("/a;b"),
        Syntax::Domain => Some("under_score.test"),
        Syntax::AbsolutePath => Some("relative"),
        Syntax::Credential => Some("short-credential"),
    }
}

/// `doc` with the member at `ptr` replaced by `v` (removed when `None`).
fn put(doc: &Value, out: &mut Vec<(String, Value)>, what: String, ptr: String, v: Option<Value>) {
    let mut d = doc.clone();
    let (parent, name) = ptr.rsplit_once('/').unwrap_or(("", &ptr));
    let name = name.to_owned();
    match (d.pointer_mut(parent), v) {
        (Some(Value::Object(m)), Some(v)) => {
            m.insert(name, v);
        }
        (Some(Value::Object(m)), None) => {
            m.remove(&name);
        }
        (Some(Value::Array(a)), Some(v)) => {
            if let Some(slot) = name.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = v;
            }
        }
        _ => return,
    }
    out.push((what, d));
}

/// Mutations of `doc` (the object at `at`, read by `table`) that the tables
/// say are invalid: (what, document).
fn mutations(doc: &Value, at: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    let here = doc.pointer(at).cloned().unwrap_or(Value::Null);
    let Value::Object(obj) = &here else { return };
    put(doc, out, format!("{at}: an unknown member"), format!("{at}/zz_unknown"), Some(json!(1)));
    for f in table.fields {
        let ptr = format!("{at}/{}", f.name);
        let Some(v) = obj.get(f.name) else { continue };
        put(doc, out, format!("{ptr}: wrong type"), ptr.clone(), Some(wrong_type(&f.kind)));
        if f.required {
            put(doc, out, format!("{ptr}: dropped"), ptr.clone(), None);
        }
        if !f.nullable() {
            put(doc, out, format!("{ptr}: null"), ptr.clone(), Some(Value::Null));
        }
        match &f.kind {
            Kind::UInt { min, max, zero_off } => {
                put(doc, out, format!("{ptr}: negative"), ptr.clone(), Some(json!(-1)));
                put(doc, out, format!("{ptr}: a fraction"), ptr.clone(), Some(json!(min.saturating_add(1) as f64 + 0.5)));
                if *min > 1 || (*min == 1 && !zero_off) {
                    put(doc, out, format!("{ptr}: below {min}"), ptr.clone(), Some(json!(min - 1)));
                }
                if *max < u64::MAX {
                    put(doc, out, format!("{ptr}: above {max}"), ptr.clone(), Some(json!(max + 1)));
                }
            }
            Kind::Enum(_) => put(doc, out, format!("{ptr}: unknown variant"), ptr.clone(), Some(json!("bogus"))),
            Kind::Str(syntax) => {
                if let Some(bad) = bad_string(*syntax) {
                    put(doc, out, format!("{ptr}: {bad:?}"), ptr.clone(), Some(json!(bad)));
                }
            }
            Kind::Array { item, at_least_one } => {
                if at_least_one.is_some() {
                    put(doc, out, format!("{ptr}: empty"), ptr.clone(), Some(json!([])));
                }
                let n = v.as_array().map_or(0, Vec::len);
                for i in 0..n {
                    let el = format!("{ptr}/{i}");
                    put(doc, out, format!("{el}: wrong type"), el.clone(), Some(wrong_type(item)));
                    match item {
                        Kind::Str(syntax) => {
                            if let Some(bad) = bad_string(*syntax) {
                                put(doc, out, format!("{el}: {bad:?}"), el.clone(), Some(json!(bad)));
                            }
                        }
                        Kind::Object(t) => mutations(doc, &el, t, out),
                        _ => {}
                    }
                }
            }
            Kind::Object(t) => mutations(doc, &ptr, t, out),
            Kind::Bool => {}
        }
    }
    if let Some(c) = &table.choice {
        let given: Vec<&str> = c.of.iter().copied().filter(|n| obj.get(*n).is_some_and(|v| !v.is_null())).collect();
        if c.at_least_one {
            let mut d = doc.clone();
            if let Some(Value::Object(m)) = d.pointer_mut(at) {
                c.of.iter().for_each(|n| {
                    m.remove(*n);
                });
            }
            out.push((format!("{at}: none of {:?}", c.of), d));
        }
        if let (true, Some(first)) = (c.at_most_one, given.first()) {
            for other in c.of.iter().filter(|n| !given.contains(n)) {
                let mut d = doc.clone();
                if let Some(Value::Object(m)) = d.pointer_mut(at) {
                    let v = m[*first].clone();
                    m.insert((*other).to_owned(), v);
                }
                out.push((format!("{at}: both {first} and {other}"), d));
            }
        }
    }
}

#[test]
fn mutated_documents_are_refused_by_both() {
    let schema = validator();
    let mut all = Vec::new();
    for (name, doc) in examples().into_iter().chain([("maximal".to_owned(), maximal())]) {
        let mut out = Vec::new();
        mutations(&doc, "", &DOCUMENT, &mut out);
        all.extend(out.into_iter().map(|(what, d)| (format!("{name} {what}"), d)));
    }
    assert!(all.len() > 300, "only {} mutations: the walk lost its way", all.len());
    let mut disagree = Vec::new();
    for (what, doc) in &all {
        let by_schema = schema.is_valid(doc);
        let by_filter = structure_ok(doc);
        if by_schema || by_filter.is_ok() {
            disagree.push(format!("{what}: schema accepts: {by_schema}, filter: {by_filter:?}"));
        }
        assert!(Config::parse(doc.to_string().as_bytes(), &env).is_err(), "{what}: the filter accepts it");
    }
    assert!(disagree.is_empty(), "{} of {} mutations not refused by both:\n{}", disagree.len(), all.len(), disagree.join("\n"));
}

/// Every configuration the fuzzer kept (valid or not) gets the same
/// structural answer from both.
#[test]
fn the_fuzz_corpus_gets_the_same_answer_from_both() {
    let schema = validator();
    let dir = root().join("fuzz/corpus/config");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/config") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else { continue };
        let by_filter = config::check_structure(&bytes);
        if by_filter.is_err() && config::check_structure(doc.to_string().as_bytes()).is_ok() {
            continue; // refused for a duplicate member, which serde_json::Value drops
        }
        let by_schema = schema.is_valid(&doc);
        // The one listed difference (SEMANTIC_RULES, last): 30.0 is an integer to JSON Schema.
        let float_integer = matches!(&by_filter, Err(e) if e.message.contains("a floating point number, expected an integer"));
        if !(by_schema && float_integer) {
            assert_eq!(by_schema, by_filter.is_ok(), "{}: {by_filter:?}", rel(&path));
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} corpus documents compared");
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The rules the schema does not state: for each entry of SEMANTIC_RULES,
/// documents the schema accepts and the filter refuses, naming the field.
#[test]
fn semantic_rules_are_the_validators_alone() {
    let schema = validator();
    let base = || {
        json!({"issuer": "i", "audiences": ["a"], "keys": [{"alg": "HS256", "secret": env("").unwrap()}],
               "authority": {"cluster": "c"}, "sources": {"cookie": "tg"}})
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut d = base();
        edit(&mut d);
        d
    };
    // (rule index in SEMANTIC_RULES, document, field named)
    let cases: Vec<(usize, Value, &str)> = vec![
        (0, with(&|d| d["keys"][0]["secret"] = json!("c2hvcnQ")), "keys[0].secret"),
        (0, with(&|d| d["keys"][0]["secret"] = json!("not base64!")), "keys[0].secret"),
        (0, with(&|d| d["keys"][0] = json!({"alg": "HS512", "secret": "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"})), "keys[0].secret"),
        (0, with(&|d| d["keys"] = json!([{"kid": "a", "alg": "HS256", "secret": env("")}, {"kid": "a", "alg": "HS256", "secret": env("")}])), "keys"),
        (0, with(&|d| d["keys"] = json!([{"kid": "a", "alg": "HS256", "secret": env("")}, {"alg": "HS256", "secret": env("")}])), "keys"),
        (1, with(&|d| d["authority"]["credential_env"] = json!("SHORT")), "authority.credential_env"),
        (2, with(&|d| { d.as_object_mut().unwrap().remove("authority"); d["revocation"] = json!({}); }), "revocation"),
        (2, with(&|d| { d.as_object_mut().unwrap().remove("authority"); d["refresh"] = json!({"cookie": "r"}); }), "refresh"),
        (2, with(&|d| { d.as_object_mut().unwrap().remove("authority"); d["rules"] = json!([{"path": {"prefix": "/"}, "fresh": true}]); }), "rules[0].fresh"),
        (3, with(&|d| d["revocation"] = json!({"sync_interval_ms": 1000, "max_staleness_ms": 1999})), "revocation.max_staleness_ms"),
        (4, with(&|d| d["refresh"] = json!({"cookie": "tg"})), "refresh.cookie"),
        (4, with(&|d| { d.as_object_mut().unwrap().remove("sources"); d["refresh"] = json!({"cookie": "r"}); }), "refresh.cookie"),
        (5, with(&|d| d["refresh"] = json!({"cookie": "r", "set_cookie": {"same_site": "None", "secure": false}})), "refresh.set_cookie.same_site"),
        (6, with(&|d| d["sources"] = json!({"authorization_header": false})), "sources"),
        (6, with(&|d| d["sources"] = json!({"passthrough_schemes": ["Bearer"]})), "sources.passthrough_schemes[0]"),
        (7, with(&|d| d["identity_headers"] = json!({"scope": "X-Tollgate-Sub"})), "identity_headers.scope"),
        (8, with(&|d| d["rules"] = json!([{"path": {"regex": "(["}}])), "rules[0].path.regex"),
        (8, with(&|d| d["rules"] = json!([{"path": {"prefix": "/"}, "anonymous": true, "fresh": true}])), "rules[0].fresh"),
        (8, with(&|d| d["rules"] = json!([{"path": {"prefix": "/"}, "anonymous": true, "admin": true}])), "rules[0].anonymous"),
        (8, with(&|d| d["rules"] = json!([{"path": {"prefix": "/"}, "max_staleness_ms": 5}])), "rules[0].max_staleness_ms"),
        // JSON Schema's "integer" is any number with a zero fraction; the
        // filter reads integers as written.
        (9, with(&|d| d["clock_skew_seconds"] = json!(30.0)), "clock_skew_seconds"),
    ];
    let env_short = |name: &str| if name == "SHORT" { Some("short".to_owned()) } else { env(name) };
    for (rule, doc, field) in &cases {
        let name = SEMANTIC_RULES[*rule];
        assert!(schema.is_valid(doc), "{name}: the schema refuses {doc}");
        let err = Config::parse(doc.to_string().as_bytes(), &env_short).err().unwrap_or_else(|| panic!("{name}: accepted {doc}"));
        assert_eq!(err.field, *field, "{name}: {err}");
    }
    for (i, rule) in SEMANTIC_RULES.iter().enumerate() {
        assert!(cases.iter().any(|(r, _, _)| *r == i), "no case shows the rule {rule:?}");
    }
    Config::parse(base().to_string().as_bytes(), &env).expect("the base document is valid");
}
