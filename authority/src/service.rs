//! The authority's operations, independent of HTTP: grants, rotation,
//! revocation, the feed, API tokens, admin checks. Generic over the store;
//! the refresh decision itself is [`crate::refresh::decide`].

use crate::config::Config;
use tollgate::protocol::HostEntry;
use crate::directory::{split_scopes, Directory};
use crate::feed::{check_id, Cursor, CursorError, VersionKey};
use crate::keys::Keys;
use crate::longpoll::{FeedWaiter, Wake};
use crate::metrics::{Metrics, RefreshOutcome};
use crate::refresh::{
    self, AccessStamp, Decision, Family, Reject, Rotation, MAX_REFRESH_TOKEN_LEN,
};
use crate::store::{ApiToken, BumpRequest, Bumped, Expected, NewFamily, Store, StoreError};
use crate::throttle::{Admission, Keys as ThrottleKeys, Kind, Limit, Limiter, Limits, MemoryLimiter, Outcome, Via};
use crate::util::{now_ms, now_secs, now_us, random_id};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::token::{mint, Claims, ClaimRules, TimeCheck, TokenError, Verifier, ACCESS_TOKEN_TYP};

/// Rounds of read–decide–compare-and-set before a refresh gives up. Each
/// failed round means another request changed the family meanwhile, after
/// which the token is no longer the head and the next round replays.
const MAX_REFRESH_ROUNDS: usize = 16;
/// Most keys in one `GET /v1/versions` (one definition, the edge's).
pub use tollgate::protocol::MAX_VERSION_KEYS;
/// Largest API token hosts list.
const MAX_HOSTS: usize = 64;
/// Longest `mint --ttl-secs` (a day). Every bump's feed entry lives at least
/// as long as the longest minted token, so this bounds the feed; longer-lived
/// credentials are API tokens (revocable on their own `sid`).
pub const MAX_MINT_TTL_SECS: u64 = 24 * 3600;

/// Why `mint` refused.
#[derive(Debug)]
pub enum MintError {
    Invalid(String),
    Store(StoreError),
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            MintError::Invalid(m) => f.write_str(m),
            MintError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MintError {}

impl From<StoreError> for MintError {
    fn from(e: StoreError) -> MintError {
        MintError::Store(e)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    pub admin_scope: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub refresh_grace_ms: u64,
    pub clock_skew_secs: u64,
    pub api_token_max_days: u64,
    /// Password checks (argon2) running at once. 0: the number of CPUs.
    pub max_concurrent_hashes: usize,
    /// Client-secret checks running at once, separate slots. 0: the number
    /// of CPUs.
    pub max_concurrent_client_hashes: usize,
    /// How long a check waits for a slot before 503.
    pub hash_wait_ms: u64,
    /// Credential-grant budgets; `None`: throttling disabled.
    pub throttle: Option<Limits>,
    /// Most entries of the in-process limiter (embedded store).
    pub throttle_max_entries: usize,
    /// Long polling of the feed.
    pub feed: crate::longpoll::Limits,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            admin_scope: c.admin_scope.clone(),
            access_ttl_secs: c.access_ttl_secs,
            refresh_ttl_secs: c.refresh_ttl_secs,
            refresh_grace_ms: c.refresh_grace_ms,
            clock_skew_secs: c.clock_skew_secs,
            api_token_max_days: c.api_token_max_days,
            max_concurrent_hashes: c.max_concurrent_hashes,
            max_concurrent_client_hashes: c.max_concurrent_client_hashes,
            hash_wait_ms: c.hash_wait_ms,
            throttle: c.throttle.enabled.then(|| Limits::from_config(&c.throttle)),
            throttle_max_entries: c.throttle.max_entries,
            feed: crate::longpoll::Limits {
                max_wait: Duration::from_millis(c.feed_max_wait_ms),
                max_held: c.feed_max_held,
                recheck: Duration::from_millis(c.feed_recheck_ms),
            },
        }
    }
}

/// RFC 6749 §5.1 success answer: the wire type both sides share.
pub use tollgate::protocol::TokenAnswer as TokenResponse;

/// RFC 6749 §5.2 errors (plus 503 when the store is down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    InvalidClient(String),
    InvalidGrant(String),
    UnauthorizedClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
    Unavailable(String),
    /// 429: a credential-grant budget is spent; retry after this many seconds.
    SlowDown { description: String, retry_after_secs: u64 },
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
            OAuthError::SlowDown { .. } => "slow_down",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::Unavailable(d)
            | OAuthError::SlowDown { description: d, .. } => d,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            OAuthError::InvalidClient(_) => 401,
            OAuthError::Unavailable(_) => 503,
            OAuthError::SlowDown { .. } => 429,
            _ => 400,
        }
    }
}

fn unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "store operation failed");
    OAuthError::Unavailable("token store unavailable".into())
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No bearer token: 401 without an error code.
    Missing,
    /// 401 `invalid_token`.
    InvalidToken(String),
    /// 403 `insufficient_scope`.
    Forbidden(String),
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedError {
    Cursor(CursorError),
    Unavailable,
}

/// A feed page and its entries: the wire types both sides share (the
/// authority always fills `store` and `now`).
pub use tollgate::protocol::{FeedEntry, FeedPage as FeedAnswer};

/// The body of `POST /v1/admin/api-tokens` (read in [`crate::input`]).
pub use crate::input::ApiTokenRequest;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiTokenCreated {
    pub id: String,
    pub token: String,
    pub sub: String,
    pub scope: String,
    pub hosts: Vec<String>,
    pub expires_at: Option<u64>,
    pub ver: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiTokenError {
    Invalid(String),
    Unavailable,
}

pub struct Authority {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub keys: Keys,
    pub verifier: Verifier,
    pub directory: Arc<Directory>,
    pub metrics: Arc<Metrics>,
    /// Slots for password checks (argon2) on the blocking pool, which the
    /// SQLite store also needs: a flood of password grants must not starve
    /// the store.
    pub hash_slots: Arc<tokio::sync::Semaphore>,
    /// Slots for client-secret checks, apart from the password slots.
    pub client_hash_slots: Arc<tokio::sync::Semaphore>,
    /// The credential-grant budgets: the store's when it shares them
    /// (Redis), else in process.
    pub limiter: Arc<dyn Limiter>,
    /// Held feed requests and what wakes them (long polling).
    pub feed_waiter: Arc<FeedWaiter>,
}

/// Whether a delta answer says nothing new: no entries and the cursor it
/// was asked with (same store, same high-water mark). Errors are news: they
/// are answered at once.
fn is_current(page: &Result<FeedAnswer, FeedError>, cursor: &Cursor) -> bool {
    matches!(page, Ok(a) if a.entries.is_empty() && a.cursor == cursor.to_string())
}

/// RFC 6749 §3.3 scope-token characters.
fn valid_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// The scopes to grant: the requested ones if all allowed, else all allowed.
pub fn narrow_scope(requested: Option<&str>, allowed: &[String]) -> Result<String, OAuthError> {
    let Some(req) = requested.filter(|r| !r.is_empty()) else {
        return Ok(allowed.join(" "));
    };
    let mut out: Vec<&str> = Vec::new();
    for s in req.split(' ').filter(|s| !s.is_empty()) {
        if !valid_scope_token(s) {
            return Err(OAuthError::InvalidScope("scope contains an invalid character".into()));
        }
        if !allowed.iter().any(|a| a == s) {
            return Err(OAuthError::InvalidScope(format!("scope {s:?} not allowed")));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

/// An address or a CIDR, as the edge reads it (`*` is not minted).
fn valid_host(h: &str) -> bool {
    matches!(HostEntry::parse(h), Some(HostEntry::Addr(_) | HostEntry::Net(..)))
}

/// Whether `peer` is allowed by a `hosts` claim.
/// The edge's rule, one definition (IPv4-mapped addresses compare as IPv4
/// on both sides).
pub use tollgate::protocol::host_allowed;

impl Authority {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        keys: Keys,
        directory: Directory,
    ) -> Authority {
        let verifier = Verifier {
            keys: keys.set.clone(),
            rules: ClaimRules {
                issuer: settings.issuer.clone(),
                audiences: vec![settings.audience.clone()],
                clock_skew: 0,
                allow_never_expiring: true,
            },
            allowed_typ: vec![ACCESS_TOKEN_TYP.into()],
            max_token_bytes: 8192,
        };
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        let slots = |n: usize| if n == 0 { cpus } else { n };
        let limiter = store
            .shared_limiter()
            .unwrap_or_else(|| Arc::new(MemoryLimiter::new(settings.throttle_max_entries)));
        let hash_slots = Arc::new(tokio::sync::Semaphore::new(slots(settings.max_concurrent_hashes)));
        let client_hash_slots = Arc::new(tokio::sync::Semaphore::new(slots(settings.max_concurrent_client_hashes)));
        let metrics = Arc::new(Metrics::new(store.kind()));
        let feed_waiter = Arc::new(FeedWaiter::new(settings.feed, metrics.clone()));
        Authority {
            store,
            settings,
            keys,
            verifier,
            directory: Arc::new(directory),
            metrics,
            hash_slots,
            client_hash_slots,
            limiter,
            feed_waiter,
        }
    }

    /// Startup: records this configuration's access-token lifetime in the
    /// store (see [`Store::raise_ttl_max`]).
    pub async fn init(&self) -> Result<(), StoreError> {
        self.timed("raise_ttl_max", self.store.raise_ttl_max(self.settings.access_ttl_secs)).await.map(|_| ())
    }

    /// Readiness: the store answers a read. The number of verification
    /// keys loaded (signing needs one; the authority does not start without).
    pub async fn ready(&self) -> Result<usize, StoreError> {
        self.timed("ping", self.store.versions(&[])).await?;
        Ok(self.keys.set.keys().len())
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = fut.await;
        self.metrics.store_op(op, start.elapsed(), r.is_ok());
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn claims(&self, sub: &str, scope: &str, iat: u64, exp: Option<u64>, jti: String, ver: u64, sid: Option<String>) -> Claims {
        Claims {
            iss: self.settings.issuer.clone(),
            sub: sub.to_owned(),
            aud: vec![self.settings.audience.clone()],
            exp,
            nbf: None,
            iat: Some(iat),
            jti: Some(jti),
            ver,
            sid,
            scope: (!scope.is_empty()).then(|| scope.to_owned()),
            hosts: None,
        }
    }

    fn family_access(&self, family: &Family, stamp: &AccessStamp) -> String {
        let c = self.claims(&family.sub, &family.scope, stamp.iat, Some(stamp.exp), stamp.jti.clone(), family.ver, Some(family.sid.clone()));
        mint(&self.keys.signing, &c)
    }

    /// Starts a refresh family for an authenticated subject.
    pub async fn login(&self, sub: &str, scope: &str, client_id: Option<&str>) -> Result<TokenResponse, OAuthError> {
        check_id(sub).map_err(|e| OAuthError::InvalidRequest(format!("subject: {}", e.description())))?;
        let now = now_secs();
        // Config validation bounds refresh_ttl_secs; this guards Settings
        // built some other way.
        let Some(family_end) = now
            .checked_add(self.settings.refresh_ttl_secs)
            .filter(|_| self.settings.refresh_ttl_secs <= crate::config::MAX_REFRESH_TTL_SECS)
        else {
            tracing::error!(refresh_ttl_secs = self.settings.refresh_ttl_secs, "refresh_ttl_secs out of range");
            return Err(OAuthError::Unavailable("refresh_ttl_secs misconfigured".into()));
        };
        let sid = random_id::<16>("s_");
        let (_, refresh_token) = refresh::new_refresh_token();
        let fam = NewFamily {
            sid: sid.clone(),
            sub: sub.to_owned(),
            scope: scope.to_owned(),
            client_id: client_id.map(str::to_owned),
            created_at: now,
            expires_at: family_end,
            first_token_hash: refresh::hash_token(&refresh_token),
        };
        let ver = self.timed("create_family", self.store.create_family(&fam)).await.map_err(unavailable)?;
        let exp = now + self.settings.access_ttl_secs;
        let claims = self.claims(sub, scope, now, Some(exp), random_id::<16>(""), ver, Some(sid.clone()));
        tracing::info!(sub, sid = %sid, "session started");
        Ok(TokenResponse {
            access_token: mint(&self.keys.signing, &claims),
            token_type: "Bearer".into(),
            expires_in: self.settings.access_ttl_secs,
            refresh_token: Some(refresh_token),
            scope: Some(scope.to_owned()),
        })
    }

    /// A slot for one credential check: waits up to `hash_wait_ms` for one
    /// (the semaphore is fair: first come, first served), then 503.
    async fn hash_slot(&self, kind: Kind, grant: &'static str) -> Result<tokio::sync::OwnedSemaphorePermit, OAuthError> {
        let slots = match kind {
            Kind::User => &self.hash_slots,
            Kind::Client => &self.client_hash_slots,
        };
        let wait = std::time::Duration::from_millis(self.settings.hash_wait_ms);
        match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.metrics.grant(grant, "temporarily_unavailable");
                tracing::warn!(grant, wait_ms = self.settings.hash_wait_ms, "no credential-check slot free in time; refusing");
                Err(OAuthError::Unavailable("too many concurrent credential checks; retry".into()))
            }
        }
    }

    /// Asks the limiter whether a credential check may run; `None` when
    /// throttling is disabled. A refusal is 429 `slow_down`.
    async fn admit(&self, kind: Kind, grant: &'static str, name: &str, address: IpAddr) -> Result<Option<(ThrottleKeys, Via)>, OAuthError> {
        let Some(limits) = &self.settings.throttle else { return Ok(None) };
        let keys = ThrottleKeys::new(kind, name, address);
        let admission = self.limiter.admit(&keys, limits, now_ms()).await.map_err(|e| {
            tracing::error!(error = %e, "throttle unavailable");
            OAuthError::Unavailable("token store unavailable".into())
        })?;
        match admission {
            Admission::Admit(via) => Ok(Some((keys, via))),
            Admission::Deny { limit, retry_after_ms } => {
                self.metrics.grant(grant, "slow_down");
                self.metrics.throttled(grant, limit.label());
                let retry_after_secs = retry_after_ms.div_ceil(1000).max(1);
                let whose = match kind {
                    Kind::User => "username",
                    Kind::Client => "client",
                };
                let description = match limit {
                    Limit::Address => "too many failed attempts from this address; retry after the time in Retry-After".to_string(),
                    Limit::Principal | Limit::Known | Limit::Bookings => {
                        format!("too many failed attempts for this {whose}; retry after the time in Retry-After")
                    }
                    Limit::Full => "too many attempts; retry after the time in Retry-After".to_string(),
                };
                tracing::info!(grant, limit = limit.label(), principal = %&keys.principal[..14], retry_after_secs, "credential grant throttled");
                Err(OAuthError::SlowDown { description, retry_after_secs })
            }
        }
    }

    async fn settle(&self, admitted: &Option<(ThrottleKeys, Via)>, outcome: Outcome) {
        let (Some((keys, via)), Some(limits)) = (admitted, &self.settings.throttle) else { return };
        if let Err(e) = self.limiter.settle(keys, limits, *via, outcome, now_ms()).await {
            tracing::warn!(error = %e, "throttle settle failed");
        }
    }

    /// One throttled credential check: admission, a hash slot, the argon2
    /// check on the blocking pool, and settling the budgets with its outcome.
    async fn check_credential(&self, kind: Kind, grant: &'static str, name: &str, secret: &str, address: IpAddr) -> Result<Option<Vec<String>>, OAuthError> {
        let admitted = self.admit(kind, grant, name, address).await?;
        let slot = match self.hash_slot(kind, grant).await {
            Ok(s) => s,
            Err(e) => {
                self.settle(&admitted, Outcome::NotAttempted).await;
                return Err(e);
            }
        };
        let dir = self.directory.clone();
        let (n, s) = (name.to_owned(), secret.to_owned());
        let checked = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            match kind {
                Kind::User => dir.check_user(&n, &s),
                Kind::Client => dir.check_client(&n, &s),
            }
        })
        .await;
        match checked {
            Ok(granted) => {
                self.settle(&admitted, if granted.is_some() { Outcome::Success } else { Outcome::Failure }).await;
                Ok(granted)
            }
            Err(_) => {
                self.settle(&admitted, Outcome::NotAttempted).await;
                Err(OAuthError::Unavailable("credential check failed".into()))
            }
        }
    }

    /// `grant_type=password` from the client at `address`.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
        client_id: Option<&str>,
        address: IpAddr,
    ) -> Result<TokenResponse, OAuthError> {
        let granted = self.check_credential(Kind::User, "password", username, password, address).await?;
        let Some(allowed) = granted else {
            self.metrics.grant("password", "invalid_grant");
            // Not the username itself: people type passwords into it. A hash
            // prefix still correlates repeated attempts.
            let user = crate::util::sha256_hex(username.as_bytes());
            tracing::info!(user_sha256 = &user[..12], "password grant refused");
            return Err(OAuthError::InvalidGrant("invalid username or password".into()));
        };
        let scope = narrow_scope(scope, &allowed)?;
        let r = self.login(username, &scope, client_id).await;
        self.metrics.grant("password", if r.is_ok() { "ok" } else { "error" });
        r
    }

    /// `grant_type=client_credentials` from the client at `address`.
    pub async fn client_credentials(&self, client_id: &str, secret: &str, scope: Option<&str>, address: IpAddr) -> Result<TokenResponse, OAuthError> {
        let granted = self.check_credential(Kind::Client, "client_credentials", client_id, secret, address).await?;
        let Some(allowed) = granted else {
            self.metrics.grant("client_credentials", "invalid_client");
            return Err(OAuthError::InvalidClient("client authentication failed".into()));
        };
        let key = VersionKey::subject(client_id).map_err(|_| OAuthError::InvalidClient("client id unusable".into()))?;
        let scope = narrow_scope(scope, &allowed)?;
        let ver = self.timed("versions", self.store.versions(&[key])).await.map_err(unavailable)?;
        let now = now_secs();
        let exp = now + self.settings.access_ttl_secs;
        let claims = self.claims(client_id, &scope, now, Some(exp), random_id::<16>(""), ver.first().copied().unwrap_or(0), None);
        self.metrics.grant("client_credentials", "ok");
        Ok(TokenResponse {
            access_token: mint(&self.keys.signing, &claims),
            token_type: "Bearer".into(),
            expires_in: self.settings.access_ttl_secs,
            refresh_token: None,
            scope: Some(scope),
        })
    }

    /// `grant_type=refresh_token`: rotate, replay inside the grace window,
    /// or detect reuse and revoke the family.
    pub async fn refresh(&self, presented: &str, scope: Option<&str>) -> Result<TokenResponse, OAuthError> {
        let r = self.refresh_inner(presented, scope).await;
        self.metrics.grant("refresh_token", match &r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        });
        r
    }

    async fn refresh_inner(&self, presented: &str, scope: Option<&str>) -> Result<TokenResponse, OAuthError> {
        let reject = |r: Reject| {
            self.metrics.refresh(RefreshOutcome::Rejected);
            OAuthError::InvalidGrant(r.description().into())
        };
        if presented.is_empty() || presented.len() > MAX_REFRESH_TOKEN_LEN {
            return Err(reject(Reject::Unknown));
        }
        let hash = refresh::hash_token(presented);
        for _ in 0..MAX_REFRESH_ROUNDS {
            let view = self.timed("load_refresh", self.store.load_refresh(&hash)).await.map_err(unavailable)?;
            let decision = refresh::decide(&view, now_ms(), self.settings.refresh_grace_ms);
            let (Some(family), Some(_)) = (view.family.clone(), view.record.as_ref()) else {
                return Err(reject(Reject::Unknown));
            };
            if !matches!(decision, Decision::Reject(_) | Decision::Reuse) {
                // The family's scope is re-issued as is, so a replay is identical.
                let allowed = split_scopes(&family.scope);
                narrow_scope(scope, &allowed)?;
            }
            match decision {
                Decision::Reject(r) => return Err(reject(r)),
                Decision::Replay(rot) => {
                    let Some(successor) = refresh::open_successor(presented, &rot) else {
                        tracing::error!(sid = %family.sid, "stored successor does not open");
                        return Err(OAuthError::Unavailable("token store unavailable".into()));
                    };
                    self.metrics.refresh(RefreshOutcome::ReplayedInGrace);
                    return Ok(self.answer(&family, &rot.access, successor));
                }
                Decision::Reuse => {
                    let key = VersionKey::Session(family.sid.clone());
                    // If the minimum moved meanwhile the family is dead already.
                    let bumped = self.bump(&key, Some(view.min_sid)).await.map_err(unavailable)?;
                    self.metrics.refresh(RefreshOutcome::ReuseDetected);
                    tracing::warn!(sid = %family.sid, sub = %family.sub, revoked = bumped.is_some(), "refresh token reuse detected; session revoked");
                    return Err(OAuthError::InvalidGrant("refresh token reused; session revoked".into()));
                }
                Decision::Rotate => {
                    let now = now_ms();
                    let (raw, successor) = refresh::new_refresh_token();
                    let iat = now / 1000;
                    let rot = Rotation {
                        at_ms: now,
                        successor_hash: refresh::hash_token(&successor),
                        sealed_successor: refresh::seal_successor(presented, &raw),
                        access: AccessStamp { iat, exp: iat + self.settings.access_ttl_secs, jti: random_id::<16>("") },
                    };
                    let expected = Expected { min_sub: view.min_sub, min_sid: view.min_sid };
                    let applied = self
                        .timed("apply_rotation", self.store.apply_rotation(&hash, expected, &rot))
                        .await
                        .map_err(unavailable)?;
                    if applied {
                        self.metrics.refresh(RefreshOutcome::Rotated);
                        return Ok(self.answer(&family, &rot.access, successor));
                    }
                    self.metrics.refresh_conflict();
                }
            }
        }
        self.metrics.refresh(RefreshOutcome::Conflict);
        tracing::warn!(rounds = MAX_REFRESH_ROUNDS, "refresh gave up: every compare-and-set round lost to a concurrent writer");
        Err(OAuthError::Unavailable("refresh contention; retry".into()))
    }

    fn answer(&self, family: &Family, stamp: &AccessStamp, refresh_token: String) -> TokenResponse {
        TokenResponse {
            access_token: self.family_access(family, stamp),
            token_type: "Bearer".into(),
            expires_in: stamp.exp.saturating_sub(now_secs()),
            refresh_token: Some(refresh_token),
            scope: Some(family.scope.clone()),
        }
    }

    /// Bumps a version key. Entries outlive every access token issued
    /// before the bump (plus the clock skew): the store adds the longest
    /// access-token lifetime it has recorded ([`Authority::init`],
    /// [`Authority::mint_for`]), not just this instance's `access_ttl_secs`.
    pub async fn bump(&self, key: &VersionKey, only_if_min: Option<u64>) -> Result<Option<Bumped>, StoreError> {
        let now_s = now_secs();
        let req = BumpRequest {
            access_ttl_secs: self.settings.access_ttl_secs,
            skew_secs: self.settings.clock_skew_secs,
            now_secs: now_s,
            now_us: now_us(),
            only_if_min,
        };
        let r = self.timed("bump", self.store.bump(key, req)).await?;
        if let Some(b) = &r {
            // Held feed requests of this instance wake now; other instances
            // learn of it from the store's notification channel.
            self.feed_waiter.announce(b.seq, Wake::Bump);
            self.metrics.bump(match key {
                VersionKey::Subject(_) => "sub",
                VersionKey::Session(_) => "sid",
            });
            tracing::info!(key = %b.key, min_ver = b.min_ver, "version bumped");
        }
        Ok(r)
    }

    /// Unconditional bump (admin revocation).
    pub async fn revoke_key(&self, key: &VersionKey) -> Result<Bumped, StoreError> {
        self.bump(key, None).await?.ok_or_else(|| StoreError::Backend("unconditional bump not applied".into()))
    }

    /// RFC 7009. A refresh token revokes its family; an access token of
    /// this authority with a `sid` revokes that session. Unknown tokens are
    /// not an error (RFC 7009 §2.2). Idempotent: a family or token already
    /// revoked (its `ver` below the `sub:` or `sid:` minimum) is not bumped
    /// again, and the bump is conditional on the `sid:` minimum read, so
    /// concurrent revocations of one family bump it once.
    pub async fn revoke_token(&self, token: &str) -> Result<(), OAuthError> {
        if token.len() <= MAX_REFRESH_TOKEN_LEN {
            let view = self
                .timed("load_refresh", self.store.load_refresh(&refresh::hash_token(token)))
                .await
                .map_err(unavailable)?;
            if let (Some(fam), Some(_)) = (view.family, view.record) {
                if view.min_sub <= fam.ver && view.min_sid <= fam.ver {
                    // `None`: the minimum moved meanwhile, so it is revoked already.
                    self.bump(&VersionKey::Session(fam.sid), Some(view.min_sid)).await.map_err(unavailable)?;
                }
                return Ok(());
            }
        }
        if let Ok(claims) = self.verifier.verify(token, TimeCheck::At(now_secs())) {
            if let Some(sid) = claims.sid.filter(|s| check_id(s).is_ok()) {
                let (Ok(sub_key), sid_key) = (VersionKey::subject(&claims.sub), VersionKey::Session(sid)) else {
                    return Ok(());
                };
                let mins = self.versions(&[sub_key, sid_key.clone()]).await.map_err(unavailable)?;
                if mins.iter().all(|m| claims.ver >= *m) {
                    self.bump(&sid_key, Some(mins[1])).await.map_err(unavailable)?;
                }
            }
        }
        Ok(())
    }

    /// The feed at once: [`Authority::feed_wait`] without waiting.
    pub async fn feed(&self, cursor: Option<&str>) -> Result<FeedAnswer, FeedError> {
        self.feed_wait(cursor, Duration::ZERO).await
    }

    /// The feed after `cursor` (a snapshot when `None`). When the cursor is
    /// current (nothing newer, same store) and `wait` is not zero, the
    /// request is held until a bump is announced, `wait` (clamped to
    /// `feed_max_wait_ms`) passes, or the instance shuts down; every answer
    /// after a wake-up or a timeout is read from the store again. Beyond
    /// `feed_max_held` held requests, or while shutting down, it answers at
    /// once. See [`crate::longpoll`].
    pub async fn feed_wait(&self, cursor: Option<&str>, wait: Duration) -> Result<FeedAnswer, FeedError> {
        self.metrics.feed_request();
        let parsed = match cursor.map(Cursor::parse).transpose() {
            Ok(p) => p,
            Err(e) => return self.answered(Err(FeedError::Cursor(e))),
        };
        let wait = wait.min(self.settings.feed.max_wait);
        let cursor = match parsed {
            Some(c) if !wait.is_zero() => c,
            other => {
                let page = self.read_feed(other.as_ref()).await;
                return self.answered(page);
            }
        };
        // Subscribed before the read: a bump the read misses is announced
        // after this point, so it wakes the request.
        let mut announced = self.feed_waiter.subscribe();
        let mut seen_forced = announced.borrow_and_update().forced;
        let page = self.read_feed(Some(&cursor)).await;
        if !is_current(&page, &cursor) {
            return self.answered(page);
        }
        if self.feed_waiter.is_closed() {
            return self.woken(Wake::Shutdown, page);
        }
        let Some(_held) = self.feed_waiter.try_hold() else {
            return self.woken(Wake::Limit, page);
        };
        let deadline = tokio::time::Instant::now() + wait;
        let closed = self.feed_waiter.closed();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                changed = announced.changed() => {
                    if changed.is_err() {
                        return self.woken(Wake::Shutdown, page);
                    }
                    let a = *announced.borrow_and_update();
                    let forced = a.forced != seen_forced;
                    seen_forced = a.forced;
                    if a.seq <= cursor.seq && !forced {
                        // A bump this cursor already covers (announced late,
                        // or through a second path).
                        continue;
                    }
                    let next = self.read_feed(Some(&cursor)).await;
                    if !is_current(&next, &cursor) {
                        let cause = if a.seq > cursor.seq { a.seq_cause } else { a.forced_cause };
                        return self.woken(cause, next);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let page = self.read_feed(Some(&cursor)).await;
                    return self.woken(Wake::Timeout, page);
                }
                // The page last read stands: shutting down must not wait on
                // the store. The edge asks again, elsewhere or later.
                _ = &mut closed => return self.woken(Wake::Shutdown, page),
            }
        }
    }

    /// Counts a held (or refused-hold) request's end, then its answer.
    fn woken(&self, cause: Wake, page: Result<FeedAnswer, FeedError>) -> Result<FeedAnswer, FeedError> {
        self.metrics.feed_wakeup(cause);
        self.answered(page)
    }

    /// Counts an answer by kind.
    fn answered(&self, page: Result<FeedAnswer, FeedError>) -> Result<FeedAnswer, FeedError> {
        if let Ok(a) = &page {
            // A sequence number is at least the bump's time in microseconds
            // (crate::feed::next_seq): the newest entry's age.
            if let (false, false, Ok(c)) = (a.snapshot, a.entries.is_empty(), Cursor::parse(&a.cursor)) {
                self.metrics.feed_delivered(Duration::from_micros(now_us().saturating_sub(c.seq)));
            }
        }
        self.metrics.feed_answer(match &page {
            Ok(a) if a.snapshot => "snapshot",
            Ok(a) if a.entries.is_empty() => "empty",
            Ok(_) => "delta",
            Err(FeedError::Cursor(_)) => "gone",
            Err(FeedError::Unavailable) => "unavailable",
        });
        page
    }

    /// One read of the feed after `cursor`, checked against the store it was
    /// read from.
    async fn read_feed(&self, cursor: Option<&Cursor>) -> Result<FeedAnswer, FeedError> {
        let now = now_secs();
        // The page says which store it was read from; a cursor of another
        // store (or one ahead of this store) is refused after the read, so
        // the check and the entries come from one atomic step.
        let page = self.timed("feed", self.store.feed(cursor.map(|c| c.seq), now)).await.map_err(|e| {
            tracing::error!(error = %e, "feed read failed");
            FeedError::Unavailable
        })?;
        if let Some(c) = cursor {
            c.check(&page.identity.store_id, page.high_water).map_err(FeedError::Cursor)?;
        }
        Ok(FeedAnswer {
            cursor: Cursor { store_id: page.identity.store_id.clone(), seq: page.high_water }.to_string(),
            snapshot: cursor.is_none(),
            store: Some(page.identity.store_id),
            floor: page.identity.floor,
            entries: page.entries.into_iter().map(FeedEntry::from).collect(),
            now: Some(now),
        })
    }

    pub async fn versions(&self, keys: &[VersionKey]) -> Result<Vec<u64>, StoreError> {
        self.timed("versions", self.store.versions(keys)).await
    }

    /// Mints an access token for `sub` (CLI `mint`), with the current version.
    /// `ttl_secs` is 1..=[`MAX_MINT_TTL_SECS`]; it is recorded in the store
    /// first, so later bumps' feed entries outlive this token.
    pub async fn mint_for(&self, sub: &str, scope: &str, ttl_secs: u64, sid: Option<&str>) -> Result<String, MintError> {
        if ttl_secs == 0 || ttl_secs > MAX_MINT_TTL_SECS {
            return Err(MintError::Invalid(format!(
                "ttl_secs must be within 1..={MAX_MINT_TTL_SECS}; use an API token for longer-lived credentials"
            )));
        }
        let mut keys = vec![VersionKey::subject(sub).map_err(|e| MintError::Invalid(format!("sub: {}", e.description())))?];
        if let Some(sid) = sid {
            keys.push(VersionKey::session(sid).map_err(|e| MintError::Invalid(format!("sid: {}", e.description())))?);
        }
        self.timed("raise_ttl_max", self.store.raise_ttl_max(ttl_secs)).await?;
        let ver = self.versions(&keys).await?.into_iter().max().unwrap_or(0);
        let now = now_secs();
        let c = self.claims(sub, scope, now, Some(now + ttl_secs), random_id::<16>(""), ver, sid.map(str::to_owned));
        Ok(mint(&self.keys.signing, &c))
    }

    pub async fn create_api_token(&self, req: &ApiTokenRequest) -> Result<ApiTokenCreated, ApiTokenError> {
        let bad = |m: String| Err(ApiTokenError::Invalid(m));
        if let Err(e) = check_id(&req.sub) {
            return bad(format!("sub: {}", e.description()));
        }
        let scopes = split_scopes(&req.scope);
        if let Some(s) = scopes.iter().find(|s| !valid_scope_token(s)) {
            return bad(format!("scope: {s:?} is not a valid scope token"));
        }
        if req.hosts.is_empty() || req.hosts.len() > MAX_HOSTS {
            return bad(format!("hosts: give 1 to {MAX_HOSTS} CIDRs or [\"*\"]"));
        }
        let any = req.hosts.iter().any(|h| h == "*");
        if any && req.hosts.len() > 1 {
            return bad("hosts: \"*\" must be alone".into());
        }
        if let Some(h) = req.hosts.iter().find(|h| *h != "*" && !valid_host(h)) {
            return bad(format!("hosts: {h:?} is not an address or CIDR"));
        }
        if req.name.as_ref().is_some_and(|n| n.len() > 128 || n.chars().any(char::is_control)) {
            return bad("name: at most 128 printable characters".into());
        }
        let now = now_secs();
        let max_days = self.settings.api_token_max_days.min(crate::config::MAX_API_TOKEN_DAYS);
        let expires_at = match req.days {
            -1 => None,
            d if d >= 1 && (d as u64) <= max_days => Some(now + d as u64 * 86_400),
            _ => return bad(format!("days: -1 (never) or 1..={max_days}")),
        };
        let scope = scopes.join(" ");
        let mut record = ApiToken {
            id: random_id::<12>("api_"),
            sub: req.sub.clone(),
            name: req.name.clone(),
            scope: scope.clone(),
            hosts: req.hosts.clone(),
            created_at: now,
            expires_at,
            ver: 0,
            revoked_at: None,
        };
        record.ver = self.timed("create_api_token", self.store.create_api_token(&record)).await.map_err(|e| {
            tracing::error!(error = %e, "api token create failed");
            ApiTokenError::Unavailable
        })?;
        let mut claims = self.claims(&record.sub, &scope, now, expires_at, record.id.clone(), record.ver, Some(record.id.clone()));
        claims.hosts = (!any).then(|| record.hosts.clone());
        tracing::info!(id = %record.id, sub = %record.sub, "api token created");
        Ok(ApiTokenCreated {
            id: record.id.clone(),
            token: mint(&self.keys.signing, &claims),
            sub: record.sub,
            scope,
            hosts: record.hosts,
            expires_at,
            ver: record.ver,
        })
    }

    /// Checks an admin request's `Authorization` header: a valid access
    /// token of this authority, not revoked (live version check), allowed
    /// from `peer`, with the admin scope.
    pub async fn authorize_admin(&self, authorization: Option<&str>, peer: IpAddr) -> Result<Claims, AdminError> {
        let Some(value) = authorization else { return Err(AdminError::Missing) };
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
            _ => return Err(AdminError::InvalidToken("authorization is not a bearer token".into())),
        };
        let claims = self
            .verifier
            .verify(token, TimeCheck::At(now_secs()))
            .map_err(|e: TokenError| AdminError::InvalidToken(e.description().into()))?;
        let mut keys = vec![VersionKey::subject(&claims.sub).map_err(|_| AdminError::InvalidToken("sub unusable".into()))?];
        if let Some(sid) = &claims.sid {
            keys.push(VersionKey::session(sid).map_err(|_| AdminError::InvalidToken("sid unusable".into()))?);
        }
        let mins = self.versions(&keys).await.map_err(|_| AdminError::Unavailable)?;
        if mins.iter().any(|m| claims.ver < *m) {
            return Err(AdminError::InvalidToken(TokenError::Revoked.description().into()));
        }
        if let Some(hosts) = &claims.hosts {
            if !host_allowed(hosts, peer) {
                return Err(AdminError::Forbidden("client host not allowed for this token".into()));
            }
        }
        if !claims.has_scope(&self.settings.admin_scope) {
            return Err(AdminError::Forbidden(format!("scope {} required", self.settings.admin_scope)));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_narrowing_table() {
        let allowed = split_scopes("read write tollgate:admin");
        let cases: &[(Option<&str>, Result<&str, &str>)] = &[
            (None, Ok("read write tollgate:admin")),
            (Some(""), Ok("read write tollgate:admin")),
            (Some("read"), Ok("read")),
            (Some("write  read read"), Ok("write read")),
            (Some("delete"), Err("invalid_scope")),
            (Some("read \"x"), Err("invalid_scope")),
        ];
        for (req, want) in cases {
            let got = narrow_scope(*req, &allowed);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{req:?}"),
                (Err(e), Err(w)) => assert_eq!(e.code(), *w, "{req:?}"),
                (g, w) => panic!("{req:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn hosts_table() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*"], "10.1.2.3", true),
            (&["10.0.0.0/8"], "10.1.2.3", true),
            (&["10.0.0.0/8"], "11.1.2.3", false),
            (&["127.0.0.1"], "127.0.0.1", true),
            (&["::1/128"], "::1", true),
            (&["192.168.0.0/16", "127.0.0.0/8"], "127.0.0.1", true),
            (&["not-an-ip"], "127.0.0.1", false),
        ];
        for (hosts, peer, want) in cases {
            let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
            assert_eq!(host_allowed(&hosts, ip(peer)), *want, "{hosts:?} {peer}");
        }
    }
}
