//! Signing keys: a key set with `kid`s, exactly one active for signing.
//! Secrets come from a file or an environment variable (base64url, no
//! padding); they are never logged or printed.

use serde::Deserialize;
use std::fmt;
use tollgate::token::{b64, Algorithm, Key, KeyError, KeySet};

/// The demo key's id. The filter's demo configuration uses the same.
pub const DEMO_KID: &str = "demo-2026";
/// The demo secret (base64url of the 41 ASCII bytes `demo-only-secret-do-not-use-in-production`). Demo only: anyone can read it here.
pub const DEMO_SECRET_B64: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: String,
    #[serde(default = "default_alg")]
    pub alg: String,
    /// Path of a file holding the base64url secret.
    pub secret_file: Option<String>,
    /// Name of an environment variable holding the base64url secret.
    pub secret_env: Option<String>,
    /// The base64url secret inline. Only for tests and demos.
    pub secret: Option<String>,
    /// The one key that signs. Others only verify (rotation).
    #[serde(default)]
    pub active: bool,
}

fn default_alg() -> String {
    "HS256".into()
}

#[derive(Debug)]
pub enum KeyConfigError {
    NoSecret { kid: String },
    SeveralSecrets { kid: String },
    Unreadable { kid: String, source: String },
    NotBase64 { kid: String },
    UnknownAlg { kid: String, alg: String },
    Key(KeyError),
    ActiveCount(usize),
}

impl fmt::Display for KeyConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            KeyConfigError::NoSecret { kid } => {
                write!(f, "key {kid:?}: set one of secret_file, secret_env, secret")
            }
            KeyConfigError::SeveralSecrets { kid } => {
                write!(f, "key {kid:?}: set only one of secret_file, secret_env, secret")
            }
            KeyConfigError::Unreadable { kid, source } => write!(f, "key {kid:?}: {source}"),
            KeyConfigError::NotBase64 { kid } => {
                write!(f, "key {kid:?}: secret is not base64url without padding")
            }
            KeyConfigError::UnknownAlg { kid, alg } => {
                write!(f, "key {kid:?}: alg {alg:?} is not HS256, HS384 or HS512")
            }
            KeyConfigError::Key(e) => write!(f, "key set: {e}"),
            KeyConfigError::ActiveCount(n) => {
                write!(f, "exactly one key must be active (signing), found {n}")
            }
        }
    }
}

impl std::error::Error for KeyConfigError {}

/// The signing key and the set every token the authority accepts is checked against.
#[derive(Debug, Clone)]
pub struct Keys {
    pub signing: Key,
    pub set: KeySet,
}

impl KeyConfig {
    pub fn demo() -> KeyConfig {
        KeyConfig {
            kid: DEMO_KID.into(),
            alg: default_alg(),
            secret_file: None,
            secret_env: None,
            secret: Some(DEMO_SECRET_B64.into()),
            active: true,
        }
    }

    fn load(&self) -> Result<Key, KeyConfigError> {
        let kid = self.kid.clone();
        let sources = [&self.secret_file, &self.secret_env, &self.secret];
        let text = match sources.iter().filter(|s| s.is_some()).count() {
            0 => return Err(KeyConfigError::NoSecret { kid }),
            1 => {
                if let Some(path) = &self.secret_file {
                    std::fs::read_to_string(path).map_err(|e| KeyConfigError::Unreadable {
                        kid: kid.clone(),
                        source: format!("reading secret_file {path}: {e}"),
                    })?
                } else if let Some(var) = &self.secret_env {
                    std::env::var(var).map_err(|_| KeyConfigError::Unreadable {
                        kid: kid.clone(),
                        source: format!("environment variable {var} is not set or not UTF-8"),
                    })?
                } else {
                    self.secret.clone().unwrap_or_default()
                }
            }
            _ => return Err(KeyConfigError::SeveralSecrets { kid }),
        };
        let secret = b64::decode(text.trim().as_bytes()).ok_or(KeyConfigError::NotBase64 { kid: kid.clone() })?;
        let alg = Algorithm::parse(&self.alg)
            .ok_or_else(|| KeyConfigError::UnknownAlg { kid: kid.clone(), alg: self.alg.clone() })?;
        Key::new(Some(kid), alg, &secret).map_err(KeyConfigError::Key)
    }
}

impl Keys {
    pub fn load(configs: &[KeyConfig]) -> Result<Keys, KeyConfigError> {
        let mut keys = Vec::new();
        let mut active = Vec::new();
        for c in configs {
            let k = c.load()?;
            if c.active || configs.len() == 1 {
                active.push(k.clone());
            }
            keys.push(k);
        }
        if active.len() != 1 {
            return Err(KeyConfigError::ActiveCount(active.len()));
        }
        let set = KeySet::new(keys).map_err(KeyConfigError::Key)?;
        Ok(Keys { signing: active.remove(0), set })
    }
}

/// A new random secret for `alg`, base64url (for `keygen`).
pub fn generate_secret(alg: Algorithm) -> String {
    let raw = crate::util::random_bytes::<64>();
    b64::encode(&raw[..alg.output_len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_key_loads_and_is_41_bytes() {
        let keys = Keys::load(&[KeyConfig::demo()]).expect("demo key");
        assert_eq!(keys.signing.kid(), Some(DEMO_KID));
        assert_eq!(b64::decode(DEMO_SECRET_B64.as_bytes()).map(|s| s.len()), Some(41));
    }

    #[test]
    fn key_config_errors() {
        let base = KeyConfig::demo();
        let cases: Vec<(&str, Vec<KeyConfig>, &str)> = vec![
            ("no secret", vec![KeyConfig { secret: None, ..base.clone() }], "set one of"),
            (
                "two secrets",
                vec![KeyConfig { secret_env: Some("X".into()), ..base.clone() }],
                "only one",
            ),
            ("padding", vec![KeyConfig { secret: Some("YWJj=".into()), ..base.clone() }], "base64url"),
            ("short", vec![KeyConfig { secret: Some("YWJj".into()), ..base.clone() }], "at least 32"),
            ("alg", vec![KeyConfig { alg: "RS256".into(), ..base.clone() }], "alg"),
            (
                "two active",
                vec![base.clone(), KeyConfig { kid: "k2".into(), ..base.clone() }],
                "exactly one key",
            ),
            (
                "missing env",
                vec![KeyConfig { secret: None, secret_env: Some("TOLLGATE_TEST_UNSET_VAR".into()), ..base.clone() }],
                "not set",
            ),
        ];
        for (name, cfg, want) in cases {
            let err = Keys::load(&cfg).map(|_| ()).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(!err.contains(DEMO_SECRET_B64), "{name}: secret leaked");
        }
    }

    #[test]
    fn rotation_set_signs_with_the_active_key() {
        let old = KeyConfig { active: false, ..KeyConfig::demo() };
        let new = KeyConfig { kid: "k2".into(), secret: Some(generate_secret(Algorithm::HS256)), active: true, ..KeyConfig::demo() };
        let keys = Keys::load(&[old, new]).expect("two keys");
        assert_eq!(keys.signing.kid(), Some("k2"));
        assert_eq!(keys.set.keys().len(), 2);
    }
}
