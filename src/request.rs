//! The request as the upstream will act on it: one canonical view, built
//! once per request before any decision, and the refusals of requests that
//! an upstream could read differently from the edge.
//!
//! Every rule is a question "what would Flask, Express, Tomcat or ASP.NET do
//! with these bytes?":
//!
//! - **Methods** are compared case-insensitively (Werkzeug, Django and Rails
//!   upper-case the method; Envoy's HTTP/2 codec passes `post` through).
//! - **Paths** (with `strict_paths`, the default): upstreams percent-decode
//!   the path before routing, so rules match the decoded path. Spellings that
//!   upstreams resolve differently from one another are refused, not guessed:
//!   an encoded `/` or `\` (one decodes `%2F` before splitting, another
//!   after), a raw `\` (Windows servers read it as `/`), dot segments (resolved
//!   by some, kept by others), `;` parameters (Tomcat and Jetty drop
//!   `;x`), empty segments (`//`: merged by some), control bytes, a `#`,
//!   malformed percent-encoding, a double encoding (`%25`), and a decoded
//!   path that is not UTF-8. Method-override headers (`X-HTTP-Method-Override`
//!   and its spellings) are refused too: an upstream that honours them acts on
//!   a method the edge never matched.
//! - **Header names** are folded the way CGI, WSGI and Rack fold them (ASCII
//!   case, `_` for `-`): identity headers are removed in every spelling, and a
//!   credential header in a `_` spelling, or a user header sent twice, is
//!   refused rather than forwarded beside the checked one.
//!
//! Header values that Tollgate reads must be UTF-8; others are kept lossily
//! for reading only (Tollgate never writes them back).

use crate::config::Config;
use std::fmt;

/// What the decisions see of a request: built by [`RequestView::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// `:method`, ASCII upper-case (what upstreams dispatch on).
    pub method: String,
    /// `:path` as received, query string included.
    pub path: String,
    /// The path rules match: percent-decoded without the query string
    /// (`strict_paths`), or the raw path without the query string.
    pub route: String,
    /// Every request header, lower-case names as Envoy gives them.
    pub headers: Vec<(String, String)>,
}

/// Why a request is refused before its credentials are looked at
/// (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The path is spelled in a way upstreams read differently.
    Path(PathError),
    /// A header is spelled or repeated in a way upstreams read differently.
    Header(HeaderError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not `/...` (nor `*`).
    NotAbsolute,
    /// `%2F` or `%5C`.
    EncodedSeparator,
    /// A raw `\`.
    Backslash,
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// `//` inside the path.
    EmptySegment,
    /// `;` (a path parameter), plain or percent-encoded.
    Parameter,
    /// A control byte, plain or percent-encoded, or a `#`.
    ControlByte,
    /// `%` not followed by two hex digits.
    BadEncoding,
    /// `%25`: a second decoding would give another path.
    DoubleEncoding,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// A letter that case-insensitive routers (Python `re.I`, Java
    /// `equalsIgnoreCase`) fold to ASCII: dotted/dotless I, long s, Kelvin.
    CaseFolding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A header Tollgate reads is not UTF-8.
    NotUtf8,
    /// A credential header in a spelling other than the configured one
    /// (`token_user` for `token-user`).
    Spelling,
    /// The user header of a header pair more than once.
    Repeated,
    /// `X-HTTP-Method-Override` or a sibling, or a `_method` query
    /// parameter (with `strict_paths`).
    MethodOverride,
}

impl RequestError {
    pub fn description(self) -> &'static str {
        match self {
            RequestError::Path(e) => match e {
                PathError::NotAbsolute => "path is not absolute",
                PathError::EncodedSeparator => "path contains an encoded slash or backslash",
                PathError::Backslash => "path contains a backslash",
                PathError::DotSegment => "path contains a dot segment",
                PathError::EmptySegment => "path contains an empty segment",
                PathError::Parameter => "path contains a ; parameter",
                PathError::ControlByte => "path contains a control character or fragment",
                PathError::BadEncoding => "path has malformed percent-encoding",
                PathError::DoubleEncoding => "path contains an encoded percent sign",
                PathError::NotUtf8 => "path is not valid UTF-8",
                PathError::CaseFolding => "path contains a letter that folds to ASCII",
            },
            RequestError::Header(e) => match e {
                HeaderError::NotUtf8 => "credentials header is not valid UTF-8",
                HeaderError::Spelling => "credentials header in an ambiguous spelling",
                HeaderError::Repeated => "user header repeated",
                HeaderError::MethodOverride => "method override not allowed",
            },
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Method-override headers honoured by common frameworks (Express's
/// method-override, Symfony, Spring's HiddenHttpMethodFilter siblings, ASP.NET).
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// A header name as CGI/WSGI/Rack-style servers fold it: ASCII lower case,
/// `_` and `-` the same.
pub fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

impl RequestView {
    /// Builds the view of a request from the headers Envoy hands over
    /// (bytes: HTTP allows obs-text), or refuses it.
    pub fn build(config: &Config, raw: Vec<(String, Vec<u8>)>) -> Result<RequestView, RequestError> {
        let read_by_us = |n: &str| {
            n.starts_with(':')
                || matches!(n, "authorization" | "cookie" | "x-forwarded-for")
                || credential_headers(config).any(|c| same_header(c, n))
        };
        let mut headers = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let value = match String::from_utf8(value) {
                Ok(v) => v,
                Err(_) if read_by_us(&name) => return Err(RequestError::Header(HeaderError::NotUtf8)),
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            headers.push((name, value));
        }
        check_headers(config, &headers)?;
        let pseudo = |n: &str| headers.iter().find(|(h, _)| h == n).map_or("", |(_, v)| v.as_str());
        let method = pseudo(":method").to_ascii_uppercase();
        let path = pseudo(":path").to_owned();
        let (raw_route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        let route = if config.strict_paths {
            if overrides_method(query) {
                return Err(RequestError::Header(HeaderError::MethodOverride));
            }
            canonical_path(raw_route).map_err(RequestError::Path)?
        } else {
            raw_route.to_owned()
        };
        Ok(RequestView { method, path, route, headers })
    }

    /// The view of a request given as method, path and UTF-8 headers (for
    /// hosts that hand over strings, and for tests).
    pub fn from_parts(
        config: &Config,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<RequestView, RequestError> {
        let mut raw = Vec::with_capacity(headers.len() + 2);
        raw.push((":method".to_owned(), method.as_bytes().to_vec()));
        raw.push((":path".to_owned(), path.as_bytes().to_vec()));
        raw.extend(headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())));
        RequestView::build(config, raw)
    }

    /// The first value of header `name` (lower-case), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// The headers that carry credentials, whose spelling must be exact.
fn credential_headers(config: &Config) -> impl Iterator<Item = &str> {
    let pair = config.sources.header_pair.as_ref().map(|(t, u)| [t.as_str(), u.as_str()]);
    let refresh = config.refresh.as_ref().and_then(|r| r.header.as_ref()).map(|h| h.request.as_str());
    pair.into_iter().flatten().chain(refresh)
}

fn check_headers(config: &Config, headers: &[(String, String)]) -> Result<(), RequestError> {
    let err = |e| Err(RequestError::Header(e));
    for (name, _) in headers {
        if credential_headers(config).any(|c| same_header(c, name) && c != name) {
            return err(HeaderError::Spelling);
        }
        if config.strict_paths && METHOD_OVERRIDES.iter().any(|m| same_header(m, name)) {
            return err(HeaderError::MethodOverride);
        }
    }
    if let Some((_, user)) = &config.sources.header_pair {
        if headers.iter().filter(|(n, _)| n == user).count() > 1 {
            return err(HeaderError::Repeated);
        }
    }
    Ok(())
}

/// The path an upstream routes on, percent-decoded, or why upstreams could
/// read it differently. `raw` has no query string.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    if raw == "*" {
        return Ok(raw.to_owned());
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let decoded = match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
                let v = (hex_digit(hex[0]).ok_or(PathError::BadEncoding)? << 4)
                    | hex_digit(hex[1]).ok_or(PathError::BadEncoding)?;
                i += 3;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b'%' => return Err(PathError::DoubleEncoding),
                    _ => v,
                }
            }
            b'\\' => return Err(PathError::Backslash),
            _ => {
                i += 1;
                b
            }
        };
        match decoded {
            b';' => return Err(PathError::Parameter),
            b'#' | 0x00..=0x1f | 0x7f => return Err(PathError::ControlByte),
            _ => out.push(decoded),
        }
    }
    let path = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    if path.contains(['\u{130}', '\u{131}', '\u{17f}', '\u{212a}']) {
        return Err(PathError::CaseFolding);
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(s) = segments.next() {
        match s {
            "." | ".." => return Err(PathError::DotSegment),
            // A trailing slash is one empty segment at the end: allowed.
            "" if segments.peek().is_some() => return Err(PathError::EmptySegment),
            _ => {}
        }
    }
    Ok(path)
}

/// A `_method` query parameter (any case, percent-decoded name): Spring's
/// HiddenHttpMethodFilter, Laravel, Symfony, gorilla and Express's
/// method-override read it as the method.
fn overrides_method(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        percent_decoded(name).map(|b| b.to_ascii_lowercase()).eq(b"_method".iter().copied())
    })
}

/// The bytes of a query-string component, percent- and `+`-decoded as
/// form decoders do (a malformed `%` stays as is), without allocating.
fn percent_decoded(s: &str) -> impl Iterator<Item = u8> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        let hex = |j: usize| b.get(j).copied().and_then(hex_digit);
        let (v, step) = match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => ((h << 4) | l, 3),
            (b'+', _, _) => (b' ', 1),
            _ => (c, 1),
        };
        i += step;
        Some(v)
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn path_spellings_table() {
        use PathError::*;
        // (raw path, canonical path or refusal)
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/admin/users", Ok("/admin/users")),
            ("/%61dmin/users", Ok("/admin/users")),
            ("/caf%C3%A9", Ok("/café")),
            ("/a%20b", Ok("/a b")),
            ("/a.b/.well-known/x..y", Ok("/a.b/.well-known/x..y")),
            ("*", Ok("*")),
            ("admin", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
            ("/admin%2Fusers", Err(EncodedSeparator)),
            ("/admin%2fusers", Err(EncodedSeparator)),
            ("/admin%5Cusers", Err(EncodedSeparator)),
            ("/public/..%2Fadmin/users", Err(EncodedSeparator)),
            ("/admin\\users", Err(Backslash)),
            ("/admin/./users", Err(DotSegment)),
            ("/public/../admin/users", Err(DotSegment)),
            ("/public/%2e%2e/admin/users", Err(DotSegment)),
            ("/public/.%2E/admin", Err(DotSegment)),
            ("/admin/..", Err(DotSegment)),
            ("/.", Err(DotSegment)),
            ("//admin/users", Err(EmptySegment)),
            ("/admin//users", Err(EmptySegment)),
            ("/admin;x/users", Err(Parameter)),
            ("/admin%3Bx/users", Err(Parameter)),
            ("/admin\tx", Err(ControlByte)),
            ("/admin%00", Err(ControlByte)),
            ("/admin%7f", Err(ControlByte)),
            ("/admin%0A/users", Err(ControlByte)),
            ("/admin#frag", Err(ControlByte)),
            ("/admin%zz", Err(BadEncoding)),
            ("/admin%2", Err(BadEncoding)),
            ("/admin%", Err(BadEncoding)),
            ("/admin%252Fusers", Err(DoubleEncoding)),
            ("/%C3%28", Err(NotUtf8)),
            ("/%FF", Err(NotUtf8)),
            ("/adm%C4%B1n/users", Err(CaseFolding)),
            ("/%E2%84%AAey", Err(CaseFolding)),
            ("/adm\u{131}n", Err(CaseFolding)),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_path(raw).as_deref(), want.as_ref().map(|s| *s), "{raw:?}");
        }
    }

    #[test]
    fn header_names_fold_like_cgi() {
        // (a, b, the same to a CGI/WSGI/Rack upstream?)
        let cases = [
            ("x-tollgate-sub", "x-tollgate-sub", true),
            ("x-tollgate-sub", "x_tollgate_sub", true),
            ("x-tollgate-sub", "X-Tollgate_Sub", true),
            ("x-tollgate-sub", "x-tollgate-su", false),
            ("x-tollgate-sub", "x-tollgate-sid", false),
            ("token-user", "token_user", true),
        ];
        for (a, b, same) in cases {
            assert_eq!(same_header(a, b), same, "{a} {b}");
        }
    }
}
