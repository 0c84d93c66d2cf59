//! The canonical request view: `RequestView::build` and `canonical_path`.

use super::{ensure, Check};
use tollgate::config::Config;
use tollgate::request::{canonical_path, same_header, HeaderError, RequestError, RequestView};

/// The configurations the request view is fuzzed under: strict paths with
/// a header pair and a refresh header (every credential header kind), and
/// the same with `strict_paths: false`.
pub fn configs() -> [Config; 2] {
    let doc = |strict: bool| {
        format!(
            r#"{{"issuer": "https://auth.example", "audiences": ["api"],
                "keys": [{{"kid": "k1", "alg": "HS256", "secret": "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"}}],
                "strict_paths": {strict},
                "sources": {{"cookie": "tg_access", "header_pair": {{"token": "Token-Code", "user": "Token-User"}}}},
                "authority": {{"cluster": "authority"}},
                "refresh": {{"header": {{"request": "X-Refresh-Token"}}}}}}"#
        )
    };
    [true, false].map(|strict| Config::parse(doc(strict).as_bytes(), &|_| None).expect("fixed fuzz configuration"))
}

/// Independent reading of the strict path rules, segment by segment: each
/// raw segment percent-decodes strictly, and no decoded segment holds a
/// `/`, `\`, `%`, `;`, `#` or control byte, nor is `.` or `..`, nor is empty
/// unless it is the last. `Some(decoded path)` when upstreams agree on it.
pub fn model_path(raw: &str) -> Option<String> {
    if raw == "*" {
        return Some(raw.to_owned());
    }
    let rest = raw.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let mut decoded = Vec::new();
        let b = seg.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'%' {
                let hex = std::str::from_utf8(b.get(j + 1..j + 3)?).ok()?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                j += 3;
            } else {
                decoded.push(b[j]);
                j += 1;
            }
        }
        if decoded.iter().any(|&c| matches!(c, b'/' | b'\\' | b'%' | b';' | b'#' | 0..=0x1f | 0x7f)) {
            return None;
        }
        if decoded == b"." || decoded == b".." || (decoded.is_empty() && i + 1 != segments.len()) {
            return None;
        }
        out.push(b'/');
        out.extend(decoded);
    }
    let path = String::from_utf8(out).ok()?;
    // Letters that case-insensitive routers fold to ASCII (İ ı ſ K).
    if path.contains(['\u{130}', '\u{131}', '\u{17f}', '\u{212a}']) {
        return None;
    }
    Some(path)
}

/// Percent-decoding that keeps a malformed escape as it is (a query
/// parameter name, read the way form parsers read it).
fn model_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
        match (b[i], hex) {
            (b'%', Some(h)) => {
                out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an accepted route must never contain: any spelling an upstream
/// could resolve to another path.
pub fn route_is_unambiguous(route: &str) -> Check {
    if route == "*" {
        return Ok(());
    }
    ensure!(route.starts_with('/'), "route {route:?} is not absolute");
    for bad in ["//", "/./", "/../", ";", "\\", "%", "#"] {
        ensure!(!route.contains(bad), "route {route:?} contains {bad:?}");
    }
    ensure!(!route.ends_with("/.") && !route.ends_with("/.."), "route {route:?} ends in a dot segment");
    ensure!(!route.bytes().any(|b| b < 0x20 || b == 0x7f), "route {route:?} contains a control byte");
    Ok(())
}

/// `canonical_path` on any text: the same answer every time; an accepted
/// route is unambiguous ([`route_is_unambiguous`]), agrees with the
/// segment-wise [`model_path`], and is a fixed point (fed back, it comes out
/// unchanged: it never contains `%`); a refusal is one the model makes too.
pub fn check_canonical_path(raw: &str) -> Check {
    let got = canonical_path(raw);
    ensure!(got == canonical_path(raw), "canonical_path answered twice differently");
    let model = model_path(raw);
    match &got {
        Ok(route) => {
            route_is_unambiguous(route)?;
            ensure!(model.as_deref() == Some(route.as_str()), "{raw:?}: canonical {route:?}, the model {model:?}");
            let again = canonical_path(route);
            ensure!(again.as_deref() == Ok(route.as_str()), "{raw:?} -> {route:?} -> {again:?}: not idempotent");
        }
        Err(e) => ensure!(model.is_none(), "{raw:?} refused as {e:?}, the model accepts {model:?}"),
    }
    Ok(())
}

const OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// `RequestView::build` on any header list (values as bytes):
///
/// - the same answer every time;
/// - accepted: the method is the first `:method` upper-cased, `path` the
///   first `:path`, every header kept in order; with `strict_paths` the
///   route is `canonical_path` of the path without its query (so every
///   route property holds), without it the raw path without its query;
/// - refused: for a reason that is really there (a non-UTF-8 value of a
///   header Tollgate reads, a credential header in another spelling, a
///   method override with `strict_paths`, a repeated user header, a path
///   `canonical_path` refuses for the same reason);
/// - and conversely a credential header in another spelling, a repeated
///   user header or (strict) a method override is never accepted.
pub fn check_request_view(config: &Config, raw: &[(String, Vec<u8>)]) -> Check {
    let got = RequestView::build(config, raw.to_vec());
    ensure!(got == RequestView::build(config, raw.to_vec()), "RequestView::build answered twice differently");
    let credential: Vec<&str> = {
        let pair = config.sources.header_pair.as_ref().map(|(t, u)| [t.as_str(), u.as_str()]);
        let refresh = config.refresh.as_ref().and_then(|r| r.header.as_ref()).map(|h| h.request.as_str());
        pair.into_iter().flatten().chain(refresh).collect()
    };
    let misspelled = raw.iter().any(|(n, _)| credential.iter().any(|c| same_header(c, n) && c != n));
    // A method override: a header in any spelling, or a `_method` query
    // parameter (any case, its name percent-decoded).
    let query_override = raw.iter().find(|(n, _)| n == ":path").is_some_and(|(_, p)| {
        let p = String::from_utf8_lossy(p);
        p.split_once('?').is_some_and(|(_, q)| {
            q.split('&').any(|pair| {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                let name = name.replace('+', " ");
                let decoded = model_decode_lossy(&name);
                decoded.eq_ignore_ascii_case("_method")
            })
        })
    });
    let overridden = config.strict_paths
        && (raw.iter().any(|(n, _)| OVERRIDES.iter().any(|o| same_header(o, n))) || query_override);
    let user_twice = config
        .sources
        .header_pair
        .as_ref()
        .is_some_and(|(_, u)| raw.iter().filter(|(n, _)| n == u).count() > 1);
    let first = |name: &str| raw.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());

    match &got {
        Ok(view) => {
            ensure!(!misspelled, "accepted a credential header in another spelling");
            ensure!(!overridden, "accepted a method-override header with strict_paths");
            ensure!(!user_twice, "accepted a repeated user header");
            let method = first(":method").map(|m| String::from_utf8_lossy(m).to_ascii_uppercase()).unwrap_or_default();
            ensure!(view.method == method, "method {:?}, want {method:?}", view.method);
            let path = first(":path").map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
            ensure!(view.path == path, "path {:?}, want {path:?}", view.path);
            ensure!(view.headers.len() == raw.len(), "{} headers kept of {}", view.headers.len(), raw.len());
            for ((n, v), (rn, rv)) in view.headers.iter().zip(raw) {
                ensure!(n == rn && *v == String::from_utf8_lossy(rv), "header {rn:?} changed");
            }
            let raw_route = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            if config.strict_paths {
                route_is_unambiguous(&view.route)?;
                ensure!(canonical_path(raw_route).as_deref() == Ok(view.route.as_str()), "route {:?} is not canonical_path of {raw_route:?}", view.route);
            } else {
                ensure!(view.route == raw_route, "route {:?}, want the raw {raw_route:?}", view.route);
            }
        }
        Err(RequestError::Header(HeaderError::NotUtf8)) => {
            let read = |n: &str| n.starts_with(':') || matches!(n, "authorization" | "cookie" | "x-forwarded-for") || credential.iter().any(|c| same_header(c, n));
            ensure!(
                raw.iter().any(|(n, v)| read(n) && std::str::from_utf8(v).is_err()),
                "NotUtf8, yet every header Tollgate reads is UTF-8"
            );
        }
        Err(RequestError::Header(HeaderError::Spelling)) => ensure!(misspelled, "Spelling without a misspelled credential header"),
        Err(RequestError::Header(HeaderError::MethodOverride)) => ensure!(overridden, "MethodOverride without one"),
        Err(RequestError::Header(HeaderError::Repeated)) => ensure!(user_twice, "Repeated without a repeated user header"),
        Err(RequestError::Path(e)) => {
            ensure!(config.strict_paths, "a path refusal ({e:?}) without strict_paths");
            let path = first(":path").map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
            let raw_route = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            ensure!(canonical_path(raw_route) == Err(*e), "refused as {e:?}, canonical_path says {:?}", canonical_path(raw_route));
        }
    }
    Ok(())
}
