//! The filter document every worker of a run is configured from: one JSON
//! document, parsed by the filter's own `Config::parse`, and the bounds the
//! invariants are measured against, computed from it.

use serde_json::json;
use tollgate::config::Config;
use tollgate::edge::MAX_TICK_MS;
use tollgate_authority::keys::{DEMO_KID, DEMO_SECRET_B64};

/// The edge credential the documents carry (inline: test documents only).
pub const EDGE_CREDENTIAL: &str = "sim-edge-credential-not-for-production-0001";
pub const ACCESS_COOKIE: &str = "tg_access";
pub const REFRESH_COOKIE: &str = "tg_refresh";
pub const REFRESH_HEADER: &str = "x-tollgate-refresh-token";
pub const ACCESS_RESPONSE_HEADER: &str = "x-tollgate-access-token";
pub const REFRESH_RESPONSE_HEADER: &str = "x-tollgate-refresh-token";
/// How far a token's clock may be off (seconds), in every document.
pub const CLOCK_SKEW_SECS: u64 = 5;

/// The knobs a run varies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSpec {
    pub timeout_ms: u64,
    pub sync_interval_ms: u64,
    pub max_staleness_ms: u64,
    pub on_stale_allow: bool,
    pub wait_ms: u64,
    pub share_ms: u64,
    pub refresh_before_seconds: u64,
    /// `max_staleness_ms` of the `fresh` rule (`/fresh/`).
    pub fresh_staleness_ms: u64,
}

impl Default for DocSpec {
    fn default() -> DocSpec {
        DocSpec {
            timeout_ms: 1000,
            sync_interval_ms: 1000,
            max_staleness_ms: 5000,
            on_stale_allow: false,
            wait_ms: 3000,
            share_ms: 10_000,
            refresh_before_seconds: 30,
            fresh_staleness_ms: 0,
        }
    }
}

impl DocSpec {
    pub fn json(&self) -> String {
        json!({
            "issuer": tollgate_authority::config::DEFAULT_ISSUER,
            "audiences": [tollgate_authority::config::DEFAULT_AUDIENCE],
            "keys": [{ "kid": DEMO_KID, "alg": "HS256", "secret": DEMO_SECRET_B64 }],
            "clock_skew_seconds": CLOCK_SKEW_SECS,
            "allow_never_expiring": true,
            "sources": { "authorization_header": true, "cookie": ACCESS_COOKIE },
            "rules": [
                { "name": "public", "path": { "prefix": "/public/" }, "anonymous": true },
                { "name": "fresh", "path": { "prefix": "/fresh/" }, "scopes": ["read"], "fresh": true,
                  "max_staleness_ms": self.fresh_staleness_ms },
                { "name": "api", "path": { "prefix": "/api/" }, "scopes": ["read"] }
            ],
            "authority": {
                "cluster": "authority",
                "host": "tollgate-authority",
                "timeout_ms": self.timeout_ms,
                "credential": EDGE_CREDENTIAL
            },
            "revocation": {
                "sync_interval_ms": self.sync_interval_ms,
                "max_staleness_ms": self.max_staleness_ms,
                "on_stale": if self.on_stale_allow { "allow" } else { "deny" }
            },
            "refresh": {
                "cookie": REFRESH_COOKIE,
                "header": {
                    "request": REFRESH_HEADER,
                    "access_response": ACCESS_RESPONSE_HEADER,
                    "refresh_response": REFRESH_RESPONSE_HEADER
                },
                "refresh_before_seconds": self.refresh_before_seconds,
                "wait_ms": self.wait_ms,
                "share_ms": self.share_ms
            }
        })
        .to_string()
    }

    /// The document, through the filter's own parser.
    pub fn config(&self) -> Config {
        let doc = self.json();
        Config::parse(doc.as_bytes(), &|_| None).unwrap_or_else(|e| panic!("the simulated document is refused: {e}\n{doc}"))
    }

    /// The tick period every worker of this document runs at.
    pub fn tick_ms(&self) -> u64 {
        (self.sync_interval_ms / 4).clamp(20, MAX_TICK_MS)
    }

    /// How long a group of each kind waits before its worker asks itself
    /// (the engine never waits less than its own callout can take).
    pub fn refresh_wait_ms(&self) -> u64 {
        self.wait_ms.max(self.timeout_ms + 2 * MAX_TICK_MS)
    }

    pub fn check_wait_ms(&self) -> u64 {
        self.timeout_ms + 2 * MAX_TICK_MS
    }

    /// The bound on one pause of a request: the group's wait, one fall-back
    /// callout, two ticks (noticing the wait ran out, and the answer).
    pub fn pause_bound_ms(&self, refresh: bool) -> u64 {
        let wait = if refresh { self.refresh_wait_ms() } else { self.check_wait_ms() };
        wait + self.timeout_ms + 2 * self.tick_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_accepts_every_document_the_runs_use() {
        let base = DocSpec::default();
        let config = base.config();
        assert_eq!(config.authority.as_ref().map(|a| a.timeout_ms), Some(1000));
        let short = DocSpec { timeout_ms: 200, sync_interval_ms: 200, max_staleness_ms: 400, wait_ms: 10, ..base };
        short.config();
        assert_eq!(short.tick_ms(), 50);
        assert_eq!(short.refresh_wait_ms(), 400, "never shorter than a callout and two ticks");
    }
}
