//! JWT claims of a Tollgate access token (docs/architecture.md, "The token") and
//! their validation against the configured issuer, audiences and clock.

use super::json::{self, Field, Name, Seen};
use super::jws::{parse_object, ObjectError};
use super::{Claim, Segment, TokenError};
use serde::de::{MapAccess, Visitor};
use serde::Serialize;
use std::fmt;

/// Largest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;
/// Largest `ver`: the largest integer every JSON implementation holds exactly.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// The claims as they appear in the token, each either well-typed or marked
/// invalid. Produced by [`RawClaims::parse`], consumed by [`ClaimRules::check`].
#[derive(Debug, Default)]
pub struct RawClaims {
    pub iss: Option<Field<String>>,
    pub sub: Option<Field<String>>,
    pub aud: Option<Field<Vec<String>>>,
    pub exp: Option<Field<u64>>,
    pub nbf: Option<Field<u64>>,
    pub iat: Option<Field<u64>>,
    pub jti: Option<Field<String>>,
    pub ver: Option<Field<u64>>,
    pub sid: Option<Field<String>>,
    pub scope: Option<Field<String>>,
    pub hosts: Option<Field<Vec<String>>>,
}

impl RawClaims {
    pub fn parse(payload: &[u8]) -> Result<RawClaims, TokenError> {
        parse_object(payload, ClaimsVisitor).map_err(|e| match e {
            ObjectError::Duplicate => TokenError::DuplicateMember(Segment::Payload),
            ObjectError::Invalid => TokenError::NotJsonObject(Segment::Payload),
        })
    }
}

struct ClaimsVisitor;

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = RawClaims;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let mut c = RawClaims::default();
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            match &*name {
                "iss" => c.iss = Some(json::value(&mut map, json::Str)?),
                "sub" => c.sub = Some(json::value(&mut map, json::Str)?),
                "aud" => c.aud = Some(json::value(&mut map, json::Strings { one_allowed: true })?),
                "exp" => c.exp = Some(json::value(&mut map, json::UInt)?),
                "nbf" => c.nbf = Some(json::value(&mut map, json::UInt)?),
                "iat" => c.iat = Some(json::value(&mut map, json::UInt)?),
                "jti" => c.jti = Some(json::value(&mut map, json::Str)?),
                "ver" => c.ver = Some(json::value(&mut map, json::UInt)?),
                "sid" => c.sid = Some(json::value(&mut map, json::Str)?),
                "scope" => c.scope = Some(json::value(&mut map, json::Str)?),
                "hosts" => c.hosts = Some(json::value(&mut map, json::Strings { one_allowed: false })?),
                _ => json::skip(&mut map)?,
            }
            seen.insert::<A::Error>(name)?;
        }
        Ok(c)
    }
}

/// The claims of an access token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// Serialized as a plain string when it has exactly one member.
    #[serde(serialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub ver: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
}

impl Claims {
    /// The serialized payload to sign.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and vectors of them always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }
}

/// How time claims are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// Against this clock (seconds since the epoch).
    At(u64),
    /// Not at all: only for inspecting tokens offline (`inspect`, RFC examples).
    Skip,
}

/// What a token's claims must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Seconds of tolerated clock difference, applied to `exp`, `nbf`, `iat`.
    pub clock_skew: u64,
    /// Accept a token without `exp` when it carries a `sid`.
    pub allow_never_expiring: bool,
}

impl ClaimRules {
    /// Validates the claims. The type checks come first so that a claim of the
    /// wrong type can never skip its own check.
    pub fn check(&self, raw: RawClaims, time: TimeCheck) -> Result<Claims, TokenError> {
        let exp = uint(raw.exp, Claim::Exp, MAX_NUMERIC_DATE)?;
        let nbf = uint(raw.nbf, Claim::Nbf, MAX_NUMERIC_DATE)?;
        let iat = uint(raw.iat, Claim::Iat, MAX_NUMERIC_DATE)?;
        let ver = uint(raw.ver, Claim::Ver, MAX_VERSION)?;
        let iss = string(raw.iss, Claim::Iss)?;
        let sub = header_safe(string(raw.sub, Claim::Sub)?, Claim::Sub)?;
        let sid = header_safe(string(raw.sid, Claim::Sid)?, Claim::Sid)?;
        let jti = string(raw.jti, Claim::Jti)?;
        let scope = header_safe(string(raw.scope, Claim::Scope)?, Claim::Scope)?;
        let aud = match raw.aud {
            None => None,
            Some(Field::Valid(a)) => Some(a),
            Some(Field::Invalid) => return Err(TokenError::ClaimType(Claim::Aud)),
        };
        let hosts = match raw.hosts {
            None => None,
            Some(Field::Valid(h)) => Some(h),
            Some(Field::Invalid) => return Err(TokenError::ClaimType(Claim::Hosts)),
        };

        if let TimeCheck::At(now) = time {
            self.check_times(exp, nbf, iat, sid.as_deref(), now)?;
        }

        let iss = iss.ok_or(TokenError::IssuerMismatch)?;
        if iss != self.issuer {
            return Err(TokenError::IssuerMismatch);
        }
        let aud = aud.ok_or(TokenError::AudienceMismatch)?;
        if !aud.iter().any(|a| self.audiences.iter().any(|c| c == a)) {
            return Err(TokenError::AudienceMismatch);
        }
        let sub = sub.filter(|s| !s.is_empty()).ok_or(TokenError::SubjectMissing)?;
        let ver = ver.ok_or(TokenError::VersionMissing)?;
        Ok(Claims { iss, sub, aud, exp, nbf, iat, jti, ver, sid, scope, hosts })
    }
}

impl ClaimRules {
    /// The checks that depend on the clock, on claims that passed every
    /// other check (a cached token is checked again with only these).
    pub fn check_time(&self, c: &Claims, now: u64) -> Result<(), TokenError> {
        self.check_times(c.exp, c.nbf, c.iat, c.sid.as_deref(), now)
    }

    fn check_times(&self, exp: Option<u64>, nbf: Option<u64>, iat: Option<u64>, sid: Option<&str>, now: u64) -> Result<(), TokenError> {
        match exp {
            Some(exp) if now >= exp.saturating_add(self.clock_skew) => return Err(TokenError::Expired),
            Some(_) => {}
            None => {
                let revocable = sid.is_some_and(|s| !s.is_empty());
                if !(self.allow_never_expiring && revocable) {
                    return Err(TokenError::ExpirationMissing);
                }
            }
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.clock_skew)) {
            return Err(TokenError::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(self.clock_skew)) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

fn uint(f: Option<Field<u64>>, name: Claim, max: u64) -> Result<Option<u64>, TokenError> {
    match f {
        None => Ok(None),
        Some(Field::Valid(v)) if v <= max => Ok(Some(v)),
        Some(_) => Err(TokenError::ClaimType(name)),
    }
}

fn header_safe(v: Option<String>, name: Claim) -> Result<Option<String>, TokenError> {
    match v {
        Some(s) if s.chars().any(char::is_control) => Err(TokenError::ControlCharacter(name)),
        v => Ok(v),
    }
}

fn string(f: Option<Field<String>>, name: Claim) -> Result<Option<String>, TokenError> {
    match f {
        None => Ok(None),
        Some(Field::Valid(v)) => Ok(Some(v)),
        Some(Field::Invalid) => Err(TokenError::ClaimType(name)),
    }
}

fn one_or_many<S: serde::Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}
