//! Properties of what the authority reads (`authority/src/input.rs`): form
//! bodies, HTTP Basic client credentials, the admin API's JSON body, and
//! the filter's refresh request as the authority reads it.
//!
//! Shared, through `#[path]`, by the fuzz target `authority_input` and by
//! `authority/tests/input_regressions.rs`; both provide the module under
//! test as `crate::input` (here `authority/src/input.rs` compiled as is,
//! there the authority's own). Dependencies: `tollgate` (the filter's
//! encoder), `base64`, `serde_json`.

use crate::input::{basic_credentials, form_decode, parse_form, ApiTokenRequest, BasicError, Form, FormError, MAX_ERROR_CHARS};
use base64::Engine;

/// `Ok(())` or a description of the violated property.
pub type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

// ── oracles: written from the specifications, byte by byte ───────────

/// One form-urlencoded component (URL standard, "percent-decode" after
/// `+` → space), or `None` when the bytes are not UTF-8.
fn model_decode(s: &[u8]) -> Option<String> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() && hex(s[i + 1]).is_some() && hex(s[i + 2]).is_some() => {
                out.push(hex(s[i + 1]).unwrap_or(0) * 16 + hex(s[i + 2]).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What a form body must read as, pair by pair in order.
fn model_form(body: &[u8]) -> Result<Form, FormError> {
    if std::str::from_utf8(body).is_err() {
        return Err(FormError::NotUtf8);
    }
    let mut out = Form::new();
    for piece in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        let (Some(name), Some(value)) = (model_decode(name), model_decode(value)) else {
            return Err(FormError::BadEncoding);
        };
        if name.is_empty() {
            return Err(FormError::EmptyName);
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(FormError::Repeated(name));
        }
    }
    Ok(out)
}

/// A form body written with the filter's own encoder (`tollgate::refresh::form_encode`).
fn encode_form(form: &Form) -> String {
    let mut pairs: Vec<_> = form.iter().collect();
    pairs.sort();
    let enc = tollgate::refresh::form_encode;
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 writes it.
pub fn encode_basic(id: &str, secret: &str) -> String {
    let enc = tollgate::refresh::form_encode;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

// ── properties ────────────────────────────────────────────────────────

/// A form body reads exactly as the model reads it, twice alike; what is
/// accepted, written again by the filter's encoder, reads back the same.
pub fn check_form(body: &[u8]) -> Check {
    let got = parse_form(body);
    ensure!(parse_form(body) == got, "two readings differ");
    let want = model_form(body);
    ensure!(got == want, "read {got:?}, the model reads {want:?}");
    if let Ok(form) = &got {
        let again = encode_form(form);
        ensure!(parse_form(again.as_bytes()).as_ref() == Ok(form), "re-encoded as {again:?}, reads differently");
        for (k, v) in form {
            ensure!(form_decode(&tollgate::refresh::form_encode(v)).as_deref() == Some(v.as_str()), "value of {k:?} does not round-trip");
        }
    }
    if let Err(FormError::Repeated(name)) = &got {
        ensure!(!name.is_empty(), "a repeated empty name");
    }
    Ok(())
}

/// A Basic value reads as the model reads it; accepted credentials,
/// written again as the RFC writes them, read back the same.
pub fn check_basic(value: &str) -> Check {
    let got = basic_credentials(value);
    ensure!(basic_credentials(value) == got, "two readings differ");
    let want = (|| {
        let i = value.find(' ').ok_or(BasicError::Malformed)?;
        if !value[..i].eq_ignore_ascii_case("basic") {
            return Err(BasicError::NotBasic);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value[i + 1..].trim())
            .map_err(|_| BasicError::BadCredentials)?;
        let colon = raw.iter().position(|&b| b == b':').ok_or(BasicError::BadCredentials)?;
        std::str::from_utf8(&raw).map_err(|_| BasicError::BadCredentials)?;
        match (model_decode(&raw[..colon]), model_decode(&raw[colon + 1..])) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(BasicError::BadCredentials),
        }
    })();
    ensure!(got == want, "read {got:?}, the model reads {want:?}");
    if let Ok((id, secret)) = &got {
        let again = encode_basic(id, secret);
        ensure!(basic_credentials(&again).as_ref() == Ok(&(id.clone(), secret.clone())), "re-encoded as {again:?}, reads differently");
    }
    Ok(())
}

/// What the filter sends for a refresh, and what a client sends in Basic,
/// read by the authority: exactly the values written, whatever they are.
pub fn check_round_trip(refresh_token: &str, client_id: &str, secret: &str) -> Check {
    let body = tollgate::refresh::token_request_body(refresh_token, client_id);
    let want: Form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    ensure!(parse_form(body.as_bytes()) == Ok(want), "the filter's refresh body {body:?} reads differently");
    let basic = encode_basic(client_id, secret);
    ensure!(
        basic_credentials(&basic) == Ok((client_id.to_owned(), secret.to_owned())),
        "Basic credentials {basic:?} read differently"
    );
    Ok(())
}

/// The admin API's JSON body: twice alike; accepted only when it is an
/// object of known members whose values are exactly the fields read;
/// refused with a short error without control characters.
pub fn check_api_token(body: &[u8]) -> Check {
    let got = ApiTokenRequest::parse(body);
    ensure!(ApiTokenRequest::parse(body) == got, "two readings differ");
    match &got {
        Ok(req) => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("accepted, yet not JSON: {e}"))?;
            let obj = value.as_object().ok_or("accepted, yet not an object")?;
            for k in obj.keys() {
                ensure!(["sub", "scope", "hosts", "days", "name"].contains(&k.as_str()), "accepted an unknown member {k:?}");
            }
            ensure!(obj.get("sub").and_then(|v| v.as_str()) == Some(req.sub.as_str()), "sub differs");
            ensure!(obj.get("scope").map_or(Some(""), |v| v.as_str()) == Some(req.scope.as_str()), "scope differs");
            ensure!(obj.get("days").and_then(|v| v.as_i64()) == Some(req.days), "days differs");
            let hosts: Option<Vec<&str>> = obj.get("hosts").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|h| h.as_str()).collect());
            ensure!(hosts == Some(req.hosts.iter().map(String::as_str).collect()), "hosts differ");
            let name = match obj.get("name") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_str().ok_or("name is not a string")?),
            };
            ensure!(name == req.name.as_deref(), "name differs");
        }
        Err(e) => {
            ensure!(e.chars().count() <= MAX_ERROR_CHARS, "an error of {} characters", e.chars().count());
            ensure!(!e.chars().any(char::is_control), "an error with control characters: {e:?}");
            if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body) {
                let known = ["sub", "scope", "hosts", "days", "name"];
                let well_typed = obj.keys().all(|k| known.contains(&k.as_str()))
                    && obj.get("sub").is_some_and(|v| v.is_string())
                    && obj.get("scope").is_none_or(|v| v.is_string())
                    && obj.get("hosts").and_then(|v| v.as_array()).is_some_and(|a| a.iter().all(|h| h.is_string()))
                    && obj.get("days").is_some_and(|v| v.is_i64())
                    && obj.get("name").is_none_or(|v| v.is_string() || v.is_null());
                // serde_json's Value keeps the last of repeated members; the
                // struct refuses them. Only a body without repeats must pass.
                let repeats = has_repeated_member(body);
                ensure!(!well_typed || repeats, "refused a well-formed body: {e}");
            }
        }
    }
    Ok(())
}

/// Whether the top-level object repeats a member name (a plain scan for
/// `"name":` pairs at depth one, good enough for the oracle above).
fn has_repeated_member(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    // Deserialize into a map that keeps every pair.
    struct Pairs(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                    let mut names = Vec::new();
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        names.push(k);
                    }
                    Ok(Pairs(names))
                }
            }
            d.deserialize_map(V)
        }
    }
    match serde_json::from_slice::<Pairs>(body) {
        Ok(Pairs(mut names)) => {
            let n = names.len();
            names.sort();
            names.dedup();
            names.len() != n
        }
        Err(_) => false,
    }
}

// ── the target's input ────────────────────────────────────────────────

/// `f` form body, `b` Basic value, `j` JSON body, `r` three strings
/// separated by `0xFF` for [`check_round_trip`]; the rest is the input.
pub fn check_case(data: &[u8]) -> Check {
    let Some((&mode, rest)) = data.split_first() else { return Ok(()) };
    match mode {
        b'f' => check_form(rest),
        b'b' => match std::str::from_utf8(rest) {
            Ok(v) => check_basic(v),
            Err(_) => Ok(()),
        },
        b'j' => check_api_token(rest),
        b'r' => {
            let mut parts = rest.split(|&b| b == 0xff).map(String::from_utf8_lossy);
            let (rt, id, secret) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            check_round_trip(&rt, &id, &secret)
        }
        _ => Ok(()),
    }
}
