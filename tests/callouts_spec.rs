//! The decisions that involve the authority, as a specification: what the
//! filter does with a revocation set (fresh, stale, never synced), live
//! version checks, and refresh. Pure: no Envoy, no network. Runs natively and
//! on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use tollgate::request::RequestView;
use tollgate::authenticator::{Peer, decide, decide_refreshed, refresh_failed, Decision, DenyReason, HeaderOp, Knowledge, RefreshNeed, Request, Unavailable};
use tollgate::config::Config;
use tollgate::revocation::{Entry, FeedPage, LiveVersions, RevocationSet};
use tollgate::token::{mint, Algorithm, Claims, Key, TokenError};

const NOW: u64 = 1_800_000_000;
const NOW_MS: u64 = NOW * 1000;
const SECRET_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

fn config(on_stale: &str) -> Config {
    config_with_rules(on_stale, r#"[{"name": "admin", "path": {"prefix": "/admin/"}, "fresh": true, "max_staleness_ms": 500}]"#)
}

fn config_with_rules(on_stale: &str, rules: &str) -> Config {
    let doc = format!(
        r#"{{
        "issuer": "https://auth.test", "audiences": ["api"],
        "keys": [{{"kid": "k1", "alg": "HS256", "secret": "{SECRET_B64}"}}],
        "clock_skew_seconds": 0,
        "sources": {{"cookie": "tg_access"}},
        "authority": {{"cluster": "authority"}},
        "revocation": {{"sync_interval_ms": 1000, "max_staleness_ms": 3000, "on_stale": "{on_stale}"}},
        "refresh": {{"cookie": "tg_refresh", "header": {{"request": "x-refresh"}}, "refresh_before_seconds": 60}},
        "rules": {rules}
    }}"#
    );
    Config::parse(doc.as_bytes(), &|_| None).expect("valid")
}

fn token(edit: impl FnOnce(&mut Claims)) -> String {
    let secret = tollgate::token::b64::decode(SECRET_B64.as_bytes()).unwrap();
    let key = Key::new(Some("k1".into()), Algorithm::HS256, &secret).unwrap();
    let mut c = Claims {
        iss: "https://auth.test".into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        exp: Some(NOW + 600),
        nbf: None,
        iat: Some(NOW),
        jti: None,
        ver: 5,
        sid: Some("s1".into()),
        scope: Some("read".into()),
        hosts: None,
    };
    edit(&mut c);
    mint(&key, &c)
}

/// A set synced at `synced_ms` holding `entries`.
fn synced(synced_ms: u64, entries: &[(&str, u64)]) -> RevocationSet {
    let mut set = RevocationSet::new();
    let entries = entries.iter().map(|(k, v)| Entry { key: k.to_string(), min_ver: *v, expires_at: None }).collect();
    set.apply(FeedPage { snapshot: true, entries, cursor: "c.1".into(), store: Some("c".into()), floor: 0, now: None }, synced_ms);
    set
}

/// A set synced from a store whose floor (creation) is `floor`.
fn floored(synced_ms: u64, floor: u64) -> RevocationSet {
    let mut set = RevocationSet::new();
    set.apply(FeedPage { snapshot: true, entries: vec![], cursor: "c.1".into(), store: Some("c".into()), floor, now: None }, synced_ms);
    set
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn run(config: &Config, path: &str, h: &[(String, String)], set: &RevocationSet, live: &LiveVersions, now_ms: u64) -> Decision {
    let view = RequestView::from_parts(config, "GET", path, h).expect("a well-formed request");
    let req = Request { view: &view, peer: Peer::Known(None) };
    decide(config, &req, &Knowledge { now_ms, revocations: set, live, live_waited_from: None, cache: None })
}

fn reason(d: &Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny(d) => Some(d.reason.clone()),
        _ => None,
    }
}

#[test]
fn revocation_table() {
    let deny = config("deny");
    let allow = config("allow");
    let live = LiveVersions::default();
    let good = token(|_| {});
    let bearer = headers(&[("authorization", &format!("Bearer {good}"))]);
    let fresh = |e: &[(&str, u64)]| synced(NOW_MS - 1000, e);
    // (case, config, set, expected deny reason or None for allowed)
    let cases: Vec<(&str, &Config, RevocationSet, Option<DenyReason>)> = vec![
        ("never synced, on_stale deny", &deny, RevocationSet::new(), Some(DenyReason::Unavailable(Unavailable::NotYetKnown))),
        // A version never learned is never read as 0, whatever on_stale says.
        ("never synced, on_stale allow", &allow, RevocationSet::new(), Some(DenyReason::Unavailable(Unavailable::NotYetKnown))),
        ("below the store's floor", &deny, floored(NOW_MS - 1000, 6), Some(DenyReason::InvalidToken(TokenError::Revoked))),
        ("at the store's floor", &deny, floored(NOW_MS - 1000, 5), None),
        ("fresh, nothing revoked", &deny, fresh(&[]), None),
        ("subject bumped past ver", &deny, fresh(&[("sub:alice", 6)]), Some(DenyReason::InvalidToken(TokenError::Revoked))),
        ("subject bumped to ver", &deny, fresh(&[("sub:alice", 5)]), None),
        ("session bumped", &deny, fresh(&[("sid:s1", 6)]), Some(DenyReason::InvalidToken(TokenError::Revoked))),
        ("another session bumped", &deny, fresh(&[("sid:s2", 60)]), None),
        ("another subject bumped", &deny, fresh(&[("sub:bob", 60)]), None),
        ("stale by 1 ms, on_stale deny", &deny, synced(NOW_MS - 3001, &[]), Some(DenyReason::Unavailable(Unavailable::Stale))),
        ("stale, on_stale allow, not revoked", &allow, synced(NOW_MS - 60_000, &[]), None),
        ("stale, on_stale allow, still revoked", &allow, synced(NOW_MS - 60_000, &[("sub:alice", 9)]), Some(DenyReason::InvalidToken(TokenError::Revoked))),
    ];
    for (case, config, set, want) in cases {
        assert_eq!(reason(&run(config, "/x", &bearer, &set, &live, NOW_MS)), want, "{case}");
    }
}

#[test]
fn live_checks_for_fresh_rules() {
    let c = config("deny");
    let set = synced(NOW_MS, &[]);
    let bearer = headers(&[("authorization", &format!("Bearer {}", token(|_| {})))]);
    let keys = vec!["sub:alice".to_string(), "sid:s1".to_string()];
    let mut live = LiveVersions::default();
    assert_eq!(run(&c, "/admin/x", &bearer, &set, &live, NOW_MS), Decision::CheckVersions(keys.clone()), "nothing known: ask");
    assert!(live.record(&keys, br#"{"versions":{"sub:alice":5,"sid:s1":0}}"#, NOW_MS));
    assert!(matches!(run(&c, "/admin/x", &bearer, &set, &live, NOW_MS + 500), Decision::Allow(_)), "answer within 500 ms");
    assert_eq!(run(&c, "/admin/x", &bearer, &set, &live, NOW_MS + 501), Decision::CheckVersions(keys.clone()), "answer too old: ask again");
    assert!(matches!(run(&c, "/x", &bearer, &set, &LiveVersions::default(), NOW_MS + 2_000), Decision::Allow(_)), "other rules never ask");
    assert!(live.record(&keys, br#"{"versions":{"sub:alice":6,"sid:s1":0}}"#, NOW_MS + 600));
    assert_eq!(reason(&run(&c, "/admin/x", &bearer, &set, &live, NOW_MS + 600)), Some(DenyReason::InvalidToken(TokenError::Revoked)));
}

/// `max_staleness_ms: 0` reuses no answer, not even one received in the
/// same millisecond; the requests that waited for an answer use it, whatever
/// its age.
#[test]
fn a_fresh_rule_with_max_staleness_0_asks_for_every_request() {
    let c = config_with_rules("deny", r#"[{"name": "admin", "path": {"prefix": "/admin/"}, "fresh": true}]"#);
    let set = synced(NOW_MS, &[]);
    let bearer = headers(&[("authorization", &format!("Bearer {}", token(|_| {})))]);
    let keys = vec!["sub:alice".to_string(), "sid:s1".to_string()];
    let view = RequestView::from_parts(&c, "GET", "/admin/x", &bearer).expect("a well-formed request");
    let req = Request { view: &view, peer: Peer::Known(None) };
    let mut live = LiveVersions::default();
    let waited_from = live.mark();
    assert!(live.record(&keys, br#"{"versions":{"sub:alice":5,"sid:s1":0}}"#, NOW_MS));
    let decide_at = |now_ms, live_waited_from, live: &LiveVersions| {
        decide(&c, &req, &Knowledge { now_ms, revocations: &set, live, live_waited_from, cache: None })
    };
    // (case, when, the mark the request paused at, asks again)
    let cases: Vec<(&str, u64, Option<u64>, bool)> = vec![
        ("a new request in the answer's millisecond", NOW_MS, None, true),
        ("a new request 1 ms later", NOW_MS + 1, None, true),
        ("a request that waited for the answer", NOW_MS, Some(waited_from), false),
        ("one that waited, decided 2 s later", NOW_MS + 2_000, Some(waited_from), false),
        ("one that paused after the answer came", NOW_MS, Some(live.mark()), true),
    ];
    for (case, now_ms, from, asks) in cases {
        let got = decide_at(now_ms, from, &live);
        if asks {
            assert_eq!(got, Decision::CheckVersions(keys.clone()), "{case}");
        } else {
            assert!(matches!(got, Decision::Allow(_)), "{case}: {got:?}");
        }
    }
}

#[test]
fn refresh_table() {
    let c = config("deny");
    let set = synced(NOW_MS, &[]);
    let live = LiveVersions::default();
    let expired = token(|t| t.exp = Some(NOW - 1));
    let ending = token(|t| t.exp = Some(NOW + 30));
    let good = token(|_| {});
    let need = |optional, header_mode| Decision::Refresh(RefreshNeed { refresh_token: "R1".into(), header_mode, optional });
    // (case, headers, decision)
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, Headers, Decision)> = vec![
        ("expired access cookie, refresh cookie", headers(&[("cookie", &format!("tg_access={expired}; tg_refresh=R1"))]), need(false, false)),
        ("access cookie dropped, refresh cookie", headers(&[("cookie", "tg_refresh=R1; theme=dark")]), need(false, false)),
        ("inside refresh_before", headers(&[("cookie", &format!("tg_access={ending}; tg_refresh=R1"))]), need(true, false)),
        ("header mode", headers(&[("authorization", &format!("Bearer {expired}")), ("x-refresh", "R1")]), need(false, true)),
        ("expired, no refresh token", headers(&[("cookie", &format!("tg_access={expired}"))]), Decision::Deny(tollgate::authenticator::Denial { reason: DenyReason::InvalidToken(TokenError::Expired) })),
    ];
    for (case, h, want) in cases {
        assert_eq!(run(&c, "/x", &h, &set, &live, NOW_MS), want, "{case}");
    }
    // A valid token far from expiry with a refresh cookie: no refresh, and
    // the refresh token never reaches the upstream.
    let h = headers(&[("cookie", &format!("theme=dark; tg_access={good}; tg_refresh=R1")), ("x-refresh", "R1")]);
    let Decision::Allow(allow) = run(&c, "/x", &h, &set, &live, NOW_MS) else { panic!("allowed") };
    assert!(allow.header_ops.contains(&HeaderOp::Remove("x-refresh".into())), "{:?}", allow.header_ops);
    assert!(allow.header_ops.contains(&HeaderOp::Set("cookie".into(), format!("theme=dark; tg_access={good}"))), "{:?}", allow.header_ops);
}

#[test]
fn after_the_refresh() {
    let c = config("deny");
    let set = synced(NOW_MS, &[]);
    let live = LiveVersions::default();
    let expired = token(|t| t.exp = Some(NOW - 1));
    let fresh_token = token(|t| t.ver = 5);
    let h = headers(&[("cookie", &format!("theme=dark; tg_access={expired}; tg_refresh=R1"))]);
    let view = RequestView::from_parts(&c, "POST", "/x", &h).unwrap();
    let req = Request { view: &view, peer: Peer::Known(None) };
    let k = Knowledge { now_ms: NOW_MS, revocations: &set, live: &live, live_waited_from: None, cache: None };

    // Success: the new access token replaces the old one upstream; the
    // refresh cookie does not travel.
    let Decision::Allow(allow) = decide_refreshed(&c, &req, &k, &fresh_token) else { panic!("allowed") };
    assert!(allow.header_ops.contains(&HeaderOp::Set("cookie".into(), format!("theme=dark; tg_access={fresh_token}"))), "{:?}", allow.header_ops);

    // A refreshed token that is itself revoked is still refused.
    let revoked = synced(NOW_MS, &[("sub:alice", 6)]);
    let k2 = Knowledge { now_ms: NOW_MS, revocations: &revoked, live: &live, live_waited_from: None, cache: None };
    assert!(matches!(decide_refreshed(&c, &req, &k2, &fresh_token), Decision::Deny(_)));

    // Failures: (case, optional, rejected, outcome)
    let needed = RefreshNeed { refresh_token: "R1".into(), header_mode: false, optional: false };
    let optional = RefreshNeed { optional: true, ..needed.clone() };
    let ending = token(|t| t.exp = Some(NOW + 30));
    let h_ending = headers(&[("cookie", &format!("tg_access={ending}; tg_refresh=R1"))]);
    let view_ending = RequestView::from_parts(&c, "GET", "/x", &h_ending).unwrap();
    let req_ending = Request { view: &view_ending, peer: Peer::Known(None) };
    assert_eq!(reason(&refresh_failed(&c, &req, &k, &needed, true)), Some(DenyReason::RefreshRejected));
    assert_eq!(reason(&refresh_failed(&c, &req, &k, &needed, false)), Some(DenyReason::Unavailable(Unavailable::Refresh)));
    assert!(matches!(refresh_failed(&c, &req_ending, &k, &optional, false), Decision::Allow(_)), "still valid: go on");
    assert_eq!(reason(&refresh_failed(&c, &req_ending, &k, &optional, true)), Some(DenyReason::RefreshRejected));
}

#[test]
fn unavailable_answers_have_no_challenge() {
    let r = tollgate::response::render("t", &DenyReason::Unavailable(Unavailable::Stale));
    assert_eq!(r.status, 503);
    assert_eq!(r.headers[0], ("retry-after", "1".to_string()));
    assert!(r.headers.iter().all(|(n, _)| *n != "www-authenticate"));
    assert_eq!(r.body, r#"{"error":"temporarily_unavailable","error_description":"revocation state stale"}"#);
}

/// A refresh with no access token at all (a header-mode client that only
/// sends its refresh token; a browser whose access cookie expired away):
/// the new token goes upstream where that kind of client sends it, and on
/// an anonymous route an unavailable authority does not fail the page.
#[test]
fn refresh_without_an_access_token() {
    let c = config_with_rules("deny", r#"[{"name": "public", "path": {"prefix": "/public"}, "anonymous": true}]"#);
    let set = synced(NOW_MS, &[]);
    let live = LiveVersions::default();
    let k = Knowledge { now_ms: NOW_MS, revocations: &set, live: &live, live_waited_from: None, cache: None };
    let fresh_token = token(|t| t.ver = 5);
    let need = |optional, header_mode| Decision::Refresh(RefreshNeed { refresh_token: "R1".into(), header_mode, optional });

    // (case, path, headers, first decision, where the new token goes upstream)
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, &str, Headers, Decision, HeaderOp)> = vec![
        (
            "header mode, refresh header only",
            "/x",
            headers(&[("x-refresh", "R1")]),
            need(false, true),
            HeaderOp::Set("authorization".into(), format!("Bearer {fresh_token}")),
        ),
        (
            "cookie mode, refresh cookie only",
            "/x",
            headers(&[("cookie", "tg_refresh=R1; theme=dark")]),
            need(false, false),
            HeaderOp::Set("cookie".into(), format!("theme=dark; tg_access={fresh_token}")),
        ),
        (
            "anonymous route, refresh cookie only: optional",
            "/public/x",
            headers(&[("cookie", "tg_refresh=R1; theme=dark")]),
            need(true, false),
            HeaderOp::Set("cookie".into(), format!("theme=dark; tg_access={fresh_token}")),
        ),
    ];
    for (case, path, h, want, upstream) in cases {
        let view = RequestView::from_parts(&c, "GET", path, &h).unwrap();
        let req = Request { view: &view, peer: Peer::Known(None) };
        let got = decide(&c, &req, &k);
        assert_eq!(got, want, "{case}");
        let Decision::Allow(allow) = decide_refreshed(&c, &req, &k, &fresh_token) else { panic!("{case}: allowed after the refresh") };
        assert!(allow.header_ops.contains(&upstream), "{case}: {:?}", allow.header_ops);
        if matches!(upstream, HeaderOp::Set(ref n, _) if n == "authorization") {
            assert!(!allow.header_ops.iter().any(|op| matches!(op, HeaderOp::Set(n, _) if n == "cookie")), "{case}: {:?}", allow.header_ops);
        }
        let Decision::Refresh(need) = got else { unreachable!() };
        let failed = refresh_failed(&c, &req, &k, &need, false);
        if need.optional {
            let Decision::Allow(anon) = failed else { panic!("{case}: an unavailable authority fails an anonymous page: {failed:?}") };
            assert_eq!(anon.subject, None, "{case}");
        } else {
            assert_eq!(reason(&failed), Some(DenyReason::Unavailable(Unavailable::Refresh)), "{case}");
        }
    }
}
