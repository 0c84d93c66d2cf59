//! Crash: the real `tollgate-authority serve` is SIGKILLed in the middle of
//! a refresh storm and a stream of bumps, then restarted on the same store
//! (for Redis, redis-server is SIGKILLed and restarted from its AOF too).
//! No acknowledged rotation may be undone (a rotated refresh token never
//! works again) and no acknowledged bump may be lost.

mod common;

use common::{authority, settings, Fixture, Server};
use futures::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAINS: usize = 8;
const GRACE_MS: u64 = 300;
const ACKS_BEFORE_KILL: usize = 60;
const MAX_STEPS: usize = 400;

async fn crash_mid_storm(mut f: Fixture) {
    // Sessions and the admin credential come from the CLI side (in-process).
    let (tokens, admin) = {
        let auth = authority(f.open().await, settings(GRACE_MS));
        let mut tokens = Vec::new();
        for i in 0..CHAINS {
            let t = auth.login(&format!("chain{i}"), "read", None).await.expect("login");
            tokens.push(t.refresh_token.expect("rt"));
        }
        (tokens, auth.mint_for("root", "tollgate:admin", 3600, None).await.expect("admin token"))
    };
    let grace = GRACE_MS.to_string();
    let mut server = Server::start(&f.server_args(), &["--refresh-grace-ms", &grace]);
    let http = Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let acks = Arc::new(AtomicUsize::new(0));

    let token_url = server.url("/v1/token");
    let chains: Vec<_> = tokens.into_iter().map(|first| {
        let (http, url, acks) = (http.clone(), token_url.clone(), acks.clone());
        tokio::spawn(async move {
            let mut rotated = Vec::new();
            let mut current = first;
            for _ in 0..MAX_STEPS {
                let r = http.post(&url).form(&[("grant_type", "refresh_token"), ("refresh_token", &current)]).send().await;
                let Ok(r) = r else { break };
                if r.status() != StatusCode::OK {
                    break;
                }
                let Ok(b) = r.json::<Value>().await else { break };
                let Some(next) = b["refresh_token"].as_str() else { break };
                rotated.push(std::mem::replace(&mut current, next.to_owned()));
                acks.fetch_add(1, Ordering::SeqCst);
            }
            rotated
        })
    }).collect();
    let bumps = {
        let (http, base, admin) = (http.clone(), server.base.clone(), admin.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..MAX_STEPS {
                let path = if i % 2 == 0 { format!("/v1/subjects/other{}/revoke", i % 7) } else { format!("/v1/sessions/x{}/revoke", i % 5) };
                let Ok(r) = http.post(format!("{base}{path}")).bearer_auth(&admin).send().await else { break };
                if r.status() != StatusCode::OK {
                    break;
                }
                let Ok(b) = r.json::<Value>().await else { break };
                acked.push((b["key"].as_str().unwrap_or_default().to_owned(), b["min_ver"].as_u64().unwrap_or(u64::MAX)));
            }
            acked
        })
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.load(Ordering::SeqCst) < ACKS_BEFORE_KILL {
        assert!(Instant::now() < deadline, "refresh storm too slow to reach {ACKS_BEFORE_KILL} acks");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill(); // SIGKILL mid-storm
    let rotated: Vec<String> = join_all(chains).await.into_iter().flat_map(|r| r.expect("chain task")).collect();
    let acked_bumps = bumps.await.expect("bump task");
    assert!(rotated.len() >= ACKS_BEFORE_KILL);
    f.restart_store();
    // Past the grace window, so a rotated token could only "work" if its
    // rotation had been lost.
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 200)).await;
    let server = Server::start(&f.server_args(), &["--refresh-grace-ms", &grace]);

    for (i, old) in rotated.iter().enumerate() {
        let r = http.post(server.url("/v1/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", old)]).send().await.expect("request");
        let status = r.status();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!((status, b["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "rotated token #{i} works again");
    }
    let snapshot: Value = http.get(server.url("/v1/revocations")).bearer_auth(common::EDGE_CREDENTIAL).send().await.expect("feed").json().await.expect("json");
    for (key, min) in &acked_bumps {
        let v: Value = http.get(server.url(&format!("/v1/versions?key={key}"))).bearer_auth(common::EDGE_CREDENTIAL).send().await.expect("versions").json().await.expect("json");
        let live = v["versions"][key.as_str()].as_u64().unwrap_or(0);
        assert!(live >= *min, "acknowledged bump {key}={min} lost (now {live})");
        let in_feed = snapshot["entries"].as_array().into_iter().flatten().any(|e| e["key"] == key.as_str() && e["min_ver"].as_u64() >= Some(*min));
        assert!(in_feed, "acknowledged bump {key}={min} missing from the feed snapshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_crash_mid_refresh_storm() {
    crash_mid_storm(Fixture::sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_crash_mid_refresh_storm() {
    crash_mid_storm(Fixture::redis()).await
}
