//! Heap allocations per request on the engine's request path
//! (`Engine::on_request`: the canonical view, the decision, the commands),
//! counted by a global allocator that counts per thread. In Envoy every
//! one of them is a call into the module's allocator in V8's linear memory;
//! the counts are pinned so a change that adds one fails here, and
//! `docs/bench/changes.md` reports them before and after.
//!
//! Native only: the counting allocator is this test binary's.
#![cfg(not(target_arch = "wasm32"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use tollgate::config::Config;
use tollgate::edge::{Callout, CasMismatch, Command, DispatchFailed, Engine, Host};
use tollgate::token::{mint, Algorithm, Claims, Key};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// count is a const-initialized thread-local Cell (no allocation, no drop).
unsafe impl GlobalAlloc for Counting {
    // SAFETY (the trait's contract): forwarded to System unchanged.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's layout, as given.
        unsafe { System.alloc(layout) }
    }
    // SAFETY (the trait's contract): forwarded to System unchanged.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    // SAFETY (the trait's contract): forwarded to System unchanged.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for alloc and dealloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const NOW: u64 = 1_800_000_000;
const SECRET_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

/// Shared data only; no callouts are configured.
#[derive(Default)]
struct Shared(std::collections::HashMap<String, (Vec<u8>, u32)>);

impl Host for Shared {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key).map_or((None, None), |(v, cas)| (Some(v.clone()), Some(*cas)))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), CasMismatch> {
        let n = self.0.get(key).map_or(0, |(_, c)| *c) + 1;
        self.0.insert(key.to_owned(), (value.to_vec(), n));
        Ok(())
    }
    fn dispatch(&mut self, _call: &Callout) -> Result<u32, DispatchFailed> {
        Err(DispatchFailed)
    }
    fn peer(&self) -> Option<IpAddr> {
        None
    }
}

fn engine(host: &mut Shared) -> Engine {
    let doc = format!(
        r#"{{
        "issuer": "https://auth.test", "audiences": ["api"],
        "keys": [{{"kid": "k1", "alg": "HS256", "secret": "{SECRET_B64}"}}],
        "rules": [{{"name": "health", "path": {{"exact": "/healthz"}}, "anonymous": true}}]
    }}"#
    );
    Engine::new(Config::parse(doc.as_bytes(), &|_| None).expect("valid"), host, NOW * 1000)
}

fn token() -> String {
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
        hosts: None,
    };
    mint(&key, &claims)
}

/// The headers as a host hands them over (built outside the count: the
/// host's deserialization is not the engine's).
fn request(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let base = [(":method", "GET"), (":path", path), (":authority", "api.example"), (":scheme", "http"), ("user-agent", "curl/8"), ("accept", "*/*")];
    base.iter().chain(extra).map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
}

/// Allocations of one `on_request`, commands included (dropped outside the
/// count, as the host consumes them).
fn count(engine: &mut Engine, host: &mut Shared, id: u32, headers: Vec<(String, Vec<u8>)>) -> (u64, Vec<Command>) {
    let mut out = Vec::with_capacity(4);
    let before = allocations();
    engine.on_request(host, NOW * 1000, id, headers, &mut out);
    let n = allocations() - before;
    engine.on_done(id);
    (n, out)
}

#[test]
fn allocations_per_request_are_pinned() {
    let mut host = Shared::default();
    let mut e = engine(&mut host);
    let bearer = format!("Bearer {}", token());
    let cookie_and_bearer = [("authorization", bearer.as_str()), ("cookie", "theme=dark; lang=en")];
    // (kind, request, allocations). Before this round (docs/bench/changes.md):
    // 36, 18, 21, 22, 21, 5. What is left on a hit (15): the view's header
    // list, method, path and route (4); one vector of header operations;
    // the four identity header names and their four values (8); the
    // subject and session for the access log (2).
    let rows: Vec<(&str, Vec<(String, Vec<u8>)>, u64)> = vec![
        ("allowed, cache miss (warms the cache)", request("/x", &[("authorization", &bearer)]), 33),
        ("allowed, cache hit", request("/x", &[("authorization", &bearer)]), 15),
        ("allowed, cache hit, other cookies", request("/x", &cookie_and_bearer), 15),
        ("allowed, cache hit, a query string", request("/x?page=2&sort=name", &[("authorization", &bearer)]), 15),
        ("denied, no token", request("/x", &[]), 17),
        ("anonymous", request("/healthz", &[]), 4),
    ];
    for (id, (kind, headers, want)) in rows.into_iter().enumerate() {
        let id = id as u32 + 1;
        let (n, out) = count(&mut e, &mut host, id, headers);
        assert!(out.iter().any(|c| c.request() == Some(id)), "{kind}: decided");
        assert_eq!(n, want, "{kind}: allocations per request (update the pin and docs/bench/changes.md if fewer)");
    }
}
