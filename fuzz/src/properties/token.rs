//! The token codec: `Verifier::verify` on hostile bytes, and the mint →
//! verify round trip against a model of the claim rules.

use tollgate::token::Claim;
use super::{ensure, is_control, Check};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};
use tollgate::token::claims::{MAX_NUMERIC_DATE, MAX_VERSION};
use tollgate::token::{
    mint, Algorithm, ClaimRules, Claims, Key, KeySet, RawClaims, TimeCheck, TokenError, Verifier,
};

/// The clock of the fixed verifiers: 2023-11-14T22:13:20Z.
pub const NOW: u64 = 1_700_000_000;
pub const ISS: &str = "https://auth.example";
pub const AUDIENCES: [&str; 2] = ["api", "billing"];
pub const SKEW: u64 = 30;
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The fixed key set: `(kid, alg, secret)`. Every secret is 64 bytes.
pub const KEYS: [(&str, Algorithm, &[u8]); 3] = [
    ("k1", Algorithm::HS256, b"tollgate-fuzz-secret-one/0123456789/abcdefghijklmnopqrstuvwxyz/AB"),
    ("k2", Algorithm::HS384, b"tollgate-fuzz-secret-two/0123456789/abcdefghijklmnopqrstuvwxyz/AB"),
    ("k3", Algorithm::HS512, b"tollgate-fuzz-secret-3/0123456789/abcdefghijklmnopqrstuvwxyz/ABCD"),
];

/// Which fixed verifier a case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySetup {
    /// The three keys of [`KEYS`], selected by `kid`.
    Rotation,
    /// The first secret alone, HS256, without a `kid`: whatever `kid` a
    /// token names, this key is the only candidate.
    SingleWithoutKid,
}

pub fn keys(setup: KeySetup) -> Vec<Key> {
    match setup {
        KeySetup::Rotation => KEYS
            .iter()
            .map(|(kid, alg, secret)| Key::new(Some((*kid).to_owned()), *alg, secret).expect("fixed key"))
            .collect(),
        KeySetup::SingleWithoutKid => {
            vec![Key::new(None, Algorithm::HS256, KEYS[0].2).expect("fixed key")]
        }
    }
}

pub fn verifier(setup: KeySetup) -> Verifier {
    Verifier {
        keys: KeySet::new(keys(setup)).expect("fixed key set"),
        rules: ClaimRules {
            issuer: ISS.into(),
            audiences: AUDIENCES.iter().map(|a| (*a).to_owned()).collect(),
            clock_skew: SKEW,
            allow_never_expiring: true,
        },
        allowed_typ: vec!["at+jwt".into()],
        max_token_bytes: MAX_TOKEN_BYTES,
    }
}

/// base64url without padding, by the `base64` crate (not the codec's `b64`).
pub fn enc(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw HMAC, computed independently of the codec.
pub fn mac(alg: Algorithm, secret: &[u8], input: &[u8]) -> Vec<u8> {
    match alg {
        Algorithm::HS256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::HS384 => {
            let mut m = Hmac::<Sha384>::new_from_slice(secret).expect("any length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        Algorithm::HS512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(secret).expect("any length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// `b64(header).b64(payload).b64(mac)` of arbitrary header and payload
/// bytes, MAC'd with the secret of [`KEYS`]`[key % 3]` under that key's alg.
pub fn sign_raw(key: usize, header: &[u8], payload: &[u8]) -> String {
    let (_, alg, secret) = KEYS[key % KEYS.len()];
    let input = format!("{}.{}", enc(header), enc(payload));
    let tag = enc(&mac(alg, secret, input.as_bytes()));
    format!("{input}.{tag}")
}

fn time_name(t: TimeCheck) -> String {
    match t {
        TimeCheck::At(n) => format!("at {n}"),
        TimeCheck::Skip => "time skipped".into(),
    }
}

/// `token` (any bytes) against a fixed verifier:
///
/// - the answer is the same every time (no hidden state, no caching that
///   changes a verdict), and `KeySet::verify` agrees with it on the JWS layer;
/// - every refusal keeps the error contract (a description, `Display` of
///   it, a pre-registered metric code);
/// - whatever verifies: its signature is the HMAC, computed here with the
///   `hmac` crate, of exactly `header.payload` under the secret of the key
///   its header names; header and payload are base64url that the `base64`
///   crate decodes to JSON objects a generic parser reads the same claims
///   from; every claim rule holds (issuer, audience, subject, control
///   characters, ranges, time with the skew);
/// - the verified claims re-mint, under every key of the set, to a token
///   that verifies to the same claims; and their JSON re-parses to them.
pub fn check_verify(setup: KeySetup, token: &[u8], time: TimeCheck) -> Check {
    let v = verifier(setup);
    let jws = v.keys.verify(token, v.max_token_bytes);
    let again = v.keys.verify(token, v.max_token_bytes);
    ensure!(
        jws.as_ref().map(|j| (&j.payload, format!("{:?}", j.header)))
            == again.as_ref().map(|j| (&j.payload, format!("{:?}", j.header))),
        "KeySet::verify answered twice differently"
    );
    let Ok(text) = std::str::from_utf8(token) else {
        // Tokens come from UTF-8 headers; the JWS layer must still refuse
        // bytes that are not base64url.
        ensure!(jws.is_err(), "non-UTF-8 bytes passed the JWS layer");
        return Ok(());
    };
    let first = v.verify(text, time);
    let second = v.verify(text, time);
    ensure!(first == second, "verify answered {first:?} then {second:?}");
    if jws.is_err() {
        ensure!(first.is_err(), "the JWS layer refused ({jws:?}) but verify accepted");
    }
    let claims = match first {
        Err(e) => return error_contract(e),
        Ok(c) => c,
    };
    let jws = jws.map_err(|e| format!("verify accepted but KeySet::verify said {e:?}"))?;

    // The token itself, read by independent decoders.
    ensure!(token.len() <= MAX_TOKEN_BYTES, "accepted a token of {} bytes", token.len());
    let parts: Vec<&str> = text.split('.').collect();
    ensure!(parts.len() == 3, "accepted a token of {} segments", parts.len());
    let decode = |s: &str, what: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("accepted {what} that base64 refuses: {e}"));
    let header_bytes = decode(parts[0], "a header")?;
    let payload_bytes = decode(parts[1], "a payload")?;
    let tag = decode(parts[2], "a signature")?;
    ensure!(enc(&header_bytes) == parts[0], "accepted a non-canonical header spelling");
    ensure!(enc(&payload_bytes) == parts[1], "accepted a non-canonical payload spelling");
    ensure!(enc(&tag) == parts[2], "accepted a non-canonical signature spelling");
    ensure!(payload_bytes == jws.payload, "the payload verified is not the payload sent");
    let header: Value = serde_json::from_slice(&header_bytes).map_err(|e| format!("accepted a header serde_json refuses: {e}"))?;
    let header = header.as_object().ok_or("accepted a header that is not an object")?;
    ensure!(!header.contains_key("crit"), "accepted a header with crit");
    let alg = header.get("alg").and_then(Value::as_str).ok_or("accepted a header without a string alg")?;
    let typ = header.get("typ").and_then(Value::as_str).ok_or("accepted a header without a string typ")?;
    let typ_short = if typ.len() >= 12 && typ[..12].eq_ignore_ascii_case("application/") { &typ[12..] } else { typ };
    ensure!(typ_short.eq_ignore_ascii_case("at+jwt"), "accepted typ {typ:?}");
    let (alg_want, secret) = match setup {
        KeySetup::SingleWithoutKid => (KEYS[0].1, KEYS[0].2),
        KeySetup::Rotation => {
            let kid = header.get("kid").and_then(Value::as_str).ok_or("accepted a header without a string kid")?;
            let (_, a, s) = KEYS.iter().find(|(k, _, _)| *k == kid).ok_or_else(|| format!("accepted unknown kid {kid:?}"))?;
            (*a, *s)
        }
    };
    ensure!(alg == alg_want.name(), "accepted alg {alg:?} for a key of {alg_want}");
    let signing_input = &text[..parts[0].len() + 1 + parts[1].len()];
    ensure!(
        tag == mac(alg_want, secret, signing_input.as_bytes()),
        "accepted a signature that is not the HMAC of the signing input"
    );

    // The claims, as a generic JSON parser reads them.
    let payload: Value = serde_json::from_slice(&payload_bytes).map_err(|e| format!("accepted a payload serde_json refuses: {e}"))?;
    let p = payload.as_object().ok_or("accepted a payload that is not an object")?;
    let s = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_owned);
    let u = |name: &str| p.get(name).and_then(Value::as_u64);
    let strings = |v: &Value| v.as_array().and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>());
    let aud = match p.get("aud") {
        Some(Value::String(a)) => Some(vec![a.clone()]),
        Some(v) => strings(v),
        None => None,
    };
    ensure!(s("iss").as_ref() == Some(&claims.iss), "iss: claims {:?}, JSON {:?}", claims.iss, p.get("iss"));
    ensure!(s("sub").as_ref() == Some(&claims.sub), "sub: claims {:?}, JSON {:?}", claims.sub, p.get("sub"));
    ensure!(aud.as_ref() == Some(&claims.aud), "aud: claims {:?}, JSON {:?}", claims.aud, p.get("aud"));
    ensure!(u("ver") == Some(claims.ver), "ver: claims {}, JSON {:?}", claims.ver, p.get("ver"));
    for (name, got) in [("exp", claims.exp), ("nbf", claims.nbf), ("iat", claims.iat)] {
        ensure!(u(name) == got && p.contains_key(name) == got.is_some(), "{name}: claims {got:?}, JSON {:?}", p.get(name));
    }
    for (name, got) in [("jti", &claims.jti), ("sid", &claims.sid), ("scope", &claims.scope)] {
        ensure!(s(name) == *got && p.contains_key(name) == got.is_some(), "{name}: claims {got:?}, JSON {:?}", p.get(name));
    }
    ensure!(p.get("hosts").map(strings) == claims.hosts.clone().map(Some), "hosts: claims {:?}, JSON {:?}", claims.hosts, p.get("hosts"));

    // Every rule holds.
    ensure!(claims.iss == ISS, "accepted issuer {:?}", claims.iss);
    ensure!(claims.aud.iter().any(|a| AUDIENCES.contains(&a.as_str())), "accepted audiences {:?}", claims.aud);
    ensure!(!claims.sub.is_empty(), "accepted an empty sub");
    for (name, v) in [(Claim::Sub, Some(&claims.sub)), (Claim::Sid, claims.sid.as_ref()), (Claim::Scope, claims.scope.as_ref())] {
        ensure!(!v.is_some_and(|v| v.chars().any(is_control)), "accepted a control character in {}: {v:?}", name.name());
    }
    ensure!(claims.ver <= MAX_VERSION, "accepted ver {}", claims.ver);
    for d in [claims.exp, claims.nbf, claims.iat].into_iter().flatten() {
        ensure!(d <= MAX_NUMERIC_DATE, "accepted NumericDate {d}");
    }
    if let TimeCheck::At(now) = time {
        match claims.exp {
            Some(exp) => ensure!(now < exp.saturating_add(SKEW), "accepted exp {exp} at {now}"),
            None => ensure!(claims.sid.as_deref().is_some_and(|s| !s.is_empty()), "accepted a token without exp and without sid"),
        }
        ensure!(claims.nbf.is_none_or(|n| n <= now.saturating_add(SKEW)), "accepted nbf {:?} at {now}", claims.nbf);
        ensure!(claims.iat.is_none_or(|i| i <= now.saturating_add(SKEW)), "accepted iat {:?} at {now}", claims.iat);
    }

    // What verifies re-mints, under every key, to the same claims, unless
    // the new token is over the size limit: another key's `kid`, or the
    // writer's escaping of what the input spelled shorter, can make it longer.
    for key in v.keys.keys() {
        let reminted = mint(key, &claims);
        ensure!(reminted == mint(key, &claims), "minting is not deterministic");
        let back = v.verify(&reminted, time);
        if reminted.len() > v.max_token_bytes {
            ensure!(back == Err(TokenError::TooLarge), "re-minted under {:?} to {} bytes (limit {}): {back:?}", key.kid(), reminted.len(), v.max_token_bytes);
        } else {
            ensure!(back.as_ref() == Ok(&claims), "re-minted under {:?}: {back:?}, want {claims:?}", key.kid());
        }
    }
    let raw = RawClaims::parse(&claims.to_json()).map_err(|e| format!("Claims::to_json does not re-parse: {e:?}"))?;
    let reparsed = v.rules.check(raw, time);
    ensure!(reparsed.as_ref() == Ok(&claims), "to_json then check: {reparsed:?}");
    Ok(())
}

/// A refusal keeps the RFC 6750 `error_description` contract.
pub fn error_contract(e: TokenError) -> Check {
    ensure!(!e.description().is_empty(), "{e:?} has an empty description");
    ensure!(e.to_string() == e.description(), "{e:?} displays as {:?}", e.to_string());
    ensure!(tollgate::reason::Reason::ALL.contains(&e.reason()), "{e:?}.reason() = {:?} is not in the reason table", e.reason());
    Ok(())
}

/// Hand-made header and payload bytes, signed correctly with the secret of
/// `KEYS[key]` (the fuzzer cannot guess a MAC, so this reaches every check
/// behind it): [`check_verify`]'s properties, and the MAC is never the
/// reason for a refusal when the header selects the key that signed.
pub fn check_signed(setup: KeySetup, key: usize, header: &[u8], payload: &[u8], time: TimeCheck) -> Check {
    let key = match setup {
        KeySetup::Rotation => key % KEYS.len(),
        KeySetup::SingleWithoutKid => 0,
    };
    let token = sign_raw(key, header, payload);
    check_verify(setup, token.as_bytes(), time)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(());
    }
    let got = verifier(setup).verify(&token, time);
    if got == Err(TokenError::SignatureInvalid) {
        let selects_signer = match setup {
            KeySetup::SingleWithoutKid => true,
            KeySetup::Rotation => serde_json::from_slice::<Value>(header)
                .ok()
                .and_then(|h| h.get("kid").and_then(Value::as_str).map(|k| k == KEYS[key].0))
                .unwrap_or(false),
        };
        ensure!(!selects_signer, "SignatureInvalid for a token signed by the very key its header selects");
    }
    Ok(())
}

/// The claim rules a minted token meets or fails, written from the token
/// contract (docs/architecture.md, "The token"): types and ranges first, then control characters,
/// then time, issuer, audience, subject.
pub fn model(claims: &Claims, rules: &ClaimRules, time: TimeCheck) -> Result<Claims, TokenError> {
    use TokenError::*;
    for (name, v) in [(Claim::Exp, claims.exp), (Claim::Nbf, claims.nbf), (Claim::Iat, claims.iat)] {
        if v.is_some_and(|v| v > MAX_NUMERIC_DATE) {
            return Err(ClaimType(name));
        }
    }
    if claims.ver > MAX_VERSION {
        return Err(ClaimType(Claim::Ver));
    }
    for (name, v) in [(Claim::Sub, Some(&claims.sub)), (Claim::Sid, claims.sid.as_ref()), (Claim::Scope, claims.scope.as_ref())] {
        if v.is_some_and(|v| v.chars().any(is_control)) {
            return Err(ControlCharacter(name));
        }
    }
    if let TimeCheck::At(now) = time {
        let skewed = now.saturating_add(rules.clock_skew);
        match claims.exp {
            Some(exp) if now >= exp.saturating_add(rules.clock_skew) => return Err(Expired),
            Some(_) => {}
            None if rules.allow_never_expiring && claims.sid.as_deref().is_some_and(|s| !s.is_empty()) => {}
            None => return Err(ExpirationMissing),
        }
        if claims.nbf.is_some_and(|n| n > skewed) {
            return Err(NotYetValid);
        }
        if claims.iat.is_some_and(|i| i > skewed) {
            return Err(IssuedInFuture);
        }
    }
    if claims.iss != rules.issuer {
        return Err(IssuerMismatch);
    }
    if !claims.aud.iter().any(|a| rules.audiences.contains(a)) {
        return Err(AudienceMismatch);
    }
    if claims.sub.is_empty() {
        return Err(SubjectMissing);
    }
    Ok(claims.clone())
}

/// The differential round trip: `claims` minted under `KEYS[key]` verify
/// exactly as [`model`] says (same claims, or the same refusal); the token
/// is the plain compact JWS of `claims.to_json()`; and the token with byte
/// `at` replaced by `byte` never verifies, nor does any truncation: strict
/// base64url gives each header, payload and tag exactly one spelling, and
/// the MAC covers header and payload, so there is no byte that cannot
/// matter. (With the byte unchanged there is nothing to check.)
pub fn check_mint(key: usize, claims: &Claims, rules: &ClaimRules, time: TimeCheck, at: usize, byte: u8) -> Check {
    let (kid, alg, secret) = KEYS[key % KEYS.len()];
    let k = Key::new(Some(kid.into()), alg, secret).expect("fixed key");
    let v = Verifier {
        keys: KeySet::new(keys(KeySetup::Rotation)).expect("fixed key set"),
        rules: rules.clone(),
        allowed_typ: vec!["at+jwt".into()],
        max_token_bytes: 1 << 20,
    };
    let token = mint(&k, claims);
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "minted {} segments", parts.len());
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).map_err(|e| format!("minted payload is not base64url: {e}"))?;
    ensure!(payload == claims.to_json(), "the minted payload is not Claims::to_json");
    let tag = URL_SAFE_NO_PAD.decode(parts[2]).map_err(|e| format!("minted tag is not base64url: {e}"))?;
    ensure!(tag == mac(alg, secret, token[..parts[0].len() + 1 + parts[1].len()].as_bytes()), "minted tag is not the HMAC");

    let want = model(claims, rules, time);
    let got = v.verify(&token, time);
    ensure!(got == want, "minted {claims:?}: verify says {got:?}, the model {want:?}");

    let mut bytes = token.clone().into_bytes();
    let i = at % bytes.len();
    if bytes[i] != byte {
        bytes[i] = byte;
        let jws = v.keys.verify(&bytes, v.max_token_bytes);
        ensure!(jws.is_err(), "byte {i} of the token changed to {byte:#04x} and it still verifies");
        if let Ok(s) = std::str::from_utf8(&bytes) {
            ensure!(v.verify(s, time).is_err(), "byte {i} changed and verify accepts");
        }
    }
    let cut = &token[..at % token.len()];
    ensure!(v.verify(cut, time).is_err(), "the token cut to {} bytes verifies", cut.len());
    Ok(())
}
