//! The matcher: ordered rules on path and method deciding what a request
//! needs. The first rule that matches wins; no match means "token required".
//!
//! Paths are matched as Envoy hands them over, without the query string.
//! Configure Envoy to normalize them (`normalize_path`, `merge_slashes`, see
//! `envoy/`) so `//admin` or `/a/../admin` cannot walk around a prefix rule.

use regex_lite::Regex;

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored at both ends: the whole path must match.
    Regex(Regex),
}

impl PathMatch {
    pub fn regex(pattern: &str) -> Result<PathMatch, regex_lite::Error> {
        Regex::new(&format!("^(?:{pattern})$")).map(PathMatch::Regex)
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// What a matched request needs.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub path: PathMatch,
    /// Upper-case; empty means every method.
    pub methods: Vec<String>,
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
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method)) && self.path.matches(path)
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
                path: PathMatch::Prefix(String::new()),
                methods: Vec::new(),
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

    /// The rule for `method` and `path` (with or without a query string).
    pub fn rule_for(&self, method: &str, path: &str) -> &Rule {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.rules.iter().find(|r| r.matches(method, path)).unwrap_or(&self.fallback)
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
            methods: methods.iter().map(|m| m.to_string()).collect(),
            anonymous: false,
            scopes: vec![],
            admin: false,
            enforce_hosts: true,
            fresh: false,
            max_staleness_ms: 0,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_fallback_requires_a_token() {
        let policy = Policy::new(vec![
            rule("health", PathMatch::Exact("/healthz".into()), &["GET"]),
            rule("admin", PathMatch::Prefix("/admin/".into()), &[]),
            rule("items-write", PathMatch::regex("/api/v[0-9]+/items(/[^/]+)?").unwrap(), &["POST", "DELETE"]),
            rule("api", PathMatch::Prefix("/api/".into()), &[]),
        ]);
        // (method, path, expected rule)
        let cases = [
            ("GET", "/healthz", "health"),
            ("GET", "/healthz?verbose=1", "health"),
            ("POST", "/healthz", "default"),
            ("GET", "/healthz/x", "default"),
            ("GET", "/admin/users", "admin"),
            ("GET", "/admin", "default"),
            ("POST", "/api/v2/items", "items-write"),
            ("DELETE", "/api/v2/items/42", "items-write"),
            ("GET", "/api/v2/items", "api"),
            ("POST", "/api/v2/items/42/extra", "api"),
            ("POST", "/api/vX/items", "api"),
            ("GET", "/", "default"),
        ];
        for (method, path, want) in cases {
            assert_eq!(policy.rule_for(method, path).name, want, "{method} {path}");
        }
    }

    #[test]
    fn regex_is_anchored() {
        let m = PathMatch::regex("/a/[0-9]+").unwrap();
        assert!(m.matches("/a/1"));
        assert!(!m.matches("/x/a/1"));
        assert!(!m.matches("/a/1/b"));
    }
}
