//! HTTP-level tests against the real binary on loopback: every grant, every
//! error code, admin auth, bad input that must change nothing, and tokens
//! that verify under the filter's core and under an independent library.

mod common;

use common::{edge_verifier, Fixture, Server, EDGE_CREDENTIAL};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tollgate::token::{b64, TimeCheck};
use tollgate_authority::keys::DEMO_SECRET_B64;
use tollgate_authority::store::sqlite::SqliteStore;
use tollgate_authority::store::Store;

struct Env {
    _fixture: Fixture,
    server: Server,
    http: Client,
    store: Arc<dyn Store>,
}

async fn env() -> Env {
    let fixture = Fixture::sqlite();
    let server = Server::start(&fixture.server_args(), &["--refresh-grace-ms", "2000"]);
    let dir = common::data_dir(&fixture).expect("sqlite dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).expect("store"));
    Env { _fixture: fixture, server, http: Client::new(), store }
}

impl Env {
    async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = self.http.post(self.server.url(path)).form(pairs).send().await.expect("request");
        let (s, h) = (r.status(), r.headers().clone());
        let body = r.text().await.expect("body");
        (s, h, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    async fn login(&self, user: &str, password: &str) -> Value {
        let (s, _, b) = self.form("/v1/token", &[("grant_type", "password"), ("username", user), ("password", password)]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn admin_token(&self) -> String {
        self.login("admin", "admin-password").await["access_token"].as_str().expect("token").to_owned()
    }

    async fn state(&self) -> (Value, tollgate_authority::store::Stats) {
        let feed: Value = self.http.get(self.server.url("/v1/revocations")).bearer_auth(EDGE_CREDENTIAL).send().await.expect("feed").json().await.expect("json");
        (feed["entries"].clone(), self.store.stats().await.expect("stats"))
    }
}

fn error_of(b: &Value) -> &str {
    b["error"].as_str().unwrap_or("<no error field>")
}

fn jwt_crate_verify(token: &str) -> Value {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let secret = b64::decode(DEMO_SECRET_B64.as_bytes()).expect("demo secret");
    let header = decode_header(token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some("demo-2026"));
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&["https://auth.tollgate.local"]);
    v.set_audience(&["tollgate-demo"]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &DecodingKey::from_secret(&secret).expect("HMAC key"), &v).expect("jsonwebtoken accepts the token").claims
}

#[tokio::test]
async fn grants_succeed_and_tokens_verify_under_two_implementations() {
    let e = env().await;
    // password
    let (s, h, b) = e.form("/v1/token", &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "read")]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!((b["token_type"].as_str(), b["scope"].as_str(), b["expires_in"].as_u64()), (Some("Bearer"), Some("read"), Some(900)));
    let access = b["access_token"].as_str().expect("access");
    let rt = b["refresh_token"].as_str().expect("refresh");
    let claims = edge_verifier().verify(access, TimeCheck::At(tollgate_authority::util::now_secs())).expect("the filter's core accepts it");
    let floor = e.store.identity().floor;
    assert!(floor > 0, "a new store has a floor");
    assert_eq!((claims.sub.as_str(), claims.scope.as_deref(), claims.ver), ("alice", Some("read"), floor));
    let other = jwt_crate_verify(access);
    assert_eq!(other["sid"].as_str(), claims.sid.as_deref());
    assert_eq!(other["ver"].as_u64(), Some(floor));

    // refresh_token: rotation, then replay inside the grace window.
    let (s, _, r1) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(s, StatusCode::OK, "{r1}");
    let (s, _, r2) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(s, StatusCode::OK, "{r2}");
    assert_eq!((&r1["access_token"], &r1["refresh_token"]), (&r2["access_token"], &r2["refresh_token"]));
    assert_ne!(r1["refresh_token"].as_str(), Some(rt));
    jwt_crate_verify(r1["access_token"].as_str().expect("access"));

    // client_credentials: Basic and form authentication.
    let r = e.http.post(e.server.url("/v1/token")).basic_auth("demo-client", Some("demo-client-secret")).form(&[("grant_type", "client_credentials")]).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.expect("json");
    assert!(b.get("refresh_token").is_none(), "no refresh token for client_credentials");
    let c = jwt_crate_verify(b["access_token"].as_str().expect("access"));
    assert_eq!((c["sub"].as_str(), c["scope"].as_str()), (Some("demo-client"), Some("read")));
    let (s, _, b) = e.form("/v1/token", &[("grant_type", "client_credentials"), ("client_id", "demo-client"), ("client_secret", "demo-client-secret")]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A raw `&` in Basic credentials is data (it once ended the value, so
    // `demo-client&x:demo-client-secret&y` authenticated demo-client).
    let alias = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("demo-client&x:demo-client-secret&y")
    };
    let r = e.http.post(e.server.url("/v1/token")).header("authorization", format!("Basic {alias}")).form(&[("grant_type", "client_credentials")]).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "an id spelled with a raw & is another client");

    // health and metrics
    let h: Value = e.http.get(e.server.url("/healthz")).send().await.expect("healthz").json().await.expect("json");
    assert_eq!(h["status"], "ok");
    let m = e.http.get(e.server.url("/metrics")).bearer_auth(EDGE_CREDENTIAL).send().await.expect("metrics").text().await.expect("text");
    for name in [
        "tollgate_authority_grants_total{grant_type=\"password\",result=\"ok\"} 1",
        "tollgate_authority_refresh_total{outcome=\"rotated\"} 1",
        "tollgate_authority_refresh_total{outcome=\"replayed_in_grace\"} 1",
        "tollgate_authority_refresh_total{outcome=\"reuse_detected\"} 0",
        "tollgate_authority_version_bumps_total{kind=\"sid\"} 0",
        "tollgate_authority_store_operation_duration_seconds_count{op=\"apply_rotation\"}",
        "tollgate_authority_refresh_total{outcome=\"conflict\"} 0",
        "tollgate_authority_token_request_duration_seconds_count{grant_type=\"refresh_token\"} 2",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
    assert!(!m.contains(rt), "no token in metrics");
}

/// RFC 6749 §5.1: every answer that carries a token says `Cache-Control:
/// no-store` and `Pragma: no-cache`: all three grants, a replay inside the
/// grace window, and a new API token.
#[tokio::test]
async fn answers_carrying_tokens_are_never_cached() {
    let e = env().await;
    let check = |what: &str, h: &reqwest::header::HeaderMap| {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!((get("cache-control").as_deref(), get("pragma").as_deref()), (Some("no-store"), Some("no-cache")), "{what}");
    };
    let (s, h, login) = e.form("/v1/token", &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")]).await;
    assert_eq!(s, StatusCode::OK);
    check("password grant", &h);
    let rt = login["refresh_token"].as_str().expect("rt");
    for what in ["refresh rotation", "refresh replay"] {
        let (s, h, _) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
        assert_eq!(s, StatusCode::OK, "{what}");
        check(what, &h);
    }
    let r = e.http.post(e.server.url("/v1/token")).basic_auth("demo-client", Some("demo-client-secret")).form(&[("grant_type", "client_credentials")]).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    check("client_credentials", r.headers());
    let admin = e.admin_token().await;
    let r = e
        .http
        .post(e.server.url("/v1/api-tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"sub": "ci", "scope": "read", "hosts": ["*"], "days": 1}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::CREATED);
    check("new API token", r.headers());
}

#[tokio::test]
async fn token_endpoint_errors_change_nothing() {
    let e = env().await;
    let alice = e.login("alice", "alice-password").await;
    let rt = alice["refresh_token"].as_str().expect("rt").to_owned();
    let before = e.state().await;
    let huge = "a".repeat(64 * 1024);
    // (case, body, content type, basic auth, status, error)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, String, &str, Option<(&str, &str)>, u16, &str)> = vec![
        ("no grant_type", "username=alice".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("unknown grant", "grant_type=implicit".into(), "application/x-www-form-urlencoded", None, 400, "unsupported_grant_type"),
        ("wrong password", "grant_type=password&username=alice&password=nope".into(), "application/x-www-form-urlencoded", None, 400, "invalid_grant"),
        ("unknown user", "grant_type=password&username=mallory&password=x".into(), "application/x-www-form-urlencoded", None, 400, "invalid_grant"),
        ("missing password", "grant_type=password&username=alice".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("password grant with a secret", "grant_type=password&username=alice&password=alice-password&client_secret=x".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("scope not allowed", "grant_type=password&username=alice&password=alice-password&scope=tollgate:admin".into(), "application/x-www-form-urlencoded", None, 400, "invalid_scope"),
        ("client without auth", "grant_type=client_credentials".into(), "application/x-www-form-urlencoded", None, 401, "invalid_client"),
        ("client wrong secret", "grant_type=client_credentials".into(), "application/x-www-form-urlencoded", Some(("demo-client", "wrong")), 401, "invalid_client"),
        ("unknown client", "grant_type=client_credentials&client_id=ghost&client_secret=x".into(), "application/x-www-form-urlencoded", None, 401, "invalid_client"),
        ("two client auth methods", "grant_type=client_credentials&client_id=demo-client&client_secret=demo-client-secret".into(), "application/x-www-form-urlencoded", Some(("demo-client", "demo-client-secret")), 400, "invalid_request"),
        ("client scope not allowed", "grant_type=client_credentials&scope=write".into(), "application/x-www-form-urlencoded", Some(("demo-client", "demo-client-secret")), 400, "invalid_scope"),
        ("unknown refresh token", "grant_type=refresh_token&refresh_token=tgr_nope".into(), "application/x-www-form-urlencoded", None, 400, "invalid_grant"),
        ("overlong refresh token", format!("grant_type=refresh_token&refresh_token={}", "x".repeat(500)), "application/x-www-form-urlencoded", None, 400, "invalid_grant"),
        ("refresh scope widening", format!("grant_type=refresh_token&refresh_token={rt}&scope=tollgate:admin"), "application/x-www-form-urlencoded", None, 400, "invalid_scope"),
        ("missing refresh token", "grant_type=refresh_token".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("repeated parameter", "grant_type=password&grant_type=password&username=alice&password=alice-password".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("json body", r#"{"grant_type":"password"}"#.into(), "application/json", None, 400, "invalid_request"),
        ("not UTF-8 after decoding", "grant_type=password&username=%FF%FE&password=x".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("malformed form", "=&&=x".into(), "application/x-www-form-urlencoded", None, 400, "invalid_request"),
        ("huge body", format!("grant_type=password&username={huge}"), "application/x-www-form-urlencoded", None, 413, "invalid_request"),
    ];
    for (name, body, ctype, basic, status, error) in cases {
        let mut req = e.http.post(e.server.url("/v1/token")).header("content-type", ctype).body(body);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let r = req.send().await.expect(name);
        let got_status = r.status().as_u16();
        let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!((got_status, error_of(&b)), (status, error), "{name}: {b}");
        assert!(b["error_description"].is_string(), "{name}: description");
        if status == 401 {
            assert_eq!(challenge.as_deref(), Some("Basic realm=\"tollgate-authority\""), "{name}");
        }
    }
    assert_eq!(e.state().await, before, "bad input changed nothing");
    // The refresh token still works after all that.
    let (s, _, _) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn admin_endpoints_require_the_admin_scope() {
    let e = env().await;
    let alice = e.login("alice", "alice-password").await;
    let alice_token = alice["access_token"].as_str().expect("token").to_owned();
    let admin = e.admin_token().await;
    let before = e.state().await;
    let sid = edge_verifier().verify(&alice_token, TimeCheck::Skip).expect("claims").sid.expect("sid");
    // (case, method, path, bearer, status, error, challenge contains)
    let paths = [
        ("POST", "/v1/subjects/alice/revoke".to_string()),
        ("POST", format!("/v1/sessions/{sid}/revoke")),
        ("POST", "/v1/api-tokens".to_string()),
        ("GET", "/v1/api-tokens".to_string()),
        ("POST", "/v1/api-tokens/api_x/revoke".to_string()),
    ];
    let bearers: [(&str, Option<String>, u16, &str, &str); 4] = [
        ("no token", None, 401, "unauthorized", "Bearer realm=\"tollgate-authority\""),
        ("garbage", Some("not.a.jwt".into()), 401, "invalid_token", "error=\"invalid_token\""),
        ("basic scheme", Some(String::new()), 401, "invalid_token", "error=\"invalid_token\""),
        ("user without admin scope", Some(alice_token.clone()), 403, "insufficient_scope", "error=\"insufficient_scope\""),
    ];
    for (method, path) in &paths {
        for (case, bearer, status, error, challenge) in &bearers {
            let mut req = if *method == "GET" { e.http.get(e.server.url(path)) } else { e.http.post(e.server.url(path)) };
            req = match bearer {
                None => req,
                Some(t) if t.is_empty() => req.basic_auth("admin", Some("admin-password")),
                Some(t) => req.bearer_auth(t),
            };
            if path.ends_with("api-tokens") && *method == "POST" {
                req = req.json(&serde_json::json!({"sub": "alice", "scope": "read", "hosts": ["*"], "days": 1}));
            }
            let r = req.send().await.expect("request");
            let got = r.status().as_u16();
            let ch = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let b: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!((got, error_of(&b)), (*status, *error), "{method} {path} {case}: {b}");
            assert!(ch.contains(challenge), "{method} {path} {case}: challenge {ch:?}");
        }
    }
    assert_eq!(e.state().await, before, "refused admin requests changed nothing");

    // With the admin token: revoke alice's session; her token is revoked at the edge.
    let r = e.http.post(e.server.url(&format!("/v1/sessions/{sid}/revoke"))).bearer_auth(&admin).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["key"].as_str(), Some(format!("sid:{sid}").as_str()));
    let min = b["min_ver"].as_u64().expect("min_ver");
    let v: Value = e.http.get(e.server.url(&format!("/v1/versions?key=sid:{sid}&key=sub:alice"))).bearer_auth(EDGE_CREDENTIAL).send().await.expect("req").json().await.expect("json");
    assert_eq!(v["versions"][format!("sid:{sid}")].as_u64(), Some(min));
    assert_eq!(v["versions"]["sub:alice"].as_u64(), Some(e.store.identity().floor), "never bumped: the floor");
    let (s, _, b) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", alice["refresh_token"].as_str().expect("rt"))]).await;
    assert_eq!((s.as_u16(), error_of(&b)), (400, "invalid_grant"));

    // An admin token whose own session is revoked no longer works.
    let admin_sid = edge_verifier().verify(&admin, TimeCheck::Skip).expect("claims").sid.expect("sid");
    let r = e.http.post(e.server.url(&format!("/v1/sessions/{admin_sid}/revoke"))).bearer_auth(&admin).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let r = e.http.post(e.server.url("/v1/subjects/alice/revoke")).bearer_auth(&admin).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let b: Value = r.json().await.expect("json");
    assert_eq!((error_of(&b), b["error_description"].as_str()), ("invalid_token", Some("token revoked")));
}

#[tokio::test]
async fn api_tokens_feed_versions_and_revoke() {
    let e = env().await;
    let admin = e.admin_token().await;
    let create = |body: Value| e.http.post(e.server.url("/v1/api-tokens")).bearer_auth(&admin).json(&body).send();
    // (case, body, status, error)
    let bad: Vec<(&str, Value, u16, &str)> = vec![
        ("zero days", serde_json::json!({"sub":"alice","scope":"read","hosts":["*"],"days":0}), 400, "invalid_request"),
        ("too many days", serde_json::json!({"sub":"alice","scope":"read","hosts":["*"],"days":100000}), 400, "invalid_request"),
        ("bad cidr", serde_json::json!({"sub":"alice","scope":"read","hosts":["10.0.0.0/33"],"days":1}), 400, "invalid_request"),
        ("star with others", serde_json::json!({"sub":"alice","scope":"read","hosts":["*","10.0.0.1"],"days":1}), 400, "invalid_request"),
        ("no hosts", serde_json::json!({"sub":"alice","scope":"read","hosts":[],"days":1}), 400, "invalid_request"),
        ("unknown field", serde_json::json!({"sub":"alice","hosts":["*"],"days":1,"admin":true}), 400, "invalid_request"),
        ("empty sub", serde_json::json!({"sub":"","hosts":["*"],"days":1}), 400, "invalid_request"),
        // serde's derive reads an array positionally; the API reads only objects.
        ("array body", serde_json::json!(["alice", "read", ["*"], -1, null]), 400, "invalid_request"),
    ];
    for (name, body, status, error) in bad {
        let r = create(body).await.expect(name);
        let s = r.status().as_u16();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!((s, error_of(&b)), (status, error), "{name}: {b}");
    }
    let r = create(serde_json::json!({"sub":"alice","scope":"read tollgate:admin","hosts":["127.0.0.0/8"],"days":-1,"name":"deploy"})).await.expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["expires_at"], Value::Null);
    let c = edge_verifier().verify(&token, TimeCheck::At(tollgate_authority::util::now_secs())).expect("never-expiring API token verifies");
    assert_eq!((c.exp, c.sid.as_deref(), c.hosts.clone()), (None, Some(id.as_str()), Some(vec!["127.0.0.0/8".to_string()])));
    // The API token itself is an admin credential from 127.0.0.1.
    let list: Value = e.http.get(e.server.url("/v1/api-tokens?sub=alice")).bearer_auth(&token).send().await.expect("list").json().await.expect("json");
    let listed = list["api_tokens"].as_array().expect("array");
    assert_eq!(listed.len(), 1);
    assert!(!list.to_string().contains(&token), "the token is never shown again");
    assert_eq!(listed[0]["name"], "deploy");

    let snap: Value = e.http.get(e.server.url("/v1/revocations")).bearer_auth(EDGE_CREDENTIAL).send().await.expect("feed").json().await.expect("json");
    assert_eq!(snap["snapshot"], true);
    let cursor = snap["cursor"].as_str().expect("cursor").to_owned();
    let r = e.http.post(e.server.url(&format!("/v1/api-tokens/{id}/revoke"))).bearer_auth(&admin).send().await.expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    let delta: Value = e.http.get(e.server.url(&format!("/v1/revocations?after={cursor}"))).bearer_auth(EDGE_CREDENTIAL).send().await.expect("feed").json().await.expect("json");
    assert_eq!(delta["snapshot"], false);
    assert_eq!(delta["entries"], serde_json::json!([{"key": format!("sid:{id}"), "min_ver": delta["entries"][0]["min_ver"], "expires_at": null}]));
    let r = e.http.get(e.server.url("/v1/api-tokens")).bearer_auth(&token).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked API token refused");
    let r = e.http.post(e.server.url("/v1/api-tokens/api_nope/revoke")).bearer_auth(&admin).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Feed and versions input errors.
    let cases: &[(&str, u16, &str)] = &[
        ("/v1/revocations?after=elsewhere.5", 410, "invalid_cursor"),
        ("/v1/revocations?after=garbage", 410, "invalid_cursor"),
        ("/v1/revocations?after=a.1&after=a.2", 400, "invalid_request"),
        ("/v1/revocations?since=1", 400, "invalid_request"),
        ("/v1/versions", 400, "invalid_request"),
        ("/v1/versions?key=user:alice", 400, "invalid_request"),
        ("/v1/versions?key=sub:", 400, "invalid_request"),
        ("/v1/versions?id=sub:alice", 400, "invalid_request"),
        ("/v1/nothing", 404, "not_found"),
    ];
    for (path, status, error) in cases {
        let r = e.http.get(e.server.url(path)).bearer_auth(EDGE_CREDENTIAL).send().await.expect("req");
        let s = r.status().as_u16();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!((s, error_of(&b)), (*status, *error), "{path}: {b}");
    }

    // RFC 7009: unknown tokens are fine; a refresh token ends its family.
    let alice = e.login("alice", "alice-password").await;
    let rt = alice["refresh_token"].as_str().expect("rt");
    let r = e.http.post(e.server.url("/v1/revoke")).form(&[("token", "tgr_unknown")]).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _, b) = e.form("/v1/revoke", &[("token_type_hint", "refresh_token")]).await;
    assert_eq!((s.as_u16(), error_of(&b)), (400, "invalid_request"));
    let r = e.http.post(e.server.url("/v1/revoke")).form(&[("token", rt), ("token_type_hint", "refresh_token")]).send().await.expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _, b) = e.form("/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!((s.as_u16(), error_of(&b)), (400, "invalid_grant"));
}

/// L4: extractor rejections and wrong methods answer RFC 6749-style JSON,
/// and Basic client credentials with a different form `client_id` are refused.
#[tokio::test]
async fn malformed_paths_methods_and_client_ids_answer_json() {
    let e = env().await;
    let admin = e.admin_token().await;
    let before = e.state().await;
    for path in ["/v1/subjects/%FF/revoke", "/v1/sessions/%FF%FE/revoke", "/v1/api-tokens/%C3%28/revoke"] {
        let r = e.http.post(e.server.url(path)).bearer_auth(&admin).send().await.expect("req");
        let s = r.status().as_u16();
        let text = r.text().await.expect("body");
        let b: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!((s, error_of(&b)), (400, "invalid_request"), "{path}: {text}");
    }
    for (method, path) in [("GET", "/v1/token"), ("PUT", "/v1/revoke"), ("DELETE", "/v1/revocations"), ("POST", "/healthz")] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = e.http.request(m, e.server.url(path)).send().await.expect("req");
        let s = r.status().as_u16();
        let allow = r.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = r.text().await.expect("body");
        let b: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(s, 405, "{method} {path}");
        assert!(b["error"].is_string() && b["error_description"].is_string(), "{method} {path}: {text:?}");
        assert!(allow.is_some(), "{method} {path}: Allow header");
    }
    let r = e
        .http
        .post(e.server.url("/v1/token"))
        .basic_auth("demo-client", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "someone-else")])
        .send()
        .await
        .expect("req");
    let s = r.status().as_u16();
    let b: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!((s, error_of(&b)), (400, "invalid_request"), "{b}");
    let r = e
        .http
        .post(e.server.url("/v1/token"))
        .basic_auth("demo-client", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "demo-client")])
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK, "the same client_id in the form is allowed");
    assert_eq!(e.state().await.0, before.0, "nothing bumped");
}

/// L5: a failed password grant does not log the typed username (users type
/// passwords into the username field); successful sign-ins still name the subject.
#[tokio::test]
async fn failed_password_grants_do_not_log_the_username() {
    let fixture = Fixture::sqlite();
    let log_dir = tempfile::tempdir().expect("dir");
    let log = log_dir.path().join("authority.log");
    let server = Server::start_full(&fixture.server_args(), &[], &[("TOLLGATE_LOG", "info"), ("NO_COLOR", "1")], Some(&log));
    let http = Client::new();
    let typed = "Correct-Horse-Battery-Staple-42";
    let r = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "password"), ("username", typed), ("password", "x")])
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")])
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), StatusCode::OK);
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("password grant refused"), "the refusal is logged:\n{text}");
    assert!(!text.contains(typed), "the typed username is in the log:\n{text}");
}
