//! The long-polling feed (`GET /v1/revocations?after=…&wait=…`) against the
//! real binary over loopback HTTP, on both stores: held requests wake on a
//! bump (of this instance, of another instance on the same Redis, of the
//! CLI), answer after `wait` when nothing happens, answer at once when there
//! is news, beyond the held limit and on shutdown; a lost notification never
//! loses a bump.

mod common;

use common::{Fixture, Server, EDGE_CREDENTIAL};
use tollgate_authority::feed::VersionKey;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every request of these tests is bounded by this.
const REQUEST_LIMIT: Duration = Duration::from_secs(40);

/// One authority process, with a config file of feed settings.
struct Authority {
    server: Server,
    http: Client,
    _config: tempfile::NamedTempFile,
}

impl Authority {
    fn start(store_args: &[String], config: &str) -> Authority {
        let file = tempfile::NamedTempFile::new().expect("config file");
        std::fs::write(file.path(), config).expect("write config");
        let path = file.path().display().to_string();
        let server = Server::start(store_args, &["--config", &path]);
        let http = Client::builder().timeout(REQUEST_LIMIT).build().expect("client");
        Authority { server, http, _config: file }
    }

    async fn admin_token(&self) -> String {
        let r = self
            .http
            .post(self.server.url("/v1/token"))
            .form(&[("grant_type", "password"), ("username", "admin"), ("password", "admin-password")])
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status(), StatusCode::OK);
        let b: Value = r.json().await.expect("json");
        b["access_token"].as_str().expect("access token").to_owned()
    }

    /// `GET /v1/revocations` with the raw query.
    async fn feed(&self, query: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.server.url(&format!("/v1/revocations{query}")))
            .bearer_auth(EDGE_CREDENTIAL)
            .send()
            .await
            .expect("feed request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn snapshot(&self) -> Value {
        let (s, b) = self.feed("").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// Starts a held poll; resolves to its answer and the instant it came.
    fn poll(&self, cursor: &str, wait_ms: u64) -> tokio::task::JoinHandle<(StatusCode, Value, Instant)> {
        let http = self.http.clone();
        let url = self.server.url(&format!("/v1/revocations?after={cursor}&wait={wait_ms}"));
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(EDGE_CREDENTIAL).send().await.expect("poll");
            let status = r.status();
            let body = r.json().await.unwrap_or(Value::Null);
            (status, body, Instant::now())
        })
    }

    /// Bumps `sub:<sub>` through the admin API; returns when it was sent
    /// and when it answered.
    async fn revoke_timed(&self, admin: &str, sub: &str) -> (Instant, Instant) {
        let sent = Instant::now();
        let r = self
            .http
            .post(self.server.url(&format!("/v1/subjects/{sub}/revoke")))
            .bearer_auth(admin)
            .send()
            .await
            .expect("revoke");
        assert_eq!(r.status(), StatusCode::OK);
        (sent, Instant::now())
    }

    /// Bumps `sub:<sub>` through the admin API; returns when it was sent.
    async fn revoke(&self, admin: &str, sub: &str) -> Instant {
        self.revoke_timed(admin, sub).await.0
    }

    async fn metrics(&self) -> String {
        let r = self.http.get(self.server.url("/metrics")).bearer_auth(EDGE_CREDENTIAL).send().await.expect("metrics");
        r.text().await.expect("metrics text")
    }

    /// The value of one series (`name{labels}` exactly as rendered).
    async fn metric(&self, series: &str) -> i64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    /// Waits, bounded, until the series has value `want`.
    async fn await_metric(&self, series: &str, want: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.metric(series).await;
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{series} is {got}, wanted {want} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn await_held(&self, n: i64) {
        self.await_metric("tollgate_authority_feed_held_requests", n, Duration::from_secs(10)).await;
    }
}

fn keys(page: &Value) -> Vec<String> {
    page["entries"].as_array().map_or_else(Vec::new, |e| e.iter().filter_map(|e| e["key"].as_str().map(str::to_owned)).collect())
}

fn cursor(page: &Value) -> String {
    page["cursor"].as_str().expect("cursor").to_owned()
}

fn stores() -> Vec<(&'static str, Fixture)> {
    vec![("sqlite", Fixture::sqlite()), ("redis", Fixture::redis())]
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_answers_within_50ms_of_an_admin_bump() {
    for (store, fixture) in stores() {
        let a = Authority::start(&fixture.server_args(), "");
        let admin = a.admin_token().await;
        // From the admin answer (the bump is done), and from the request.
        let (mut latencies, mut from_request) = (Vec::new(), Vec::new());
        for round in 0..5 {
            let before = a.snapshot().await;
            let poll = a.poll(&cursor(&before), 20_000);
            a.await_held(1).await;
            let sub = format!("user{round}");
            let (sent, bumped) = a.revoke_timed(&admin, &sub).await;
            let (status, page, answered) = poll.await.expect("poll task");
            assert_eq!(status, StatusCode::OK, "{store}: {page}");
            assert_eq!(keys(&page), vec![format!("sub:{sub}")], "{store}: the held request answers the bump");
            assert_eq!(page["snapshot"], false);
            assert_ne!(cursor(&page), cursor(&before), "{store}: the cursor moves past the bump");
            assert_eq!((&page["store"], &page["floor"]), (&before["store"], &before["floor"]));
            latencies.push(answered.saturating_duration_since(bumped));
            from_request.push(answered - sent);
        }
        latencies.sort();
        from_request.sort();
        let shown: Vec<u64> = latencies.iter().map(|d| millis(*d)).collect();
        let shown_request: Vec<u64> = from_request.iter().map(|d| millis(*d)).collect();
        eprintln!("{store}: held feed answer after the admin answer, ms: {shown:?}; after the admin request was sent: {shown_request:?}");
        assert!(latencies[2] <= Duration::from_millis(50), "{store}: median above 50 ms: {shown:?}");
        assert!(from_request[4] <= Duration::from_millis(1000), "{store}: slowest above 1 s: {shown_request:?}");
        assert_eq!(a.metric("tollgate_authority_feed_wakeups_total{cause=\"bump\"}").await, 5, "{store}");
        assert_eq!(a.metric("tollgate_authority_feed_answers_total{kind=\"delta\"}").await, 5, "{store}");
        assert_eq!(a.metric("tollgate_authority_feed_held_requests").await, 0, "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bump_a_held_request_answers_after_wait_with_the_same_cursor() {
    for (store, fixture) in stores() {
        let a = Authority::start(&fixture.server_args(), "");
        let before = a.snapshot().await;
        let asked = Instant::now();
        let (status, page, answered) = a.poll(&cursor(&before), 800).await.expect("poll task");
        let took = answered - asked;
        assert_eq!(status, StatusCode::OK, "{store}: {page}");
        assert!(took >= Duration::from_millis(800), "{store}: answered after {took:?}, before wait");
        assert!(took < Duration::from_millis(800 + 1500), "{store}: answered after {took:?}");
        assert_eq!(page["snapshot"], false);
        assert_eq!(page["entries"], serde_json::json!([]));
        assert_eq!(cursor(&page), cursor(&before), "{store}: the same cursor");
        assert_eq!((&page["store"], &page["floor"]), (&before["store"], &before["floor"]));
        assert!(page["now"].as_u64().is_some());
        assert_eq!(a.metric("tollgate_authority_feed_wakeups_total{cause=\"timeout\"}").await, 1, "{store}");
        assert_eq!(a.metric("tollgate_authority_feed_answers_total{kind=\"empty\"}").await, 1, "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_answers_at_once_and_wait_is_clamped() {
    // Every wait below is clamped to 1500 ms: "at once" means well before it.
    let at_once = Duration::from_millis(700);
    for (store, fixture) in stores() {
        let a = Authority::start(&fixture.server_args(), "feed_max_wait_ms = 1500\n");
        let admin = a.admin_token().await;
        let old = a.snapshot().await;
        a.revoke(&admin, "mallory").await;
        let store_id = old["store"].as_str().expect("store").to_owned();
        let seq: u64 = cursor(&a.snapshot().await).rsplit_once('.').and_then(|(_, s)| s.parse().ok()).expect("seq");
        let foreign = format!("someotherstore.{seq}");
        let ahead = format!("{store_id}.{}", seq + 1_000_000_000_000);
        let old_cursor = cursor(&old);
        // (case, query, status, answer check)
        let cases: Vec<(&str, String, StatusCode, Option<Vec<String>>)> = vec![
            ("entries newer than the cursor", format!("?after={old_cursor}&wait=600000"), StatusCode::OK, Some(vec!["sub:mallory".into()])),
            ("no cursor: a snapshot", "?wait=600000".into(), StatusCode::OK, Some(vec!["sub:mallory".into()])),
            ("a cursor of another store: 410", format!("?after={foreign}&wait=600000"), StatusCode::GONE, None),
            ("a cursor ahead of the store: 410", format!("?after={ahead}&wait=600000"), StatusCode::GONE, None),
            ("a malformed cursor: 410", "?after=garbage&wait=600000".into(), StatusCode::GONE, None),
            ("wait=0: no holding", format!("?after={}&wait=0", cursor(&a.snapshot().await)), StatusCode::OK, Some(vec![])),
            ("wait not a number", format!("?after={old_cursor}&wait=1s"), StatusCode::BAD_REQUEST, None),
            ("wait negative", format!("?after={old_cursor}&wait=-1"), StatusCode::BAD_REQUEST, None),
            ("wait empty", format!("?after={old_cursor}&wait="), StatusCode::BAD_REQUEST, None),
            ("wait twice", format!("?after={old_cursor}&wait=1&wait=2"), StatusCode::BAD_REQUEST, None),
        ];
        for (case, query, want, want_keys) in cases {
            let asked = Instant::now();
            let (status, page) = a.feed(&query).await;
            let took = asked.elapsed();
            assert_eq!(status, want, "{store}: {case}: {page}");
            assert!(took < at_once, "{store}: {case}: took {took:?}");
            match want_keys {
                Some(k) => assert_eq!(keys(&page), k, "{store}: {case}"),
                None => assert!(page["error"].is_string(), "{store}: {case}: {page}"),
            }
            if status == StatusCode::GONE {
                assert_eq!(page["error"], "invalid_cursor", "{store}: {case}");
            }
        }
        // A wait beyond feed_max_wait_ms is clamped to it.
        let current = cursor(&a.snapshot().await);
        for wait in ["600000", "99999999999999999999999"] {
            let asked = Instant::now();
            let (status, page) = a.feed(&format!("?after={current}&wait={wait}")).await;
            let took = asked.elapsed();
            assert_eq!((status, cursor(&page)), (StatusCode::OK, current.clone()), "{store}: {page}");
            assert!(took >= Duration::from_millis(1500) && took < Duration::from_millis(3000), "{store}: wait={wait} took {took:?}");
        }
        assert_eq!(a.metric("tollgate_authority_feed_answers_total{kind=\"gone\"}").await, 3, "{store}");
        assert_eq!(a.metric("tollgate_authority_feed_wakeups_total{cause=\"timeout\"}").await, 2, "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_held_limit_requests_answer_at_once_and_a_gone_client_frees_its_place() {
    for (store, fixture) in stores() {
        let a = Authority::start(&fixture.server_args(), "feed_max_held = 2\n");
        let admin = a.admin_token().await;
        let before = cursor(&a.snapshot().await);
        let held = [a.poll(&before, 20_000), a.poll(&before, 20_000)];
        a.await_held(2).await;
        let asked = Instant::now();
        let (status, page) = a.feed(&format!("?after={before}&wait=20000")).await;
        assert!(asked.elapsed() < Duration::from_secs(1), "{store}: the third waited {:?}", asked.elapsed());
        assert_eq!((status, cursor(&page), keys(&page)), (StatusCode::OK, before.clone(), vec![]), "{store}: {page}");
        assert_eq!(a.metric("tollgate_authority_feed_wakeups_total{cause=\"limit\"}").await, 1, "{store}");
        assert_eq!(a.metric("tollgate_authority_feed_held_requests").await, 2, "{store}");
        // A client that goes away frees its place at once, not at the end of its wait.
        let [gone, kept] = held;
        gone.abort();
        a.await_held(1).await;
        let held = [kept, a.poll(&before, 20_000)];
        a.await_held(2).await;
        a.revoke(&admin, "eve").await;
        for h in held {
            let (status, page, _) = h.await.expect("poll task");
            assert_eq!((status, keys(&page)), (StatusCode::OK, vec!["sub:eve".to_owned()]), "{store}: {page}");
        }
        a.await_held(0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_held_requests_at_once() {
    for (store, fixture) in stores() {
        let mut a = Authority::start(&fixture.server_args(), "");
        let before = cursor(&a.snapshot().await);
        let held: Vec<_> = (0..3).map(|_| a.poll(&before, 30_000)).collect();
        a.await_held(3).await;
        let asked = Instant::now();
        a.server.terminate();
        for h in held {
            let (status, page, answered) = h.await.expect("poll task");
            assert_eq!((status, cursor(&page), keys(&page)), (StatusCode::OK, before.clone(), vec![]), "{store}: {page}");
            let took = answered - asked;
            assert!(took < Duration::from_secs(2), "{store}: released {took:?} after SIGTERM");
        }
        let exited = a.server.wait_exit(Duration::from_secs(5));
        assert!(exited.is_some_and(|s| s.success()), "{store}: exit after SIGTERM: {exited:?}");
        eprintln!("{store}: SIGTERM -> exit in {} ms", millis(asked.elapsed()));
    }
}

/// The CLI on the embedded store announces nothing: the safety re-read
/// catches its bump within `feed_recheck_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_reread_catches_a_bump_of_the_cli_on_sqlite() {
    let fixture = Fixture::sqlite();
    let a = Authority::start(&fixture.server_args(), "feed_recheck_ms = 300\n");
    let before = cursor(&a.snapshot().await);
    let poll = a.poll(&before, 20_000);
    a.await_held(1).await;
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"))
        .args(fixture.server_args())
        .args(["revoke", "subject", "carol"])
        .env("TOLLGATE_LOG", "error")
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{out:?}");
    let revoked = Instant::now();
    let (status, page, answered) = poll.await.expect("poll task");
    assert_eq!((status, keys(&page)), (StatusCode::OK, vec!["sub:carol".to_owned()]), "{page}");
    let took = answered.saturating_duration_since(revoked);
    eprintln!("sqlite: CLI revoke -> held feed answer in {} ms (re-read every 300 ms)", millis(took));
    assert!(took < Duration::from_millis(300 + 1000), "{took:?}");
    assert_eq!(a.metric("tollgate_authority_feed_wakeups_total{cause=\"recheck\"}").await, 1);
}

/// Two instances on one Redis, the safety re-read out of the way (60 s):
/// only the pub/sub notification can wake B within the test.
const NO_RECHECK: &str = "feed_recheck_ms = 60000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_on_one_instance_wakes_a_poller_held_on_another() {
    let fixture = Fixture::redis();
    let a = Authority::start(&fixture.server_args(), NO_RECHECK);
    let b = Authority::start(&fixture.server_args(), NO_RECHECK);
    b.await_metric("tollgate_authority_feed_listener_up", 1, Duration::from_secs(10)).await;
    let admin = a.admin_token().await;
    let mut latencies = Vec::new();
    for round in 0..3 {
        let before = cursor(&b.snapshot().await);
        let poll = b.poll(&before, 20_000);
        b.await_held(1).await;
        let sub = format!("roamer{round}");
        let bumped = a.revoke(&admin, &sub).await;
        let (status, page, answered) = poll.await.expect("poll task");
        assert_eq!((status, keys(&page)), (StatusCode::OK, vec![format!("sub:{sub}")]), "{page}");
        latencies.push(answered.saturating_duration_since(bumped));
    }
    // The CLI runs the same bump script: it announces too.
    let before = cursor(&b.snapshot().await);
    let poll = b.poll(&before, 20_000);
    b.await_held(1).await;
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"))
        .args(fixture.server_args())
        .args(["revoke", "session", "s_from_the_cli"])
        .env("TOLLGATE_LOG", "error")
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{out:?}");
    let bumped = Instant::now();
    let (status, page, answered) = poll.await.expect("poll task");
    assert_eq!((status, keys(&page)), (StatusCode::OK, vec!["sid:s_from_the_cli".to_owned()]), "{page}");
    latencies.push(answered.saturating_duration_since(bumped));
    let shown: Vec<u64> = latencies.iter().map(|d| millis(*d)).collect();
    eprintln!("redis: revoke sent to A (3x admin API; 1x CLI, from its exit) -> answer held on B, ms: {shown:?}");
    for (i, l) in latencies.iter().enumerate() {
        assert!(*l < Duration::from_millis(500), "round {i}: {shown:?}");
    }
    assert_eq!(b.metric("tollgate_authority_feed_wakeups_total{cause=\"bump\"}").await, 4);
}

/// B loses its notifications (its Redis user loses the channel, which
/// disconnects its subscription and refuses a new one): a bump on A is
/// still in B's answer when its wait ends, then B subscribes again once
/// allowed and wakes on the next bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_caught_at_the_next_answer() {
    let fixture = Fixture::redis();
    let Fixture::Redis { server, .. } = &fixture else { unreachable!("a redis fixture") };
    let url = server.url();
    let acl = |args: &[&str]| {
        let mut c = redis::cmd("ACL");
        for a in args {
            c.arg(*a);
        }
        c
    };
    let _: () = common::redis_cmd(&url, &acl(&["SETUSER", "tg-b", "on", ">b-password-0123", "~*", "&*", "+@all"])).await;
    let b_args = vec![
        "--store".to_owned(),
        "redis".to_owned(),
        "--redis-url".to_owned(),
        format!("redis://tg-b:b-password-0123@127.0.0.1:{}/0", server.port),
    ];
    let a = Authority::start(&fixture.server_args(), NO_RECHECK);
    let b = Authority::start(&b_args, NO_RECHECK);
    b.await_metric("tollgate_authority_feed_listener_up", 1, Duration::from_secs(10)).await;
    let admin = a.admin_token().await;

    let _: () = common::redis_cmd(&url, &acl(&["SETUSER", "tg-b", "resetchannels"])).await;
    b.await_metric("tollgate_authority_feed_listener_up", 0, Duration::from_secs(10)).await;
    let before = cursor(&b.snapshot().await);
    let asked = Instant::now();
    let poll = b.poll(&before, 1500);
    b.await_held(1).await;
    a.revoke(&admin, "unheard").await;
    let (status, page, answered) = poll.await.expect("poll task");
    assert_eq!((status, keys(&page)), (StatusCode::OK, vec!["sub:unheard".to_owned()]), "the bump is in the answer: {page}");
    let took = answered - asked;
    assert!(took >= Duration::from_millis(1500), "nothing could wake B before its wait ended, yet it answered after {took:?}");
    assert_eq!(b.metric("tollgate_authority_feed_wakeups_total{cause=\"timeout\"}").await, 1);
    // A bump on B itself still succeeds although its publish is refused
    // (the feed is the truth, the message only a wake-up); the next poll
    // with the answer's cursor goes on from there: nothing lost, nothing twice.
    b.revoke(&admin, "refused-publish").await;
    let (status, next) = b.feed(&format!("?after={}", cursor(&page))).await;
    assert_eq!((status, keys(&next)), (StatusCode::OK, vec!["sub:refused-publish".to_owned()]));

    let _: () = common::redis_cmd(&url, &acl(&["SETUSER", "tg-b", "allchannels"])).await;
    b.await_metric("tollgate_authority_feed_listener_up", 1, Duration::from_secs(15)).await;
    let poll = b.poll(&cursor(&next), 20_000);
    b.await_held(1).await;
    let bumped = a.revoke(&admin, "heard").await;
    let (status, page, answered) = poll.await.expect("poll task");
    assert_eq!((status, keys(&page)), (StatusCode::OK, vec!["sub:heard".to_owned()]), "{page}");
    assert!(answered.saturating_duration_since(bumped) < Duration::from_millis(500), "B woke again on notifications");
}

/// B's subscription is killed (CLIENT KILL) and the bump is made at once,
/// before B can subscribe again: B re-reads when it is back, well before
/// its wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_replaced_and_what_it_missed_is_read() {
    let fixture = Fixture::redis();
    let Fixture::Redis { server, .. } = &fixture else { unreachable!("a redis fixture") };
    let url = server.url();
    let a = Authority::start(&fixture.server_args(), NO_RECHECK);
    let b = Authority::start(&fixture.server_args(), NO_RECHECK);
    b.await_metric("tollgate_authority_feed_listener_up", 1, Duration::from_secs(10)).await;
    let admin = a.admin_token().await;
    for round in 0..3 {
        let before = cursor(&b.snapshot().await);
        let asked = Instant::now();
        let poll = b.poll(&before, 20_000);
        b.await_held(1).await;
        let killed: i64 = common::redis_cmd(&url, redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub")).await;
        assert_eq!(killed, 2, "A's and B's subscriptions");
        let sub = format!("missed{round}");
        a.revoke(&admin, &sub).await;
        let (status, page, answered) = poll.await.expect("poll task");
        assert_eq!((status, keys(&page)), (StatusCode::OK, vec![format!("sub:{sub}")]), "{page}");
        let took = answered - asked;
        assert!(took < Duration::from_secs(5), "round {round}: answered after {took:?}: the wait, not the reconnect");
        for instance in [&a, &b] {
            instance.await_metric("tollgate_authority_feed_listener_up", 1, Duration::from_secs(10)).await;
        }
    }
    let woke = b.metric("tollgate_authority_feed_wakeups_total{cause=\"reconnect\"}").await
        + b.metric("tollgate_authority_feed_wakeups_total{cause=\"bump\"}").await;
    assert_eq!(woke, 3);
    assert_eq!(b.metric("tollgate_authority_feed_wakeups_total{cause=\"timeout\"}").await, 0);
}

/// Bumps racing requests that are about to be held: whatever the order of
/// the request's read and the bump, the request answers the bump quickly (a
/// lost wake-up would hold it until its wait). In process, both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wake_up_is_lost_when_a_bump_races_a_held_request() {
    for (store, fixture) in stores() {
        let auth = common::authority(fixture.open().await, common::settings(1000));
        let mut slowest = Duration::ZERO;
        for round in 0..60u64 {
            let current = auth.feed(None).await.expect("snapshot").cursor;
            let poller = {
                let auth = auth.clone();
                tokio::spawn(async move {
                    let asked = Instant::now();
                    let page = auth.feed_wait(Some(&current), Duration::from_secs(5)).await.expect("feed");
                    (page, asked.elapsed())
                })
            };
            // From "before the request read" to "while it is held".
            tokio::time::sleep(Duration::from_micros((round % 12) * 250)).await;
            let key = VersionKey::subject(&format!("racer{round}")).expect("key");
            auth.revoke_key(&key).await.expect("bump");
            let (page, took) = poller.await.expect("poller");
            assert_eq!(page.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), vec![key.to_string()], "{store}: round {round}");
            slowest = slowest.max(took);
        }
        eprintln!("{store}: 60 races, slowest answer {} ms", millis(slowest));
        assert!(slowest < Duration::from_secs(2), "{store}: a wake-up was lost: {slowest:?}");
        assert_eq!(auth.feed_waiter.held(), 0);
    }
}
