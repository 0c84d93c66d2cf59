//! Specification of the token codec (docs/architecture.md, "The token").
//!
//! Each table row is `(case name, token, expected result)`: `Ok(())` or the
//! exact [`TokenError`] variant. For every refusal the runner also checks the
//! variant's stable `description()` against [`DESCRIPTIONS`] below (the RFC 6750
//! `error_description` contract), that `Display` prints it, and that its
//! metric `code()` is a row of the one reason table ([`Reason::ALL`]).
//!
//! Hostile tokens are assembled by hand, `b64(header).b64(payload).b64(mac)`,
//! with the MAC computed here by `hmac`/`sha2` (not by the codec), so the
//! codec under test never helps build its own inputs. Well-formed tokens
//! are also minted through `Key::sign` / `mint`.
//!
//! Everything here runs natively and, through the shadowing import below,
//! under wasm-bindgen-test on wasm32-unknown-unknown
//! (`scripts/test-wasm-core.sh`). The vectors are compiled in with
//! `include_str!`, since wasm32 has no filesystem. Interop with
//! `jsonwebtoken` and the proptest properties are native only.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use std::collections::HashSet;
use tollgate::token::claims::{MAX_NUMERIC_DATE, MAX_VERSION};
use tollgate::token::{
    b64, mint, Algorithm, ClaimRules, Claims, Key, KeyError, KeySet, RawClaims, TimeCheck,
    Claim, Segment, TokenError, Verifier, ACCESS_TOKEN_TYP,
};
use tollgate::reason::Reason;
use Algorithm::{HS256, HS384, HS512};
use TokenError::*;

// ───────────────────────────── fixtures ─────────────────────────────

/// The clock of every table: 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://auth.example";
/// 64 bytes: long enough for HS512 (RFC 7518 §3.2).
const SECRET: &[u8] = b"tollgate-spec-secret/0123456789/abcdefghijklmnopqrstuvwxyz/ABCDE";
const OTHER_SECRET: &[u8] = b"tollgate-spec-OTHER!/0123456789/abcdefghijklmnopqrstuvwxyz/ABCDE";
/// The default header of a hand-made access token.
const H: &str = r#"{"alg":"HS256","typ":"at+jwt"}"#;

type Expect = Result<(), TokenError>;
type Case = (&'static str, String, Expect);

/// The stable `error_description` of every variant (docs/configuration.md, "Responses").
/// Changing one of these is a contract change.
const DESCRIPTIONS: &[(TokenError, &str)] = &[
    (TooLarge, "token too large"),
    (Malformed, "token is not a compact JWS"),
    (BadEncoding(Segment::Header), "header is not base64url"),
    (BadEncoding(Segment::Payload), "payload is not base64url"),
    (BadEncoding(Segment::Signature), "signature is not base64url"),
    (NotJsonObject(Segment::Header), "header is not a JSON object"),
    (NotJsonObject(Segment::Payload), "payload is not a JSON object"),
    (DuplicateMember(Segment::Header), "duplicate member in header"),
    (DuplicateMember(Segment::Payload), "duplicate member in payload"),
    (AlgorithmMissing, "alg missing"),
    (AlgorithmNone, "alg none not allowed"),
    (AlgorithmNotAllowed, "alg not allowed"),
    (AlgorithmMismatch, "alg does not match key"),
    (KeyIdMissing, "kid missing"),
    (UnknownKeyId, "unknown key id"),
    (UnsupportedCritical, "unsupported critical header"),
    (TypeNotAllowed, "typ not allowed"),
    (SignatureInvalid, "signature invalid"),
    (ClaimType(Claim::Exp), "exp is not an integer NumericDate"),
    (ClaimType(Claim::Nbf), "nbf is not an integer NumericDate"),
    (ClaimType(Claim::Iat), "iat is not an integer NumericDate"),
    (ClaimType(Claim::Ver), "ver is not a non-negative integer"),
    (ClaimType(Claim::Aud), "aud is not a string or array of strings"),
    (ClaimType(Claim::Hosts), "hosts is not an array of strings"),
    (ClaimType(Claim::Iss), "iss is not a string"),
    (ClaimType(Claim::Sub), "sub is not a string"),
    (ClaimType(Claim::Sid), "sid is not a string"),
    (ClaimType(Claim::Jti), "jti is not a string"),
    (ClaimType(Claim::Scope), "scope is not a string"),
    (Expired, "token expired"),
    (ExpirationMissing, "exp missing"),
    (NotYetValid, "token not yet valid"),
    (IssuedInFuture, "token issued in the future"),
    (IssuerMismatch, "issuer not accepted"),
    (AudienceMismatch, "audience not accepted"),
    (SubjectMissing, "sub missing"),
    (VersionMissing, "ver missing"),
    (Revoked, "token revoked"),
];

fn key(kid: Option<&str>, alg: Algorithm, secret: &[u8]) -> Key {
    Key::new(kid.map(str::to_owned), alg, secret).expect("test key")
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: ISS.into(),
        audiences: vec!["api".into(), "billing".into()],
        clock_skew: 0,
        allow_never_expiring: false,
    }
}

fn verifier_with(keys: Vec<Key>, rules: ClaimRules) -> Verifier {
    Verifier {
        keys: KeySet::new(keys).expect("test key set"),
        rules,
        allowed_typ: vec![ACCESS_TOKEN_TYP.into()],
        max_token_bytes: 4096,
    }
}

/// One HS256 key, kid `k1`, skew 0, never-expiring tokens not allowed.
fn verifier() -> Verifier {
    verifier_with(vec![key(Some("k1"), HS256, SECRET)], rules())
}

/// base64url without padding, by the `base64` crate (not the codec's `b64`).
fn enc(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw HMAC, computed independently of the codec.
fn mac(alg: Algorithm, secret: &[u8], input: &[u8]) -> Vec<u8> {
    match alg {
        HS256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        HS384 => {
            let mut m = Hmac::<Sha384>::new_from_slice(secret).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        HS512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(secret).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// `h.p.b64(mac(h.p))` from already-encoded (possibly hostile) segments.
fn assemble_with(alg: Algorithm, secret: &[u8], h: &str, p: &str) -> String {
    let input = format!("{h}.{p}");
    let tag = enc(&mac(alg, secret, input.as_bytes()));
    format!("{input}.{tag}")
}

/// HS256 with [`SECRET`] over already-encoded segments.
fn assemble(h: &str, p: &str) -> String {
    assemble_with(HS256, SECRET, h, p)
}

fn hand_with(alg: Algorithm, secret: &[u8], header: &str, payload: &str) -> String {
    assemble_with(
        alg,
        secret,
        &enc(header.as_bytes()),
        &enc(payload.as_bytes()),
    )
}

/// A correctly signed token (HS256, [`SECRET`]) of arbitrary header and
/// payload *text*.
fn hand(header: &str, payload: &str) -> String {
    hand_with(HS256, SECRET, header, payload)
}

/// A correctly signed token of arbitrary header and payload *bytes*.
fn hand_bytes(header: &[u8], payload: &[u8]) -> String {
    assemble(&enc(header), &enc(payload))
}

/// A correctly signed token with the default header [`H`].
fn tok(payload: &str) -> String {
    hand(H, payload)
}

/// Replaces the signature segment of `token`.
fn with_sig(token: &str, sig: &str) -> String {
    let cut = token.rfind('.').unwrap();
    format!("{}.{sig}", &token[..cut])
}

fn n(v: u64) -> String {
    v.to_string()
}

/// The claims of a valid access token at [`NOW`], as JSON text, with `set`
/// applied (`(name, raw JSON value)`: replaces the member in place, or appends
/// it) and the members in `remove` left out.
fn edit(set: &[(&str, &str)], remove: &[&str]) -> String {
    let exp = n(NOW + 600);
    let iat = n(NOW - 10);
    let mut members: Vec<(String, String)> = [
        ("iss", format!("{ISS:?}")),
        ("sub", r#""alice""#.to_owned()),
        ("aud", r#""api""#.to_owned()),
        ("exp", exp),
        ("iat", iat),
        ("jti", r#""t-1""#.to_owned()),
        ("ver", "7".to_owned()),
        ("scope", r#""read write""#.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in set {
        match members.iter_mut().find(|(name, _)| name == k) {
            Some(m) => m.1 = (*v).to_owned(),
            None => members.push(((*k).to_owned(), (*v).to_owned())),
        }
    }
    members.retain(|(k, _)| !remove.contains(&k.as_str()));
    let body: Vec<String> = members.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn with(set: &[(&str, &str)]) -> String {
    edit(set, &[])
}

fn without(remove: &[&str]) -> String {
    edit(&[], remove)
}

/// The valid payload.
fn good() -> String {
    edit(&[], &[])
}

fn spec_description(e: TokenError) -> &'static str {
    DESCRIPTIONS
        .iter()
        .find(|(v, _)| *v == e)
        .map(|(_, d)| *d)
        .unwrap_or_else(|| panic!("{e:?} has no documented description in DESCRIPTIONS"))
}

/// Checks the error contract of one refusal; `Err(text)` on a violation.
fn error_contract(e: TokenError) -> Result<(), String> {
    let want = spec_description(e);
    if e.description() != want {
        return Err(format!(
            "{e:?}.description() = {:?}, spec says {want:?}",
            e.description()
        ));
    }
    if e.to_string() != want {
        return Err(format!("{e:?} displays as {:?}", e.to_string()));
    }
    if !Reason::ALL.contains(&e.reason()) {
        return Err(format!("{e:?}.reason() = {:?} is not in Reason::ALL", e.reason()));
    }
    Ok(())
}

/// Runs a table against `v` at `time` and reports every mismatch at once.
fn check_table(v: &Verifier, time: TimeCheck, cases: &[Case]) {
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for (name, token, want) in cases {
        assert!(names.insert(*name), "case name {name:?} appears twice");
        let got = v.verify(token, time).map(|_| ());
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        } else if let Err(e) = got {
            if let Err(why) = error_contract(e) {
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

// ─────────────────────── encoding mutations ────────────────────────

const URL_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `seg` with the `=` padding base64 would add (there must be some).
fn padded(seg: &str) -> String {
    let pad = (4 - seg.len() % 4) % 4;
    assert!(pad > 0, "fixture: {seg} needs no padding");
    format!("{seg}{}", "=".repeat(pad))
}

/// `seg` in the standard alphabet (`+` `/`), which must differ.
fn std_alphabet(seg: &str) -> String {
    let s = seg.replace('-', "+").replace('_', "/");
    assert_ne!(s, seg, "fixture: {seg} has no - or _");
    s
}

/// `seg` with non-zero unused bits in its last character: same bytes, a
/// second spelling.
fn noncanonical(seg: &str) -> String {
    assert!(
        matches!(seg.len() % 4, 2 | 3),
        "fixture: {seg} has no unused bits"
    );
    let last = *seg.as_bytes().last().unwrap();
    let i = URL_ALPHABET.iter().position(|&c| c == last).unwrap();
    let unused = if seg.len() % 4 == 2 { 0b1111 } else { 0b11 };
    assert_eq!(
        i & unused,
        0,
        "fixture: {seg} is not canonical to begin with"
    );
    let mut s = seg.to_owned();
    s.pop();
    s.push(URL_ALPHABET[i + 1] as char);
    s
}

/// `seg` lengthened to 4k+1 characters, a length no base64 has.
fn impossible_length(seg: &str) -> String {
    let mut s = seg.to_owned();
    while s.len() % 4 != 1 {
        s.push('A');
    }
    s
}

/// Encodes `json` after appending JSON whitespace until its base64url needs
/// padding and contains `-` or `_` (so every mutation above applies).
fn mutable_segment(json: &str) -> String {
    (0..12)
        .map(|i| enc(format!("{json}{}", " ".repeat(i)).as_bytes()))
        .find(|s| s.len() % 4 != 0 && s.contains(['-', '_']))
        .expect("fixture: no suitable segment")
}

// ───────────────────────────── tables ─────────────────────────────

#[test]
fn valid_tokens() {
    let v = verifier_with(
        vec![
            key(Some("k1"), HS256, SECRET),
            key(Some("k384"), HS384, SECRET),
            key(Some("k512"), HS512, SECRET),
        ],
        rules(),
    );
    // Three keys, so every token names its kid.
    let tok = |payload: &str| hand(r#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#, payload);
    let signed = |kid: &str, alg| {
        key(Some(kid), alg, SECRET).sign(Some(ACCESS_TOKEN_TYP), good().as_bytes())
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("HS256 via Key::sign", signed("k1", HS256), Ok(())),
        ("HS384 via Key::sign", signed("k384", HS384), Ok(())),
        ("HS512 via Key::sign", signed("k512", HS512), Ok(())),
        (
            "HS384 by hand",
            hand_with(HS384, SECRET, r#"{"alg":"HS384","kid":"k384","typ":"at+jwt"}"#, &good()),
            Ok(()),
        ),
        (
            "HS512 by hand",
            hand_with(HS512, SECRET, r#"{"alg":"HS512","kid":"k512","typ":"at+jwt"}"#, &good()),
            Ok(()),
        ),
        ("typ AT+JWT (media types compare case-insensitively)", hand(r#"{"alg":"HS256","kid":"k1","typ":"AT+JWT"}"#, &good()), Ok(())),
        ("typ At+Jwt", hand(r#"{"alg":"HS256","kid":"k1","typ":"At+Jwt"}"#, &good()), Ok(())),
        ("kid written with a JSON escape", hand(r#"{"alg":"HS256","kid":"k\u0031","typ":"at+jwt"}"#, &good()), Ok(())),
        (
            "whitespace and CR LF inside header JSON",
            hand("\r\n {\"alg\" : \"HS256\",\r\n \"kid\":\"k1\", \"typ\":\"at+jwt\"}\t\r\n", &good()),
            Ok(()),
        ),
        ("unknown header members ignored", hand(r#"{"alg":"HS256","kid":"k1","typ":"at+jwt","x5u":"https://evil","jwk":{"k":"x"}}"#, &good()), Ok(())),
        ("unknown claims ignored", tok(&with(&[("role", r#"{"nested":[1,{"a":true}]}"#)])), Ok(())),
        ("aud array containing a configured audience", tok(&with(&[("aud", r#"["other","billing"]"#)])), Ok(())),
        ("hosts array of strings", tok(&with(&[("hosts", r#"["10.0.0.0/8","2001:db8::1"]"#)])), Ok(())),
        ("sid string", tok(&with(&[("sid", r#""s-1""#)])), Ok(())),
        ("ver 0", tok(&with(&[("ver", "0")])), Ok(())),
        ("ver 2^53-1", tok(&with(&[("ver", &n(MAX_VERSION))])), Ok(())),
        ("exp 253402300799 (9999-12-31T23:59:59Z)", tok(&with(&[("exp", &n(MAX_NUMERIC_DATE))])), Ok(())),
        ("no iat, no jti, no scope", tok(&without(&["iat", "jti", "scope"])), Ok(())),
        ("nesting 100 deep", tok(&with(&[("deep", &format!("{}{}", "[".repeat(100), "]".repeat(100)))])), Ok(())),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);

    // Ok carries the claims exactly as written.
    let claims = v
        .verify(&signed("k512", HS512), TimeCheck::At(NOW))
        .unwrap();
    assert_eq!(
        claims,
        Claims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: vec!["api".into()],
            exp: Some(NOW + 600),
            nbf: None,
            iat: Some(NOW - 10),
            jti: Some("t-1".into()),
            ver: 7,
            sid: None,
            scope: Some("read write".into()),
            hosts: None,
        }
    );
    assert!(claims.has_scope("write") && !claims.has_scope("admin"));
}

#[test]
fn key_sign_is_plain_compact_jws() {
    // `Key::sign` writes header members in a fixed order (alg, kid, typ) and
    // its MAC is the plain RFC 7515 one: byte-identical to a token assembled
    // by hand with an independent HMAC.
    let payload = good();
    for (alg, kid) in [(HS256, "k1"), (HS384, "k384"), (HS512, "k512")] {
        let header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt"}}"#);
        assert_eq!(
            key(Some(kid), alg, SECRET).sign(Some(ACCESS_TOKEN_TYP), payload.as_bytes()),
            hand_with(alg, SECRET, &header, &payload)
        );
    }
    assert_eq!(
        key(None, HS256, SECRET).sign(None, b"{}"),
        hand(r#"{"alg":"HS256"}"#, "{}"),
        "no kid, no typ"
    );
}

#[test]
fn shape_and_size() {
    let v = verifier();
    let t = tok(&good());
    let mut parts = t.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("empty string", String::new(), Err(Malformed)),
        ("one segment", h.to_owned(), Err(Malformed)),
        ("two segments", format!("{h}.{p}"), Err(Malformed)),
        ("two segments, signature dropped, separator kept", format!("{h}.{p}."), Err(SignatureInvalid)),
        ("four segments", format!("{t}.{s}"), Err(Malformed)),
        ("four segments, trailing dot", format!("{t}."), Err(Malformed)),
        ("five empty segments", "....".to_owned(), Err(Malformed)),
        ("three empty segments", "..".to_owned(), Err(NotJsonObject(Segment::Header))),
        ("JWS JSON serialization", format!(r#"{{"payload":"{p}","signatures":[{{"protected":"{h}","signature":"{s}"}}]}}"#), Err(Malformed)),
        // The cap comes before splitting or decoding anything.
        ("1 MiB of garbage", "!".repeat(1 << 20), Err(TooLarge)),
        ("4097 bytes of valid-looking base64url", "A".repeat(4097), Err(TooLarge)),
        ("over the cap with three segments", format!("{h}.{}.{s}", "A".repeat(4096)), Err(TooLarge)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);

    // The cap is inclusive: a token of exactly max_token_bytes is read.
    let mut at_cap = verifier();
    at_cap.max_token_bytes = t.len();
    assert_eq!(at_cap.verify(&t, TimeCheck::At(NOW)).map(|_| ()), Ok(()));
    at_cap.max_token_bytes = t.len() - 1;
    assert_eq!(
        at_cap.verify(&t, TimeCheck::At(NOW)).map(|_| ()),
        Err(TooLarge)
    );
}

#[test]
fn algorithm() {
    let v = verifier();
    let garbage = |header: &str| {
        format!(
            "{}.{}.garbage!!not-base64",
            enc(header.as_bytes()),
            enc(good().as_bytes())
        )
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // `none` in any spelling, refused before any MAC work: the signature
        // here is not even base64url.
        ("alg none, garbage signature", garbage(r#"{"alg":"none","typ":"at+jwt"}"#), Err(AlgorithmNone)),
        ("alg None, garbage signature", garbage(r#"{"alg":"None","typ":"at+jwt"}"#), Err(AlgorithmNone)),
        ("alg NONE, garbage signature", garbage(r#"{"alg":"NONE","typ":"at+jwt"}"#), Err(AlgorithmNone)),
        ("alg nOnE, garbage signature", garbage(r#"{"alg":"nOnE","typ":"at+jwt"}"#), Err(AlgorithmNone)),
        ("alg none, empty signature", format!("{}.{}.", enc(br#"{"alg":"none"}"#), enc(good().as_bytes())), Err(AlgorithmNone)),
        ("alg none, with crit", garbage(r#"{"alg":"none","crit":["exp"]}"#), Err(AlgorithmNone)),
        ("alg none, unknown kid", garbage(r#"{"alg":"none","kid":"nope"}"#), Err(AlgorithmNone)),
        ("alg missing", tok_h(r#"{"typ":"at+jwt"}"#), Err(AlgorithmMissing)),
        ("alg missing, garbage signature", garbage(r#"{"typ":"at+jwt"}"#), Err(AlgorithmMissing)),
        ("alg a number", tok_h(r#"{"alg":256,"typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg null", tok_h(r#"{"alg":null,"typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg an array", tok_h(r#"{"alg":["HS256"],"typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg an object", tok_h(r#"{"alg":{"name":"HS256"},"typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg RS256", tok_h(r#"{"alg":"RS256","typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg ES256", tok_h(r#"{"alg":"ES256","typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg hs256 (names are case-sensitive)", tok_h(r#"{"alg":"hs256","typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg empty", tok_h(r#"{"alg":"","typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        ("alg HS256 with trailing NUL", tok_h(r#"{"alg":"HS256\u0000","typ":"at+jwt"}"#), Err(AlgorithmNotAllowed)),
        (
            "alg HS512 against the HS256 key (correct HS512 MAC)",
            hand_with(HS512, SECRET, r#"{"alg":"HS512","typ":"at+jwt"}"#, &good()),
            Err(AlgorithmMismatch),
        ),
        (
            "alg HS384 against the HS256 key",
            hand_with(HS384, SECRET, r#"{"alg":"HS384","kid":"k1","typ":"at+jwt"}"#, &good()),
            Err(AlgorithmMismatch),
        ),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

fn tok_h(header: &str) -> String {
    hand(header, &good())
}

#[test]
fn key_selection() {
    // Rotation: two HS256 keys side by side, plus an HS384 one.
    let v = verifier_with(
        vec![
            key(Some("old"), HS256, SECRET),
            key(Some("new"), HS256, OTHER_SECRET),
            key(Some("wide"), HS384, SECRET),
        ],
        rules(),
    );
    let with_kid = |kid: &str, secret| {
        hand_with(
            HS256,
            secret,
            &format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"at+jwt"}}"#),
            &good(),
        )
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("kid old, old secret", with_kid("old", SECRET), Ok(())),
        ("kid new, new secret", with_kid("new", OTHER_SECRET), Ok(())),
        ("kid new, old secret", with_kid("new", SECRET), Err(SignatureInvalid)),
        ("kid old, new secret", with_kid("old", OTHER_SECRET), Err(SignatureInvalid)),
        ("kid missing with several keys", hand(H, &good()), Err(KeyIdMissing)),
        ("kid unknown", with_kid("older", SECRET), Err(UnknownKeyId)),
        ("kid empty", with_kid("", SECRET), Err(UnknownKeyId)),
        ("kid differs in case", with_kid("OLD", SECRET), Err(UnknownKeyId)),
        ("kid a number", tok_h(r#"{"alg":"HS256","kid":1,"typ":"at+jwt"}"#), Err(UnknownKeyId)),
        ("kid null", tok_h(r#"{"alg":"HS256","kid":null,"typ":"at+jwt"}"#), Err(UnknownKeyId)),
        ("kid of the HS384 key, alg HS256", with_kid("wide", SECRET), Err(AlgorithmMismatch)),
        (
            "kid of the HS384 key, alg HS384",
            hand_with(HS384, SECRET, r#"{"alg":"HS384","kid":"wide","typ":"at+jwt"}"#, &good()),
            Ok(()),
        ),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);

    // One key: a token without kid uses it; a kid must still name it.
    let single = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("single key, no kid in token", hand(H, &good()), Ok(())),
        ("single key, its kid", tok_h(r#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#), Ok(())),
        ("single key, another kid", tok_h(r#"{"alg":"HS256","kid":"k2","typ":"at+jwt"}"#), Err(UnknownKeyId)),
    ];
    check_table(&single, TimeCheck::At(NOW), &cases);

    // One key configured without a kid: the only candidate, whatever kid the
    // token names (a one-key edge config need not repeat the authority's kid).
    let kidless = verifier_with(vec![key(None, HS256, SECRET)], rules());
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("kid-less key, no kid in token", hand(H, &good()), Ok(())),
        ("kid-less key, token names a kid", tok_h(r#"{"alg":"HS256","kid":"k9","typ":"at+jwt"}"#), Ok(())),
        ("kid-less key, kid not a string", tok_h(r#"{"alg":"HS256","kid":7,"typ":"at+jwt"}"#), Ok(())),
        ("kid-less key, wrong secret", with_sig(&tok_h(r#"{"alg":"HS256","kid":"k9","typ":"at+jwt"}"#), "AAAA"), Err(SignatureInvalid)),
    ];
    check_table(&kidless, TimeCheck::At(NOW), &cases);
}

#[test]
fn header_rules() {
    let v = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("typ missing", tok_h(r#"{"alg":"HS256"}"#), Err(TypeNotAllowed)),
        ("typ JWT (e.g. an ID token)", tok_h(r#"{"alg":"HS256","typ":"JWT"}"#), Err(TypeNotAllowed)),
        ("typ empty", tok_h(r#"{"alg":"HS256","typ":""}"#), Err(TypeNotAllowed)),
        ("typ a number", tok_h(r#"{"alg":"HS256","typ":1}"#), Err(TypeNotAllowed)),
        ("typ null", tok_h(r#"{"alg":"HS256","typ":null}"#), Err(TypeNotAllowed)),
        ("typ at+jwt with a space", tok_h(r#"{"alg":"HS256","typ":"at+jwt "}"#), Err(TypeNotAllowed)),
        ("crit with a claim name", tok_h(r#"{"alg":"HS256","typ":"at+jwt","crit":["exp"],"exp":1}"#), Err(UnsupportedCritical)),
        ("crit empty array", tok_h(r#"{"alg":"HS256","typ":"at+jwt","crit":[]}"#), Err(UnsupportedCritical)),
        ("crit null", tok_h(r#"{"alg":"HS256","typ":"at+jwt","crit":null}"#), Err(UnsupportedCritical)),
        ("crit with a bad MAC (no MAC work)", with_sig(&tok_h(r#"{"alg":"HS256","crit":["b64"]}"#), "AAAA"), Err(UnsupportedCritical)),
        // typ is checked after the MAC: a forged typ-less token is a bad signature.
        ("typ missing and bad MAC", with_sig(&tok_h(r#"{"alg":"HS256"}"#), "AAAA"), Err(SignatureInvalid)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

/// RFC 7515 §4.1.9: "A recipient using the media type value MUST treat it as
/// if "application/" were prepended to any "typ" value not containing a '/'",
/// and RFC 9068 §4: the resource server MUST verify that "typ" is "at+jwt"
/// or "application/at+jwt".
#[test]
fn typ_application_prefix_is_the_same_media_type() {
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("typ application/at+jwt", tok_h(r#"{"alg":"HS256","typ":"application/at+jwt"}"#), Ok(())),
        ("typ Application/AT+JWT", tok_h(r#"{"alg":"HS256","typ":"Application/AT+JWT"}"#), Ok(())),
        ("typ application/jwt", tok_h(r#"{"alg":"HS256","typ":"application/jwt"}"#), Err(TypeNotAllowed)),
        ("typ text/at+jwt", tok_h(r#"{"alg":"HS256","typ":"text/at+jwt"}"#), Err(TypeNotAllowed)),
    ];
    check_table(&verifier(), TimeCheck::At(NOW), &cases);
}

#[test]
fn json_documents() {
    let v = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Duplicate member names reject the whole document (RFC 7515 §5.2),
        // at any depth, whatever the spelling of the name.
        ("header alg twice", tok_h(r#"{"alg":"HS256","alg":"none","typ":"at+jwt"}"#), Err(DuplicateMember(Segment::Header))),
        ("header alg twice, same value", tok_h(r#"{"alg":"HS256","typ":"at+jwt","alg":"HS256"}"#), Err(DuplicateMember(Segment::Header))),
        ("header alg twice, second escaped", tok_h(r#"{"alg":"HS256","al\u0067":"none","typ":"at+jwt"}"#), Err(DuplicateMember(Segment::Header))),
        ("header kid twice", tok_h(r#"{"alg":"HS256","kid":"k1","kid":"k2","typ":"at+jwt"}"#), Err(DuplicateMember(Segment::Header))),
        ("header unknown member twice", tok_h(r#"{"alg":"HS256","typ":"at+jwt","x":1,"x":1}"#), Err(DuplicateMember(Segment::Header))),
        ("header nested duplicate", tok_h(r#"{"alg":"HS256","typ":"at+jwt","jwk":{"k":"a","k":"b"}}"#), Err(DuplicateMember(Segment::Header))),
        ("header duplicate inside alg's value", tok_h(r#"{"alg":{"a":1,"a":2},"typ":"at+jwt"}"#), Err(DuplicateMember(Segment::Header))),
        ("payload exp twice", tok(&format!(r#"{{"exp":{},{}"#, NOW - 100, &good()[1..])), Err(DuplicateMember(Segment::Payload))),
        ("payload sub twice, escaped", tok(&format!(r#"{{"s\u0075b":"mallory",{}"#, &good()[1..])), Err(DuplicateMember(Segment::Payload))),
        ("payload nested duplicate", tok(&with(&[("ctx", r#"{"role":"user","role":"admin"}"#)])), Err(DuplicateMember(Segment::Payload))),
        ("payload duplicate in an object in an array", tok(&with(&[("ctx", r#"[1,[{"a":1,"a":2}]]"#)])), Err(DuplicateMember(Segment::Payload))),
        ("payload duplicate inside aud", tok(&with(&[("aud", r#"["api",{"x":1,"x":1}]"#)])), Err(DuplicateMember(Segment::Payload))),
        ("payload duplicate inside exp", tok(&with(&[("exp", r#"{"x":1,"x":1}"#)])), Err(DuplicateMember(Segment::Payload))),
        ("payload duplicate inside hosts", tok(&with(&[("hosts", r#"[{"x":1,"x":1}]"#)])), Err(DuplicateMember(Segment::Payload))),
        // Header and payload are exactly one UTF-8 JSON object.
        ("header not JSON", tok_h("alg=HS256"), Err(NotJsonObject(Segment::Header))),
        ("header empty", tok_h(""), Err(NotJsonObject(Segment::Header))),
        ("header an array", tok_h(r#"[{"alg":"HS256"}]"#), Err(NotJsonObject(Segment::Header))),
        ("header a string", tok_h(r#""HS256""#), Err(NotJsonObject(Segment::Header))),
        ("header null", tok_h("null"), Err(NotJsonObject(Segment::Header))),
        ("header trailing garbage", tok_h(r#"{"alg":"HS256","typ":"at+jwt"}x"#), Err(NotJsonObject(Segment::Header))),
        ("header two objects", tok_h(r#"{"alg":"HS256","typ":"at+jwt"}{}"#), Err(NotJsonObject(Segment::Header))),
        ("header unterminated", tok_h(r#"{"alg":"HS256","typ":"at+jwt""#), Err(NotJsonObject(Segment::Header))),
        ("header trailing comma", tok_h(r#"{"alg":"HS256","typ":"at+jwt",}"#), Err(NotJsonObject(Segment::Header))),
        ("header with UTF-8 BOM", hand_bytes(b"\xEF\xBB\xBF{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", good().as_bytes()), Err(NotJsonObject(Segment::Header))),
        ("header invalid UTF-8 in a value", hand_bytes(b"{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"x\":\"\xff\"}", good().as_bytes()), Err(NotJsonObject(Segment::Header))),
        ("header invalid UTF-8 in a name", hand_bytes(b"{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"\xc3\x28\":1}", good().as_bytes()), Err(NotJsonObject(Segment::Header))),
        ("payload not JSON", tok("sub=alice"), Err(NotJsonObject(Segment::Payload))),
        ("payload empty", tok(""), Err(NotJsonObject(Segment::Payload))),
        ("payload an array", tok(&format!("[{}]", good())), Err(NotJsonObject(Segment::Payload))),
        ("payload a string", tok(r#""alice""#), Err(NotJsonObject(Segment::Payload))),
        ("payload a number", tok("1"), Err(NotJsonObject(Segment::Payload))),
        ("payload trailing garbage", tok(&format!("{}x", good())), Err(NotJsonObject(Segment::Payload))),
        ("payload two objects", tok(&format!("{}{{}}", good())), Err(NotJsonObject(Segment::Payload))),
        ("payload trailing whitespace is fine", tok(&format!("{} \n", good())), Ok(())),
        ("payload lone surrogate escape", tok(&with(&[("x", r#""\ud800""#)])), Err(NotJsonObject(Segment::Payload))),
        ("payload nested 200 deep", tok(&with(&[("deep", &format!("{}{}", "[".repeat(200), "]".repeat(200)))])), Err(NotJsonObject(Segment::Payload))),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn invalid_utf8_payload() {
    // Raw bytes that are not UTF-8, in a value and in a member name.
    let good = good();
    let mut in_value = good.clone().into_bytes();
    let at = good.find("alice").unwrap();
    in_value[at] = 0xff;
    let mut in_name = good.into_bytes();
    in_name[2] = 0xc3; // `"iss"` becomes `"\xc3ss"`: a truncated two-byte sequence
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("payload 0xff inside sub", hand_bytes(H.as_bytes(), &in_value), Err(NotJsonObject(Segment::Payload))),
        ("payload broken sequence in a name", hand_bytes(H.as_bytes(), &in_name), Err(NotJsonObject(Segment::Payload))),
    ];
    check_table(&verifier(), TimeCheck::At(NOW), &cases);
}

#[test]
fn base64url_strictness() {
    let v = verifier();
    let hx = mutable_segment(r#"{"alg":"HS256","typ":"at+jwt","note":"?>?~"}"#);
    let px = mutable_segment(&with(&[("note", r#""?>?~""#)]));
    let p = enc(good().as_bytes());
    let base = assemble(&hx, &px);
    // A token whose signature contains `-` or `_` (found deterministically).
    let (sig_h, sig_p, sig) = (0..)
        .map(|i| {
            let p = enc(with(&[("n", &n(i))]).as_bytes());
            let t = assemble(&hx, &p);
            let s = t.rsplit('.').next().unwrap().to_owned();
            (hx.clone(), p, s)
        })
        .find(|(_, _, s)| s.contains(['-', '_']))
        .unwrap();
    let sig_prefix = format!("{sig_h}.{sig_p}");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("mutable header and payload are valid as is", base.clone(), Ok(())),
        ("signature with - or _ valid as is", format!("{sig_prefix}.{sig}"), Ok(())),
        // Header: the MAC is computed over the hostile text, so only the
        // encoding can be at fault.
        ("header padded", assemble(&padded(&hx), &px), Err(BadEncoding(Segment::Header))),
        ("header standard alphabet", assemble(&std_alphabet(&hx), &px), Err(BadEncoding(Segment::Header))),
        ("header non-canonical trailing bits", assemble(&noncanonical(&hx), &px), Err(BadEncoding(Segment::Header))),
        ("header leading space", assemble(&format!(" {hx}"), &px), Err(BadEncoding(Segment::Header))),
        ("header inner space", assemble(&format!("{} {}", &hx[..8], &hx[8..]), &px), Err(BadEncoding(Segment::Header))),
        ("header trailing newline", assemble(&format!("{hx}\n"), &px), Err(BadEncoding(Segment::Header))),
        ("header tab", assemble(&format!("{}\t{}", &hx[..8], &hx[8..]), &px), Err(BadEncoding(Segment::Header))),
        ("header impossible length", assemble(&impossible_length(&hx), &px), Err(BadEncoding(Segment::Header))),
        ("header percent-encoded", assemble(&format!("{hx}%3D"), &px), Err(BadEncoding(Segment::Header))),
        // Payload: the MAC verifies, then the payload must decode strictly.
        ("payload padded", assemble(&hx, &padded(&px)), Err(BadEncoding(Segment::Payload))),
        ("payload standard alphabet", assemble(&hx, &std_alphabet(&px)), Err(BadEncoding(Segment::Payload))),
        ("payload non-canonical trailing bits", assemble(&hx, &noncanonical(&px)), Err(BadEncoding(Segment::Payload))),
        ("payload leading space", assemble(&hx, &format!(" {p}")), Err(BadEncoding(Segment::Payload))),
        ("payload inner CR LF", assemble(&hx, &format!("{}\r\n{}", &p[..8], &p[8..])), Err(BadEncoding(Segment::Payload))),
        ("payload impossible length", assemble(&hx, &impossible_length(&p)), Err(BadEncoding(Segment::Payload))),
        // A forged payload spelling without a valid MAC is just a bad signature.
        ("payload non-canonical, MAC of the canonical one", with_sig(&assemble(&hx, &noncanonical(&px)), base.rsplit('.').next().unwrap()), Err(SignatureInvalid)),
        // Signature.
        ("signature padded", format!("{sig_prefix}.{}", padded(&sig)), Err(BadEncoding(Segment::Signature))),
        ("signature standard alphabet", format!("{sig_prefix}.{}", std_alphabet(&sig)), Err(BadEncoding(Segment::Signature))),
        ("signature non-canonical trailing bits", format!("{sig_prefix}.{}", noncanonical(&sig)), Err(BadEncoding(Segment::Signature))),
        ("signature trailing space", format!("{sig_prefix}.{sig} "), Err(BadEncoding(Segment::Signature))),
        ("signature leading newline", format!("{sig_prefix}.\n{sig}"), Err(BadEncoding(Segment::Signature))),
        ("signature with ?", format!("{sig_prefix}.{sig}?"), Err(BadEncoding(Segment::Signature))),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn mac_checks() {
    let v = verifier();
    let t = tok(&good());
    let (prefix, sig) = t.rsplit_once('.').unwrap();
    let tag = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut flipped = tag.clone();
    flipped[31] ^= 1;
    let other = hand_with(HS256, SECRET, H, &with(&[("sub", r#""bob""#)]));
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("MAC intact", t.clone(), Ok(())),
        ("MAC last bit flipped", format!("{prefix}.{}", enc(&flipped)), Err(SignatureInvalid)),
        ("MAC truncated to 31 bytes", format!("{prefix}.{}", enc(&tag[..31])), Err(SignatureInvalid)),
        ("MAC truncated to 16 bytes", format!("{prefix}.{}", enc(&tag[..16])), Err(SignatureInvalid)),
        ("MAC truncated to 1 byte", format!("{prefix}.{}", enc(&tag[..1])), Err(SignatureInvalid)),
        ("MAC empty", format!("{prefix}."), Err(SignatureInvalid)),
        ("MAC over-long by a zero byte", format!("{prefix}.{}", enc(&[&tag[..], &[0]].concat())), Err(SignatureInvalid)),
        ("MAC doubled", format!("{prefix}.{}", enc(&[&tag[..], &tag[..]].concat())), Err(SignatureInvalid)),
        ("MAC of HS512 length", format!("{prefix}.{}", enc(&mac(HS512, SECRET, prefix.as_bytes()))), Err(SignatureInvalid)),
        ("MAC with another secret", hand_with(HS256, OTHER_SECRET, H, &good()), Err(SignatureInvalid)),
        ("MAC of another payload", with_sig(&t, other.rsplit('.').next().unwrap()), Err(SignatureInvalid)),
        ("MAC all zero", format!("{prefix}.{}", enc(&[0; 32])), Err(SignatureInvalid)),
        // The payload is not parsed before its MAC checks out.
        ("garbage payload, bad MAC", with_sig(&tok("not json"), sig), Err(SignatureInvalid)),
        ("garbage payload encoding, bad MAC", format!("{}.!!!.{sig}", prefix.split('.').next().unwrap()), Err(SignatureInvalid)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn claim_types() {
    // Every typed claim of the wrong JSON type or out of range is refused with
    // its own reason, never skipped (the class of CVE-2026-25537).
    let v = verifier();
    let over = n(MAX_NUMERIC_DATE + 1);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("exp string \"123\"", tok(&with(&[("exp", r#""123""#)])), Err(ClaimType(Claim::Exp))),
        ("exp string of a future date", tok(&with(&[("exp", &format!("\"{}\"", NOW + 600))])), Err(ClaimType(Claim::Exp))),
        ("exp float 1.0", tok(&with(&[("exp", "1.0")])), Err(ClaimType(Claim::Exp))),
        ("exp float of a future date", tok(&with(&[("exp", &format!("{}.0", NOW + 600))])), Err(ClaimType(Claim::Exp))),
        ("exp 1e10", tok(&with(&[("exp", "1e10")])), Err(ClaimType(Claim::Exp))),
        ("exp 1E3", tok(&with(&[("exp", "1E3")])), Err(ClaimType(Claim::Exp))),
        ("exp negative", tok(&with(&[("exp", "-1")])), Err(ClaimType(Claim::Exp))),
        ("exp -0", tok(&with(&[("exp", "-0")])), Err(ClaimType(Claim::Exp))),
        ("exp true", tok(&with(&[("exp", "true")])), Err(ClaimType(Claim::Exp))),
        ("exp array", tok(&with(&[("exp", &format!("[{}]", NOW + 600))])), Err(ClaimType(Claim::Exp))),
        ("exp object", tok(&with(&[("exp", r#"{"v":1}"#)])), Err(ClaimType(Claim::Exp))),
        ("exp null", tok(&with(&[("exp", "null")])), Err(ClaimType(Claim::Exp))),
        ("exp 253402300800 (year 10000)", tok(&with(&[("exp", &over)])), Err(ClaimType(Claim::Exp))),
        ("exp u64::MAX", tok(&with(&[("exp", &n(u64::MAX))])), Err(ClaimType(Claim::Exp))),
        ("exp 2^64", tok(&with(&[("exp", "18446744073709551616")])), Err(ClaimType(Claim::Exp))),
        ("nbf string", tok(&with(&[("nbf", r#""123""#)])), Err(ClaimType(Claim::Nbf))),
        ("nbf float", tok(&with(&[("nbf", "1.5")])), Err(ClaimType(Claim::Nbf))),
        ("nbf negative", tok(&with(&[("nbf", "-5")])), Err(ClaimType(Claim::Nbf))),
        ("nbf bool", tok(&with(&[("nbf", "false")])), Err(ClaimType(Claim::Nbf))),
        ("nbf null", tok(&with(&[("nbf", "null")])), Err(ClaimType(Claim::Nbf))),
        ("nbf array", tok(&with(&[("nbf", "[]")])), Err(ClaimType(Claim::Nbf))),
        ("nbf beyond year 9999", tok(&with(&[("nbf", &over)])), Err(ClaimType(Claim::Nbf))),
        ("iat string", tok(&with(&[("iat", r#""123""#)])), Err(ClaimType(Claim::Iat))),
        ("iat float", tok(&with(&[("iat", "1700000000.5")])), Err(ClaimType(Claim::Iat))),
        ("iat negative", tok(&with(&[("iat", "-1")])), Err(ClaimType(Claim::Iat))),
        ("iat object", tok(&with(&[("iat", "{}")])), Err(ClaimType(Claim::Iat))),
        ("iat beyond year 9999", tok(&with(&[("iat", &over)])), Err(ClaimType(Claim::Iat))),
        ("ver string", tok(&with(&[("ver", r#""7""#)])), Err(ClaimType(Claim::Ver))),
        ("ver float", tok(&with(&[("ver", "7.0")])), Err(ClaimType(Claim::Ver))),
        ("ver negative", tok(&with(&[("ver", "-1")])), Err(ClaimType(Claim::Ver))),
        ("ver bool", tok(&with(&[("ver", "true")])), Err(ClaimType(Claim::Ver))),
        ("ver null", tok(&with(&[("ver", "null")])), Err(ClaimType(Claim::Ver))),
        ("ver array", tok(&with(&[("ver", "[7]")])), Err(ClaimType(Claim::Ver))),
        ("ver 2^53", tok(&with(&[("ver", &n(MAX_VERSION + 1))])), Err(ClaimType(Claim::Ver))),
        ("iss a number", tok(&with(&[("iss", "1")])), Err(ClaimType(Claim::Iss))),
        ("iss an array", tok(&with(&[("iss", &format!("[{ISS:?}]"))])), Err(ClaimType(Claim::Iss))),
        ("sub a number", tok(&with(&[("sub", "42")])), Err(ClaimType(Claim::Sub))),
        ("sub null", tok(&with(&[("sub", "null")])), Err(ClaimType(Claim::Sub))),
        ("sid a number", tok(&with(&[("sid", "7")])), Err(ClaimType(Claim::Sid))),
        ("jti an array", tok(&with(&[("jti", r#"["t-1"]"#)])), Err(ClaimType(Claim::Jti))),
        ("scope a number", tok(&with(&[("scope", "1")])), Err(ClaimType(Claim::Scope))),
        ("scope an array (not RFC 9068)", tok(&with(&[("scope", r#"["read","write"]"#)])), Err(ClaimType(Claim::Scope))),
        ("hosts a string", tok(&with(&[("hosts", r#""10.0.0.1""#)])), Err(ClaimType(Claim::Hosts))),
        ("hosts containing a number", tok(&with(&[("hosts", r#"["10.0.0.1",1]"#)])), Err(ClaimType(Claim::Hosts))),
        ("hosts an object", tok(&with(&[("hosts", r#"{"10.0.0.1":true}"#)])), Err(ClaimType(Claim::Hosts))),
        ("hosts null", tok(&with(&[("hosts", "null")])), Err(ClaimType(Claim::Hosts))),
        ("aud a number", tok(&with(&[("aud", "1")])), Err(ClaimType(Claim::Aud))),
        ("aud array containing a number", tok(&with(&[("aud", r#"["api",1]"#)])), Err(ClaimType(Claim::Aud))),
        ("aud array containing null", tok(&with(&[("aud", r#"["api",null]"#)])), Err(ClaimType(Claim::Aud))),
        ("aud nested array", tok(&with(&[("aud", r#"[["api"]]"#)])), Err(ClaimType(Claim::Aud))),
        ("aud object", tok(&with(&[("aud", r#"{"api":1}"#)])), Err(ClaimType(Claim::Aud))),
        // Types are checked before time: a bad type cannot hide behind expiry,
        // nor skip the expiry check.
        ("expired and ver a string", tok(&with(&[("exp", &n(NOW - 1)), ("ver", r#""7""#)])), Err(ClaimType(Claim::Ver))),
        ("exp a string and no sub", tok(&edit(&[("exp", r#""1""#)], &["sub"])), Err(ClaimType(Claim::Exp))),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn claim_values() {
    let v = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("iss wrong", tok(&with(&[("iss", r#""https://evil.example""#)])), Err(IssuerMismatch)),
        ("iss missing", tok(&without(&["iss"])), Err(IssuerMismatch)),
        ("iss with trailing slash", tok(&with(&[("iss", r#""https://auth.example/""#)])), Err(IssuerMismatch)),
        ("iss differs in case", tok(&with(&[("iss", r#""https://AUTH.example""#)])), Err(IssuerMismatch)),
        ("iss empty", tok(&with(&[("iss", r#""""#)])), Err(IssuerMismatch)),
        ("aud string configured", tok(&with(&[("aud", r#""billing""#)])), Ok(())),
        ("aud string not configured", tok(&with(&[("aud", r#""other""#)])), Err(AudienceMismatch)),
        ("aud differs in case", tok(&with(&[("aud", r#""API""#)])), Err(AudienceMismatch)),
        ("aud array, one configured", tok(&with(&[("aud", r#"["x","y","api"]"#)])), Ok(())),
        ("aud array, none configured", tok(&with(&[("aud", r#"["x","y"]"#)])), Err(AudienceMismatch)),
        ("aud empty array", tok(&with(&[("aud", "[]")])), Err(AudienceMismatch)),
        ("aud missing", tok(&without(&["aud"])), Err(AudienceMismatch)),
        ("sub missing", tok(&without(&["sub"])), Err(SubjectMissing)),
        ("sub empty", tok(&with(&[("sub", r#""""#)])), Err(SubjectMissing)),
        ("ver missing", tok(&without(&["ver"])), Err(VersionMissing)),
        ("everything missing", tok("{}"), Err(ExpirationMissing)),
        ("everything but exp missing", tok(&format!(r#"{{"exp":{}}}"#, NOW + 1)), Err(IssuerMismatch)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn time_without_skew() {
    let v = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // RFC 7519 §4.1.4: expired "on or after" exp.
        ("exp == now", tok(&with(&[("exp", &n(NOW))])), Err(Expired)),
        ("exp == now + 1", tok(&with(&[("exp", &n(NOW + 1))])), Ok(())),
        ("exp == now - 1", tok(&with(&[("exp", &n(NOW - 1))])), Err(Expired)),
        ("exp 0", tok(&with(&[("exp", "0")])), Err(Expired)),
        ("nbf == now", tok(&with(&[("nbf", &n(NOW))])), Ok(())),
        ("nbf == now + 1", tok(&with(&[("nbf", &n(NOW + 1))])), Err(NotYetValid)),
        ("nbf 0", tok(&with(&[("nbf", "0")])), Ok(())),
        ("iat == now", tok(&with(&[("iat", &n(NOW))])), Ok(())),
        ("iat == now + 1", tok(&with(&[("iat", &n(NOW + 1))])), Err(IssuedInFuture)),
        ("iat far future", tok(&with(&[("iat", &n(MAX_NUMERIC_DATE))])), Err(IssuedInFuture)),
        ("expired and from the wrong issuer: time first", tok(&with(&[("exp", &n(NOW)), ("iss", r#""x""#)])), Err(Expired)),
        // Never-expiring API tokens: only with a sid and when configured.
        ("no exp, no sid", tok(&without(&["exp"])), Err(ExpirationMissing)),
        ("no exp, sid, not allowed by config", tok(&edit(&[("sid", r#""api-1""#)], &["exp"])), Err(ExpirationMissing)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);

    let mut never = rules();
    never.allow_never_expiring = true;
    let v = verifier_with(vec![key(Some("k1"), HS256, SECRET)], never);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("allowed: no exp, sid", tok(&edit(&[("sid", r#""api-1""#)], &["exp"])), Ok(())),
        ("allowed: no exp, no sid", tok(&without(&["exp"])), Err(ExpirationMissing)),
        ("allowed: no exp, empty sid", tok(&edit(&[("sid", r#""""#)], &["exp"])), Err(ExpirationMissing)),
        ("allowed: no exp, sid null", tok(&edit(&[("sid", "null")], &["exp"])), Err(ClaimType(Claim::Sid))),
        ("allowed: exp null is not absent", tok(&with(&[("sid", r#""api-1""#), ("exp", "null")])), Err(ClaimType(Claim::Exp))),
        ("allowed: with exp, still expires", tok(&with(&[("sid", r#""api-1""#), ("exp", &n(NOW))])), Err(Expired)),
        ("allowed: no exp, sid, future nbf", tok(&edit(&[("sid", r#""api-1""#), ("nbf", &n(NOW + 1))], &["exp"])), Err(NotYetValid)),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);
}

#[test]
fn time_with_skew() {
    const SKEW: u64 = 60;
    let mut r = rules();
    r.clock_skew = SKEW;
    let v = verifier_with(vec![key(Some("k1"), HS256, SECRET)], r);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("skew: exp == now - skew", tok(&with(&[("exp", &n(NOW - SKEW))])), Err(Expired)),
        ("skew: exp == now - skew + 1", tok(&with(&[("exp", &n(NOW - SKEW + 1))])), Ok(())),
        ("skew: exp == now", tok(&with(&[("exp", &n(NOW))])), Ok(())),
        ("skew: nbf == now + skew", tok(&with(&[("nbf", &n(NOW + SKEW))])), Ok(())),
        ("skew: nbf == now + skew + 1", tok(&with(&[("nbf", &n(NOW + SKEW + 1))])), Err(NotYetValid)),
        ("skew: iat == now + skew", tok(&with(&[("iat", &n(NOW + SKEW))])), Ok(())),
        ("skew: iat == now + skew + 1", tok(&with(&[("iat", &n(NOW + SKEW + 1))])), Err(IssuedInFuture)),
        ("skew: exp at the largest date", tok(&with(&[("exp", &n(MAX_NUMERIC_DATE))])), Ok(())),
    ];
    check_table(&v, TimeCheck::At(NOW), &cases);

    // At the far end of time nothing overflows (the skew saturates).
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("clock u64::MAX: expired", tok(&with(&[("exp", &n(MAX_NUMERIC_DATE))])), Err(Expired)),
    ];
    check_table(&v, TimeCheck::At(u64::MAX), &cases);
}

#[test]
fn time_skipped() {
    // TimeCheck::Skip (offline inspection) ignores exp/nbf/iat values but
    // still checks their types and every other claim.
    let v = verifier();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("skip: expired", tok(&with(&[("exp", "1")])), Ok(())),
        ("skip: no exp", tok(&without(&["exp"])), Ok(())),
        ("skip: nbf in the future", tok(&with(&[("nbf", &n(MAX_NUMERIC_DATE))])), Ok(())),
        ("skip: exp a string", tok(&with(&[("exp", r#""1""#)])), Err(ClaimType(Claim::Exp))),
        ("skip: expired, wrong issuer", tok(&with(&[("exp", "1"), ("iss", r#""x""#)])), Err(IssuerMismatch)),
    ];
    check_table(&v, TimeCheck::Skip, &cases);
}

#[test]
fn descriptions_are_stable_and_codes_registered() {
    let mut seen = HashSet::new();
    for (e, d) in DESCRIPTIONS {
        assert_eq!(error_contract(*e), Ok(()));
        assert_eq!(e.description(), *d);
        assert!(seen.insert(*d), "two variants share the description {d:?}");
    }
    // Every invalid_token reason of the table (but a rejected refresh, which
    // is no token's fault) is produced by some variant.
    let produced: HashSet<_> = DESCRIPTIONS.iter().map(|(e, _)| e.reason()).collect();
    for r in Reason::ALL {
        let token_reason = r.status() == 401 && r != Reason::NoToken && r != Reason::RefreshRejected;
        assert_eq!(produced.contains(&r), token_reason, "{r:?}");
    }
}

#[test]
fn key_configuration() {
    let err = |r: Result<Key, KeyError>| r.err();
    assert_eq!(
        err(Key::new(None, HS256, &SECRET[..31])),
        Some(KeyError::TooShort {
            alg: HS256,
            min: 32,
            got: 31
        })
    );
    assert_eq!(
        err(Key::new(None, HS384, &SECRET[..47])),
        Some(KeyError::TooShort {
            alg: HS384,
            min: 48,
            got: 47
        })
    );
    assert_eq!(
        err(Key::new(None, HS512, &SECRET[..63])),
        Some(KeyError::TooShort {
            alg: HS512,
            min: 64,
            got: 63
        })
    );
    assert!(Key::new(None, HS256, &SECRET[..32]).is_ok());
    assert!(Key::new(None, HS512, SECRET).is_ok());
    assert_eq!(KeySet::new(vec![]).err(), Some(KeyError::Empty));
    assert_eq!(
        KeySet::new(vec![
            key(Some("a"), HS256, SECRET),
            key(None, HS256, SECRET)
        ])
        .err(),
        Some(KeyError::MissingKid)
    );
    assert_eq!(
        KeySet::new(vec![
            key(Some("a"), HS256, SECRET),
            key(Some("a"), HS384, SECRET)
        ])
        .err(),
        Some(KeyError::DuplicateKid("a".into()))
    );
    // The secret never appears in Debug output.
    let shown = format!("{:?}", key(Some("k1"), HS256, SECRET));
    assert!(!shown.contains("tollgate-spec-secret"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

// ───────────────────────────── Wycheproof ─────────────────────────────

/// Wycheproof's JWS vectors (tests/vectors/README.md).
const WYCHEPROOF_JWS: &str = include_str!("vectors/json_web_signature_test.json");

/// Four cases of the "base64" group carry the wrong label; see
/// tests/vectors/README.md. `(tcId, corrected validity, why)`.
const WYCHEPROOF_CORRECTIONS: &[(u64, bool, &str)] = &[
    (367, true, "invalidBase64Padding: byte-identical to the valid tcId 357 (the padding was lost)"),
    (370, true, "invalidBase64PaddingInPayload: byte-identical to the valid tcId 357 (the padding was lost)"),
    (372, false, "InvalidCharacterInsertedInHeader: labelled valid, but `?` is not base64url"),
    (373, false, "InvalidCharacterInsertedInPayload: labelled valid, but `?` is not base64url"),
];

/// The exact outcome of every HS256 `oct` case through `KeySet::verify`.
const WYCHEPROOF_EXPECT: &[(u64, Expect)] = &[
    // group "hs256", kid "kid-aes-sign"
    (1, Ok(())),
    (2, Err(SignatureInvalid)),
    (3, Err(SignatureInvalid)),
    (4, Err(Malformed)),
    (5, Err(SignatureInvalid)),
    (6, Err(SignatureInvalid)),
    (7, Err(Malformed)),
    (8, Err(UnknownKeyId)),
    (9, Err(NotJsonObject(Segment::Header))),
    (10, Err(Malformed)),
    (11, Err(NotJsonObject(Segment::Header))),
    (12, Err(Malformed)),
    (13, Err(Malformed)),
    (14, Err(Malformed)),
    (15, Err(Malformed)),
    (16, Err(AlgorithmNone)),
    (17, Err(Malformed)),
    // groups "rfc7520" (RFC 7520 Figure 35, listed twice)
    (348, Ok(())),
    (352, Ok(())),
    // group "base64", kid "hs256-key"
    (357, Ok(())),
    (358, Ok(())),
    (359, Ok(())),
    (360, Err(BadEncoding(Segment::Signature))),
    (361, Err(BadEncoding(Segment::Signature))),
    (362, Err(BadEncoding(Segment::Signature))),
    (363, Err(BadEncoding(Segment::Signature))),
    (364, Err(BadEncoding(Segment::Signature))),
    (365, Err(BadEncoding(Segment::Header))),
    (366, Err(BadEncoding(Segment::Header))),
    (367, Ok(())),
    (368, Err(BadEncoding(Segment::Payload))),
    (369, Err(BadEncoding(Segment::Payload))),
    (370, Ok(())),
    (371, Err(BadEncoding(Segment::Payload))),
    (372, Err(BadEncoding(Segment::Header))),
    (373, Err(SignatureInvalid)),
    // 374: the MAC is that of the canonical spelling, so the changed bits
    // break the MAC; 375: the MAC is over the non-canonical text itself, so
    // it verifies and the strict payload decoding refuses it.
    (374, Err(SignatureInvalid)),
    (375, Err(BadEncoding(Segment::Payload))),
    (376, Ok(())),
    (377, Ok(())),
];

fn find_tc(doc: &serde_json::Value, id: u64) -> &serde_json::Value {
    doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .find(|t| t["tcId"] == id)
        .unwrap_or_else(|| panic!("tcId {id} not in the file"))
}

#[test]
fn wycheproof_jws_hs256() {
    let doc: serde_json::Value = serde_json::from_str(WYCHEPROOF_JWS).expect("vector file is JSON");
    let tests_by_id = |id: u64| find_tc(&doc, id);
    // The corrections rest on facts about the file; if upstream fixes its
    // labels these fail, and the corrections should go.
    let valid_357 = tests_by_id(357);
    assert_eq!(valid_357["result"], "valid");
    for id in [367, 370] {
        let t = tests_by_id(id);
        assert_eq!(t["result"], "invalid", "tcId {id} label");
        assert_eq!(
            t["jws"], valid_357["jws"],
            "tcId {id} is byte-identical to tcId 357"
        );
    }
    for id in [372, 373] {
        let t = tests_by_id(id);
        assert_eq!(t["result"], "valid", "tcId {id} label");
        assert!(
            t["jws"].as_str().unwrap().contains('?'),
            "tcId {id} contains `?`"
        );
    }

    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let jwk = &group["private"];
        if jwk["kty"] != "oct" {
            continue;
        }
        assert_eq!(jwk["alg"], "HS256", "every oct group is HS256");
        let secret = b64::decode(jwk["k"].as_str().unwrap().as_bytes()).expect("k is base64url");
        let kid = jwk["kid"].as_str().map(str::to_owned);
        let keys = KeySet::new(vec![Key::new(kid, HS256, &secret).expect("group key")]).unwrap();
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let labelled_valid = match t["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {id}: result {other:?}"),
            };
            let valid = WYCHEPROOF_CORRECTIONS
                .iter()
                .find(|(c, _, _)| *c == id)
                .map_or(labelled_valid, |(_, corrected, _)| *corrected);
            let got = keys
                .verify(t["jws"].as_str().unwrap().as_bytes(), 8192)
                .map(|_| ());
            let comment = t["comment"].as_str().unwrap_or("");
            if got.is_ok() != valid {
                failures.push(format!("tcId {id} ({comment}): valid={valid}, got {got:?}"));
            }
            match WYCHEPROOF_EXPECT.iter().find(|(c, _)| *c == id) {
                Some((_, want)) if *want == got => {}
                Some((_, want)) => {
                    failures.push(format!("tcId {id} ({comment}): want {want:?}, got {got:?}"))
                }
                None => failures.push(format!(
                    "tcId {id} ({comment}): no expectation, got {got:?}"
                )),
            }
            if let Err(e) = got {
                if let Err(why) = error_contract(e) {
                    failures.push(format!("tcId {id}: {why}"));
                }
            }
            ran.push(id);
        }
    }
    assert!(
        failures.is_empty(),
        "Wycheproof:\n  {}",
        failures.join("\n  ")
    );
    let expected: Vec<u64> = WYCHEPROOF_EXPECT.iter().map(|(id, _)| *id).collect();
    assert_eq!(ran, expected, "every HS256 oct case ran, in file order");
}

// ──────────────────────── RFC 7515 Appendix A.1 ────────────────────────

/// RFC 7515 Appendix A.1: header `{"typ":"JWT",\r\n "alg":"HS256"}`.
const RFC7515_A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
    .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
    .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The JWK `k` of RFC 7515 Appendix A.1.1.
const RFC7515_A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

#[test]
fn rfc7515_appendix_a1() {
    let secret = b64::decode(RFC7515_A1_K.as_bytes()).unwrap();
    let key = Key::new(None, HS256, &secret).unwrap();
    let keys = KeySet::new(vec![key.clone()]).unwrap();

    // The JWS layer: the MAC verifies, the header (with CR LF) parses.
    let jws = keys
        .verify(RFC7515_A1.as_bytes(), 4096)
        .expect("RFC 7515 A.1 verifies");
    assert_eq!(
        jws.payload,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
    assert_eq!(format!("{:?}", jws.header.typ), r#"Some(Valid("JWT"))"#);
    assert!(!jws.header.crit && jws.header.kid.is_none());

    // The claims layer, exp checking off: iss "joe" is accepted, then the
    // example stops being an access token: it has no aud (nor sub, ver).
    let joe = ClaimRules {
        issuer: "joe".into(),
        ..rules()
    };
    let check = |rules: &ClaimRules, time| {
        rules
            .check(RawClaims::parse(&jws.payload).unwrap(), time)
            .map(|_| ())
    };
    assert_eq!(check(&joe, TimeCheck::Skip), Err(AudienceMismatch));
    assert_eq!(
        check(&rules(), TimeCheck::Skip),
        Err(IssuerMismatch),
        "iss is compared"
    );
    // exp 1300819380 (2011-03-22T18:43:00Z): expired now, valid a second before.
    assert_eq!(check(&joe, TimeCheck::At(NOW)), Err(Expired));
    assert_eq!(check(&joe, TimeCheck::At(1_300_819_380)), Err(Expired));
    assert_eq!(
        check(&joe, TimeCheck::At(1_300_819_379)),
        Err(AudienceMismatch)
    );
    // With an audience, a subject and a version it would pass: those are the
    // only missing pieces.
    let raw = RawClaims::parse(&jws.payload).unwrap();
    assert!(raw.aud.is_none() && raw.sub.is_none() && raw.ver.is_none());

    // Through the access-token Verifier: typ JWT is not at+jwt...
    let mut v = verifier_with(vec![key], joe);
    assert_eq!(
        v.verify(RFC7515_A1, TimeCheck::Skip).map(|_| ()),
        Err(TypeNotAllowed)
    );
    // ...and with JWT allowed, the first missing access-token claim is aud.
    v.allowed_typ.push("JWT".into());
    assert_eq!(
        v.verify(RFC7515_A1, TimeCheck::Skip).map(|_| ()),
        Err(AudienceMismatch)
    );
    assert_eq!(
        v.verify(RFC7515_A1, TimeCheck::At(NOW)).map(|_| ()),
        Err(Expired)
    );

    // One bit off anywhere and it is no longer the RFC's token.
    let tampered = RFC7515_A1.replacen("eyJpc3MiOiJqb2Ui", "eyJpc3MiOiJqb2Ji", 1);
    assert_eq!(
        keys.verify(tampered.as_bytes(), 4096).map(|_| ()).err(),
        Some(SignatureInvalid)
    );
}

// ─────────────────────── mint → verify round trip ───────────────────────

#[test]
fn mint_round_trip() {
    let k = key(Some("k1"), HS256, SECRET);
    let claims = Claims {
        iss: ISS.into(),
        sub: "svc:billing".into(),
        aud: vec!["billing".into(), "api".into()],
        exp: None,
        nbf: Some(NOW - 5),
        iat: Some(NOW - 5),
        jti: Some("j".into()),
        ver: 0,
        sid: Some("api-token-9".into()),
        scope: Some("admin read".into()),
        hosts: Some(vec!["192.0.2.0/24".into()]),
    };
    let token = mint(&k, &claims);
    let mut never = rules();
    never.allow_never_expiring = true;
    let v = verifier_with(vec![k], never);
    assert_eq!(v.verify(&token, TimeCheck::At(NOW)), Ok(claims.clone()));
    // Without the configuration switch it is refused.
    assert_eq!(
        verifier().verify(&token, TimeCheck::At(NOW)).map(|_| ()),
        Err(ExpirationMissing)
    );
}

// ─────────────────────── interop with jsonwebtoken ───────────────────────

#[cfg(not(target_arch = "wasm32"))]
mod interop {
    use super::*;
    use jsonwebtoken::{decode, encode, DecodingKey, EncodingKey, Header, Validation};

    fn their_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
        match alg {
            HS256 => jsonwebtoken::Algorithm::HS256,
            HS384 => jsonwebtoken::Algorithm::HS384,
            HS512 => jsonwebtoken::Algorithm::HS512,
        }
    }

    fn all_keys() -> Verifier {
        verifier_with(
            vec![
                key(Some("k256"), HS256, SECRET),
                key(Some("k384"), HS384, SECRET),
                key(Some("k512"), HS512, SECRET),
            ],
            rules(),
        )
    }

    // jsonwebtoken 10+ refuses an empty secret when the key is made.
    fn enc_key(secret: &[u8]) -> EncodingKey {
        EncodingKey::from_secret(secret).expect("a non-empty HMAC secret")
    }

    fn dec_key(secret: &[u8]) -> DecodingKey {
        DecodingKey::from_secret(secret).expect("a non-empty HMAC secret")
    }

    fn claims_value() -> serde_json::Value {
        serde_json::json!({
            "iss": ISS, "sub": "alice", "aud": ["api"], "exp": NOW + 600,
            "iat": NOW, "ver": 3, "sid": "s-1", "scope": "read"
        })
    }

    #[test]
    fn jsonwebtoken_minted_tokens_verify_here() {
        let v = all_keys();
        for (alg, kid) in [(HS256, "k256"), (HS384, "k384"), (HS512, "k512")] {
            let mut header = Header::new(their_alg(alg));
            header.typ = Some("at+jwt".into());
            header.kid = Some(kid.into());
            let token =
                encode(&header, &claims_value(), &enc_key(SECRET)).unwrap();
            let claims = v
                .verify(&token, TimeCheck::At(NOW))
                .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
            assert_eq!(
                (claims.sub.as_str(), claims.ver, claims.sid.as_deref()),
                ("alice", 3, Some("s-1"))
            );
            assert_eq!(claims.aud, vec!["api".to_owned()]);
        }
    }

    #[test]
    fn jsonwebtoken_refusals() {
        let v = all_keys();
        let mint_with = |typ: Option<&str>, kid: &str, secret: &[u8]| {
            let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
            header.typ = typ.map(str::to_owned);
            header.kid = Some(kid.into());
            encode(&header, &claims_value(), &enc_key(secret)).unwrap()
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("jsonwebtoken: another secret", mint_with(Some("at+jwt"), "k256", OTHER_SECRET), Err(SignatureInvalid)),
            ("jsonwebtoken: default typ JWT", mint_with(Some("JWT"), "k256", SECRET), Err(TypeNotAllowed)),
            ("jsonwebtoken: no typ", mint_with(None, "k256", SECRET), Err(TypeNotAllowed)),
            ("jsonwebtoken: HS256 under the HS384 kid", mint_with(Some("at+jwt"), "k384", SECRET), Err(AlgorithmMismatch)),
        ];
        check_table(&v, TimeCheck::At(NOW), &cases);
    }

    #[test]
    fn our_tokens_verify_under_jsonwebtoken() {
        for (alg, kid) in [(HS256, "k256"), (HS384, "k384"), (HS512, "k512")] {
            let claims = Claims {
                iss: ISS.into(),
                sub: "alice".into(),
                aud: vec!["api".into()],
                // 2100-01-01: jsonwebtoken checks exp against the real clock.
                exp: Some(4_102_444_800),
                nbf: None,
                iat: Some(NOW),
                jti: Some("j-1".into()),
                ver: 12,
                sid: None,
                scope: Some("read".into()),
                hosts: None,
            };
            let token = mint(&key(Some(kid), alg, SECRET), &claims);
            let mut validation = Validation::new(their_alg(alg));
            validation.set_issuer(&[ISS]);
            validation.set_audience(&["api"]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            let data =
                decode::<serde_json::Value>(&token, &dec_key(SECRET), &validation)
                    .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(data.header.kid.as_deref(), Some(kid));
            assert_eq!(data.claims["ver"], 12);
            assert_eq!(data.claims["aud"], "api");
            // And jsonwebtoken refuses it under another secret.
            assert!(decode::<serde_json::Value>(
                &token,
                &dec_key(OTHER_SECRET),
                &validation
            )
            .is_err());
        }
    }
}

// ───────────────────────────── properties ─────────────────────────────

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn loose_verifier() -> Verifier {
        let mut r = rules();
        r.allow_never_expiring = true;
        let mut v = verifier_with(vec![key(Some("k1"), HS256, SECRET)], r);
        v.max_token_bytes = 1 << 16;
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let v = verifier();
            let _ = v.keys.verify(&bytes, v.max_token_bytes);
            let _ = v.verify(&String::from_utf8_lossy(&bytes), TimeCheck::At(NOW));
            let _ = b64::decode(&bytes);
            let _ = RawClaims::parse(&bytes);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>(), t in "[A-Za-z0-9_=+/. -]{0,200}") {
            let v = verifier();
            let _ = v.verify(&s, TimeCheck::At(NOW));
            let _ = v.verify(&t, TimeCheck::At(NOW));
            let _ = b64::decode(s.as_bytes());
            let _ = b64::decode(t.as_bytes());
        }

        #[test]
        fn three_arbitrary_segments_never_pass(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,80}", s in "[A-Za-z0-9_-]{0,90}") {
            let v = verifier();
            let token = [h, p, s].join(".");
            prop_assert!(v.verify(&token, TimeCheck::At(NOW)).is_err());
        }

        #[test]
        fn arbitrary_signed_json_never_panics(header in any::<String>(), payload in any::<String>()) {
            let v = verifier();
            let _ = v.verify(&hand(&header, &payload), TimeCheck::At(NOW));
            // Correctly signed under the default header: whatever the payload
            // text, the JWS layer passes it and only the payload or the
            // claims can refuse it.
            if let Err(e) = v.verify(&tok(&payload), TimeCheck::At(NOW)) {
                prop_assert!(!jws_layer(e), "{:?} for a correctly signed token", e);
            }
        }

        #[test]
        fn base64url_has_one_spelling(bytes in proptest::collection::vec(any::<u8>(), 0..100), s in "[A-Za-z0-9_-]{0,40}") {
            prop_assert_eq!(b64::decode(b64::encode(&bytes).as_bytes()), Some(bytes.clone()));
            prop_assert_eq!(b64::encode(&bytes), enc(&bytes));
            // Whatever decodes re-encodes to exactly the same text.
            if let Some(decoded) = b64::decode(s.as_bytes()) {
                prop_assert_eq!(b64::encode(&decoded), s);
            }
        }

        #[test]
        fn single_byte_mutations_are_rejected(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let v = verifier();
            let token = tok(&good());
            let mut bytes = token.clone().into_bytes();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            // Refused by the JWS layer already, before any claim is read.
            prop_assert!(v.keys.verify(&bytes, v.max_token_bytes).is_err());
            if let Ok(s) = std::str::from_utf8(&bytes) {
                prop_assert!(v.verify(s, TimeCheck::At(NOW)).is_err());
            }
        }

        #[test]
        fn mint_then_verify(
            sub in any::<String>().prop_filter("sub is non-empty", |s| !s.is_empty()),
            scope in proptest::option::of(any::<String>()),
            ver in 0..=MAX_VERSION,
            exp in proptest::option::of((NOW + 1)..=MAX_NUMERIC_DATE),
            extra_aud in proptest::collection::vec(any::<String>(), 0..3),
            sid in "[a-z0-9-]{1,20}",
            jti in proptest::option::of(any::<String>()),
            hosts in proptest::option::of(proptest::collection::vec("[0-9a-f:./]{1,20}", 0..4)),
            iat in proptest::option::of(0..=NOW),
            alg in prop_oneof![Just(HS256), Just(HS384), Just(HS512)],
        ) {
            let mut aud = extra_aud;
            aud.push("api".into());
            let claims = Claims {
                iss: ISS.into(), sub, aud, exp, nbf: iat, iat, jti, ver,
                sid: Some(sid), scope, hosts,
            };
            let k = key(Some("k1"), alg, SECRET);
            let token = mint(&k, &claims);
            let mut v = loose_verifier();
            v.keys = KeySet::new(vec![k]).unwrap();
            prop_assert_eq!(v.verify(&token, TimeCheck::At(NOW)), Ok(claims));
        }
    }
    // ─────────── generated tokens: random claims, random corruptions ───────────
    //
    // Tokens are assembled by hand (`enc`, `mac` above: the `base64` and
    // `hmac` crates, not the codec) from JSON built here, so the codec never
    // helps build its own inputs. Each token is valid or breaks exactly one
    // rule, so the expected refusal is exact.

    /// Refusals decided before the claims are read: shape, encoding,
    /// header, key selection, MAC.
    fn jws_layer(e: TokenError) -> bool {
        matches!(
            e,
            TooLarge | Malformed | BadEncoding(Segment::Header) | BadEncoding(Segment::Signature)
                | NotJsonObject(Segment::Header) | DuplicateMember(Segment::Header) | AlgorithmMissing
                | AlgorithmNone | AlgorithmNotAllowed | AlgorithmMismatch | KeyIdMissing | UnknownKeyId
                | UnsupportedCritical | TypeNotAllowed | SignatureInvalid
        )
    }

    /// The keys of [`gen_verifier`]: `(kid, alg, secret)`.
    const GEN_KEYS: [(&str, Algorithm, &[u8]); 3] = [("k1", HS256, SECRET), ("k2", HS384, OTHER_SECRET), ("k3", HS512, SECRET)];

    /// Three keys (so `kid` is required), skew 0, never-expiring tokens
    /// with a `sid` allowed.
    fn gen_verifier() -> Verifier {
        let mut r = rules();
        r.allow_never_expiring = true;
        let keys = GEN_KEYS.iter().map(|(kid, alg, secret)| key(Some(kid), *alg, secret)).collect();
        let mut v = verifier_with(keys, r);
        v.max_token_bytes = 1 << 16;
        v
    }

    /// Strings the codec accepts in `sub`, `sid`, `scope` (no control character).
    const PRINTABLE: &str = "[^\\p{Cc}]{1,24}";

    fn valid_claims() -> impl Strategy<Value = Claims> {
        (
            (PRINTABLE, proptest::option::of("[^\\p{Cc}]{0,24}"), proptest::option::of(any::<String>()), proptest::option::of(PRINTABLE)),
            (0..=MAX_VERSION, proptest::option::of((NOW + 1)..=MAX_NUMERIC_DATE), proptest::option::of(0..=NOW), proptest::option::of(0..=NOW)),
            (proptest::collection::vec(any::<String>(), 0..3), prop_oneof![Just("api"), Just("billing")], any::<prop::sample::Index>()),
            proptest::option::of(proptest::collection::vec("[0-9a-f:./]{1,20}", 0..4)),
        )
            .prop_map(|((sub, scope, jti, sid), (ver, exp, nbf, iat), (mut aud, accepted, at), hosts)| {
                aud.insert(at.index(aud.len() + 1), accepted.to_owned());
                // A token without `exp` must carry a `sid` to be accepted.
                let sid = if exp.is_none() { Some(sid.unwrap_or_else(|| "s-1".into())) } else { sid };
                Claims { iss: ISS.into(), sub, aud, exp, nbf, iat, jti, ver, sid, scope, hosts }
            })
    }

    /// The claims as a JSON object; `aud` as a plain string when it has one
    /// member and `aud_string` says so.
    fn claims_json(c: &Claims, aud_string: bool) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{json, Map};
        let mut m = Map::new();
        m.insert("iss".into(), json!(c.iss));
        m.insert("sub".into(), json!(c.sub));
        m.insert("aud".into(), if aud_string && c.aud.len() == 1 { json!(c.aud[0]) } else { json!(c.aud) });
        m.insert("ver".into(), json!(c.ver));
        for (name, v) in [("exp", c.exp), ("nbf", c.nbf), ("iat", c.iat)] {
            if let Some(v) = v {
                m.insert(name.into(), json!(v));
            }
        }
        for (name, v) in [("jti", &c.jti), ("sid", &c.sid), ("scope", &c.scope)] {
            if let Some(v) = v {
                m.insert(name.into(), json!(v));
            }
        }
        if let Some(h) = &c.hosts {
            m.insert("hosts".into(), json!(h));
        }
        m
    }

    /// One broken rule of the claims and the refusal the codec's rules
    /// (src/token/claims.rs) say it gets.
    #[derive(Debug, Clone)]
    enum ClaimBreak {
        /// An integer beyond the claim's limit, or no integer at all.
        OutOfRange(&'static str, serde_json::Value),
        ExpPassed(u64),
        NbfAhead(u64),
        IatAhead(u64),
        Missing(&'static str),
        SubEmpty,
        ControlIn(&'static str, String),
        OtherIssuer(String),
        OtherAudiences(Vec<String>),
        NoExpNoSid,
    }

    impl ClaimBreak {
        fn apply(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
            use serde_json::json;
            match self {
                ClaimBreak::OutOfRange(name, v) => drop(m.insert((*name).into(), v.clone())),
                ClaimBreak::ExpPassed(t) => drop(m.insert("exp".into(), json!(t))),
                ClaimBreak::NbfAhead(t) => drop(m.insert("nbf".into(), json!(t))),
                ClaimBreak::IatAhead(t) => drop(m.insert("iat".into(), json!(t))),
                ClaimBreak::Missing(name) => drop(m.remove(*name)),
                ClaimBreak::SubEmpty => drop(m.insert("sub".into(), json!(""))),
                ClaimBreak::ControlIn(name, s) => drop(m.insert((*name).into(), json!(s))),
                ClaimBreak::OtherIssuer(s) => drop(m.insert("iss".into(), json!(s))),
                ClaimBreak::OtherAudiences(a) => drop(m.insert("aud".into(), json!(a))),
                ClaimBreak::NoExpNoSid => {
                    m.remove("exp");
                    m.remove("sid");
                }
            }
        }

        fn expected(&self) -> TokenError {
            match self {
                ClaimBreak::OutOfRange(name, _) => ClaimType(match *name {
                    "exp" => Claim::Exp,
                    "nbf" => Claim::Nbf,
                    "iat" => Claim::Iat,
                    _ => Claim::Ver,
                }),
                ClaimBreak::ExpPassed(_) => Expired,
                ClaimBreak::NbfAhead(_) => NotYetValid,
                ClaimBreak::IatAhead(_) => IssuedInFuture,
                ClaimBreak::Missing("ver") => VersionMissing,
                ClaimBreak::Missing(_) | ClaimBreak::SubEmpty => SubjectMissing,
                ClaimBreak::ControlIn("sub", _) => ControlCharacter(Claim::Sub),
                ClaimBreak::ControlIn("sid", _) => ControlCharacter(Claim::Sid),
                ClaimBreak::ControlIn(_, _) => ControlCharacter(Claim::Scope),
                ClaimBreak::OtherIssuer(_) => IssuerMismatch,
                ClaimBreak::OtherAudiences(_) => AudienceMismatch,
                ClaimBreak::NoExpNoSid => ExpirationMissing,
            }
        }
    }

    fn claim_break() -> impl Strategy<Value = ClaimBreak> {
        use serde_json::json;
        let time_claim = prop_oneof![Just("exp"), Just("nbf"), Just("iat")];
        let not_an_integer = prop_oneof![
            (MAX_NUMERIC_DATE + 1..=u64::MAX).prop_map(|t| json!(t)),
            (1i64..=i64::MAX).prop_map(|t| json!(-t)),
            (0.5f64..1e12).prop_map(|t| json!(t)),
            "[0-9]{1,12}".prop_map(|t| json!(t)),
            Just(json!(null)),
            Just(json!(true)),
            Just(json!([NOW])),
            Just(json!({"t": NOW})),
        ];
        let control = "[^\\p{Cc}]{0,8}\\p{Cc}[^\\p{Cc}]{0,8}";
        prop_oneof![
            (time_claim, not_an_integer).prop_map(|(n, v)| ClaimBreak::OutOfRange(n, v)),
            (MAX_VERSION + 1..=u64::MAX).prop_map(|v| ClaimBreak::OutOfRange("ver", json!(v))),
            "[0-9]{1,15}".prop_map(|v| ClaimBreak::OutOfRange("ver", json!(v))),
            (0..=NOW).prop_map(ClaimBreak::ExpPassed),
            ((NOW + 1)..=MAX_NUMERIC_DATE).prop_map(ClaimBreak::NbfAhead),
            ((NOW + 1)..=MAX_NUMERIC_DATE).prop_map(ClaimBreak::IatAhead),
            prop_oneof![Just("ver"), Just("sub")].prop_map(ClaimBreak::Missing),
            Just(ClaimBreak::SubEmpty),
            (prop_oneof![Just("sub"), Just("sid"), Just("scope")], control).prop_map(|(n, s)| ClaimBreak::ControlIn(n, s)),
            any::<String>().prop_filter("another issuer", |s| s != ISS).prop_map(ClaimBreak::OtherIssuer),
            proptest::collection::vec(any::<String>(), 0..3)
                .prop_filter("no accepted audience", |a| !a.iter().any(|x| x == "api" || x == "billing"))
                .prop_map(ClaimBreak::OtherAudiences),
            Just(ClaimBreak::NoExpNoSid),
        ]
    }

    /// One broken rule of the header and its refusal.
    #[derive(Debug, Clone)]
    enum HeaderBreak {
        UnknownKid(String),
        /// A configured kid with another key's algorithm.
        WrongAlg(usize, usize),
        AlgNone(String),
        NoKid,
        OtherTyp(String),
    }

    fn header_break() -> impl Strategy<Value = HeaderBreak> {
        prop_oneof![
            "[a-z0-9]{1,8}".prop_filter("not configured", |k| !GEN_KEYS.iter().any(|(kid, _, _)| kid == k)).prop_map(HeaderBreak::UnknownKid),
            (0..3usize, 1..3usize).prop_map(|(k, d)| HeaderBreak::WrongAlg(k, (k + d) % 3)),
            prop_oneof![Just("none"), Just("None"), Just("NONE"), Just("nOnE")].prop_map(|s| HeaderBreak::AlgNone(s.into())),
            Just(HeaderBreak::NoKid),
            prop_oneof![Just("JWT"), Just("jwt"), Just("at+jwe"), Just("application/jwt")].prop_map(|s| HeaderBreak::OtherTyp(s.into())),
        ]
    }

    /// A generated token: which key signs, how its claims read, what (if
    /// anything) breaks, and so what the verifier must answer.
    #[derive(Debug, Clone)]
    struct Generated {
        token: String,
        want: Result<Claims, TokenError>,
    }

    fn generate(claims: Claims, k: usize, aud_string: bool, claim: Option<ClaimBreak>, header: Option<HeaderBreak>) -> Generated {
        use serde_json::json;
        let (kid, alg, secret) = GEN_KEYS[k];
        let mut h = serde_json::Map::new();
        let mut sign_alg = alg;
        h.insert("alg".into(), json!(alg.name()));
        h.insert("kid".into(), json!(kid));
        h.insert("typ".into(), json!("at+jwt"));
        let mut payload = claims_json(&claims, aud_string);
        let mut want = Ok(claims);
        if let Some(b) = &claim {
            b.apply(&mut payload);
            want = Err(b.expected());
        }
        if let Some(b) = &header {
            let err = match b {
                HeaderBreak::UnknownKid(other) => {
                    h.insert("kid".into(), json!(other));
                    UnknownKeyId
                }
                HeaderBreak::WrongAlg(_, other) => {
                    sign_alg = GEN_KEYS[*other].1;
                    h.insert("alg".into(), json!(sign_alg.name()));
                    AlgorithmMismatch
                }
                HeaderBreak::AlgNone(none) => {
                    h.insert("alg".into(), json!(none));
                    AlgorithmNone
                }
                HeaderBreak::NoKid => {
                    h.remove("kid");
                    KeyIdMissing
                }
                HeaderBreak::OtherTyp(t) => {
                    h.insert("typ".into(), json!(t));
                    TypeNotAllowed
                }
            };
            // The header is read first: its refusal wins over any claim's.
            want = Err(err);
        }
        let token = hand_with(
            sign_alg,
            secret,
            &serde_json::Value::Object(h).to_string(),
            &serde_json::Value::Object(payload).to_string(),
        );
        Generated { token, want }
    }

    fn valid_token() -> impl Strategy<Value = Generated> {
        (valid_claims(), 0..3usize, any::<bool>()).prop_map(|(c, k, s)| generate(c, k, s, None, None))
    }

    /// The segment a corruption lands in, by its byte offset.
    fn segment_of(token: &[u8], i: usize) -> Segment {
        match token[..i].iter().filter(|&&b| b == b'.').count() {
            0 => Segment::Header,
            1 => Segment::Payload,
            _ => Segment::Signature,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        /// A well-formed token of random claims verifies, and its claims
        /// are exactly the generated ones.
        #[test]
        fn generated_valid_tokens_verify_to_their_claims(g in valid_token()) {
            prop_assert_eq!(gen_verifier().verify(&g.token, TimeCheck::At(NOW)), g.want);
        }

        /// A token of random claims with one claim limit broken (out of
        /// range, wrong type, missing, wrong time, control characters,
        /// foreign issuer or audience) is refused with exactly that claim's
        /// refusal.
        #[test]
        fn one_broken_claim_gets_its_own_refusal(c in valid_claims(), k in 0..3usize, s in any::<bool>(), b in claim_break()) {
            let g = generate(c, k, s, Some(b), None);
            let got = gen_verifier().verify(&g.token, TimeCheck::At(NOW));
            prop_assert_eq!(got, g.want);
        }

        /// A broken header (unknown kid, another key's alg, `none`, no kid
        /// with several keys, another typ) is refused for the header,
        /// whatever the claims, even broken ones.
        #[test]
        fn one_broken_header_rule_gets_its_own_refusal(
            c in valid_claims(), k in 0..3usize, s in any::<bool>(),
            cb in proptest::option::of(claim_break()), hb in header_break(),
        ) {
            let k = match hb { HeaderBreak::WrongAlg(k, _) => k, _ => k };
            let g = generate(c, k, s, cb, Some(hb));
            prop_assert_eq!(gen_verifier().verify(&g.token, TimeCheck::At(NOW)), g.want);
        }

        /// Any single-byte corruption of a valid token is refused, for the
        /// right reason: in the payload, the MAC no longer matches
        /// (`signature invalid`); in the signature, either the text is no
        /// longer canonical base64url (malformed) or it decodes to another
        /// MAC (`signature invalid`); a `.` anywhere makes four segments
        /// (malformed); in the header, a header or MAC refusal, never a
        /// claim's.
        #[test]
        fn single_byte_corruptions_are_refused_for_the_right_reason(
            g in valid_token(), at in any::<prop::sample::Index>(), byte in any::<u8>(),
        ) {
            let v = gen_verifier();
            let mut bytes = g.token.clone().into_bytes();
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte && bytes[i] != b'.');
            let segment = segment_of(&bytes, i);
            bytes[i] = byte;
            let got = v.keys.verify(&bytes, v.max_token_bytes).map(|_| ());
            let want = if byte == b'.' {
                Some(Malformed)
            } else {
                match segment {
                    Segment::Payload => Some(SignatureInvalid),
                    Segment::Signature => {
                        let sig = &bytes[bytes.iter().rposition(|&b| b == b'.').unwrap() + 1..];
                        Some(if URL_SAFE_NO_PAD.decode(sig).is_ok() { SignatureInvalid } else { BadEncoding(Segment::Signature) })
                    }
                    Segment::Header => None,
                }
            };
            match want {
                Some(e) => {
                    prop_assert_eq!(got, Err(e));
                    prop_assert_eq!(e.reason(), if e == SignatureInvalid { Reason::BadSignature } else { Reason::Malformed });
                }
                None => {
                    let e = got.expect_err("a corrupted header is refused");
                    prop_assert!(jws_layer(e), "{:?}: a header corruption refused as a claim", e);
                }
            }
            // The whole verifier agrees wherever the bytes are still text.
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let whole = v.verify(s, TimeCheck::At(NOW));
                prop_assert!(whole.is_err());
                if let Some(e) = want {
                    prop_assert_eq!(whole, Err(e));
                }
            }
        }
    }
}
