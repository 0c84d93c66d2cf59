//! Configuration: a TOML file, then `TOLLGATE_*` environment variables and
//! command-line flags over it (flags win). With nothing configured the
//! authority runs the demo: embedded store in `./.run/authority`, demo key,
//! demo users, on 127.0.0.1:8080.

use crate::keys::KeyConfig;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./.run/authority";
pub const DEFAULT_ISSUER: &str = "https://auth.tollgate.local";
pub const DEFAULT_AUDIENCE: &str = "tollgate-demo";
pub const DEFAULT_ADMIN_SCOPE: &str = "tollgate:admin";
/// Longest refresh family (10 years): keeps `now + ttl` far from overflow
/// and inside every store's integer range.
pub const MAX_REFRESH_TTL_SECS: u64 = 10 * 366 * 86_400;
/// Longest finite API token lifetime (100 years).
pub const MAX_API_TOKEN_DAYS: u64 = 36_525;

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
    /// Password / client-secret (argon2) checks at once; more answer 503
    /// `temporarily_unavailable`. 0: the number of CPUs.
    pub max_concurrent_hashes: usize,
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
        Ok(())
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
        ];
        for (field, set) in cases {
            let mut c = Config::default();
            set(&mut c);
            let e = c.validate().expect_err(field).to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        assert!(Config::default().validate().is_ok());
    }
}
