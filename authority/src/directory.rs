//! Users (password grant) and clients (client_credentials), with argon2id
//! hashes in PHC string format. Loaded from a TOML users file, or the demo
//! principals when none is configured.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// Demo principals: (name, password, scopes, argon2id hash of the password).
/// The hashes are precomputed (argon2id, m=19456 KiB, t=2, p=1) so startup
/// costs nothing; regenerate with `tollgate-authority hash-secret`.
pub const DEMO_USERS: &[(&str, &str, &str, &str)] = &[
    ("alice", "alice-password", "read write", "$argon2id$v=19$m=19456,t=2,p=1$ZGVtby1zYWx0LWFsaWNl$UVIIApEb/DKuFKk54PQUEoAx+q4dzfuyV5jrP3Ujxhc"),
    ("admin", "admin-password", "read write tollgate:admin", "$argon2id$v=19$m=19456,t=2,p=1$ZGVtby1zYWx0LWFkbWlu$bFKQZwHn1JAqebkpi7/ulmvlNSdWxlt4Nkz0Av033ZQ"),
];
/// Demo client for `client_credentials`: (id, secret, scopes, hash).
pub const DEMO_CLIENTS: &[(&str, &str, &str, &str)] = &[(
    "demo-client",
    "demo-client-secret",
    "read",
    "$argon2id$v=19$m=19456,t=2,p=1$ZGVtby1zYWx0LWRlbW8tY2xpZW50$ngLEb/zr216Ecfsgwgydu8Wx91Ped28xyHpDibGaIkI",
)];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub password_hash: String,
    #[serde(default)]
    pub scopes: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub id: String,
    pub secret_hash: String,
    #[serde(default)]
    pub scopes: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
}

#[derive(Debug, Clone)]
pub struct Principal {
    hash: String,
    pub scopes: Vec<String>,
}

/// A hash to compare against when the name is unknown, so an unknown name
/// costs the same as a wrong password.
const DUMMY_HASH: &str = DEMO_USERS[0].3;

#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, Principal>,
    clients: HashMap<String, Principal>,
}

#[derive(Debug)]
pub enum DirectoryError {
    Read(String),
    Parse(String),
    BadHash { who: String },
    Duplicate { who: String },
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DirectoryError::Read(e) => write!(f, "users file: {e}"),
            DirectoryError::Parse(e) => write!(f, "users file: {e}"),
            DirectoryError::BadHash { who } => write!(f, "users file: {who}: hash is not a PHC argon2 string"),
            DirectoryError::Duplicate { who } => write!(f, "users file: {who} appears twice"),
        }
    }
}

impl std::error::Error for DirectoryError {}

pub fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn principal(who: &str, hash: &str, scopes: &str) -> Result<Principal, DirectoryError> {
    PasswordHash::new(hash).map_err(|_| DirectoryError::BadHash { who: who.to_owned() })?;
    Ok(Principal { hash: hash.to_owned(), scopes: split_scopes(scopes) })
}

impl Directory {
    pub fn demo() -> Directory {
        let mut d = Directory::default();
        for (name, _, scopes, hash) in DEMO_USERS {
            d.users.insert((*name).into(), Principal { hash: (*hash).into(), scopes: split_scopes(scopes) });
        }
        for (id, _, scopes, hash) in DEMO_CLIENTS {
            d.clients.insert((*id).into(), Principal { hash: (*hash).into(), scopes: split_scopes(scopes) });
        }
        d
    }

    pub fn from_file(file: &UsersFile) -> Result<Directory, DirectoryError> {
        let mut d = Directory::default();
        for u in &file.users {
            let who = format!("user {:?}", u.name);
            if d.users.insert(u.name.clone(), principal(&who, &u.password_hash, &u.scopes)?).is_some() {
                return Err(DirectoryError::Duplicate { who });
            }
        }
        for c in &file.clients {
            let who = format!("client {:?}", c.id);
            if d.clients.insert(c.id.clone(), principal(&who, &c.secret_hash, &c.scopes)?).is_some() {
                return Err(DirectoryError::Duplicate { who });
            }
        }
        Ok(d)
    }

    pub fn load(path: &str) -> Result<Directory, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| DirectoryError::Read(format!("{path}: {e}")))?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| DirectoryError::Parse(e.to_string()))?;
        Directory::from_file(&file)
    }

    /// Checks a password; `None` for an unknown user or a wrong password
    /// (same cost either way). CPU-heavy: call from a blocking thread.
    pub fn check_user(&self, name: &str, password: &str) -> Option<Vec<String>> {
        check(self.users.get(name), password)
    }

    pub fn check_client(&self, id: &str, secret: &str) -> Option<Vec<String>> {
        check(self.clients.get(id), secret)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

fn check(p: Option<&Principal>, secret: &str) -> Option<Vec<String>> {
    let hash = p.map(|p| p.hash.as_str()).unwrap_or(DUMMY_HASH);
    let ok = match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    };
    match (ok, p) {
        (true, Some(p)) => Some(p.scopes.clone()),
        _ => None,
    }
}

/// An argon2id PHC hash of `secret` with a random salt and default parameters.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&crate::util::random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(secret.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_users_check_and_errors() {
        let hash = hash_secret("pw").expect("hash");
        let file = UsersFile {
            users: vec![UserEntry { name: "u".into(), password_hash: hash.clone(), scopes: "a b".into() }],
            clients: vec![],
        };
        let d = Directory::from_file(&file).expect("directory");
        assert_eq!(d.check_user("u", "pw"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(d.check_user("u", "wrong"), None);
        assert_eq!(d.check_user("nobody", "pw"), None);
        let bad = UsersFile {
            users: vec![UserEntry { name: "u".into(), password_hash: "plain".into(), scopes: String::new() }],
            clients: vec![],
        };
        assert!(matches!(Directory::from_file(&bad), Err(DirectoryError::BadHash { .. })));
    }
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    // The demo hashes are argon2id of the demo secrets; to make new ones:
    //   printf %s 'alice-password' | tollgate-authority hash-secret
    #[test]
    fn demo_hashes_match_demo_passwords() {
        let d = Directory::demo();
        for (name, password, scopes, _) in DEMO_USERS {
            assert_eq!(d.check_user(name, password), Some(split_scopes(scopes)), "{name}");
        }
        for (id, secret, scopes, _) in DEMO_CLIENTS {
            assert_eq!(d.check_client(id, secret), Some(split_scopes(scopes)), "{id}");
        }
    }
}
