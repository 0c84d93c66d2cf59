//! One conformance suite, run against both stores (SQLite and a real
//! redis-server). Each case is a generic async fn over the store fixture;
//! the macro at the bottom instantiates every case for both.

mod common;

use common::{authority, edge_verifier, settings, wait_until, Fixture};
use futures::future::join_all;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tollgate::token::TimeCheck;
use tollgate_authority::feed::{CursorError, VersionKey};
use tollgate_authority::refresh::hash_token;
use tollgate_authority::service::{ApiTokenRequest, Authority, FeedError, OAuthError};
use tollgate_authority::util::{now_secs, now_us};

const N: usize = 100;

fn grant_err(r: Result<impl std::fmt::Debug, OAuthError>) -> (String, String) {
    let e = r.expect_err("expected an OAuth error");
    (e.code().to_string(), e.description().to_string())
}

/// Whether the edge would accept `token` now: the filter's own decision
/// (verification, then revocation against this authority's feed and live
/// versions), see [`common::edge`].
async fn edge_accepts(auth: &Authority, token: &str) -> Result<(), String> {
    common::edge::edge_decision(auth, token).await
}

/// The `ver` claim of a token of this authority.
fn ver_of(token: &str) -> u64 {
    edge_verifier().verify(token, TimeCheck::Skip).expect("verifies").ver
}

/// The client address of in-process grants.
const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn sid_of(token: &str) -> String {
    edge_verifier().verify(token, TimeCheck::Skip).expect("verifies").sid.expect("sid")
}

async fn concurrent_refreshes_of_one_token(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let login = auth.login("alice", "read write", None).await.expect("login");
    let rt = login.refresh_token.clone().expect("refresh token");
    let answers = join_all((0..N).map(|_| {
        let (auth, rt) = (auth.clone(), rt.clone());
        tokio::spawn(async move { auth.refresh(&rt, None).await })
    }))
    .await;
    let pairs: HashSet<(String, Option<String>)> = answers
        .into_iter()
        .map(|a| {
            let t = a.expect("task").expect("every concurrent refresh succeeds");
            (t.access_token, t.refresh_token)
        })
        .collect();
    assert_eq!(pairs.len(), 1, "all {N} answers carry the identical successor pair");
    let (access, successor) = pairs.into_iter().next().expect("one pair");
    let successor = successor.expect("successor refresh token");
    assert_ne!(successor, rt);
    let sid = sid_of(&access);
    assert_eq!(auth.store.family_head(&sid).await.expect("head"), Some(hash_token(&successor)), "one family head: the successor");
    let stats = auth.store.stats().await.expect("stats");
    assert_eq!((stats.families, stats.refresh_tokens), (1, 2), "one rotation stored, not {N}");
    edge_accepts(&auth, &access).await.expect("successor access token valid");
    let next = auth.refresh(&successor, None).await.expect("the successor rotates");
    assert_ne!(next.refresh_token.as_deref(), Some(successor.as_str()));
}

async fn concurrent_refreshes_of_distinct_tokens(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let mut tokens = Vec::new();
    for i in 0..N {
        let t = auth.login(&format!("user{i}"), "read", None).await.expect("login");
        tokens.push(t.refresh_token.expect("rt"));
    }
    let answers = join_all(tokens.iter().cloned().map(|rt| {
        let auth = auth.clone();
        tokio::spawn(async move { (rt.clone(), auth.refresh(&rt, None).await) })
    }))
    .await;
    let mut successors = HashSet::new();
    for a in answers {
        let (old, r) = a.expect("task");
        let t = r.expect("every refresh succeeds");
        let succ = t.refresh_token.expect("successor");
        let sid = sid_of(&t.access_token);
        assert_eq!(auth.store.family_head(&sid).await.expect("head"), Some(hash_token(&succ)));
        assert_ne!(succ, old);
        successors.insert(succ);
    }
    assert_eq!(successors.len(), N, "{N} distinct successors");
    let stats = auth.store.stats().await.expect("stats");
    assert_eq!((stats.families, stats.refresh_tokens), (N as u64, 2 * N as u64), "no lost update");
}

async fn reuse_after_grace_revokes_the_family(f: Fixture) {
    const GRACE_MS: u64 = 300;
    let auth = authority(f.open().await, settings(GRACE_MS));
    let login = auth.login("alice", "read", None).await.expect("login");
    let rt0 = login.refresh_token.expect("rt0");
    let sid = sid_of(&login.access_token);
    let first = auth.refresh(&rt0, None).await.expect("rotation");
    let rt1 = first.refresh_token.clone().expect("rt1");
    // Inside the window: the same pair again.
    let replay = auth.refresh(&rt0, None).await.expect("replay inside grace");
    assert_eq!(replay, TokenResponseEq::from(&first).with_expires(replay.expires_in));
    let cursor = auth.feed(None).await.expect("snapshot").cursor;

    tokio::time::sleep(Duration::from_millis(GRACE_MS + 150)).await;
    assert_eq!(
        grant_err(auth.refresh(&rt0, None).await),
        ("invalid_grant".into(), "refresh token reused; session revoked".into())
    );
    assert_eq!(
        grant_err(auth.refresh(&rt1, None).await),
        ("invalid_grant".into(), "refresh token revoked".into()),
        "the successor is dead too"
    );
    assert_eq!(
        edge_accepts(&auth, &first.access_token).await,
        Err("token revoked".into()),
        "the family's access tokens are revoked"
    );
    let delta = auth.feed(Some(&cursor)).await.expect("delta");
    let entry = delta.entries.iter().find(|e| e.key == format!("sid:{sid}")).expect("sid bump in the feed");
    let ver = edge_verifier().verify(&first.access_token, TimeCheck::Skip).expect("claims").ver;
    assert!(entry.min_ver > ver);
    assert!(entry.expires_at.is_some());
}

/// `TokenResponse` equality up to `expires_in` (which counts down).
struct TokenResponseEq;
impl TokenResponseEq {
    fn from(t: &tollgate_authority::service::TokenResponse) -> Expect {
        Expect(t.clone())
    }
}
struct Expect(tollgate_authority::service::TokenResponse);
impl Expect {
    fn with_expires(mut self, e: u64) -> tollgate_authority::service::TokenResponse {
        self.0.expires_in = e;
        self.0
    }
}

async fn subject_bump_revokes_tokens_and_refresh_families(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    // Versions come from one counter, so a bump of either key revokes
    // whichever key set a token's ver.
    auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    let a = auth.login("alice", "read", None).await.expect("login");
    let b = auth.login("alice", "read", None).await.expect("login");
    edge_accepts(&auth, &a.access_token).await.expect("new token carries the current version");
    auth.revoke_key(&VersionKey::session(&sid_of(&a.access_token)).expect("key")).await.expect("sid bump");
    assert_eq!(edge_accepts(&auth, &a.access_token).await, Err("token revoked".into()), "sid bump beats a ver set by sub");
    edge_accepts(&auth, &b.access_token).await.expect("other session unaffected");
    assert_eq!(grant_err(auth.refresh(a.refresh_token.as_deref().expect("rt"), None).await).0, "invalid_grant");

    auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    assert_eq!(edge_accepts(&auth, &b.access_token).await, Err("token revoked".into()));
    assert_eq!(
        grant_err(auth.refresh(b.refresh_token.as_deref().expect("rt"), None).await),
        ("invalid_grant".into(), "refresh token revoked".into()),
        "log out everywhere ends refresh families"
    );
    let c = auth.login("alice", "read", None).await.expect("login after bump");
    edge_accepts(&auth, &c.access_token).await.expect("tokens issued after the bump pass");
    // RFC 7009 revocation of a refresh token ends its family.
    auth.revoke_token(c.refresh_token.as_deref().expect("rt")).await.expect("revoke");
    assert_eq!(grant_err(auth.refresh(c.refresh_token.as_deref().expect("rt"), None).await).0, "invalid_grant");
    assert_eq!(edge_accepts(&auth, &c.access_token).await, Err("token revoked".into()));
}

async fn feed_deltas_converge_under_concurrent_bumps(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let start = auth.feed(None).await.expect("snapshot");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (auth, done) = (auth.clone(), done.clone());
        tokio::spawn(async move {
            let mut state: BTreeMap<String, u64> = BTreeMap::new();
            let mut cursor = start.cursor;
            for e in start.entries {
                state.insert(e.key, e.min_ver);
            }
            let mut polls = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = auth.feed(Some(&cursor)).await.expect("delta");
                assert!(!page.snapshot);
                for e in page.entries {
                    let m = state.entry(e.key).or_insert(0);
                    *m = (*m).max(e.min_ver);
                }
                cursor = page.cursor;
                polls += 1;
                if finished || polls > 100_000 {
                    return (state, polls);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let bumpers = (0..4).map(|w| {
        let auth = auth.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let key = if (i + w) % 2 == 0 {
                    VersionKey::subject(&format!("u{}", (i * 7 + w) % 20)).expect("key")
                } else {
                    VersionKey::session(&format!("s{}", (i * 3 + w) % 20)).expect("key")
                };
                let b = auth.revoke_key(&key).await.expect("bump");
                acked.push((b.key, b.min_ver));
            }
            acked
        })
    });
    let acked: Vec<(String, u64)> = join_all(bumpers).await.into_iter().flat_map(|r| r.expect("task")).collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (state, polls) = poller.await.expect("poller");
    assert!(polls >= 1);
    let fresh: BTreeMap<String, u64> =
        auth.feed(None).await.expect("snapshot").entries.into_iter().map(|e| (e.key, e.min_ver)).collect();
    assert_eq!(state, fresh, "snapshot + deltas == fresh snapshot");
    for (k, m) in acked {
        assert!(state.get(&k).is_some_and(|s| *s >= m), "acknowledged bump {k}={m} seen by the edge");
    }
}

async fn feed_entries_expire_but_minimums_stay(f: Fixture) {
    let mut s = settings(30_000);
    // Whole seconds: a 2 s lifetime leaves at least 1 s before the entry
    // expires (1 s could leave a few ms when the bump is late in a second).
    s.access_ttl_secs = 2;
    s.clock_skew_secs = 0;
    let auth = authority(f.open().await, s);
    // API tokens: a never-expiring one keeps its entries forever.
    let api = auth
        .create_api_token(&ApiTokenRequest { sub: "bob".into(), scope: "read".into(), hosts: vec!["*".into()], days: -1, name: None })
        .await
        .expect("api token");
    edge_accepts(&auth, &api.token).await.expect("api token valid");
    let sub_bump = auth.revoke_key(&VersionKey::subject("bob").expect("key")).await.expect("bump");
    assert_eq!(sub_bump.expires_at, None, "subject with a never-expiring API token: entry never expires");
    assert_eq!(edge_accepts(&auth, &api.token).await, Err("token revoked".into()));
    let api2 = auth
        .create_api_token(&ApiTokenRequest { sub: "carol".into(), scope: "read".into(), hosts: vec!["10.0.0.0/8".into()], days: -1, name: Some("ci".into()) })
        .await
        .expect("api token");
    let api_bump = auth.revoke_key(&VersionKey::session(&api2.id).expect("key")).await.expect("bump");
    assert_eq!(api_bump.expires_at, None);
    let listed = auth.store.list_api_tokens(Some("carol")).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());

    let sid = VersionKey::session("short").expect("key");
    let b = auth.revoke_key(&sid).await.expect("bump");
    let expires = b.expires_at.expect("a session entry expires");
    assert!(expires <= now_secs() + 2);
    let keys = |page: &tollgate_authority::service::FeedAnswer| page.entries.iter().map(|e| e.key.clone()).collect::<HashSet<_>>();
    let before = auth.feed(None).await.expect("snapshot");
    assert!(keys(&before).contains("sid:short"));
    wait_until("the entry to expire", Duration::from_secs(5), || now_secs() >= expires).await;
    let after = auth.feed(None).await.expect("snapshot");
    assert!(!keys(&after).contains("sid:short"), "expired entries leave the feed");
    assert!(keys(&after).contains("sub:bob") && keys(&after).contains(&format!("sid:{}", api2.id)), "never-expiring stay");
    let delta = auth.feed(Some(&before.cursor)).await.expect("delta");
    assert!(delta.entries.is_empty());
    auth.store.gc(now_secs()).await.expect("gc");
    assert_eq!(auth.versions(&[sid]).await.expect("versions"), vec![b.min_ver], "the minimum itself is kept");
}

async fn cursor_survives_restart_and_is_store_bound(mut f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let b1 = auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    let page = auth.feed(None).await.expect("snapshot");
    assert!(page.snapshot);
    assert_eq!(page.entries.len(), 1);
    let cursor = page.cursor;
    drop(auth);
    f.restart_store();
    let auth = authority(f.open().await, settings(30_000));
    let same = auth.feed(Some(&cursor)).await.expect("cursor accepted after restart");
    assert!(same.entries.is_empty());
    assert_eq!(same.cursor, cursor);
    let b2 = auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    assert!(b2.min_ver > b1.min_ver && b2.seq > b1.seq, "versions and sequence keep growing across restarts");
    let delta = auth.feed(Some(&cursor)).await.expect("delta");
    assert_eq!(delta.entries.len(), 1);
    assert_eq!((delta.entries[0].key.as_str(), delta.entries[0].min_ver), ("sub:alice", b2.min_ver));

    let other = authority(f.open_other().await, settings(30_000));
    let (id, seq) = cursor.rsplit_once('.').expect("cursor shape");
    let ahead = format!("{id}.{}", seq.parse::<u64>().expect("seq") + 10_000_000_000);
    let cases: &[(&str, &str, FeedError)] = &[
        ("other store", &cursor, FeedError::Cursor(CursorError::OtherStore)),
        ("garbage", "not-a-cursor", FeedError::Cursor(CursorError::Malformed)),
    ];
    for (name, c, want) in cases {
        assert_eq!(other.feed(Some(c)).await.expect_err(name), *want, "{name}");
    }
    assert_eq!(auth.feed(Some(&ahead)).await.expect_err("ahead"), FeedError::Cursor(CursorError::Ahead));
}

async fn replayed_successor_survives_restart(mut f: Fixture) {
    let auth = authority(f.open().await, settings(60_000));
    let login = auth.login("alice", "read", None).await.expect("login");
    let rt0 = login.refresh_token.expect("rt");
    let first = auth.refresh(&rt0, None).await.expect("rotate");
    drop(auth);
    f.restart_store();
    let auth = authority(f.open().await, settings(60_000));
    let again = auth.refresh(&rt0, None).await.expect("replay after restart");
    assert_eq!((again.access_token, again.refresh_token), (first.access_token, first.refresh_token));
}

/// H1: a bump's feed entry must outlive every access token issued before it:
/// minted credentials (`mint --ttl-secs`, longer than `access_ttl_secs`) and
/// tokens issued under a longer `access_ttl_secs` before a restart.
async fn bump_entries_outlive_every_issued_access_token(f: Fixture) {
    let skew = settings(0).clock_skew_secs;
    let auth = authority(f.open().await, settings(30_000));
    auth.init().await.expect("init");
    let root = auth.mint_for("root", "tollgate:admin", 3600, None).await.expect("mint");
    edge_accepts(&auth, &root).await.expect("minted token valid");
    let b = auth.revoke_key(&VersionKey::subject("root").expect("key")).await.expect("bump");
    assert!(
        b.expires_at.expect("expires") + 1 >= now_secs() + 3600 + skew,
        "entry expires at {:?}, before the minted token (now {} + 3600 + {skew})",
        b.expires_at,
        now_secs()
    );
    assert_eq!(edge_accepts(&auth, &root).await, Err("token revoked".into()));

    // Another store: tokens issued with 900 s, then a restart with 60 s.
    let first = authority(f.open_other().await, settings(30_000));
    first.init().await.expect("init");
    let login = first.login("alice", "read", None).await.expect("login");
    drop(first);
    let mut short = settings(30_000);
    short.access_ttl_secs = 60;
    let second = authority(f.open_other().await, short);
    second.init().await.expect("init");
    let b = second.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    assert!(
        b.expires_at.expect("expires") + 1 >= now_secs() + 900 + skew,
        "entry expires at {:?}, before a 900 s token issued before the restart (now {})",
        b.expires_at,
        now_secs()
    );
    assert_eq!(edge_accepts(&second, &login.access_token).await, Err("token revoked".into()));
}

/// H2: after a lost write (failover, restore) the version counter falls
/// back; a later bump must still land above every `ver` handed out.
async fn revocation_after_lost_writes_still_revokes(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let alice = VersionKey::subject("alice").expect("key");
    let b = auth.revoke_key(&alice).await.expect("bump");
    let login = auth.login("alice", "read", None).await.expect("login");
    let ver = edge_verifier().verify(&login.access_token, TimeCheck::Skip).expect("claims").ver;
    assert_eq!(ver, b.min_ver);
    f.lose_version_writes("sub:alice", b.min_ver - 1).await;
    edge_accepts(&auth, &login.access_token).await.expect("still valid: nothing revoked it");
    let again = auth.revoke_key(&alice).await.expect("bump");
    assert!(again.min_ver > ver, "new minimum {} not above the handed-out ver {ver}", again.min_ver);
    assert_eq!(edge_accepts(&auth, &login.access_token).await, Err("token revoked".into()));
    assert_eq!(
        grant_err(auth.refresh(login.refresh_token.as_deref().expect("rt"), None).await),
        ("invalid_grant".into(), "refresh token revoked".into())
    );
    assert!(again.min_ver <= tollgate::token::claims::MAX_VERSION, "fits the codec");
}

/// M5: inside the grace window a rotated token replays its successor only
/// while that successor is still the family head; once the successor was
/// rotated itself, presenting the old token is reuse.
async fn replay_stops_once_the_successor_rotated(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let login = auth.login("alice", "read", None).await.expect("login");
    let rt0 = login.refresh_token.expect("rt0");
    let first = auth.refresh(&rt0, None).await.expect("rotate rt0");
    let rt1 = first.refresh_token.clone().expect("rt1");
    assert_eq!(auth.refresh(&rt0, None).await.expect("replay").refresh_token.as_deref(), Some(rt1.as_str()));
    let second = auth.refresh(&rt1, None).await.expect("rotate rt1");
    let rt2 = second.refresh_token.clone().expect("rt2");
    assert_eq!(
        grant_err(auth.refresh(&rt0, None).await),
        ("invalid_grant".into(), "refresh token reused; session revoked".into()),
        "rt0 replayed a successor that is no longer the head"
    );
    assert_eq!(grant_err(auth.refresh(&rt2, None).await), ("invalid_grant".into(), "refresh token revoked".into()));
    assert_eq!(edge_accepts(&auth, &second.access_token).await, Err("token revoked".into()));
}

/// M4: RFC 7009 revocation is idempotent: revoking an already revoked
/// family (by its refresh or access token) bumps nothing.
async fn revoking_a_revoked_family_bumps_nothing(f: Fixture) {
    let auth = authority(f.open().await, settings(30_000));
    let login = auth.login("alice", "read", None).await.expect("login");
    let rt = login.refresh_token.clone().expect("rt");
    let sid = VersionKey::session(&sid_of(&login.access_token)).expect("key");
    auth.revoke_token(&rt).await.expect("revoke");
    let min = auth.versions(std::slice::from_ref(&sid)).await.expect("versions");
    assert!(min[0] > 0, "first revocation bumps");
    let cursor = auth.feed(None).await.expect("snapshot").cursor;
    for token in [&rt, &login.access_token, &rt] {
        auth.revoke_token(token).await.expect("revoke again");
    }
    assert_eq!(auth.versions(std::slice::from_ref(&sid)).await.expect("versions"), min, "no further bump");
    let delta = auth.feed(Some(&cursor)).await.expect("delta");
    assert_eq!((delta.entries.len(), delta.cursor), (0, cursor), "nothing new in the feed");
    // A subject bump also counts as revoked: the family's tokens are dead.
    let other = auth.login("alice", "read", None).await.expect("login");
    auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    let cursor = auth.feed(None).await.expect("snapshot").cursor;
    auth.revoke_token(other.refresh_token.as_deref().expect("rt")).await.expect("revoke");
    auth.revoke_token(&other.access_token).await.expect("revoke");
    assert!(auth.feed(Some(&cursor)).await.expect("delta").entries.is_empty(), "already revoked by sub:");
    // A live session's access token still revokes it.
    let third = auth.login("alice", "read", None).await.expect("login");
    auth.revoke_token(&third.access_token).await.expect("revoke");
    assert_eq!(edge_accepts(&auth, &third.access_token).await, Err("token revoked".into()));
}

/// The store floor: a new store fixes its floor (its creation time in µs)
/// together with its id; every key never bumped reads the floor, so every
/// `ver` handed out is at least the floor, and bumps land above it. Feed
/// pages (snapshot and delta) name the store and its floor.
async fn unknown_keys_read_the_floor(f: Fixture) {
    let before_us = now_us();
    let auth = authority(f.open().await, settings(30_000));
    let id = auth.store.identity();
    assert!(
        id.floor >= before_us && id.floor <= now_us(),
        "floor {} is the creation time in µs (opened between {before_us} and now)",
        id.floor
    );
    let unknown = [VersionKey::subject("nobody").expect("key"), VersionKey::session("s_never").expect("key")];
    assert_eq!(auth.versions(&unknown).await.expect("versions"), vec![id.floor, id.floor]);

    let login = auth.login("alice", "read", None).await.expect("login");
    let cc = auth.client_credentials("demo-client", "demo-client-secret", None, LOCAL).await.expect("client token");
    let api = auth
        .create_api_token(&ApiTokenRequest { sub: "bob".into(), scope: "read".into(), hosts: vec!["*".into()], days: -1, name: None })
        .await
        .expect("api token");
    let minted = auth.mint_for("carol", "read", 600, None).await.expect("mint");
    for (what, token) in [("login", &login.access_token), ("client", &cc.access_token), ("api", &api.token), ("mint", &minted)] {
        assert_eq!(ver_of(token), id.floor, "{what}: a never-bumped subject's token carries the floor");
        edge_accepts(&auth, token).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_eq!(api.ver, id.floor);

    let snap = auth.feed(None).await.expect("snapshot");
    assert_eq!((snap.store.as_deref().unwrap_or_default(), snap.floor, snap.snapshot), (id.store_id.as_str(), id.floor, true));
    assert!(snap.entries.is_empty(), "nothing bumped yet: {:?}", snap.entries);
    let b = auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    assert!(b.min_ver > id.floor, "a bump lands above the floor ({} <= {})", b.min_ver, id.floor);
    assert_eq!(edge_accepts(&auth, &login.access_token).await, Err("token revoked".into()));
    let delta = auth.feed(Some(&snap.cursor)).await.expect("delta");
    assert_eq!((delta.store.as_deref().unwrap_or_default(), delta.floor, delta.snapshot), (id.store_id.as_str(), id.floor, false));
    assert_eq!(delta.entries.len(), 1);
    let after = auth.login("alice", "read", None).await.expect("login");
    assert_eq!(ver_of(&after.access_token), b.min_ver, "a token after the bump carries the bump");
}

/// A store lost and created anew (same keys, empty store) revokes every
/// token the old store issued: sessions, client tokens, minted tokens and
/// never-expiring API tokens, also as admin credentials. A cursor of the old
/// store is refused (410) and the edge's snapshot then names the new store.
async fn a_new_store_revokes_every_token_of_the_old_one(f: Fixture) {
    let old = authority(f.open().await, settings(30_000));
    let login = old.login("alice", "read", None).await.expect("login");
    let cc = old.client_credentials("demo-client", "demo-client-secret", None, LOCAL).await.expect("client token");
    let api = old
        .create_api_token(&ApiTokenRequest { sub: "ci".into(), scope: "tollgate:admin".into(), hosts: vec!["*".into()], days: -1, name: None })
        .await
        .expect("api token");
    let admin = old.mint_for("root", "tollgate:admin", 600, None).await.expect("mint");
    // Something bumped in the old store: versions above its floor exist too.
    let bumped = old.revoke_key(&VersionKey::subject("dave").expect("key")).await.expect("bump");
    let dave = old.login("dave", "read", None).await.expect("login");
    assert_eq!(ver_of(&dave.access_token), bumped.min_ver);
    let old_cursor = old.feed(None).await.expect("snapshot").cursor;

    let new = authority(f.open_other().await, settings(30_000));
    let (old_id, new_id) = (old.store.identity(), new.store.identity());
    assert_ne!(old_id.store_id, new_id.store_id);
    assert!(new_id.floor > bumped.min_ver, "the new floor {} is above every version the old store handed out", new_id.floor);
    for (what, token) in [
        ("session", &login.access_token),
        ("bumped subject's session", &dave.access_token),
        ("client", &cc.access_token),
        ("api token", &api.token),
        ("minted admin", &admin),
    ] {
        edge_accepts(&old, token).await.unwrap_or_else(|e| panic!("{what} valid at the old store: {e}"));
        assert_eq!(edge_accepts(&new, token).await, Err("token revoked".into()), "{what} at the new store");
    }
    for token in [&admin, &api.token] {
        let refused = new.authorize_admin(Some(&format!("Bearer {token}")), LOCAL).await.expect_err("old admin credential");
        assert_eq!(refused, tollgate_authority::service::AdminError::InvalidToken("token revoked".into()));
    }
    assert_eq!(grant_err(new.refresh(login.refresh_token.as_deref().expect("rt"), None).await).0, "invalid_grant");

    // The edge's cursor of the old store: 410, then a snapshot of the new one.
    assert_eq!(new.feed(Some(&old_cursor)).await.expect_err("foreign cursor"), FeedError::Cursor(CursorError::OtherStore));
    let snap = new.feed(None).await.expect("snapshot");
    assert_eq!((snap.snapshot, snap.store.as_deref().unwrap_or_default(), snap.floor), (true, new_id.store_id.as_str(), new_id.floor));
    let fresh = new.login("alice", "read", None).await.expect("login at the new store");
    edge_accepts(&new, &fresh.access_token).await.expect("a token of the new store passes");
}

/// The floor is fixed once: reopening the store (and, on Redis, restarting
/// redis-server from its append-only file) reads the same id and floor, and
/// bumps do not move it.
async fn the_floor_never_changes_across_restarts(mut f: Fixture) {
    let first = f.open().await.identity();
    let auth = authority(f.open().await, settings(30_000));
    assert_eq!(auth.store.identity(), first, "a second open reads the same identity");
    auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    let token = auth.login("bob", "read", None).await.expect("login").access_token;
    drop(auth);
    for round in 0..2 {
        f.restart_store();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let auth = authority(f.open().await, settings(30_000));
        assert_eq!(auth.store.identity(), first, "restart {round}");
        assert_eq!(auth.feed(None).await.expect("snapshot").floor, first.floor);
        assert_eq!(auth.versions(&[VersionKey::subject("bob").expect("key")]).await.expect("versions"), vec![first.floor]);
        edge_accepts(&auth, &token).await.expect("a token of this store stays valid across restarts");
    }
}

/// A store created before floors (no floor recorded) keeps working: keys
/// never bumped read 0, as before; its id is unchanged.
async fn a_legacy_store_without_a_floor_reads_zero(f: Fixture) {
    let id = f.open().await.identity();
    f.drop_floor().await;
    let auth = authority(f.open().await, settings(30_000));
    assert_eq!(auth.store.identity(), tollgate_authority::store::Identity { store_id: id.store_id, floor: 0 });
    assert_eq!(auth.versions(&[VersionKey::subject("alice").expect("key")]).await.expect("versions"), vec![0]);
    let login = auth.login("alice", "read", None).await.expect("login");
    assert_eq!(ver_of(&login.access_token), 0);
    assert_eq!(auth.feed(None).await.expect("snapshot").floor, 0);
    let b = auth.revoke_key(&VersionKey::subject("alice").expect("key")).await.expect("bump");
    assert_eq!(edge_accepts(&auth, &login.access_token).await, Err("token revoked".into()));
    assert!(b.min_ver > 0);
}

/// A Redis emptied while the authority runs (FLUSHALL, a Redis restarted
/// without its files) must not serve the empty keyspace under the old
/// identity, where every revoked token would read the old floor and pass
/// again. The first operation finds the identity gone and starts a new
/// store: new id, new floor, every earlier token revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_becomes_a_new_store() {
    let f = Fixture::redis();
    let auth = authority(f.open().await, settings(30_000));
    let before = auth.store.identity();
    let login = auth.login("alice", "read", None).await.expect("login");
    let other = auth.login("bob", "read", None).await.expect("login");
    auth.revoke_key(&VersionKey::session(&sid_of(&login.access_token)).expect("key")).await.expect("bump");
    assert_eq!(edge_accepts(&auth, &login.access_token).await, Err("token revoked".into()));
    let cursor = auth.feed(None).await.expect("snapshot").cursor;
    let Fixture::Redis { server, .. } = &f else { unreachable!() };
    let _: () = common::redis_cmd(&server.url(), &::redis::cmd("FLUSHALL")).await;

    for (what, token) in [("revoked session", &login.access_token), ("valid session", &other.access_token)] {
        assert_eq!(edge_accepts(&auth, token).await, Err("token revoked".into()), "{what} after the flush");
    }
    let after = auth.store.identity();
    assert_ne!(after.store_id, before.store_id, "a new store id");
    assert!(after.floor > before.floor);
    assert_eq!(auth.feed(Some(&cursor)).await.expect_err("old cursor"), FeedError::Cursor(CursorError::OtherStore));
    let snap = auth.feed(None).await.expect("snapshot");
    assert_eq!((snap.store, snap.floor), (Some(after.store_id.clone()), after.floor));
    let fresh = auth.login("alice", "read", None).await.expect("login");
    edge_accepts(&auth, &fresh.access_token).await.expect("new tokens pass");
    // Another instance on the same Redis reads the identity just created.
    let second = authority(f.open().await, settings(30_000));
    assert_eq!(second.store.identity(), after);
}

/// M3, issue 9: credential checks (argon2) are bounded, with separate slots
/// for passwords and client secrets; a check waits up to `hash_wait_ms` for
/// a slot (first come, first served), then answers 503. A check that never
/// ran gives its throttle unit back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_checks_wait_briefly_for_separate_slots() {
    const WAIT: Duration = Duration::from_millis(300);
    let f = Fixture::sqlite();
    let mut s = settings(30_000);
    s.max_concurrent_hashes = 2;
    s.max_concurrent_client_hashes = 1;
    s.hash_wait_ms = WAIT.as_millis() as u64;
    let auth = authority(f.open().await, s);
    let held = auth.hash_slots.clone().acquire_many_owned(2).await.expect("take every password slot");
    // Ten times the principal burst: every one of these gives its unit back.
    for _ in 0..6 {
        let started = std::time::Instant::now();
        let e = auth.password_grant("alice", "alice-password", None, None, LOCAL).await.expect_err("no slot free");
        assert_eq!((e.code(), e.status()), ("temporarily_unavailable", 503), "{e:?}");
        let took = started.elapsed();
        assert!(took >= WAIT && took < WAIT + Duration::from_millis(400), "waited {took:?} for {WAIT:?}");
    }
    let started = std::time::Instant::now();
    auth.client_credentials("demo-client", "demo-client-secret", None, LOCAL).await.expect("client slots are separate");
    assert!(started.elapsed() < WAIT, "the client grant did not wait behind passwords: {:?}", started.elapsed());
    // A slot freed while a check waits is taken by it.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    });
    let started = std::time::Instant::now();
    auth.password_grant("alice", "alice-password", None, None, LOCAL).await.expect("a slot freed within the wait");
    assert!(started.elapsed() >= Duration::from_millis(90), "it waited for the slot: {:?}", started.elapsed());
    release.await.expect("release");
    let client_held = auth.client_hash_slots.clone().acquire_owned().await.expect("the client slot");
    let e = auth.client_credentials("demo-client", "demo-client-secret", None, LOCAL).await.expect_err("no client slot");
    assert_eq!(e.code(), "temporarily_unavailable");
    auth.password_grant("alice", "alice-password", None, None, LOCAL).await.expect("password slots are separate");
    drop(client_held);
    let many = join_all((0..8).map(|_| {
        let auth = auth.clone();
        tokio::spawn(async move { auth.password_grant("alice", "alice-password", None, None, LOCAL).await })
    }))
    .await;
    for r in many {
        match r.expect("task") {
            Ok(_) => {}
            // Eight at once from one address exceed its known-address budget (5).
            Err(e) => assert!(matches!(e.code(), "temporarily_unavailable" | "slow_down"), "{e:?}"),
        }
    }
    assert_eq!(auth.hash_slots.available_permits(), 2, "every slot returned");
    assert_eq!(auth.client_hash_slots.available_permits(), 1, "every client slot returned");
}

/// The throttle's budgets, step by step on the store's limiter (in memory
/// for the embedded store, the Lua script for Redis), in virtual time: the
/// same answers, to the millisecond, on both.
async fn throttle_steps_are_the_same_on_both_stores(f: Fixture) {
    use tollgate_authority::throttle::{Admission::*, Keys, Kind, Limit, Limits, Outcome, Via};
    let l = Limits {
        principal_burst: 3,
        principal_interval_ms: 1000,
        address_burst: 10,
        address_interval_ms: 100,
        known_burst: 2,
        known_interval_ms: 5000,
        known_ms: 60_000,
        booking_hold_ms: 500,
        max_bookings: 4,
    };
    let auth = authority(f.open().await, settings(30_000));
    let limiter = auth.limiter.clone();
    // Virtual time a minute ahead of the clock, so nothing the Redis
    // limiter keeps expires under the test.
    let t0 = tollgate_authority::util::now_ms() + 60_000;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let who = |name: &str, addr: &str| Keys::new(Kind::User, name, ip(addr));
    let deny = |limit, retry_after_ms| Deny { limit, retry_after_ms };
    // (step, user, address, at (ms after t0), expected, then settle with)
    #[allow(clippy::type_complexity)]
    let mut steps: Vec<(&str, String, &str, u64, tollgate_authority::throttle::Admission, Option<Outcome>)> = vec![
        ("burst 1", "alice".into(), "10.0.0.1", 0, Admit(Via::Open), Some(Outcome::Failure)),
        ("burst 2", "alice".into(), "10.0.0.1", 1, Admit(Via::Open), Some(Outcome::Failure)),
        ("burst 3", "alice".into(), "10.0.0.1", 2, Admit(Via::Open), Some(Outcome::Failure)),
        ("spent: A1 books the slot at 1000", "alice".into(), "10.0.0.1", 3, deny(Limit::Principal, 997), None),
        ("A1 asks again: same booking", "alice".into(), "10.0.0.1", 500, deny(Limit::Principal, 500), None),
        ("A2 books the next slot, 2000", "alice".into(), "10.0.0.2", 600, deny(Limit::Principal, 1400), None),
        ("bob is not affected", "bob".into(), "10.9.0.1", 600, Admit(Via::Open), Some(Outcome::Success)),
        ("A1 at its slot, right password", "alice".into(), "10.0.0.1", 1000, Admit(Via::Booked), Some(Outcome::Success)),
        ("A1 is known: own budget 1", "alice".into(), "10.0.0.1", 1001, Admit(Via::Known), Some(Outcome::Failure)),
        ("A1 is known: own budget 2", "alice".into(), "10.0.0.1", 1002, Admit(Via::Known), Some(Outcome::Failure)),
        ("A1's known budget spent", "alice".into(), "10.0.0.1", 1003, deny(Limit::Known, 4998), None),
        ("A2 at its slot", "alice".into(), "10.0.0.2", 2000, Admit(Via::Booked), Some(Outcome::Failure)),
        ("the success gave a unit back", "alice".into(), "10.0.0.3", 2000, Admit(Via::Open), Some(Outcome::Failure)),
        ("A4 books 3000", "alice".into(), "10.0.0.4", 2000, deny(Limit::Principal, 1000), None),
        ("A4 too late: booking lapsed, books anew", "alice".into(), "10.0.0.4", 3501, deny(Limit::Principal, 499), None),
    ];
    steps.push(("erin signs in from a shared address", "erin".into(), "10.0.0.9", 4000, Admit(Via::Open), Some(Outcome::Success)));
    for i in 0..10 {
        steps.push(("one address, many users", format!("carol{i}"), "10.0.0.9", 5000, Admit(Via::Open), Some(Outcome::Failure)));
    }
    steps.push(("the address's budget is spent", "carol10".into(), "10.0.0.9", 5000, deny(Limit::Address, 100), None));
    steps.push(("erin, known there, is not held back", "erin".into(), "10.0.0.9", 5000, Admit(Via::Known), Some(Outcome::Success)));
    for _ in 0..5 {
        steps.push(("never checked: the unit comes back", "dave".into(), "10.0.0.5", 5000, Admit(Via::Open), Some(Outcome::NotAttempted)));
    }
    for (step, user, addr, at, want, settle) in steps {
        let keys = who(&user, addr);
        let got = limiter.admit(&keys, &l, t0 + at).await.expect("admit");
        assert_eq!(got, want, "{step} ({user} from {addr} at +{at} ms)");
        if let (Admit(via), Some(outcome)) = (got, settle) {
            limiter.settle(&keys, &l, via, outcome, t0 + at).await.expect("settle");
        }
    }
}

/// F9: bookings are bounded. Beyond `max_bookings` slots booked ahead an
/// attempt is refused without booking (and books once the queue has room);
/// IPv6 books by /48, so one site holds one booking per principal however
/// many /64s it has; and a booking takes a unit of the address budget.
async fn bookings_are_capped_per_principal_and_grouped_by_48(f: Fixture) {
    use tollgate_authority::throttle::{Admission::*, Keys, Kind, Limit, Limits, Outcome, Via};
    let l = Limits {
        principal_burst: 1,
        principal_interval_ms: 1000,
        address_burst: 3,
        address_interval_ms: 60_000,
        known_burst: 1,
        known_interval_ms: 60_000,
        known_ms: 60_000,
        booking_hold_ms: 500,
        max_bookings: 3,
    };
    let auth = authority(f.open().await, settings(30_000));
    let limiter = auth.limiter.clone();
    let t0 = tollgate_authority::util::now_ms() + 60_000;
    let deny = |limit, retry_after_ms| Deny { limit, retry_after_ms };
    // (step, user, address, at (ms after t0), expected)
    let steps = [
        ("alice's budget spent", "alice", "10.0.0.1", 0, Admit(Via::Open)),
        ("booking 1", "alice", "10.4.0.1", 0, deny(Limit::Principal, 1000)),
        ("booking 2", "alice", "10.4.0.2", 0, deny(Limit::Principal, 2000)),
        ("booking 3", "alice", "2001:db8:1:1::1", 0, deny(Limit::Principal, 3000)),
        ("another /64 of the /48 has its booking", "alice", "2001:db8:1:2::1", 0, deny(Limit::Principal, 3000)),
        ("the queue is full: no booking", "alice", "10.4.0.4", 0, deny(Limit::Bookings, 1000)),
        ("asking again books nothing", "alice", "10.4.0.4", 10, deny(Limit::Bookings, 990)),
        ("nor from a new /48", "alice", "2001:db8:2::1", 10, deny(Limit::Bookings, 990)),
        ("bob is not affected", "bob", "10.4.0.4", 10, Admit(Via::Open)),
        ("the first slot is claimed", "alice", "10.4.0.1", 1000, Admit(Via::Booked)),
        ("room again: 10.4.0.4 books", "alice", "10.4.0.4", 1000, deny(Limit::Principal, 3000)),
        ("the /48's slot, claimed from its other /64", "alice", "2001:db8:1:2::1", 3000, Admit(Via::Booked)),
        // 10.4.0.1: a booking and its claim took two of its three units.
        ("10.4.0.1 on carol: its last unit", "carol", "10.4.0.1", 3000, Admit(Via::Open)),
        ("10.4.0.1's budget is spent", "dave", "10.4.0.1", 3000, deny(Limit::Address, 57_000)),
    ];
    for (step, user, addr, at, want) in steps {
        let keys = Keys::new(Kind::User, user, addr.parse().expect("ip"));
        let got = limiter.admit(&keys, &l, t0 + at).await.expect("admit");
        assert_eq!(got, want, "{step} ({user} from {addr} at +{at} ms)");
        if let Admit(via) = got {
            limiter.settle(&keys, &l, via, Outcome::Failure, t0 + at).await.expect("settle");
        }
    }
}

/// Concurrent attempts on one account from 12 addresses, all at the same
/// instant: exactly the burst is admitted (admission is atomic), and each
/// address books exactly one later slot, whatever it sends meanwhile.
async fn concurrent_attempts_take_exactly_the_budget(f: Fixture) {
    use tollgate_authority::throttle::{Admission, Keys, Kind, Limit, Limits};
    let l = Limits {
        principal_burst: 3,
        principal_interval_ms: 60_000,
        address_burst: 1000,
        address_interval_ms: 1,
        known_burst: 1,
        known_interval_ms: 60_000,
        known_ms: 60_000,
        booking_hold_ms: 30_000,
        max_bookings: 32,
    };
    let auth = authority(f.open().await, settings(30_000));
    let now = tollgate_authority::util::now_ms() + 60_000;
    let answers = join_all((0..60).map(|i| {
        let limiter = auth.limiter.clone();
        let keys = Keys::new(Kind::User, "eve", format!("10.1.0.{}", i % 12).parse().expect("ip"));
        tokio::spawn(async move { (keys.address.clone(), limiter.admit(&keys, &l, now).await.expect("admit")) })
    }))
    .await;
    let mut admitted = 0;
    let mut waits: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for a in answers {
        match a.expect("task") {
            (_, Admission::Admit(_)) => admitted += 1,
            (addr, Admission::Deny { limit: Limit::Principal, retry_after_ms }) => {
                waits.entry(addr).or_default().insert(retry_after_ms);
            }
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted, 3, "exactly the burst");
    assert_eq!(waits.len(), 12, "every address holds a booking");
    assert!(waits.values().all(|w| w.len() == 1), "one booking per address: {waits:?}");
    let mut slots: Vec<u64> = waits.values().flat_map(|w| w.iter().copied()).collect();
    slots.sort_unstable();
    assert_eq!(slots, (1..=12).map(|k| k * 60_000).collect::<Vec<_>>(), "consecutive slots, one each");
}

/// Two authority instances on one Redis share the budgets: failures at one
/// count at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_the_budgets() {
    let f = Fixture::redis();
    let mut s = settings(30_000);
    let t = tollgate_authority::config::ThrottleConfig {
        principal_burst: 2,
        principal_interval_ms: 60_000,
        ..Default::default()
    };
    s.throttle = Some(tollgate_authority::throttle::Limits::from_config(&t));
    let one = authority(f.open().await, s.clone());
    let two = authority(f.open().await, s);
    assert_eq!(one.limiter.kind(), "redis");
    let addr = |i: u8| std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 2, 0, i));
    for (auth, i) in [(&one, 1), (&two, 2)] {
        let e = auth.password_grant("alice", "wrong", None, None, addr(i)).await.expect_err("wrong password");
        assert_eq!(e.code(), "invalid_grant");
    }
    for auth in [&one, &two] {
        let e = auth.password_grant("alice", "alice-password", None, None, addr(3)).await.expect_err("budget spent at the other instance");
        assert_eq!((e.code(), e.status()), ("slow_down", 429), "{e:?}");
    }
    two.password_grant("admin", "admin-password", None, None, addr(3)).await.expect("another user is not affected");
}

/// L5: lifetimes that would overflow `now + ttl` are refused, not a panic
/// (config validation bounds them; the service checks too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_lifetimes_are_refused() {
    let f = Fixture::sqlite();
    let mut s = settings(30_000);
    s.api_token_max_days = u64::MAX;
    s.refresh_ttl_secs = u64::MAX;
    let auth = authority(f.open().await, s);
    let req = ApiTokenRequest { sub: "bob".into(), scope: "read".into(), hosts: vec!["*".into()], days: i64::MAX, name: None };
    let created = tokio::spawn({
        let auth = auth.clone();
        async move { auth.create_api_token(&req).await }
    })
    .await
    .expect("no panic");
    assert!(matches!(created, Err(tollgate_authority::service::ApiTokenError::Invalid(_))), "{created:?}");
    let login = tokio::spawn({
        let auth = auth.clone();
        async move { auth.login("alice", "read", None).await }
    })
    .await
    .expect("no panic");
    assert_eq!(login.expect_err("refused").code(), "temporarily_unavailable");
}

/// Clients blocked in `WAIT` right now, by Redis' own account (`CLIENT
/// LIST`: last command `wait`, flag `b` for blocked).
async fn clients_blocked_in_wait(url: &str) -> usize {
    let list: String = common::redis_cmd(url, ::redis::cmd("CLIENT").arg("LIST")).await;
    list.lines()
        .filter(|l| {
            let field = |name: &str| l.split(' ').find_map(|f| f.strip_prefix(name)).unwrap_or("");
            field("cmd=") == "wait" && field("flags=").contains('b')
        })
        .count()
}

/// M2: with `redis_wait_replicas`, WAIT must not block the connection that
/// reads and other writes share. No replica is attached here, so every
/// write's `WAIT` blocks until its timeout (1 s) and then fails
/// NotReplicated. Synchronised on Redis' own view, not on the clock: all
/// four writes are seen blocked in `WAIT` at once (each on its own
/// connection), and a read is answered while they still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wait_does_not_block_other_requests() {
    use tollgate_authority::store::redis::RedisStore;
    use tollgate_authority::store::StoreError;
    const WRITES: usize = 4;
    let server = common::RedisServer::start();
    let url = server.url();
    let store: Arc<dyn tollgate_authority::store::Store> =
        Arc::new(RedisStore::connect(&url, "{tollgate}:", 1).await.expect("store"));
    let auth = authority(store, settings(30_000));
    // On a loaded machine the WAITs may time out before the read is
    // answered: that round proves nothing either way and is run again.
    for round in 0..5 {
        let writes: Vec<_> = (0..WRITES)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.revoke_key(&VersionKey::subject(&format!("w{round}-{i}")).expect("key")).await })
            })
            .collect();
        let mut most = 0;
        while most < WRITES && !writes.iter().all(|w| w.is_finished()) {
            most = most.max(clients_blocked_in_wait(&url).await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(most, WRITES, "the writes never waited at once: their WAITs share a connection, one after another");
        auth.versions(&[VersionKey::subject("w0").expect("key")]).await.expect("read");
        let read_while_blocked = writes.iter().all(|w| !w.is_finished()) && clients_blocked_in_wait(&url).await == WRITES;
        for w in join_all(writes).await {
            match w.expect("task") {
                Err(StoreError::NotReplicated { wanted: 1, got: 0 }) => {}
                other => panic!("expected NotReplicated, got {other:?}"),
            }
        }
        if read_while_blocked {
            return;
        }
        eprintln!("round {round}: the WAITs ended before the read's answer was seen; again");
    }
    panic!("a read was never answered while the writes were blocked in WAIT: reads wait behind WAIT");
}

/// M1: an evicting Redis could drop version minimums (un-revoking tokens)
/// or rotation records; the store refuses to start on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_refuses_an_evicting_server() {
    use common::RedisServer;
    use tollgate_authority::store::redis::RedisStore;
    let cases: &[(&[&str], bool)] = &[
        (&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"], false),
        (&["--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"], false),
        (&["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"], true),
        (&["--maxmemory", "0", "--maxmemory-policy", "allkeys-lru"], true),
    ];
    for (args, ok) in cases {
        let server = RedisServer::start_with(args);
        let r = RedisStore::connect(&server.url(), "{tollgate}:", 0).await;
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                let m = e.to_string();
                assert!(m.contains("maxmemory-policy") && m.contains("noeviction"), "{args:?}: {m}");
            }
            (r, _) => panic!("{args:?}: got {:?}", r.map(|_| "connected")),
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite()).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::redis()).await
                }
            )*
        }
    };
}

conformance!(
    concurrent_refreshes_of_one_token,
    concurrent_refreshes_of_distinct_tokens,
    reuse_after_grace_revokes_the_family,
    subject_bump_revokes_tokens_and_refresh_families,
    feed_deltas_converge_under_concurrent_bumps,
    feed_entries_expire_but_minimums_stay,
    cursor_survives_restart_and_is_store_bound,
    replayed_successor_survives_restart,
    bump_entries_outlive_every_issued_access_token,
    revocation_after_lost_writes_still_revokes,
    replay_stops_once_the_successor_rotated,
    revoking_a_revoked_family_bumps_nothing,
    unknown_keys_read_the_floor,
    a_new_store_revokes_every_token_of_the_old_one,
    the_floor_never_changes_across_restarts,
    a_legacy_store_without_a_floor_reads_zero,
    throttle_steps_are_the_same_on_both_stores,
    bookings_are_capped_per_principal_and_grouped_by_48,
    concurrent_attempts_take_exactly_the_budget,
);
