//! The filter's configuration: one JSON document (Envoy `configuration`,
//! Istio `pluginConfig`, Envoy Gateway `wasm.config`), validated completely
//! before the filter serves a request. A bad document is refused with a
//! [`ConfigError`] that names the field. Secrets never appear in errors.
//!
//! Every field and its default is documented in `docs/configuration.md`.

use crate::policy::{PathMatch, Policy, Rule};
use crate::token::{self, Algorithm, ClaimRules, Key, KeySet, Verifier};
use serde::Deserialize;
use std::fmt;

/// The upper bound on `clock_skew_seconds`: more would make `exp` meaningless.
pub const MAX_CLOCK_SKEW: u64 = 300;
pub const DEFAULT_MAX_TOKEN_BYTES: usize = crate::protocol::MAX_TOKEN_BYTES;

/// A refusal of the configuration, naming the field (`keys[1].secret_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "tollgate configuration: {}", self.message)
        } else {
            write!(f, "tollgate configuration: field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

// ---- the document, as written ------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<KeyDoc>,
    #[serde(default = "default_token_types")]
    token_types: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default)]
    allow_never_expiring: bool,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_admin_scope")]
    admin_scope: String,
    #[serde(default)]
    sources: SourcesDoc,
    #[serde(default)]
    client_address: ClientAddressDoc,
    #[serde(default)]
    identity_headers: IdentityHeadersDoc,
    #[serde(default = "yes")]
    forward_token: bool,
    #[serde(default = "yes")]
    strict_paths: bool,
    #[serde(default)]
    token_cache: TokenCacheDoc,
    #[serde(default)]
    rules: Vec<RuleDoc>,
    #[serde(default)]
    authority: Option<AuthorityDoc>,
    #[serde(default)]
    revocation: Option<RevocationDoc>,
    #[serde(default)]
    refresh: Option<RefreshDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TokenCacheDoc {
    entries: usize,
}

impl Default for TokenCacheDoc {
    fn default() -> Self {
        TokenCacheDoc { entries: DEFAULT_TOKEN_CACHE_ENTRIES }
    }
}

/// Verified tokens each worker keeps (about 1 KiB each).
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 1024;
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorityDoc {
    cluster: String,
    #[serde(default = "default_authority_host")]
    host: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    credential_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationDoc {
    #[serde(default = "default_sync_interval_ms")]
    sync_interval_ms: u64,
    #[serde(default)]
    max_staleness_ms: Option<u64>,
    #[serde(default)]
    on_stale: OnStale,
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshDoc {
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    header: Option<HeaderModeDoc>,
    #[serde(default = "default_refresh_before")]
    refresh_before_seconds: u64,
    #[serde(default = "default_refresh_wait_ms")]
    wait_ms: u64,
    #[serde(default = "default_client_id")]
    client_id: String,
    #[serde(default = "default_share_ms")]
    share_ms: u64,
    #[serde(default)]
    set_cookie: SetCookieDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderModeDoc {
    request: String,
    #[serde(default = "default_access_response_header")]
    access_response: String,
    #[serde(default = "default_refresh_response_header")]
    refresh_response: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SetCookieDoc {
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    refresh_max_age_seconds: u64,
}

impl Default for SetCookieDoc {
    fn default() -> Self {
        SetCookieDoc {
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
            refresh_max_age_seconds: 14 * 24 * 3600,
        }
    }
}

/// What the filter does while its revocation knowledge is too old.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// 503: no request is decided on knowledge older than `max_staleness_ms`.
    #[default]
    Deny,
    /// Serve on the last known set, and count it.
    Allow,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    #[serde(default)]
    kid: Option<String>,
    alg: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SourcesDoc {
    authorization_header: bool,
    cookie: Option<String>,
    header_pair: Option<HeaderPairDoc>,
    query: QueryDoc,
    passthrough_schemes: Vec<String>,
}

impl Default for SourcesDoc {
    fn default() -> Self {
        SourcesDoc {
            authorization_header: true,
            cookie: None,
            header_pair: None,
            query: QueryDoc::default(),
            passthrough_schemes: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderPairDoc {
    token: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QueryDoc {
    enabled: bool,
    name: String,
}

impl Default for QueryDoc {
    fn default() -> Self {
        QueryDoc { enabled: false, name: "access_token".into() }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ClientAddressDoc {
    from: ClientAddressFrom,
    trusted_hops: u32,
}

/// Where the client address for the `hosts` claim comes from.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAddressFrom {
    /// Envoy's `source.address`: the peer of the downstream connection.
    #[default]
    Peer,
    /// `x-forwarded-for`, skipping `trusted_hops` entries from the right.
    XForwardedFor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IdentityHeadersDoc {
    subject: String,
    scope: String,
    session: String,
    version: String,
}

impl Default for IdentityHeadersDoc {
    fn default() -> Self {
        IdentityHeadersDoc {
            subject: "x-tollgate-sub".into(),
            scope: "x-tollgate-scope".into(),
            session: "x-tollgate-sid".into(),
            version: "x-tollgate-ver".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    #[serde(default)]
    name: Option<String>,
    path: PathDoc,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    ignore_case: bool,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default = "yes")]
    enforce_hosts: bool,
    #[serde(default)]
    fresh: bool,
    #[serde(default)]
    max_staleness_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathDoc {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
}

fn default_token_types() -> Vec<String> {
    vec![token::ACCESS_TOKEN_TYP.into()]
}
fn default_skew() -> u64 {
    30
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_realm() -> String {
    "tollgate".into()
}
fn default_admin_scope() -> String {
    "tollgate:admin".into()
}
fn yes() -> bool {
    true
}
fn default_authority_host() -> String {
    "tollgate-authority".into()
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_sync_interval_ms() -> u64 {
    1000
}
fn default_refresh_before() -> u64 {
    30
}
fn default_refresh_wait_ms() -> u64 {
    3000
}
fn default_share_ms() -> u64 {
    10_000
}
fn default_client_id() -> String {
    "tollgate-edge".into()
}
fn default_access_response_header() -> String {
    "x-tollgate-access-token".into()
}
fn default_refresh_response_header() -> String {
    "x-tollgate-refresh-token".into()
}

// ---- the validated configuration -------------------------------------------

/// Where tokens are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub authorization_header: bool,
    pub cookie: Option<String>,
    /// `(token header, user header)`, lower-case.
    pub header_pair: Option<(String, String)>,
    pub query_enabled: bool,
    pub query_name: String,
    /// `Authorization` schemes that are not ours and go upstream untouched
    /// (lower-case). Any other scheme is a 400.
    pub passthrough_schemes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub subject: String,
    pub scope: String,
    pub session: String,
    pub version: String,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 4] {
        [&self.subject, &self.scope, &self.session, &self.version]
    }
}

/// The authority cluster the filter calls out to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Envoy cluster name (Istio: `outbound|8080||tollgate-authority.<ns>.svc.cluster.local`).
    pub cluster: String,
    /// `:authority` of callouts.
    pub host: String,
    pub timeout_ms: u64,
    /// Sent as `Authorization: Bearer` on feed and live-check callouts.
    pub credential: Option<EdgeCredential>,
}

/// The edge's credential at the authority. Its `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct EdgeCredential(String);

impl EdgeCredential {
    /// The `authorization` header value for a callout.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for EdgeCredential {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("EdgeCredential(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationPolicy {
    pub sync_interval_ms: u64,
    pub max_staleness_ms: u64,
    pub on_stale: OnStale,
    /// Long polling: the authority holds the feed request up to this long
    /// and answers as soon as a bump arrives. 0: plain polling.
    pub wait_ms: u64,
}

/// Refresh at the edge: cookie mode for browsers, header mode for API
/// clients that opt in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// The cookie holding the refresh token (cookie mode).
    pub cookie: Option<String>,
    /// Request header carrying the refresh token, and response headers for
    /// the new pair (header mode).
    pub header: Option<HeaderMode>,
    pub refresh_before_seconds: u64,
    pub wait_ms: u64,
    pub client_id: String,
    /// How long one worker's refresh answer is reused by the others. Keep it
    /// below the authority's grace window.
    pub share_ms: u64,
    pub set_cookie: SetCookie,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMode {
    pub request: String,
    pub access_response: String,
    pub refresh_response: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
    pub refresh_max_age_seconds: u64,
}

/// A configuration that passed every check; the filter runs on nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    pub verifier: Verifier,
    pub realm: String,
    pub admin_scope: String,
    pub sources: Sources,
    pub client_address: ClientAddressFrom,
    pub trusted_hops: u32,
    pub identity_headers: IdentityHeaders,
    pub forward_token: bool,
    /// Refuse path spellings and method overrides upstreams read differently.
    pub strict_paths: bool,
    /// Entries of each worker's cache of verified tokens (0: none).
    pub token_cache_entries: usize,
    pub policy: Policy,
    pub authority: Option<Authority>,
    pub revocation: Option<RevocationPolicy>,
    pub refresh: Option<RefreshPolicy>,
}

impl Config {
    /// Parses and validates `json`. `env` reads the VM's environment
    /// (`vm_config.environment_variables`) for `secret_env`.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let doc: Document = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            ConfigError::new(field, without_position(&e.inner().to_string()))
        })?;
        de.end().map_err(|_| ConfigError::new("", "trailing characters after the document"))?;
        doc.validate(env)
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn without_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

impl Document {
    fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.audiences.is_empty() {
            return Err(ConfigError::new("audiences", "at least one audience is required"));
        }
        if let Some(i) = self.audiences.iter().position(|a| a.is_empty()) {
            return Err(ConfigError::new(format!("audiences[{i}]"), "must not be empty"));
        }
        if self.keys.is_empty() {
            return Err(ConfigError::new("keys", "at least one key is required"));
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.into_iter().enumerate() {
            keys.push(k.build(i, env)?);
        }
        let keys = KeySet::new(keys).map_err(|e| ConfigError::new("keys", e.to_string()))?;
        if self.token_types.is_empty() {
            return Err(ConfigError::new("token_types", "at least one typ is required"));
        }
        if self.clock_skew_seconds > MAX_CLOCK_SKEW {
            return Err(ConfigError::new(
                "clock_skew_seconds",
                format!("must be at most {MAX_CLOCK_SKEW}"),
            ));
        }
        if !(256..=65536).contains(&self.max_token_bytes) {
            return Err(ConfigError::new("max_token_bytes", "must be between 256 and 65536"));
        }
        if !is_quoted_string_safe(&self.realm) {
            return Err(ConfigError::new("realm", "must be printable ASCII without `\"` or `\\`"));
        }
        if self.admin_scope.is_empty() || self.admin_scope.contains(' ') {
            return Err(ConfigError::new("admin_scope", "must be one non-empty scope token"));
        }
        if self.token_cache.entries > MAX_TOKEN_CACHE_ENTRIES {
            return Err(ConfigError::new("token_cache.entries", format!("must be at most {MAX_TOKEN_CACHE_ENTRIES}")));
        }
        if self.client_address.trusted_hops > 64 {
            return Err(ConfigError::new("client_address.trusted_hops", "must be at most 64"));
        }
        let sources = self.sources.build()?;
        let identity_headers = self.identity_headers.build()?;
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.into_iter().enumerate() {
            rules.push(r.build(i)?);
        }
        let authority = self.authority.map(|a| a.build(env)).transpose()?;
        let needs_authority = |field: &str| {
            ConfigError::new(field, "needs the `authority` section: it is what the filter calls")
        };
        if authority.is_none() {
            if self.revocation.is_some() {
                return Err(needs_authority("revocation"));
            }
            if self.refresh.is_some() {
                return Err(needs_authority("refresh"));
            }
            if let Some(i) = rules.iter().position(|r| r.fresh) {
                return Err(needs_authority(&format!("rules[{i}].fresh")));
            }
        }
        let revocation = self.revocation.map(RevocationDoc::build).transpose()?;
        let refresh = match self.refresh {
            Some(r) => Some(r.build(&sources)?),
            None => None,
        };
        Ok(Config {
            verifier: Verifier {
                keys,
                rules: ClaimRules {
                    issuer: self.issuer,
                    audiences: self.audiences,
                    clock_skew: self.clock_skew_seconds,
                    allow_never_expiring: self.allow_never_expiring,
                },
                allowed_typ: self.token_types,
                max_token_bytes: self.max_token_bytes,
            },
            realm: self.realm,
            admin_scope: self.admin_scope,
            sources,
            client_address: self.client_address.from,
            trusted_hops: self.client_address.trusted_hops,
            identity_headers,
            forward_token: self.forward_token,
            strict_paths: self.strict_paths,
            token_cache_entries: self.token_cache.entries,
            policy: Policy::new(rules),
            authority,
            revocation,
            refresh,
        })
    }
}

/// The shortest edge credential accepted (the authority refuses shorter).
pub const MIN_EDGE_CREDENTIAL_BYTES: usize = 32;

impl AuthorityDoc {
    fn build(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Authority, ConfigError> {
        if self.cluster.is_empty() {
            return Err(ConfigError::new("authority.cluster", "must not be empty"));
        }
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new("authority.host", "must be a host name"));
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new("authority.timeout_ms", "must be between 10 and 60000"));
        }
        let credential = match (self.credential, self.credential_env) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "authority.credential",
                    "give either credential or credential_env, not both",
                ))
            }
            (Some(c), None) => Some(("authority.credential", c)),
            (None, Some(var)) => match env(&var) {
                Some(c) => Some(("authority.credential_env", c)),
                None => {
                    return Err(ConfigError::new(
                        "authority.credential_env",
                        format!("environment variable {var} is not set in the VM"),
                    ))
                }
            },
        };
        let credential = match credential {
            Some((field, c)) => {
                if c.len() < MIN_EDGE_CREDENTIAL_BYTES || !c.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigError::new(
                        field,
                        format!("must be at least {MIN_EDGE_CREDENTIAL_BYTES} printable ASCII characters without spaces"),
                    ));
                }
                Some(EdgeCredential(c))
            }
            None => None,
        };
        Ok(Authority { cluster: self.cluster, host: self.host, timeout_ms: self.timeout_ms, credential })
    }
}

impl RevocationDoc {
    fn build(self) -> Result<RevocationPolicy, ConfigError> {
        if !(100..=60_000).contains(&self.sync_interval_ms) {
            return Err(ConfigError::new("revocation.sync_interval_ms", "must be between 100 and 60000"));
        }
        let max_staleness_ms = self.max_staleness_ms.unwrap_or(5 * self.sync_interval_ms);
        // One poll may be late (a round trip, a worker's reload tick, a
        // lease handover) without every request turning into a 503.
        if max_staleness_ms < 2 * self.sync_interval_ms {
            return Err(ConfigError::new(
                "revocation.max_staleness_ms",
                "must be at least twice sync_interval_ms",
            ));
        }
        if self.wait_ms != 0 && !(1000..=60_000).contains(&self.wait_ms) {
            return Err(ConfigError::new("revocation.wait_ms", "must be 0 (plain polling) or between 1000 and 60000"));
        }
        Ok(RevocationPolicy { sync_interval_ms: self.sync_interval_ms, max_staleness_ms, on_stale: self.on_stale, wait_ms: self.wait_ms })
    }
}

impl RefreshDoc {
    fn build(self, sources: &Sources) -> Result<RefreshPolicy, ConfigError> {
        if self.cookie.is_none() && self.header.is_none() {
            return Err(ConfigError::new("refresh", "give cookie (browsers), header (API clients) or both"));
        }
        if let Some(c) = &self.cookie {
            if !is_token_char_string(c) {
                return Err(ConfigError::new("refresh.cookie", "is not a valid cookie name"));
            }
            if sources.cookie.is_none() {
                return Err(ConfigError::new(
                    "refresh.cookie",
                    "cookie mode needs sources.cookie: the new access token is set there",
                ));
            }
            if sources.cookie.as_deref() == Some(c.as_str()) {
                return Err(ConfigError::new("refresh.cookie", "must differ from sources.cookie"));
            }
        }
        let header = match self.header {
            Some(h) => {
                for (name, v) in [("request", &h.request), ("access_response", &h.access_response), ("refresh_response", &h.refresh_response)] {
                    if !is_header_name(v) {
                        return Err(ConfigError::new(format!("refresh.header.{name}"), "is not a valid header name"));
                    }
                }
                Some(HeaderMode {
                    request: h.request.to_ascii_lowercase(),
                    access_response: h.access_response.to_ascii_lowercase(),
                    refresh_response: h.refresh_response.to_ascii_lowercase(),
                })
            }
            None => None,
        };
        if self.refresh_before_seconds > 3600 {
            return Err(ConfigError::new("refresh.refresh_before_seconds", "must be at most 3600"));
        }
        if !(10..=60_000).contains(&self.wait_ms) {
            return Err(ConfigError::new("refresh.wait_ms", "must be between 10 and 60000"));
        }
        if self.share_ms > 60_000 {
            return Err(ConfigError::new("refresh.share_ms", "must be at most 60000"));
        }
        if self.client_id.is_empty() || !is_token_char_string(&self.client_id) {
            return Err(ConfigError::new("refresh.client_id", "must be a non-empty token"));
        }
        let c = self.set_cookie;
        if !c.path.starts_with('/') || !is_quoted_string_safe(&c.path) || c.path.contains(';') {
            return Err(ConfigError::new("refresh.set_cookie.path", "must be an absolute path without `;`"));
        }
        if let Some(d) = &c.domain {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                return Err(ConfigError::new("refresh.set_cookie.domain", "is not a domain"));
            }
        }
        if c.same_site == SameSite::None && !c.secure {
            return Err(ConfigError::new("refresh.set_cookie.same_site", "None requires secure: true"));
        }
        Ok(RefreshPolicy {
            cookie: self.cookie,
            header,
            refresh_before_seconds: self.refresh_before_seconds,
            wait_ms: self.wait_ms,
            client_id: self.client_id,
            share_ms: self.share_ms,
            set_cookie: SetCookie {
                secure: c.secure,
                http_only: c.http_only,
                same_site: c.same_site,
                path: c.path,
                domain: c.domain,
                refresh_max_age_seconds: c.refresh_max_age_seconds,
            },
        })
    }
}

impl KeyDoc {
    fn build(self, i: usize, env: &dyn Fn(&str) -> Option<String>) -> Result<Key, ConfigError> {
        let field = |name: &str| format!("keys[{i}].{name}");
        let alg = Algorithm::parse(&self.alg)
            .ok_or_else(|| ConfigError::new(field("alg"), "must be one of HS256, HS384, HS512"))?;
        if self.kid.as_deref() == Some("") {
            return Err(ConfigError::new(field("kid"), "must not be empty"));
        }
        let (encoded, from) = match (self.secret, self.secret_env) {
            (Some(s), None) => (s, field("secret")),
            (None, Some(var)) => match env(&var) {
                Some(s) => (s, field("secret_env")),
                None => {
                    return Err(ConfigError::new(
                        field("secret_env"),
                        format!("environment variable {var} is not set in the VM"),
                    ))
                }
            },
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(field("secret"), "give either secret or secret_env, not both"))
            }
            (None, None) => {
                return Err(ConfigError::new(field("secret"), "one of secret or secret_env is required"))
            }
        };
        let secret = token::b64::decode(encoded.trim().trim_end_matches('=').as_bytes())
            .ok_or_else(|| ConfigError::new(from.clone(), "is not base64url"))?;
        Key::new(self.kid, alg, &secret).map_err(|e| ConfigError::new(from, e.to_string()))
    }
}

impl SourcesDoc {
    fn build(self) -> Result<Sources, ConfigError> {
        if let Some(c) = &self.cookie {
            if !is_token_char_string(c) {
                return Err(ConfigError::new("sources.cookie", "is not a valid cookie name"));
            }
        }
        let header_pair = match self.header_pair {
            Some(p) => {
                for (name, v) in [("token", &p.token), ("user", &p.user)] {
                    if !is_header_name(v) {
                        return Err(ConfigError::new(
                            format!("sources.header_pair.{name}"),
                            "is not a valid header name",
                        ));
                    }
                }
                Some((p.token.to_ascii_lowercase(), p.user.to_ascii_lowercase()))
            }
            None => None,
        };
        if self.query.name.is_empty() || !is_token_char_string(&self.query.name) {
            return Err(ConfigError::new("sources.query.name", "is not a valid parameter name"));
        }
        let mut passthrough_schemes = Vec::with_capacity(self.passthrough_schemes.len());
        for (i, scheme) in self.passthrough_schemes.into_iter().enumerate() {
            let field = format!("sources.passthrough_schemes[{i}]");
            if !is_token_char_string(&scheme) {
                return Err(ConfigError::new(field, "is not an authentication scheme name"));
            }
            if self.authorization_header && scheme.eq_ignore_ascii_case("bearer") {
                return Err(ConfigError::new(field, "Bearer is read by the filter while authorization_header is on"));
            }
            passthrough_schemes.push(scheme.to_ascii_lowercase());
        }
        if !self.authorization_header && self.cookie.is_none() && header_pair.is_none() && !self.query.enabled {
            return Err(ConfigError::new("sources", "at least one token source must be enabled"));
        }
        Ok(Sources {
            authorization_header: self.authorization_header,
            cookie: self.cookie,
            header_pair,
            query_enabled: self.query.enabled,
            query_name: self.query.name,
            passthrough_schemes,
        })
    }
}

impl IdentityHeadersDoc {
    fn build(self) -> Result<IdentityHeaders, ConfigError> {
        let h = IdentityHeaders {
            subject: self.subject.to_ascii_lowercase(),
            scope: self.scope.to_ascii_lowercase(),
            session: self.session.to_ascii_lowercase(),
            version: self.version.to_ascii_lowercase(),
        };
        let names = ["subject", "scope", "session", "version"];
        for (i, (name, v)) in names.iter().zip(h.all()).enumerate() {
            if !is_header_name(v) || v.starts_with(':') {
                return Err(ConfigError::new(format!("identity_headers.{name}"), "is not a valid header name"));
            }
            if h.all()[..i].contains(&v) {
                return Err(ConfigError::new(format!("identity_headers.{name}"), "repeats another identity header"));
            }
        }
        Ok(h)
    }
}

impl RuleDoc {
    fn build(self, i: usize) -> Result<Rule, ConfigError> {
        let field = |name: &str| format!("rules[{i}].{name}");
        let path = match (self.path.exact, self.path.prefix, self.path.regex) {
            (Some(p), None, None) if p.starts_with('/') => PathMatch::exact(&p),
            (None, Some(p), None) if p.starts_with('/') => PathMatch::prefix(&p),
            (Some(_), None, None) => return Err(ConfigError::new(field("path.exact"), "must start with /")),
            (None, Some(_), None) => return Err(ConfigError::new(field("path.prefix"), "must start with /")),
            (None, None, Some(r)) => PathMatch::regex(&r, self.ignore_case)
                .map_err(|e| ConfigError::new(field("path.regex"), format!("invalid regex: {e}")))?,
            _ => return Err(ConfigError::new(field("path"), "give exactly one of exact, prefix, regex")),
        };
        let mut methods = Vec::with_capacity(self.methods.len());
        for (j, m) in self.methods.into_iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError::new(format!("rules[{i}].methods[{j}]"), "is not an HTTP method"));
            }
            methods.push(m.to_ascii_uppercase());
        }
        if self.anonymous && self.fresh {
            return Err(ConfigError::new(field("fresh"), "an anonymous rule has no token to check"));
        }
        if self.max_staleness_ms > 0 && !self.fresh {
            return Err(ConfigError::new(field("max_staleness_ms"), "only applies with fresh: true"));
        }
        if self.anonymous && (self.admin || !self.scopes.is_empty()) {
            return Err(ConfigError::new(
                field("anonymous"),
                "an anonymous rule cannot also require scopes or admin",
            ));
        }
        if let Some(j) = self.scopes.iter().position(|s| s.is_empty() || s.contains(' ')) {
            return Err(ConfigError::new(format!("rules[{i}].scopes[{j}]"), "must be one non-empty scope token"));
        }
        Ok(Rule {
            name: self.name.unwrap_or_else(|| format!("rules[{i}]")),
            path,
            methods,
            ignore_case: self.ignore_case,
            anonymous: self.anonymous,
            scopes: self.scopes,
            admin: self.admin,
            enforce_hosts: self.enforce_hosts,
            fresh: self.fresh,
            max_staleness_ms: self.max_staleness_ms,
        })
    }
}

/// RFC 7230 token characters: valid in header names and cookie names.
fn is_token_char_string(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_name(s: &str) -> bool {
    is_token_char_string(s)
}

fn is_quoted_string_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}
