//! The authenticator: extractor → verifier → matcher, composed into one
//! decision per request. Pure: it reads a [`Request`] (the canonical
//! [`RequestView`] plus the peer) and the clock and returns a [`Decision`]
//! for the glue to carry out.

use crate::config::{ClientAddressFrom, Config, OnStale};
use crate::extract::{self, Credential, ExtractError, Source};
use crate::cache::TokenCache;
use crate::policy::Rule;
use crate::protocol;
use std::sync::Arc;
use crate::reason::{ErrorCode, Reason};
use crate::request::{same_header, RequestError, RequestView};
use crate::revocation::{self, Freshness, LiveVersions, RevocationSet};
use crate::token::{Claims, TimeCheck, TokenError};
use std::net::{IpAddr, SocketAddr};

/// What the authenticator sees of a request: the one canonical view every
/// decision reads, and the peer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    pub view: &'r RequestView,
    /// The downstream peer (Envoy's `source.address`).
    pub peer: Peer<'r>,
}

impl<'r> Request<'r> {
    fn headers(&self) -> &'r [(String, String)] {
        &self.view.headers
    }
}

/// The downstream peer. Looking it up costs the glue a host call, so it can
/// be given lazily: it is asked for only when a `hosts` check needs it.
#[derive(Clone, Copy)]
pub enum Peer<'r> {
    Known(Option<IpAddr>),
    Lazy(&'r dyn Fn() -> Option<IpAddr>),
}

impl Peer<'_> {
    pub fn get(&self) -> Option<IpAddr> {
        match self {
            Peer::Known(ip) => *ip,
            Peer::Lazy(lookup) => lookup(),
        }
    }
}

impl std::fmt::Debug for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Peer::Known(ip) => write!(f, "Known({ip:?})"),
            Peer::Lazy(_) => f.write_str("Lazy"),
        }
    }
}

/// What the edge knows besides the request: the clock and what it learned
/// from the authority.
#[derive(Debug, Clone, Copy)]
pub struct Knowledge<'k> {
    pub now_ms: u64,
    /// The synced revocation set (used when `revocation` is configured).
    pub revocations: &'k RevocationSet,
    /// Live answers for `fresh` rules.
    pub live: &'k LiveVersions,
    /// For a request that paused for a live check, [`LiveVersions::mark`]
    /// when it did: the answers after it are its own, used whatever the
    /// rule's `max_staleness_ms`. `None` for a new request.
    pub live_waited_from: Option<u64>,
    /// The worker's cache of verified tokens, if any.
    pub cache: Option<&'k TokenCache>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream after applying these header operations.
    Allow(Allow),
    /// Answer locally.
    Deny(Denial),
    /// Pause; ask the authority for these version keys (`GET /v1/versions`),
    /// record the answer and decide again.
    CheckVersions(Vec<String>),
    /// Pause; refresh (`POST /v1/token`, `grant_type=refresh_token`), then
    /// continue with [`decide_refreshed`] or [`refresh_failed`].
    Refresh(RefreshNeed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshNeed {
    pub refresh_token: String,
    /// The refresh token came in the header-mode request header (API
    /// clients): the new pair goes back in response headers, not cookies.
    pub header_mode: bool,
    /// The access token is still valid (inside `refresh_before_seconds`): if
    /// the authority cannot answer, the request goes on with it.
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The subject, when a token was presented (None: anonymous).
    pub subject: Option<String>,
    /// The token's session (`sid`), for the request's record.
    pub session: Option<String>,
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
    InvalidRequest(InvalidRequest),
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
    /// 401 `invalid_token`: the authority refused the refresh token; the
    /// refresh cookies are cleared.
    RefreshRejected,
    /// 503: the authority is needed and cannot be reached, or the revocation
    /// set is older than allowed (`on_stale: deny`).
    Unavailable(Unavailable),
}

impl DenyReason {
    /// The row of [`crate::reason`]'s table this refusal is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            DenyReason::NoToken => Reason::NoToken,
            DenyReason::InvalidRequest(_) => Reason::InvalidRequest,
            DenyReason::InvalidToken(e) => e.reason(),
            DenyReason::MissingScope(_) => Reason::MissingScope,
            DenyReason::AdminRequired(_) => Reason::AdminRequired,
            DenyReason::HostNotAllowed | DenyReason::ClientAddressUnknown => Reason::HostNotAllowed,
            DenyReason::UserMismatch => Reason::UserMismatch,
            DenyReason::RefreshRejected => Reason::RefreshRejected,
            DenyReason::Unavailable(_) => Reason::Unavailable,
        }
    }

    pub fn status(&self) -> u16 {
        self.reason().status()
    }

    /// The RFC 6750 error code, `None` for a request without credentials.
    pub fn error_code(&self) -> Option<&'static str> {
        self.reason().error_code().map(ErrorCode::as_str)
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
            DenyReason::RefreshRejected => "token expired and refresh token rejected",
            DenyReason::Unavailable(why) => why.description(),
        }
    }
}

/// Why the authority was needed and could not help (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No revocation state was ever learned.
    NotYetKnown,
    /// The revocation state is older than `max_staleness_ms` (`on_stale: deny`).
    Stale,
    /// An expired token's refresh could not be made.
    Refresh,
    /// A `fresh` rule's live check could not be made.
    LiveCheck,
    /// The authority's answers did not settle the request.
    Authority,
}

impl Unavailable {
    pub fn description(self) -> &'static str {
        match self {
            Unavailable::NotYetKnown => "revocation state not yet known",
            Unavailable::Stale => "revocation state stale",
            Unavailable::Refresh => "authority unavailable for refresh",
            Unavailable::LiveCheck => "authority unavailable for live check",
            Unavailable::Authority => "authority unavailable",
        }
    }
}

/// Why a request is malformed (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRequest {
    /// Its path, method or headers are spelled ambiguously.
    Request(RequestError),
    /// Its credentials are ambiguous or malformed.
    Credential(ExtractError),
}

impl InvalidRequest {
    pub fn description(self) -> &'static str {
        match self {
            InvalidRequest::Request(e) => e.description(),
            InvalidRequest::Credential(e) => e.description(),
        }
    }
}

impl From<RequestError> for DenyReason {
    fn from(e: RequestError) -> DenyReason {
        DenyReason::InvalidRequest(InvalidRequest::Request(e))
    }
}

impl From<ExtractError> for DenyReason {
    fn from(e: ExtractError) -> DenyReason {
        DenyReason::InvalidRequest(InvalidRequest::Credential(e))
    }
}

/// A local answer: status, challenge and body are rendered by [`crate::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
}

/// Decides `req` with what the edge knows.
pub fn decide(config: &Config, req: &Request<'_>, k: &Knowledge<'_>) -> Decision {
    decide_with(config, req, k, None)
}

/// Decides again after a refresh, with the new access token in place of the
/// one the request carried. It is forwarded upstream in the old one's place.
pub fn decide_refreshed(config: &Config, req: &Request<'_>, k: &Knowledge<'_>, access_token: &str) -> Decision {
    decide_with(config, req, k, Some(access_token))
}

/// The refresh did not happen. `Rejected`: 401 (and the glue clears the
/// cookies). `Unavailable`: an optional refresh goes on with the current,
/// still valid token; a needed one is a 503.
pub fn refresh_failed(config: &Config, req: &Request<'_>, k: &Knowledge<'_>, need: &RefreshNeed, rejected: bool) -> Decision {
    match (rejected, need.optional) {
        (true, _) => deny(DenyReason::RefreshRejected),
        (false, true) => decide_with_refresh(config, req, k, None, false),
        (false, false) => deny(DenyReason::Unavailable(Unavailable::Refresh)),
    }
}

fn decide_with(config: &Config, req: &Request<'_>, k: &Knowledge<'_>, replacement: Option<&str>) -> Decision {
    decide_with_refresh(config, req, k, replacement, replacement.is_none())
}

fn decide_with_refresh(
    config: &Config,
    req: &Request<'_>,
    k: &Knowledge<'_>,
    replacement: Option<&str>,
    may_refresh: bool,
) -> Decision {
    let now = k.now_ms / 1000;
    let rule = config.policy.rule_for(&req.view.method, &req.view.route);
    let extracted = match extract::extract(&config.sources, req.headers(), &req.view.path) {
        Ok(c) => c,
        Err(e) => return deny(e.into()),
    };
    let refresh = if may_refresh { refresh_token(config, req) } else { None };
    let credential = match (replacement, extracted) {
        (Some(token), found) => Credential {
            token,
            // Where the new token goes upstream: where the old one was; with
            // no old one, where a client of that refresh mode sends it (a
            // header-mode client in `Authorization`, a browser in the cookie).
            source: match found.as_ref() {
                Some(c) => c.source,
                None if refresh_token(config, req).is_some_and(|(_, header_mode)| header_mode) => Source::AuthorizationHeader,
                None => Source::Cookie,
            },
            claimed_user: found.and_then(|c| c.claimed_user),
        },
        (None, Some(c)) => c,
        (None, None) => {
            if let Some((refresh_token, header_mode)) = refresh {
                // The browser dropped the expired access cookie; the refresh
                // cookie is still there. On an anonymous route the refresh is
                // optional: with the authority unavailable the request goes on
                // anonymously instead of failing a page anyone may see.
                return Decision::Refresh(RefreshNeed {
                    refresh_token: refresh_token.into(),
                    header_mode,
                    optional: rule.anonymous,
                });
            }
            if rule.anonymous {
                let mut header_ops = Vec::new();
                scrub(config, req, None, None, &mut header_ops);
                token_ops(config, req, None, None, &mut header_ops);
                return Decision::Allow(Allow { subject: None, session: None, header_ops });
            }
            return deny(DenyReason::NoToken);
        }
    };
    let claims = match verify(config, k, credential.token, now) {
        Ok(c) => c,
        Err(TokenError::Expired) if refresh.is_some() => {
            let (refresh_token, header_mode) = refresh.unwrap_or_default();
            return Decision::Refresh(RefreshNeed { refresh_token: refresh_token.into(), header_mode, optional: false });
        }
        Err(e) => return deny(DenyReason::InvalidToken(e)),
    };
    if let Err(reason) = check_versions(config, rule, &claims, k) {
        return match reason {
            Versions::Deny(r) => deny(r),
            Versions::Ask(keys) => Decision::CheckVersions(keys),
        };
    }
    if let (Some(policy), Some((refresh_token, header_mode)), Some(exp)) = (&config.refresh, refresh, claims.exp) {
        if exp.saturating_sub(now) <= policy.refresh_before_seconds {
            return Decision::Refresh(RefreshNeed { refresh_token: refresh_token.into(), header_mode, optional: true });
        }
    }
    if let Err(reason) = authorize(config, rule, req, &credential, &claims) {
        return deny(reason);
    }
    // One vector, one allocation: removals, the token's own headers, then
    // the identity.
    let mut header_ops = Vec::with_capacity(6);
    scrub(config, req, Some(credential.source), Some(&claims), &mut header_ops);
    token_ops(config, req, Some(&credential), replacement, &mut header_ops);
    identity(config, &claims, &mut header_ops);
    Decision::Allow(Allow { subject: Some(claims.sub.clone()), session: claims.sid.clone(), header_ops })
}

/// The token's claims, through the worker's cache of verified tokens when
/// there is one: a hit skips base64, JSON and the MAC, never the clock.
fn verify(config: &Config, k: &Knowledge<'_>, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
    let full = || config.verifier.verify(token, TimeCheck::At(now));
    match k.cache {
        Some(cache) => {
            let claims = cache.get_or_verify(token, full, now)?;
            config.verifier.rules.check_time(&claims, now)?;
            Ok(claims)
        }
        None => full().map(Arc::new),
    }
}

/// The refresh token the request carries, when refresh is configured, and
/// whether it came in the header-mode header.
fn refresh_token<'r>(config: &Config, req: &Request<'r>) -> Option<(&'r str, bool)> {
    let policy = config.refresh.as_ref()?;
    let from_cookie = policy.cookie.as_deref().and_then(|name| {
        req.headers()
            .iter()
            .filter(|(n, _)| n == "cookie")
            .find_map(|(_, v)| extract::cookie_values(v, name).find(|t| !t.is_empty()))
    });
    let from_header = policy.header.as_ref().and_then(|h| {
        req.headers().iter().find(|(n, _)| *n == h.request).map(|(_, v)| v.trim()).filter(|t| !t.is_empty())
    });
    from_cookie.map(|t| (t, false)).or(from_header.map(|t| (t, true)))
}

enum Versions {
    Deny(DenyReason),
    Ask(Vec<String>),
}

/// Revocation: the synced set (under the staleness policy), then, for
/// `fresh` rules, a live answer no older than the rule allows.
fn check_versions(config: &Config, rule: &Rule, claims: &Claims, k: &Knowledge<'_>) -> Result<(), Versions> {
    if let Some(policy) = &config.revocation {
        match k.revocations.freshness(k.now_ms, policy.max_staleness_ms) {
            Freshness::Fresh => {}
            // Whatever `on_stale` says: a version never learned is never read as 0.
            Freshness::NeverSynced => {
                return Err(Versions::Deny(DenyReason::Unavailable(Unavailable::NotYetKnown)))
            }
            Freshness::Stale(_) if policy.on_stale == OnStale::Allow => {}
            Freshness::Stale(_) => return Err(Versions::Deny(DenyReason::Unavailable(Unavailable::Stale))),
        }
        if k.revocations.is_revoked(&claims.sub, claims.sid.as_deref(), claims.ver) {
            return Err(Versions::Deny(DenyReason::InvalidToken(TokenError::Revoked)));
        }
    }
    if rule.fresh {
        let keys = revocation::version_keys(&claims.sub, claims.sid.as_deref());
        let mut missing = Vec::new();
        for key in keys {
            match k.live.get(&key, k.now_ms, rule.max_staleness_ms, k.live_waited_from) {
                Some(min) if claims.ver < min => {
                    return Err(Versions::Deny(DenyReason::InvalidToken(TokenError::Revoked)))
                }
                Some(_) => {}
                None => missing.push(key),
            }
        }
        if !missing.is_empty() {
            return Err(Versions::Ask(missing));
        }
    }
    Ok(())
}

/// What the upstream gets of the credentials: the access token where it
/// was (the new one after a refresh), or nothing with `forward_token: false`;
/// never a refresh token.
fn token_ops(config: &Config, req: &Request<'_>, credential: Option<&Credential<'_>>, replacement: Option<&str>, ops: &mut Vec<HeaderOp>) {
    let refresh = config.refresh.as_ref();
    if let Some(h) = refresh.and_then(|r| r.header.as_ref()) {
        if req.headers().iter().any(|(n, _)| *n == h.request) {
            ops.push(HeaderOp::Remove(h.request.clone()));
        }
    }
    let source = credential.map(|c| c.source);
    match (source, config.forward_token, replacement) {
        (Some(Source::AuthorizationHeader), false, _) => ops.push(HeaderOp::Remove("authorization".into())),
        (Some(Source::HeaderPair), false, _) => {
            if let Some((token_header, _)) = &config.sources.header_pair {
                ops.push(HeaderOp::Remove(token_header.clone()));
            }
        }
        (Some(Source::Query), false, _) => ops.push(HeaderOp::Set(
            ":path".into(),
            extract::path_without_param(&req.view.path, &config.sources.query_name),
        )),
        (Some(Source::AuthorizationHeader | Source::HeaderPair | Source::Query), true, Some(token)) => {
            ops.push(HeaderOp::Set("authorization".into(), format!("Bearer {token}")));
        }
        _ => {}
    }
    // The Cookie header, rebuilt once: without the refresh cookie, and with
    // the access cookie dropped or replaced as above.
    let access = config.sources.cookie.as_deref();
    let replace_cookie = replacement.filter(|_| config.forward_token && matches!(source, Some(Source::Cookie)));
    let rewrites = refresh.is_some_and(|r| r.cookie.is_some()) || (access.is_some() && (!config.forward_token || replace_cookie.is_some()));
    if !rewrites {
        return; // the cookies go upstream as they came
    }
    let cookies: Vec<&str> = req.headers().iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
    let mut rest = Some(cookies.join("; "));
    if let Some(rc) = refresh.and_then(|r| r.cookie.as_deref()) {
        rest = rest.and_then(|c| extract::cookie_header_without(&c, rc));
    }
    if let (Some(name), true) = (access, !config.forward_token || replace_cookie.is_some()) {
        rest = rest.and_then(|c| extract::cookie_header_without(&c, name));
    }
    if let (Some(name), Some(token)) = (access, replace_cookie) {
        rest = Some(match rest {
            Some(r) if !r.is_empty() => format!("{r}; {name}={token}"),
            _ => format!("{name}={token}"),
        });
    }
    // Only rewrite what changed: values are never re-joined for nothing.
    let unchanged = rest.as_deref() == Some(cookies.join("; ").as_str());
    let no_cookies_at_all = cookies.is_empty() && rest.as_deref().is_none_or(str::is_empty);
    if !unchanged && !no_cookies_at_all {
        ops.push(match rest {
            Some(r) if !r.is_empty() => HeaderOp::Set("cookie".into(), r),
            _ => HeaderOp::Remove("cookie".into()),
        });
    }
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
            if !protocol::host_allowed(hosts, client) {
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
        ClientAddressFrom::Peer => req.peer.get(),
        ClientAddressFrom::XForwardedFor => {
            let entries: Vec<&str> = req
                .headers()
                .iter()
                .filter(|(n, _)| n == "x-forwarded-for")
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .collect();
            let hops = usize::try_from(config.trusted_hops).ok()?.checked_add(1)?;
            let i = entries.len().checked_sub(hops)?;
            parse_ip(entries[i])
        }
    }
}

/// An address, with or without a port (`10.0.0.1`, `10.0.0.1:443`, `[::1]:80`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Removes identity headers the client sent, in every spelling an upstream
/// may fold into the same name (`x_tollgate_sub`): only the filter may set
/// them. The user header of a header pair is an identity too: it goes
/// upstream only when the token came from the pair, where it was checked
/// to equal `sub`.
///
/// A spoofed header sent once, under the very name the filter then sets
/// (`identity`), is not removed first: the set replaces it (proxy-wasm's
/// `replace_header_map_value` and the dynamic-module `set_header` are
/// Envoy's `setCopy`, which replaces the first value of a name and keeps any
/// others, so a name sent twice is removed first).
fn scrub(config: &Config, req: &Request<'_>, source: Option<Source>, claims: Option<&Claims>, ops: &mut Vec<HeaderOp>) {
    let ids = config.identity_headers.all();
    let unchecked_user = config
        .sources
        .header_pair
        .as_ref()
        .map(|(_, user)| user.as_str())
        .filter(|_| source != Some(Source::HeaderPair));
    let set = |name: &str| claims.is_some_and(|c| identity_names(config, c).any(|n| n == name));
    for (name, _) in req.headers() {
        let spoofed = ids.iter().chain(unchecked_user.iter()).any(|id| same_header(id, name));
        if !spoofed || ops.iter().any(|o| matches!(o, HeaderOp::Remove(n) if n == name)) {
            continue;
        }
        let replaced = set(name) && req.headers().iter().filter(|(n, _)| n == name).count() == 1;
        if !replaced {
            ops.push(HeaderOp::Remove(name.clone()));
        }
    }
}

/// The identity headers the filter sets for `claims` (see [`identity`]).
fn identity_names<'c>(config: &'c Config, claims: &Claims) -> impl Iterator<Item = &'c str> {
    let h = &config.identity_headers;
    let optional = [(claims.scope.is_some(), h.scope.as_str()), (claims.sid.is_some(), h.session.as_str())];
    [h.subject.as_str()].into_iter().chain(optional.into_iter().filter(|(on, _)| *on).map(|(_, n)| n)).chain([h.version.as_str()])
}

fn identity(config: &Config, claims: &Claims, ops: &mut Vec<HeaderOp>) {
    let h = &config.identity_headers;
    ops.push(HeaderOp::Set(h.subject.clone(), claims.sub.clone()));
    if let Some(scope) = &claims.scope {
        ops.push(HeaderOp::Set(h.scope.clone(), scope.clone()));
    }
    if let Some(sid) = &claims.sid {
        ops.push(HeaderOp::Set(h.session.clone(), sid.clone()));
    }
    ops.push(HeaderOp::Set(h.version.clone(), claims.ver.to_string()));
}

