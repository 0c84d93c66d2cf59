//! The matcher: ordered rules on path and method deciding what a request
//! needs. The first rule that matches wins; no match means "token required".
//!
//! Rules match the request's route (the percent-decoded path without the
//! query string, see [`crate::request`]) the way upstream routers read it:
//! prefixes are segment-aware (`/admin` covers `/admin`, `/admin/` and
//! `/admin/x`, never `/administrator`, like Envoy's `path_separated_prefix`),
//! an exact path also matches with one trailing slash (Express and Flask's
//! strict-slashes redirects route both), `ignore_case` matches the way
//! case-insensitive routers (Express's default, ASP.NET) do, methods compare
//! case-insensitively, and a rule for `GET` covers `HEAD` (every framework
//! answers `HEAD` with the `GET` handler).

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path, with or without one trailing slash.
    Exact(String),
    /// Whole segments: kept without its trailing slash (`/` stays `/`).
    Prefix(String),
    /// Anchored at both ends: the whole path must match.
    Regex(Regex),
}

impl PathMatch {
    /// `ignore_case` compiles the regex case-insensitively.
    pub fn regex(pattern: &str, ignore_case: bool) -> Result<PathMatch, regex_lite::Error> {
        let flags = if ignore_case { "(?i)" } else { "" };
        Regex::new(&format!("{flags}^(?:{pattern})$")).map(PathMatch::Regex)
    }

    pub fn exact(path: &str) -> PathMatch {
        PathMatch::Exact(without_trailing_slash(path).to_owned())
    }

    pub fn prefix(path: &str) -> PathMatch {
        PathMatch::Prefix(without_trailing_slash(path).to_owned())
    }

    fn matches(&self, path: &str, ignore_case: bool) -> bool {
        let eq = |a: &str, b: &str| if ignore_case { a.eq_ignore_ascii_case(b) } else { a == b };
        // Whole segments: what follows the rule's path is nothing, a `/`,
        // or a `.` (a format suffix: Rails, DRF and older Spring route
        // `/admin.json` to `/admin`'s handler).
        let starts = |p: &str| {
            path.len() >= p.len()
                && path.is_char_boundary(p.len())
                && eq(&path[..p.len()], p)
                && matches!(path.as_bytes().get(p.len()), None | Some(b'/') | Some(b'.'))
        };
        match self {
            PathMatch::Exact(p) => {
                let rest = without_trailing_slash(path);
                eq(rest, p) || (starts(p) && !rest[p.len()..].contains('/') && rest.as_bytes().get(p.len()) == Some(&b'.'))
            }
            PathMatch::Prefix(p) if p == "/" => true,
            PathMatch::Prefix(p) => starts(p),
            // Express and Flask serve a route with or without one trailing slash.
            PathMatch::Regex(r) => r.is_match(path) || r.is_match(without_trailing_slash(path)),
        }
    }
}

/// `/a/` → `/a`; `/` stays.
fn without_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    }
}

/// What a matched request needs.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub path: PathMatch,
    /// Upper-case; empty means every method. `GET` covers `HEAD`.
    pub methods: Vec<String>,
    /// Match the path ASCII case-insensitively.
    pub ignore_case: bool,
    /// No credentials → allowed without identity. Credentials that are sent
    /// are still checked (like jwt_authn's `allow_missing`).
    pub anonymous: bool,
    /// Every one of these scopes is required.
    pub scopes: Vec<String>,
    /// The configured admin scope is required.
    pub admin: bool,
    /// A token carrying `hosts` is accepted only from those addresses.
    pub enforce_hosts: bool,
    /// Check the token's versions live at the authority (not only against
    /// the synced revocation set), for admin or dangerous routes.
    pub fresh: bool,
    /// With `fresh`: how old a live answer may be reused, 0 = ask every time.
    pub max_staleness_ms: u64,
}

impl Rule {
    /// `method` as the request has it (any case); `path` the route.
    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self.methods.is_empty()
            || self.methods.iter().any(|m| {
                m.eq_ignore_ascii_case(method) || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            });
        method_ok && self.path.matches(path, self.ignore_case)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    fallback: Rule,
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy {
            rules,
            fallback: Rule {
                name: "default".into(),
                path: PathMatch::Prefix("/".into()),
                methods: Vec::new(),
                ignore_case: false,
                anonymous: false,
                scopes: Vec::new(),
                admin: false,
                enforce_hosts: true,
                fresh: false,
                max_staleness_ms: 0,
            },
        }
    }

    /// Whether any rule asks for live version checks.
    pub fn has_fresh_rules(&self) -> bool {
        self.rules.iter().any(|r| r.fresh)
    }

    /// The rule for `method` and `route` (the path without its query
    /// string, as [`crate::request::RequestView`] gives it).
    /// The configured rules (the fallback not counted).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn rule_for(&self, method: &str, route: &str) -> &Rule {
        self.rules.iter().find(|r| r.matches(method, route)).unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn rule(name: &str, path: PathMatch, methods: &[&str]) -> Rule {
        Rule {
            name: name.into(),
            path,
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            ignore_case: false,
            anonymous: false,
            scopes: vec![],
            admin: false,
            enforce_hosts: true,
            fresh: false,
            max_staleness_ms: 0,
        }
    }

    fn ci(mut r: Rule) -> Rule {
        r.ignore_case = true;
        r
    }

    #[test]
    fn first_matching_rule_wins_and_fallback_requires_a_token() {
        let policy = Policy::new(vec![
            rule("health", PathMatch::exact("/healthz"), &["GET"]),
            ci(rule("admin", PathMatch::prefix("/admin/"), &[])),
            rule("items-write", PathMatch::regex("/api/v[0-9]+/items(/[^/]+)?", false).unwrap(), &["POST", "DELETE"]),
            ci(rule("write", PathMatch::prefix("/notes"), &["post", "PUT", "DELETE"])),
            rule("api", PathMatch::prefix("/api"), &[]),
            rule("root", PathMatch::exact("/"), &[]),
        ]);
        // (method, route, expected rule)
        let cases = [
            ("GET", "/healthz", "health"),
            ("HEAD", "/healthz", "health"),
            ("get", "/healthz", "health"),
            ("GET", "/healthz/", "health"),
            ("POST", "/healthz", "default"),
            ("GET", "/healthz/x", "default"),
            ("GET", "/healthzx", "default"),
            ("GET", "/admin/users", "admin"),
            ("GET", "/admin", "admin"),
            ("GET", "/admin/", "admin"),
            ("GET", "/Admin/users", "admin"),
            ("GET", "/ADMIN", "admin"),
            ("GET", "/administrator", "default"),
            ("GET", "/admin.json", "admin"),
            ("GET", "/admin.json/x", "admin"),
            ("GET", "/healthz.json", "health"),
            ("GET", "/healthz.json/x", "default"),
            ("POST", "/api/v2/items", "items-write"),
            ("post", "/api/v2/items", "items-write"),
            ("pOsT", "/api/v2/items", "items-write"),
            ("DELETE", "/api/v2/items/42", "items-write"),
            ("GET", "/api/v2/items", "api"),
            ("POST", "/API/v2/items", "default"),
            ("POST", "/api/v2/items/42/extra", "api"),
            ("POST", "/api/vX/items", "api"),
            ("POST", "/notes", "write"),
            ("post", "/Notes/1/2", "write"),
            ("PATCH", "/notes/1", "default"),
            ("GET", "/api", "api"),
            ("GET", "/apix", "default"),
            ("GET", "/", "root"),
            ("GET", "/x", "default"),
        ];
        for (method, route, want) in cases {
            assert_eq!(policy.rule_for(method, route).name, want, "{method} {route}");
        }
    }

    #[test]
    fn regex_is_anchored_and_may_ignore_case() {
        let m = PathMatch::regex("/a/[0-9]+", false).unwrap();
        assert!(m.matches("/a/1", false));
        assert!(!m.matches("/x/a/1", false));
        assert!(!m.matches("/a/1/b", false));
        assert!(!m.matches("/A/1", false));
        assert!(PathMatch::regex("/a/[0-9]+", true).unwrap().matches("/A/1", true));
    }

    #[test]
    fn root_prefix_covers_everything_and_non_ascii_is_safe() {
        let root = PathMatch::prefix("/");
        assert!(root.matches("/", false) && root.matches("/anything/x", false));
        let p = PathMatch::prefix("/caf");
        assert!(!p.matches("/café", true), "a prefix never splits a character");
        assert!(!p.matches("/ca", true));
    }
}
