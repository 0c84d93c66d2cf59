//! The core's request path, natively: `cargo bench --bench verify`.
//!
//! From the floor up: one HMAC-SHA256 over the signing input from an
//! already-keyed state (what `jws::Key` keeps; the re-keyed variant shows
//! what that saves), the parse-only pieces (base64url segments, the JOSE
//! header, the claims object), the claim checks, the JWS layer, the full
//! `Verifier::verify`, and `authenticator::decide` on the request wrk sends
//! in `make bench` (scripts/bench/run.sh reads the estimates into
//! BENCHMARKS.md).
//!
//! The token and configuration are those of the bench: envoy/tollgate.json
//! without the authority callouts,
//! the key from TOLLGATE_DEMO_KEY (the Makefile's demo key when unset), a
//! token shaped like the pool's.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::request::RequestView;
use tollgate::authenticator::{self, Knowledge, Peer, Request};
use std::net::IpAddr;
use tollgate::config::Config;
use tollgate::edge::{script, Callout, CasMismatch, Counter, DispatchFailed, Engine, Flow, Gauge, Host, Level, Proxy};
use tollgate::revocation::{LiveVersions, RevocationSet};
use tollgate::token::jws::Header;
use tollgate::token::{b64, Algorithm, Claims, Key, RawClaims, TimeCheck};

const DEMO_KEY: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

struct Fixture {
    config: Config,
    secret: Vec<u8>,
    token: String,
    bad_token: String,
    now: u64,
}

fn fixture() -> Fixture {
    let key_b64 = std::env::var("TOLLGATE_DEMO_KEY").unwrap_or_else(|_| DEMO_KEY.into());
    let json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/tollgate.json")).expect("envoy/tollgate.json");
    // The cached-path decision, as in `make bench`: without the authority
    // callouts (revocation sync, refresh) and live-checked rules.
    let mut doc: serde_json::Value = serde_json::from_slice(&json).expect("envoy/tollgate.json is JSON");
    let obj = doc.as_object_mut().expect("an object");
    for k in ["authority", "revocation", "refresh", "filter_state"] {
        obj.remove(k);
    }
    for r in obj.get_mut("rules").and_then(|r| r.as_array_mut()).into_iter().flatten() {
        if let Some(r) = r.as_object_mut() {
            r.remove("fresh");
            r.remove("max_staleness_ms");
        }
    }
    let json = serde_json::to_vec(&doc).unwrap();
    let config = Config::parse(&json, &|_| Some(key_b64.clone())).expect("the bench document is valid");
    let secret = b64::decode(key_b64.trim_end_matches('=').as_bytes()).expect("base64url key");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = Claims {
        iss: "https://auth.tollgate.local".into(),
        sub: "user-04242".into(),
        aud: vec!["tollgate-demo".into()],
        exp: Some(now + 3600),
        nbf: None,
        iat: Some(now),
        jti: Some("jti-004242".into()),
        ver: 3,
        sid: Some("sid-004242".into()),
        scope: Some("read write".into()),
        hosts: None,
    };
    let key = Key::new(Some("demo-2026".into()), Algorithm::HS256, &secret).unwrap();
    let other = Key::new(Some("demo-2026".into()), Algorithm::HS256, b"a-different-secret-of-32-bytes-or-more!!").unwrap();
    let token = tollgate::token::mint(&key, &claims);
    let bad_token = tollgate::token::mint(&other, &claims);
    Fixture { config, secret, token, bad_token, now }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let token = f.token.as_bytes();
    let mut parts = f.token.split('.');
    let (h64, p64, s64) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let signing_input = &token[..h64.len() + 1 + p64.len()];
    let header_bytes = b64::decode(h64.as_bytes()).unwrap();
    let payload = b64::decode(p64.as_bytes()).unwrap();
    let verifier = &f.config.verifier;
    println!("token: {} bytes (signing input {} bytes)", token.len(), signing_input.len());

    let mut g = c.benchmark_group("floor");
    let keyed = Hmac::<Sha256>::new_from_slice(&f.secret).unwrap();
    g.bench_function("hmac_sha256_prekeyed", |b| {
        b.iter(|| {
            let mut m = keyed.clone();
            m.update(black_box(signing_input));
            m.finalize().into_bytes()
        })
    });
    g.bench_function("hmac_sha256_rekeyed", |b| {
        b.iter(|| {
            let mut m = Hmac::<Sha256>::new_from_slice(black_box(&f.secret)).unwrap();
            m.update(black_box(signing_input));
            m.finalize().into_bytes()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.bench_function("b64_header", |b| b.iter(|| b64::decode(black_box(h64.as_bytes()))));
    g.bench_function("b64_payload", |b| b.iter(|| b64::decode(black_box(p64.as_bytes()))));
    g.bench_function("b64_signature", |b| b.iter(|| b64::decode(black_box(s64.as_bytes()))));
    g.bench_function("header_json", |b| b.iter(|| Header::parse(black_box(&header_bytes)).is_ok()));
    g.bench_function("claims_json", |b| b.iter(|| RawClaims::parse(black_box(&payload)).is_ok()));
    g.finish();

    let mut g = c.benchmark_group("verify");
    g.bench_function("claims_check", |b| {
        b.iter_batched(
            || RawClaims::parse(&payload).unwrap(),
            |raw| verifier.rules.check(raw, TimeCheck::At(f.now)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("jws_keyset_verify", |b| {
        b.iter(|| verifier.keys.verify(black_box(token), verifier.max_token_bytes).is_ok())
    });
    g.bench_function("verifier_verify", |b| {
        b.iter(|| verifier.verify(black_box(&f.token), TimeCheck::At(f.now)).is_ok())
    });
    g.bench_function("verifier_verify_bad_mac", |b| {
        b.iter(|| verifier.verify(black_box(&f.bad_token), TimeCheck::At(f.now)).is_err())
    });
    g.finish();

    // The request as wrk sends it, headers as the glue gets them from Envoy.
    let headers = |tok: &str| -> Vec<(String, String)> {
        vec![
            (":authority".into(), "127.0.0.1:18004".into()),
            (":path".into(), "/api/items".into()),
            (":method".into(), "GET".into()),
            (":scheme".into(), "http".into()),
            ("authorization".into(), format!("Bearer {tok}")),
            ("x-forwarded-proto".into(), "http".into()),
            ("x-request-id".into(), "0b9a3e2c-8a3f-4c43-9f0e-5d0c6f6f8a11".into()),
        ]
    };
    let ok_headers = headers(&f.token);
    let bad_headers = headers(&f.bad_token);
    let revocations = RevocationSet::new();
    let live = LiveVersions::default();
    let knowledge = Knowledge { now_ms: f.now * 1000, revocations: &revocations, live: &live, live_waited_from: None, cache: None };
    let view = |h: &[(String, String)]| RequestView::from_parts(&f.config, "GET", "/api/items", h).expect("well-formed");
    let (ok_view, bad_view) = (view(&ok_headers), view(&bad_headers));
    let request = |v| Request { view: v, peer: Peer::Known(None) };
    let mut g = c.benchmark_group("decide");
    g.bench_function("decide_allow", |b| {
        b.iter(|| authenticator::decide(&f.config, black_box(&request(&ok_view)), &knowledge))
    });
    g.bench_function("decide_deny_bad_mac", |b| {
        b.iter(|| authenticator::decide(&f.config, black_box(&request(&bad_view)), &knowledge))
    });
    // The canonical view every decision reads, built once per request.
    g.bench_function("request_view", |b| {
        let raw: Vec<(String, Vec<u8>)> = ok_headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
        b.iter(|| RequestView::build(&f.config, black_box(raw.clone())))
    });
    // What the glue pays before the core runs: the header map as owned
    // strings (one allocation per name and value).
    g.bench_function("headers_to_owned", |b| {
        let borrowed: Vec<(&str, &str)> = ok_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        b.iter(|| {
            black_box(&borrowed).iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>()
        })
    });
    g.finish();

    // The whole request callback as the Wasm glue runs it
    // (`edge::script::request_headers`), on a host whose calls cost nothing:
    // what the filter's own code costs per request, natively. `make bench`
    // measures the same path in V8 (Envoy CPU over the empty filter).
    let mut g = c.benchmark_group("script");
    let raw: Vec<(String, Vec<u8>)> = ok_headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
    let mut host = NullHost { now_ms: f.now * 1000, headers: raw };
    let engine = std::cell::RefCell::new(Engine::new(f.config.clone(), &mut host, f.now * 1000));
    let mut id = 0u32;
    let mut request = |host: &mut NullHost| {
        id = id.wrapping_add(1);
        let flow = script::request_headers(&engine, host, id);
        engine.borrow_mut().on_done(id);
        flow
    };
    assert_eq!(request(&mut host), Flow::Continue, "the bench request is allowed");
    g.bench_function("request_cache_hit", |b| b.iter(|| request(&mut host)));
    g.finish();
}

/// A host whose calls do nothing: the engine's and the script's own cost.
struct NullHost {
    now_ms: u64,
    headers: Vec<(String, Vec<u8>)>,
}

impl Host for NullHost {
    fn shared_get(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }
    fn shared_set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), CasMismatch> {
        Ok(())
    }
    fn dispatch(&mut self, _call: &Callout) -> Result<u32, DispatchFailed> {
        Err(DispatchFailed)
    }
    fn peer(&self) -> Option<IpAddr> {
        None
    }
}

impl Proxy for NullHost {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers.clone()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        black_box((name, value));
    }
    fn remove_request_header(&mut self, name: &str) {
        black_box(name);
    }
    fn set_response_header(&mut self, _name: &str, _value: &str) {}
    fn add_response_header(&mut self, _name: &str, _value: &str) {}
    fn send_local_response(&mut self, _status: u16, _details: &str, _headers: &[(String, String)], _body: &str) {}
    fn resume_request(&mut self) {}
    fn set_effective_context(&mut self, _id: u32) -> bool {
        true
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        black_box((name, value));
    }
    fn add_counter(&mut self, _counter: Counter, _n: u64) {}
    fn record(&mut self, _gauge: Gauge, _value: u64) {}
    fn log(&mut self, _level: Level, _line: &str) {}
}

criterion_group!(verify, benches);
criterion_main!(verify);
