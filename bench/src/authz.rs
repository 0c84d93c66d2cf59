//! `authz`: the ext_authz (HTTP) authorizer, the per-request-callout design
//! (oauth2-proxy, Authorino, Oathkeeper). It verifies the bearer token with
//! Tollgate's own `token::Verifier`, configured from the same
//! envoy/tollgate.json, and answers 200 with the same identity headers the
//! filter sets, or the filter's own 401 (`response::render`). The only
//! difference from Tollgate is where the same code runs: behind a loopback
//! HTTP callout instead of inside Envoy.
//!
//! One thread (a current-thread Tokio runtime), pinned by the harness to
//! Envoy's core: the ext_authz contender gets one core in total, like the
//! others.

use crate::load_config;
use axum::body::Body;
use axum::extract::Request as HttpRequest;
use axum::http::StatusCode;
use axum::response::Response;
use std::path::PathBuf;
use std::sync::Arc;
use tollgate::authenticator::DenyReason;
use tollgate::config::Config;
use tollgate::response;
use tollgate::token::TimeCheck;

pub fn run(listen: String, config: PathBuf) -> Result<(), String> {
    let (config, _) = load_config(&config)?;
    let config = Arc::new(config);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("{listen}: {e}"))?;
        eprintln!("authz: listening on {listen}");
        let app = axum::Router::new().fallback(move |req: HttpRequest| {
            let config = config.clone();
            async move { check(&config, req) }
        });
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

fn check(config: &Config, req: HttpRequest) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let reason = match token {
        None => DenyReason::NoToken,
        Some(token) => match config.verifier.verify(token, TimeCheck::At(crate::now())) {
            Ok(claims) => {
                let h = &config.identity_headers;
                let mut out = Response::builder()
                    .status(StatusCode::OK)
                    .header(h.subject.as_str(), claims.sub.as_str())
                    .header(h.version.as_str(), claims.ver.to_string());
                if let Some(scope) = &claims.scope {
                    out = out.header(h.scope.as_str(), scope.as_str());
                }
                if let Some(sid) = &claims.sid {
                    out = out.header(h.session.as_str(), sid.as_str());
                }
                return out.body(Body::empty()).unwrap_or_default();
            }
            Err(e) => DenyReason::InvalidToken(e),
        },
    };
    let answer = response::render(&config.realm, &reason);
    let mut out = Response::builder().status(answer.status);
    for (n, v) in &answer.headers {
        out = out.header(*n, v.as_str());
    }
    out.body(Body::from(answer.body)).unwrap_or_default()
}
