//! What the authority reads from a request's body and headers, as plain
//! functions: form bodies (RFC 6749 §3.2 and §6), HTTP Basic client
//! credentials (RFC 6749 §2.3.1), and the admin API's JSON body.
//!
//! No axum, no IO: the fuzz target `authority_input` compiles this file as
//! is (`#[path]`), so its only dependencies are `percent-encoding`,
//! `base64`, `serde` and `serde_json`. `http.rs` maps the errors to answers.
//!
//! Decoding is exact, never lossy: a value whose percent-decoded bytes are
//! not UTF-8 is refused, not read with U+FFFD in place of them, and a
//! Basic credential is decoded as one form value (a raw `&` in it is data,
//! not the end of the value).

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// A form body: each name once.
pub type Form = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// The body is not UTF-8.
    NotUtf8,
    /// A name or value decodes to bytes that are not UTF-8.
    BadEncoding,
    /// A pair with an empty name (`=v`).
    EmptyName,
    /// A name given twice (RFC 6749 §3.2: "MUST NOT be included more than once").
    Repeated(String),
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::NotUtf8 => f.write_str("body is not UTF-8"),
            FormError::BadEncoding => f.write_str("parameter is not valid percent-encoded UTF-8"),
            FormError::EmptyName => f.write_str("malformed form body"),
            // The name is the client's: shown bounded and without controls.
            FormError::Repeated(name) => write!(f, "parameter {} repeated", shown(name)),
        }
    }
}

/// At most 32 characters of client input, controls left out, for an error body.
pub fn shown(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
}

/// One `application/x-www-form-urlencoded` name or value: `+` is a space,
/// `%XX` a byte (a `%` not followed by two hex digits stays as it is, as
/// the URL standard reads it), and the bytes must be UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    let plus_as_space: Vec<u8> = s.bytes().map(|b| if b == b'+' { b' ' } else { b }).collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).ok()
}

/// Parses a form body: `&`-separated pairs (empty pieces skipped), each
/// split at its first `=`, every name at most once.
pub fn parse_form(body: &[u8]) -> Result<Form, FormError> {
    let body = std::str::from_utf8(body).map_err(|_| FormError::NotUtf8)?;
    let mut out = Form::new();
    for piece in body.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let (name, value) = (form_decode(name), form_decode(value));
        let (Some(name), Some(value)) = (name, value) else {
            return Err(FormError::BadEncoding);
        };
        if name.is_empty() {
            return Err(FormError::EmptyName);
        }
        if out.contains_key(&name) {
            return Err(FormError::Repeated(name));
        }
        out.insert(name, value);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    /// Not `<scheme> <credentials>`.
    Malformed,
    /// A scheme other than Basic.
    NotBasic,
    /// The credentials are not base64 of `id:secret`, each form-encoded.
    BadCredentials,
}

impl fmt::Display for BasicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BasicError::Malformed => "malformed authorization header",
            BasicError::NotBasic => "only Basic client authentication is supported",
            BasicError::BadCredentials => "malformed Basic credentials",
        })
    }
}

/// Client credentials from an `Authorization: Basic` value: base64
/// (padded, RFC 4648 §4) of `id:secret`, where each side is form-encoded
/// (RFC 6749 §2.3.1), so a `:` in the id arrives as `%3A`.
pub fn basic_credentials(value: &str) -> Result<(String, String), BasicError> {
    let (scheme, creds) = value.split_once(' ').ok_or(BasicError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::NotBasic);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(BasicError::BadCredentials)?;
    let (id, secret) = raw.split_once(':').ok_or(BasicError::BadCredentials)?;
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(BasicError::BadCredentials),
    }
}

/// The longest error text [`ApiTokenRequest::parse`] answers with.
pub const MAX_ERROR_CHARS: usize = 200;

/// The body of `POST /v1/admin/api-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    /// CIDRs or addresses the token may be used from; `["*"]` for any.
    pub hosts: Vec<String>,
    /// Lifetime in days, or `-1` for never.
    pub days: i64,
    #[serde(default)]
    pub name: Option<String>,
}

impl ApiTokenRequest {
    /// Reads the JSON body: unknown or repeated members are refused, so a
    /// misspelt `scopes` never mints a token without the scope meant. The
    /// error names what failed in serde_json's wording, which may quote a
    /// member name: bounded to [`MAX_ERROR_CHARS`], controls left out.
    /// Only an object: serde's derive would also read a JSON array
    /// positionally (`["bob","",["*"],-1,null]`).
    pub fn parse(body: &[u8]) -> Result<ApiTokenRequest, String> {
        if body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) != Some(&b'{') {
            return Err("body: must be a JSON object".into());
        }
        serde_json::from_slice(body)
            .map_err(|e| format!("body: {e}").chars().filter(|c| !c.is_control()).take(MAX_ERROR_CHARS).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_read_as_the_rfc_says() {
        type Want = Result<Vec<(&'static str, &'static str)>, FormError>;
        let cases: &[(&[u8], Want)] = &[
            (b"", Ok(vec![])),
            (b"a=1&b=2", Ok(vec![("a", "1"), ("b", "2")])),
            (b"a=1&&b=", Ok(vec![("a", "1"), ("b", "")])),
            (b"flag", Ok(vec![("flag", "")])),
            (b"a=x%3Dy=z", Ok(vec![("a", "x=y=z")])),
            (b"a=b+c%2Bd", Ok(vec![("a", "b c+d")])),
            (b"a=100%", Ok(vec![("a", "100%")])),
            (b"a=%zz", Ok(vec![("a", "%zz")])),
            (b"a=%E2%82%AC", Ok(vec![("a", "\u{20ac}")])),
            // A literal U+FFFD is data, not a sign of a decoding failure.
            ("a=\u{FFFD}".as_bytes(), Ok(vec![("a", "\u{FFFD}")])),
            (b"a=%FF", Err(FormError::BadEncoding)),
            (b"%C3=1", Err(FormError::BadEncoding)),
            (b"a=\xff", Err(FormError::NotUtf8)),
            (b"=1", Err(FormError::EmptyName)),
            (b"a=1&a=2", Err(FormError::Repeated("a".into()))),
            (b"a=1&%61=2", Err(FormError::Repeated("a".into()))),
        ];
        for (body, want) in cases {
            let got = parse_form(body);
            let want: Result<Form, FormError> =
                want.clone().map(|v| v.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn basic_credentials_read_as_the_rfc_says() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let ok = |i: &str, s: &str| Ok((i.to_owned(), s.to_owned()));
        type Want = Result<(String, String), BasicError>;
        let cases: Vec<(String, Want)> = vec![
            (format!("Basic {}", b64("demo-client:s3cret")), ok("demo-client", "s3cret")),
            (format!("basic  {}", b64("demo-client:s3cret")), ok("demo-client", "s3cret")),
            (format!("Basic {}", b64("a%3Ab:c:d")), ok("a:b", "c:d")),
            (format!("Basic {}", b64("a+b:c%2Bd")), ok("a b", "c+d")),
            // A raw `&` is part of the value (it once ended it).
            (format!("Basic {}", b64("client&x:secret&y")), ok("client&x", "secret&y")),
            (format!("Basic {}", b64(":")), ok("", "")),
            ("Basic".to_owned(), Err(BasicError::Malformed)),
            (format!("Bearer {}", b64("a:b")), Err(BasicError::NotBasic)),
            (format!("Basic {}", b64("no-colon")), Err(BasicError::BadCredentials)),
            ("Basic YTpi".to_owned(), ok("a", "b")),
            ("Basic YTpiYw".to_owned(), Err(BasicError::BadCredentials)),
            ("Basic !!!!".to_owned(), Err(BasicError::BadCredentials)),
            (format!("Basic {}", b64("a:%FF")), Err(BasicError::BadCredentials)),
        ];
        for (value, want) in cases {
            assert_eq!(basic_credentials(&value), want, "{value}");
        }
    }

    #[test]
    fn the_api_token_body_refuses_what_it_does_not_know() {
        let ok = ApiTokenRequest::parse(br#"{"sub":"bob","hosts":["*"],"days":-1}"#).unwrap();
        assert_eq!(ok, ApiTokenRequest { sub: "bob".into(), scope: String::new(), hosts: vec!["*".into()], days: -1, name: None });
        for (body, names) in [
            (&br#"{"sub":"bob","hosts":["*"],"days":1,"scopes":"admin"}"#[..], "unknown field `scopes`"),
            (br#"{"sub":"bob","sub":"eve","hosts":[],"days":1}"#, "duplicate field `sub`"),
            (br#"{"sub":"bob","hosts":"*","days":1}"#, "invalid type"),
            (br#"{"hosts":[],"days":1}"#, "missing field `sub`"),
            (br#"{"sub":"bob","hosts":[],"days":1.5}"#, "invalid type"),
            (b"[]", "must be a JSON object"),
            (br#"["bob","read",["*"],-1,null]"#, "must be a JSON object"),
            (b"", "must be a JSON object"),
            (b" {", "EOF while parsing"),
        ] {
            let err = ApiTokenRequest::parse(body).unwrap_err();
            assert!(err.contains(names), "{err}");
        }
    }
}
