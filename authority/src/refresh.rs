//! Refresh-token rotation as plain functions: what a presented refresh token
//! means, given the state the store holds. No IO here; the service reads a
//! [`RefreshView`] from the store, asks [`decide`], and applies the outcome
//! with a compare-and-set so a concurrent change sends it round again.

use crate::util::{random_bytes, sha256, sha256_hex};
use tollgate::token::b64;

/// Refresh tokens are `tgr_` + base64url of 32 random bytes (256 bits).
pub const REFRESH_PREFIX: &str = "tgr_";
/// Longest refresh token looked up at all; longer input is refused unread.
pub const MAX_REFRESH_TOKEN_LEN: usize = 128;

/// A refresh family (one per login): the `sid` of its access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub sid: String,
    pub sub: String,
    pub scope: String,
    pub client_id: Option<String>,
    /// The `ver` of every access token of the family: max(min(sub), min(sid))
    /// when the family was created. Any later bump of either key exceeds it.
    pub ver: u64,
    pub created_at: u64,
    /// Absolute end of the family (seconds); rotation does not extend it.
    pub expires_at: u64,
}

/// The access token paired with a successor refresh token. Stored so that a
/// replay inside the grace window re-mints the byte-identical access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessStamp {
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// What happened to a refresh token once it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub at_ms: u64,
    /// SHA-256 (hex) of the successor refresh token.
    pub successor_hash: String,
    /// The successor's 32 random bytes XOR SHA-256(domain ‖ this token), hex.
    /// Only a holder of this token can open it; the store never holds a
    /// usable refresh token.
    pub sealed_successor: String,
    pub access: AccessStamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshState {
    /// The family head: may be rotated.
    Active,
    Rotated(Rotation),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub sid: String,
    pub state: RefreshState,
}

/// Everything [`decide`] needs, read atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefreshView {
    pub record: Option<RefreshRecord>,
    pub family: Option<Family>,
    /// Hash of the family's current head refresh token.
    pub head: Option<String>,
    pub min_sub: u64,
    pub min_sid: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Unknown,
    Revoked,
    Expired,
}

impl Reject {
    pub fn description(self) -> &'static str {
        match self {
            Reject::Unknown => "refresh token unknown",
            Reject::Revoked => "refresh token revoked",
            Reject::Expired => "refresh token expired",
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Reject::Unknown => "unknown",
            Reject::Revoked => "revoked",
            Reject::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The token is the family head: mint a successor and rotate.
    Rotate,
    /// Presented again inside the grace window while its successor is still
    /// the family head: answer with the same successor.
    Replay(Rotation),
    /// Presented again after the grace window, or after its successor was
    /// rotated itself: revoke the family (bump `sid`).
    Reuse,
    Reject(Reject),
}

/// The rule (RFC 9700 §4.14.2 with a replay grace window).
pub fn decide(view: &RefreshView, now_ms: u64, grace_ms: u64) -> Decision {
    let (Some(record), Some(family)) = (&view.record, &view.family) else {
        return Decision::Reject(Reject::Unknown);
    };
    if record.sid != family.sid {
        return Decision::Reject(Reject::Unknown);
    }
    if view.min_sub > family.ver || view.min_sid > family.ver {
        return Decision::Reject(Reject::Revoked);
    }
    if now_ms / 1000 >= family.expires_at {
        return Decision::Reject(Reject::Expired);
    }
    match &record.state {
        RefreshState::Active => Decision::Rotate,
        // Replaying a successor that was rotated since would hand out a dead
        // pair (or, were it still honoured, a second live branch of the
        // family): the presenter is not the one who continued the chain.
        RefreshState::Rotated(rot)
            if now_ms < rot.at_ms.saturating_add(grace_ms)
                && view.head.as_deref() == Some(rot.successor_hash.as_str()) =>
        {
            Decision::Replay(rot.clone())
        }
        RefreshState::Rotated(_) => Decision::Reuse,
    }
}

/// A fresh refresh token and its raw bytes.
pub fn new_refresh_token() -> ([u8; 32], String) {
    let raw = random_bytes::<32>();
    let token = format!("{REFRESH_PREFIX}{}", b64::encode(&raw));
    (raw, token)
}

/// What the store keys a refresh token by.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

fn pad(presented: &str) -> [u8; 32] {
    sha256(&[b"tollgate/successor-seal/v1\0", presented.as_bytes()])
}

/// Seals the successor's bytes under the presented token.
pub fn seal_successor(presented: &str, successor_raw: &[u8; 32]) -> String {
    let p = pad(presented);
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = successor_raw[i] ^ p[i];
    }
    hex::encode(out)
}

/// Opens a sealed successor with the presented token; `None` if the stored
/// value is not 32 hex bytes or does not hash to `successor_hash`.
pub fn open_successor(presented: &str, rotation: &Rotation) -> Option<String> {
    let sealed = hex::decode(&rotation.sealed_successor).ok()?;
    if sealed.len() != 32 {
        return None;
    }
    let p = pad(presented);
    let raw: Vec<u8> = sealed.iter().zip(p.iter()).map(|(a, b)| a ^ b).collect();
    let token = format!("{REFRESH_PREFIX}{}", b64::encode(&raw));
    (hash_token(&token) == rotation.successor_hash).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(ver: u64) -> Family {
        Family {
            sid: "s1".into(),
            sub: "alice".into(),
            scope: "read".into(),
            client_id: None,
            ver,
            created_at: 0,
            expires_at: 1_000,
        }
    }

    fn rotated(at_ms: u64) -> RefreshState {
        RefreshState::Rotated(Rotation {
            at_ms,
            successor_hash: "h".into(),
            sealed_successor: "00".into(),
            access: AccessStamp { iat: 1, exp: 2, jti: "j".into() },
        })
    }

    fn view(state: Option<RefreshState>, ver: u64, min_sub: u64, min_sid: u64) -> RefreshView {
        RefreshView {
            record: state.map(|state| RefreshRecord { sid: "s1".into(), state }),
            family: Some(family(ver)),
            head: Some("h".into()),
            min_sub,
            min_sid,
        }
    }

    fn succ_rotated() -> RefreshView {
        let mut v = view(Some(rotated(10_000)), 3, 3, 0);
        v.head = Some("h2".into());
        v
    }

    #[test]
    fn decision_table() {
        const GRACE: u64 = 30_000;
        // (case, view, now_ms, expected)
        let cases: Vec<(&str, RefreshView, u64, &str)> = vec![
            ("unknown token", view(None, 3, 3, 0), 10_000, "reject:unknown"),
            ("head rotates", view(Some(RefreshState::Active), 3, 3, 0), 10_000, "rotate"),
            ("head, older min_sub", view(Some(RefreshState::Active), 3, 2, 0), 10_000, "rotate"),
            ("subject bumped", view(Some(RefreshState::Active), 3, 4, 0), 10_000, "reject:revoked"),
            ("session bumped", view(Some(RefreshState::Active), 3, 3, 4), 10_000, "reject:revoked"),
            ("family expired", view(Some(RefreshState::Active), 3, 3, 0), 1_000_000, "reject:expired"),
            ("replay at rotation", view(Some(rotated(10_000)), 3, 3, 0), 10_000, "replay"),
            ("replay inside grace", view(Some(rotated(10_000)), 3, 3, 0), 39_999, "replay"),
            ("reuse at grace end", view(Some(rotated(10_000)), 3, 3, 0), 40_000, "reuse"),
            ("reuse long after", view(Some(rotated(10_000)), 3, 3, 0), 500_000, "reuse"),
            ("rotated, family revoked", view(Some(rotated(10_000)), 3, 3, 9), 10_001, "reject:revoked"),
            ("clock behind rotation", view(Some(rotated(10_000)), 3, 3, 0), 9_000, "replay"),
            ("successor rotated since", succ_rotated(), 10_001, "reuse"),
        ];
        for (name, v, now, want) in cases {
            let got = match decide(&v, now, GRACE) {
                Decision::Rotate => "rotate".to_string(),
                Decision::Replay(_) => "replay".to_string(),
                Decision::Reuse => "reuse".to_string(),
                Decision::Reject(r) => format!("reject:{}", r.code()),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn record_of_another_family_is_unknown() {
        let mut v = view(Some(RefreshState::Active), 1, 1, 0);
        if let Some(r) = v.record.as_mut() {
            r.sid = "other".into();
        }
        assert_eq!(decide(&v, 0, 0), Decision::Reject(Reject::Unknown));
    }

    #[test]
    fn sealed_successor_opens_only_with_the_presented_token() {
        let (_, old) = new_refresh_token();
        let (raw, succ) = new_refresh_token();
        let rot = Rotation {
            at_ms: 0,
            successor_hash: hash_token(&succ),
            sealed_successor: seal_successor(&old, &raw),
            access: AccessStamp { iat: 0, exp: 0, jti: String::new() },
        };
        assert_eq!(open_successor(&old, &rot).as_deref(), Some(succ.as_str()));
        let (_, other) = new_refresh_token();
        assert_eq!(open_successor(&other, &rot), None);
        assert_ne!(rot.sealed_successor, hex::encode(raw));
    }

    #[test]
    fn refresh_tokens_are_256_bit_and_distinct() {
        let (a_raw, a) = new_refresh_token();
        let (_, b) = new_refresh_token();
        assert_eq!(a_raw.len(), 32);
        assert_ne!(a, b);
        assert!(a.starts_with(REFRESH_PREFIX));
        assert_eq!(hash_token(&a).len(), 64);
    }
}
