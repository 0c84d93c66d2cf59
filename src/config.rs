//! The filter's configuration: one JSON document (Envoy `configuration`,
//! Istio `pluginConfig`, Envoy Gateway `wasm.config`), validated completely
//! before the filter serves a request. A bad document is refused with a
//! [`ConfigError`] that names the field. Secrets never appear in errors.
//!
//! Every field and its default is documented in `docs/configuration.md`.

use crate::policy::{PathMatch, Policy, Rule};
use crate::token::{self, Algorithm, ClaimRules, Key, KeySet, Verifier};
use crate::token::json::{self, Value};
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

// ---- the document, as a table -------------------------------------------------
//
// Every field of the document is declared once, below: its name, what it
// holds, whether it is required and its default. The reader checks a
// document against these tables (names, types, ranges, syntax, choices
// between fields) and takes defaults from them; `schema()` writes the same
// tables out as JSON Schema (`docs/filter-config.schema.json`). What the
// tables cannot say (relations between sections, secrets, regexes) is
// checked by `Document::validate` and listed in `SEMANTIC_RULES`.

/// What a field holds. The reader checks it, the schema states it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Str(Syntax),
    /// An integer in `min..=max`; with `zero_off`, 0 too (a feature off).
    UInt { min: u64, max: u64, zero_off: bool },
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An array; `at_least_one` names an element for "at least one … is required".
    Array { item: &'static Kind, at_least_one: Option<&'static str> },
    Object(&'static Table),
}

/// The syntax of a string field: a check here, a `pattern` in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Any,
    NonEmpty,
    /// An RFC 7230 token (header, cookie, parameter, scheme names), with
    /// the message that says which.
    Token(&'static str),
    /// One OAuth scope token: no space.
    Scope,
    /// Printable ASCII that fits a quoted-string unescaped.
    Quotable,
    Method,
    HostName,
    CookiePath,
    Domain,
    AbsolutePath,
    /// The edge credential: long enough, printable, no space.
    Credential,
}

/// What an absent field is.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// No default: required, or absent (`null` allowed) when optional.
    None,
    Bool(bool),
    UInt(u64),
    Str(&'static str),
    Strs(&'static [&'static str]),
    /// An object whose fields take their own defaults.
    Object,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub default: DefaultValue,
    /// For the schema; empty in the filter build.
    pub doc: &'static str,
}

impl Field {
    /// Optional without a default: may be absent or `null`.
    pub fn nullable(&self) -> bool {
        !self.required && matches!(self.default, DefaultValue::None)
    }
}

/// A rule between fields of one object.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    pub of: &'static [&'static str],
    pub at_least_one: bool,
    pub at_most_one: bool,
    /// The field an error names (`None`: the object).
    pub blame: Option<&'static str>,
    pub missing: &'static str,
    pub both: &'static str,
}

#[derive(Debug)]
pub struct Table {
    /// The name of its definition in the schema.
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
    pub choice: Option<Choice>,
}

/// Documentation text that only the native build keeps (the schema).
macro_rules! doc {
    ($s:literal) => {
        if cfg!(target_arch = "wasm32") {
            ""
        } else {
            $s
        }
    };
}

const fn f(name: &'static str, kind: Kind, default: DefaultValue, doc: &'static str) -> Field {
    Field { name, kind, required: false, default, doc }
}
const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field { name, kind, required: true, default: DefaultValue::None, doc }
}
const fn range(min: u64, max: u64) -> Kind {
    Kind::UInt { min, max, zero_off: false }
}
const ANY: Kind = Kind::Str(Syntax::Any);
const HEADER: Kind = Kind::Str(Syntax::Token("is not a valid header name"));
const COOKIE: Kind = Kind::Str(Syntax::Token("is not a valid cookie name"));
const BOOL: Kind = Kind::Bool;

/// The top-level key editors read; the filter ignores it.
pub const SCHEMA_KEY: &str = "$schema";
/// Where the published schema lives.
pub const SCHEMA_ID: &str = "https://github.com/tollgate/tollgate/blob/main/docs/filter-config.schema.json";

pub static DOCUMENT: Table = Table {
    name: "Document",
    doc: doc!("The Tollgate filter's configuration (Envoy `configuration`, Istio `pluginConfig`, Envoy Gateway `wasm.config`). Validated natively by `tollgate-authority check-filter-config`."),
    choice: None,
    fields: &[
        f(SCHEMA_KEY, ANY, DefaultValue::None, doc!("The schema this document follows, for editors; the filter ignores it.")),
        required("issuer", Kind::Str(Syntax::NonEmpty), doc!("Exact `iss` of accepted tokens.")),
        required("audiences", Kind::Array { item: &Kind::Str(Syntax::NonEmpty), at_least_one: Some("audience") }, doc!("A token must carry at least one of these in `aud`.")),
        required("keys", Kind::Array { item: &Kind::Object(&KEY), at_least_one: Some("key") }, doc!("HMAC verification keys; with more than one, each needs a distinct `kid`.")),
        f("token_types", Kind::Array { item: &ANY, at_least_one: Some("typ") }, DefaultValue::Strs(&[token::ACCESS_TOKEN_TYP]), doc!("Accepted JOSE `typ` values.")),
        f("clock_skew_seconds", range(0, MAX_CLOCK_SKEW), DefaultValue::UInt(30), doc!("Leeway for `exp`, `nbf` and `iat`.")),
        f("max_token_bytes", range(256, 65536), DefaultValue::UInt(DEFAULT_MAX_TOKEN_BYTES as u64), doc!("Longer tokens are refused before any parsing.")),
        f("allow_never_expiring", BOOL, DefaultValue::Bool(false), doc!("Accept tokens without `exp` (API tokens).")),
        f("realm", Kind::Str(Syntax::Quotable), DefaultValue::Str("tollgate"), doc!("`realm` of `WWW-Authenticate` challenges.")),
        f("admin_scope", Kind::Str(Syntax::Scope), DefaultValue::Str("tollgate:admin"), doc!("The scope rules with `admin: true` require.")),
        f("sources", Kind::Object(&SOURCES), DefaultValue::Object, doc!("Where tokens are looked for.")),
        f("client_address", Kind::Object(&CLIENT_ADDRESS), DefaultValue::Object, doc!("Where the client address checked against `hosts` comes from.")),
        f("identity_headers", Kind::Object(&IDENTITY_HEADERS), DefaultValue::Object, doc!("Headers set upstream from a verified token (client-sent copies are removed).")),
        f("forward_token", BOOL, DefaultValue::Bool(true), doc!("Keep the token in the request sent upstream.")),
        f("filter_state", BOOL, DefaultValue::Bool(false), doc!("Publish each decision as filter state `wasm.tollgate_*` for access logs (Wasm filter).")),
        f("strict_paths", BOOL, DefaultValue::Bool(true), doc!("Refuse path spellings and method overrides upstreams read differently.")),
        f("token_cache", Kind::Object(&TOKEN_CACHE), DefaultValue::Object, doc!("Each worker's cache of verified tokens.")),
        f("rules", Kind::Array { item: &Kind::Object(&RULE), at_least_one: None }, DefaultValue::Strs(&[]), doc!("Path rules, first match wins; no match requires a valid token.")),
        f("authority", Kind::Object(&AUTHORITY), DefaultValue::None, doc!("The authority cluster the filter calls (revocation feed, live checks, refresh).")),
        f("revocation", Kind::Object(&REVOCATION), DefaultValue::None, doc!("Revocation feed polling; needs `authority`.")),
        f("refresh", Kind::Object(&REFRESH), DefaultValue::None, doc!("Refresh at the edge; needs `authority`.")),
    ],
};

static KEY: Table = Table {
    name: "Key",
    doc: doc!("One HMAC key: base64url `secret`, or `secret_env` naming a variable of the Wasm VM's environment."),
    choice: Some(Choice {
        of: &["secret", "secret_env"],
        at_least_one: true,
        at_most_one: true,
        blame: Some("secret"),
        missing: "one of secret or secret_env is required",
        both: "give either secret or secret_env, not both",
    }),
    fields: &[
        f("kid", Kind::Str(Syntax::NonEmpty), DefaultValue::None, doc!("Key id matched against the token's `kid`.")),
        required("alg", Kind::Enum(&["HS256", "HS384", "HS512"]), doc!("HMAC algorithm; the secret must be at least as long as the hash.")),
        f("secret", ANY, DefaultValue::None, doc!("The key, base64url (padding allowed).")),
        f("secret_env", ANY, DefaultValue::None, doc!("The VM environment variable holding the base64url key.")),
    ],
};

static SOURCES: Table = Table {
    name: "Sources",
    doc: doc!("Where tokens are looked for; at least one source must be on."),
    choice: None,
    fields: &[
        f("authorization_header", BOOL, DefaultValue::Bool(true), doc!("`Authorization: Bearer`.")),
        f("cookie", COOKIE, DefaultValue::None, doc!("A cookie holding the access token.")),
        f("header_pair", Kind::Object(&HEADER_PAIR), DefaultValue::None, doc!("A token header and the user header that must match its `sub`.")),
        f("query", Kind::Object(&QUERY), DefaultValue::Object, doc!("A query parameter (off by default).")),
        f("passthrough_schemes", Kind::Array { item: &Kind::Str(Syntax::Token("is not an authentication scheme name")), at_least_one: None }, DefaultValue::Strs(&[]), doc!("Other `Authorization` schemes sent upstream untouched.")),
    ],
};

static HEADER_PAIR: Table = Table {
    name: "HeaderPair",
    doc: doc!("A token header and the user header that must match its `sub`."),
    choice: None,
    fields: &[required("token", HEADER, doc!("The header carrying the token.")), required("user", HEADER, doc!("The header carrying the user."))],
};

static QUERY: Table = Table {
    name: "Query",
    doc: doc!("A query parameter carrying the token."),
    choice: None,
    fields: &[
        f("enabled", BOOL, DefaultValue::Bool(false), doc!("Read the parameter.")),
        f("name", Kind::Str(Syntax::Token("is not a valid parameter name")), DefaultValue::Str("access_token"), doc!("The parameter name.")),
    ],
};

static CLIENT_ADDRESS: Table = Table {
    name: "ClientAddress",
    doc: doc!("Where the client address for the `hosts` claim comes from."),
    choice: None,
    fields: &[
        f("from", Kind::Enum(ClientAddressFrom::NAMES), DefaultValue::Str("peer"), doc!("`peer`: the downstream connection; `x_forwarded_for`: that header, skipping `trusted_hops` from the right.")),
        f("trusted_hops", range(0, 64), DefaultValue::UInt(0), doc!("Proxies in front of Envoy that append to `x-forwarded-for`.")),
    ],
};

static IDENTITY_HEADERS: Table = Table {
    name: "IdentityHeaders",
    doc: doc!("Header names set upstream from a verified token; four distinct names."),
    choice: None,
    fields: &[
        f("subject", HEADER, DefaultValue::Str("x-tollgate-sub"), doc!("The token's `sub`.")),
        f("scope", HEADER, DefaultValue::Str("x-tollgate-scope"), doc!("The token's `scope`.")),
        f("session", HEADER, DefaultValue::Str("x-tollgate-sid"), doc!("The token's `sid`.")),
        f("version", HEADER, DefaultValue::Str("x-tollgate-ver"), doc!("The token's `ver`.")),
    ],
};

static TOKEN_CACHE: Table = Table {
    name: "TokenCache",
    doc: doc!("Each worker's cache of verified tokens (about 1 KiB an entry)."),
    choice: None,
    fields: &[f("entries", range(0, MAX_TOKEN_CACHE_ENTRIES as u64), DefaultValue::UInt(DEFAULT_TOKEN_CACHE_ENTRIES as u64), doc!("Capacity; 0 turns the cache off."))],
};

static RULE: Table = Table {
    name: "Rule",
    doc: doc!("A path rule: what a matching request needs."),
    choice: None,
    fields: &[
        f("name", ANY, DefaultValue::None, doc!("Named in logs and counters (default `rules[i]`).")),
        required("path", Kind::Object(&PATH), doc!("Exactly one of `exact`, `prefix`, `regex`.")),
        f("methods", Kind::Array { item: &Kind::Str(Syntax::Method), at_least_one: None }, DefaultValue::Strs(&[]), doc!("Methods the rule applies to; empty: all.")),
        f("ignore_case", BOOL, DefaultValue::Bool(false), doc!("Match the path case-insensitively.")),
        f("anonymous", BOOL, DefaultValue::Bool(false), doc!("No token needed (one that is sent is still checked).")),
        f("scopes", Kind::Array { item: &Kind::Str(Syntax::Scope), at_least_one: None }, DefaultValue::Strs(&[]), doc!("Scopes the token must all carry.")),
        f("admin", BOOL, DefaultValue::Bool(false), doc!("Require `admin_scope`.")),
        f("enforce_hosts", BOOL, DefaultValue::Bool(true), doc!("Check the token's `hosts` claim against the client address.")),
        f("fresh", BOOL, DefaultValue::Bool(false), doc!("Ask the authority for the current version (needs `authority`).")),
        f("max_staleness_ms", range(0, u64::MAX), DefaultValue::UInt(0), doc!("With `fresh`: how old a live answer may be.")),
    ],
};

static PATH: Table = Table {
    name: "PathMatch",
    doc: doc!("How a rule matches the path (without the query)."),
    choice: Some(Choice {
        of: &["exact", "prefix", "regex"],
        at_least_one: true,
        at_most_one: true,
        blame: None,
        missing: "give exactly one of exact, prefix, regex",
        both: "give exactly one of exact, prefix, regex",
    }),
    fields: &[
        f("exact", Kind::Str(Syntax::AbsolutePath), DefaultValue::None, doc!("The whole path.")),
        f("prefix", Kind::Str(Syntax::AbsolutePath), DefaultValue::None, doc!("A path prefix.")),
        f("regex", ANY, DefaultValue::None, doc!("A regex (regex-lite syntax) matched against the whole path.")),
    ],
};

static AUTHORITY: Table = Table {
    name: "Authority",
    doc: doc!("The authority cluster the filter calls out to."),
    choice: Some(Choice {
        of: &["credential", "credential_env"],
        at_least_one: false,
        at_most_one: true,
        blame: Some("credential"),
        missing: "",
        both: "give either credential or credential_env, not both",
    }),
    fields: &[
        required("cluster", Kind::Str(Syntax::NonEmpty), doc!("Envoy cluster name (Istio: `outbound|8080||tollgate-authority.<ns>.svc.cluster.local`).")),
        f("host", Kind::Str(Syntax::HostName), DefaultValue::Str("tollgate-authority"), doc!("`:authority` of callouts.")),
        f("timeout_ms", range(10, 60_000), DefaultValue::UInt(1000), doc!("Callout timeout.")),
        f("credential", Kind::Str(Syntax::Credential), DefaultValue::None, doc!("The edge's bearer credential at the authority.")),
        f("credential_env", ANY, DefaultValue::None, doc!("The VM environment variable holding the credential.")),
    ],
};

static REVOCATION: Table = Table {
    name: "Revocation",
    doc: doc!("Revocation feed polling."),
    choice: None,
    fields: &[
        f("sync_interval_ms", range(100, 60_000), DefaultValue::UInt(1000), doc!("Feed poll interval.")),
        f("max_staleness_ms", range(0, u64::MAX), DefaultValue::None, doc!("Knowledge older than this is stale (default 5 × sync_interval_ms; at least twice it).")),
        f("on_stale", Kind::Enum(OnStale::NAMES), DefaultValue::Str("deny"), doc!("`deny`: 503 while stale; `allow`: serve on the last known set.")),
        f("wait_ms", Kind::UInt { min: 1000, max: 60_000, zero_off: true }, DefaultValue::UInt(0), doc!("Long polling: 0 (plain polling) or how long the authority may hold a feed request.")),
    ],
};

static REFRESH: Table = Table {
    name: "Refresh",
    doc: doc!("Refresh at the edge: cookie mode for browsers, header mode for API clients."),
    choice: Some(Choice {
        of: &["cookie", "header"],
        at_least_one: true,
        at_most_one: false,
        blame: None,
        missing: "give cookie (browsers), header (API clients) or both",
        both: "",
    }),
    fields: &[
        f("cookie", COOKIE, DefaultValue::None, doc!("The cookie holding the refresh token (needs `sources.cookie`, a different name).")),
        f("header", Kind::Object(&HEADER_MODE), DefaultValue::None, doc!("Header mode.")),
        f("refresh_before_seconds", range(0, 3600), DefaultValue::UInt(30), doc!("Refresh when the access token expires within this.")),
        f("wait_ms", range(10, 60_000), DefaultValue::UInt(3000), doc!("How long a request waits for a refresh.")),
        f("client_id", Kind::Str(Syntax::Token("must be a non-empty token")), DefaultValue::Str("tollgate-edge"), doc!("`client_id` of refresh requests.")),
        f("share_ms", range(0, 60_000), DefaultValue::UInt(10_000), doc!("How long one worker's answer is reused by the others.")),
        f("set_cookie", Kind::Object(&SET_COOKIE), DefaultValue::Object, doc!("Attributes of the cookies the filter sets.")),
    ],
};

static HEADER_MODE: Table = Table {
    name: "HeaderMode",
    doc: doc!("Header mode: the request header with the refresh token, the response headers with the new pair."),
    choice: None,
    fields: &[
        required("request", HEADER, doc!("Request header carrying the refresh token.")),
        f("access_response", HEADER, DefaultValue::Str("x-tollgate-access-token"), doc!("Response header with the new access token.")),
        f("refresh_response", HEADER, DefaultValue::Str("x-tollgate-refresh-token"), doc!("Response header with the new refresh token.")),
    ],
};

static SET_COOKIE: Table = Table {
    name: "SetCookie",
    doc: doc!("Attributes of the cookies the filter sets."),
    choice: None,
    fields: &[
        f("secure", BOOL, DefaultValue::Bool(true), doc!("`Secure`.")),
        f("http_only", BOOL, DefaultValue::Bool(true), doc!("`HttpOnly`.")),
        f("same_site", Kind::Enum(SameSite::NAMES), DefaultValue::Str("Lax"), doc!("`SameSite`; `None` requires `secure`.")),
        f("path", Kind::Str(Syntax::CookiePath), DefaultValue::Str("/"), doc!("`Path`.")),
        f("domain", Kind::Str(Syntax::Domain), DefaultValue::None, doc!("`Domain` (default: none, host-only).")),
        f("refresh_max_age_seconds", range(0, u64::MAX), DefaultValue::UInt(14 * 24 * 3600), doc!("`Max-Age` of the refresh cookie.")),
    ],
};

/// What the reader refuses that the schema cannot say: checks across
/// fields and sections, secrets, the VM environment, regexes. The schema
/// accepts documents that break only these (tests/config_schema.rs).
pub const SEMANTIC_RULES: &[&str] = &[
    "keys: secret length per alg, base64url syntax, secret_env set in the VM; kids distinct, every key has one when there are several",
    "authority.credential_env: set in the VM and a valid credential",
    "revocation, refresh, rules[].fresh: need the authority section",
    "revocation.max_staleness_ms: at least twice sync_interval_ms",
    "refresh.cookie: needs sources.cookie and must differ from it",
    "refresh.set_cookie.same_site: None requires secure: true",
    "sources: at least one token source on; Bearer cannot pass through while authorization_header is on",
    "identity_headers: four distinct names (case-insensitively)",
    "rules[]: regex compiles; anonymous excludes fresh, scopes and admin; max_staleness_ms only with fresh",
    "integers: written without a fraction or exponent (JSON Schema's integer admits 30.0)",
];

/// What the enum names read as; each enum's `NAMES` is its table entry.
impl OnStale {
    pub const NAMES: &'static [&'static str] = &["deny", "allow"];
    fn from_name(s: &str) -> OnStale {
        if s == "allow" {
            OnStale::Allow
        } else {
            OnStale::Deny
        }
    }
}

impl SameSite {
    pub const NAMES: &'static [&'static str] = &["Strict", "Lax", "None"];
    fn from_name(s: &str) -> SameSite {
        match s {
            "Strict" => SameSite::Strict,
            "None" => SameSite::None,
            _ => SameSite::Lax,
        }
    }
}

impl ClientAddressFrom {
    pub const NAMES: &'static [&'static str] = &["peer", "x_forwarded_for"];
    fn from_name(s: &str) -> ClientAddressFrom {
        if s == "x_forwarded_for" {
            ClientAddressFrom::XForwardedFor
        } else {
            ClientAddressFrom::Peer
        }
    }
}

/// What the enums are.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// 503: no request is decided on knowledge older than `max_staleness_ms`.
    #[default]
    Deny,
    /// Serve on the last known set, and count it.
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Where the client address for the `hosts` claim comes from.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddressFrom {
    /// Envoy's `source.address`: the peer of the downstream connection.
    #[default]
    Peer,
    /// `x-forwarded-for`, skipping `trusted_hops` entries from the right.
    XForwardedFor,
}

/// Verified tokens each worker keeps (about 1 KiB each).
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 1024;
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1 << 20;

impl Syntax {
    /// `Err(message)` when `s` breaks the rule.
    pub fn check(self, s: &str) -> Result<(), &'static str> {
        let ok = match self {
            Syntax::Any => true,
            Syntax::NonEmpty => !s.is_empty(),
            Syntax::Token(_) => is_token_char_string(s),
            Syntax::Scope => !s.is_empty() && !s.contains(' '),
            Syntax::Quotable => is_quoted_string_safe(s),
            Syntax::Method => !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic()),
            Syntax::HostName => !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()),
            Syntax::CookiePath => s.starts_with('/') && is_quoted_string_safe(s) && !s.contains(';'),
            Syntax::Domain => !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
            Syntax::AbsolutePath => s.starts_with('/'),
            Syntax::Credential => s.len() >= MIN_EDGE_CREDENTIAL_BYTES && s.bytes().all(|b| b.is_ascii_graphic()),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Syntax::Any => "",
            Syntax::NonEmpty => "must not be empty",
            Syntax::Token(why) => why,
            Syntax::Scope => "must be one non-empty scope token",
            Syntax::Quotable => "must be printable ASCII without `\"` or `\\`",
            Syntax::Method => "is not an HTTP method",
            Syntax::HostName => "must be a host name",
            Syntax::CookiePath => "must be an absolute path without `;`",
            Syntax::Domain => "is not a domain",
            Syntax::AbsolutePath => "must start with /",
            Syntax::Credential => CREDENTIAL_RULE,
        })
    }
}

/// The shortest edge credential accepted (the authority refuses shorter).
pub const MIN_EDGE_CREDENTIAL_BYTES: usize = 32;
const CREDENTIAL_RULE: &str = "must be at least 32 printable ASCII characters without spaces";
const _: () = assert!(MIN_EDGE_CREDENTIAL_BYTES == 32, "CREDENTIAL_RULE states the minimum");

// ---- the reader ---------------------------------------------------------------

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn expected(kind: &Kind) -> &'static str {
    match kind {
        Kind::Bool => "a boolean",
        Kind::Str(_) | Kind::Enum(_) => "a string",
        Kind::UInt { .. } => "an integer",
        Kind::Array { .. } => "an array",
        Kind::Object(_) => "an object",
    }
}

fn invalid_type(path: &str, v: &Value, kind: &Kind) -> ConfigError {
    ConfigError::new(path, format!("invalid type: {}, expected {}", v.kind(), expected(kind)))
}

/// Checks `v` against `kind` at `path`, depth first in document order:
/// the structural half of validation (everything the schema says).
fn check(v: &Value, kind: &Kind, path: &str) -> Result<(), ConfigError> {
    match (kind, v) {
        (Kind::Bool, Value::Bool(_)) => Ok(()),
        (Kind::Str(syntax), Value::Str(s)) => syntax.check(s).map_err(|why| ConfigError::new(path, why)),
        (Kind::Enum(names), Value::Str(s)) => {
            if names.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(ConfigError::new(path, format!("unknown variant `{s}`: must be one of {}", names.join(", "))))
            }
        }
        (Kind::UInt { min, max, zero_off }, Value::UInt(n)) => {
            if (*min..=*max).contains(n) || (*zero_off && *n == 0) {
                Ok(())
            } else {
                Err(ConfigError::new(path, range_rule(*min, *max, *zero_off)))
            }
        }
        (Kind::UInt { .. }, Value::Int(n)) => {
            Err(ConfigError::new(path, format!("invalid value: integer `{n}`, expected a non-negative integer")))
        }
        (Kind::Array { item, at_least_one }, Value::Array(items)) => {
            if let (Some(noun), true) = (at_least_one, items.is_empty()) {
                return Err(ConfigError::new(path, format!("at least one {noun} is required")));
            }
            for (i, v) in items.iter().enumerate() {
                check(v, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Kind::Object(table), Value::Object(members)) => check_object(members, table, path),
        _ => Err(invalid_type(path, v, kind)),
    }
}

/// "must be between 10 and 60000", as the schema's bounds say it.
pub fn range_rule(min: u64, max: u64, zero_off: bool) -> String {
    match (zero_off, min) {
        (true, _) => format!("must be 0 or between {min} and {max}"),
        (false, 0) => format!("must be at most {max}"),
        (false, _) => format!("must be between {min} and {max}"),
    }
}

fn check_object(members: &[(String, Value)], table: &Table, path: &str) -> Result<(), ConfigError> {
    for (i, (name, v)) in members.iter().enumerate() {
        let here = join(path, name);
        let Some(field) = table.fields.iter().find(|f| f.name == name) else {
            let names: Vec<&str> = table.fields.iter().map(|f| f.name).filter(|n| *n != SCHEMA_KEY).collect();
            return Err(ConfigError::new(here, format!("unknown field `{name}`, expected one of {}", names.join(", "))));
        };
        if members[..i].iter().any(|(n, _)| n == name) {
            return Err(ConfigError::new(here, format!("duplicate field `{name}`")));
        }
        if !(field.nullable() && *v == Value::Null) {
            check(v, &field.kind, &here)?;
        }
    }
    let present = |name: &str| members.iter().any(|(n, v)| n == name && *v != Value::Null);
    if let Some(missing) = table.fields.iter().find(|f| f.required && !present(f.name)) {
        return Err(ConfigError::new(path, format!("missing field `{}`", missing.name)));
    }
    if let Some(c) = &table.choice {
        let given = c.of.iter().filter(|n| present(n)).count();
        let blame = c.blame.map_or_else(|| path.to_owned(), |b| join(path, b));
        if c.at_least_one && given == 0 {
            return Err(ConfigError::new(blame, c.missing));
        }
        if c.at_most_one && given > 1 {
            return Err(ConfigError::new(blame, c.both));
        }
    }
    Ok(())
}

/// An object of the document after [`check`]: typed reads with the
/// table's defaults. `None` when the section is absent (all defaults).
#[derive(Clone, Copy)]
struct Section<'a> {
    members: &'a [(String, Value)],
    table: &'static Table,
}

impl<'a> Section<'a> {
    fn new(v: Option<&'a Value>, table: &'static Table) -> Section<'a> {
        let members = match v {
            Some(Value::Object(m)) => m.as_slice(),
            _ => &[],
        };
        Section { members, table }
    }

    fn value(&self, name: &str) -> Option<&'a Value> {
        self.members.iter().find(|(n, v)| n == name && *v != Value::Null).map(|(_, v)| v)
    }

    fn default(&self, name: &str) -> DefaultValue {
        debug_assert!(self.table.fields.iter().any(|f| f.name == name), "{name} is not in {}", self.table.name);
        self.table.fields.iter().find(|f| f.name == name).map_or(DefaultValue::None, |f| f.default)
    }

    fn opt_str(&self, name: &str) -> Option<String> {
        match (self.value(name), self.default(name)) {
            (Some(v), _) => v.as_str().map(str::to_owned),
            (None, DefaultValue::Str(s)) => Some(s.to_owned()),
            _ => None,
        }
    }

    fn str(&self, name: &str) -> String {
        self.opt_str(name).unwrap_or_default()
    }

    fn opt_u64(&self, name: &str) -> Option<u64> {
        match (self.value(name), self.default(name)) {
            (Some(v), _) => v.as_u64(),
            (None, DefaultValue::UInt(n)) => Some(n),
            _ => None,
        }
    }

    fn u64(&self, name: &str) -> u64 {
        self.opt_u64(name).unwrap_or_default()
    }

    fn bool(&self, name: &str) -> bool {
        match (self.value(name), self.default(name)) {
            (Some(Value::Bool(b)), _) => *b,
            (None, DefaultValue::Bool(b)) => b,
            _ => false,
        }
    }

    fn items(&self, name: &str) -> &'a [Value] {
        match self.value(name) {
            Some(Value::Array(items)) => items,
            _ => &[],
        }
    }

    fn strs(&self, name: &str) -> Vec<String> {
        match (self.value(name), self.default(name)) {
            (Some(Value::Array(items)), _) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            (None, DefaultValue::Strs(d)) => d.iter().map(|s| (*s).to_owned()).collect(),
            _ => Vec::new(),
        }
    }

    fn section(&self, name: &str, table: &'static Table) -> Section<'a> {
        Section::new(self.value(name), table)
    }

    fn opt_section(&self, name: &str, table: &'static Table) -> Option<Section<'a>> {
        self.value(name).map(|v| Section::new(Some(v), table))
    }
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
    /// Publish each decision as filter state for access logs (the Wasm
    /// script's `set_property` calls: up to three per request).
    pub filter_state: bool,
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
        let doc = json::parse(json).map_err(|e| ConfigError::new("", e))?;
        check(&doc, &Kind::Object(&DOCUMENT), "")?;
        validate(Section::new(Some(&doc), &DOCUMENT), env)
    }
}

/// The semantic half: what the tables cannot say, on a document [`check`] passed.
fn validate(doc: Section, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut keys = Vec::new();
    for (i, k) in doc.items("keys").iter().enumerate() {
        keys.push(build_key(Section::new(Some(k), &KEY), i, env)?);
    }
    let keys = KeySet::new(keys).map_err(|e| ConfigError::new("keys", e.to_string()))?;
    let sources = build_sources(doc.section("sources", &SOURCES))?;
    let identity_headers = build_identity_headers(doc.section("identity_headers", &IDENTITY_HEADERS))?;
    let mut rules = Vec::new();
    for (i, r) in doc.items("rules").iter().enumerate() {
        rules.push(build_rule(Section::new(Some(r), &RULE), i)?);
    }
    let authority = doc.opt_section("authority", &AUTHORITY).map(|a| build_authority(a, env)).transpose()?;
    let needs_authority =
        |field: &str| ConfigError::new(field, "needs the `authority` section: it is what the filter calls");
    let revocation = doc.opt_section("revocation", &REVOCATION);
    let refresh = doc.opt_section("refresh", &REFRESH);
    if authority.is_none() {
        if revocation.is_some() {
            return Err(needs_authority("revocation"));
        }
        if refresh.is_some() {
            return Err(needs_authority("refresh"));
        }
        if let Some(i) = rules.iter().position(|r| r.fresh) {
            return Err(needs_authority(&format!("rules[{i}].fresh")));
        }
    }
    let revocation = revocation.map(build_revocation).transpose()?;
    let refresh = refresh.map(|r| build_refresh(r, &sources)).transpose()?;
    let client_address = doc.section("client_address", &CLIENT_ADDRESS);
    Ok(Config {
        verifier: Verifier {
            keys,
            rules: ClaimRules {
                issuer: doc.str("issuer"),
                audiences: doc.strs("audiences"),
                clock_skew: doc.u64("clock_skew_seconds"),
                allow_never_expiring: doc.bool("allow_never_expiring"),
            },
            allowed_typ: doc.strs("token_types"),
            // Checked ≤ 65536 above.
            max_token_bytes: doc.u64("max_token_bytes") as usize,
        },
        realm: doc.str("realm"),
        admin_scope: doc.str("admin_scope"),
        sources,
        client_address: ClientAddressFrom::from_name(&client_address.str("from")),
        // Checked ≤ 64 above.
        trusted_hops: client_address.u64("trusted_hops") as u32,
        identity_headers,
        forward_token: doc.bool("forward_token"),
        filter_state: doc.bool("filter_state"),
        strict_paths: doc.bool("strict_paths"),
        // Checked ≤ MAX_TOKEN_CACHE_ENTRIES above.
        token_cache_entries: doc.section("token_cache", &TOKEN_CACHE).u64("entries") as usize,
        policy: Policy::new(rules),
        authority,
        revocation,
        refresh,
    })
}

fn build_authority(a: Section, env: &dyn Fn(&str) -> Option<String>) -> Result<Authority, ConfigError> {
    let credential = match (a.opt_str("credential"), a.opt_str("credential_env")) {
        (Some(c), _) => Some(c),
        (None, Some(var)) => match env(&var) {
            Some(c) => {
                Syntax::Credential.check(&c).map_err(|why| ConfigError::new("authority.credential_env", why))?;
                Some(c)
            }
            None => {
                return Err(ConfigError::new(
                    "authority.credential_env",
                    format!("environment variable {var} is not set in the VM"),
                ))
            }
        },
        (None, None) => None,
    };
    Ok(Authority {
        cluster: a.str("cluster"),
        host: a.str("host"),
        timeout_ms: a.u64("timeout_ms"),
        credential: credential.map(EdgeCredential),
    })
}

fn build_revocation(r: Section) -> Result<RevocationPolicy, ConfigError> {
    let sync_interval_ms = r.u64("sync_interval_ms");
    let max_staleness_ms = r.opt_u64("max_staleness_ms").unwrap_or(5 * sync_interval_ms);
    // One poll may be late (a round trip, a worker's reload tick, a
    // lease handover) without every request turning into a 503.
    if max_staleness_ms < 2 * sync_interval_ms {
        return Err(ConfigError::new("revocation.max_staleness_ms", "must be at least twice sync_interval_ms"));
    }
    Ok(RevocationPolicy {
        sync_interval_ms,
        max_staleness_ms,
        on_stale: OnStale::from_name(&r.str("on_stale")),
        wait_ms: r.u64("wait_ms"),
    })
}

fn build_refresh(r: Section, sources: &Sources) -> Result<RefreshPolicy, ConfigError> {
    let cookie = r.opt_str("cookie");
    if let Some(c) = &cookie {
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
    let header = r.opt_section("header", &HEADER_MODE).map(|h| HeaderMode {
        request: h.str("request").to_ascii_lowercase(),
        access_response: h.str("access_response").to_ascii_lowercase(),
        refresh_response: h.str("refresh_response").to_ascii_lowercase(),
    });
    let c = r.section("set_cookie", &SET_COOKIE);
    let same_site = SameSite::from_name(&c.str("same_site"));
    let secure = c.bool("secure");
    if same_site == SameSite::None && !secure {
        return Err(ConfigError::new("refresh.set_cookie.same_site", "None requires secure: true"));
    }
    Ok(RefreshPolicy {
        cookie,
        header,
        refresh_before_seconds: r.u64("refresh_before_seconds"),
        wait_ms: r.u64("wait_ms"),
        client_id: r.str("client_id"),
        share_ms: r.u64("share_ms"),
        set_cookie: SetCookie {
            secure,
            http_only: c.bool("http_only"),
            same_site,
            path: c.str("path"),
            domain: c.opt_str("domain"),
            refresh_max_age_seconds: c.u64("refresh_max_age_seconds"),
        },
    })
}

fn build_key(k: Section, i: usize, env: &dyn Fn(&str) -> Option<String>) -> Result<Key, ConfigError> {
    let field = |name: &str| format!("keys[{i}].{name}");
    let alg = Algorithm::parse(&k.str("alg"))
        .ok_or_else(|| ConfigError::new(field("alg"), "must be one of HS256, HS384, HS512"))?;
    // [`check`] saw exactly one of the two.
    let (encoded, from) = match (k.opt_str("secret"), k.opt_str("secret_env")) {
        (Some(s), _) => (s, field("secret")),
        (None, Some(var)) => match env(&var) {
            Some(s) => (s, field("secret_env")),
            None => {
                return Err(ConfigError::new(
                    field("secret_env"),
                    format!("environment variable {var} is not set in the VM"),
                ))
            }
        },
        (None, None) => return Err(ConfigError::new(field("secret"), "one of secret or secret_env is required")),
    };
    let secret = token::b64::decode(encoded.trim().trim_end_matches('=').as_bytes())
        .ok_or_else(|| ConfigError::new(from.clone(), "is not base64url"))?;
    Key::new(k.opt_str("kid"), alg, &secret).map_err(|e| ConfigError::new(from, e.to_string()))
}

fn build_sources(s: Section) -> Result<Sources, ConfigError> {
    let authorization_header = s.bool("authorization_header");
    let cookie = s.opt_str("cookie");
    let header_pair =
        s.opt_section("header_pair", &HEADER_PAIR).map(|p| (p.str("token").to_ascii_lowercase(), p.str("user").to_ascii_lowercase()));
    let query = s.section("query", &QUERY);
    let mut passthrough_schemes = Vec::new();
    for (i, scheme) in s.strs("passthrough_schemes").into_iter().enumerate() {
        if authorization_header && scheme.eq_ignore_ascii_case("bearer") {
            return Err(ConfigError::new(
                format!("sources.passthrough_schemes[{i}]"),
                "Bearer is read by the filter while authorization_header is on",
            ));
        }
        passthrough_schemes.push(scheme.to_ascii_lowercase());
    }
    let query_enabled = query.bool("enabled");
    if !authorization_header && cookie.is_none() && header_pair.is_none() && !query_enabled {
        return Err(ConfigError::new("sources", "at least one token source must be enabled"));
    }
    Ok(Sources {
        authorization_header,
        cookie,
        header_pair,
        query_enabled,
        query_name: query.str("name"),
        passthrough_schemes,
    })
}

fn build_identity_headers(s: Section) -> Result<IdentityHeaders, ConfigError> {
    let h = IdentityHeaders {
        subject: s.str("subject").to_ascii_lowercase(),
        scope: s.str("scope").to_ascii_lowercase(),
        session: s.str("session").to_ascii_lowercase(),
        version: s.str("version").to_ascii_lowercase(),
    };
    let names = ["subject", "scope", "session", "version"];
    for (i, (name, v)) in names.iter().zip(h.all()).enumerate() {
        if h.all()[..i].contains(&v) {
            return Err(ConfigError::new(format!("identity_headers.{name}"), "repeats another identity header"));
        }
    }
    Ok(h)
}

fn build_rule(r: Section, i: usize) -> Result<Rule, ConfigError> {
    let field = |name: &str| format!("rules[{i}].{name}");
    let ignore_case = r.bool("ignore_case");
    let p = r.section("path", &PATH);
    // [`check`] saw exactly one of the three, each absolute but the regex.
    let path = match (p.opt_str("exact"), p.opt_str("prefix"), p.opt_str("regex")) {
        (Some(e), _, _) => PathMatch::exact(&e),
        (None, Some(pre), _) => PathMatch::prefix(&pre),
        (None, None, re) => PathMatch::regex(&re.unwrap_or_default(), ignore_case)
            .map_err(|e| ConfigError::new(field("path.regex"), format!("invalid regex: {e}")))?,
    };
    let anonymous = r.bool("anonymous");
    let fresh = r.bool("fresh");
    let admin = r.bool("admin");
    let scopes = r.strs("scopes");
    let max_staleness_ms = r.u64("max_staleness_ms");
    if anonymous && fresh {
        return Err(ConfigError::new(field("fresh"), "an anonymous rule has no token to check"));
    }
    if max_staleness_ms > 0 && !fresh {
        return Err(ConfigError::new(field("max_staleness_ms"), "only applies with fresh: true"));
    }
    if anonymous && (admin || !scopes.is_empty()) {
        return Err(ConfigError::new(field("anonymous"), "an anonymous rule cannot also require scopes or admin"));
    }
    Ok(Rule {
        name: r.opt_str("name").unwrap_or_else(|| format!("rules[{i}]")),
        path,
        methods: r.strs("methods").iter().map(|m| m.to_ascii_uppercase()).collect(),
        ignore_case,
        anonymous,
        scopes,
        admin,
        enforce_hosts: r.bool("enforce_hosts"),
        fresh,
        max_staleness_ms,
    })
}

/// RFC 7230 token characters: valid in header names and cookie names.
fn is_token_char_string(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_quoted_string_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// The structural half of [`Config::parse`] alone: what the schema states
/// (names, types, ranges, syntax, choices). The schema agreement test
/// compares it with a JSON Schema validator; `Config::parse` runs it first.
pub fn check_structure(json: &[u8]) -> Result<(), ConfigError> {
    let doc = json::parse(json).map_err(|e| ConfigError::new("", e))?;
    check(&doc, &Kind::Object(&DOCUMENT), "")
}

// ---- the schema ---------------------------------------------------------------

/// The JSON Schema (draft 2020-12) of the document, written from the tables
/// the reader checks: `docs/filter-config.schema.json` is this, pretty-printed
/// (tests/config_schema.rs keeps them equal).
#[cfg(not(target_arch = "wasm32"))]
pub fn schema() -> serde_json::Value {
    use serde_json::{json, Map};
    let mut defs = Map::new();
    let mut root = table_schema(&DOCUMENT, &mut defs);
    if let serde_json::Value::Object(m) = &mut root {
        let mut head = Map::new();
        head.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        head.insert("$id".into(), json!(SCHEMA_ID));
        head.insert("title".into(), json!("Tollgate filter configuration"));
        head.extend(std::mem::take(m));
        head.insert("$defs".into(), serde_json::Value::Object(defs));
        *m = head;
    }
    root
}

/// [`schema`] as the committed file holds it.
#[cfg(not(target_arch = "wasm32"))]
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(not(target_arch = "wasm32"))]
fn table_schema(t: &'static Table, defs: &mut serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    use serde_json::{json, Map, Value as J};
    let mut properties = Map::new();
    for f in t.fields {
        let mut s = kind_schema(&f.kind, defs);
        if f.nullable() {
            s = json!({"anyOf": [s, {"type": "null"}]});
        }
        if let J::Object(m) = &mut s {
            if !f.doc.is_empty() {
                m.insert("description".into(), json!(f.doc));
            }
            let default = match f.default {
                DefaultValue::None => None,
                DefaultValue::Bool(b) => Some(json!(b)),
                DefaultValue::UInt(n) => Some(json!(n)),
                DefaultValue::Str(s) => Some(json!(s)),
                DefaultValue::Strs(v) => Some(json!(v)),
                DefaultValue::Object => Some(json!({})),
            };
            if let Some(d) = default {
                m.insert("default".into(), d);
            }
        }
        properties.insert(f.name.into(), s);
    }
    let required: Vec<&str> = t.fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    let mut s = Map::new();
    s.insert("type".into(), json!("object"));
    if !t.doc.is_empty() {
        s.insert("description".into(), json!(t.doc));
    }
    s.insert("properties".into(), J::Object(properties));
    if !required.is_empty() {
        s.insert("required".into(), json!(required));
    }
    s.insert("additionalProperties".into(), json!(false));
    if let Some(c) = &t.choice {
        // Present means present and not null, as the reader counts it.
        let given = |names: &[&str]| {
            let props: Map<String, J> = names.iter().map(|n| ((*n).to_owned(), json!({"not": {"type": "null"}}))).collect();
            json!({"required": names, "properties": props})
        };
        let each: Vec<J> = c.of.iter().map(|n| given(&[n])).collect();
        match (c.at_least_one, c.at_most_one) {
            (true, true) => {
                s.insert("oneOf".into(), J::Array(each));
            }
            (true, false) => {
                s.insert("anyOf".into(), J::Array(each));
            }
            (false, true) => {
                let mut pairs = Vec::new();
                for (i, a) in c.of.iter().enumerate() {
                    for b in &c.of[i + 1..] {
                        pairs.push(given(&[a, b]));
                    }
                }
                s.insert("not".into(), json!({"anyOf": pairs}));
            }
            (false, false) => {}
        }
    }
    J::Object(s)
}

#[cfg(not(target_arch = "wasm32"))]
fn kind_schema(k: &Kind, defs: &mut serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    use serde_json::json;
    match k {
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Str(syntax) => {
            let mut s = json!({"type": "string"});
            let rule = match syntax {
                Syntax::Any => None,
                Syntax::NonEmpty => Some(("minLength", json!(1))),
                Syntax::Token(_) => Some(("pattern", json!("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"))),
                Syntax::Scope => Some(("pattern", json!("^[^ ]+$"))),
                Syntax::Quotable => Some(("pattern", json!(r"^[ !#-\[\]-~]+$"))),
                Syntax::Method => Some(("pattern", json!("^[A-Za-z]+$"))),
                Syntax::HostName => Some(("pattern", json!("^[!-~]+$"))),
                Syntax::CookiePath => Some(("pattern", json!(r"^/[ !#-:<-\[\]-~]*$"))),
                Syntax::Domain => Some(("pattern", json!("^[A-Za-z0-9.-]+$"))),
                Syntax::AbsolutePath => Some(("pattern", json!("^/"))),
                Syntax::Credential => Some(("pattern", json!(format!("^[!-~]{{{MIN_EDGE_CREDENTIAL_BYTES},}}$")))),
            };
            if let (Some((key, v)), serde_json::Value::Object(m)) = (rule, &mut s) {
                m.insert(key.into(), v);
            }
            s
        }
        Kind::UInt { min, max, zero_off } => {
            let bounds = json!({"minimum": min, "maximum": max});
            if *zero_off {
                json!({"type": "integer", "anyOf": [{"const": 0}, bounds]})
            } else {
                json!({"type": "integer", "minimum": min, "maximum": max})
            }
        }
        Kind::Enum(names) => json!({"enum": names}),
        Kind::Array { item, at_least_one } => {
            let mut s = json!({"type": "array", "items": kind_schema(item, defs)});
            if let (Some(_), serde_json::Value::Object(m)) = (at_least_one, &mut s) {
                m.insert("minItems".into(), json!(1));
            }
            s
        }
        Kind::Object(t) => {
            if !defs.contains_key(t.name) {
                // Placeholder first: a table may (one day) refer to itself.
                defs.insert(t.name.into(), json!({}));
                let s = table_schema(t, defs);
                defs.insert(t.name.into(), s);
            }
            json!({"$ref": format!("#/$defs/{}", t.name)})
        }
    }
}
