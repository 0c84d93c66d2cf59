//! The wire contract between the edge and the authority, defined once: both
//! sides import these types and functions, so a field, a key format or a
//! matching rule cannot drift between them.
//!
//! | what | here |
//! |---|---|
//! | version keys `sub:<id>` / `sid:<id>` | [`VersionKey`] |
//! | a feed page `GET /v1/revocations` | [`FeedPage`], [`FeedEntry`] |
//! | expiry of a feed entry | [`merge_expiry`], [`is_live`] |
//! | the live answer `GET /v1/versions` | [`VersionsAnswer`] |
//! | the token endpoint's answer (RFC 6749 §5.1) and errors (§5.2) | [`TokenAnswer`], [`ErrorAnswer`] |
//! | `Authorization: Bearer` (RFC 6750 §2.1) | [`bearer`] |
//! | a `hosts` entry against a client address | [`host_allowed`] |
//! | the token size cap | [`MAX_TOKEN_BYTES`] |

use crate::token::json::{self, Members, Value};
use crate::sorted_map::SortedMap;
use std::fmt;
use std::net::IpAddr;

/// The largest access token either side reads, by default (configurable at
/// the edge up to 65536).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Longest version key accepted (`sub:` or `sid:` plus the id).
pub const MAX_KEY_LEN: usize = 256;

/// A revocation version key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VersionKey {
    Subject(String),
    Session(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    UnknownKind,
    Empty,
    TooLong,
    BadCharacter,
}

impl KeyError {
    pub fn description(self) -> &'static str {
        match self {
            KeyError::UnknownKind => "version key must start with sub: or sid:",
            KeyError::Empty => "version key has an empty id",
            KeyError::TooLong => "version key too long",
            KeyError::BadCharacter => "version key contains a control character or space",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for KeyError {}

/// Checks an id used in a version key (a subject, a session id).
pub fn check_id(id: &str) -> Result<(), KeyError> {
    if id.is_empty() {
        return Err(KeyError::Empty);
    }
    if id.len() + 4 > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(KeyError::BadCharacter);
    }
    Ok(())
}

impl VersionKey {
    pub fn parse(s: &str) -> Result<VersionKey, KeyError> {
        let (kind, id) = s.split_once(':').ok_or(KeyError::UnknownKind)?;
        check_id(id)?;
        match kind {
            "sub" => Ok(VersionKey::Subject(id.to_owned())),
            "sid" => Ok(VersionKey::Session(id.to_owned())),
            _ => Err(KeyError::UnknownKind),
        }
    }

    pub fn subject(sub: &str) -> Result<VersionKey, KeyError> {
        check_id(sub)?;
        Ok(VersionKey::Subject(sub.to_owned()))
    }

    pub fn session(sid: &str) -> Result<VersionKey, KeyError> {
        check_id(sid)?;
        Ok(VersionKey::Session(sid.to_owned()))
    }

    pub fn id(&self) -> &str {
        match self {
            VersionKey::Subject(s) | VersionKey::Session(s) => s,
        }
    }

    /// Whether `key` has a known kind (`sub:` or `sid:`): the edge's check of
    /// what a feed lists (it keeps keys as text).
    pub fn has_known_kind(key: &str) -> bool {
        key.starts_with("sub:") || key.starts_with("sid:")
    }
}

impl fmt::Display for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            VersionKey::Subject(s) => write!(f, "sub:{s}"),
            VersionKey::Session(s) => write!(f, "sid:{s}"),
        }
    }
}

/// The version keys of a token, as the edge looks them up: `sub:<sub>`, and
/// `sid:<sid>` when it has one.
pub fn version_keys(sub: &str, sid: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("sub:{sub}")];
    if let Some(sid) = sid {
        keys.push(format!("sid:{sid}"));
    }
    keys
}

/// One feed entry: tokens with this key and `ver < min_ver` are revoked.
/// `expires_at` (seconds) is when no such token can still be unexpired;
/// `None` (JSON null) for keys of never-expiring API tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), derive(serde::Serialize))]
pub struct FeedEntry {
    pub key: String,
    pub min_ver: u64,
    pub expires_at: Option<u64>,
}

/// A feed answer (docs/authority-api.md, "Revocation feed").
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), derive(serde::Serialize))]
pub struct FeedPage {
    /// True for the whole live set (no or a foreign cursor), false for the
    /// changes after the cursor.
    pub snapshot: bool,
    pub entries: Vec<FeedEntry>,
    /// Opaque; pass as `after=` next time.
    pub cursor: String,
    /// The id of the store that answered.
    pub store: Option<String>,
    /// The minimum version of every key the store never bumped.
    pub floor: u64,
    /// The authority's clock (seconds), for edges to notice skew.
    #[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), serde(skip_serializing_if = "Option::is_none"))]
    pub now: Option<u64>,
}

/// Why a feed answer was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    NotJson,
    TooLarge,
    BadKey,
}

/// A feed body's size limit: well above 10k entries, far below Envoy's
/// buffer limits.
pub const MAX_FEED_BYTES: usize = 8 << 20;

impl FeedPage {
    /// The edge's reading of a feed body: bounded, every key of a known kind.
    pub fn parse(body: &[u8]) -> Result<FeedPage, FeedError> {
        if body.len() > MAX_FEED_BYTES {
            return Err(FeedError::TooLarge);
        }
        let page = json::parse(body).ok().as_ref().and_then(FeedPage::read).ok_or(FeedError::NotJson)?;
        if page.entries.iter().any(|e| !VersionKey::has_known_kind(&e.key)) {
            return Err(FeedError::BadKey);
        }
        Ok(page)
    }

    /// The page in a JSON value: `snapshot`, `entries` and `cursor`
    /// required, `store` and `now` may be null, `floor` defaults to 0,
    /// unknown members ignored; an entry has exactly its three members.
    fn read(v: &Value) -> Option<FeedPage> {
        let m = Members::of(v)?;
        let entries = match m.get("entries")? {
            Value::Array(items) => items.iter().map(FeedEntry::read).collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        Some(FeedPage {
            snapshot: m.bool("snapshot")?,
            entries,
            cursor: m.string("cursor")?,
            store: m.opt_string("store")?,
            floor: m.opt_u64("floor")?.unwrap_or(0),
            now: m.opt_u64("now")?,
        })
    }
}

impl FeedEntry {
    fn read(v: &Value) -> Option<FeedEntry> {
        let m = Members::of(v)?;
        m.only(&["key", "min_ver", "expires_at"])?;
        Some(FeedEntry { key: m.string("key")?, min_ver: m.u64("min_ver")?, expires_at: m.opt_u64("expires_at")? })
    }
}

/// Merges two expiries: never (`None`) wins, otherwise the later one. An
/// entry's expiry therefore never moves earlier.
pub fn merge_expiry(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// Whether an entry is still listed at `now` (seconds).
pub fn is_live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|e| e > now)
}

/// Most keys in one `GET /v1/versions` question, and so in its answer.
pub const MAX_VERSION_KEYS: usize = 64;

/// A `GET /v1/versions` answer: `{"versions": {"sub:alice": 3}}`; a key the
/// store never bumped answers the store's floor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), derive(serde::Serialize))]
pub struct VersionsAnswer {
    pub versions: SortedMap<String, u64>,
}

impl VersionsAnswer {
    /// The edge's reading of an answer: `versions` maps each key once to
    /// an integer; other members are ignored.
    pub fn parse(body: &[u8]) -> Option<VersionsAnswer> {
        let v = json::parse(body).ok()?;
        let Value::Object(members) = Members::of(&v)?.get("versions")? else { return None };
        // No question has more keys: a longer answer is not one, and
        // refusing it first keeps the sorted insertions below short.
        if members.len() > MAX_VERSION_KEYS {
            return None;
        }
        let versions: SortedMap<String, u64> =
            members.iter().map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect::<Option<_>>()?;
        // A key listed twice is not an answer.
        (versions.len() == members.len()).then_some(VersionsAnswer { versions })
    }
}

/// A successful token-endpoint answer (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), derive(serde::Serialize))]
pub struct TokenAnswer {
    pub access_token: String,
    /// `Bearer` when absent.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    #[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), serde(skip_serializing_if = "Option::is_none"))]
    pub refresh_token: Option<String>,
    #[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), serde(skip_serializing_if = "Option::is_none"))]
    pub scope: Option<String>,
}

impl TokenAnswer {
    /// The edge's reading of a token-endpoint answer; unknown members are
    /// ignored (RFC 6749 §5.1).
    pub fn parse(body: &[u8]) -> Option<TokenAnswer> {
        let v = json::parse(body).ok()?;
        let m = Members::of(&v)?;
        Some(TokenAnswer {
            access_token: m.string("access_token")?,
            token_type: m.opt_string("token_type")?.unwrap_or_else(|| "Bearer".into()),
            expires_in: m.u64("expires_in")?,
            refresh_token: m.opt_string("refresh_token")?,
            scope: m.opt_string("scope")?,
        })
    }
}

/// An error answer (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), derive(serde::Serialize))]
pub struct ErrorAnswer {
    pub error: String,
    #[cfg_attr(not(all(target_arch = "wasm32", target_os = "wasi")), serde(skip_serializing_if = "Option::is_none"))]
    pub error_description: Option<String>,
}

impl ErrorAnswer {
    pub fn parse(body: &[u8]) -> Option<ErrorAnswer> {
        let v = json::parse(body).ok()?;
        let m = Members::of(&v)?;
        Some(ErrorAnswer { error: m.string("error")?, error_description: m.opt_string("error_description")? })
    }
}

/// The RFC 6749 error code of a refresh token that is dead (expired,
/// reused, revoked).
pub const INVALID_GRANT: &str = "invalid_grant";

/// Why an `Authorization` value is not a Bearer credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// Another scheme (the caller decides whether that is allowed).
    OtherScheme,
    /// `Bearer` without exactly one space and an RFC 6750 `b64token`.
    Malformed,
}

/// Exactly `Bearer <SP> b64token` (scheme case-insensitive, RFC 7235 §2.1;
/// `b64token` per RFC 6750 §2.1). Optional white space around the whole
/// value is allowed (a list element of a joined header), nothing inside.
pub fn bearer(value: &str) -> Result<&str, BearerError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, Some(rest)),
        None => (value, None),
    };
    if !is_token(scheme) {
        return Err(BearerError::Malformed);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::OtherScheme);
    }
    match rest {
        Some(token) if is_b64token(token) => Ok(token),
        _ => Err(BearerError::Malformed),
    }
}

/// RFC 9110 `token`: a scheme name.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A `hosts` entry (and an authority's `trusted_proxies` entry), read once:
/// `*`, an IP address, or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEntry {
    Any,
    Addr(IpAddr),
    /// An address and a prefix length (≤ 32 for IPv4, ≤ 128 for IPv6); the
    /// address's bits past the prefix are ignored, as `ipnet` ignores them.
    Net(IpAddr, u8),
}

impl HostEntry {
    /// `None` for anything else. Addresses are read by `std` (so an IPv4
    /// octet with a leading zero, octal to `inet_aton`, is refused); a
    /// prefix length as `ipnet` reads it. Written here rather than with
    /// `ipnet`, whose own copy of the address parser was 7 KB of the filter
    /// module; `tests/host_entries.rs` compares the two.
    pub fn parse(entry: &str) -> Option<HostEntry> {
        if entry == "*" {
            return Some(HostEntry::Any);
        }
        let Some((addr, len)) = entry.split_once('/') else {
            return entry.parse().ok().map(HostEntry::Addr);
        };
        let addr: IpAddr = addr.parse().ok()?;
        // As `ipnet` reads a prefix: at most two digits for IPv4 and three
        // for IPv6, leading zeros allowed (`/08`, `/008` on IPv6 only).
        let (digits, max) = if addr.is_ipv4() { (2, 32) } else { (3, 128) };
        if !(1..=digits).contains(&len.len()) || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        (len <= max).then_some(HostEntry::Net(addr, len))
    }

    /// Whether `client` is in it; an IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) compares as IPv4 on both sides. A network built
    /// by hand with a prefix longer than its family's admits nothing.
    pub fn admits(self, client: IpAddr) -> bool {
        let client = canonical(client);
        match self {
            HostEntry::Any => true,
            HostEntry::Addr(ip) => canonical(ip) == client,
            HostEntry::Net(IpAddr::V4(net), len) => matches!(client, IpAddr::V4(c) if same_prefix_v4(net, c, len)),
            HostEntry::Net(IpAddr::V6(net), len) => match (net.to_ipv4_mapped(), client) {
                // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8.
                (Some(v4), IpAddr::V4(c)) if len >= 96 => same_prefix_v4(v4, c, len - 96),
                (Some(_), _) if len >= 96 => false,
                (_, IpAddr::V6(c)) => {
                    let Some(host_bits) = 128u32.checked_sub(u32::from(len)) else { return false };
                    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                    u128::from(net) & mask == u128::from(c) & mask
                }
                _ => false,
            },
        }
    }
}

fn same_prefix_v4(net: std::net::Ipv4Addr, client: std::net::Ipv4Addr, len: u8) -> bool {
    let Some(host_bits) = 32u32.checked_sub(u32::from(len)) else { return false };
    let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
    u32::from(net) & mask == u32::from(client) & mask
}

/// One `hosts` entry against a client address: `*`, an address or a CIDR;
/// unparseable entries match nothing; an IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`) compares as IPv4 on both sides.
pub fn host_matches(entry: &str, client: IpAddr) -> bool {
    HostEntry::parse(entry).is_some_and(|e| e.admits(client))
}

/// Whether any of `hosts` admits `client`.
pub fn host_allowed(hosts: &[String], client: IpAddr) -> bool {
    hosts.iter().any(|h| host_matches(h, client))
}

/// IPv4-mapped IPv6 compares as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn host_matching_table() {
        // (entry, client, matches?)
        let cases = [
            ("*", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "::ffff:10.0.0.1", true),
            ("::ffff:10.0.0.1", "10.0.0.1", true),
            ("10.0.0.0/8", "10.9.9.9", true),
            ("10.0.0.0/8", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.0.0.1", false),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("2001:db8::/32", "2001:db8::1", true),
            ("2001:db8::/32", "10.0.0.1", false),
            ("localhost", "127.0.0.1", false),
            ("", "127.0.0.1", false),
        ];
        for (entry, client, want) in cases {
            assert_eq!(host_matches(entry, client.parse().unwrap()), want, "{entry} vs {client}");
        }
    }

    #[test]
    fn bearer_table() {
        // (value, result)
        let cases: [(&str, Result<&str, BearerError>); 10] = [
            ("Bearer abc.def-_~+/=", Ok("abc.def-_~+/=")),
            ("bearer abc", Ok("abc")),
            (" Bearer abc ", Ok("abc")),
            ("Bearer  abc", Err(BearerError::Malformed)),
            ("Bearer\tabc", Err(BearerError::Malformed)),
            ("Bearer", Err(BearerError::Malformed)),
            ("Bearer a b", Err(BearerError::Malformed)),
            ("Bearer a,b", Err(BearerError::Malformed)),
            ("Basic YTpi", Err(BearerError::OtherScheme)),
            ("", Err(BearerError::Malformed)),
        ];
        for (value, want) in cases {
            assert_eq!(bearer(value), want, "{value:?}");
        }
    }

    #[test]
    fn version_keys_round_trip() {
        for s in ["sub:alice", "sid:s-1"] {
            assert_eq!(VersionKey::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(VersionKey::parse("usr:a"), Err(KeyError::UnknownKind));
        assert_eq!(VersionKey::parse("sub:"), Err(KeyError::Empty));
        assert_eq!(VersionKey::parse("sub:a b"), Err(KeyError::BadCharacter));
        assert_eq!(VersionKey::parse(&format!("sub:{}", "a".repeat(300))), Err(KeyError::TooLong));
        assert_eq!(version_keys("a", Some("s")), ["sub:a", "sid:s"]);
    }

    #[test]
    fn a_page_the_authority_writes_is_one_the_edge_reads() {
        let page = FeedPage {
            snapshot: true,
            entries: vec![FeedEntry { key: "sub:a".into(), min_ver: 3, expires_at: None }],
            cursor: "s.1".into(),
            store: Some("s".into()),
            floor: 7,
            now: Some(9),
        };
        let bytes = serde_json::to_vec(&page).unwrap();
        assert_eq!(FeedPage::parse(&bytes), Ok(page));
        assert_eq!(merge_expiry(Some(3), Some(5)), Some(5));
        assert_eq!(merge_expiry(None, Some(5)), None);
        assert!(is_live(None, u64::MAX) && is_live(Some(6), 5) && !is_live(Some(5), 5));
    }
}
