//! Tokens for the demo configuration (`envoy/tollgate.json`), minted with
//! Tollgate's own codec. Tests that need an independent implementation use
//! `jsonwebtoken` directly.

use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::token::{self, Algorithm, Claims, Key};

/// The demo secret (base64url), as `make run` exports it in `TOLLGATE_DEMO_KEY`.
pub const DEMO_KEY_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";
pub const DEMO_KEY_ENV: &str = "TOLLGATE_DEMO_KEY";
pub const DEMO_KID: &str = "demo-2026";
pub const ISSUER: &str = "https://auth.tollgate.local";
pub const AUDIENCE: &str = "tollgate-demo";
pub const REALM: &str = "tollgate-demo";
pub const ADMIN_SCOPE: &str = "tollgate:admin";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The raw demo secret.
pub fn demo_secret() -> Vec<u8> {
    token::b64::decode(DEMO_KEY_B64.as_bytes()).expect("demo key is base64url")
}

/// The demo key: kid `demo-2026`, HS256.
pub fn demo_key() -> Key {
    key(Some(DEMO_KID), Algorithm::HS256, &demo_secret())
}

pub fn key(kid: Option<&str>, alg: Algorithm, secret: &[u8]) -> Key {
    Key::new(kid.map(Into::into), alg, secret).expect("test key")
}

/// Valid claims for `sub`: demo issuer and audience, `ver` 1, valid for ten
/// minutes, scope `read write`. Tests change what they need.
pub fn claims(sub: &str) -> Claims {
    let now = now();
    Claims {
        iss: ISSUER.into(),
        sub: sub.into(),
        aud: vec![AUDIENCE.into()],
        exp: Some(now + 600),
        nbf: None,
        iat: Some(now),
        jti: None,
        ver: 1,
        sid: None,
        scope: Some("read write".into()),
        hosts: None,
    }
}

/// An access token (`typ: at+jwt`) signed with the demo key.
pub fn mint(claims: &Claims) -> String {
    token::mint(&demo_key(), claims)
}

/// A valid demo token for `sub` with exactly `scope`.
pub fn token_with_scope(sub: &str, scope: &str) -> String {
    mint(&Claims {
        scope: Some(scope.into()),
        ..claims(sub)
    })
}

/// Signs arbitrary payload JSON with `key` and header `typ`.
pub fn sign_raw(key: &Key, typ: Option<&str>, payload: &serde_json::Value) -> String {
    key.sign(typ, payload.to_string().as_bytes())
}

/// `header.payload.signature` from raw JSON header and payload and a raw
/// signature segment: for tokens no honest signer produces (`alg: none`).
pub fn assemble(
    header: &serde_json::Value,
    payload: &serde_json::Value,
    signature: &str,
) -> String {
    format!(
        "{}.{}.{}",
        token::b64::encode(header.to_string().as_bytes()),
        token::b64::encode(payload.to_string().as_bytes()),
        signature
    )
}

/// The claims of `claims` as JSON, for payloads built by hand.
pub fn claims_json(claims: &Claims) -> serde_json::Value {
    serde_json::from_slice(&claims.to_json()).expect("claims serialize to JSON")
}
