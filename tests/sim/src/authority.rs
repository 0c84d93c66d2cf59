//! The authority the simulated Envoys call: the real service logic
//! ([`tollgate_authority::service::Authority`]) on a real SQLite store in a
//! temporary directory, driven by a current-thread tokio runtime.
//!
//! [`Authority::handle`] is the one place that translates a callout (its
//! pseudo-headers and form body) into a service call, and renders the answer
//! the way `authority/src/http.rs` does: status and JSON body. It does not
//! check the edge credential (the HTTP layer's business); the world checks
//! which callouts carry it. When the HTTP layer changes (the feed pages gain
//! `store` and `floor`, feed and versions require the credential), the feed
//! page is rendered from the service's own answer type, so new fields pass
//! through; only this module needs adapting if the mapping changes.

use serde_json::json;
use std::sync::Arc;
use tempfile::TempDir;
use tollgate::token::{mint, Claims};
use tollgate_authority::config::{Config as AuthorityConfig, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use tollgate_authority::directory::Directory;
use tollgate_authority::feed::VersionKey;
use tollgate_authority::keys::{KeyConfig, Keys};
use tollgate_authority::refresh::hash_token;
use tollgate_authority::service::{Authority as Service, FeedError, OAuthError, Settings, MAX_VERSION_KEYS};
use tollgate_authority::store::sqlite::SqliteStore;
use tollgate_authority::store::{NewFamily, Store};

/// Longer than any simulation runs in real time: a refresh token presented
/// again is always replayed, never taken for reuse, so a run does not depend
/// on how fast the machine is.
pub const GRACE_MS: u64 = 10 * 60 * 1000;

/// What the authority answered: status and body, as the edge reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Which endpoint a callout is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Feed,
    Versions,
    Token,
    Other,
}

impl Endpoint {
    pub fn of(path: &str) -> Endpoint {
        match path.split_once('?').map_or(path, |(p, _)| p) {
            "/v1/revocations" => Endpoint::Feed,
            "/v1/versions" => Endpoint::Versions,
            "/v1/token" => Endpoint::Token,
            _ => Endpoint::Other,
        }
    }
}

/// A refresh family the simulation created with a refresh token it chose.
#[derive(Debug, Clone)]
pub struct Family {
    pub sub: String,
    pub sid: String,
    pub ver: u64,
}

pub struct Authority {
    rt: tokio::runtime::Runtime,
    service: Arc<Service>,
    keys: Keys,
    _dir: TempDir,
}

fn json_error(status: u16, code: &str, description: &str) -> Answer {
    Answer { status, body: json!({ "error": code, "error_description": description }).to_string().into_bytes() }
}

fn store_down() -> Answer {
    json_error(503, "temporarily_unavailable", "token store unavailable")
}

fn oauth_error(e: &OAuthError) -> Answer {
    json_error(e.status(), e.code(), e.description())
}

fn query_pairs(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

impl Authority {
    /// A fresh authority with an empty store (tmpfs when there is one: the
    /// store syncs every commit).
    pub fn start() -> Authority {
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::Builder::new().prefix("tollgate-sim").tempdir_in("/dev/shm"),
            false => tempfile::Builder::new().prefix("tollgate-sim").tempdir(),
        }
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("sqlite store"));
        let mut settings = Settings::from_config(&AuthorityConfig::default());
        settings.refresh_grace_ms = GRACE_MS;
        let keys = Keys::load(&[KeyConfig::demo()]).expect("demo key");
        let service = Arc::new(Service::new(store, settings, keys.clone(), Directory::demo()));
        rt.block_on(service.init()).expect("authority init");
        Authority { rt, service, keys, _dir: dir }
    }

    /// Answers one callout (`:method`, `:path` and the rest of its headers,
    /// and its body) as the HTTP layer would.
    pub fn handle(&self, headers: &[(&'static str, String)], body: Option<&[u8]>) -> Answer {
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let (method, path) = (header(":method").unwrap_or(""), header(":path").unwrap_or(""));
        match (method, Endpoint::of(path)) {
            ("GET", Endpoint::Feed) => self.feed(path),
            ("GET", Endpoint::Versions) => self.versions_answer(path),
            ("POST", Endpoint::Token) => {
                let form_type = header("content-type")
                    .and_then(|v| v.split(';').next())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
                if !form_type {
                    return json_error(400, "invalid_request", "content type must be application/x-www-form-urlencoded");
                }
                self.token(body.unwrap_or_default())
            }
            (_, Endpoint::Other) => json_error(404, "not_found", "no such endpoint"),
            _ => json_error(405, "invalid_request", "method not allowed for this endpoint"),
        }
    }

    fn feed(&self, path: &str) -> Answer {
        let mut after = None;
        for (k, v) in query_pairs(path) {
            match k.as_str() {
                "after" if after.is_none() => after = Some(v),
                "after" => return json_error(400, "invalid_request", "parameter after repeated"),
                _ => return json_error(400, "invalid_request", "unknown parameter"),
            }
        }
        let after = after.filter(|a| !a.is_empty());
        match self.rt.block_on(self.service.feed(after.as_deref())) {
            Ok(page) => Answer { status: 200, body: serde_json::to_vec(&page).expect("feed page serializes") },
            Err(FeedError::Cursor(e)) => json_error(410, "invalid_cursor", e.description()),
            Err(FeedError::Unavailable) => store_down(),
        }
    }

    fn versions_answer(&self, path: &str) -> Answer {
        let mut keys = Vec::new();
        for (k, v) in query_pairs(path) {
            if k != "key" {
                return json_error(400, "invalid_request", "only key parameters are accepted");
            }
            match VersionKey::parse(&v) {
                Ok(key) => keys.push(key),
                Err(e) => return json_error(400, "invalid_request", e.description()),
            }
        }
        if keys.is_empty() || keys.len() > MAX_VERSION_KEYS {
            return json_error(400, "invalid_request", "give 1 to 64 key parameters");
        }
        match self.rt.block_on(self.service.versions(&keys)) {
            Ok(mins) => {
                let map: serde_json::Map<String, serde_json::Value> =
                    keys.iter().zip(mins).map(|(k, m)| (k.to_string(), m.into())).collect();
                Answer { status: 200, body: json!({ "versions": map }).to_string().into_bytes() }
            }
            Err(_) => store_down(),
        }
    }

    fn token(&self, body: &[u8]) -> Answer {
        let mut form = std::collections::BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if form.insert(k.into_owned(), v.into_owned()).is_some() {
                return json_error(400, "invalid_request", "parameter repeated");
            }
        }
        let grant = form.get("grant_type").map(String::as_str);
        let result = match (grant, form.get("refresh_token").filter(|t| !t.is_empty())) {
            (Some("refresh_token"), Some(rt)) => {
                self.rt.block_on(self.service.refresh(rt, form.get("scope").map(String::as_str)))
            }
            (Some("refresh_token"), None) => Err(OAuthError::InvalidRequest("refresh_token missing".into())),
            (None, _) => Err(OAuthError::InvalidRequest("grant_type missing".into())),
            (Some(_), _) => Err(OAuthError::UnsupportedGrantType("only refresh_token is simulated".into())),
        };
        match result {
            Ok(t) => Answer { status: 200, body: serde_json::to_vec(&t).expect("token response serializes") },
            Err(e) => oauth_error(&e),
        }
    }

    // ---- what the simulation does at the authority directly -------------

    /// A refresh family whose first refresh token is `refresh_token`.
    pub fn create_family(&self, sub: &str, sid: &str, scope: &str, refresh_token: &str) -> Family {
        let now = tollgate_authority::util::now_secs();
        let fam = NewFamily {
            sid: sid.to_owned(),
            sub: sub.to_owned(),
            scope: scope.to_owned(),
            client_id: Some("tollgate-edge".into()),
            created_at: now,
            expires_at: now + 24 * 3600,
            first_token_hash: hash_token(refresh_token),
        };
        let ver = self.rt.block_on(self.service.store.create_family(&fam)).expect("create family");
        Family { sub: sub.to_owned(), sid: sid.to_owned(), ver }
    }

    /// The current minimum of each version key (`sub:x`, `sid:y`).
    pub fn versions(&self, keys: &[&str]) -> Vec<u64> {
        let keys: Vec<VersionKey> = keys.iter().map(|k| VersionKey::parse(k).expect("version key")).collect();
        self.rt.block_on(self.service.versions(&keys)).expect("versions")
    }

    /// An admin revocation of `key`: its new minimum.
    pub fn revoke(&self, key: &str) -> u64 {
        let key = VersionKey::parse(key).expect("version key");
        self.rt.block_on(self.service.revoke_key(&key)).expect("revoke").min_ver
    }

    /// An access token of this authority's key.
    pub fn mint(&self, sub: &str, sid: Option<&str>, ver: u64, scope: &str, exp_secs: u64) -> String {
        let claims = Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: sub.into(),
            aud: vec![DEFAULT_AUDIENCE.into()],
            exp: Some(exp_secs),
            nbf: None,
            iat: Some(exp_secs.saturating_sub(900)),
            jti: Some(format!("sim-{sub}-{exp_secs}")),
            ver,
            sid: sid.map(str::to_owned),
            scope: Some(scope.into()),
            hosts: None,
        };
        mint(&self.keys.signing, &claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, path: &str) -> Vec<(&'static str, String)> {
        vec![(":method", method.into()), (":path", path.into()), (":authority", "tollgate-authority".into())]
    }

    #[test]
    fn translates_feed_versions_and_refresh() {
        let a = Authority::start();
        let fam = a.create_family("alice", "s_sim1", "read", "tgr_sim-refresh-1");
        let snap = a.handle(&call("GET", "/v1/revocations"), None);
        assert_eq!(snap.status, 200);
        let page: serde_json::Value = serde_json::from_slice(&snap.body).unwrap();
        assert_eq!(page["snapshot"], true);
        let cursor = page["cursor"].as_str().unwrap().to_owned();
        let min = a.revoke("sub:alice");
        let delta = a.handle(&call("GET", &format!("/v1/revocations?after={cursor}")), None);
        let page: serde_json::Value = serde_json::from_slice(&delta.body).unwrap();
        assert_eq!(page["entries"][0]["key"], "sub:alice");
        assert_eq!(page["entries"][0]["min_ver"], min);
        assert_eq!(a.handle(&call("GET", "/v1/revocations?after=nope.1"), None).status, 410);
        let v = a.handle(&call("GET", "/v1/versions?key=sub%3Aalice&key=sid%3As_sim1"), None);
        assert_eq!(v.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
        assert_eq!(v["versions"]["sub:alice"], min);
        assert_eq!(a.handle(&call("GET", "/v1/versions"), None).status, 400);
        // The family was revoked with its subject: its refresh is refused.
        let mut token = call("POST", "/v1/token");
        token.push(("content-type", "application/x-www-form-urlencoded".into()));
        let body = b"grant_type=refresh_token&refresh_token=tgr_sim-refresh-1&client_id=tollgate-edge";
        let r = a.handle(&token, Some(body));
        assert_eq!((r.status, fam.ver < min), (400, true));
        assert!(String::from_utf8_lossy(&r.body).contains("invalid_grant"));
    }

    #[test]
    fn a_refresh_rotates_then_replays() {
        let a = Authority::start();
        a.create_family("bob", "s_sim2", "read", "tgr_sim-refresh-2");
        let mut token = call("POST", "/v1/token");
        token.push(("content-type", "application/x-www-form-urlencoded".into()));
        let body = b"grant_type=refresh_token&refresh_token=tgr_sim-refresh-2&client_id=tollgate-edge";
        let first = a.handle(&token, Some(body));
        assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
        let again = a.handle(&token, Some(body));
        let pair = |b: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            (v["access_token"].clone(), v["refresh_token"].clone())
        };
        assert_eq!(pair(&first.body), pair(&again.body), "inside the grace window the same pair comes back");
        assert_eq!(a.handle(&call("POST", "/v1/token"), Some(body)).status, 400, "not a form");
    }
}
