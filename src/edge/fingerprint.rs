//! The line a host logs once when it accepts a configuration: the filter's
//! version, a fingerprint of the document, and what it holds (rules, key
//! ids). Both hosts log the same line, so an operator can tell which build
//! and which document every Envoy runs, and compare them across a fleet.
//!
//! The fingerprint is the first 12 hex digits of SHA-256 over the
//! document's canonical form: JSON with object members sorted by name and
//! no white space, so formatting and member order do not change it. Members
//! named `secret` (or named with an escape) are left out (as `null`): a
//! hash of a document holding a
//! guessable secret would let anyone who reads the log test guesses. A
//! secret changed in place therefore keeps the fingerprint; the key ids do
//! not. Nothing of the document itself is logged.

use crate::config::Config;
use sha2::{Digest, Sha256};

/// The filter's version (the crate's), as the load line gives it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// 12 hex digits of SHA-256 of the canonical document, secrets left out;
/// `None` when the bytes are not JSON (the configuration is refused then).
pub fn fingerprint(document: &[u8]) -> Option<String> {
    let mut reader = Canonical { bytes: document, at: 0 };
    let canonical = reader.value(0)?;
    reader.space();
    if reader.at != document.len() {
        return None;
    }
    let digest = Sha256::digest(&canonical);
    Some(digest[..6].iter().map(|b| format!("{b:02x}")).collect())
}

/// A small JSON reader that writes each value canonically: members sorted
/// by their raw name, no white space, strings and numbers as written. (A
/// `serde_json::Value` and a sort added ~17 KB to the module; this ~5 KB.)
/// A member named
/// `secret`, or whose name uses an escape (a `secret` spelled otherwise),
/// is written as `null`.
struct Canonical<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Deeper documents are not configurations: no recursion without bound.
const MAX_DEPTH: usize = 32;

impl Canonical<'_> {
    fn space(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.space();
        let hit = self.bytes.get(self.at) == Some(&b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn value(&mut self, depth: usize) -> Option<Vec<u8>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match *self.bytes.get(self.at)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(<[u8]>::to_vec),
            _ => {
                // A number or a literal, copied as written.
                let start = self.at;
                while matches!(self.bytes.get(self.at), Some(b'0'..=b'9' | b'a'..=b'z' | b'+' | b'-' | b'.' | b'E')) {
                    self.at += 1;
                }
                (self.at > start).then(|| self.bytes[start..self.at].to_vec())
            }
        }
    }

    /// A string token, quotes included, escapes as written.
    fn string(&mut self) -> Option<&[u8]> {
        let start = self.at;
        self.at += 1;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        self.bytes.get(start..self.at)
    }

    fn array(&mut self, depth: usize) -> Option<Vec<u8>> {
        self.at += 1;
        let mut out = vec![b'['];
        if !self.eat(b']') {
            loop {
                out.extend(self.value(depth + 1)?);
                if self.eat(b']') {
                    break;
                }
                self.eat(b',').then_some(())?;
                out.push(b',');
            }
        }
        out.push(b']');
        Some(out)
    }

    fn object(&mut self, depth: usize) -> Option<Vec<u8>> {
        self.at += 1;
        let mut members: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if !self.eat(b'}') {
            loop {
                self.space();
                (self.bytes.get(self.at) == Some(&b'"')).then_some(())?;
                let name = self.string()?.to_vec();
                self.eat(b':').then_some(())?;
                let value = self.value(depth + 1)?;
                let secret = name == b"\"secret\"" || name.contains(&b'\\');
                let value = if secret { b"null".to_vec() } else { value };
                // Insertion in order (a handful of members; the standard
                // library's sort would add ~10 KB to the module).
                let at = members.partition_point(|(n, _)| *n <= name);
                members.insert(at, (name, value));
                if self.eat(b'}') {
                    break;
                }
                self.eat(b',').then_some(())?;
            }
        }
        let mut out = vec![b'{'];
        for (i, (name, value)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend(name);
            out.push(b':');
            out.extend(value);
        }
        out.push(b'}');
        Some(out)
    }
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
        // A secret under an escaped member name is left out too.
        let escaped = |secret: &str| fingerprint(format!(r#"{{"keys": [{{"\u0073ecret": "{secret}"}}]}}"#).as_bytes());
        assert_eq!(escaped("guess-1"), escaped("guess-2"));
        assert!(escaped("x").is_some());
        // Not JSON, or not a configuration: no fingerprint, no panic.
        let deep = "[".repeat(10_000);
        for bad in ["not json", "", "{", r#"{"a" 1}"#, r#"{"a": 1} x"#, r#"["unterminated"#, deep.as_str()] {
            assert_eq!(fingerprint(bad.as_bytes()), None, "{bad:.20}");
        }
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
