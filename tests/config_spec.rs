//! Configuration as a specification: every refusal names its field, and the
//! defaults are the documented ones. Runs natively and on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};
use tollgate::config::{ClientAddressFrom, Config};

const SECRET: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";
const EDGE_CREDENTIAL: &str = "edge-credential-for-the-config-spec-0001";

fn minimal() -> Value {
    json!({
        "issuer": "https://auth.test",
        "audiences": ["api"],
        "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]
    })
}

fn env(name: &str) -> Option<String> {
    match name {
        "GOOD_KEY" => Some(SECRET.into()),
        "SHORT_KEY" => Some("c2hvcnQ".into()),
        "EDGE_CREDENTIAL" => Some(EDGE_CREDENTIAL.into()),
        _ => None,
    }
}

fn parse(doc: &Value) -> Result<Config, tollgate::config::ConfigError> {
    Config::parse(doc.to_string().as_bytes(), &env)
}

/// Applies `edit` to the minimal document.
fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut d = minimal();
    edit(&mut d);
    d
}

#[test]
fn refusals_name_the_field() {
    // (case, document, field named, words in the message)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("unknown top-level field", with(|d| d["isuser"] = json!("x")), "isuser", "unknown field `isuser`"),
        ("issuer missing", with(|d| { d.as_object_mut().unwrap().remove("issuer"); }), "", "missing field `issuer`"),
        ("issuer empty", with(|d| d["issuer"] = json!("")), "issuer", "must not be empty"),
        ("issuer wrong type", with(|d| d["issuer"] = json!(5)), "issuer", "invalid type"),
        ("no audience", with(|d| d["audiences"] = json!([])), "audiences", "at least one"),
        ("empty audience", with(|d| d["audiences"] = json!(["a", ""])), "audiences[1]", "must not be empty"),
        ("no keys", with(|d| d["keys"] = json!([])), "keys", "at least one key"),
        ("unknown alg", with(|d| d["keys"][0]["alg"] = json!("RS256")), "keys[0].alg", "HS256, HS384, HS512"),
        ("alg none", with(|d| d["keys"][0]["alg"] = json!("none")), "keys[0].alg", "HS256"),
        ("short HS256 key", with(|d| d["keys"][0]["secret"] = json!("c2hvcnQ")), "keys[0].secret", "at least 32 bytes"),
        ("HS512 needs 64 bytes", with(|d| d["keys"][0]["alg"] = json!("HS512")), "keys[0].secret", "at least 64 bytes, got 41"),
        ("secret not base64url", with(|d| d["keys"][0]["secret"] = json!("not base64!")), "keys[0].secret", "not base64url"),
        ("secret and secret_env", with(|d| d["keys"][0]["secret_env"] = json!("GOOD_KEY")), "keys[0].secret", "not both"),
        ("neither secret", with(|d| { d["keys"][0].as_object_mut().unwrap().remove("secret"); }), "keys[0].secret", "required"),
        ("env var unset", with(|d| d["keys"][0] = json!({"alg": "HS256", "secret_env": "NOPE"})), "keys[0].secret_env", "NOPE is not set"),
        ("env var short", with(|d| d["keys"][0] = json!({"alg": "HS256", "secret_env": "SHORT_KEY"})), "keys[0].secret_env", "at least 32 bytes"),
        ("unknown key field", with(|d| d["keys"][0]["use"] = json!("sig")), "keys[0].use", "unknown field `use`"),
        ("empty kid", with(|d| d["keys"][0]["kid"] = json!("")), "keys[0].kid", "must not be empty"),
        ("two keys, one without kid", with(|d| d["keys"] = json!([{"kid":"a","alg":"HS256","secret":SECRET},{"alg":"HS256","secret":SECRET}])), "keys", "needs a kid"),
        ("duplicate kid", with(|d| d["keys"] = json!([{"kid":"a","alg":"HS256","secret":SECRET},{"kid":"a","alg":"HS256","secret":SECRET}])), "keys", "appears twice"),
        ("skew too large", with(|d| d["clock_skew_seconds"] = json!(301)), "clock_skew_seconds", "at most 300"),
        ("negative skew", with(|d| d["clock_skew_seconds"] = json!(-1)), "clock_skew_seconds", "invalid value"),
        ("token cap too small", with(|d| d["max_token_bytes"] = json!(10)), "max_token_bytes", "between 256 and 65536"),
        ("no token types", with(|d| d["token_types"] = json!([])), "token_types", "at least one"),
        ("realm with quote", with(|d| d["realm"] = json!("a\"b")), "realm", "printable ASCII"),
        ("admin scope with space", with(|d| d["admin_scope"] = json!("a b")), "admin_scope", "one non-empty scope"),
        ("bad cookie name", with(|d| d["sources"] = json!({"cookie": "a b"})), "sources.cookie", "cookie name"),
        ("bad header pair name", with(|d| d["sources"] = json!({"header_pair": {"token": "x:y", "user": "u"}})), "sources.header_pair.token", "header name"),
        ("every source off", with(|d| d["sources"] = json!({"authorization_header": false})), "sources", "at least one token source"),
        ("unknown source field", with(|d| d["sources"] = json!({"header": true})), "sources.header", "unknown field `header`"),
        ("bad client address mode", with(|d| d["client_address"] = json!({"from": "forwarded"})), "client_address.from", "unknown variant"),
        ("identity header pseudo", with(|d| d["identity_headers"] = json!({"subject": ":path"})), "identity_headers.subject", "header name"),
        ("identity headers repeat", with(|d| d["identity_headers"] = json!({"scope": "x-tollgate-sub"})), "identity_headers.scope", "repeats"),
        ("rule without path kind", with(|d| d["rules"] = json!([{"path": {}}])), "rules[0].path", "exactly one of"),
        ("rule with two path kinds", with(|d| d["rules"] = json!([{"path": {"exact": "/a", "prefix": "/b"}}])), "rules[0].path", "exactly one of"),
        ("bad regex", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}}, {"path": {"regex": "(["}}])), "rules[1].path.regex", "invalid regex"),
        ("bad method", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "methods": ["GET", "P0ST"]}])), "rules[0].methods[1]", "not an HTTP method"),
        ("anonymous with scopes", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "anonymous": true, "scopes": ["a"]}])), "rules[0].anonymous", "cannot also require"),
        ("empty scope", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "scopes": [""]}])), "rules[0].scopes[0]", "one non-empty scope"),
        ("unknown rule field", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "scope": ["a"]}])), "rules[0].scope", "unknown field `scope`"),
        ("revocation without authority", with(|d| d["revocation"] = json!({})), "revocation", "needs the `authority` section"),
        ("refresh without authority", with(|d| d["refresh"] = json!({"cookie": "r"})), "refresh", "needs the `authority` section"),
        ("fresh rule without authority", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "fresh": true}])), "rules[0].fresh", "needs the `authority` section"),
        ("authority without cluster", with(|d| d["authority"] = json!({"cluster": ""})), "authority.cluster", "must not be empty"),
        ("authority timeout zero", with(|d| d["authority"] = json!({"cluster": "a", "timeout_ms": 0})), "authority.timeout_ms", "between 10 and 60000"),
        ("sync interval too short", with(|d| { d["authority"] = json!({"cluster": "a"}); d["revocation"] = json!({"sync_interval_ms": 10}); }), "revocation.sync_interval_ms", "between 100 and 60000"),
        ("staleness below interval", with(|d| { d["authority"] = json!({"cluster": "a"}); d["revocation"] = json!({"sync_interval_ms": 1000, "max_staleness_ms": 1999}); }), "revocation.max_staleness_ms", "at least twice sync_interval_ms"),
        ("trusted hops beyond reason", with(|d| d["client_address"] = json!({"from": "x_forwarded_for", "trusted_hops": 4294967295u32})), "client_address.trusted_hops", "at most 64"),
        ("long poll wait too short", with(|d| { d["authority"] = json!({"cluster": "a"}); d["revocation"] = json!({"wait_ms": 500}); }), "revocation.wait_ms", "between 1000 and 60000"),
        ("unknown on_stale", with(|d| { d["authority"] = json!({"cluster": "a"}); d["revocation"] = json!({"on_stale": "maybe"}); }), "revocation.on_stale", "unknown variant"),
        ("refresh with no mode", with(|d| { d["authority"] = json!({"cluster": "a"}); d["refresh"] = json!({}); }), "refresh", "cookie (browsers), header (API clients)"),
        ("refresh cookie without access cookie", with(|d| { d["authority"] = json!({"cluster": "a"}); d["refresh"] = json!({"cookie": "tg_refresh"}); }), "refresh.cookie", "needs sources.cookie"),
        ("refresh cookie same as access", with(|d| { d["authority"] = json!({"cluster": "a"}); d["sources"] = json!({"cookie": "c"}); d["refresh"] = json!({"cookie": "c"}); }), "refresh.cookie", "must differ"),
        ("SameSite None without Secure", with(|d| { d["authority"] = json!({"cluster": "a"}); d["sources"] = json!({"cookie": "c"}); d["refresh"] = json!({"cookie": "r", "set_cookie": {"same_site": "None", "secure": false}}); }), "refresh.set_cookie.same_site", "requires secure"),
        ("cookie path with semicolon", with(|d| { d["authority"] = json!({"cluster": "a"}); d["sources"] = json!({"cookie": "c"}); d["refresh"] = json!({"cookie": "r", "set_cookie": {"path": "/a;b"}}); }), "refresh.set_cookie.path", "absolute path"),
        ("bad refresh header name", with(|d| { d["authority"] = json!({"cluster": "a"}); d["refresh"] = json!({"header": {"request": "x y"}}); }), "refresh.header.request", "header name"),
        ("anonymous fresh rule", with(|d| { d["authority"] = json!({"cluster": "a"}); d["rules"] = json!([{"path": {"prefix": "/"}, "anonymous": true, "fresh": true}]); }), "rules[0].fresh", "no token to check"),
        ("staleness without fresh", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "max_staleness_ms": 100}])), "rules[0].max_staleness_ms", "only applies with fresh"),
        ("relative prefix", with(|d| d["rules"] = json!([{"path": {"prefix": "admin"}}])), "rules[0].path.prefix", "must start with /"),
        ("relative exact path", with(|d| d["rules"] = json!([{"path": {"exact": ""}}])), "rules[0].path.exact", "must start with /"),
        ("ignore_case not a bool", with(|d| d["rules"] = json!([{"path": {"prefix": "/"}, "ignore_case": "yes"}])), "rules[0].ignore_case", "invalid type"),
        ("strict_paths not a bool", with(|d| d["strict_paths"] = json!(1)), "strict_paths", "invalid type"),
        ("token cache beyond reason", with(|d| d["token_cache"] = json!({"entries": 2_000_000})), "token_cache.entries", "at most 1048576"),
        ("unknown token cache field", with(|d| d["token_cache"] = json!({"size": 1})), "token_cache.size", "unknown field `size`"),
        ("bad passthrough scheme", with(|d| d["sources"] = json!({"passthrough_schemes": ["Basic", "two words"]})), "sources.passthrough_schemes[1]", "scheme name"),
        ("Bearer cannot pass through", with(|d| d["sources"] = json!({"passthrough_schemes": ["bearer"]})), "sources.passthrough_schemes[0]", "read by the filter"),
        ("edge credential too short", with(|d| d["authority"] = json!({"cluster": "a", "credential": "short"})), "authority.credential", "at least 32"),
        ("edge credential and env", with(|d| d["authority"] = json!({"cluster": "a", "credential": EDGE_CREDENTIAL, "credential_env": "EDGE_CREDENTIAL"})), "authority.credential", "not both"),
        ("edge credential env unset", with(|d| d["authority"] = json!({"cluster": "a", "credential_env": "NOPE"})), "authority.credential_env", "NOPE is not set"),
    ];
    for (case, doc, field, words) in cases {
        let err = parse(&doc).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!(err.field, field, "{case}: {err}");
        assert!(err.message.contains(words), "{case}: {err}");
        assert!(!err.to_string().contains(SECRET), "{case}: the secret leaked into {err}");
    }
}

#[test]
fn not_json_at_all() {
    for bad in ["", "[]", "{", "{} {}", "null"] {
        assert!(Config::parse(bad.as_bytes(), &env).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(&minimal()).expect("minimal document is valid");
    assert_eq!(c.verifier.allowed_typ, vec!["at+jwt".to_string()]);
    assert_eq!(c.verifier.rules.clock_skew, 30);
    assert_eq!(c.verifier.max_token_bytes, 8192);
    assert!(!c.verifier.rules.allow_never_expiring);
    assert_eq!(c.realm, "tollgate");
    assert_eq!(c.admin_scope, "tollgate:admin");
    assert!(c.sources.authorization_header);
    assert_eq!(c.sources.cookie, None);
    assert_eq!(c.sources.header_pair, None);
    assert!(!c.sources.query_enabled);
    assert_eq!(c.sources.query_name, "access_token");
    assert_eq!(c.client_address, ClientAddressFrom::Peer);
    assert_eq!(c.trusted_hops, 0);
    assert_eq!(c.identity_headers.all(), ["x-tollgate-sub", "x-tollgate-scope", "x-tollgate-sid", "x-tollgate-ver"]);
    assert!(c.forward_token);
    assert!(c.strict_paths, "paths upstreams read differently are refused unless configured otherwise");
    assert!(c.sources.passthrough_schemes.is_empty());
    assert_eq!(c.token_cache_entries, 1024);
    assert!(c.authority.is_none() && c.revocation.is_none() && c.refresh.is_none());
}

#[test]
fn callout_defaults_are_the_documented_ones() {
    use tollgate::config::{OnStale, SameSite};
    let doc = with(|d| {
        d["authority"] = json!({"cluster": "authority"});
        d["revocation"] = json!({});
        d["sources"] = json!({"cookie": "tg_access"});
        d["refresh"] = json!({"cookie": "tg_refresh"});
    });
    let c = parse(&doc).expect("valid");
    let a = c.authority.expect("authority");
    assert_eq!((a.cluster.as_str(), a.host.as_str(), a.timeout_ms), ("authority", "tollgate-authority", 1000));
    assert!(a.credential.is_none());
    let r = c.revocation.expect("revocation");
    assert_eq!((r.sync_interval_ms, r.max_staleness_ms, r.on_stale, r.wait_ms), (1000, 5000, OnStale::Deny, 0));
    let f = c.refresh.expect("refresh");
    assert_eq!((f.refresh_before_seconds, f.wait_ms, f.client_id.as_str()), (30, 3000, "tollgate-edge"));
    assert!(f.set_cookie.secure && f.set_cookie.http_only);
    assert_eq!((f.set_cookie.same_site, f.set_cookie.path.as_str()), (SameSite::Lax, "/"));
    assert_eq!(f.set_cookie.refresh_max_age_seconds, 14 * 24 * 3600);
}

#[test]
fn secrets_from_the_vm_environment_and_padded_base64_are_accepted() {
    let doc = with(|d| d["keys"] = json!([{"kid": "a", "alg": "HS256", "secret_env": "GOOD_KEY"}, {"kid": "b", "alg": "HS256", "secret": format!("{SECRET}=")}]));
    let c = parse(&doc).expect("valid");
    assert_eq!(c.verifier.keys.keys().len(), 2);
    // The secret never shows in Debug output.
    assert!(!format!("{c:?}").contains(SECRET));
}

#[test]
fn the_edge_credential_comes_from_the_vm_environment_and_never_shows() {
    let doc = with(|d| d["authority"] = json!({"cluster": "a", "credential_env": "EDGE_CREDENTIAL"}));
    let c = parse(&doc).expect("valid");
    let credential = c.authority.as_ref().and_then(|a| a.credential.as_ref()).expect("credential");
    assert_eq!(credential.header_value(), format!("Bearer {EDGE_CREDENTIAL}"));
    assert!(!format!("{c:?}").contains(EDGE_CREDENTIAL), "Debug hides the edge credential");
    let err = parse(&with(|d| d["authority"] = json!({"cluster": "a", "credential": "x".repeat(20)}))).unwrap_err();
    assert!(!err.to_string().contains(&"x".repeat(20)), "{err}");
}

#[test]
fn header_names_are_lower_cased() {
    let doc = with(|d| d["sources"] = json!({"header_pair": {"token": "Token-Code", "user": "Token-User"}}));
    let c = parse(&doc).expect("valid");
    assert_eq!(c.sources.header_pair, Some(("token-code".into(), "token-user".into())));
}
