//! The authenticator as a specification: each case is a request, the
//! expected status, and the expected reason. Runs natively and on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use tollgate::authenticator::{Peer, decide, Decision, Denial, DenyReason, HeaderOp, InvalidRequest, Knowledge, Request};
use tollgate::request::{HeaderError, PathError, RequestError, RequestView};
use tollgate::revocation::{LiveVersions, RevocationSet};
use tollgate::config::Config;
use tollgate::extract::ExtractError;
use tollgate::response;
use tollgate::token::{mint, Algorithm, Claim, Claims, Key, Segment, TokenError};
use tollgate::reason::Reason;

const NOW: u64 = 1_800_000_000;
const SECRET_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

fn config_with(extra: &str) -> Config {
    config_sources(r#"{"cookie": "tg_access", "header_pair": {"token": "Token-Code", "user": "Token-User"}}"#, extra)
}

fn config_sources(sources: &str, extra: &str) -> Config {
    let doc = format!(
        r#"{{
        "issuer": "https://auth.test",
        "audiences": ["api"],
        "keys": [{{"kid": "k1", "alg": "HS256", "secret": "{SECRET_B64}"}}],
        "clock_skew_seconds": 0,
        "realm": "test",
        "sources": {sources},
        "rules": [
          {{"name": "health", "path": {{"exact": "/healthz"}}, "methods": ["GET"], "anonymous": true}},
          {{"name": "admin", "path": {{"prefix": "/admin/"}}, "admin": true}},
          {{"name": "write", "path": {{"prefix": "/items"}}, "methods": ["POST"], "scopes": ["write"]}},
          {{"name": "lax-hosts", "path": {{"prefix": "/lax/"}}, "enforce_hosts": false}},
          {{"name": "ops", "path": {{"prefix": "/ops"}}, "ignore_case": true, "admin": true}}
        ]
        {extra}
    }}"#
    );
    Config::parse(doc.as_bytes(), &|_| None).expect("test config is valid")
}

fn key() -> Key {
    let secret = tollgate::token::b64::decode(SECRET_B64.as_bytes()).unwrap();
    Key::new(Some("k1".into()), Algorithm::HS256, &secret).unwrap()
}

fn claims() -> Claims {
    Claims {
        iss: "https://auth.test".into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        exp: Some(NOW + 600),
        nbf: None,
        iat: Some(NOW - 10),
        jti: Some("j1".into()),
        ver: 3,
        sid: Some("s1".into()),
        scope: Some("read write".into()),
        hosts: None,
    }
}

fn token(edit: impl FnOnce(&mut Claims)) -> String {
    let mut c = claims();
    edit(&mut c);
    mint(&key(), &c)
}

struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    peer: Option<&'static str>,
}

fn get(path: &str) -> Req {
    Req { method: "GET", path: path.into(), headers: vec![], peer: Some("127.0.0.1") }
}

impl Req {
    fn method(mut self, m: &'static str) -> Req {
        self.method = m;
        self
    }
    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn peer(mut self, peer: Option<&'static str>) -> Req {
        self.peer = peer;
        self
    }
}

/// Builds the request's canonical view, as the hosts do, then decides.
fn run(config: &Config, r: &Req) -> Decision {
    let view = match RequestView::from_parts(config, r.method, &r.path, &r.headers) {
        Ok(view) => view,
        Err(e) => return Decision::Deny(Denial { reason: e.into() }),
    };
    let request = Request { view: &view, peer: Peer::Known(r.peer.map(|p| p.parse().unwrap())) };
    let (revocations, live) = (RevocationSet::new(), LiveVersions::default());
    decide(config, &request, &Knowledge { now_ms: NOW * 1000, revocations: &revocations, live: &live, live_waited_from: None, cache: None })
}

/// `Ok(subject)` for an allowed request, `Err(reason)` for a denied one.
fn outcome(d: &Decision) -> Result<Option<String>, DenyReason> {
    match d {
        Decision::Allow(a) => Ok(a.subject.clone()),
        Decision::Deny(d) => Err(d.reason.clone()),
        other => panic!("no callout is configured, yet: {other:?}"),
    }
}

fn cred(e: ExtractError) -> DenyReason {
    DenyReason::InvalidRequest(InvalidRequest::Credential(e))
}

fn path(e: PathError) -> DenyReason {
    DenyReason::InvalidRequest(InvalidRequest::Request(RequestError::Path(e)))
}

fn header(e: HeaderError) -> DenyReason {
    DenyReason::InvalidRequest(InvalidRequest::Request(RequestError::Header(e)))
}

#[test]
fn decisions_table() {
    let config = config_with("");
    let good = token(|_| {});
    let alice = Ok(Some("alice".to_string()));
    use DenyReason::*;
    type Outcome = Result<Option<String>, DenyReason>;
    let cases: Vec<(&str, Req, Outcome)> = vec![
        ("valid bearer", get("/x").bearer(&good), alice.clone()),
        ("scheme is case-insensitive", get("/x").header("authorization", &format!("bEaReR {good}")), alice.clone()),
        ("cookie source", get("/x").header("cookie", &format!("a=b; tg_access={good}; c=d")), alice.clone()),
        ("header pair with matching user", get("/x").header("token-code", &good).header("token-user", "alice"), alice.clone()),
        ("header pair with another user", get("/x").header("token-code", &good).header("token-user", "bob"), Err(UserMismatch)),
        ("header pair without user", get("/x").header("token-code", &good), Err(UserMismatch)),
        ("no credentials", get("/x"), Err(NoToken)),
        ("a scheme not configured is refused, not ignored", get("/x").header("authorization", "Basic YTpi"), Err(cred(ExtractError::UnsupportedScheme))),
        ("... even beside a valid cookie", get("/x").header("authorization", "Basic YTpi").header("cookie", &format!("tg_access={good}")), Err(cred(ExtractError::UnsupportedScheme))),
        ("tab after Bearer", get("/x").header("authorization", &format!("Bearer\t{good}")), Err(cred(ExtractError::MalformedAuthorization))),
        ("two spaces after Bearer", get("/x").header("authorization", &format!("Bearer  {good}")), Err(cred(ExtractError::MalformedAuthorization))),
        ("Bearer written twice", get("/x").header("authorization", &format!("Bearer Bearer {good}")), Err(cred(ExtractError::MalformedAuthorization))),
        ("empty Authorization", get("/x").header("authorization", ""), Err(cred(ExtractError::MalformedAuthorization))),
        ("bearer without token", get("/x").header("authorization", "Bearer"), Err(cred(ExtractError::MalformedAuthorization))),
        ("bearer with bad characters", get("/x").header("authorization", "Bearer a b"), Err(cred(ExtractError::MalformedAuthorization))),
        ("same token twice is fine", get("/x").bearer(&good).header("cookie", &format!("tg_access={good}")), alice.clone()),
        ("two different tokens", get("/x").bearer(&good).header("cookie", &format!("tg_access={}", token(|c| c.jti = None))), Err(cred(ExtractError::MultipleTokens))),
        ("two bearer headers", get("/x").bearer(&good).bearer("abc"), Err(cred(ExtractError::MultipleTokens))),
        ("two bearer credentials joined by Envoy", get("/x").header("authorization", &format!("Bearer {good},Bearer abc")), Err(cred(ExtractError::MultipleTokens))),
        ("the same credentials joined", get("/x").header("authorization", &format!("Bearer {good}, Bearer {good}")), alice.clone()),
        ("token in query while off", get(&format!("/x?access_token={good}")), Err(cred(ExtractError::QueryNotAllowed))),
        ("empty cookie value", get("/x").header("cookie", "tg_access="), Err(cred(ExtractError::EmptyToken))),
        ("expired", get("/x").bearer(&token(|c| c.exp = Some(NOW))), Err(InvalidToken(TokenError::Expired))),
        ("header of impossible base64 length", get("/x").bearer("a.def.ghi"), Err(InvalidToken(TokenError::BadEncoding(Segment::Header)))),
        ("header not JSON", get("/x").bearer("abc.def.ghi"), Err(InvalidToken(TokenError::NotJsonObject(Segment::Header)))),
        ("wrong audience", get("/x").bearer(&token(|c| c.aud = vec!["other".into()])), Err(InvalidToken(TokenError::AudienceMismatch))),
        ("control character in sub", get("/x").bearer(&token(|c| c.sub = "al\r\nice".into())), Err(InvalidToken(TokenError::ControlCharacter(Claim::Sub)))),
        ("anonymous route, no token", get("/healthz"), Ok(None)),
        ("anonymous route, valid token", get("/healthz").bearer(&good), alice.clone()),
        ("anonymous route, bad token still refused", get("/healthz").bearer(&token(|c| c.exp = Some(1))), Err(InvalidToken(TokenError::Expired))),
        ("anonymous rule is per method", get("/healthz").method("POST"), Err(NoToken)),
        ("admin route without admin scope", get("/admin/users").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("admin route with admin scope", get("/admin/users").bearer(&token(|c| c.scope = Some("read tollgate:admin".into()))), alice.clone()),
        ("scope present", get("/items").method("POST").bearer(&good), alice.clone()),
        ("scope missing", get("/items").method("POST").bearer(&token(|c| c.scope = Some("read".into()))), Err(MissingScope("write".into()))),
        ("no scope claim at all", get("/items").method("POST").bearer(&token(|c| c.scope = None)), Err(MissingScope("write".into()))),
        ("hosts: exact address", get("/x").bearer(&token(|c| c.hosts = Some(vec!["127.0.0.1".into()]))), alice.clone()),
        ("hosts: CIDR", get("/x").bearer(&token(|c| c.hosts = Some(vec!["10.0.0.0/8".into(), "127.0.0.0/8".into()]))), alice.clone()),
        ("hosts: star", get("/x").bearer(&token(|c| c.hosts = Some(vec!["*".into()]))).peer(None), alice.clone()),
        ("hosts: other address", get("/x").bearer(&token(|c| c.hosts = Some(vec!["10.1.2.3".into()]))), Err(HostNotAllowed)),
        ("hosts: unparseable entry matches nothing", get("/x").bearer(&token(|c| c.hosts = Some(vec!["localhost".into()]))), Err(HostNotAllowed)),
        ("hosts: empty list allows nobody", get("/x").bearer(&token(|c| c.hosts = Some(vec![]))), Err(HostNotAllowed)),
        ("hosts: IPv4-mapped peer", get("/x").bearer(&token(|c| c.hosts = Some(vec!["127.0.0.1".into()]))).peer(Some("::ffff:127.0.0.1")), alice.clone()),
        ("hosts: unknown client address", get("/x").bearer(&token(|c| c.hosts = Some(vec!["127.0.0.1".into()]))).peer(None), Err(ClientAddressUnknown)),
        ("hosts: rule does not enforce", get("/lax/x").bearer(&token(|c| c.hosts = Some(vec!["10.1.2.3".into()]))), alice.clone()),
        // Request semantics: the rule of the request the upstream acts on.
        ("method case: post is POST", get("/items").method("post").bearer(&token(|c| c.scope = Some("read".into()))), Err(MissingScope("write".into()))),
        ("method case: pOsT is POST", get("/items").method("pOsT").bearer(&token(|c| c.scope = Some("read".into()))), Err(MissingScope("write".into()))),
        ("HEAD is served by the GET rule", get("/healthz").method("HEAD"), Ok(None)),
        ("head in lower case too", get("/healthz").method("head"), Ok(None)),
        ("a prefix covers its own path", get("/admin").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("a prefix covers its path with a slash", get("/admin/").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("a prefix is whole segments", get("/administrator").bearer(&good), alice.clone()),
        ("ignore_case: upper case", get("/OPS/reboot").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("ignore_case: mixed case", get("/Ops").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("case-sensitive rule, other case", get("/Admin/users").bearer(&good), alice.clone()),
        ("percent-encoded letters are decoded", get("/%61dmin/users").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("exact rule with a trailing slash", get("/healthz/"), Ok(None)),
        ("path parameter", get("/admin;x/users").bearer(&good), Err(path(PathError::Parameter))),
        ("empty segment", get("//admin/users").bearer(&good), Err(path(PathError::EmptySegment))),
        ("encoded slash", get("/admin%2Fusers").bearer(&good), Err(path(PathError::EncodedSeparator))),
        ("encoded slash after dots, anonymous", get("/healthz/..%2Fadmin/users"), Err(path(PathError::EncodedSeparator))),
        ("dot segments", get("/healthz/../admin/users"), Err(path(PathError::DotSegment))),
        ("encoded dot segments", get("/healthz/%2e%2e/admin/users"), Err(path(PathError::DotSegment))),
        ("backslash", get("/admin\\users").bearer(&good), Err(path(PathError::Backslash))),
        ("control byte", get("/admin%00").bearer(&good), Err(path(PathError::ControlByte))),
        ("the query string is not the path", get("/x?next=//a/../b;c").bearer(&good), alice.clone()),
        ("method override header", get("/items").method("GET").header("x-http-method-override", "POST").bearer(&good), Err(header(HeaderError::MethodOverride))),
        ("method override, underscore spelling", get("/items").header("x_http_method", "DELETE").bearer(&good), Err(header(HeaderError::MethodOverride))),
        ("method override in the query", get("/items?_method=DELETE").method("POST").bearer(&good), Err(header(HeaderError::MethodOverride))),
        ("method override in the query, encoded", get("/items?%5FMETHOD=DELETE").method("POST").bearer(&good), Err(header(HeaderError::MethodOverride))),
        ("a format suffix is the same resource", get("/admin.json").bearer(&good), Err(AdminRequired("tollgate:admin".into()))),
        ("user header spelled with _", get("/x").header("token-code", &good).header("token_user", "alice"), Err(header(HeaderError::Spelling))),
        ("token header spelled with _", get("/healthz").header("token_code", &good), Err(header(HeaderError::Spelling))),
        ("user header twice", get("/x").header("token-code", &good).header("token-user", "alice").header("token-user", "root"), Err(header(HeaderError::Repeated))),
    ];
    for (name, req, want) in cases {
        assert_eq!(outcome(&run(&config, &req)), want, "case: {name}");
    }
}

#[test]
fn identity_headers_replace_spoofed_ones() {
    let config = config_with("");
    let req = get("/x")
        .bearer(&token(|_| {}))
        .header("x-tollgate-sub", "root")
        .header("x-tollgate-sub", "root2")
        .header("x-tollgate-ver", "999");
    let Decision::Allow(allow) = run(&config, &req) else { panic!("allowed") };
    // Sent twice: removed, then set (a set replaces only the first value).
    // Sent once under the name the filter sets: the set replaces it, one
    // host call (tests/e2e filter.rs checks what the upstream receives).
    assert_eq!(
        allow.header_ops,
        vec![
            HeaderOp::Remove("x-tollgate-sub".into()),
            HeaderOp::Set("x-tollgate-sub".into(), "alice".into()),
            HeaderOp::Set("x-tollgate-scope".into(), "read write".into()),
            HeaderOp::Set("x-tollgate-sid".into(), "s1".into()),
            HeaderOp::Set("x-tollgate-ver".into(), "3".into()),
        ]
    );
    // Sent once, but the token has no value for it: nothing replaces it.
    let req = get("/x").bearer(&token(|c| c.sid = None)).header("x-tollgate-sid", "stolen");
    let Decision::Allow(allow) = run(&config, &req) else { panic!("allowed") };
    assert_eq!(allow.header_ops[0], HeaderOp::Remove("x-tollgate-sid".into()), "{:?}", allow.header_ops);
    assert!(!allow.header_ops.iter().any(|o| matches!(o, HeaderOp::Set(n, _) if n == "x-tollgate-sid")));
    // Every spelling an upstream folds into the same name is removed.
    let req = get("/x").bearer(&token(|_| {})).header("x_tollgate_sub", "root").header("x-tollgate_scope", "admin");
    let Decision::Allow(allow) = run(&config, &req) else { panic!("allowed") };
    assert_eq!(allow.header_ops[..2], [HeaderOp::Remove("x_tollgate_sub".into()), HeaderOp::Remove("x-tollgate_scope".into())]);
    // The header pair's user header is an identity an upstream reads: it
    // goes upstream only beside the pair's own, checked token.
    let req = get("/x").bearer(&token(|_| {})).header("token-user", "root");
    let Decision::Allow(allow) = run(&config, &req) else { panic!("allowed") };
    assert_eq!(allow.header_ops[0], HeaderOp::Remove("token-user".into()), "{:?}", allow.header_ops);
    let Decision::Allow(anon) = run(&config, &get("/healthz").header("token-user", "admin")) else { panic!("allowed") };
    assert_eq!(anon.header_ops, vec![HeaderOp::Remove("token-user".into())]);
    let pair = get("/x").header("token-code", &token(|_| {})).header("token-user", "alice");
    let Decision::Allow(kept) = run(&config, &pair) else { panic!("allowed") };
    assert!(!kept.header_ops.contains(&HeaderOp::Remove("token-user".into())), "checked: kept");
    // Anonymous requests lose spoofed identity too.
    let Decision::Allow(anon) = run(&config, &get("/healthz").header("x-tollgate-sid", "s9")) else {
        panic!("allowed")
    };
    assert_eq!(anon.header_ops, vec![HeaderOp::Remove("x-tollgate-sid".into())]);
}

#[test]
fn forward_token_false_strips_the_token_from_its_source() {
    let config = config_with(r#", "forward_token": false"#);
    let good = token(|_| {});
    // (request, the stripping operation expected)
    let cases = vec![
        (get("/x").bearer(&good), HeaderOp::Remove("authorization".into())),
        (get("/x").header("token-code", &good).header("token-user", "alice"), HeaderOp::Remove("token-code".into())),
        (get("/x").header("cookie", &format!("a=1; tg_access={good}; b=2")), HeaderOp::Set("cookie".into(), "a=1; b=2".into())),
        (get("/x").header("cookie", &format!("tg_access={good}")), HeaderOp::Remove("cookie".into())),
    ];
    for (req, want) in cases {
        let Decision::Allow(allow) = run(&config, &req) else { panic!("allowed") };
        assert!(allow.header_ops.contains(&want), "{want:?} in {:?}", allow.header_ops);
    }
}

#[test]
fn query_tokens_when_enabled() {
    let config = config_with(r#", "forward_token": false"#);
    let mut doc_config = config.clone();
    doc_config.sources.query_enabled = true;
    let good = token(|_| {});
    let Decision::Allow(allow) = run(&doc_config, &get(&format!("/x?a=1&access_token={good}&b=2"))) else {
        panic!("allowed")
    };
    assert!(allow.header_ops.contains(&HeaderOp::Set(":path".into(), "/x?a=1&b=2".into())));
}

#[test]
fn x_forwarded_for_with_trusted_hops() {
    // (trusted_hops, x-forwarded-for, allowed?)
    let cases = [
        (0, "10.9.9.9, 127.0.0.1", true),
        (0, "127.0.0.1, 10.9.9.9", false),
        (1, "127.0.0.1, 10.9.9.9", true),
        (1, "10.9.9.9", false),
        (2, "127.0.0.1, 10.0.0.1, 10.0.0.2", true),
    ];
    for (hops, xff, allowed) in cases {
        let config = config_with(&format!(
            r#", "client_address": {{"from": "x_forwarded_for", "trusted_hops": {hops}}}"#
        ));
        let req = get("/x")
            .bearer(&token(|c| c.hosts = Some(vec!["127.0.0.1".into()])))
            .header("x-forwarded-for", xff)
            .peer(Some("10.200.0.1"));
        let d = run(&config, &req);
        assert_eq!(matches!(d, Decision::Allow(_)), allowed, "hops {hops}, xff {xff:?}: {d:?}");
    }
}

#[test]
fn responses_table() {
    // (reason, status, WWW-Authenticate, body)
    let cases = [
        (DenyReason::NoToken, 401, r#"Bearer realm="test""#, r#"{"error_description":"access token required"}"#),
        (
            DenyReason::InvalidToken(TokenError::Expired),
            401,
            r#"Bearer realm="test", error="invalid_token", error_description="token expired""#,
            r#"{"error":"invalid_token","error_description":"token expired"}"#,
        ),
        (
            cred(ExtractError::MultipleTokens),
            400,
            r#"Bearer realm="test", error="invalid_request", error_description="more than one access token in request""#,
            r#"{"error":"invalid_request","error_description":"more than one access token in request"}"#,
        ),
        (
            DenyReason::MissingScope("write".into()),
            403,
            r#"Bearer realm="test", error="insufficient_scope", error_description="required scope missing", scope="write""#,
            r#"{"error":"insufficient_scope","error_description":"required scope missing"}"#,
        ),
        (
            DenyReason::HostNotAllowed,
            403,
            r#"Bearer realm="test", error="insufficient_scope", error_description="client address not allowed for this token""#,
            r#"{"error":"insufficient_scope","error_description":"client address not allowed for this token"}"#,
        ),
    ];
    for (reason, status, challenge, body) in cases {
        let r = response::render("test", &reason);
        assert_eq!(r.status, status, "{reason:?}");
        assert_eq!(r.headers[0], ("www-authenticate", challenge.to_string()), "{reason:?}");
        assert_eq!(r.body, body, "{reason:?}");
    }
}

#[test]
fn every_token_error_has_a_registered_metric_and_a_quotable_description() {
    use TokenError::*;
    let all = [
        TooLarge, Malformed, BadEncoding(Segment::Header), BadEncoding(Segment::Payload), BadEncoding(Segment::Signature),
        NotJsonObject(Segment::Header), NotJsonObject(Segment::Payload), DuplicateMember(Segment::Header), DuplicateMember(Segment::Payload),
        AlgorithmMissing, AlgorithmNone, AlgorithmNotAllowed, AlgorithmMismatch, KeyIdMissing, UnknownKeyId,
        UnsupportedCritical, TypeNotAllowed, SignatureInvalid, ClaimType(Claim::Exp), ControlCharacter(Claim::Sub),
        Expired, ExpirationMissing, NotYetValid, IssuedInFuture, IssuerMismatch, AudienceMismatch,
        SubjectMissing, VersionMissing, Revoked,
    ];
    for e in all {
        assert!(Reason::ALL.contains(&e.reason()), "{e:?} has unregistered reason {:?}", e.reason());
        assert!(!e.description().contains('"') && !e.description().contains('\\'), "{e:?}");
    }
}

#[test]
fn refresh_cookies_carry_the_configured_attributes() {
    let doc = r#"{
        "issuer": "https://auth.test", "audiences": ["api"],
        "keys": [{"kid": "k1", "alg": "HS256", "secret": "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"}],
        "sources": {"cookie": "tg_access"},
        "authority": {"cluster": "authority"},
        "refresh": {"cookie": "tg_refresh", "header": {"request": "x-refresh-token"},
                    "set_cookie": {"same_site": "Strict", "domain": "example.com", "refresh_max_age_seconds": 600}}
    }"#;
    let config = Config::parse(doc.as_bytes(), &|_| None).expect("valid");
    let tokens = tollgate::refresh::Tokens { access_token: "A".into(), refresh_token: "R".into(), expires_in: 900 };
    let set = |(n, v): &(String, String)| (n.clone(), v.clone());
    assert_eq!(
        response::refreshed_headers(&config, &tokens, false).iter().map(set).collect::<Vec<_>>(),
        vec![
            ("set-cookie".into(), "tg_access=A; Path=/; Max-Age=600; Domain=example.com; Secure; HttpOnly; SameSite=Strict".into()),
            ("set-cookie".into(), "tg_refresh=R; Path=/; Max-Age=600; Domain=example.com; Secure; HttpOnly; SameSite=Strict".into()),
            // A response that carries a new token is never cached.
            ("cache-control".into(), "no-store".into()),
        ]
    );
    assert_eq!(
        response::refreshed_headers(&config, &tokens, true),
        vec![
            ("x-tollgate-access-token".to_string(), "A".to_string()),
            ("x-tollgate-refresh-token".to_string(), "R".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
        ]
    );
    assert_eq!(
        response::cleared_cookies(&config),
        vec![
            ("set-cookie".to_string(), "tg_access=; Path=/; Max-Age=0; Domain=example.com; Secure; HttpOnly; SameSite=Strict".to_string()),
            ("set-cookie".to_string(), "tg_refresh=; Path=/; Max-Age=0; Domain=example.com; Secure; HttpOnly; SameSite=Strict".to_string()),
        ]
    );
}

#[test]
fn header_values_that_are_not_utf8() {
    let config = config_with("");
    let raw = |name: &str, value: &[u8]| {
        let mut h = vec![(":method".to_string(), b"GET".to_vec()), (name.to_string(), value.to_vec())];
        if name != ":path" {
            h.push((":path".to_string(), b"/healthz".to_vec()));
        }
        h
    };
    // (header, value, refused?)
    let cases: [(&str, &[u8], bool); 7] = [
        ("user-agent", b"caf\xe9", false),
        ("x-tollgate-sub", b"r\xffoot", false),
        ("authorization", b"Bearer \xff", true),
        ("cookie", b"tg_access=\xff", true),
        ("token-user", b"al\xe9", true),
        ("x-forwarded-for", b"10.0.0.1\xff", true),
        (":path", b"/\xff", true),
    ];
    for (name, value, refused) in cases {
        let got = RequestView::build(&config, raw(name, value));
        assert_eq!(got.is_err(), refused, "{name}: {got:?}");
    }
    // A spoofed identity header with bad bytes is still seen, so still removed.
    let view = RequestView::build(&config, raw("x-tollgate-sub", b"r\xffoot")).unwrap();
    let req = Request { view: &view, peer: Peer::Known(None) };
    let (revocations, live) = (RevocationSet::new(), LiveVersions::default());
    let Decision::Allow(allow) = decide(&config, &req, &Knowledge { now_ms: NOW * 1000, revocations: &revocations, live: &live, live_waited_from: None, cache: None }) else {
        panic!("anonymous route")
    };
    assert_eq!(allow.header_ops, vec![HeaderOp::Remove("x-tollgate-sub".into())]);
}

#[test]
fn the_peer_is_looked_up_only_for_a_hosts_check() {
    use std::cell::Cell;
    let config = config_with("");
    let asked = Cell::new(0);
    let lookup = || {
        asked.set(asked.get() + 1);
        "127.0.0.1".parse().ok()
    };
    let (revocations, live) = (RevocationSet::new(), LiveVersions::default());
    let k = Knowledge { now_ms: NOW * 1000, revocations: &revocations, live: &live, live_waited_from: None, cache: None };
    // (token, lookups expected)
    let cases = [(token(|_| {}), 0), (token(|c| c.hosts = Some(vec!["*".into()])), 0), (token(|c| c.hosts = Some(vec!["127.0.0.1".into()])), 1)];
    for (t, want) in cases {
        asked.set(0);
        let headers = vec![("authorization".to_string(), format!("Bearer {t}"))];
        let view = RequestView::from_parts(&config, "GET", "/x", &headers).unwrap();
        let req = Request { view: &view, peer: Peer::Lazy(&lookup) };
        assert!(matches!(decide(&config, &req, &k), Decision::Allow(_)));
        assert_eq!(asked.get(), want);
    }
}

#[test]
fn passthrough_schemes_go_upstream_untouched() {
    let config = config_sources(r#"{"cookie": "tg_access", "passthrough_schemes": ["Basic"]}"#, "");
    let good = token(|_| {});
    use DenyReason::*;
    // (case, request, outcome)
    type Outcome = Result<Option<String>, DenyReason>;
    let cases: Vec<(&str, Req, Outcome)> = vec![
        ("Basic alone is no credential", get("/x").header("authorization", "Basic YTpi"), Err(NoToken)),
        ("Basic beside a cookie token", get("/x").header("authorization", "basic YTpi").header("cookie", &format!("tg_access={good}")), Ok(Some("alice".into()))),
        ("Bearer is still read", get("/x").bearer(&good), Ok(Some("alice".into()))),
        ("another scheme is refused", get("/x").header("authorization", "Digest x=1"), Err(cred(ExtractError::UnsupportedScheme))),
    ];
    for (name, req, want) in cases {
        assert_eq!(outcome(&run(&config, &req)), want, "case: {name}");
    }
}

/// The cache of verified tokens changes nothing but the work: every case of
/// the decisions table decides the same cold, warm, and warm again an hour
/// later (when the time checks must refuse what the cache holds).
#[test]
fn the_token_cache_decides_exactly_as_without_it() {
    use tollgate::cache::TokenCache;
    // Revocation configured: a revoked token must be refused from the cache.
    let config = config_with(r#", "authority": {"cluster": "authority"}, "revocation": {"max_staleness_ms": 5000}"#);
    let live = LiveVersions::default();
    let synced = |entries: &[(&str, u64)], at: u64| {
        use tollgate::revocation::{Entry, FeedPage};
        let mut set = RevocationSet::new();
        let entries = entries.iter().map(|(k, v)| Entry { key: k.to_string(), min_ver: *v, expires_at: None }).collect();
        set.apply(FeedPage { snapshot: true, entries, cursor: "c.1".into(), store: None, floor: 0, now: None }, at * 1000);
        set
    };
    let (revocations, revoked, later) = (synced(&[], NOW), synced(&[("sub:alice", 9)], NOW), synced(&[], NOW + 3600));
    let good = token(|_| {});
    let requests = vec![
        get("/x").bearer(&good),
        get("/items").method("POST").bearer(&token(|c| c.scope = Some("read".into()))),
        get("/admin/users").bearer(&good),
        get("/x").bearer(&token(|c| c.hosts = Some(vec!["10.1.2.3".into()]))),
        get("/x").header("token-code", &good).header("token-user", "bob"),
        get("/x").bearer(&token(|c| c.exp = Some(NOW + 60))),
        get("/x").bearer(&token(|c| c.nbf = Some(NOW + 600))),
        get("/x").bearer(&good[..good.len() - 2]),
    ];
    let decide_at = |r: &Req, now: u64, set: &RevocationSet, cache: Option<&TokenCache>| {
        let view = RequestView::from_parts(&config, r.method, &r.path, &r.headers).unwrap();
        let req = Request { view: &view, peer: Peer::Known(r.peer.map(|p| p.parse().unwrap())) };
        outcome(&decide(&config, &req, &Knowledge { now_ms: now * 1000, revocations: set, live: &live, live_waited_from: None, cache }))
    };
    let cache = TokenCache::new(64);
    let rounds = [(NOW, &revocations), (NOW, &revocations), (NOW, &revoked), (NOW + 3600, &later)];
    for (round, (now, set)) in rounds.into_iter().enumerate() {
        for (i, r) in requests.iter().enumerate() {
            cache.take_stats();
            let cached = decide_at(r, now, set, Some(&cache));
            let hit = cache.take_stats().hits == 1;
            assert_eq!(cached, decide_at(r, now, set, None), "{} at {now}", r.path);
            // Warm, at the same time: every token that verified once is
            // served from the cache (and still refused for its scope, its
            // host, its user header, its revocation); the not-yet-valid
            // and the tampered one never were cached.
            if round == 1 || round == 2 {
                assert_eq!(hit, i < 6, "row {i} ({}) in round {round}: {cached:?}", r.path);
            }
            if round == 2 && i < 6 {
                assert_eq!(cached, Err(DenyReason::InvalidToken(TokenError::Revoked)), "row {i}: revoked, from the cache");
            }
        }
    }
}
