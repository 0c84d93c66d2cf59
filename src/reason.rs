//! Every way a request is refused, written once: the [`Reason`] a refusal is
//! counted under (`tollgate.denied.<reason>`), its HTTP status and its RFC 6750
//! error code. [`crate::authenticator::DenyReason`] and
//! [`crate::token::TokenError`] map onto it; hosts define one counter per
//! [`Reason::ALL`] entry, so a new reason cannot go uncounted (the test below
//! fails when [`Reason::ALL`] misses a variant).

/// The metric label of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NoToken,
    InvalidRequest,
    MissingScope,
    AdminRequired,
    HostNotAllowed,
    UserMismatch,
    RefreshRejected,
    Unavailable,
    TooLarge,
    Malformed,
    BadAlg,
    UnknownKid,
    BadHeader,
    BadSignature,
    BadClaim,
    Expired,
    NoExp,
    NotYetValid,
    BadIssuer,
    BadAudience,
    MissingClaim,
    Revoked,
}

/// RFC 6750 §3.1 error codes (plus RFC 6749's `temporarily_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::NoToken,
        Reason::InvalidRequest,
        Reason::MissingScope,
        Reason::AdminRequired,
        Reason::HostNotAllowed,
        Reason::UserMismatch,
        Reason::RefreshRejected,
        Reason::Unavailable,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::BadAlg,
        Reason::UnknownKid,
        Reason::BadHeader,
        Reason::BadSignature,
        Reason::BadClaim,
        Reason::Expired,
        Reason::NoExp,
        Reason::NotYetValid,
        Reason::BadIssuer,
        Reason::BadAudience,
        Reason::MissingClaim,
        Reason::Revoked,
    ];

    /// The table: metric code, status, error code (`None`: a request without
    /// credentials gets a bare challenge, RFC 6750 §3.1).
    pub fn row(self) -> (&'static str, u16, Option<ErrorCode>) {
        use ErrorCode::{InsufficientScope, InvalidToken, TemporarilyUnavailable};
        use Reason::*;
        match self {
            NoToken => ("no_token", 401, None),
            Reason::InvalidRequest => ("invalid_request", 400, Some(ErrorCode::InvalidRequest)),
            MissingScope => ("missing_scope", 403, Some(InsufficientScope)),
            AdminRequired => ("admin_required", 403, Some(InsufficientScope)),
            HostNotAllowed => ("host_not_allowed", 403, Some(InsufficientScope)),
            UserMismatch => ("user_mismatch", 403, Some(InsufficientScope)),
            RefreshRejected => ("refresh_rejected", 401, Some(InvalidToken)),
            Unavailable => ("unavailable", 503, Some(TemporarilyUnavailable)),
            TooLarge => ("too_large", 401, Some(InvalidToken)),
            Malformed => ("malformed", 401, Some(InvalidToken)),
            BadAlg => ("bad_alg", 401, Some(InvalidToken)),
            UnknownKid => ("unknown_kid", 401, Some(InvalidToken)),
            BadHeader => ("bad_header", 401, Some(InvalidToken)),
            BadSignature => ("bad_signature", 401, Some(InvalidToken)),
            BadClaim => ("bad_claim", 401, Some(InvalidToken)),
            Expired => ("expired", 401, Some(InvalidToken)),
            NoExp => ("no_exp", 401, Some(InvalidToken)),
            NotYetValid => ("not_yet_valid", 401, Some(InvalidToken)),
            BadIssuer => ("bad_issuer", 401, Some(InvalidToken)),
            BadAudience => ("bad_audience", 401, Some(InvalidToken)),
            MissingClaim => ("missing_claim", 401, Some(InvalidToken)),
            Revoked => ("revoked", 401, Some(InvalidToken)),
        }
    }

    /// The metric code (`tollgate.denied.<code>`).
    pub fn code(self) -> &'static str {
        self.row().0
    }

    pub fn status(self) -> u16 {
        self.row().1
    }

    pub fn error_code(self) -> Option<ErrorCode> {
        self.row().2
    }

    /// Every metric code, for hosts that register counters by name.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        Reason::ALL.into_iter().map(Reason::code)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Fails to compile when a variant is added without a position here, and
    /// fails when `ALL` does not list every variant once, in order.
    fn position(r: Reason) -> usize {
        use Reason::*;
        match r {
            NoToken => 0,
            InvalidRequest => 1,
            MissingScope => 2,
            AdminRequired => 3,
            HostNotAllowed => 4,
            UserMismatch => 5,
            RefreshRejected => 6,
            Unavailable => 7,
            TooLarge => 8,
            Malformed => 9,
            BadAlg => 10,
            UnknownKid => 11,
            BadHeader => 12,
            BadSignature => 13,
            BadClaim => 14,
            Expired => 15,
            NoExp => 16,
            NotYetValid => 17,
            BadIssuer => 18,
            BadAudience => 19,
            MissingClaim => 20,
            Revoked => 21,
        }
    }

    #[test]
    fn every_reason_is_listed_once_with_a_unique_code() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(position(r), i, "{r:?}");
        }
        let mut codes: Vec<&str> = Reason::codes().collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len(), "metric codes are unique");
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
    }

    #[test]
    fn statuses_follow_rfc_6750() {
        for r in Reason::ALL {
            let (_, status, code) = r.row();
            let want = match status {
                400 => Some(ErrorCode::InvalidRequest),
                401 if r == Reason::NoToken => None,
                401 => Some(ErrorCode::InvalidToken),
                403 => Some(ErrorCode::InsufficientScope),
                503 => Some(ErrorCode::TemporarilyUnavailable),
                other => panic!("{r:?}: status {other}"),
            };
            assert_eq!(code, want, "{r:?}");
        }
    }
}
