//! Configuration: a TOML file, then `TOLLGATE_*` environment variables and
//! command-line flags over it (flags win). With nothing configured the
//! authority runs the demo: embedded store in `./.run/authority`, demo key,
//! demo users, on 127.0.0.1:8080.

use crate::edge::EdgeCredentials;
use crate::keys::KeyConfig;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use tollgate::protocol::HostEntry;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./.run/authority";
pub const DEFAULT_ISSUER: &str = "https://auth.tollgate.local";
pub const DEFAULT_AUDIENCE: &str = "tollgate-demo";
pub const DEFAULT_ADMIN_SCOPE: &str = "tollgate:admin";
/// The peers whose `X-Forwarded-For` is read when `trusted_proxies` is unset:
/// a proxy on the same host.
pub const DEFAULT_TRUSTED_PROXIES: &[&str] = &["127.0.0.0/8", "::1"];
/// Longest refresh family (10 years): keeps `now + ttl` far from overflow
/// and inside every store's integer range.
pub const MAX_REFRESH_TTL_SECS: u64 = 10 * 366 * 86_400;
/// Longest finite API token lifetime (100 years).
pub const MAX_API_TOKEN_DAYS: u64 = 36_525;
pub const DEFAULT_FEED_MAX_WAIT_MS: u64 = 30_000;
/// Upper bound of `feed_max_wait_ms` (5 minutes).
pub const MAX_FEED_MAX_WAIT_MS: u64 = 300_000;
pub const DEFAULT_FEED_MAX_HELD: usize = 1024;
/// Upper bound of `feed_max_held`.
pub const MAX_FEED_MAX_HELD: usize = 1_000_000;
pub const DEFAULT_FEED_RECHECK_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Embedded store directory (holds `authority.sqlite3` and its WAL).
    pub data_dir: PathBuf,
    pub redis_url: String,
    pub redis_prefix: String,
    /// After each Redis write, `WAIT` for this many replicas (0: don't).
    pub redis_wait_replicas: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: crate::store::redis::DEFAULT_PREFIX.into(),
            redis_wait_replicas: 0,
        }
    }
}

/// Throttling of the credential grants (see [`crate::throttle`]): budgets
/// of failed attempts per principal (username or client id), per client
/// address, and per known (principal, address) pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Failed attempts on one username or client id at once...
    pub principal_burst: u64,
    /// ...then one per this interval.
    pub principal_interval_ms: u64,
    /// Failed attempts from one client address (IPv6: one /64), all
    /// principals together, at once...
    pub address_burst: u64,
    /// ...then one per this interval.
    pub address_interval_ms: u64,
    /// A successful sign-in makes its address known for the principal this
    /// many days; known addresses skip the principal budget...
    pub known_days: u64,
    /// ...and have their own: this many failures at once...
    pub known_burst: u64,
    /// ...then one per this interval.
    pub known_interval_ms: u64,
    /// How long a booked slot is held for the address that booked it.
    pub booking_hold_ms: u64,
    /// Most slots of one principal booked ahead; beyond, attempts get 429
    /// without a booking. Bounds a flood's state per principal and the
    /// wait of a new address (`max_bookings` + 1 intervals).
    pub max_bookings: u64,
    /// In-process limiter (embedded store) only: most state entries.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            principal_burst: 5,
            principal_interval_ms: 10_000,
            address_burst: 20,
            address_interval_ms: 3_000,
            known_days: 30,
            known_burst: 5,
            known_interval_ms: 60_000,
            booking_hold_ms: 30_000,
            max_bookings: 32,
            max_entries: 200_000,
        }
    }
}

impl ThrottleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        const DAY_MS: u64 = 86_400_000;
        let bad = |m: String| Err(ConfigError::Invalid(format!("throttle.{m}")));
        for (name, v) in [
            ("principal_burst", self.principal_burst),
            ("address_burst", self.address_burst),
            ("known_burst", self.known_burst),
            ("max_bookings", self.max_bookings),
        ] {
            if !(1..=10_000).contains(&v) {
                return bad(format!("{name} must be within 1..=10000"));
            }
        }
        for (name, v) in [
            ("principal_interval_ms", self.principal_interval_ms),
            ("address_interval_ms", self.address_interval_ms),
            ("known_interval_ms", self.known_interval_ms),
            ("booking_hold_ms", self.booking_hold_ms),
        ] {
            if !(1..=DAY_MS).contains(&v) {
                return bad(format!("{name} must be within 1..={DAY_MS} (a day)"));
            }
        }
        if self.known_days > 366 {
            return bad("known_days must be within 0..=366".into());
        }
        if self.max_entries < 1000 {
            return bad("max_entries must be at least 1000".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    pub issuer: String,
    pub audience: String,
    pub admin_scope: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Window in which a rotated refresh token replays its successor.
    pub refresh_grace_ms: u64,
    /// Added to feed entry lifetimes; must be ≥ every edge's clock skew.
    pub clock_skew_secs: u64,
    pub max_body_bytes: usize,
    /// Longest API token lifetime in days (`-1`, never, is always allowed).
    pub api_token_max_days: u64,
    /// Password checks (argon2) at once; more wait up to `hash_wait_ms` for
    /// a slot, then answer 503 `temporarily_unavailable`. 0: the number of CPUs.
    pub max_concurrent_hashes: usize,
    /// Client-secret checks (`client_credentials`) at once, slots of their
    /// own so a password flood cannot starve service clients. 0: the number
    /// of CPUs.
    pub max_concurrent_client_hashes: usize,
    /// How long a credential check waits for a slot before 503.
    pub hash_wait_ms: u64,
    /// Proxies in front of the authority that append the client address to
    /// `X-Forwarded-For` (Envoy with `use_remote_address`). 0: the client is
    /// the TCP peer; n: the n-th address from the right of
    /// `X-Forwarded-For` (the peer when there are fewer).
    pub trusted_proxy_hops: usize,
    /// The TCP peers whose `X-Forwarded-For` is read (addresses or CIDRs);
    /// from anyone else the client is the peer. Unset: loopback only
    /// (`127.0.0.0/8`, `::1`). Set to `[]` with `trusted_proxy_hops` ≥ 1:
    /// refused at start.
    pub trusted_proxies: Option<Vec<String>>,
    pub throttle: ThrottleConfig,
    /// Longest a feed request may be held (`wait`); larger waits are
    /// clamped to it. 0: feed requests are never held.
    pub feed_max_wait_ms: u64,
    /// Most feed requests this instance holds at once; more answer at once.
    pub feed_max_held: usize,
    /// While feed requests are held, the store's high-water mark is re-read
    /// this often, for bumps nothing announced (CLI writes on SQLite, lost
    /// Redis notifications).
    pub feed_recheck_ms: u64,
    /// From the environment only (`TOLLGATE_EDGE_CREDENTIAL`, `..._PREVIOUS`),
    /// never from the file; kept as digests, `Debug` hides them.
    #[serde(skip)]
    pub edge_credentials: EdgeCredentials,
    /// TOML file with `[[users]]` and `[[clients]]`. None: the demo principals.
    pub users_file: Option<String>,
    pub store: StoreConfig,
    /// Empty: the demo key.
    pub keys: Vec<KeyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            admin_scope: DEFAULT_ADMIN_SCOPE.into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            refresh_grace_ms: 30_000,
            clock_skew_secs: 60,
            max_body_bytes: 16 * 1024,
            api_token_max_days: 3650,
            max_concurrent_hashes: 0,
            max_concurrent_client_hashes: 0,
            hash_wait_ms: 2000,
            trusted_proxy_hops: 0,
            trusted_proxies: None,
            throttle: ThrottleConfig::default(),
            feed_max_wait_ms: DEFAULT_FEED_MAX_WAIT_MS,
            feed_max_held: DEFAULT_FEED_MAX_HELD,
            feed_recheck_ms: DEFAULT_FEED_RECHECK_MS,
            edge_credentials: EdgeCredentials::default(),
            users_file: None,
            store: StoreConfig::default(),
            keys: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Read { path: String, error: String },
    Parse { path: String, error: String },
    Env { var: &'static str, error: String },
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "config {path}: {error}"),
            ConfigError::Parse { path, error } => write!(f, "config {path}: {error}"),
            ConfigError::Env { var, error } => write!(f, "environment {var}: {error}"),
            ConfigError::Invalid(e) => write!(f, "config: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn env_parse<T: std::str::FromStr>(var: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    match std::env::var(var) {
        Ok(v) => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError::Env { var, error: e.to_string() }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(ConfigError::Env { var, error: e.to_string() }),
    }
}

impl Config {
    pub fn load(path: Option<&str>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::Read { path: p.into(), error: e.to_string() })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse { path: p.into(), error: e.to_string() })?
            }
        };
        cfg.apply_env()?;
        Ok(cfg)
    }

    /// `TOLLGATE_*` overrides.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env_parse("TOLLGATE_LISTEN")? {
            self.listen = v;
        }
        if let Some(v) = env_parse("TOLLGATE_ISSUER")? {
            self.issuer = v;
        }
        if let Some(v) = env_parse("TOLLGATE_AUDIENCE")? {
            self.audience = v;
        }
        if let Some(v) = env_parse("TOLLGATE_ACCESS_TTL_SECS")? {
            self.access_ttl_secs = v;
        }
        if let Some(v) = env_parse("TOLLGATE_REFRESH_TTL_SECS")? {
            self.refresh_ttl_secs = v;
        }
        if let Some(v) = env_parse("TOLLGATE_REFRESH_GRACE_MS")? {
            self.refresh_grace_ms = v;
        }
        if let Some(v) = env_parse("TOLLGATE_USERS_FILE")? {
            self.users_file = Some(v);
        }
        if let Some(v) = env_parse::<String>("TOLLGATE_STORE")? {
            self.store.kind = match v.as_str() {
                "sqlite" => StoreKind::Sqlite,
                "redis" => StoreKind::Redis,
                _ => {
                    return Err(ConfigError::Env { var: "TOLLGATE_STORE", error: "expected sqlite or redis".into() })
                }
            };
        }
        if let Some(v) = env_parse::<String>("TOLLGATE_DATA_DIR")? {
            self.store.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env_parse("TOLLGATE_REDIS_URL")? {
            self.store.redis_url = v;
        }
        if let Some(v) = env_parse("TOLLGATE_REDIS_PREFIX")? {
            self.store.redis_prefix = v;
        }
        if let Some(v) = env_parse("TOLLGATE_TRUSTED_PROXY_HOPS")? {
            self.trusted_proxy_hops = v;
        }
        if let Some(v) = env_parse::<String>("TOLLGATE_TRUSTED_PROXIES")? {
            self.trusted_proxies = Some(v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect());
        }
        self.edge_credentials = EdgeCredentials::from_env()
            .map_err(|error| ConfigError::Env { var: crate::edge::EDGE_CREDENTIAL_ENV, error })?;
        if let Some(kid) = env_parse::<String>("TOLLGATE_SIGNING_KID")? {
            // One signing key whose secret is in TOLLGATE_SIGNING_SECRET.
            self.keys = vec![KeyConfig {
                kid,
                alg: env_parse("TOLLGATE_SIGNING_ALG")?.unwrap_or_else(|| "HS256".into()),
                secret_file: None,
                secret_env: Some("TOLLGATE_SIGNING_SECRET".into()),
                secret: None,
                active: true,
            }];
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.issuer.is_empty() {
            return bad("issuer is empty");
        }
        if self.audience.is_empty() {
            return bad("audience is empty");
        }
        if self.access_ttl_secs == 0 || self.access_ttl_secs > 24 * 3600 {
            return bad("access_ttl_secs must be within 1..=86400");
        }
        if self.refresh_ttl_secs == 0 || self.refresh_ttl_secs > MAX_REFRESH_TTL_SECS {
            return bad(&format!("refresh_ttl_secs must be within 1..={MAX_REFRESH_TTL_SECS} (10 years)"));
        }
        if self.api_token_max_days == 0 || self.api_token_max_days > MAX_API_TOKEN_DAYS {
            return bad(&format!("api_token_max_days must be within 1..={MAX_API_TOKEN_DAYS} (never-expiring tokens use days = -1)"));
        }
        if self.max_body_bytes < 256 {
            return bad("max_body_bytes must be at least 256");
        }
        if self.admin_scope.is_empty() || self.admin_scope.contains(' ') {
            return bad("admin_scope must be one scope");
        }
        if self.hash_wait_ms > 60_000 {
            return bad("hash_wait_ms must be within 0..=60000");
        }
        if self.trusted_proxy_hops > 16 {
            return bad("trusted_proxy_hops must be within 0..=16");
        }
        for entry in self.trusted_proxies.iter().flatten() {
            if !matches!(HostEntry::parse(entry), Some(HostEntry::Addr(_) | HostEntry::Net(..))) {
                return bad(&format!("trusted_proxies: {entry:?} is not an IP address or CIDR"));
            }
        }
        if self.trusted_proxy_hops > 0 && self.trusted_proxies.as_ref().is_some_and(Vec::is_empty) {
            return bad("trusted_proxy_hops >= 1 needs trusted_proxies (the proxies' addresses or CIDRs); leave it unset for loopback only");
        }
        if self.feed_max_wait_ms > MAX_FEED_MAX_WAIT_MS {
            return bad(&format!("feed_max_wait_ms must be within 0..={MAX_FEED_MAX_WAIT_MS}"));
        }
        if self.feed_max_held > MAX_FEED_MAX_HELD {
            return bad(&format!("feed_max_held must be within 0..={MAX_FEED_MAX_HELD}"));
        }
        if !(100..=60_000).contains(&self.feed_recheck_ms) {
            return bad("feed_recheck_ms must be within 100..=60000");
        }
        self.throttle.validate()
    }

    /// The peers whose `X-Forwarded-For` is read (see `trusted_proxies`).
    pub fn trusted_proxy_list(&self) -> Vec<String> {
        match &self.trusted_proxies {
            Some(list) => list.clone(),
            None => DEFAULT_TRUSTED_PROXIES.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn uses_demo_key(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_configs(&self) -> Vec<KeyConfig> {
        if self.keys.is_empty() {
            vec![KeyConfig::demo()]
        } else {
            self.keys.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (&'static str, fn(&mut Config));

    #[test]
    fn lifetimes_are_bounded_and_named() {
        let cases: &[Case] = &[
            ("refresh_ttl_secs", |c| c.refresh_ttl_secs = u64::MAX),
            ("refresh_ttl_secs", |c| c.refresh_ttl_secs = 11 * 365 * 86_400),
            ("api_token_max_days", |c| c.api_token_max_days = u64::MAX),
            ("api_token_max_days", |c| c.api_token_max_days = 0),
            ("access_ttl_secs", |c| c.access_ttl_secs = 0),
            ("hash_wait_ms", |c| c.hash_wait_ms = 600_000),
            ("trusted_proxy_hops", |c| c.trusted_proxy_hops = 17),
            ("feed_max_wait_ms", |c| c.feed_max_wait_ms = 300_001),
            ("feed_max_held", |c| c.feed_max_held = usize::MAX),
            ("feed_recheck_ms", |c| c.feed_recheck_ms = 99),
            ("feed_recheck_ms", |c| c.feed_recheck_ms = 60_001),
            ("throttle.principal_burst", |c| c.throttle.principal_burst = 0),
            ("throttle.address_interval_ms", |c| c.throttle.address_interval_ms = 0),
            ("throttle.booking_hold_ms", |c| c.throttle.booking_hold_ms = u64::MAX),
            ("throttle.known_days", |c| c.throttle.known_days = 1000),
            ("throttle.max_entries", |c| c.throttle.max_entries = 10),
            ("throttle.max_bookings", |c| c.throttle.max_bookings = 0),
            ("trusted_proxies", |c| c.trusted_proxies = Some(vec!["10.0.0.0/8".into(), "proxy.internal".into()])),
            ("trusted_proxies", |c| c.trusted_proxies = Some(vec!["10.0.0.0/33".into()])),
            ("trusted_proxies", |c| {
                c.trusted_proxy_hops = 1;
                c.trusted_proxies = Some(vec![]);
            }),
        ];
        for (field, set) in cases {
            let mut c = Config::default();
            set(&mut c);
            let e = c.validate().expect_err(field).to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn trusted_proxies_default_to_loopback_and_an_empty_list_needs_no_hops() {
        let c = Config { trusted_proxy_hops: 1, ..Config::default() };
        assert!(c.validate().is_ok());
        assert_eq!(c.trusted_proxy_list(), vec!["127.0.0.0/8".to_string(), "::1".to_string()]);
        let c = Config { trusted_proxies: Some(vec![]), ..Config::default() };
        assert!(c.validate().is_ok(), "no hops: the list is not used");
        assert!(c.trusted_proxy_list().is_empty());
        let c = Config { trusted_proxy_hops: 2, trusted_proxies: Some(vec!["10.1.0.0/16".into(), "::ffff:10.2.0.0/112".into(), "fd00::1".into()]), ..Config::default() };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_edge_credential_never_comes_from_the_file_and_debug_hides_it() {
        let dir = tempfile_dir();
        let path = dir.join("a.toml");
        std::fs::write(&path, "edge_credentials = \"from-the-file-0123456789abcdef0123\"\n").expect("write");
        let e = Config::load(path.to_str()).expect_err("unknown field");
        assert!(e.to_string().contains("edge_credentials"), "{e}");
        let c = Config {
            edge_credentials: EdgeCredentials::new(Some("a-very-secret-edge-credential-0123456789"), None).expect("valid"),
            ..Config::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("a-very-secret") && shown.contains("<redacted>"), "{shown}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn throttle_section_parses() {
        let c: Config = toml::from_str("[throttle]\nprincipal_burst = 2\nprincipal_interval_ms = 500\n").expect("parse");
        assert_eq!((c.throttle.principal_burst, c.throttle.principal_interval_ms, c.throttle.address_burst), (2, 500, 20));
        assert!(toml::from_str::<Config>("[throttle]\nburst = 2\n").is_err(), "unknown throttle field refused");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tollgate-config-test-{}", crate::util::random_id::<8>("")));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
