//! Key rotation end to end (docs/operations.md, "Key rotation"): the real
//! authority signs with whichever of its `[[keys]]` is `active`; the edge
//! accepts every key in its document; the document changes in a running
//! Envoy by a plugin configuration reload (ECDS from a watched file, as
//! Istio delivers a `WasmPlugin` change: `tollgate_e2e::reload`), under
//! continuous traffic, on both hosts:
//!
//! 1. the edge knows the old key only: an old-kid token passes, a token of
//!    the new kid is refused (`unknown key id`);
//! 2. accept everywhere first: the edge document gets both kids (reload);
//! 3. activate: the authority signs with the new key (`active = true` on
//!    it, `false` on the old one); tokens of both kids pass;
//! 4. retire: the old key leaves the edge document (reload): old-kid tokens
//!    are refused, new ones pass.
//!
//! Across each reload no request fails, neither on connections opened during
//! it nor on keep-alive connections pinned to each worker; after it, the new
//! key set is in force on every worker.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tollgate::token::b64;
use tollgate_e2e::authority::{self, EDGE_CREDENTIAL, EDGE_CREDENTIAL_ENV};
use tollgate_e2e::callouts::{api, assert_denied, assert_no_crash, poll, Watch};
use tollgate_e2e::reload::Ecds;
use tollgate_e2e::tokens::{DEMO_KEY_B64, DEMO_KID};
use tollgate_e2e::workers::{self, Pinned};
use tollgate_e2e::{local_document, Envoy, Options, Request, Response};

const NEW_KID: &str = "k2027";

/// The new key's secret (33 bytes: at least HS256's 32), base64url.
fn new_secret() -> String {
    b64::encode(b"k2027-e2e-rotation-secret-0123456")
}

/// The edge document (the demo's, without callouts) with exactly `kids`.
fn edge_document(kids: &[&str]) -> serde_json::Value {
    let mut doc = local_document();
    let old = doc["keys"][0].clone();
    assert_eq!(old["kid"], DEMO_KID, "the demo document's key: {old}");
    let new = serde_json::json!({"kid": NEW_KID, "alg": "HS256", "secret": new_secret()});
    doc["keys"] = kids
        .iter()
        .map(|kid| if *kid == DEMO_KID { old.clone() } else { new.clone() })
        .collect::<Vec<_>>()
        .into();
    doc
}

/// The real authority's signing, run as its `mint` CLI with a
/// configuration of both keys, one of them active.
struct Signer {
    dir: tempfile::TempDir,
}

impl Signer {
    fn new() -> Signer {
        Signer { dir: tempfile::Builder::new().prefix("tollgate-e2e-keys-").tempdir().expect("temp dir") }
    }

    fn config(&self, active: &str) -> PathBuf {
        let path = self.dir.path().join(format!("authority-{active}.toml"));
        let key = |kid: &str, secret: &str| {
            format!("[[keys]]\nkid = \"{kid}\"\nalg = \"HS256\"\nsecret = \"{secret}\"\nactive = {}\n", kid == active)
        };
        let text = format!("{}\n{}", key(DEMO_KID, DEMO_KEY_B64), key(NEW_KID, &new_secret()));
        std::fs::write(&path, text).expect("write the authority configuration");
        path
    }

    /// An access token for `sub`, signed by the authority whose active key
    /// is `active`.
    fn mint(&self, active: &str, sub: &str) -> String {
        let out = Command::new(authority::binary())
            .arg("--config")
            .arg(self.config(active))
            .args(["--store", "sqlite", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["mint", "--sub", sub, "--scope", "read", "--ttl-secs", "3600"])
            .env(EDGE_CREDENTIAL_ENV, EDGE_CREDENTIAL)
            .env("TOLLGATE_LOG", "warn")
            .env_remove("TOLLGATE_SIGNING_KID")
            .stdin(Stdio::null())
            .output()
            .expect("run tollgate-authority mint");
        assert!(out.status.success(), "mint failed: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned();
        assert_eq!(kid_of(&token), active, "the authority signs with its active key");
        token
    }
}

/// The `kid` of a JWS's protected header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("a JWS");
    let header: serde_json::Value =
        serde_json::from_slice(&b64::decode(header.as_bytes()).expect("base64url header")).expect("JSON header");
    header["kid"].as_str().unwrap_or_default().to_owned()
}

fn is_unknown_kid(r: &Response) -> bool {
    r.status == 401 && r.json()["error_description"] == "unknown key id"
}

/// Publishes `doc` while `token` (valid before and after) is presented
/// continuously on new connections and on the `traffic` connections (one
/// per worker), until `in_force` holds on every `probes` connection and a
/// little longer. Returns (requests sent, how long the change took to be in
/// force everywhere); panics on any failed request.
#[allow(clippy::too_many_arguments)]
fn reload_under_traffic(
    envoy: &Envoy,
    ecds: &Ecds,
    doc: &serde_json::Value,
    traffic: &mut [Pinned],
    probes: &mut [Pinned],
    token: &str,
    in_force: &dyn Fn(&Response) -> bool,
    probe: &Request,
) -> (u64, Duration) {
    let (accepted, refused) = Ecds::reloads(envoy);
    let watch = Watch::start(envoy.listener, api(token));
    let stop = AtomicBool::new(false);
    let (pinned_sent, pinned_failed, took) = thread::scope(|s| {
        let pinned = s.spawn(|| {
            let (mut sent, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                for conn in traffic.iter_mut() {
                    let r = conn.send(&api(token));
                    sent += 1;
                    if r.status != 200 {
                        failed.push(format!("worker {}: {r}", conn.worker));
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
            (sent, failed)
        });
        thread::sleep(Duration::from_millis(300));
        let published = Instant::now();
        ecds.publish(doc);
        let everywhere = poll(Duration::from_secs(30), Duration::from_millis(20), || {
            probes.iter_mut().all(|conn| in_force(&conn.send(probe))).then_some(())
        });
        let took = published.elapsed();
        // Traffic goes on past the change.
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let (sent, failed) = pinned.join().expect("pinned traffic");
        assert!(everywhere.is_some(), "the new configuration was not in force on every worker within 30 s of publishing it");
        (sent, failed, took)
    });
    let (sent, failed) = watch.stop();
    assert!(failed.is_empty(), "{} of {sent} requests on new connections failed across the reload: {failed:#?}", failed.len());
    assert!(pinned_failed.is_empty(), "{} of {pinned_sent} requests on keep-alive connections failed across the reload: {pinned_failed:#?}", pinned_failed.len());
    assert!(sent > 0 && pinned_sent > 0, "no traffic across the reload");
    let (accepted_after, refused_after) = Ecds::reloads(envoy);
    assert_eq!(refused_after, refused, "Envoy refused the new filter configuration");
    assert!(accepted_after > accepted, "Envoy did not count the reload");
    (sent + pinned_sent, took)
}

#[test]
fn a_key_rotation_with_plugin_reloads_under_traffic_fails_no_request() {
    let signer = Signer::new();
    let old_token = signer.mint(DEMO_KID, "alice");

    // 1. The edge knows the old key only.
    let (ecds, options) = Ecds::options(workers::pinnable(Options::with_document(&edge_document(&[DEMO_KID]))));
    let envoy = Envoy::start(&options);
    assert_eq!(Ecds::reloads(&envoy), (1, 0), "the filter configuration came from the ECDS file");
    let mut pinned = workers::pin(&envoy, 2);
    let (mut traffic, mut probes): (Vec<Pinned>, Vec<Pinned>) = {
        let mut seen = std::collections::BTreeSet::new();
        pinned.drain(..).partition(|p| seen.insert(p.worker))
    };
    for conn in probes.iter_mut() {
        let r = conn.send(&api(&old_token));
        assert_eq!(r.status, 200, "worker {}: the old key's token: {r}", conn.worker);
    }

    // 2. Accept everywhere first. 3. Activate the new key at the authority.
    let new_token = signer.mint(NEW_KID, "alice");
    for conn in probes.iter_mut() {
        assert_denied(&conn.send(&api(&new_token)), 401, "unknown key id");
    }
    let (sent_both, took_both) = reload_under_traffic(
        &envoy,
        &ecds,
        &edge_document(&[DEMO_KID, NEW_KID]),
        &mut traffic,
        &mut probes,
        &old_token,
        &|r| r.status == 200,
        &api(&new_token),
    );
    for conn in probes.iter_mut() {
        for (what, token) in [("old", &old_token), ("new", &new_token)] {
            let r = conn.send(&api(token));
            assert_eq!(r.status, 200, "worker {}: the {what} key's token with both keys: {r}", conn.worker);
        }
    }

    // 4. Retire the old key.
    let (sent_new, took_new) = reload_under_traffic(
        &envoy,
        &ecds,
        &edge_document(&[NEW_KID]),
        &mut traffic,
        &mut probes,
        &new_token,
        &is_unknown_kid,
        &api(&old_token),
    );
    // In force for good: every worker refuses the old kid on every
    // connection, old or new, and accepts the new one.
    for _ in 0..5 {
        for conn in probes.iter_mut().chain(traffic.iter_mut()) {
            assert_denied(&conn.send(&api(&old_token)), 401, "unknown key id");
            let r = conn.send(&api(&new_token));
            assert_eq!(r.status, 200, "worker {}: the new key's token after the retirement: {r}", conn.worker);
        }
        assert_denied(&envoy.send(&api(&old_token)), 401, "unknown key id");
    }
    eprintln!(
        "REPORT key rotation [{}]: reload 1 (add {NEW_KID}): {sent_both} requests, 0 failed, in force on every worker after {took_both:?}; \
         reload 2 (retire {DEMO_KID}): {sent_new} requests, 0 failed, in force after {took_new:?}",
        envoy.host
    );
    assert_no_crash(&envoy.stop());
}
