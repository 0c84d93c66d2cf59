//! The HTTP API (axum). Thin: parse and bound the input, call the
//! [`Authority`], map the outcome to status, headers and a JSON body.
// Handlers return early with a ready `Response` as the error value.
#![allow(clippy::result_large_err)]

use crate::edge::{EdgeCredentials, Matched, Refused, EDGE_REALM};
use crate::feed::{CursorError, VersionKey};
use crate::input::{basic_credentials, parse_form, BasicError};
use crate::service::{
    host_allowed, AdminError, ApiTokenError, ApiTokenRequest, Authority, FeedError, OAuthError, MAX_VERSION_KEYS,
};
use axum::body::{to_bytes, Body};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const REALM: &str = "tollgate-authority";

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Authority>,
    pub max_body: usize,
    /// The credential `/v1/revocations`, `/v1/versions` and `/metrics`
    /// require (closed when none is configured).
    pub edge: Arc<EdgeCredentials>,
    /// Proxies in front that append to `X-Forwarded-For` (see [`client_address`]).
    pub trusted_proxy_hops: usize,
    /// The peers (addresses or CIDRs) whose `X-Forwarded-For` is read.
    pub trusted_proxies: Arc<Vec<String>>,
}

/// The client's address. With `trusted_hops` = 0, or when the TCP peer is
/// not one of `trusted` (a client reaching the authority directly), the
/// peer. Otherwise `X-Forwarded-For` (all its lines as one list), where each
/// trusted proxy appended the address it received the request from: walking
/// from the right, the first entry that is not itself a trusted proxy, at
/// most the `trusted_hops`-th. Entries to its left were written by the
/// client and are ignored. The peer when the header has fewer entries (the
/// request did not come through the proxies) or an entry read is not an
/// address. Addresses match `trusted` as at the edge
/// ([`tollgate::protocol::host_matches`]: IPv4-mapped IPv6 as IPv4).
pub fn client_address(headers: &HeaderMap, peer: IpAddr, trusted_hops: usize, trusted: &[String]) -> IpAddr {
    if trusted_hops == 0 || !host_allowed(trusted, peer) {
        return peer;
    }
    let mut entries: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { return peer };
        entries.extend(v.split(',').map(str::trim));
    }
    if entries.len() < trusted_hops {
        return peer;
    }
    for (i, entry) in entries.iter().rev().take(trusted_hops).enumerate() {
        let Some(ip) = entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip())) else {
            return peer;
        };
        if i + 1 == trusted_hops || !host_allowed(trusted, ip) {
            return ip;
        }
    }
    peer
}

/// Checks the edge credential of a request to an edge endpoint: 401
/// `invalid_client` with `WWW-Authenticate: Bearer realm="tollgate-edge"`
/// unless it carries a configured one.
fn edge_auth(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let checked = match (values.next(), values.next()) {
        (_, Some(_)) if state.edge.is_configured() => Err(Refused::Malformed),
        (first, _) => state.edge.check(first.map(HeaderValue::as_bytes)),
    };
    match checked {
        Ok(m) => {
            state.auth.metrics.edge_auth(match m {
                Matched::Current => "current",
                Matched::Previous => "previous",
            });
            Ok(())
        }
        Err(refused) => {
            state.auth.metrics.edge_auth(refused.label());
            tracing::debug!(reason = refused.label(), "edge request refused");
            let mut r = json_error(StatusCode::UNAUTHORIZED, "invalid_client", refused.description());
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{EDGE_REALM}\"")) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            Err(r)
        }
    }
}

/// RFC 6749 §5.1: answers that carry a token are not cached.
fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// One route: a path template (the same syntax as OpenAPI's) and a method.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    endpoint: MethodRouter<AppState>,
}

impl Route {
    fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route { method: Method::GET, path, endpoint: get(handler) }
    }

    fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route { method: Method::POST, path, endpoint: post(handler) }
    }
}

/// Every route the authority serves, in one place: [`router`] is built from
/// it, and authority/tests/openapi.rs checks it against the published
/// document ([`OPENAPI`]) in both directions.
pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/v1/token", token),
        Route::post("/v1/revoke", revoke),
        Route::post("/v1/subjects/{sub}/revoke", revoke_subject),
        Route::post("/v1/sessions/{sid}/revoke", revoke_session),
        Route::get("/v1/revocations", revocations),
        Route::get("/v1/versions", versions),
        Route::post("/v1/api-tokens", create_api_token),
        Route::get("/v1/api-tokens", list_api_tokens),
        Route::post("/v1/api-tokens/{id}/revoke", revoke_api_token),
        Route::get("/healthz", readyz),
        Route::get("/livez", livez),
        Route::get("/readyz", readyz),
        Route::get("/metrics", metrics),
        Route::get("/openapi.json", openapi),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    for route in routes() {
        // Routes of one path with different methods merge.
        r = r.route(route.path, route.endpoint);
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// The API as an OpenAPI 3.1 document (authority/openapi.json), served at
/// `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI).into_response()
}

/// Who a token request was for, as the request log shows it: the grant
/// type and a SHA-256 prefix of the username or client id (people type
/// passwords into username fields; the prefix still correlates repeated
/// attempts). The token endpoint puts it in its response's extensions.
#[derive(Clone, Debug)]
struct TokenRequestLog {
    grant_type: &'static str,
    principal_sha256: Option<String>,
}

/// The longest path a request-log line carries.
const MAX_LOGGED_PATH: usize = 256;

/// One log line per request (target `tollgate_authority::request`): method,
/// path without the query, status, latency; for the token endpoint the
/// grant type and the hashed principal. Never a header, a body, a query
/// string: secrets, tokens and passwords travel only there.
async fn log_request(req: Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path: String = {
        let p = req.uri().path();
        p.get(..MAX_LOGGED_PATH).unwrap_or(p).to_owned()
    };
    let response = next.run(req).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    match response.extensions().get::<TokenRequestLog>() {
        Some(TokenRequestLog { grant_type, principal_sha256: Some(p) }) => tracing::info!(
            target: "tollgate_authority::request", method = %method, path, status, latency_ms, grant_type, principal_sha256 = %p, "request"
        ),
        Some(TokenRequestLog { grant_type, principal_sha256: None }) => tracing::info!(
            target: "tollgate_authority::request", method = %method, path, status, latency_ms, grant_type, "request"
        ),
        None => tracing::info!(target: "tollgate_authority::request", method = %method, path, status, latency_ms, "request"),
    }
    response
}

fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = (status, Json(json!({ "error": code, "error_description": description }))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_error(status, e.code(), e.description());
    match e {
        OAuthError::InvalidClient(_) => {
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        OAuthError::SlowDown { retry_after_secs, .. } => {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        OAuthError::Unavailable(_) => {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

fn admin_error(e: &AdminError) -> Response {
    let (status, code, desc, challenge) = match e {
        AdminError::Missing => (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bearer token required".to_string(),
            format!("Bearer realm=\"{REALM}\""),
        ),
        AdminError::InvalidToken(d) => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            d.clone(),
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{d}\""),
        ),
        AdminError::Forbidden(d) => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            d.clone(),
            format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"{d}\""),
        ),
        AdminError::Unavailable => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "token store unavailable")
        }
    };
    let mut r = json_error(status, code, &desc);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn invalid_request(desc: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "invalid_request", desc)
}

fn store_down() -> Response {
    json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "token store unavailable")
}

/// Reads the body, refusing more than `limit` bytes (413, `invalid_request`).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let too_large = || {
        let mut r = json_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body too large");
        // The rest of the body is not read: the connection cannot be reused.
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        if len.parse::<u64>().map_or(true, |n| n > limit as u64) {
            return Err(too_large());
        }
    }
    to_bytes(body, limit).await.map(|b| b.to_vec()).map_err(|_| too_large())
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

async fn form_request(state: &AppState, headers: &HeaderMap, body: Body) -> Result<HashMap<String, String>, Response> {
    let body = read_body(headers, body, state.max_body).await?;
    if !content_type_is(headers, "application/x-www-form-urlencoded") {
        return Err(invalid_request("content type must be application/x-www-form-urlencoded"));
    }
    parse_form(&body).map_err(|e| invalid_request(&e.to_string()))
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form.
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Result<Option<(String, String)>, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| OAuthError::InvalidClient(BasicError::Malformed.to_string()))?;
            Some(basic_credentials(v).map_err(|e| OAuthError::InvalidClient(e.to_string()))?)
        }
    };
    let form_creds = match (form.get("client_id"), form.get("client_secret")) {
        (Some(i), Some(s)) => Some((i.clone(), s.clone())),
        _ => None,
    };
    if let (Some((id, _)), Some(form_id)) = (&basic, form.get("client_id")) {
        if form_id != id {
            return Err(OAuthError::InvalidRequest("client_id differs from the Basic credentials".into()));
        }
    }
    match (basic, form_creds) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest("use one client authentication method".into())),
        (b, f) => Ok(b.or(f)),
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    match form.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OAuthError::InvalidRequest(format!("{name} missing"))),
    }
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let start = std::time::Instant::now();
    let form = match form_request(&state, &headers, req.into_body()).await {
        Ok(f) => f,
        Err(r) => return token_answered(&state, r, start, &headers, None),
    };
    let auth = &state.auth;
    let client = client_address(&headers, peer.ip(), state.trusted_proxy_hops, &state.trusted_proxies);
    let result = async {
        let grant = required(&form, "grant_type")?;
        let scope = form.get("scope").map(String::as_str);
        match grant {
            "password" => {
                let username = required(&form, "username")?;
                let password = required(&form, "password")?;
                if form.contains_key("client_secret") || headers.contains_key(header::AUTHORIZATION) {
                    return Err(OAuthError::InvalidRequest(
                        "the password grant is for public clients; send no client secret".into(),
                    ));
                }
                auth.password_grant(username, password, scope, form.get("client_id").map(String::as_str), client).await
            }
            "client_credentials" => {
                let Some((id, secret)) = client_auth(&headers, &form)? else {
                    return Err(OAuthError::InvalidClient("client authentication required".into()));
                };
                auth.client_credentials(&id, &secret, scope, client).await
            }
            "refresh_token" => {
                let rt = required(&form, "refresh_token")?;
                auth.refresh(rt, scope).await
            }
            other => {
                auth.metrics.grant("unsupported", "unsupported_grant_type");
                let shown: String = other.chars().take(32).filter(|c| !c.is_control()).collect();
                Err(OAuthError::UnsupportedGrantType(format!("grant_type {shown:?} not supported")))
            }
        }
    }
    .await;
    let response = match result {
        Ok(t) => no_store(Json(t).into_response()),
        Err(e) => oauth_error(&e),
    };
    token_answered(&state, response, start, &headers, Some(&form))
}

/// Records a token-endpoint answer: its latency by grant type, and what
/// the request log shows of it.
fn token_answered(
    state: &AppState,
    mut response: Response,
    start: std::time::Instant,
    headers: &HeaderMap,
    form: Option<&HashMap<String, String>>,
) -> Response {
    let grant_type = crate::metrics::grant_type_label(form.and_then(|f| f.get("grant_type")).map(String::as_str));
    state.auth.metrics.token_request(grant_type, start.elapsed());
    let principal = form.and_then(|f| match grant_type {
        "password" => f.get("username").cloned(),
        "client_credentials" => client_auth(headers, f).ok().flatten().map(|(id, _)| id),
        _ => None,
    });
    let principal_sha256 = principal.map(|p| crate::util::sha256_hex(p.as_bytes())[..12].to_owned());
    response.extensions_mut().insert(TokenRequestLog { grant_type, principal_sha256 });
    response
}

async fn revoke(State(state): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    let form = match form_request(&state, &headers, req.into_body()).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let token = match required(&form, "token") {
        Ok(t) => t,
        Err(e) => return oauth_error(&e),
    };
    match state.auth.revoke_token(token).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(&e),
    }
}

async fn admin(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Result<(), Response> {
    let authz = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    state.auth.authorize_admin(authz, peer.ip()).await.map(|claims| {
        tracing::info!(admin = %claims.sub, "admin request authorized");
    }).map_err(|e| admin_error(&e))
}

async fn bump_response(state: &AppState, key: VersionKey) -> Response {
    match state.auth.revoke_key(&key).await {
        Ok(b) => Json(b).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "bump failed");
            store_down()
        }
    }
}

async fn revoke_subject(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    sub: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(r) = admin(&state, &headers, peer).await {
        return r;
    }
    let sub = match path_param(sub) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match VersionKey::subject(&sub) {
        Ok(k) => bump_response(&state, k).await,
        Err(e) => invalid_request(e.description()),
    }
}

async fn revoke_session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    sid: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(r) = admin(&state, &headers, peer).await {
        return r;
    }
    let sid = match path_param(sid) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match VersionKey::session(&sid) {
        Ok(k) => bump_response(&state, k).await,
        Err(e) => invalid_request(e.description()),
    }
}

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

async fn revocations(State(state): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    if let Err(r) = edge_auth(&state, &headers) {
        return r;
    }
    let q = query_pairs(&req);
    let mut after = None;
    let mut wait = None;
    for (k, v) in &q {
        match k.as_str() {
            "after" if after.is_none() => after = Some(v.as_str()),
            "wait" if wait.is_none() => match parse_wait(v) {
                Some(ms) => wait = Some(ms),
                None => return invalid_request("wait must be a whole number of milliseconds"),
            },
            "after" | "wait" => return invalid_request(&format!("parameter {k} repeated")),
            _ => return invalid_request(&format!("unknown parameter {:?}", k.chars().take(32).collect::<String>())),
        }
    }
    let wait = std::time::Duration::from_millis(wait.unwrap_or(0));
    match state.auth.feed_wait(after.filter(|a| !a.is_empty()), wait).await {
        Ok(page) => {
            let mut r = Json(page).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(FeedError::Cursor(e)) => json_error(StatusCode::GONE, "invalid_cursor", e.description()),
        Err(FeedError::Unavailable) => store_down(),
    }
}

/// `wait`: milliseconds, ASCII digits only; values too large for a `u64`
/// are clamped like every wait beyond `feed_max_wait_ms`.
fn parse_wait(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

async fn versions(State(state): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    if let Err(r) = edge_auth(&state, &headers) {
        return r;
    }
    let mut keys = Vec::new();
    for (k, v) in query_pairs(&req) {
        if k != "key" {
            return invalid_request("only key parameters are accepted");
        }
        match VersionKey::parse(&v) {
            Ok(key) => keys.push(key),
            Err(e) => return invalid_request(e.description()),
        }
    }
    if keys.is_empty() || keys.len() > MAX_VERSION_KEYS {
        return invalid_request(&format!("give 1 to {MAX_VERSION_KEYS} key parameters"));
    }
    match state.auth.versions(&keys).await {
        Ok(mins) => {
            let map: serde_json::Map<String, serde_json::Value> =
                keys.iter().zip(mins).map(|(k, m)| (k.to_string(), m.into())).collect();
            let mut r = Json(json!({ "versions": map })).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => store_down(),
    }
}

async fn create_api_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let body = match read_body(&headers, req.into_body(), state.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = admin(&state, &headers, peer).await {
        return r;
    }
    if !content_type_is(&headers, "application/json") {
        return invalid_request("content type must be application/json");
    }
    let parsed = match ApiTokenRequest::parse(&body) {
        Ok(p) => p,
        Err(e) => return invalid_request(&e),
    };
    match state.auth.create_api_token(&parsed).await {
        Ok(created) => no_store((StatusCode::CREATED, Json(created)).into_response()),
        Err(ApiTokenError::Invalid(d)) => invalid_request(&d),
        Err(ApiTokenError::Unavailable) => store_down(),
    }
}

async fn list_api_tokens(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(r) = admin(&state, &headers, peer).await {
        return r;
    }
    let mut sub = None;
    for (k, v) in query_pairs(&req) {
        match k.as_str() {
            "sub" if sub.is_none() => sub = Some(v),
            _ => return invalid_request("only one sub parameter is accepted"),
        }
    }
    match state.auth.store.list_api_tokens(sub.as_deref()).await {
        Ok(list) => Json(json!({ "api_tokens": list })).into_response(),
        Err(_) => store_down(),
    }
}

async fn revoke_api_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Err(r) = admin(&state, &headers, peer).await {
        return r;
    }
    let id = match path_param(id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.auth.store.api_token(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return json_error(StatusCode::NOT_FOUND, "not_found", "no such API token"),
        Err(_) => return store_down(),
    }
    match VersionKey::session(&id) {
        Ok(k) => bump_response(&state, k).await,
        Err(e) => invalid_request(e.description()),
    }
}

/// Liveness: the process answers. Nothing else is checked, so a store
/// outage never restarts the authority (readiness takes it out of the
/// load balancer instead).
async fn livez() -> Response {
    no_store_json(StatusCode::OK, json!({ "status": "ok" }))
}

/// How long readiness waits for the store.
pub const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness (`/readyz`, and `/healthz` as its alias): the signing keys are
/// loaded and the store answers a read within [`READY_STORE_TIMEOUT`].
async fn readyz(State(state): State<AppState>) -> Response {
    let auth = &state.auth;
    let store = auth.store.kind();
    match tokio::time::timeout(READY_STORE_TIMEOUT, auth.ready()).await {
        Ok(Ok(keys)) => no_store_json(StatusCode::OK, json!({ "status": "ok", "store": store, "keys": keys })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: store unavailable");
            no_store_json(StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "store unavailable", "store": store }))
        }
        Err(_) => {
            tracing::warn!(timeout_ms = READY_STORE_TIMEOUT.as_millis() as u64, "not ready: store did not answer in time");
            no_store_json(StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "store unavailable", "store": store }))
        }
    }
}

fn no_store_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = edge_auth(&state, &headers) {
        return r;
    }
    let mut r = state.auth.metrics.render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    r
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// 405 with a JSON body (axum keeps the `Allow` header).
async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "method not allowed for this endpoint")
}

/// A path parameter that did not decode (not UTF-8, bad percent-encoding):
/// 400 `invalid_request` in JSON instead of axum's plain-text rejection.
fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, Response> {
    p.map(|Path(v)| v).map_err(|_| invalid_request("path parameter is not valid percent-encoded UTF-8"))
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// Held feed requests are released first (they answer with what they last
/// read), so a graceful shutdown never waits for a `wait` to pass.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let waiter = state.auth.feed_waiter.clone();
    let shutdown = async move {
        shutdown.await;
        waiter.close();
    };
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The `healthcheck` subcommand's client: `GET url` over plain HTTP/1.1
/// (no TLS: the authority serves plain HTTP behind its proxy), bounded by
/// `timeout`; the answer's status code. For images without curl.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => {
            (h, p.parse::<u16>().map_err(|_| format!("{url:?}: the port is not a number"))?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("{url:?}: not a valid http URL"));
    }
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("connect {authority}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: tollgate-authority-healthcheck\r\n\r\n");
        conn.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
            let n = conn.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
        let line = std::str::from_utf8(line).unwrap_or_default();
        match line.split(' ').collect::<Vec<_>>()[..] {
            [version, code, ..] if version.starts_with("HTTP/1.") => {
                code.parse::<u16>().map_err(|_| format!("malformed status line {line:?}"))
            }
            _ => Err(format!("not an HTTP answer: {:?}", line.chars().take(64).collect::<String>())),
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

/// Cursor errors as the edge sees them (documented in docs/authority-api.md).
pub fn cursor_status(_: CursorError) -> StatusCode {
    StatusCode::GONE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_parameter_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1500", Some(1500)),
            ("007", Some(7)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("", None),
            ("-1", None),
            ("+5", None),
            ("1.5", None),
            ("1e3", None),
            (" 5", None),
            ("5s", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_wait(v), *want, "{v:?}");
        }
    }

    #[test]
    fn client_address_table() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let proxies: Vec<String> = vec!["10.0.0.0/16".into(), "fd00::/8".into()];
        // (case, peer, X-Forwarded-For headers, trusted hops, client)
        let cases: &[(&str, IpAddr, &[&str], usize, IpAddr)] = &[
            ("no hops: the peer, whatever the header says", peer, &["192.0.2.9"], 0, peer),
            ("one hop: the rightmost entry", peer, &["192.0.2.9"], 1, ip("192.0.2.9")),
            ("one hop: client-written entries to its left are ignored", peer, &["6.6.6.6, 192.0.2.9"], 1, ip("192.0.2.9")),
            ("two hops", peer, &["6.6.6.6, 192.0.2.9, 10.0.1.1"], 2, ip("192.0.2.9")),
            ("two hops, the inner entry not a proxy: it is the client", peer, &["6.6.6.6, 192.0.2.9, 198.51.100.1"], 2, ip("198.51.100.1")),
            ("several header lines form one list", peer, &["6.6.6.6", "192.0.2.9"], 1, ip("192.0.2.9")),
            ("fewer entries than hops: the peer", peer, &["192.0.2.9"], 2, peer),
            ("no header: the peer", peer, &[], 1, peer),
            ("not an address: the peer", peer, &["unknown"], 1, peer),
            ("an address with a port", peer, &["192.0.2.9:5555"], 1, ip("192.0.2.9")),
            ("IPv6", peer, &["2001:db8::7"], 1, ip("2001:db8::7")),
            ("IPv6 with a port", peer, &["[2001:db8::7]:443"], 1, ip("2001:db8::7")),
            ("a trailing empty entry: the peer", peer, &["192.0.2.9,"], 1, peer),
            ("a peer outside the proxies picks nothing", ip("192.0.2.66"), &["6.6.6.6"], 1, ip("192.0.2.66")),
            ("an IPv4-mapped proxy peer is the IPv4 proxy", ip("::ffff:10.0.3.4"), &["192.0.2.9"], 1, ip("192.0.2.9")),
            ("an IPv6 proxy peer", ip("fd00::5"), &["192.0.2.9"], 1, ip("192.0.2.9")),
            ("an IPv6 peer outside the proxies", ip("2001:db8::5"), &["192.0.2.9"], 1, ip("2001:db8::5")),
        ];
        for (case, peer, values, hops, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
            }
            assert_eq!(client_address(&h, *peer, *hops, &proxies), *want, "{case}");
        }
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_bytes(b"192.0.2.9\xff").expect("opaque value"));
        assert_eq!(client_address(&h, peer, 1, &proxies), peer, "not UTF-8: the peer");
        h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.9"));
        assert_eq!(client_address(&h, peer, 1, &[]), peer, "no trusted proxies: the peer");
    }
}
