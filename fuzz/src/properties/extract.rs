//! The extractor on arbitrary header lists and paths.

use super::{ensure, Check};
use tollgate::config::Sources;
use tollgate::extract::{cookie_header_without, cookie_values, extract, path_without_param, Credential, Source};

/// Whether `inner` is a slice of `outer` (the same memory, not equal text).
fn within(inner: &str, outer: &str) -> bool {
    let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

/// The scheme of one `Authorization` list element, as RFC 9110 reads it.
fn scheme(element: &str) -> &str {
    let e = element.trim_matches(|c| c == ' ' || c == '\t');
    e.split(' ').next().unwrap_or("")
}

/// - The answer is the same every time and in the reverse header order
///   (same token, or a refusal both ways): which header comes first never
///   decides which token is checked;
/// - a credential is a non-empty slice of a header value or of the path,
///   from a source the configuration enables, spelled as that source
///   allows (a bearer `b64token`; a cookie value without `;`; a query
///   value without `&`); only a header pair carries a claimed user, and it
///   is the (first) user header's value;
/// - no credential while an `Authorization` header is present means every
///   element of it is a pass-through scheme: a value Tollgate cannot read
///   is refused, never forwarded beside an unchecked request;
/// - the token removers leave nothing behind: `cookie_header_without`
///   leaves no cookie of that name, `path_without_param` no query
///   parameter of that name.
pub fn check_extract(sources: &Sources, headers: &[(String, String)], path: &str) -> Check {
    let got = extract(sources, headers, path);
    ensure!(got == extract(sources, headers, path), "extract answered twice differently");
    let reversed: Vec<(String, String)> = headers.iter().rev().cloned().collect();
    let back = extract(sources, &reversed, path);
    let token = |r: &Result<Option<Credential>, _>| r.as_ref().ok().map(|c| c.as_ref().map(|c| c.token.to_owned()));
    ensure!(token(&got) == token(&back), "header order decides: {got:?} forwards, {back:?} reversed");

    match &got {
        Ok(Some(c)) => check_credential(sources, headers, path, c)?,
        Ok(None) => {
            for (_, value) in headers.iter().filter(|(n, _)| n == "authorization") {
                for element in value.split(',') {
                    let s = scheme(element);
                    ensure!(
                        sources.passthrough_schemes.iter().any(|p| p.eq_ignore_ascii_case(s)),
                        "no credential, yet Authorization element {element:?} (scheme {s:?}) is not a pass-through scheme"
                    );
                }
            }
        }
        Err(_) => {}
    }

    for (name, value) in headers {
        if name != "cookie" {
            continue;
        }
        if let Some(c) = &sources.cookie {
            if let Some(rest) = cookie_header_without(value, c) {
                ensure!(cookie_values(&rest, c).next().is_none(), "cookie {c:?} survives its removal from {value:?}: {rest:?}");
                ensure!(!rest.is_empty(), "cookie_header_without returned an empty header");
            }
        }
    }
    let stripped = path_without_param(path, &sources.query_name);
    let query_only = Sources {
        authorization_header: false,
        cookie: None,
        header_pair: None,
        query_enabled: true,
        query_name: sources.query_name.clone(),
        passthrough_schemes: Vec::new(),
    };
    let left = extract(&query_only, &[], &stripped);
    ensure!(left == Ok(None), "{:?} left {left:?} in {stripped:?} (from {path:?})", sources.query_name);
    ensure!(
        path.split_once('?').map_or(path, |(p, _)| p) == stripped.split_once('?').map_or(stripped.as_str(), |(p, _)| p),
        "path_without_param changed the path itself: {path:?} -> {stripped:?}"
    );
    Ok(())
}

fn check_credential(sources: &Sources, headers: &[(String, String)], path: &str, c: &Credential) -> Check {
    ensure!(!c.token.is_empty(), "an empty token was extracted");
    ensure!(c.claimed_user.is_some() == (c.source == Source::HeaderPair), "claimed user {:?} from {:?}", c.claimed_user, c.source);
    fn named<'h>(headers: &'h [(String, String)], n: &str) -> Vec<&'h str> {
        headers.iter().filter(|(h, _)| h == n).map(|(_, v)| v.as_str()).collect()
    }
    match c.source {
        Source::AuthorizationHeader => {
            ensure!(sources.authorization_header, "a bearer token while authorization_header is off");
            ensure!(named(headers, "authorization").into_iter().any(|v| within(c.token, v)), "the bearer token is not in an Authorization header");
            let body = c.token.trim_end_matches('=');
            ensure!(
                !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "bearer token {:?} is not a b64token",
                c.token
            );
        }
        Source::Cookie => {
            let name = sources.cookie.as_deref().ok_or("a cookie token while the cookie source is off")?;
            ensure!(named(headers, "cookie").into_iter().any(|v| within(c.token, v) && cookie_values(v, name).any(|t| t == c.token)), "the cookie token is not a value of cookie {name:?}");
            ensure!(!c.token.contains(';'), "cookie token {:?} contains ;", c.token);
        }
        Source::HeaderPair => {
            let (token_header, user_header) = sources.header_pair.as_ref().ok_or("a header-pair token while the pair is off")?;
            ensure!(named(headers, token_header).into_iter().any(|v| within(c.token, v) && v.trim() == c.token), "the pair token is not the trimmed {token_header:?} header");
            let user = named(headers, user_header).first().copied().unwrap_or("");
            ensure!(c.claimed_user == Some(user), "claimed user {:?}, first {user_header:?} header {user:?}", c.claimed_user);
        }
        Source::Query => {
            ensure!(sources.query_enabled, "a query token while query tokens are off");
            let query = path.split_once('?').map(|(_, q)| q).ok_or("a query token in a path without a query")?;
            ensure!(within(c.token, query), "the query token is not in the query");
            ensure!(!c.token.contains('&'), "query token {:?} contains &", c.token);
        }
    }
    Ok(())
}
