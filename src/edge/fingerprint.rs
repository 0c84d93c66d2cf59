//! The line a host logs once when it accepts a configuration: the filter's
//! version, a fingerprint of the document, and what it holds (rules, key
//! ids). Both hosts log the same line, so an operator can tell which build
//! and which document every Envoy runs, and compare them across a fleet.
//!
//! The fingerprint is the first 12 hex digits of SHA-256 over the
//! document's canonical form: JSON with object members sorted by name and
//! no white space, so formatting and member order do not change it. Members
//! named `secret` are left out (as `null`): a hash of a document holding a
//! guessable secret would let anyone who reads the log test guesses. A
//! secret changed in place therefore keeps the fingerprint; the key ids do
//! not. Nothing of the document itself is logged.

use crate::config::Config;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The filter's version (the crate's), as the load line gives it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// 12 hex digits of SHA-256 of the canonical document, secrets left out;
/// `None` when the bytes are not JSON (the configuration is refused then).
pub fn fingerprint(document: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(document).ok()?;
    let mut canonical = Vec::with_capacity(document.len());
    write_canonical(&value, &mut canonical);
    let digest = Sha256::digest(&canonical);
    Some(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            out.push(b'{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_leaf(&Value::String(name.clone()), out);
                out.push(b':');
                match name.as_str() {
                    "secret" => out.extend_from_slice(b"null"),
                    _ => write_canonical(&members[name], out),
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        leaf => write_leaf(leaf, out),
    }
}

fn write_leaf(leaf: &Value, out: &mut Vec<u8>) {
    // A string, number, bool or null: serde_json writes each one way.
    let _ = serde_json::to_writer(&mut *out, leaf);
}

/// Whether this is the first VM of this Envoy to load this document (a
/// shared-data key per version and fingerprint): proxy-wasm configures one
/// VM per worker and one on the main thread, and the load line is logged
/// once per Envoy and document, by the first (the main thread's).
pub fn first_load(host: &mut dyn super::Host, document: &[u8]) -> bool {
    let key = format!("tollgate.loaded.{VERSION}.{}", fingerprint(document).as_deref().unwrap_or("none"));
    if host.shared_get(&key).1.is_some() {
        return false;
    }
    host.shared_set(&key, b"", None).is_ok()
}

/// The load line: `tollgate <version>: configuration accepted (fingerprint
/// <12 hex>, <n> rules, <m> keys: <kids>)`; a key without a kid shows as `-`.
pub fn load_line(config: &Config, document: &[u8], host: &str) -> String {
    let keys = config.verifier.keys.keys();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid().unwrap_or("-")).collect();
    format!(
        "tollgate {VERSION}: configuration accepted on the {host} host (fingerprint {}, {} rules, {} keys: {})",
        fingerprint(document).as_deref().unwrap_or("none"),
        config.policy.rule_count(),
        keys.len(),
        kids.join(", "),
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const SECRET: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

    fn doc(secret: &str, kid: &str, rule: &str) -> String {
        format!(
            r#"{{"issuer": "i", "audiences": ["a"], "keys": [{{"kid": "{kid}", "alg": "HS256", "secret": "{secret}"}}],
                "rules": [{{"name": "{rule}", "path": {{"prefix": "/x"}}}}]}}"#
        )
    }

    #[test]
    fn the_fingerprint_follows_the_document_not_its_spelling_nor_its_secrets() {
        let base = fingerprint(doc(SECRET, "k1", "r").as_bytes()).unwrap();
        assert_eq!(base.len(), 12);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        let reordered = format!(
            r#"{{ "rules":[{{"path":{{"prefix":"/x"}},"name":"r"}}],
                  "keys":[{{"secret":"{SECRET}","alg":"HS256","kid":"k1"}}], "audiences":["a"], "issuer":"i" }}"#
        );
        // (case, document, same fingerprint as the base?)
        let cases = [
            ("members reordered, other white space", reordered, true),
            ("another secret under the same kid", doc("b3RoZXItc2VjcmV0LWZvci10aGUtdGVzdC0wMDAwMDAwMA", "k1", "r"), true),
            ("another kid", doc(SECRET, "k2", "r"), false),
            ("another rule", doc(SECRET, "k1", "s"), false),
        ];
        for (case, d, same) in cases {
            assert_eq!(fingerprint(d.as_bytes()).unwrap() == base, same, "{case}");
        }
        assert_eq!(fingerprint(b"not json"), None);
    }

    #[test]
    fn the_load_line_names_version_fingerprint_rules_and_kids_never_a_secret() {
        let d = doc(SECRET, "k1", "r");
        let config = Config::parse(d.as_bytes(), &|_| None).unwrap();
        let line = load_line(&config, d.as_bytes(), "wasm");
        let want = format!(
            "tollgate {}: configuration accepted on the wasm host (fingerprint {}, 1 rules, 1 keys: k1)",
            env!("CARGO_PKG_VERSION"),
            fingerprint(d.as_bytes()).unwrap()
        );
        assert_eq!(line, want);
        assert!(!line.contains(SECRET) && !line.contains("issuer"));
    }
}
