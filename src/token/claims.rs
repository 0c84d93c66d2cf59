//! JWT claims of a Tollgate access token (docs/architecture.md, "The token") and
//! their validation against the configured issuer, audiences and clock.

use super::json::{self, Field};
use super::jws::parse_object;
use super::{Claim, Segment, TokenError};

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
        let mut c = RawClaims::default();
        parse_object(payload, |r, name| {
            match name {
                "iss" => c.iss = Some(r.str_field()?),
                "sub" => c.sub = Some(r.str_field()?),
                "aud" => c.aud = Some(r.strings_field(true)?),
                "exp" => c.exp = Some(r.uint_field()?),
                "nbf" => c.nbf = Some(r.uint_field()?),
                "iat" => c.iat = Some(r.uint_field()?),
                "jti" => c.jti = Some(r.str_field()?),
                "ver" => c.ver = Some(r.uint_field()?),
                "sid" => c.sid = Some(r.str_field()?),
                "scope" => c.scope = Some(r.str_field()?),
                "hosts" => c.hosts = Some(r.strings_field(false)?),
                _ => r.skip()?,
            }
            Ok(())
        })
        .map_err(|e| match e {
            json::Error::Duplicate => TokenError::DuplicateMember(Segment::Payload),
            json::Error::Syntax(_) => TokenError::NotJsonObject(Segment::Payload),
        })?;
        Ok(c)
    }
}

/// The claims of an access token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// Written as a plain string when it has exactly one member.
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub jti: Option<String>,
    pub ver: u64,
    pub sid: Option<String>,
    pub scope: Option<String>,
    pub hosts: Option<Vec<String>>,
}

impl Claims {
    /// The payload to sign: members in declaration order, absent ones left out.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut o = json::ObjectWriter::new(&mut out);
        o.str("iss", &self.iss).str("sub", &self.sub);
        match &self.aud[..] {
            [one] => json::write_str(o.member("aud"), one),
            many => json::write_strs(o.member("aud"), many),
        }
        let opt_u64 = |o: &mut json::ObjectWriter, name, v: Option<u64>| {
            if let Some(v) = v {
                o.u64(name, v);
            }
        };
        let opt_str = |o: &mut json::ObjectWriter, name, v: &Option<String>| {
            if let Some(v) = v {
                o.str(name, v);
            }
        };
        opt_u64(&mut o, "exp", self.exp);
        opt_u64(&mut o, "nbf", self.nbf);
        opt_u64(&mut o, "iat", self.iat);
        opt_str(&mut o, "jti", &self.jti);
        o.u64("ver", self.ver);
        opt_str(&mut o, "sid", &self.sid);
        opt_str(&mut o, "scope", &self.scope);
        if let Some(hosts) = &self.hosts {
            json::write_strs(o.member("hosts"), hosts);
        }
        o.end();
        out.into_bytes()
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
