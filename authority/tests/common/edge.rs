//! The edge's own decision on an authority's token: the `tollgate` crate's
//! authenticator (verification, then revocation), fed what a real edge
//! would learn from this authority — the feed snapshot, read through the
//! edge's feed parser, and live versions for a `fresh` rule, recorded
//! through the edge's answer reader. Nothing here re-implements a check.

use std::net::{IpAddr, Ipv4Addr};
use tollgate::authenticator::{decide, Decision, Knowledge, Peer, Request};
use tollgate::config::Config;
use tollgate::protocol::{FeedPage, VersionsAnswer};
use tollgate::request::RequestView;
use tollgate::revocation::{LiveVersions, RevocationSet};
use tollgate_authority::config::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use tollgate_authority::feed::VersionKey;
use tollgate_authority::keys::{KeyConfig, DEMO_KID, DEMO_SECRET_B64};
use tollgate_authority::service::Authority;

/// The filter document of an edge in front of a test authority: the demo
/// key, no clock skew, never-expiring API tokens allowed, revocation synced
/// from the feed, and one catch-all `fresh` rule, so every decision also
/// checks the live minimums (which outlive feed entries).
pub fn edge_config() -> Config {
    let doc = serde_json::json!({
        "issuer": DEFAULT_ISSUER,
        "audiences": [DEFAULT_AUDIENCE],
        "keys": [{"kid": DEMO_KID, "alg": KeyConfig::demo().alg, "secret": DEMO_SECRET_B64}],
        "clock_skew_seconds": 0,
        "allow_never_expiring": true,
        "authority": {"cluster": "authority", "credential": super::EDGE_CREDENTIAL},
        "revocation": {},
        "rules": [{"name": "everything-live", "path": {"prefix": "/"}, "fresh": true}],
    });
    Config::parse(doc.to_string().as_bytes(), &|_| None).expect("the test edge's document is valid")
}

/// `Ok(())` when the edge allows a request bearing `token` now; otherwise
/// the refusal's `error_description` (e.g. `token revoked`).
pub async fn edge_decision(auth: &Authority, token: &str) -> Result<(), String> {
    let config = edge_config();
    let now_ms = tollgate_authority::util::now_ms();
    let page = auth.feed(None).await.map_err(|e| format!("the authority's feed failed: {e:?}"))?;
    let body = serde_json::to_vec(&page).expect("a feed page serializes");
    let page = FeedPage::parse(&body).map_err(|e| format!("the edge refuses the feed page: {e:?}"))?;
    let mut revocations = RevocationSet::new();
    revocations.apply(page, now_ms);
    let mut live = LiveVersions::default();
    let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let view = RequestView::from_parts(&config, "GET", "/api/resource", &headers).map_err(|e| format!("request refused: {e:?}"))?;
    let request = Request { view: &view, peer: Peer::Known(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))) };
    // At most one live check: the second decision has its answer (as the
    // engine does, it uses the answer it waited for).
    let mut live_waited_from = None;
    for _ in 0..2 {
        let knowledge = Knowledge { now_ms, revocations: &revocations, live: &live, live_waited_from, cache: None };
        match decide(&config, &request, &knowledge) {
            Decision::Allow(_) => return Ok(()),
            Decision::Deny(d) => return Err(d.reason.description().to_owned()),
            Decision::CheckVersions(keys) => {
                let parsed: Vec<VersionKey> = keys.iter().map(|k| VersionKey::parse(k).expect("the edge asks for valid keys")).collect();
                let mins = auth.versions(&parsed).await.map_err(|e| format!("versions: {e}"))?;
                let answer = VersionsAnswer { versions: keys.iter().cloned().zip(mins).collect() };
                let body = serde_json::to_vec(&answer).expect("a versions answer serializes");
                live_waited_from = Some(live.mark());
                assert!(live.record(&keys, &body, now_ms), "the edge refuses the versions answer");
            }
            other => return Err(format!("the edge wants something else: {other:?}")),
        }
    }
    Err("a live answer did not settle the request".into())
}
