//! The token codec: everything that turns bytes into a trusted access token,
//! or a precise reason why not. Shared by the filter and the authority.
//!
//! ```text
//! bytes ─► jws (size, shape, header, alg, key, MAC) ─► claims (types, time, iss, aud, sub, ver)
//! ```

pub mod b64;
pub mod claims;
pub(crate) mod json;
pub mod jws;

pub use claims::{ClaimRules, Claims, RawClaims, TimeCheck};
pub use json::Field;
pub use jws::{Algorithm, Key, KeyError, KeySet};

use std::fmt;

/// The `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A part of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

impl Segment {
    pub fn name(self) -> &'static str {
        match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        }
    }
}

/// A claim the codec checks the type or content of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    Ver,
    Sid,
    Scope,
    Hosts,
}

impl Claim {
    pub fn name(self) -> &'static str {
        match self {
            Claim::Iss => "iss",
            Claim::Sub => "sub",
            Claim::Aud => "aud",
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Jti => "jti",
            Claim::Ver => "ver",
            Claim::Sid => "sid",
            Claim::Scope => "scope",
            Claim::Hosts => "hosts",
        }
    }
}

/// Why a token was refused. Each variant has a stable, secret-free
/// `description` (the RFC 6750 `error_description`) and a metric
/// [`Reason`](crate::reason::Reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    /// A segment is not strict base64url.
    BadEncoding(Segment),
    NotJsonObject(Segment),
    DuplicateMember(Segment),
    AlgorithmMissing,
    AlgorithmNone,
    AlgorithmNotAllowed,
    AlgorithmMismatch,
    KeyIdMissing,
    UnknownKeyId,
    UnsupportedCritical,
    TypeNotAllowed,
    SignatureInvalid,
    /// A claim has the wrong JSON type or is out of range.
    ClaimType(Claim),
    /// `sub`, `sid` or `scope` holds a control character: it could never be
    /// forwarded safely as an identity header.
    ControlCharacter(Claim),
    Expired,
    ExpirationMissing,
    NotYetValid,
    IssuedInFuture,
    IssuerMismatch,
    AudienceMismatch,
    SubjectMissing,
    VersionMissing,
    Revoked,
}

impl TokenError {
    pub fn description(self) -> &'static str {
        use TokenError::*;
        match self {
            TooLarge => "token too large",
            Malformed => "token is not a compact JWS",
            BadEncoding(Segment::Header) => "header is not base64url",
            BadEncoding(Segment::Payload) => "payload is not base64url",
            BadEncoding(Segment::Signature) => "signature is not base64url",
            NotJsonObject(Segment::Header) => "header is not a JSON object",
            NotJsonObject(_) => "payload is not a JSON object",
            DuplicateMember(Segment::Header) => "duplicate member in header",
            DuplicateMember(_) => "duplicate member in payload",
            AlgorithmMissing => "alg missing",
            AlgorithmNone => "alg none not allowed",
            AlgorithmNotAllowed => "alg not allowed",
            AlgorithmMismatch => "alg does not match key",
            KeyIdMissing => "kid missing",
            UnknownKeyId => "unknown key id",
            UnsupportedCritical => "unsupported critical header",
            TypeNotAllowed => "typ not allowed",
            SignatureInvalid => "signature invalid",
            ClaimType(c) => match c {
                Claim::Exp => "exp is not an integer NumericDate",
                Claim::Nbf => "nbf is not an integer NumericDate",
                Claim::Iat => "iat is not an integer NumericDate",
                Claim::Ver => "ver is not a non-negative integer",
                Claim::Aud => "aud is not a string or array of strings",
                Claim::Hosts => "hosts is not an array of strings",
                Claim::Iss => "iss is not a string",
                Claim::Sub => "sub is not a string",
                Claim::Sid => "sid is not a string",
                Claim::Jti => "jti is not a string",
                Claim::Scope => "scope is not a string",
            },
            ControlCharacter(Claim::Sub) => "sub contains a control character",
            ControlCharacter(Claim::Sid) => "sid contains a control character",
            ControlCharacter(_) => "scope contains a control character",
            Expired => "token expired",
            ExpirationMissing => "exp missing",
            NotYetValid => "token not yet valid",
            IssuedInFuture => "token issued in the future",
            IssuerMismatch => "issuer not accepted",
            AudienceMismatch => "audience not accepted",
            SubjectMissing => "sub missing",
            VersionMissing => "ver missing",
            Revoked => "token revoked",
        }
    }

    /// The metric reason (`tollgate.denied.<reason>`).
    pub fn reason(self) -> crate::reason::Reason {
        use crate::reason::Reason as R;
        use TokenError::*;
        match self {
            TooLarge => R::TooLarge,
            Malformed | BadEncoding(_) | NotJsonObject(_) | DuplicateMember(_) => R::Malformed,
            AlgorithmMissing | AlgorithmNone | AlgorithmNotAllowed | AlgorithmMismatch => R::BadAlg,
            KeyIdMissing | UnknownKeyId => R::UnknownKid,
            UnsupportedCritical | TypeNotAllowed => R::BadHeader,
            SignatureInvalid => R::BadSignature,
            ClaimType(_) | ControlCharacter(_) => R::BadClaim,
            Expired => R::Expired,
            ExpirationMissing => R::NoExp,
            NotYetValid | IssuedInFuture => R::NotYetValid,
            IssuerMismatch => R::BadIssuer,
            AudienceMismatch => R::BadAudience,
            SubjectMissing | VersionMissing => R::MissingClaim,
            Revoked => R::Revoked,
        }
    }

    /// A short snake_case name for metrics and logs.
    pub fn code(self) -> &'static str {
        self.reason().code()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for TokenError {}

/// Verifies access tokens: a key set, the claim rules, the accepted `typ`s
/// and a size cap. One per filter configuration; cheap to call per request.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub keys: KeySet,
    pub rules: ClaimRules,
    pub allowed_typ: Vec<String>,
    pub max_token_bytes: usize,
}

impl Verifier {
    pub fn verify(&self, token: &str, time: TimeCheck) -> Result<Claims, TokenError> {
        let jws = self.keys.verify(token.as_bytes(), self.max_token_bytes)?;
        match &jws.header.typ {
            Some(Field::Valid(t)) if self.allowed_typ.iter().any(|a| same_media_type(a, t)) => {}
            _ => return Err(TokenError::TypeNotAllowed),
        }
        let raw = RawClaims::parse(&jws.payload)?;
        self.rules.check(raw, time)
    }
}

/// RFC 7515 §4.1.9: media types compare case-insensitively, and a `typ`
/// without `/` means `application/<typ>` (so RFC 9068's `at+jwt` and
/// `application/at+jwt` are the same).
fn same_media_type(a: &str, b: &str) -> bool {
    fn short(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

/// Mints an access token with `key` (`typ: at+jwt`). The authority's side of
/// the same codec.
pub fn mint(key: &Key, claims: &Claims) -> String {
    key.sign(Some(ACCESS_TOKEN_TYP), &claims.to_json())
}
