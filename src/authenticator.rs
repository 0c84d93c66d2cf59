//! The authenticator: extractor → verifier → matcher, composed into one
//! decision per request. Pure: it reads a [`Request`] and the clock and
//! returns a [`Decision`] for the glue to carry out.

use crate::config::{ClientAddressFrom, Config};
use crate::extract::{self, Credential, ExtractError, Source};
use crate::policy::Rule;
use crate::token::{Claims, TimeCheck, TokenError};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// What the authenticator sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    pub method: &'r str,
    /// `:path`, query string included.
    pub path: &'r str,
    /// Every request header, lower-case names (pseudo-headers may be present).
    pub headers: &'r [(String, String)],
    /// The downstream peer (Envoy's `source.address`).
    pub peer: Option<IpAddr>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream after applying these header operations.
    Allow(Allow),
    /// Answer locally.
    Deny(Denial),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The subject, when a token was presented (None: anonymous).
    pub subject: Option<String>,
    /// Applied in order: spoofed identity headers removed first.
    pub header_ops: Vec<HeaderOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Remove(String),
    Set(String, String),
}

/// Why a request is refused. Each reason maps to one status and RFC 6750
/// error code, and to a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// 401 without an error code (RFC 6750 §3.1).
    NoToken,
    /// 400 `invalid_request`.
    InvalidRequest(ExtractError),
    /// 401 `invalid_token`.
    InvalidToken(TokenError),
    /// 403 `insufficient_scope`: this scope is missing.
    MissingScope(String),
    /// 403 `insufficient_scope`: the admin scope is missing.
    AdminRequired(String),
    /// 403: the token's `hosts` do not include the client address.
    HostNotAllowed,
    /// 403: the token has `hosts` but the client address is unknown.
    ClientAddressUnknown,
    /// 403: the user header of a header pair differs from `sub`.
    UserMismatch,
}

impl DenyReason {
    pub fn status(&self) -> u16 {
        match self {
            DenyReason::NoToken | DenyReason::InvalidToken(_) => 401,
            DenyReason::InvalidRequest(_) => 400,
            _ => 403,
        }
    }

    /// The RFC 6750 error code, `None` for a request without credentials.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            DenyReason::NoToken => None,
            DenyReason::InvalidRequest(_) => Some("invalid_request"),
            DenyReason::InvalidToken(_) => Some("invalid_token"),
            _ => Some("insufficient_scope"),
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            DenyReason::NoToken => "access token required",
            DenyReason::InvalidRequest(e) => e.description(),
            DenyReason::InvalidToken(e) => e.description(),
            DenyReason::MissingScope(_) => "required scope missing",
            DenyReason::AdminRequired(_) => "admin scope required",
            DenyReason::HostNotAllowed => "client address not allowed for this token",
            DenyReason::ClientAddressUnknown => "client address unknown",
            DenyReason::UserMismatch => "token user does not match",
        }
    }

    /// The metric name suffix: `tollgate.denied.<code>`.
    pub fn metric(&self) -> &'static str {
        match self {
            DenyReason::NoToken => "no_token",
            DenyReason::InvalidRequest(_) => "invalid_request",
            DenyReason::InvalidToken(e) => e.code(),
            DenyReason::MissingScope(_) => "missing_scope",
            DenyReason::AdminRequired(_) => "admin_required",
            DenyReason::HostNotAllowed | DenyReason::ClientAddressUnknown => "host_not_allowed",
            DenyReason::UserMismatch => "user_mismatch",
        }
    }

    /// Every metric suffix outside the token errors, for pre-registering counters.
    pub const METRICS: &'static [&'static str] = &[
        "no_token",
        "invalid_request",
        "missing_scope",
        "admin_required",
        "host_not_allowed",
        "user_mismatch",
    ];
}

/// A local answer: status, challenge and body are rendered by [`crate::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
}

/// Decides `req` at time `now` (seconds since the epoch).
pub fn decide(config: &Config, req: &Request<'_>, now: u64) -> Decision {
    let rule = config.policy.rule_for(req.method, req.path);
    let credential = match extract::extract(&config.sources, req.headers, req.path) {
        Ok(c) => c,
        Err(e) => return deny(DenyReason::InvalidRequest(e)),
    };
    let Some(credential) = credential else {
        if rule.anonymous {
            return Decision::Allow(Allow { subject: None, header_ops: scrub(config, req) });
        }
        return deny(DenyReason::NoToken);
    };
    let claims = match config.verifier.verify(credential.token, TimeCheck::At(now)) {
        Ok(c) => c,
        Err(e) => return deny(DenyReason::InvalidToken(e)),
    };
    if let Err(reason) = authorize(config, rule, req, &credential, &claims) {
        return deny(reason);
    }
    let mut header_ops = scrub(config, req);
    if !config.forward_token {
        header_ops.extend(strip_token(config, req, &credential));
    }
    header_ops.extend(identity(config, &claims));
    Decision::Allow(Allow { subject: Some(claims.sub), header_ops })
}

fn deny(reason: DenyReason) -> Decision {
    Decision::Deny(Denial { reason })
}

/// The matcher's requirements, checked against a verified token.
fn authorize(
    config: &Config,
    rule: &Rule,
    req: &Request<'_>,
    credential: &Credential<'_>,
    claims: &Claims,
) -> Result<(), DenyReason> {
    if credential.source == Source::HeaderPair && credential.claimed_user != Some(claims.sub.as_str()) {
        return Err(DenyReason::UserMismatch);
    }
    if rule.admin && !claims.has_scope(&config.admin_scope) {
        return Err(DenyReason::AdminRequired(config.admin_scope.clone()));
    }
    if let Some(missing) = rule.scopes.iter().find(|s| !claims.has_scope(s)) {
        return Err(DenyReason::MissingScope(missing.clone()));
    }
    if let (true, Some(hosts)) = (rule.enforce_hosts, &claims.hosts) {
        if !hosts.iter().any(|h| h == "*") {
            let client = client_address(config, req).ok_or(DenyReason::ClientAddressUnknown)?;
            if !hosts.iter().any(|h| host_matches(h, client)) {
                return Err(DenyReason::HostNotAllowed);
            }
        }
    }
    Ok(())
}

/// The client address per `client_address`: the peer, or the entry of
/// `x-forwarded-for` that sits `trusted_hops` places left of the rightmost.
pub fn client_address(config: &Config, req: &Request<'_>) -> Option<IpAddr> {
    match config.client_address {
        ClientAddressFrom::Peer => req.peer,
        ClientAddressFrom::XForwardedFor => {
            let entries: Vec<&str> = req
                .headers
                .iter()
                .filter(|(n, _)| n == "x-forwarded-for")
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .collect();
            let i = entries.len().checked_sub(1 + config.trusted_hops as usize)?;
            parse_ip(entries[i])
        }
    }
}

/// An address, with or without a port (`10.0.0.1`, `10.0.0.1:443`, `[::1]:80`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// One `hosts` entry: `*`, an address or a CIDR. Unparseable entries match
/// nothing.
fn host_matches(entry: &str, client: IpAddr) -> bool {
    let client = canonical(client);
    if entry == "*" {
        return true;
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return canonical(ip) == client;
    }
    entry.parse::<IpNet>().is_ok_and(|net| net.contains(&client))
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) compares as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Removes identity headers the client sent: only the upstream-facing
/// filter may set them.
fn scrub(config: &Config, req: &Request<'_>) -> Vec<HeaderOp> {
    let ids = config.identity_headers.all();
    let mut ops = Vec::new();
    for (name, _) in req.headers {
        if ids.contains(&name.as_str()) && !ops.iter().any(|o| matches!(o, HeaderOp::Remove(n) if n == name)) {
            ops.push(HeaderOp::Remove(name.clone()));
        }
    }
    ops
}

fn identity(config: &Config, claims: &Claims) -> Vec<HeaderOp> {
    let h = &config.identity_headers;
    let mut ops = vec![HeaderOp::Set(h.subject.clone(), claims.sub.clone())];
    if let Some(scope) = &claims.scope {
        ops.push(HeaderOp::Set(h.scope.clone(), scope.clone()));
    }
    if let Some(sid) = &claims.sid {
        ops.push(HeaderOp::Set(h.session.clone(), sid.clone()));
    }
    ops.push(HeaderOp::Set(h.version.clone(), claims.ver.to_string()));
    ops
}

/// With `forward_token: false`, the token does not travel upstream.
fn strip_token(config: &Config, req: &Request<'_>, credential: &Credential<'_>) -> Vec<HeaderOp> {
    match credential.source {
        Source::AuthorizationHeader => vec![HeaderOp::Remove("authorization".into())],
        Source::HeaderPair => match &config.sources.header_pair {
            Some((token_header, _)) => vec![HeaderOp::Remove(token_header.clone())],
            None => vec![],
        },
        Source::Cookie => {
            let Some(name) = &config.sources.cookie else { return vec![] };
            let joined = req
                .headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            match extract::cookie_header_without(&joined, name) {
                Some(rest) => vec![HeaderOp::Set("cookie".into(), rest)],
                None => vec![HeaderOp::Remove("cookie".into())],
            }
        }
        Source::Query => vec![HeaderOp::Set(
            ":path".into(),
            extract::path_without_param(req.path, &config.sources.query_name),
        )],
    }
}
