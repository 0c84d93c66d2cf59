//! The extractor: finds the access token in a request, from the sources the
//! configuration enables, and refuses ambiguous requests (two different
//! tokens, a token in the query when that is off, an `Authorization` header
//! that is not exactly a credential of a scheme the configuration knows).

use crate::config::Sources;
use crate::protocol::{self, BearerError};

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    AuthorizationHeader,
    Cookie,
    HeaderPair,
    Query,
}

/// The token a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<'r> {
    pub token: &'r str,
    pub source: Source,
    /// With [`Source::HeaderPair`]: the user header, which must equal `sub`.
    pub claimed_user: Option<&'r str>,
}

/// A request the extractor refuses (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// Two different tokens, from one source or several.
    MultipleTokens,
    /// An `Authorization` value that is not exactly `Bearer <SP> b64token`
    /// (RFC 6750 §2.1), nor a credential of a pass-through scheme.
    MalformedAuthorization,
    /// An `Authorization` scheme that is neither read by the filter nor
    /// configured to pass through (`sources.passthrough_schemes`).
    UnsupportedScheme,
    /// A token in the query string while query tokens are off (RFC 9700 §2.4).
    QueryNotAllowed,
    /// A configured source is present but empty.
    EmptyToken,
}

impl ExtractError {
    pub fn description(self) -> &'static str {
        match self {
            ExtractError::MultipleTokens => "more than one access token in request",
            ExtractError::MalformedAuthorization => "malformed Authorization header",
            ExtractError::QueryNotAllowed => "access token in query string not allowed",
            ExtractError::EmptyToken => "empty access token",
            ExtractError::UnsupportedScheme => "unsupported Authorization scheme",
        }
    }
}

/// Looks for a token in `headers` (lower-case names, as Envoy gives them)
/// and in the query string of `path`.
pub fn extract<'r>(
    sources: &Sources,
    headers: &'r [(String, String)],
    path: &'r str,
) -> Result<Option<Credential<'r>>, ExtractError> {
    let mut found: Option<Credential<'r>> = None;
    let mut offer = |token: &'r str, source: Source, claimed_user: Option<&'r str>| {
        if token.is_empty() {
            return Err(ExtractError::EmptyToken);
        }
        match &found {
            Some(f) if f.token != token => Err(ExtractError::MultipleTokens),
            Some(_) => Ok(()),
            None => {
                found = Some(Credential { token, source, claimed_user });
                Ok(())
            }
        }
    };

    for (name, value) in headers {
        match name.as_str() {
            "authorization" => {
                // Envoy joins repeated headers with commas; a b64token has none.
                for credentials in value.split(',') {
                    if let Some(token) = bearer(sources, credentials)? {
                        offer(token, Source::AuthorizationHeader, None)?;
                    }
                }
            }
            "cookie" => {
                if let Some(cookie) = &sources.cookie {
                    for token in cookie_values(value, cookie) {
                        offer(token, Source::Cookie, None)?;
                    }
                }
            }
            _ => {
                if let Some((token_header, user_header)) = &sources.header_pair {
                    if name == token_header {
                        let user = headers.iter().find(|(n, _)| n == user_header).map(|(_, v)| v.as_str());
                        offer(value.trim(), Source::HeaderPair, Some(user.unwrap_or("")))?;
                    }
                }
            }
        }
    }

    if let Some((_, query)) = path.split_once('?') {
        for token in query_values(query, &sources.query_name) {
            if !sources.query_enabled {
                return Err(ExtractError::QueryNotAllowed);
            }
            offer(token, Source::Query, None)?;
        }
    }
    Ok(found)
}

/// One credential of an `Authorization` value: exactly `Bearer <SP>
/// b64token` → the token (when the header is a source); a pass-through
/// scheme → `None` (not ours, forwarded as is); anything else is refused,
/// never forwarded as "no credential" while another one is checked.
fn bearer<'v>(sources: &Sources, value: &'v str) -> Result<Option<&'v str>, ExtractError> {
    match protocol::bearer(value) {
        Ok(token) if sources.authorization_header => Ok(Some(token)),
        Err(BearerError::Malformed) => Err(ExtractError::MalformedAuthorization),
        // Another scheme, or Bearer while the header is not a source.
        _ => {
            let value = value.trim_matches(|c| c == ' ' || c == '\t');
            let scheme = value.split_once(' ').map_or(value, |(s, _)| s);
            if sources.passthrough_schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                Ok(None)
            } else {
                Err(ExtractError::UnsupportedScheme)
            }
        }
    }
}

/// The values of every cookie called `name` in one `Cookie` header.
pub fn cookie_values<'a, 'n>(header: &'a str, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    header.split(';').filter_map(move |pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
        })
    })
}

/// `header` without the cookies called `name`; `None` when nothing is left.
pub fn cookie_header_without(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

fn query_values<'a, 'n>(query: &'a str, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    query.split('&').filter_map(move |pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

/// `path` without the query parameters called `name`.
pub fn path_without_param(path: &str, name: &str) -> String {
    match path.split_once('?') {
        None => path.to_owned(),
        Some((p, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| pair.split_once('=').map_or(*pair, |(n, _)| n) != name)
                .collect();
            if kept.is_empty() {
                p.to_owned()
            } else {
                format!("{p}?{}", kept.join("&"))
            }
        }
    }
}
