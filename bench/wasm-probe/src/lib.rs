//! Exports `setup()` and `run_<piece>(n)`: each runs one piece of the
//! request path `n` times, the same pieces as benches/verify.rs, so the
//! host can time them in V8 and compare with the native criterion numbers.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::cell::RefCell;
use tollgate::authenticator::{self, Knowledge, Peer, Request};
use tollgate::config::Config;
use tollgate::revocation::{LiveVersions, RevocationSet};
use tollgate::token::{b64, Algorithm, Claims, Key, RawClaims, TimeCheck};

const DEMO_KEY: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";
const DOC: &str = include_str!("../../../envoy/tollgate.json");
const NOW: u64 = 1_800_000_000;

struct State {
    config: Config,
    token: String,
    headers: Vec<(String, String)>,
    keyed: Hmac<Sha256>,
    revocations: RevocationSet,
    live: LiveVersions,
}

thread_local! { static STATE: RefCell<Option<State>> = const { RefCell::new(None) }; }

#[no_mangle]
pub extern "C" fn setup() -> u32 {
    let mut doc: serde_json::Value = serde_json::from_str(DOC).unwrap();
    let obj = doc.as_object_mut().unwrap();
    for k in ["authority", "revocation", "refresh"] {
        obj.remove(k);
    }
    for r in obj.get_mut("rules").and_then(|r| r.as_array_mut()).into_iter().flatten() {
        if let Some(r) = r.as_object_mut() {
            r.remove("fresh");
            r.remove("max_staleness_ms");
        }
    }
    let config = Config::parse(doc.to_string().as_bytes(), &|_| Some(DEMO_KEY.into())).unwrap();
    let secret = b64::decode(DEMO_KEY.as_bytes()).unwrap();
    let key = Key::new(Some("demo-2026".into()), Algorithm::HS256, &secret).unwrap();
    let claims = Claims {
        iss: "https://auth.tollgate.local".into(),
        sub: "user-04242".into(),
        aud: vec!["tollgate-demo".into()],
        exp: Some(NOW + 3600),
        nbf: None,
        iat: Some(NOW),
        jti: Some("jti-004242".into()),
        ver: 3,
        sid: Some("sid-004242".into()),
        scope: Some("read write".into()),
        hosts: None,
    };
    let token = tollgate::token::mint(&key, &claims);
    let headers = vec![
        (":authority".into(), "127.0.0.1:18004".into()),
        (":path".into(), "/api/items".into()),
        (":method".into(), "GET".into()),
        (":scheme".into(), "http".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("x-forwarded-proto".into(), "http".into()),
        ("x-request-id".into(), "0b9a3e2c-8a3f-4c43-9f0e-5d0c6f6f8a11".into()),
    ];
    let keyed = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
    let len = token.len() as u32;
    STATE.with(|s| {
        *s.borrow_mut() =
            Some(State { config, token, headers, keyed, revocations: RevocationSet::new(), live: LiveVersions::default() })
    });
    len
}

fn with<R>(f: impl FnOnce(&State) -> R) -> R {
    STATE.with(|s| f(s.borrow().as_ref().expect("setup() first")))
}

/// Returns how many runs succeeded, so nothing is optimized away.
#[no_mangle]
pub extern "C" fn run_hmac(n: u32) -> u32 {
    with(|s| {
        let p = s.token.rfind('.').unwrap();
        let input = &s.token.as_bytes()[..p];
        let mut ok = 0;
        for _ in 0..n {
            let mut m = s.keyed.clone();
            m.update(input);
            ok += (m.finalize().into_bytes()[0] != 7) as u32;
        }
        ok
    })
}

#[no_mangle]
pub extern "C" fn run_claims_parse(n: u32) -> u32 {
    with(|s| {
        let payload = b64::decode(s.token.split('.').nth(1).unwrap().as_bytes()).unwrap();
        (0..n).filter(|_| RawClaims::parse(&payload).is_ok()).count() as u32
    })
}

#[no_mangle]
pub extern "C" fn run_verify(n: u32) -> u32 {
    with(|s| (0..n).filter(|_| s.config.verifier.verify(&s.token, TimeCheck::At(NOW)).is_ok()).count() as u32)
}

#[no_mangle]
pub extern "C" fn run_decide(n: u32) -> u32 {
    with(|s| {
        let k = Knowledge { now_ms: NOW * 1000, revocations: &s.revocations, live: &s.live };
        let req = Request { method: "GET", path: "/api/items", headers: &s.headers, peer: Peer::Known(None) };
        (0..n)
            .filter(|_| matches!(authenticator::decide(&s.config, &req, &k), authenticator::Decision::Allow(_)))
            .count() as u32
    })
}
