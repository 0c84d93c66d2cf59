//! What a request costs the host: the proxy-wasm calls the filter makes per
//! request kind, counted against the host traits ([`Host`], [`Proxy`]) that
//! the Wasm glue maps one to one onto proxy-wasm calls. The script is the
//! one the glue runs (`tollgate::edge::script`); only the host is a test
//! double (the real one is exercised by the e2e suite). The counts are
//! pinned: a change that adds a host call to a request fails here, and
//! `docs/bench/changes.md` reports them before and after.
//! Runs natively and on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use tollgate::config::Config;
use tollgate::edge::{script, Callout, CasMismatch, Counter, DispatchFailed, Engine, Flow, Gauge, Host, Level, Proxy};
use tollgate::token::{mint, Algorithm, Claims, Key};

const NOW: u64 = 1_800_000_000;
const SECRET_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

/// A host that answers like Envoy and records every call by the name of
/// its proxy-wasm function.
#[derive(Default)]
struct CountingHost {
    calls: RefCell<Vec<&'static str>>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    headers: Vec<(String, Vec<u8>)>,
    peer: Option<IpAddr>,
    /// What reached Envoy: request header writes, and local replies.
    written: Vec<(String, Option<String>)>,
    replied: Option<u16>,
    counted: BTreeMap<Counter, u64>,
}

impl CountingHost {
    fn call(&self, name: &'static str) {
        self.calls.borrow_mut().push(name);
    }

    fn take(&mut self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for name in self.calls.take() {
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }
}

impl Host for CountingHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.call("get_shared_data");
        self.shared.get(key).map_or((None, None), |(v, cas)| (Some(v.clone()), Some(*cas)))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.call("set_shared_data");
        let current = self.shared.get(key).map(|(_, c)| *c);
        if matches!((cas, current), (Some(want), Some(have)) if want != have) {
            return Err(CasMismatch);
        }
        self.shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn dispatch(&mut self, _call: &Callout) -> Result<u32, DispatchFailed> {
        self.call("dispatch_http_call");
        Err(DispatchFailed)
    }
    fn peer(&self) -> Option<IpAddr> {
        self.call("get_property");
        self.peer
    }
}

impl Proxy for CountingHost {
    fn now_ms(&self) -> u64 {
        self.call("get_current_time_nanoseconds");
        NOW * 1000
    }
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.call("get_header_map_pairs");
        self.headers.clone()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        self.call("replace_header_map_value");
        self.written.push((name.to_owned(), Some(value.to_owned())));
    }
    fn remove_request_header(&mut self, name: &str) {
        self.call("remove_header_map_value");
        self.written.push((name.to_owned(), None));
    }
    fn set_response_header(&mut self, _name: &str, _value: &str) {
        self.call("replace_header_map_value");
    }
    fn add_response_header(&mut self, _name: &str, _value: &str) {
        self.call("add_header_map_value");
    }
    fn send_local_response(&mut self, status: u16, _details: &str, _headers: &[(String, String)], _body: &str) {
        self.call("send_local_response");
        self.replied = Some(status);
    }
    fn resume_request(&mut self) {
        self.call("continue_stream");
    }
    fn set_effective_context(&mut self, _id: u32) -> bool {
        self.call("set_effective_context");
        true
    }
    fn set_property(&mut self, _name: &str, _value: &[u8]) {
        self.call("set_property");
    }
    fn add_counter(&mut self, counter: Counter, n: u64) {
        self.call("increment_metric");
        *self.counted.entry(counter).or_insert(0) += n;
    }
    fn record(&mut self, _gauge: Gauge, _value: u64) {
        self.call("record_metric");
    }
    fn log(&mut self, _level: Level, _line: &str) {
        self.call("log");
    }
}

fn config(filter_state: bool) -> Config {
    let doc = format!(
        r#"{{
        "issuer": "https://auth.test", "audiences": ["api"], "filter_state": {filter_state},
        "keys": [{{"kid": "k1", "alg": "HS256", "secret": "{SECRET_B64}"}}],
        "rules": [{{"name": "health", "path": {{"exact": "/healthz"}}, "anonymous": true}}]
    }}"#
    );
    Config::parse(doc.as_bytes(), &|_| None).expect("valid")
}

fn token(hosts: Option<&str>) -> String {
    let secret = tollgate::token::b64::decode(SECRET_B64.as_bytes()).unwrap();
    let key = Key::new(Some("k1".into()), Algorithm::HS256, &secret).unwrap();
    let claims = Claims {
        iss: "https://auth.test".into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        exp: Some(NOW + 600),
        nbf: None,
        iat: Some(NOW),
        jti: None,
        ver: 3,
        sid: Some("s1".into()),
        scope: Some("read".into()),
        hosts: hosts.map(|h| vec![h.to_owned()]),
    };
    mint(&key, &claims)
}

/// A browser-like request: pseudo-headers and the usual headers an
/// upstream sees, plus `extra`.
fn request(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h: Vec<(String, Vec<u8>)> = [
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example"),
        (":scheme", "http"),
        ("user-agent", "curl/8"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6a1f3c2e-0f64-4a3c-9d0e-4b1e0c2f7a11"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect();
    h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    h
}

/// The host calls per request kind, after this round's changes (see
/// `docs/bench/changes.md`, "host calls per request"), with the access-log
/// filter state on (`set_property`: the decision, and the reason or the
/// subject and session) and off (the default: no `set_property`).
#[test]
fn host_calls_per_request_kind_are_at_the_floor() {
    for filter_state in [true, false] {
        host_calls_per_request_kind(filter_state);
    }
}

fn host_calls_per_request_kind(filter_state: bool) {
    let good = token(None);
    let bearer = format!("Bearer {good}");
    let tampered = format!("Bearer {}x", &good[..good.len() - 1]);
    let pinned = token(Some("10.0.0.1"));
    let pinned_bearer = format!("Bearer {pinned}");
    // (kind, request, decision (status), host calls by proxy-wasm function)
    let rows: Vec<(&str, Vec<(String, Vec<u8>)>, u16, Vec<(&str, usize)>)> = vec![
        (
            "allowed, cache miss",
            request("/x", &[("authorization", &bearer)]),
            200,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("replace_header_map_value", 4), ("set_property", 3)],
        ),
        (
            "allowed, cache hit",
            request("/x", &[("authorization", &bearer)]),
            200,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("replace_header_map_value", 4), ("set_property", 3)],
        ),
        (
            "allowed, a hosts-bound token (the peer is read)",
            request("/x", &[("authorization", &pinned_bearer)]),
            200,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("get_property", 1), ("replace_header_map_value", 4), ("set_property", 3)],
        ),
        (
            "allowed, a spoofed identity header replaced",
            request("/x", &[("authorization", &bearer), ("x-tollgate-sub", "root")]),
            200,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("replace_header_map_value", 4), ("set_property", 3)],
        ),
        (
            "denied, bad signature",
            request("/x", &[("authorization", &tampered)]),
            401,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("set_property", 2), ("send_local_response", 1)],
        ),
        (
            "denied, no token",
            request("/x", &[]),
            401,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("set_property", 2), ("send_local_response", 1)],
        ),
        (
            "anonymous",
            request("/healthz", &[]),
            200,
            vec![("get_current_time_nanoseconds", 1), ("get_header_map_pairs", 1), ("set_property", 1)],
        ),
    ];
    let mut host = CountingHost { peer: "10.0.0.1".parse().ok(), ..CountingHost::default() };
    let engine = RefCell::new(Engine::new(config(filter_state), &mut host, NOW * 1000));
    host.take();
    for (id, (kind, headers, status, want)) in rows.into_iter().enumerate() {
        host.headers = headers;
        host.replied = None;
        let flow = script::request_headers(&engine, &mut host, id as u32 + 1);
        let decided = match (flow, host.replied) {
            (Flow::Continue, None) => 200,
            (Flow::Pause, Some(s)) => s,
            other => panic!("{kind}: {other:?}"),
        };
        assert_eq!(decided, status, "{kind}");
        let want: BTreeMap<&str, usize> = want.into_iter().filter(|(name, _)| filter_state || *name != "set_property").collect();
        assert_eq!(host.take(), want, "{kind}, filter_state {filter_state}: host calls");
        engine.borrow_mut().on_done(id as u32 + 1);
        assert_eq!(host.take(), BTreeMap::new(), "{kind}: the stream's end costs no host call");
    }
    // Every decision is counted, on the next tick: one metric call per
    // counter and tick, none per request.
    script::tick(&engine, &mut host, 0);
    assert_eq!(host.take().get("increment_metric"), Some(&6), "allowed, anonymous, denied.no_token, denied.bad_signature, the cache's hit and miss");
    assert_eq!(host.counted.get(&Counter::Allowed), Some(&4));
    assert_eq!(host.counted.get(&Counter::Anonymous), Some(&1));
    assert_eq!(host.counted.get(&Counter::Denied(tollgate::reason::Reason::NoToken)), Some(&1));
    // The cache rows were what they say.
    assert_eq!(host.counted.get(&Counter::CacheHit), Some(&2), "the hit and the spoofed-header rows hit the cache");
    assert_eq!(host.counted.get(&Counter::CacheMiss), Some(&3), "first use, the hosts-bound token, the bad signature");
}
