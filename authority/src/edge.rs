//! The edge credential: the shared secret edges present on the endpoints
//! only edges need (`GET /v1/revocations`, `GET /v1/versions`,
//! `GET /metrics`), as `Authorization: Bearer <credential>`.
//!
//! It comes from the environment only (`TOLLGATE_EDGE_CREDENTIAL`, and
//! `TOLLGATE_EDGE_CREDENTIAL_PREVIOUS` while rotating), never from the config
//! file. Only its SHA-256 is kept; a presented value is hashed and compared
//! in constant time with each configured one, so neither the comparison's
//! time nor its length tells anything about the secret. Unset: the edge
//! endpoints are closed (every request 401) and the authority warns at start.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

pub const EDGE_CREDENTIAL_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL";
pub const EDGE_CREDENTIAL_PREVIOUS_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL_PREVIOUS";
/// The realm of the edge endpoints' `WWW-Authenticate` challenge.
pub const EDGE_REALM: &str = "tollgate-edge";
/// Shortest credential accepted (bytes): 32 random base64url characters
/// carry 192 bits.
pub const MIN_CREDENTIAL_BYTES: usize = 32;
/// Longest credential accepted (bytes).
pub const MAX_CREDENTIAL_BYTES: usize = 512;

/// The configured edge credentials, as SHA-256 digests. `Debug` shows only
/// which are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EdgeCredentials {
    current: Option<[u8; 32]>,
    previous: Option<[u8; 32]>,
}

impl fmt::Debug for EdgeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let shown = |d: &Option<[u8; 32]>| if d.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("EdgeCredentials")
            .field("current", &shown(&self.current))
            .field("previous", &shown(&self.previous))
            .finish()
    }
}

/// Which configured credential a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Current,
    Previous,
}

/// Why an edge request was refused (all answer 401 `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No credential is configured: the endpoints are closed.
    Closed,
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <credential>`.
    Malformed,
    /// A bearer value that is no configured credential.
    Invalid,
}

impl Refused {
    pub fn description(self) -> &'static str {
        match self {
            Refused::Closed => "edge endpoints are closed: the authority has no edge credential configured",
            Refused::Missing => "edge credential required",
            Refused::Malformed => "authorization is not a bearer edge credential",
            Refused::Invalid => "edge credential invalid",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Closed => "closed",
            Refused::Missing => "missing",
            Refused::Malformed => "malformed",
            Refused::Invalid => "invalid",
        }
    }
}

/// RFC 6750 `b64token`: the characters a bearer value may have.
fn is_b64token(v: &str) -> bool {
    let body = v.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Checks one credential value; the error names the variable and the rule,
/// never the value.
fn check_value(var: &str, value: &str) -> Result<[u8; 32], String> {
    if value.len() < MIN_CREDENTIAL_BYTES {
        return Err(format!(
            "{var} is {} bytes; the edge credential must be at least {MIN_CREDENTIAL_BYTES} bytes (e.g. 32 random bytes, base64url)",
            value.len()
        ));
    }
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!("{var} is longer than {MAX_CREDENTIAL_BYTES} bytes"));
    }
    if !is_b64token(value) {
        return Err(format!(
            "{var} must consist of letters, digits and - . _ ~ + / (optionally ending in =), as a bearer token (RFC 6750 b64token)"
        ));
    }
    Ok(Sha256::digest(value.as_bytes()).into())
}

impl EdgeCredentials {
    /// From the two values; an empty value counts as unset.
    pub fn new(current: Option<&str>, previous: Option<&str>) -> Result<EdgeCredentials, String> {
        let current = current.filter(|v| !v.is_empty());
        let previous = previous.filter(|v| !v.is_empty());
        if previous.is_some() && current.is_none() {
            return Err(format!("{EDGE_CREDENTIAL_PREVIOUS_ENV} is set but {EDGE_CREDENTIAL_ENV} is not"));
        }
        Ok(EdgeCredentials {
            current: current.map(|v| check_value(EDGE_CREDENTIAL_ENV, v)).transpose()?,
            previous: previous.map(|v| check_value(EDGE_CREDENTIAL_PREVIOUS_ENV, v)).transpose()?,
        })
    }

    /// From `TOLLGATE_EDGE_CREDENTIAL` and `TOLLGATE_EDGE_CREDENTIAL_PREVIOUS`.
    pub fn from_env() -> Result<EdgeCredentials, String> {
        let read = |var: &str| match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{var} is not valid UTF-8")),
        };
        let (current, previous) = (read(EDGE_CREDENTIAL_ENV)?, read(EDGE_CREDENTIAL_PREVIOUS_ENV)?);
        EdgeCredentials::new(current.as_deref(), previous.as_deref())
    }

    pub fn is_configured(&self) -> bool {
        self.current.is_some()
    }

    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// Checks a request's `Authorization` header value (`None`: absent).
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Matched, Refused> {
        let Some(current) = &self.current else { return Err(Refused::Closed) };
        let value = authorization.ok_or(Refused::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| Refused::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(Refused::Malformed)?;
        let token = token.trim_start_matches(' ');
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
            return Err(Refused::Malformed);
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Both comparisons always run.
        let is_current = current.ct_eq(&presented);
        let is_previous = self.previous.as_ref().map_or(subtle::Choice::from(0), |p| p.ct_eq(&presented));
        if bool::from(is_current) {
            Ok(Matched::Current)
        } else if bool::from(is_previous) {
            Ok(Matched::Previous)
        } else {
            Err(Refused::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUR: &str = "current-edge-credential-0123456789abcdef";
    const PREV: &str = "previous-edge-credential-0123456789abcdef";

    type ValueCase<'a> = (Option<&'a str>, Option<&'a str>, Result<(), &'a str>);
    type CheckCase<'a> = (&'a str, &'a EdgeCredentials, Option<String>, Result<Matched, Refused>);

    #[test]
    fn values_are_checked_and_never_echoed() {
        let short = "s3cret-short-value";
        let cases: &[ValueCase] = &[
            (None, None, Ok(())),
            (Some(""), None, Ok(())),
            (Some(CUR), None, Ok(())),
            (Some(CUR), Some(PREV), Ok(())),
            (Some("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="), None, Ok(())),
            (Some(short), None, Err("at least 32 bytes")),
            (Some(CUR), Some(short), Err("TOLLGATE_EDGE_CREDENTIAL_PREVIOUS is 18 bytes")),
            (None, Some(PREV), Err("is set but TOLLGATE_EDGE_CREDENTIAL is not")),
            (Some("has a space in it but is long enough ok"), None, Err("b64token")),
            (Some("non-ascii-é-credential-long-enough-0123"), None, Err("b64token")),
            (Some("=================================="), None, Err("b64token")),
        ];
        for (cur, prev, want) in cases {
            let got = EdgeCredentials::new(*cur, *prev);
            match (got, want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{cur:?} {prev:?}: {e}");
                    assert!(!e.contains(short) && !e.contains(CUR), "the value leaks: {e}");
                }
                (g, w) => panic!("{cur:?} {prev:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn check_table() {
        let both = EdgeCredentials::new(Some(CUR), Some(PREV)).expect("valid");
        let only = EdgeCredentials::new(Some(CUR), None).expect("valid");
        let none = EdgeCredentials::default();
        let bearer = |v: &str| format!("Bearer {v}");
        let cases: Vec<CheckCase> = vec![
            ("current", &both, Some(bearer(CUR)), Ok(Matched::Current)),
            ("previous", &both, Some(bearer(PREV)), Ok(Matched::Previous)),
            ("previous after rotation ends", &only, Some(bearer(PREV)), Err(Refused::Invalid)),
            ("scheme in any case", &only, Some(format!("bEaReR {CUR}")), Ok(Matched::Current)),
            ("extra spaces before the value", &only, Some(format!("Bearer   {CUR}")), Ok(Matched::Current)),
            ("absent", &only, None, Err(Refused::Missing)),
            ("basic", &only, Some(format!("Basic {CUR}")), Err(Refused::Malformed)),
            ("no value", &only, Some("Bearer".into()), Err(Refused::Malformed)),
            ("empty value", &only, Some("Bearer ".into()), Err(Refused::Malformed)),
            ("two values", &only, Some(format!("Bearer {CUR} {CUR}")), Err(Refused::Malformed)),
            ("prefix of the credential", &only, Some(bearer(&CUR[..CUR.len() - 1])), Err(Refused::Invalid)),
            ("credential plus a byte", &only, Some(bearer(&format!("{CUR}x"))), Err(Refused::Invalid)),
            ("closed", &none, Some(bearer(CUR)), Err(Refused::Closed)),
            ("closed, absent", &none, None, Err(Refused::Closed)),
        ];
        for (name, creds, header, want) in cases {
            assert_eq!(creds.check(header.as_deref().map(str::as_bytes)), want, "{name}");
        }
        assert_eq!(only.check(Some(b"Bearer \xff\xfe")), Err(Refused::Malformed));
    }

    #[test]
    fn debug_hides_the_values() {
        let c = EdgeCredentials::new(Some(CUR), Some(PREV)).expect("valid");
        let shown = format!("{c:?}");
        assert_eq!(shown, "EdgeCredentials { current: \"<redacted>\", previous: \"<redacted>\" }");
        let digest = hex::encode(Sha256::digest(CUR.as_bytes()));
        assert!(!shown.contains(&digest[..8]));
    }
}
