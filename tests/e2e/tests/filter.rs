//! The Tollgate filter inside a real Envoy 1.40, specified by example.
//!
//! Every decision here is local: one shared Envoy runs the demo
//! configuration of the selected host (`envoy/envoy.yaml` for the Wasm
//! filter, `envoy/envoy-native.yaml` for the native module, see
//! `tollgate_e2e::host`; but for ports and module path) with the
//! local document (`local_document`: the demo document without `authority`,
//! `revocation`, `refresh` and live checks), so no authority is needed.
//! Tests that need another configuration, or exact counter deltas, start
//! their own. The callouts are specified in `revocation.rs`, `refresh.rs`
//! and `failures.rs`.
//!
//! Prerequisite: `make build` (see `tollgate_e2e::envoy`).

use serde_json::json;
use std::collections::BTreeMap;
use tollgate::token::{Algorithm, Claims};
use tollgate_e2e::envoy::{demo_document, local_document, tail, validate};
use tollgate_e2e::tokens::{self, *};
use tollgate_e2e::{shared, Envoy, Options, Request, Response};

// ---- the specification table -------------------------------------------------

/// One row: a request and what Envoy must answer.
struct Case {
    name: &'static str,
    request: Request,
    status: u16,
    /// The RFC 6750 `error` code; `None` for allowed requests and for a
    /// request without credentials.
    error: Option<&'static str>,
    /// The `error_description` of a denial (also in the JSON body).
    description: Option<&'static str>,
    /// The `scope` parameter the challenge must carry (missing scope / admin).
    scope: Option<&'static str>,
}

fn case(
    name: &'static str,
    request: Request,
    status: u16,
    error: Option<&'static str>,
    description: Option<&'static str>,
) -> Case {
    Case {
        name,
        request,
        status,
        error,
        description,
        scope: None,
    }
}

impl Case {
    fn scope(mut self, scope: &'static str) -> Case {
        self.scope = Some(scope);
        self
    }
}

const NO_TOKEN: Option<&str> = Some("access token required");
const INVALID_TOKEN: Option<&str> = Some("invalid_token");
const INVALID_REQUEST: Option<&str> = Some("invalid_request");
const INSUFFICIENT_SCOPE: Option<&str> = Some("insufficient_scope");

fn other_secret() -> Vec<u8> {
    b"an-entirely-different-secret-of-64-bytes-for-hs512-and-hs256-use".to_vec()
}

/// Checks one response against its row; returns what is wrong.
fn check(case: &Case, r: &Response) -> Vec<String> {
    let mut wrong = Vec::new();
    if r.status != case.status {
        wrong.push(format!("status {} (want {})", r.status, case.status));
    }
    // The token never comes back: not in any header, not in a local answer.
    wrong.extend(r.secret_leaks(&case.request.secrets, r.status != 200));

    if matches!(r.status, 400 | 401 | 403) {
        let challenge = r.header("www-authenticate").unwrap_or("<none>");
        let realm = format!("Bearer realm=\"{REALM}\"");
        match (case.error, case.description) {
            (None, _) => {
                if challenge != realm {
                    wrong.push(format!(
                        "challenge {challenge:?}, want exactly {realm:?} (no error code)"
                    ));
                }
            }
            (Some(code), description) => {
                let want = format!(
                    "{realm}, error=\"{code}\", error_description=\"{}\"",
                    description.unwrap_or_default()
                );
                if !challenge.starts_with(&want) {
                    wrong.push(format!(
                        "challenge {challenge:?}, want it to start with {want:?}"
                    ));
                }
            }
        }
        match case.scope {
            Some(s) if !challenge.ends_with(&format!(", scope=\"{s}\"")) => {
                wrong.push(format!("challenge {challenge:?} lacks scope=\"{s}\""))
            }
            None if challenge.contains("scope=") => {
                wrong.push(format!("challenge {challenge:?} names a scope"))
            }
            _ => {}
        }
        if r.header("content-type") != Some("application/json") {
            wrong.push(format!("content-type {:?}", r.header("content-type")));
        }
        if r.header("cache-control") != Some("no-store") {
            wrong.push(format!("cache-control {:?}", r.header("cache-control")));
        }
        let mut want_body = serde_json::Map::new();
        if let Some(code) = case.error {
            want_body.insert("error".into(), code.into());
        }
        if let Some(d) = case.description {
            want_body.insert("error_description".into(), d.into());
        }
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(body) if body == serde_json::Value::Object(want_body.clone()) => {}
            Ok(body) => wrong.push(format!(
                "body {body}, want {}",
                serde_json::Value::Object(want_body)
            )),
            Err(e) => wrong.push(format!("body is not JSON ({e})")),
        }
    } else if r.status == 200 {
        // Allowed: the echo upstream answered, with the request it saw.
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(body) if body["method"] == case.request.method.as_str() => {}
            _ => wrong.push("200 without the echo upstream's answer".into()),
        }
    }
    wrong
}

fn run_table(envoy: &Envoy, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let r = envoy.send(&c.request);
        let wrong = check(c, &r);
        if !wrong.is_empty() {
            failures.push(format!(
                "✗ {}\n  request: {}\n  {}\n  response: {r}",
                c.name,
                c.request,
                wrong.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn responses_follow_the_specification() {
    let now = tokens::now();
    let alice = claims("alice");
    let good = token_with_scope("alice", "read write");
    let read_only = token_with_scope("alice", "read");
    let write_only = token_with_scope("alice", "write");
    let admin = token_with_scope("root", "read tollgate:admin");
    let expired = mint(&Claims {
        exp: Some(now - 3600),
        iat: Some(now - 7200),
        ..alice.clone()
    });
    let bad_signature = key(Some(DEMO_KID), Algorithm::HS256, &other_secret())
        .sign(Some("at+jwt"), &alice.to_json());
    let unknown_kid = key(Some("demo-2027"), Algorithm::HS256, &demo_secret())
        .sign(Some("at+jwt"), &alice.to_json());
    let alg_mismatch = key(Some(DEMO_KID), Algorithm::HS512, &other_secret())
        .sign(Some("at+jwt"), &alice.to_json());
    let alg_none = assemble(
        &json!({"alg": "none", "typ": "at+jwt", "kid": DEMO_KID}),
        &claims_json(&alice),
        "",
    );
    let alg_none_mixed_case = assemble(
        &json!({"alg": "nOnE", "typ": "at+jwt"}),
        &claims_json(&alice),
        "",
    );
    let typ_jwt = demo_key().sign(Some("JWT"), &alice.to_json());
    let typ_missing = demo_key().sign(None, &alice.to_json());
    let wrong_audience = mint(&Claims {
        aud: vec!["someone-else".into()],
        ..alice.clone()
    });
    let wrong_issuer = mint(&Claims {
        iss: "https://evil.example".into(),
        ..alice.clone()
    });
    let not_yet_valid = mint(&Claims {
        nbf: Some(now + 3600),
        ..alice.clone()
    });
    let mut ver_string = claims_json(&alice);
    ver_string["ver"] = json!("1");
    let ver_string = sign_raw(&demo_key(), Some("at+jwt"), &ver_string);
    let mut exp_float = claims_json(&alice);
    exp_float["exp"] = json!(now as f64 + 600.5);
    let exp_float = sign_raw(&demo_key(), Some("at+jwt"), &exp_float);
    let no_exp = mint(&Claims {
        exp: None,
        ..alice.clone()
    });
    let no_exp_with_sid = mint(&Claims {
        exp: None,
        sid: Some("api-token-7".into()),
        ..alice.clone()
    });
    let too_large = mint(&Claims {
        jti: Some("j".repeat(9000)),
        ..alice.clone()
    });
    let hosts = |h: &[&str]| {
        mint(&Claims {
            hosts: Some(h.iter().map(|s| s.to_string()).collect()),
            ..alice.clone()
        })
    };

    let api = || Request::get("/api/items");
    let ok = |name, request| case(name, request, 200, None, None);
    let no_token = |name, request| case(name, request, 401, None, NO_TOKEN);
    let invalid_token = |name, request, why| case(name, request, 401, INVALID_TOKEN, Some(why));
    let invalid_request = |name, request, why| case(name, request, 400, INVALID_REQUEST, Some(why));
    let forbidden = |name, request, why| case(name, request, 403, INSUFFICIENT_SCOPE, Some(why));
    const NO_SCOPE: &str = "required scope missing";
    const NO_ADMIN: &str = "admin scope required";
    const BAD_HOST: &str = "client address not allowed for this token";

    #[rustfmt::skip]
    let cases = vec![
        // -- no credentials: 401, a bare challenge, no error code
        no_token("no credentials", api()),
        no_token("another cookie is not the token", api().header("Cookie", "session=abc")),
        no_token("fallback rule requires a token", Request::get("/")),
        no_token("anonymous rule limited to GET", Request::post("/healthz")),
        no_token("admin route without token", Request::get("/admin/users")),

        // -- a valid token, from every source
        ok("bearer token", api().bearer(&good)),
        ok("bearer scheme lower-case", api().scheme("bearer", &good)),
        ok("bearer scheme upper-case", api().scheme("BEARER", &good)),
        ok("header name in odd casing", api().header("aUtHoRiZaTiOn", &format!("Bearer {good}")).secret(&good)),
        ok("cookie tg_access", api().cookie("tg_access", &good)),
        ok("cookie tg_access among others", api().header("Cookie", &format!("theme=dark; tg_access={good}; lang=en")).secret(&good)),
        ok("the same token twice is one token", api().bearer(&good).cookie("tg_access", &good)),
        ok("header pair, user matches sub", api().header("Token-Code", &good).header("Token-User", "alice").secret(&good)),
        ok("never-expiring token with sid", api().bearer(&no_exp_with_sid)),

        // -- bad tokens: 401 invalid_token, the description names the reason
        invalid_token("expired", api().bearer(&expired), "token expired"),
        invalid_token("bad signature", api().bearer(&bad_signature), "signature invalid"),
        invalid_token("unknown kid", api().bearer(&unknown_kid), "unknown key id"),
        invalid_token("alg none", api().bearer(&alg_none), "alg none not allowed"),
        invalid_token("alg none, mixed case", api().bearer(&alg_none_mixed_case), "alg none not allowed"),
        invalid_token("alg other than the key's", api().bearer(&alg_mismatch), "alg does not match key"),
        invalid_token("typ JWT is not an access token", api().bearer(&typ_jwt), "typ not allowed"),
        invalid_token("typ missing", api().bearer(&typ_missing), "typ not allowed"),
        invalid_token("wrong audience", api().bearer(&wrong_audience), "audience not accepted"),
        invalid_token("wrong issuer", api().bearer(&wrong_issuer), "issuer not accepted"),
        invalid_token("not yet valid", api().bearer(&not_yet_valid), "token not yet valid"),
        invalid_token("ver as a string", api().bearer(&ver_string), "ver is not a non-negative integer"),
        invalid_token("exp as a float", api().bearer(&exp_float), "exp is not an integer NumericDate"),
        invalid_token("no exp and no sid", api().bearer(&no_exp), "exp missing"),
        invalid_token("malformed: two segments", api().bearer("abc.def"), "token is not a compact JWS"),
        invalid_token("malformed: not a JWS at all", api().bearer("not-a-jwt"), "token is not a compact JWS"),
        invalid_token("header segment not base64url", api().cookie("tg_access", "x.y.z"), "header is not base64url"),
        // "xyz" in every segment: decodes, but is no JSON object.
        invalid_token("header not a JSON object", api().cookie("tg_access", "eHl6.eHl6.eHl6"), "header is not a JSON object"),
        invalid_token("too large", api().bearer(&too_large), "token too large"),

        // -- malformed requests: 400 invalid_request
        invalid_request("two different tokens: Authorization and cookie", api().bearer(&good).cookie("tg_access", &read_only), "more than one access token in request"),
        invalid_request("two different tokens: cookie twice", api().header("Cookie", &format!("tg_access={good}; tg_access={read_only}")).secret(&good).secret(&read_only), "more than one access token in request"),
        invalid_request("two different tokens: bearer and header pair", api().bearer(&good).header("token-code", &read_only).header("token-user", "alice").secret(&read_only), "more than one access token in request"),
        // Envoy joins repeated Authorization headers into one value
        // ("Bearer a,Bearer b"), which the filter refuses as malformed.
        invalid_request("two different tokens: two Authorization headers", api().bearer(&good).bearer(&read_only), "more than one access token in request"),
        invalid_request("token in the query while query tokens are off", Request::get(&format!("/api/items?access_token={good}")).secret(&good), "access token in query string not allowed"),
        invalid_request("query token refused even on an anonymous route", Request::get(&format!("/public/x?a=1&access_token={good}")).secret(&good), "access token in query string not allowed"),
        invalid_request("bearer with a space inside", api().header("Authorization", "Bearer abc def"), "malformed Authorization header"),
        // A scheme the document neither reads nor passes through is refused,
        // never forwarded as "no credential" beside a checked one.
        invalid_request("another auth scheme is refused", api().header("Authorization", "Basic YWxpY2U6cHc="), "unsupported Authorization scheme"),
        invalid_request("empty token cookie", api().header("Cookie", "tg_access="), "empty access token"),

        // -- policy: scopes, admin, hosts, header pair
        ok("read route with read scope", api().bearer(&read_only)),
        forbidden("read route without read scope", api().bearer(&write_only), NO_SCOPE).scope("read"),
        ok("write route with write scope", Request::post("/api/items").bearer(&good)),
        forbidden("write route without write scope", Request::post("/api/items").bearer(&read_only), NO_SCOPE).scope("write"),
        forbidden("DELETE is a write", Request::new("DELETE", "/api/items").bearer(&read_only), NO_SCOPE).scope("write"),
        forbidden("admin route without admin scope", Request::get("/admin/users").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE),
        ok("admin route with admin scope", Request::get("/admin/users").bearer(&admin)),
        forbidden("hosts CIDR excludes 127.0.0.1", api().bearer(&hosts(&["10.0.0.0/8"])), BAD_HOST),
        forbidden("hosts addresses other than 127.0.0.1", api().bearer(&hosts(&["127.0.0.2", "::1"])), BAD_HOST),
        ok("hosts CIDR includes 127.0.0.1", api().bearer(&hosts(&["10.0.0.0/8", "127.0.0.0/8"]))),
        ok("hosts lists 127.0.0.1", api().bearer(&hosts(&["127.0.0.1"]))),
        forbidden("header pair, user differs from sub", api().header("token-code", &good).header("token-user", "bob").secret(&good), "token user does not match"),
        forbidden("header pair without the user header", api().header("token-code", &good).secret(&good), "token user does not match"),

        // -- anonymous routes: no token is fine, a bad one is not
        ok("anonymous route without token", Request::get("/public/index.html")),
        ok("health without token", Request::get("/healthz")),
        ok("anonymous route with a good token", Request::get("/public/index.html").bearer(&good)),
        invalid_token("anonymous route with an expired token", Request::get("/public/index.html").bearer(&expired), "token expired"),
        invalid_token("anonymous route with a forged token", Request::get("/public/index.html").bearer(&bad_signature), "signature invalid"),

        // -- rules match the path Envoy normalized
        forbidden("//admin/x is the admin rule", Request::get("//admin/x").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE),
        no_token("/public/../admin/x is not anonymous", Request::get("/public/../admin/x")),
        forbidden("/public/../admin/x is the admin rule", Request::get("/public/../admin/x").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE),
        forbidden("/public/./../admin/x is the admin rule", Request::get("/public/./../admin/x").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE),
    ];
    run_table(shared(), &cases);
}

// ---- the client address of the hosts claim ---------------------------------------

/// The demo document says `client_address.from: "peer"`: the address a token
/// is bound to is the TCP peer (here always 127.0.0.1), and nothing the
/// client writes into a header may change it. A client that could choose its
/// address with `X-Forwarded-For` would defeat the `hosts` claim.
#[test]
fn hosts_binding_uses_the_peer_not_a_client_supplied_x_forwarded_for() {
    let bound = |hosts: &[&str]| {
        mint(&Claims {
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
            ..claims("alice")
        })
    };
    let ten = bound(&["10.0.0.0/8"]);
    let loopback = bound(&["127.0.0.1"]);
    let mut wrong = Vec::new();
    // (token bound to, X-Forwarded-For sent, expected status)
    for (name, token, xff, want) in [
        (
            "10/8 token from 127.0.0.1 claiming 10.1.2.3",
            &ten,
            "10.1.2.3",
            403,
        ),
        (
            "10/8 token from 127.0.0.1 claiming 198.51.100.1, 10.1.2.3",
            &ten,
            "198.51.100.1, 10.1.2.3",
            403,
        ),
        (
            "127.0.0.1 token from 127.0.0.1 behind a proxy adding 10.1.2.3",
            &loopback,
            "10.1.2.3",
            200,
        ),
    ] {
        let r = shared().send(
            &Request::get("/api/items")
                .header("X-Forwarded-For", xff)
                .bearer(token),
        );
        if r.status != want {
            wrong.push(format!("✗ {name}: status {} (want {want})", r.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "the hosts claim is checked against an address the client chose:\n{}\n\
         (Envoy's `source.address` is the X-Forwarded-For address unless the \
         http_connection_manager sets `use_remote_address: true`)",
        wrong.join("\n")
    );
}

// ---- identity headers ----------------------------------------------------------

#[test]
fn identity_headers_reach_the_upstream_and_spoofed_ones_do_not() {
    let token = mint(&Claims {
        scope: Some("read write".into()),
        sid: Some("sess-42".into()),
        ver: 3,
        ..claims("alice")
    });
    let r = shared().send(
        &Request::get("/api/items")
            .header("X-Tollgate-Sub", "mallory")
            .header("x-tollgate-sub", "eve")
            .header("X-TOLLGATE-SCOPE", "tollgate:admin")
            .header("x-tollgate-sid", "stolen")
            .header("x-tollgate-ver", "999")
            .bearer(&token),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sub"), ["alice"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-scope"), ["read write"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sid"), ["sess-42"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-ver"), ["3"], "{r}");
    // forward_token is true in the demo: the token travels on.
    assert_eq!(
        r.upstream_header("authorization"),
        [format!("Bearer {token}")],
        "{r}"
    );

    // A token without sid or scope: the spoofed values must not survive.
    let bare = mint(&Claims {
        scope: None,
        sid: None,
        ver: 0,
        ..claims("svc-backup")
    });
    let r = shared().send(
        &Request::get("/other")
            .header("x-tollgate-sid", "stolen")
            .header("x-tollgate-scope", "tollgate:admin")
            .cookie("tg_access", &bare),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sub"), ["svc-backup"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-ver"), ["0"], "{r}");
    assert!(
        r.upstream_header("x-tollgate-sid").is_empty(),
        "spoofed sid reached the upstream: {r}"
    );
    assert!(
        r.upstream_header("x-tollgate-scope").is_empty(),
        "spoofed scope reached the upstream: {r}"
    );
}

#[test]
fn anonymous_requests_reach_the_upstream_without_identity() {
    for path in ["/public/index.html", "/healthz"] {
        let r = shared().send(&Request::get(path));
        assert_eq!(r.status, 200, "{r}");
        let seen = r.json();
        let leaked: Vec<&String> = seen["headers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("x-tollgate-"))
            .collect();
        assert!(
            leaked.is_empty(),
            "{path}: identity headers on an anonymous request: {leaked:?}"
        );

        let r = shared().send(
            &Request::get(path)
                .header("X-Tollgate-Sub", "admin")
                .header("x-tollgate-scope", "tollgate:admin")
                .header("x-tollgate-sid", "s")
                .header("X-Tollgate-Ver", "0")
                .header("x-other", "kept"),
        );
        assert_eq!(r.status, 200, "{r}");
        for h in [
            "x-tollgate-sub",
            "x-tollgate-scope",
            "x-tollgate-sid",
            "x-tollgate-ver",
        ] {
            assert!(
                r.upstream_header(h).is_empty(),
                "{path}: spoofed {h} reached the upstream: {r}"
            );
        }
        assert_eq!(
            r.upstream_header("x-other"),
            ["kept"],
            "{path}: an unrelated header was lost: {r}"
        );
    }
}

#[test]
fn normalized_paths_reach_the_upstream_normalized() {
    let admin = token_with_scope("root", "tollgate:admin");
    for raw in [
        "//admin/x",
        "/public/../admin/x",
        "/admin/./x",
        "/admin//x/../x",
    ] {
        let r = shared().send(&Request::get(raw).bearer(&admin));
        assert_eq!(r.status, 200, "{raw}: {r}");
        assert_eq!(r.json()["path"], "/admin/x", "{raw}: {r}");
        assert_eq!(r.upstream_header("x-tollgate-sub"), ["root"], "{raw}: {r}");
    }
    // `..` removes the empty segment before it, then slashes merge: this is
    // the public path /public/admin/x, and the upstream sees exactly that.
    let r = shared().send(&Request::get("/public//..//admin/x"));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["path"], "/public/admin/x", "{r}");
    // An escaped slash is never unescaped behind the filter's back: the
    // shipped Envoy refuses it (REJECT_REQUEST), exactly a 400 — not a
    // redirect to a path with more segments, not any other error.
    for raw in ["/public%2F..%2Fadmin/x", "/admin%2Fx", "/admin%2fx", "/admin%5Cx"] {
        let r = shared().send(&Request::get(raw).bearer(&admin));
        assert_eq!(r.status, 400, "{raw}: an escaped separator must be refused: {r}");
        assert!(r.header("www-authenticate").is_none(), "{raw}: Envoy refuses it before the filter: {r}");
    }
}

// ---- forward_token: false --------------------------------------------------------

#[test]
fn forward_token_false_strips_the_token_before_the_upstream() {
    let mut doc = local_document();
    doc["forward_token"] = json!(false);
    doc["sources"]["query"]["enabled"] = json!(true);
    let envoy = Envoy::start(&Options::with_document(&doc));
    let token = token_with_scope("alice", "read write");

    let r = envoy.send(
        &Request::get("/api/items")
            .bearer(&token)
            .header("Cookie", "theme=dark"),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.upstream_header("authorization").is_empty(),
        "Authorization reached the upstream: {r}"
    );
    assert_eq!(r.upstream_header("cookie"), ["theme=dark"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sub"), ["alice"], "{r}");

    let r = envoy.send(
        &Request::get("/api/items")
            .header("Cookie", &format!("theme=dark; tg_access={token}; lang=en")),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.upstream_header("cookie").join("; "),
        "theme=dark; lang=en",
        "{r}"
    );

    let r = envoy.send(&Request::get("/api/items").header("Cookie", &format!("tg_access={token}")));
    assert_eq!(r.status, 200, "{r}");
    assert!(r.upstream_header("cookie").is_empty(), "{r}");

    let r = envoy.send(
        &Request::get("/api/items")
            .header("token-code", &token)
            .header("token-user", "alice"),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.upstream_header("token-code").is_empty(),
        "token-code reached the upstream: {r}"
    );

    let r = envoy.send(&Request::get(&format!(
        "/api/items?x=1&access_token={token}&y=2"
    )));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["path"], "/api/items?x=1&y=2", "{r}");

    // Whatever the source, the token is nowhere in what the upstream saw.
    assert!(!r.text().contains(&token), "{r}");
}

// ---- counters --------------------------------------------------------------------

#[test]
fn counters_count_every_decision() {
    let envoy = Envoy::start(&Options::local());
    let before = envoy.stats();
    let names = [
        "tollgate.allowed",
        "tollgate.anonymous",
        "tollgate.denied.no_token",
        "tollgate.denied.expired",
        "tollgate.denied.bad_signature",
        "tollgate.denied.unknown_kid",
        "tollgate.denied.bad_alg",
        "tollgate.denied.bad_header",
        "tollgate.denied.bad_audience",
        "tollgate.denied.malformed",
        "tollgate.denied.invalid_request",
        "tollgate.denied.missing_scope",
        "tollgate.denied.admin_required",
        "tollgate.denied.host_not_allowed",
        "tollgate.denied.user_mismatch",
    ];
    for n in names {
        assert!(
            before.contains_key(n),
            "counter {n} is not registered; the filter's stats are {before:#?}"
        );
    }

    let now = tokens::now();
    let alice = claims("alice");
    let good = token_with_scope("alice", "read write");
    let expired = mint(&Claims {
        exp: Some(now - 3600),
        ..alice.clone()
    });
    let forged = key(Some(DEMO_KID), Algorithm::HS256, &other_secret())
        .sign(Some("at+jwt"), &alice.to_json());
    let far_hosts = mint(&Claims {
        hosts: Some(vec!["192.0.2.0/24".into()]),
        ..alice.clone()
    });
    let api = || Request::get("/api/items");
    // (request, status, the counter it must move)
    let unknown_kid =
        key(Some("nope"), Algorithm::HS256, &demo_secret()).sign(Some("at+jwt"), &alice.to_json());
    let alg_none = assemble(&json!({"alg": "none"}), &claims_json(&alice), "");
    let typ_jwt = demo_key().sign(Some("JWT"), &alice.to_json());
    let wrong_aud = mint(&Claims {
        aud: vec!["x".into()],
        ..alice.clone()
    });
    let read_only = token_with_scope("alice", "read");
    // (request, status, the counter it must move by one)
    #[rustfmt::skip]
    let traffic: Vec<(Request, u16, &str)> = vec![
        (api().bearer(&good), 200, "allowed"),
        (api().cookie("tg_access", &good), 200, "allowed"),
        (Request::post("/api/items").bearer(&good), 200, "allowed"),
        (Request::get("/public/a"), 200, "anonymous"),
        (Request::get("/healthz"), 200, "anonymous"),
        (api(), 401, "denied.no_token"),
        (Request::get("/admin/x"), 401, "denied.no_token"),
        (api().bearer(&expired), 401, "denied.expired"),
        (Request::get("/public/a").bearer(&expired), 401, "denied.expired"),
        (api().bearer(&forged), 401, "denied.bad_signature"),
        (api().bearer(&unknown_kid), 401, "denied.unknown_kid"),
        (api().bearer(&alg_none), 401, "denied.bad_alg"),
        (api().bearer(&typ_jwt), 401, "denied.bad_header"),
        (api().bearer(&wrong_aud), 401, "denied.bad_audience"),
        (api().bearer("a.b"), 401, "denied.malformed"),
        (api().bearer(&good).cookie("tg_access", &expired), 400, "denied.invalid_request"),
        (Request::get(&format!("/api/items?access_token={good}")).secret(&good), 400, "denied.invalid_request"),
        (Request::post("/api/items").bearer(&read_only), 403, "denied.missing_scope"),
        (Request::get("/admin/x").bearer(&good), 403, "denied.admin_required"),
        (api().bearer(&far_hosts), 403, "denied.host_not_allowed"),
        (api().header("token-code", &good).header("token-user", "bob").secret(&good), 403, "denied.user_mismatch"),
    ];
    // The token cache's own counters count lookups, not decisions.
    let decisions = |k: &&String| !k.starts_with("tollgate.token_cache.");
    let mut want: BTreeMap<String, u64> = before.keys().filter(decisions).map(|k| (k.clone(), 0)).collect();
    let mut secrets = Vec::new();
    for (req, status, counter) in &traffic {
        let r = envoy.send(req);
        assert_eq!(r.status, *status, "{req}: {r}");
        *want
            .entry(format!("tollgate.{counter}"))
            .or_default() += 1;
        secrets.extend(req.secrets.iter().cloned());
    }

    let after = envoy.stats();
    let deltas: BTreeMap<String, u64> = after
        .iter()
        .filter(|(k, _)| decisions(k))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect();
    assert_eq!(
        deltas,
        want,
        "counter deltas after {} requests",
        traffic.len()
    );

    // The log says the configuration was accepted, and never holds a token.
    let log = envoy.stop();
    assert!(
        log.contains("configuration accepted"),
        "the filter's log lines are missing:\n{}",
        tail(&log, 30)
    );
    for s in &secrets {
        let sig = s.rsplit('.').next().unwrap_or(s);
        assert!(
            !log.contains(s.as_str()) && (sig.len() < 16 || !log.contains(sig)),
            "a token appears in Envoy's log"
        );
    }
}

/// Many connections at once land on both workers (one engine each, in its
/// own VM or, natively, on its own worker thread): each decides alone, and
/// every decision is counted exactly once.
#[test]
fn both_workers_decide_under_concurrent_load() {
    let envoy = Envoy::start(&Options::local());
    let token = tokens::token_with_scope("bob", "read");
    let listener = envoy.listener;
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let token = token.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|j| {
                        let with_token = (i + j) % 2 == 0;
                        let req = if with_token {
                            Request::get("/api/items").bearer(&token)
                        } else {
                            Request::get("/api/items")
                        };
                        let r = tollgate_e2e::http::send(listener, &req).expect("an answer");
                        (with_token, r.status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (with_token, status) in handles.into_iter().flat_map(|h| h.join().expect("client")) {
        assert_eq!(status, if with_token { 200 } else { 401 });
    }
    assert_eq!(envoy.stat("tollgate.allowed"), 100);
    assert_eq!(envoy.stat("tollgate.denied.no_token"), 100);
    tollgate_e2e::callouts::assert_no_crash(&envoy.stop());
}

// ---- interoperability ------------------------------------------------------------

#[test]
fn token_minted_by_jsonwebtoken_passes_through_envoy() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let now = tokens::now();
    let header = Header {
        typ: Some("at+jwt".into()),
        kid: Some(DEMO_KID.into()),
        ..Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let claims = json!({
        "iss": ISSUER,
        "sub": "interop-user",
        "aud": [AUDIENCE, "another-api"],
        "exp": now + 300,
        "iat": now,
        "ver": 5,
        "sid": "sess-interop",
        "scope": "read",
    });
    let token = encode(&header, &claims, &EncodingKey::from_secret(&demo_secret()).expect("HMAC key"))
        .expect("jsonwebtoken encodes");
    let r = shared().send(&Request::get("/api/items").bearer(&token));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sub"), ["interop-user"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-ver"), ["5"], "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sid"), ["sess-interop"], "{r}");

    // And jsonwebtoken with another secret is refused for the right reason.
    let forged = encode(&header, &claims, &EncodingKey::from_secret(&other_secret()).expect("HMAC key")).unwrap();
    let r = shared().send(&Request::get("/api/items").bearer(&forged));
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(r.json()["error_description"], "signature invalid", "{r}");

    // The other direction: jsonwebtoken accepts what Tollgate mints.
    let ours = mint(&tokens::claims("alice"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let decoded = jsonwebtoken::decode::<serde_json::Value>(
        &ours,
        &jsonwebtoken::DecodingKey::from_secret(&demo_secret()).expect("HMAC key"),
        &validation,
    )
    .expect("jsonwebtoken verifies a Tollgate token");
    assert_eq!(decoded.claims["sub"], "alice");
    assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"));
}

// ---- configuration refused -------------------------------------------------------

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let demo = demo_document();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut d = demo.clone();
        f(&mut d);
        d
    };
    let short_key = json!({"kid": "k", "alg": "HS256", "secret": "c2hvcnQtc2VjcmV0"});
    // (name, document, demo key in Envoy's environment, what the log must say)
    #[rustfmt::skip]
    let cases: Vec<(&str, serde_json::Value, bool, &str)> = vec![
        ("unknown field", with(&|d| d["issuer_url"] = json!("x")), true, "field `issuer_url`: unknown field"),
        ("unknown nested field", with(&|d| d["sources"]["header"] = json!(true)), true, "field `sources.header`: unknown field"),
        ("key too short", with(&|d| d["keys"][0] = short_key.clone()), true, "field `keys[0].secret`: HS256 needs a secret of at least 32 bytes"),
        ("bad alg", with(&|d| d["keys"][0]["alg"] = json!("RS256")), true, "field `keys[0].alg`"),
        ("alg none", with(&|d| d["keys"][0]["alg"] = json!("none")), true, "field `keys[0].alg`"),
        ("invalid regex", with(&|d| d["rules"][0]["path"]["regex"] = json!("/v1/(token")), true, "field `rules[0].path.regex`: invalid regex"),
        ("missing issuer", with(&|d| { d.as_object_mut().unwrap().remove("issuer"); }), true, "missing field `issuer`"),
        ("secret_env unset", demo.clone(), false, "field `keys[0].secret_env`: environment variable TOLLGATE_DEMO_KEY is not set"),
        ("clock skew too big", with(&|d| d["clock_skew_seconds"] = json!(301)), true, "field `clock_skew_seconds`: must be at most 300"),
        ("anonymous rule with scopes", with(&|d| d["rules"][2]["scopes"] = json!(["read"])), true, "field `rules[2].anonymous`"),
        ("not JSON", json!("{not json"), true, "tollgate configuration:"),
    ];
    let options = |doc: &serde_json::Value, key: bool| Options {
        // `not JSON` is sent as the raw text, not as a JSON string.
        document: Some(match doc.as_str() {
            Some(raw) => raw.to_owned(),
            None => serde_json::to_string_pretty(doc).unwrap(),
        }),
        demo_key_env: key,
        ..Options::default()
    };
    // Control: the unchanged demo document validates, so a refusal below is
    // the document's doing.
    let control = validate(&options(&demo, true));
    assert!(
        control.success,
        "control: the demo document must validate:\n{}",
        tail(&control.log, 30)
    );
    // A few validations at a time: each is a whole Envoy.
    let mut results = Vec::new();
    for chunk in cases.chunks(4) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(_, doc, key, _)| {
                    let o = options(doc, *key);
                    s.spawn(move || validate(&o))
                })
                .collect();
            results.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("validate thread")),
            );
        });
    }
    let mut failures = Vec::new();
    for ((name, _, _, want), v) in cases.iter().zip(&results) {
        if v.success {
            failures.push(format!("✗ {name}: Envoy accepted it"));
        } else if !v.log.contains(want) {
            failures.push(format!(
                "✗ {name}: log lacks {want:?}; log tail:\n{}",
                tail(&v.log, 15)
            ));
        }
        if v.log.contains("c2hvcnQtc2VjcmV0") || v.log.contains(DEMO_KEY_B64) {
            failures.push(format!("✗ {name}: a secret appears in Envoy's log"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn envoy_refuses_to_start_with_a_bad_configuration() {
    let mut doc = demo_document();
    doc["rules"][3]["path"] = json!({"regex": "/admin/(["});
    let err = match Envoy::try_start(&Options::with_document(&doc)) {
        Ok(envoy) => panic!(
            "Envoy started with an invalid regex (admin on {})",
            envoy.admin
        ),
        Err(e) => e,
    };
    assert!(
        err.status.is_some(),
        "Envoy neither started nor exited: {}\n{}",
        err.reason,
        tail(&err.log, 20)
    );
    assert!(!err.status.unwrap().success(), "Envoy exited successfully");
    assert!(
        err.log.contains("field `rules[3].path.regex`"),
        "log does not name the field:\n{}",
        tail(&err.log, 20)
    );
}

/// HTTP allows bytes above 0x7f in header values (obs-text). The SDK's
/// String header getter panics on them, which would take the worker's VM
/// down for every request after (natively: a 500 for each); the filter
/// reads bytes instead. A value
/// that is not UTF-8 where credentials travel is a 400; anywhere else it is
/// just carried along.
#[test]
fn header_values_that_are_not_utf8_never_take_the_vm_down() {
    let envoy = Envoy::start(&Options::local());
    let good = tokens::token_with_scope("alice", "read");
    let api = || Request::get("/api/x");
    // More requests than workers, on fresh connections, so both workers see them.
    for round in 0..8 {
        let r = envoy.send(&api().bearer(&good).raw_header("User-Agent", b"caf\xe9 \xff"));
        assert_eq!(r.status, 200, "round {round}: obs-text outside credentials is carried: {r}");
        let r = envoy.send(&api().raw_header("Authorization", b"Bearer \xff\xfe"));
        assert_eq!(r.status, 400, "round {round}: {r}");
        assert_eq!(r.json()["error_description"], "credentials header is not valid UTF-8", "{r}");
        let r = envoy.send(&api().bearer(&good).raw_header("Cookie", b"tg_access=\xe9"));
        assert_eq!(r.status, 400, "round {round}: {r}");
    }
    for round in 0..8 {
        let r = envoy.send(&api().bearer(&good));
        assert_eq!(r.status, 200, "round {round}: the workers still serve: {r}");
    }
    tollgate_e2e::callouts::assert_no_crash(&envoy.stop());
}

// ---- request semantics, over HTTP/1.1 and HTTP/2 -----------------------------

/// What one protocol must get for a row of the request-semantics table.
enum Want {
    /// The filter's answer, checked like a row of the table above.
    Filter,
    /// Envoy answers `status` before the filter runs (no Tollgate challenge):
    /// its HTTP/1.1 codec refuses a method that is not upper case, its path
    /// normalization an encoded NUL.
    Envoy(u16),
}

/// A row: the request, the filter's answer, and per protocol whether the
/// filter or Envoy answers.
struct Row {
    case: Case,
    h1: Want,
    h2: Want,
    /// A value the client wrote into an identity or user header: on a 200,
    /// no header the upstream received may carry it.
    spoof: Option<&'static str>,
}

fn row(case: Case) -> Row {
    Row {
        case,
        h1: Want::Filter,
        h2: Want::Filter,
        spoof: None,
    }
}

impl Row {
    fn h1_envoy(mut self, status: u16) -> Row {
        self.h1 = Want::Envoy(status);
        self
    }

    /// Envoy refuses the request itself, over both protocols.
    fn envoy(mut self, status: u16) -> Row {
        self.h1 = Want::Envoy(status);
        self.h2 = Want::Envoy(status);
        self
    }

    fn spoof(mut self, value: &'static str) -> Row {
        self.spoof = Some(value);
        self
    }
}

/// The document of the request-semantics rows: the demo document without
/// callouts, with rules that use the request-semantics fields (segment-aware
/// prefixes, `ignore_case`, a GET-only anonymous rule) and the default
/// `strict_paths`.
fn semantics_document() -> serde_json::Value {
    let mut doc = local_document();
    doc["rules"] = json!([
        {"name": "health", "path": {"exact": "/healthz"}, "methods": ["GET"], "anonymous": true},
        {"name": "public", "path": {"prefix": "/public"}, "anonymous": true},
        {"name": "admin", "path": {"prefix": "/admin"}, "ignore_case": true, "admin": true},
        {"name": "write", "path": {"prefix": "/api"}, "methods": ["POST", "PUT", "PATCH", "DELETE"],
         "scopes": ["write"], "ignore_case": true},
        {"name": "read", "path": {"prefix": "/api"}, "scopes": ["read"], "ignore_case": true},
    ]);
    doc
}

/// Checks one response against its row for `want`; returns what is wrong.
fn check_row(row: &Row, want: &Want, r: &Response) -> Vec<String> {
    match want {
        Want::Envoy(status) => {
            let mut wrong = Vec::new();
            if r.status != *status {
                wrong.push(format!("status {} (want {status}, from Envoy)", r.status));
            }
            if r.header("www-authenticate").is_some() {
                wrong.push("the filter answered; Envoy should have, before it".into());
            }
            wrong
        }
        Want::Filter if r.status == 200 && row.case.request.method.eq_ignore_ascii_case("HEAD") => {
            // No body to read: the status says the upstream answered.
            if row.case.status == 200 {
                Vec::new()
            } else {
                vec![format!("status 200 (want {})", row.case.status)]
            }
        }
        Want::Filter => {
            let mut wrong = check(&row.case, r);
            if let (200, Some(spoof)) = (r.status, row.spoof) {
                let seen = r.json();
                for (name, values) in seen["headers"].as_object().into_iter().flatten() {
                    if values.to_string().contains(spoof) {
                        wrong.push(format!("the upstream received {name}: {values}"));
                    }
                }
            }
            wrong
        }
    }
}

/// The request semantics of `docs/configuration.md`, row by row, each row
/// over HTTP/1.1 and over HTTP/2 (h2c), through Envoy with Istio's default
/// connection-manager settings ([`render::ISTIO_DEFAULTS`]: no slash merging,
/// escaped slashes kept, header names with underscores allowed). Those are
/// the weakest settings the document must hold under, and they let every
/// spelling below reach the filter instead of being merged, redirected or
/// refused by Envoy first; what the real frameworks make of the same
/// spellings is `tests/differential.rs`.
#[test]
fn request_semantics_follow_the_specification_over_http1_and_http2() {
    use tollgate_e2e::{envoy::demo_yaml, h2, render};
    let mut options = Options::with_document(&semantics_document());
    for (from, to) in render::istio_default_edits(&demo_yaml()).unwrap_or_else(|e| panic!("{e}")) {
        options = options.edit_yaml(&from, &to, 1);
    }
    let envoy = Envoy::start(&options);

    let good = token_with_scope("alice", "read write");
    let read_only = token_with_scope("alice", "read");
    let admin = token_with_scope("root", "read tollgate:admin");
    let api = || Request::get("/api/items");
    let ok = |name, request| case(name, request, 200, None, None);
    let no_token = |name, request| case(name, request, 401, None, NO_TOKEN);
    let bad = |name, request, why| case(name, request, 400, INVALID_REQUEST, Some(why));
    let forbidden = |name, request, why| case(name, request, 403, INSUFFICIENT_SCOPE, Some(why));
    let pair = |r: Request, t: &str| r.header("token-code", t).secret(t);
    const NO_SCOPE: &str = "required scope missing";
    const NO_ADMIN: &str = "admin scope required";
    const EMPTY_SEGMENT: &str = "path contains an empty segment";
    const ENCODED_SEPARATOR: &str = "path contains an encoded slash or backslash";
    const PARAMETER: &str = "path contains a ; parameter";
    const CONTROL: &str = "path contains a control character or fragment";
    const BAD_ENCODING: &str = "path has malformed percent-encoding";
    const DOUBLE_ENCODING: &str = "path contains an encoded percent sign";
    const NOT_UTF8: &str = "path is not valid UTF-8";
    const OVERRIDE: &str = "method override not allowed";
    const SPELLING: &str = "credentials header in an ambiguous spelling";
    const REPEATED: &str = "user header repeated";
    const MALFORMED: &str = "malformed Authorization header";
    const SCHEME: &str = "unsupported Authorization scheme";

    #[rustfmt::skip]
    let rows = vec![
        // -- method case: rules compare methods case-insensitively. Envoy's
        //    HTTP/1.1 codec refuses a method that is not upper case; HTTP/2
        //    passes `:method: post` through, and frameworks upper-case it.
        row(ok("POST with write scope", Request::post("/api/items").bearer(&good))),
        row(forbidden("post is a write", Request::new("post", "/api/items").bearer(&read_only), NO_SCOPE).scope("write")).h1_envoy(400),
        row(forbidden("pOsT is a write", Request::new("pOsT", "/api/items").bearer(&read_only), NO_SCOPE).scope("write")).h1_envoy(400),
        row(forbidden("delete is a write", Request::new("delete", "/api/items/1").bearer(&read_only), NO_SCOPE).scope("write")).h1_envoy(400),
        row(forbidden("Patch is a write", Request::new("Patch", "/api/items/1").bearer(&read_only), NO_SCOPE).scope("write")).h1_envoy(400),
        row(ok("post with write scope", Request::new("post", "/api/items").bearer(&good))).h1_envoy(400),
        row(ok("HEAD is covered by a GET rule", Request::new("HEAD", "/healthz"))),
        row(ok("head is covered by a GET rule", Request::new("head", "/healthz"))).h1_envoy(400),
        row(no_token("POST is not covered by a GET rule", Request::post("/healthz"))),
        // -- method override headers: 400 in any spelling
        row(bad("X-HTTP-Method-Override", api().bearer(&read_only).header("X-HTTP-Method-Override", "DELETE"), OVERRIDE)),
        row(bad("X-HTTP-Method", api().bearer(&read_only).header("X-HTTP-Method", "DELETE"), OVERRIDE)),
        row(bad("x-method-override", api().bearer(&read_only).header("x-method-override", "PUT"), OVERRIDE)),
        row(bad("X_HTTP_METHOD_OVERRIDE", api().bearer(&read_only).header("X_HTTP_METHOD_OVERRIDE", "DELETE"), OVERRIDE)),
        row(bad("method override on an anonymous route", Request::get("/public/x").header("X-HTTP-Method-Override", "DELETE"), OVERRIDE)),

        // -- identity headers: removed in every spelling an upstream folds
        row(ok("x_tollgate_sub is removed", api().bearer(&good).header("x_tollgate_sub", "spoof-1"))).spoof("spoof-1"),
        row(ok("X_TOLLGATE_SUB is removed", api().bearer(&good).header("X_TOLLGATE_SUB", "spoof-2"))).spoof("spoof-2"),
        row(ok("X-TOLLGATE-SUB is removed", api().bearer(&good).header("X-TOLLGATE-SUB", "spoof-3"))).spoof("spoof-3"),
        row(ok("x-tollgate_sub is removed", api().bearer(&good).header("x-tollgate_sub", "spoof-4"))).spoof("spoof-4"),
        row(ok("x_tollgate_scope is removed", api().bearer(&good).header("x_tollgate_scope", "tollgate:admin spoof-5"))).spoof("spoof-5"),
        row(ok("x_tollgate_sid is removed", api().bearer(&good).header("x_tollgate_sid", "spoof-6"))).spoof("spoof-6"),
        row(ok("x_tollgate_ver is removed", api().bearer(&good).header("x_tollgate_ver", "spoof-7"))).spoof("spoof-7"),
        row(ok("x_tollgate_sub is removed on an anonymous route", Request::get("/public/x").header("x_tollgate_sub", "spoof-8"))).spoof("spoof-8"),

        // -- the header pair: the user header twice, or either header in a `_` spelling
        row(ok("header pair", pair(api(), &good).header("token-user", "alice"))),
        row(bad("user header twice", pair(api(), &good).header("token-user", "alice").header("token-user", "bob"), REPEATED)),
        row(bad("user header twice, the other value first", pair(api(), &good).header("token-user", "bob").header("token-user", "alice"), REPEATED)),
        row(bad("user header twice, same value", pair(api(), &good).header("token-user", "alice").header("Token-User", "alice"), REPEATED)),
        row(bad("user header spelled token_user", pair(api(), &good).header("token_user", "alice"), SPELLING)),
        row(bad("user header spelled token_user beside token-user", pair(api(), &good).header("token-user", "alice").header("token_user", "bob"), SPELLING)),
        row(bad("token header spelled token_code", api().header("token_code", &good).header("token-user", "alice").secret(&good), SPELLING)),

        // -- path spellings upstreams read differently: 400 (strict_paths)
        row(bad("empty segment //", Request::get("//api/items").bearer(&good), EMPTY_SEGMENT)),
        row(bad("empty segment inside", Request::get("/admin//users").bearer(&admin), EMPTY_SEGMENT)),
        row(bad("empty segment on an anonymous route", Request::get("/public//x"), EMPTY_SEGMENT)),
        row(bad("encoded slash %2F", Request::get("/admin%2Fusers").bearer(&good), ENCODED_SEPARATOR)),
        row(bad("encoded slash %2f", Request::get("/api%2fitems").bearer(&good), ENCODED_SEPARATOR)),
        row(bad("encoded slash after a dot segment", Request::get("/public/..%2Fadmin/users"), ENCODED_SEPARATOR)),
        row(bad("encoded backslash %5C", Request::get("/admin%5Cusers").bearer(&good), ENCODED_SEPARATOR)),
        row(bad("encoded dot segment %2e%2e", Request::get("/public/%2e%2e%2fadmin"), ENCODED_SEPARATOR)),
        // Dot segments, plain or encoded, never reach the filter here:
        // Envoy's normalize_path (on in Istio too) resolves them, and the
        // upstream receives the resolved path the rules matched.
        row(no_token("encoded dot segment: resolved by Envoy, the admin rule", Request::get("/public/%2e%2e/admin/users"))),
        row(no_token("half-encoded dot segment: resolved by Envoy", Request::get("/public/.%2E/admin/users"))),
        row(ok("encoded single dot: resolved by Envoy", Request::get("/admin/%2e/users").bearer(&admin))),
        row(bad("; parameter", Request::get("/admin;x/users").bearer(&good), PARAMETER)),
        row(bad("; parameter at the end", Request::get("/api/items;x").bearer(&good), PARAMETER)),
        row(bad("encoded ; parameter", Request::get("/api/items%3Bx").bearer(&good), PARAMETER)),
        row(case("encoded NUL: Envoy refuses it first", Request::get("/api/items%00").bearer(&good), 400, None, None)).envoy(400),
        row(bad("encoded tab", Request::get("/api/items%09").bearer(&good), CONTROL)),
        row(bad("encoded line feed", Request::get("/api/items%0a").bearer(&good), CONTROL)),
        row(bad("malformed percent-encoding", Request::get("/api/items%zz").bearer(&good), BAD_ENCODING)),
        row(bad("truncated percent-encoding", Request::get("/api/items%2").bearer(&good), BAD_ENCODING)),
        row(bad("double encoding %252F", Request::get("/admin%252Fusers").bearer(&good), DOUBLE_ENCODING)),
        row(bad("decoded path not UTF-8", Request::get("/api/items%ff").bearer(&good), NOT_UTF8)),
        row(ok("the query string is not the path", Request::get("/api/items?next=//a/../b;c").bearer(&good))),

        // -- segment-aware prefixes
        row(forbidden("/admin is the admin rule", Request::get("/admin").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(forbidden("/admin/ is the admin rule", Request::get("/admin/").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(ok("/administrator is not the admin rule", Request::get("/administrator").bearer(&good))),
        row(no_token("/administrator needs a token (fallback)", Request::get("/administrator"))),
        row(ok("/apix is not the write rule", Request::post("/apix").bearer(&read_only))),
        row(no_token("/publication is not the anonymous rule", Request::get("/publication"))),

        // -- ignore_case, on the percent-decoded path
        row(forbidden("/ADMIN/users is the admin rule", Request::get("/ADMIN/users").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(forbidden("/Admin is the admin rule", Request::get("/Admin").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(forbidden("/%41dmin/users is the admin rule", Request::get("/%41dmin/users").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(forbidden("/%61dmin/users is the admin rule", Request::get("/%61dmin/users").bearer(&good), NO_ADMIN).scope(ADMIN_SCOPE)),
        row(ok("/ADMIN/users with admin scope", Request::get("/ADMIN/users").bearer(&admin))),
        row(forbidden("POST /API/items is a write", Request::post("/API/items").bearer(&read_only), NO_SCOPE).scope("write")),
        row(no_token("/PUBLIC/x: the anonymous rule is case-sensitive", Request::get("/PUBLIC/x"))),

        // -- Authorization: exactly `Bearer <SP> token` (scheme in any case), else 400
        row(ok("bearer scheme lower-case", api().scheme("bearer", &good))),
        row(bad("tab after Bearer", api().header("Authorization", &format!("Bearer\t{good}")).secret(&good), MALFORMED)),
        row(bad("two spaces after Bearer", api().header("Authorization", &format!("Bearer  {good}")).secret(&good), MALFORMED)),
        row(bad("Bearer twice", api().header("Authorization", &format!("Bearer Bearer {good}")).secret(&good), MALFORMED)),
        row(bad("Bearer without a token", api().header("Authorization", "Bearer"), MALFORMED)),
        row(bad("junk after the token", api().header("Authorization", &format!("Bearer {good} x")).secret(&good), MALFORMED)),
        row(bad("tab after Bearer on an anonymous route", Request::get("/public/x").header("Authorization", &format!("Bearer\t{good}")).secret(&good), MALFORMED)),
        row(bad("Basic is not a pass-through scheme by default", api().bearer(&good).header("X-Other", "1").header("Authorization", "Basic cm9vdDpwdw"), SCHEME)),
        row(bad("Basic on an anonymous route", Request::get("/public/x").header("Authorization", "Basic cm9vdDpwdw"), SCHEME)),
        row(bad("unknown scheme", api().header("Authorization", &format!("Token {good}")).secret(&good), SCHEME)),
    ];

    let mut failures = Vec::new();
    let mut h2c = h2::Client::start();
    for r in &rows {
        for (protocol, want) in [("HTTP/1.1", &r.h1), ("HTTP/2", &r.h2)] {
            let result = match protocol {
                "HTTP/1.1" => tollgate_e2e::http::send(envoy.listener, &r.case.request),
                _ => h2c.send(envoy.listener, &r.case.request),
            };
            let wrong = match &result {
                Ok(response) => check_row(r, want, response),
                Err(e) => vec![format!("no response: {e}")],
            };
            if !wrong.is_empty() {
                failures.push(format!(
                    "✗ {} over {protocol}\n  request: {}\n  {}\n  response: {}",
                    r.case.name,
                    r.case.request,
                    wrong.join("\n  "),
                    result.map_or_else(|e| e.to_string(), |r| r.to_string())
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n\n{}",
        failures.len(),
        2 * rows.len(),
        failures.join("\n\n")
    );
}
