//! The published contract (authority/openapi.json, served at
//! `/openapi.json`) against the code: every route the router serves is in
//! the document and every documented operation is routed; every answer the
//! real binary gives for the cases of authority/tests/http.rs (and the
//! store-down answers on Redis) is a documented status of its operation,
//! with the documented content type, required headers, and a body that
//! validates against the document's JSON Schema (draft 2020-12, the dialect
//! of OpenAPI 3.1).

mod common;

use common::{edge_verifier, Fixture, Server, EDGE_CREDENTIAL};
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use tollgate::token::TimeCheck;
use tollgate_authority::http::{routes, OPENAPI};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("authority/openapi.json is JSON")
}

/// `#/a/b` → the value, following nothing.
fn pointer<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let p = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference}: only local references"));
    doc.pointer(p).unwrap_or_else(|| panic!("{reference} does not resolve"))
}

/// Follows `$ref` chains of response and header objects; returns the
/// object and its JSON pointer.
fn deref(doc: &Value, mut at: String) -> (Value, String) {
    loop {
        let v = pointer(doc, &at);
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if v.get("content").is_none() && v.get("schema").is_none() => at = r.to_owned(),
            _ => return (v.clone(), at),
        }
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let doc = document();
    let served: Vec<(String, String)> =
        routes().iter().map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_owned())).collect();
    let served_set: BTreeSet<_> = served.iter().cloned().collect();
    assert_eq!(served_set.len(), served.len(), "a route is listed twice: {served:?}");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = served_set.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&served_set).collect();
    assert!(undocumented.is_empty() && unrouted.is_empty(), "served but not documented: {undocumented:?}; documented but not served: {unrouted:?}");
}

/// Every `$ref` resolves, every operation has a unique id and responses,
/// and every schema the conformance test may use compiles as draft 2020-12.
#[test]
fn the_document_is_openapi_3_1_and_self_consistent() {
    let doc = document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "OpenAPI 3.1");
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "the document uses its components");
    for r in &all {
        pointer(&doc, r);
    }
    let schemes: BTreeSet<&String> = doc["components"]["securitySchemes"].as_object().expect("schemes").keys().collect();
    let mut ids = BTreeSet::new();
    let mut compiled = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            for req in op["security"].as_array().unwrap_or_else(|| panic!("{id}: explicit security")) {
                for name in req.as_object().expect("requirement").keys() {
                    assert!(schemes.contains(name), "{id}: unknown security scheme {name}");
                }
            }
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{id}: responses"));
            for status in responses.keys() {
                let at = format!("#/paths/{}/{method}/responses/{status}", escape(path));
                let (resp, at) = deref(&doc, at);
                assert!(resp["description"].is_string(), "{at}: description");
                for (media, _) in resp["content"].as_object().into_iter().flatten() {
                    validator(&doc, &format!("{at}/content/{}/schema", escape(media)));
                    compiled += 1;
                }
            }
        }
    }
    assert!(compiled > 30, "response schemas compiled: {compiled}");
}

/// A validator for the schema at `at`, resolving references in the
/// whole document.
fn validator(doc: &Value, at: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    // A URI fragment: the path templates' braces percent-encoded.
    root["$ref"] = Value::String(at.replace('%', "%25").replace('{', "%7B").replace('}', "%7D"));
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{at}: does not compile: {e}"))
}

/// The path template of the document that `path` (without query) matches.
fn template_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.keys().map(String::as_str).find(|t| {
        let ts: Vec<&str> = t.split('/').collect();
        ts.len() == segs.len()
            && ts.iter().zip(&segs).all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s)
    })
}

/// One answer as it came back.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Checks one answer against the document: a documented status of the
/// operation, its content type, its required headers, its schema. Answers
/// outside the document (unknown path → 404, a method the path does not
/// take → 405) must still be the documented error shape.
fn conforms(doc: &Value, cache: &mut HashMap<String, jsonschema::Validator>, method: &str, path: &str, a: &Answer) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let method = method.to_ascii_lowercase();
    let op = template_of(doc, path).and_then(|t| doc["paths"][t].get(method.as_str()).map(|_| t));
    let Some(template) = op else {
        if a.status != 404 && a.status != 405 {
            return Err(format!("{method} {path} is not in the document, yet answered {}", a.status));
        }
        let body: Value = serde_json::from_slice(&a.body).map_err(|e| format!("body not JSON: {e}"))?;
        let v = cache.entry("#/components/schemas/Error".into()).or_insert_with(|| validator(doc, "#/components/schemas/Error"));
        return v.validate(&body).map_err(|e| format!("{}: not an Error: {e}", a.status));
    };
    let responses = &doc["paths"][template][&method]["responses"];
    let status = a.status.to_string();
    if responses.get(&status).is_none() {
        return Err(format!("{method} {template}: status {status} is not documented"));
    }
    let (resp, at) = deref(doc, format!("#/paths/{}/{method}/responses/{status}", escape(template)));
    for (name, header) in resp["headers"].as_object().into_iter().flatten() {
        let (header, hat) = deref(doc, match header.get("$ref").and_then(Value::as_str) {
            Some(r) => r.to_owned(),
            None => format!("{at}/headers/{}", escape(name)),
        });
        match a.headers.get(name.as_str()).map(|v| v.to_str()) {
            None if header["required"] == true => return Err(format!("{status}: required header {name} missing")),
            None => {}
            Some(Err(_)) => return Err(format!("{status}: header {name} is not visible ASCII")),
            Some(Ok(value)) => {
                let key = format!("{hat}/schema");
                let v = cache.entry(key.clone()).or_insert_with(|| validator(doc, &key));
                v.validate(&Value::String(value.to_owned())).map_err(|e| format!("{status}: header {name}: {value:?}: {e}"))?;
            }
        }
    }
    let ctype = a.headers.get("content-type").and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let Some(content) = resp["content"].as_object() else {
        return if a.body.is_empty() { Ok(()) } else { Err(format!("{status}: documented without content, got a body")) };
    };
    let Some(media) = ctype.filter(|c| content.contains_key(c)) else {
        return Err(format!("{status}: content type {:?} is not one of {:?}", a.headers.get("content-type"), content.keys().collect::<Vec<_>>()));
    };
    let instance = if media == "application/json" {
        serde_json::from_slice(&a.body).map_err(|e| format!("{status}: body is not JSON: {e}"))?
    } else {
        Value::String(String::from_utf8(a.body.clone()).map_err(|_| format!("{status}: body is not UTF-8"))?)
    };
    let key = format!("{at}/content/{}/schema", escape(&media));
    let v = cache.entry(key.clone()).or_insert_with(|| validator(doc, &key));
    let errors: Vec<String> = v.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{status}: body does not match {key}: {errors:?}\nbody: {instance}"))
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(&'static str, &'static str),
    Raw(&'static str),
}

#[derive(Clone)]
enum Body {
    None,
    Form(String),
    Json(Value),
    Raw(&'static str, String),
}

/// (case, method, path, auth, body, expected status)
type Case = (String, &'static str, String, Auth, Body, u16);

fn case(name: impl Into<String>, method: &'static str, path: impl Into<String>, auth: Auth, body: Body, status: u16) -> Case {
    (name.into(), method, path.into(), auth, body, status)
}

struct Run {
    http: Client,
    server: Server,
    doc: Value,
    cache: HashMap<String, jsonschema::Validator>,
    checked: BTreeSet<(String, String)>,
}

impl Run {
    fn new(server: Server) -> Run {
        // A store that is down must be answered 503, not held: a request
        // that takes this long fails the case.
        let http = Client::builder().timeout(std::time::Duration::from_secs(20)).build().expect("client");
        Run { http, server, doc: document(), cache: HashMap::new(), checked: BTreeSet::new() }
    }

    async fn send(&self, method: &str, path: &str, auth: &Auth, body: &Body) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.server.url(path));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Raw(v) => req.header("authorization", *v),
        };
        req = match body {
            Body::None => req,
            Body::Form(f) => req.header("content-type", "application/x-www-form-urlencoded").body(f.clone()),
            Body::Json(j) => req.json(j),
            Body::Raw(ct, b) => req.header("content-type", *ct).body(b.clone()),
        };
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let body = r.bytes().await.expect("body").to_vec();
        Answer { status, headers, body }
    }

    /// Runs the cases; every answer must have the expected status and
    /// conform. Returns the JSON bodies by case name.
    async fn run(&mut self, cases: &[Case]) -> HashMap<String, Value> {
        let mut failures = Vec::new();
        let mut bodies = HashMap::new();
        for (name, method, path, auth, body, status) in cases {
            let a = self.send(method, path, auth, body).await;
            if a.status != *status {
                failures.push(format!("{name}: {method} {path}: status {} (want {status}): {}", a.status, String::from_utf8_lossy(&a.body)));
                continue;
            }
            if let Err(e) = conforms(&self.doc, &mut self.cache, method, path, &a) {
                failures.push(format!("{name}: {method} {path}: {e}"));
            }
            let p = path.split('?').next().unwrap_or(path);
            if let Some(t) = template_of(&self.doc, p) {
                self.checked.insert((format!("{method} {t}"), a.status.to_string()));
            }
            bodies.insert(name.clone(), serde_json::from_slice(&a.body).unwrap_or(Value::Null));
        }
        assert!(failures.is_empty(), "{} of {} answers do not conform:\n{}", failures.len(), cases.len(), failures.join("\n"));
        bodies
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

fn form(s: &str) -> Body {
    Body::Form(s.to_owned())
}

/// The cases of authority/tests/http.rs (grants, token-endpoint errors,
/// admin authentication, API tokens, feed, versions, RFC 7009 revocation,
/// malformed paths and methods), plus edge authentication, throttling, the
/// probes, metrics and the document itself: every answer conforms.
#[tokio::test]
async fn every_answer_of_the_http_tests_conforms_to_the_document() {
    let fixture = Fixture::sqlite();
    let mut run = Run::new(Server::start(&fixture.server_args(), &["--refresh-grace-ms", "2000"]));
    let setup = run
        .run(&[
            case("admin login", "POST", "/v1/token", Auth::None, form("grant_type=password&username=admin&password=admin-password"), 200),
            case("alice login", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password&scope=read"), 200),
            case("alice login 2", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password"), 200),
            case("alice login 3", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password"), 200),
        ])
        .await;
    let admin = setup["admin login"]["access_token"].as_str().expect("admin token").to_owned();
    let alice = setup["alice login"]["access_token"].as_str().expect("alice token").to_owned();
    let rt = setup["alice login"]["refresh_token"].as_str().expect("rt").to_owned();
    let rt2 = setup["alice login 2"]["refresh_token"].as_str().expect("rt").to_owned();
    let rt3 = setup["alice login 3"]["refresh_token"].as_str().expect("rt").to_owned();
    let sid = edge_verifier().verify(&alice, TimeCheck::Skip).expect("claims").sid.expect("sid");
    let huge = "a".repeat(64 * 1024);
    let ab = || Auth::Bearer(admin.clone());
    let edge = || Auth::Bearer(EDGE_CREDENTIAL.to_owned());
    let api_body = json!({"sub": "alice", "scope": "read", "hosts": ["*"], "days": 1});

    let mut cases: Vec<Case> = vec![
        // Grants.
        case("client_credentials, Basic", "POST", "/v1/token", Auth::Basic("demo-client", "demo-client-secret"), form("grant_type=client_credentials"), 200),
        case("client_credentials, form", "POST", "/v1/token", Auth::None, form("grant_type=client_credentials&client_id=demo-client&client_secret=demo-client-secret"), 200),
        case("client_credentials, Basic and the same client_id", "POST", "/v1/token", Auth::Basic("demo-client", "demo-client-secret"), form("grant_type=client_credentials&client_id=demo-client"), 200),
        case("refresh rotation", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt}")), 200),
        case("refresh replay in grace", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt}")), 200),
        // Token endpoint errors (http.rs token_endpoint_errors_change_nothing).
        case("no grant_type", "POST", "/v1/token", Auth::None, form("username=alice"), 400),
        case("unknown grant", "POST", "/v1/token", Auth::None, form("grant_type=implicit"), 400),
        case("wrong password", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=nope"), 400),
        case("unknown user", "POST", "/v1/token", Auth::None, form("grant_type=password&username=mallory&password=x"), 400),
        case("missing password", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice"), 400),
        case("password grant with a secret", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password&client_secret=x"), 400),
        case("scope not allowed", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password&scope=tollgate:admin"), 400),
        case("client without auth", "POST", "/v1/token", Auth::None, form("grant_type=client_credentials"), 401),
        case("client wrong secret", "POST", "/v1/token", Auth::Basic("demo-client", "wrong"), form("grant_type=client_credentials"), 401),
        case("unknown client", "POST", "/v1/token", Auth::None, form("grant_type=client_credentials&client_id=ghost&client_secret=x"), 401),
        case("client, a Bearer header", "POST", "/v1/token", Auth::Raw("Bearer abc"), form("grant_type=client_credentials"), 401),
        case("two client auth methods", "POST", "/v1/token", Auth::Basic("demo-client", "demo-client-secret"), form("grant_type=client_credentials&client_id=demo-client&client_secret=demo-client-secret"), 400),
        case("client_id differs from Basic", "POST", "/v1/token", Auth::Basic("demo-client", "demo-client-secret"), form("grant_type=client_credentials&client_id=someone-else"), 400),
        case("client scope not allowed", "POST", "/v1/token", Auth::Basic("demo-client", "demo-client-secret"), form("grant_type=client_credentials&scope=write"), 400),
        case("unknown refresh token", "POST", "/v1/token", Auth::None, form("grant_type=refresh_token&refresh_token=tgr_nope"), 400),
        case("overlong refresh token", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={}", "x".repeat(500))), 400),
        case("refresh scope widening", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt2}&scope=tollgate:admin")), 400),
        case("missing refresh token", "POST", "/v1/token", Auth::None, form("grant_type=refresh_token"), 400),
        case("repeated parameter", "POST", "/v1/token", Auth::None, form("grant_type=password&grant_type=password&username=alice&password=alice-password"), 400),
        case("json body", "POST", "/v1/token", Auth::None, Body::Raw("application/json", r#"{"grant_type":"password"}"#.into()), 400),
        case("no content type", "POST", "/v1/token", Auth::None, Body::None, 400),
        case("not UTF-8 after decoding", "POST", "/v1/token", Auth::None, form("grant_type=password&username=%FF%FE&password=x"), 400),
        case("malformed form", "POST", "/v1/token", Auth::None, form("=&&=x"), 400),
        case("huge body", "POST", "/v1/token", Auth::None, Body::Raw(FORM, format!("grant_type=password&username={huge}")), 413),
        // RFC 7009.
        case("revoke unknown token", "POST", "/v1/revoke", Auth::None, form("token=tgr_unknown"), 200),
        case("revoke without token", "POST", "/v1/revoke", Auth::None, form("token_type_hint=refresh_token"), 400),
        case("revoke a refresh token", "POST", "/v1/revoke", Auth::None, form(&format!("token={rt3}&token_type_hint=refresh_token")), 200),
        case("revoke it again", "POST", "/v1/revoke", Auth::None, form(&format!("token={rt3}")), 200),
        case("revoke, huge body", "POST", "/v1/revoke", Auth::None, Body::Raw(FORM, format!("token={huge}")), 413),
        case("revoke, json", "POST", "/v1/revoke", Auth::None, Body::Json(json!({"token": "x"})), 400),
        case("refresh of a revoked family", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt3}")), 400),
        // Edge authentication and the edge endpoints.
        case("feed snapshot", "GET", "/v1/revocations", edge(), Body::None, 200),
        case("feed, no credential", "GET", "/v1/revocations", Auth::None, Body::None, 401),
        case("feed, wrong credential", "GET", "/v1/revocations", Auth::Bearer("x".repeat(40)), Body::None, 401),
        case("feed, Basic", "GET", "/v1/revocations", Auth::Basic("edge", "x"), Body::None, 401),
        case("feed, other store", "GET", "/v1/revocations?after=elsewhere.5", edge(), Body::None, 410),
        case("feed, garbage cursor", "GET", "/v1/revocations?after=garbage", edge(), Body::None, 410),
        case("feed, after twice", "GET", "/v1/revocations?after=a.1&after=a.2", edge(), Body::None, 400),
        case("feed, unknown parameter", "GET", "/v1/revocations?since=1", edge(), Body::None, 400),
        case("feed, bad wait", "GET", "/v1/revocations?wait=1.5", edge(), Body::None, 400),
        case("feed, empty after", "GET", "/v1/revocations?after=&wait=100", edge(), Body::None, 200),
        case("versions", "GET", &format!("/v1/versions?key=sid:{sid}&key=sub:alice"), edge(), Body::None, 200),
        case("versions, no key", "GET", "/v1/versions", edge(), Body::None, 400),
        case("versions, bad kind", "GET", "/v1/versions?key=user:alice", edge(), Body::None, 400),
        case("versions, empty id", "GET", "/v1/versions?key=sub:", edge(), Body::None, 400),
        case("versions, other parameter", "GET", "/v1/versions?id=sub:alice", edge(), Body::None, 400),
        case("versions, 65 keys", "GET", &format!("/v1/versions?{}", (0..65).map(|i| format!("key=sub:u{i}")).collect::<Vec<_>>().join("&")), edge(), Body::None, 400),
        case("versions, no credential", "GET", "/v1/versions?key=sub:alice", Auth::None, Body::None, 401),
        case("metrics", "GET", "/metrics", edge(), Body::None, 200),
        case("metrics, no credential", "GET", "/metrics", Auth::None, Body::None, 401),
        // Probes and the document.
        case("healthz", "GET", "/healthz", Auth::None, Body::None, 200),
        case("livez", "GET", "/livez", Auth::None, Body::None, 200),
        case("readyz", "GET", "/readyz", Auth::None, Body::None, 200),
        case("openapi.json", "GET", "/openapi.json", Auth::None, Body::None, 200),
        // Outside the document: the error shape still holds.
        case("unknown path", "GET", "/v1/nothing", edge(), Body::None, 404),
        case("GET /v1/token", "GET", "/v1/token", Auth::None, Body::None, 405),
        case("PUT /v1/revoke", "PUT", "/v1/revoke", Auth::None, Body::None, 405),
        case("DELETE /v1/revocations", "DELETE", "/v1/revocations", Auth::None, Body::None, 405),
        case("POST /healthz", "POST", "/healthz", Auth::None, Body::None, 405),
        // API tokens (http.rs api_tokens_feed_versions_and_revoke).
        case("api token, zero days", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read","hosts":["*"],"days":0})), 400),
        case("api token, too many days", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read","hosts":["*"],"days":100000})), 400),
        case("api token, bad cidr", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read","hosts":["10.0.0.0/33"],"days":1})), 400),
        case("api token, star with others", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read","hosts":["*","10.0.0.1"],"days":1})), 400),
        case("api token, no hosts", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read","hosts":[],"days":1})), 400),
        case("api token, unknown field", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","hosts":["*"],"days":1,"admin":true})), 400),
        case("api token, empty sub", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"","hosts":["*"],"days":1})), 400),
        case("api token, form body", "POST", "/v1/api-tokens", ab(), form("sub=alice"), 400),
        case("api token, huge body", "POST", "/v1/api-tokens", ab(), Body::Raw("application/json", format!("{{\"sub\":\"{huge}\"}}")), 413),
        case("api token", "POST", "/v1/api-tokens", ab(), Body::Json(json!({"sub":"alice","scope":"read tollgate:admin","hosts":["127.0.0.0/8"],"days":-1,"name":"deploy"})), 201),
        case("api token, expiring", "POST", "/v1/api-tokens", ab(), Body::Json(api_body.clone()), 201),
        case("api tokens of alice", "GET", "/v1/api-tokens?sub=alice", ab(), Body::None, 200),
        case("api tokens", "GET", "/v1/api-tokens", ab(), Body::None, 200),
        case("api tokens, other parameter", "GET", "/v1/api-tokens?name=x", ab(), Body::None, 400),
        case("revoke unknown api token", "POST", "/v1/api-tokens/api_nope/revoke", ab(), Body::None, 404),
        // Malformed path parameters (after admin authentication).
        case("subject not UTF-8", "POST", "/v1/subjects/%FF/revoke", ab(), Body::None, 400),
        case("session not UTF-8", "POST", "/v1/sessions/%FF%FE/revoke", ab(), Body::None, 400),
        case("api token id not UTF-8", "POST", "/v1/api-tokens/%C3%28/revoke", ab(), Body::None, 400),
        case("subject with a space", "POST", "/v1/subjects/a%20b/revoke", ab(), Body::None, 400),
        case("subject too long", "POST", &format!("/v1/subjects/{}/revoke", "x".repeat(300)), ab(), Body::None, 400),
    ];
    // Admin authentication on every admin operation (http.rs admin_endpoints_require_the_admin_scope).
    let admin_ops = [
        ("POST", "/v1/subjects/alice/revoke".to_owned()),
        ("POST", format!("/v1/sessions/{sid}/revoke")),
        ("POST", "/v1/api-tokens".to_owned()),
        ("GET", "/v1/api-tokens".to_owned()),
        ("POST", "/v1/api-tokens/api_x/revoke".to_owned()),
    ];
    for (method, path) in &admin_ops {
        let body = if *method == "POST" && path.ends_with("api-tokens") { Body::Json(api_body.clone()) } else { Body::None };
        for (who, auth, status) in [
            ("no token", Auth::None, 401),
            ("garbage", Auth::Bearer("not.a.jwt".into()), 401),
            ("basic scheme", Auth::Basic("admin", "admin-password"), 401),
            ("user without admin scope", Auth::Bearer(alice.clone()), 403),
        ] {
            cases.push(case(format!("{method} {path}: {who}"), method, path.clone(), auth, body.clone(), status));
        }
    }
    let bodies = run.run(&cases).await;
    let created = bodies["api token"]["id"].as_str().expect("api token id").to_owned();
    let cursor = bodies["feed snapshot"]["cursor"].as_str().expect("cursor").to_owned();

    // Bumps, the feed after them, a revoked admin token, throttling.
    let mut later = vec![
        case("revoke alice's session", "POST", format!("/v1/sessions/{sid}/revoke"), ab(), Body::None, 200),
        case("revoke a subject", "POST", "/v1/subjects/bob/revoke", ab(), Body::None, 200),
        case("revoke the api token", "POST", format!("/v1/api-tokens/{created}/revoke"), ab(), Body::None, 200),
        case("feed delta", "GET", format!("/v1/revocations?after={cursor}"), edge(), Body::None, 200),
        case("refresh after the session revoke", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt}")), 400),
    ];
    for i in 0..6 {
        later.push(case(format!("throttle {i}"), "POST", "/v1/token", Auth::None, form("grant_type=password&username=carol&password=wrong"), if i < 5 { 400 } else { 429 }));
    }
    let admin_sid = edge_verifier().verify(&admin, TimeCheck::Skip).expect("claims").sid.expect("sid");
    later.push(case("revoke the admin's own session", "POST", format!("/v1/sessions/{admin_sid}/revoke"), ab(), Body::None, 200));
    later.push(case("a revoked admin token", "POST", "/v1/subjects/alice/revoke", ab(), Body::None, 401));
    let bodies = run.run(&later).await;
    assert_eq!(bodies["throttle 5"]["error"], "slow_down");
    assert!(bodies["feed delta"]["entries"].as_array().is_some_and(|e| e.len() == 3), "{}", bodies["feed delta"]);

    // Every documented operation was exercised.
    let exercised: BTreeSet<&String> = run.checked.iter().map(|(op, _)| op).collect();
    for r in routes() {
        let op = format!("{} {}", r.method, r.path);
        assert!(exercised.contains(&op), "{op} was not exercised");
    }
}

/// The store-down answers (Redis shut down under a running authority) are
/// documented too: 503 with `temporarily_unavailable`, `Retry-After` where
/// the document says so; the liveness probe still answers 200.
#[tokio::test]
async fn store_down_answers_conform_to_the_document() {
    let fixture = Fixture::redis();
    let Fixture::Redis { server: redis, .. } = &fixture else { unreachable!() };
    let mut run = Run::new(Server::start(&fixture.server_args(), &[]));
    let setup = run
        .run(&[
            case("admin login", "POST", "/v1/token", Auth::None, form("grant_type=password&username=admin&password=admin-password"), 200),
            case("healthz up", "GET", "/healthz", Auth::None, Body::None, 200),
        ])
        .await;
    let admin = setup["admin login"]["access_token"].as_str().expect("token").to_owned();
    let rt = setup["admin login"]["refresh_token"].as_str().expect("rt").to_owned();
    // SHUTDOWN NOSAVE: the server exits without answering.
    let port: u16 = redis.url().rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).expect("port");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
    s.write_all(b"SHUTDOWN NOSAVE\r\n").expect("shutdown");
    drop(s);
    let edge = || Auth::Bearer(EDGE_CREDENTIAL.to_owned());
    let ab = || Auth::Bearer(admin.clone());
    common::wait_until("redis gone", std::time::Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()).await;
    run.run(&[
        case("password grant", "POST", "/v1/token", Auth::None, form("grant_type=password&username=alice&password=alice-password"), 503),
        case("refresh", "POST", "/v1/token", Auth::None, form(&format!("grant_type=refresh_token&refresh_token={rt}")), 503),
        case("revoke", "POST", "/v1/revoke", Auth::None, form(&format!("token={rt}")), 503),
        case("feed", "GET", "/v1/revocations", edge(), Body::None, 503),
        case("versions", "GET", "/v1/versions?key=sub:alice", edge(), Body::None, 503),
        case("admin", "POST", "/v1/subjects/alice/revoke", ab(), Body::None, 503),
        case("list api tokens", "GET", "/v1/api-tokens", ab(), Body::None, 503),
        case("healthz", "GET", "/healthz", Auth::None, Body::None, 503),
        case("readyz", "GET", "/readyz", Auth::None, Body::None, 503),
        case("livez", "GET", "/livez", Auth::None, Body::None, 200),
    ])
    .await;
}

/// `GET /openapi.json` serves the document byte for byte, without
/// authentication, as JSON.
#[tokio::test]
async fn the_document_is_served_unauthenticated() {
    let fixture = Fixture::sqlite();
    let server = Server::start(&fixture.server_args(), &[]);
    let r = Client::new().get(server.url("/openapi.json")).send().await.expect("req");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(r.text().await.expect("body"), OPENAPI);
}
