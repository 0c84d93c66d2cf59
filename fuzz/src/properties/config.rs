//! The filter's configuration document: `Config::parse` on any bytes.

use super::{ensure, Check};
use serde_json::Value;
use tollgate::config::{Config, MAX_CLOCK_SKEW};

/// What the VM environment holds while fuzzing (`secret_env`, `credential_env`).
pub const ENV: [(&str, &str); 4] = [
    ("GOOD_KEY", "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"),
    ("SHORT_KEY", "c2hvcnQtZW52LXNlY3JldA"),
    ("BAD_KEY", "not base64url at all, a secret all the same"),
    ("EDGE_CREDENTIAL", "edge-credential-for-the-fuzz-target-0001"),
];

pub fn env(name: &str) -> Option<String> {
    ENV.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
}

/// JSON pointers to the inline secrets of a document: `keys[*].secret`
/// and `authority.credential`.
fn inline_secrets(doc: &Value) -> Vec<String> {
    let n = doc.get("keys").and_then(Value::as_array).map_or(0, Vec::len);
    (0..n)
        .map(|i| format!("/keys/{i}/secret"))
        .chain(["/authority/credential".to_owned()])
        .filter(|p| doc.pointer(p).is_some_and(Value::is_string))
        .collect()
}

/// Another secret that every check treats as `secret`: each base64url
/// letter moved 16 places along the alphabet (the same low bits, so the
/// same canonical trailing bits and decoded length), everything else (`=`,
/// white space, characters outside the alphabet) kept.
fn same_validity(secret: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    secret
        .chars()
        .map(|c| match ALPHABET.iter().position(|&a| char::from(a) == c) {
            Some(i) => char::from(ALPHABET[(i + 16) % 64]),
            None => c,
        })
        .collect()
}

/// What `Config::parse` says about `doc`: the configuration or the error,
/// as text.
fn said(doc: &[u8]) -> String {
    match Config::parse(doc, &env) {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("{e} {e:?}"),
    }
}

/// - The same answer every time (compared through `Debug`, which is all
///   `Config` offers, and which hides secrets);
/// - no secret ever shows in an error or in `Debug` of what was accepted:
///   neither an environment value nor an inline `secret`/`credential`
///   (unless the document itself repeats that text elsewhere, where it is
///   not a secret);
/// - accepted once ⇒ accepted again, to the same configuration, after a
///   generic `serde_json::Value` parse and re-serialization, compact and
///   pretty (what a YAML/JSON tool chain between the author and Envoy
///   does);
/// - what is accepted is within the documented bounds.
pub fn check_config(doc: &[u8]) -> Check {
    let got = Config::parse(doc, &env);
    let shown = |r: &Result<Config, _>| format!("{r:?}");
    ensure!(shown(&got) == shown(&Config::parse(doc, &env)), "Config::parse answered twice differently");

    // Environment secrets: never shown unless the document spells them.
    let text = String::from_utf8_lossy(doc);
    let shown = said(doc);
    for (_, secret) in ENV {
        ensure!(text.contains(secret) || !shown.contains(secret), "environment secret {secret:?} shows in {shown}");
    }
    // Inline secrets, differentially: the answer shows the secret only if
    // it still shows it with that one value replaced by another of the
    // same validity (then the text comes from elsewhere: a default,
    // another field, the message itself: `"not "` in "is not base64url").
    let value: Option<Value> = serde_json::from_slice(doc).ok();
    if let Some(v) = &value {
        let normal = said(v.to_string().as_bytes());
        for pointer in inline_secrets(v) {
            let secret = v.pointer(&pointer).and_then(Value::as_str).unwrap_or_default();
            if secret.is_empty() || !normal.contains(secret) {
                continue;
            }
            let twin = same_validity(secret);
            if twin == secret {
                continue;
            }
            let mut other = v.clone();
            if let Some(slot) = other.pointer_mut(&pointer) {
                *slot = Value::String(twin);
            }
            let replaced = said(other.to_string().as_bytes());
            ensure!(replaced.contains(secret), "inline secret at {pointer} ({secret:?}) shows in {normal}");
        }
    }

    let Ok(config) = got else { return Ok(()) };
    let value = value.ok_or("accepted a document serde_json::Value refuses")?;
    let compact = value.to_string();
    let pretty = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    for (how, again) in [("compact", compact), ("pretty", pretty)] {
        let back = Config::parse(again.as_bytes(), &env);
        ensure!(
            back.as_ref().map(|c| format!("{c:?}")).ok() == Some(format!("{config:?}")),
            "accepted, but after a Value round trip ({how}) it is {back:?}: {again}"
        );
    }

    let v = &config.verifier;
    ensure!(!v.keys.keys().is_empty() && !v.rules.audiences.is_empty() && !v.allowed_typ.is_empty(), "accepted an empty key set, audience list or typ list");
    ensure!(!v.rules.issuer.is_empty() && v.rules.audiences.iter().all(|a| !a.is_empty()), "accepted an empty issuer or audience");
    ensure!(v.rules.clock_skew <= MAX_CLOCK_SKEW, "accepted clock skew {}", v.rules.clock_skew);
    ensure!((256..=65536).contains(&v.max_token_bytes), "accepted max_token_bytes {}", v.max_token_bytes);
    let lower = |s: &str| !s.is_empty() && !s.bytes().any(|b| b.is_ascii_uppercase());
    let ids = config.identity_headers.all();
    ensure!(ids.iter().all(|h| lower(h) && !h.starts_with(':')), "identity headers {ids:?}");
    ensure!((1..4).all(|i| !ids[..i].contains(&ids[i])), "identity headers repeat: {ids:?}");
    if let Some((t, u)) = &config.sources.header_pair {
        ensure!(lower(t) && lower(u), "header pair {t:?} {u:?} not lower-case");
    }
    ensure!(
        config.realm.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') && !config.realm.is_empty(),
        "realm {:?} cannot be a quoted-string",
        config.realm
    );
    ensure!(
        config.sources.authorization_header || config.sources.cookie.is_some() || config.sources.header_pair.is_some() || config.sources.query_enabled,
        "accepted a configuration without a token source"
    );
    if config.revocation.is_some() || config.refresh.is_some() {
        ensure!(config.authority.is_some(), "revocation or refresh without an authority");
    }
    Ok(())
}
