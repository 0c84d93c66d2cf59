//! Storage behind one trait. A store reads state atomically and applies
//! changes atomically with a compare-and-set; every decision is made by the
//! caller ([`crate::refresh::decide`], [`crate::feed`]), so the SQLite and the
//! Redis store share one algorithm and one conformance suite.

pub mod redis;
pub mod sqlite;

use crate::feed::{Entry, VersionKey};
use crate::refresh::{Family, RefreshView, Rotation};
use async_trait::async_trait;
use serde::Serialize;
use std::fmt;

#[derive(Debug)]
pub enum StoreError {
    /// The backend failed (IO, connection, SQL, script).
    Backend(String),
    /// Stored data could not be read back (a bug or manual tampering).
    Corrupt(String),
    /// Written, but not acknowledged by the configured number of replicas.
    NotReplicated { wanted: usize, got: usize },
    /// The backend is configured to acknowledge writes before they are
    /// durable (or its settings cannot be read): the store refuses to open.
    /// The message names the setting and the value it needs.
    Durability(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StoreError::Backend(e) => write!(f, "store backend error: {e}"),
            StoreError::Corrupt(e) => write!(f, "store data corrupt: {e}"),
            StoreError::NotReplicated { wanted, got } => {
                write!(f, "write acknowledged by {got} of {wanted} replicas")
            }
            StoreError::Durability(e) => write!(f, "store not durable enough: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// A refresh family to create, with its first refresh token (hashed).
#[derive(Debug, Clone)]
pub struct NewFamily {
    pub sid: String,
    pub sub: String,
    pub scope: String,
    pub client_id: Option<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub first_token_hash: String,
}

/// The state a rotation was decided on; the rotation applies only if it
/// still holds (the token still the head, neither version moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub min_sub: u64,
    pub min_sid: u64,
}

/// A bump. Its feed entry expires at `now_secs + max(access_ttl_secs,
/// stored longest access-token lifetime) + skew_secs`, or later when an API
/// token depends on the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BumpRequest {
    /// This instance's access-token lifetime (seconds).
    pub access_ttl_secs: u64,
    /// Added to the entry's lifetime (the edges' clock skew).
    pub skew_secs: u64,
    pub now_secs: u64,
    pub now_us: u64,
    /// Apply only if the key's minimum is still this value.
    pub only_if_min: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bumped {
    pub key: String,
    pub min_ver: u64,
    pub expires_at: Option<u64>,
    pub seq: u64,
}

/// Who a store is: a random id and its floor, both fixed together, in one
/// atomic step, when the store is created.
///
/// The floor is the creation time in microseconds: the minimum version of a
/// key never bumped. Every version handed out by an earlier store (a lost
/// one, a replaced one) is below it, because versions are at most the time
/// in µs they were handed out; so a store lost and created anew revokes every
/// token issued before. A store created before floors existed (legacy) has
/// floor 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub store_id: String,
    pub floor: u64,
}

/// A page of the feed: live entries with `after < seq <= high_water`, and
/// the identity of the store they were read from, in the same atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub identity: Identity,
    pub high_water: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub sub: String,
    pub name: Option<String>,
    pub scope: String,
    /// CIDRs or addresses; `["*"]` for any host.
    pub hosts: Vec<String>,
    pub created_at: u64,
    /// `None`: never expires.
    pub expires_at: Option<u64>,
    pub ver: u64,
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Stats {
    pub families: u64,
    pub refresh_tokens: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The store's identity as last seen: its id (part of every cursor) and
    /// its floor. Informational (logs, start-up); a feed page carries the
    /// identity it was read with ([`FeedPage::identity`]), which is the one
    /// to trust if the store was replaced while the authority ran.
    fn identity(&self) -> Identity;
    fn kind(&self) -> &'static str;

    /// Creates a family and its first refresh token; returns the family's
    /// `ver` (max of `sub:` and `sid:` minimums, read in the same step).
    async fn create_family(&self, family: &NewFamily) -> StoreResult<u64>;
    async fn load_refresh(&self, token_hash: &str) -> StoreResult<RefreshView>;
    /// Marks `token_hash` rotated and makes the successor the family head, if
    /// the token is still active and the versions are as expected. `false`
    /// means the state moved: read again and decide again.
    async fn apply_rotation(
        &self,
        token_hash: &str,
        expected: Expected,
        rotation: &Rotation,
    ) -> StoreResult<bool>;
    async fn family(&self, sid: &str) -> StoreResult<Option<Family>>;
    /// The hash of the family's current head refresh token.
    async fn family_head(&self, sid: &str) -> StoreResult<Option<String>>;

    /// Raises the key's minimum above every version issued so far. For a
    /// `sid:` of an API token the entry keeps the token's expiry (or never)
    /// and the token is marked revoked; for a `sub:` the entry lives as long
    /// as the subject's API tokens. `None` when `only_if_min` did not hold.
    async fn bump(&self, key: &VersionKey, req: BumpRequest) -> StoreResult<Option<Bumped>>;
    /// Raises the stored longest lifetime (seconds) of any access token
    /// issued with this store to at least `secs`; returns the stored value.
    /// It never decreases, so bumps made after a restart with a shorter
    /// `access_ttl_secs` (or after `mint --ttl-secs`) still outlive every
    /// token issued before them. Must be durable before such a token is
    /// handed out.
    async fn raise_ttl_max(&self, secs: u64) -> StoreResult<u64>;
    /// The minimums of `keys`; the floor for a key never bumped.
    async fn versions(&self, keys: &[VersionKey]) -> StoreResult<Vec<u64>>;
    /// Live entries after `after` (all when `None`) up to the high-water mark,
    /// read in one snapshot. `after` must already be checked `<= high_water`
    /// by the caller through [`FeedPage::high_water`]; a store returns the
    /// high-water mark even when `after` is beyond it.
    async fn feed(&self, after: Option<u64>, now_secs: u64) -> StoreResult<FeedPage>;

    /// Stores an API token record (its `ver` ignored) and returns the `ver`
    /// read in the same step.
    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<u64>;
    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiToken>>;
    async fn list_api_tokens(&self, sub: Option<&str>) -> StoreResult<Vec<ApiToken>>;

    async fn stats(&self) -> StoreResult<Stats>;
    /// Credential-grant budgets kept in the store, shared by every authority
    /// instance on it; `None`: the store does not share them (each instance
    /// keeps its own, in memory).
    fn shared_limiter(&self) -> Option<std::sync::Arc<dyn crate::throttle::Limiter>> {
        None
    }
    /// Starts delivering the bumps other writers of the store make (other
    /// authority instances, the CLI) to `waiter` as announcements, in a
    /// background task that ends when the waiter closes. `false`: the store
    /// has no such channel (this instance's own bumps, and the waiter's
    /// safety re-read, are then all there is).
    fn listen_for_bumps(&self, waiter: std::sync::Arc<crate::longpoll::FeedWaiter>) -> bool {
        let _ = waiter;
        false
    }
    /// Drops expired entries from the feed index (never the minimums).
    async fn gc(&self, now_secs: u64) -> StoreResult<u64>;
}
