//! Local answers: status, `WWW-Authenticate` challenge (RFC 6750 §3) and a
//! small JSON body with the same `error` and `error_description`. Nothing
//! from the token is ever echoed.

use crate::authenticator::DenyReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn render(realm: &str, reason: &DenyReason) -> LocalResponse {
    let description = reason.description();
    let mut challenge = format!("Bearer realm=\"{realm}\"");
    let mut body = serde_json::Map::new();
    if let Some(code) = reason.error_code() {
        challenge.push_str(&format!(", error=\"{code}\", error_description=\"{description}\""));
        body.insert("error".into(), code.into());
    }
    if let DenyReason::MissingScope(scope) | DenyReason::AdminRequired(scope) = reason {
        // Scope tokens are validated in config: no quote or backslash inside.
        challenge.push_str(&format!(", scope=\"{scope}\""));
    }
    body.insert("error_description".into(), description.into());
    let mut headers = vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())];
    if reason.status() == 503 {
        // Not a credentials problem: no challenge; try again shortly.
        headers.insert(0, ("retry-after", "1".into()));
    } else {
        headers.insert(0, ("www-authenticate", challenge));
    }
    LocalResponse { status: reason.status(), headers, body: serde_json::Value::Object(body).to_string() }
}
