//! Local answers: status, `WWW-Authenticate` challenge (RFC 6750 §3) and a
//! small JSON body with the same `error` and `error_description`. Nothing
//! from the token is ever echoed.

use crate::authenticator::DenyReason;
use crate::config::{Config, RefreshPolicy};
use crate::refresh::Tokens;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn render(realm: &str, reason: &DenyReason) -> LocalResponse {
    let description = reason.description();
    let mut challenge = format!("Bearer realm=\"{realm}\"");
    let mut body = String::new();
    let mut members = crate::token::json::ObjectWriter::new(&mut body);
    if let Some(code) = reason.error_code() {
        challenge.push_str(&format!(", error=\"{code}\", error_description=\"{description}\""));
        members.str("error", code);
    }
    if let DenyReason::MissingScope(scope) | DenyReason::AdminRequired(scope) = reason {
        // Scope tokens are validated in config: no quote or backslash inside.
        challenge.push_str(&format!(", scope=\"{scope}\""));
    }
    members.str("error_description", description);
    members.end();
    let mut headers = vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())];
    if reason.status() == 503 {
        // Not a credentials problem: no challenge; try again shortly.
        headers.insert(0, ("retry-after", "1".into()));
    } else {
        headers.insert(0, ("www-authenticate", challenge));
    }
    LocalResponse { status: reason.status(), headers, body }
}

/// What a refreshed request's response carries: `Set-Cookie` for both
/// tokens in cookie mode, the new pair in headers in header mode.
pub fn refreshed_headers(config: &Config, tokens: &Tokens, header_mode: bool) -> Vec<(String, String)> {
    let Some(policy) = &config.refresh else { return Vec::new() };
    if header_mode {
        return match &policy.header {
            Some(h) => vec![
                (h.access_response.clone(), tokens.access_token.clone()),
                (h.refresh_response.clone(), tokens.refresh_token.clone()),
                no_store(),
            ],
            None => Vec::new(),
        };
    }
    let max_age = policy.set_cookie.refresh_max_age_seconds;
    let mut out = Vec::new();
    if let Some(access) = &config.sources.cookie {
        out.push(("set-cookie".into(), cookie(policy, access, &tokens.access_token, max_age)));
    }
    if let Some(refresh) = &policy.cookie {
        out.push(("set-cookie".into(), cookie(policy, refresh, &tokens.refresh_token, max_age)));
    }
    out.push(no_store());
    out
}

/// `Cache-Control` of every response that carries a new token: no cache
/// may keep it (RFC 9111 §5.2.2.5). It replaces what the upstream set.
pub const NO_STORE: &str = "no-store";

fn no_store() -> (String, String) {
    ("cache-control".into(), NO_STORE.into())
}

/// `Set-Cookie` lines that delete both cookies (refresh token rejected).
pub fn cleared_cookies(config: &Config) -> Vec<(String, String)> {
    let Some(policy) = &config.refresh else { return Vec::new() };
    [config.sources.cookie.as_ref(), policy.cookie.as_ref()]
        .into_iter()
        .flatten()
        .map(|name| ("set-cookie".to_string(), cookie(policy, name, "", 0)))
        .collect()
}

fn cookie(policy: &RefreshPolicy, name: &str, value: &str, max_age: u64) -> String {
    let c = &policy.set_cookie;
    let mut s = format!("{name}={value}; Path={}; Max-Age={max_age}", c.path);
    if let Some(d) = &c.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if c.secure {
        s.push_str("; Secure");
    }
    if c.http_only {
        s.push_str("; HttpOnly");
    }
    s.push_str("; SameSite=");
    s.push_str(c.same_site.as_str());
    s
}
