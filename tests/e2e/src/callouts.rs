//! Shared pieces of the callout specifications (`tests/revocation.rs`,
//! `tests/refresh.rs`, `tests/failures.rs`, `tests/feed_load.rs`): the demo
//! document with test intervals, the bounds computed from it, bounded
//! polling, and reading `Set-Cookie`.

use crate::envoy::{demo_document, tail, Envoy, Options};
use crate::http::{self, Request, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The full demo document (authority, revocation, refresh, the `fresh`
/// admin rule), with test intervals: feed every `sync_interval_ms`,
/// callouts time out after `timeout_ms`.
pub fn document(sync_interval_ms: u64, max_staleness_ms: u64, timeout_ms: u64) -> serde_json::Value {
    let mut doc = demo_document();
    doc["authority"]["timeout_ms"] = timeout_ms.into();
    doc["revocation"]["sync_interval_ms"] = sync_interval_ms.into();
    doc["revocation"]["max_staleness_ms"] = max_staleness_ms.into();
    doc
}

/// The filter's timing, read from a document, and the bounds it implies.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub sync_interval_ms: u64,
    pub max_staleness_ms: u64,
    pub timeout_ms: u64,
    /// The root context's tick (src/glue/worker.rs `Worker::tick`):
    /// `sync_interval / 4`, clamped to 20..=100 ms.
    pub tick_ms: u64,
}

/// What the test client adds to any bound: its own polling period and
/// scheduling on a loaded 2-core machine.
pub const CLIENT_SLACK: Duration = Duration::from_millis(150);

impl Timing {
    pub fn of(doc: &serde_json::Value) -> Timing {
        let sync = doc["revocation"]["sync_interval_ms"].as_u64().unwrap_or(1000);
        Timing {
            sync_interval_ms: sync,
            max_staleness_ms: doc["revocation"]["max_staleness_ms"].as_u64().unwrap_or(5 * sync),
            timeout_ms: doc["authority"]["timeout_ms"].as_u64().unwrap_or(1000),
            tick_ms: (sync / 4).clamp(20, 100),
        }
    }

    /// How long a test waits for a bump to be enforced everywhere when the
    /// bound itself is not what it checks: the poll interval (polls start on
    /// a tick, so + one tick), one poll at worst timing out, and the other
    /// workers' reload tick. The documented bound, which tests of the bound
    /// assert, leaves the timeout out: [`crate::workers::revocation_bound`].
    pub fn revocation_deadline(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms + self.tick_ms + self.timeout_ms + self.tick_ms)
            + CLIENT_SLACK
    }

    /// From the last good sync to `on_stale` taking effect: the allowed
    /// staleness, then the next tick that looks at it.
    pub fn staleness_bound(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms + self.tick_ms) + CLIENT_SLACK
    }

    /// From the authority answering again to a good sync everywhere: the
    /// interval, a timed-out poll still in flight, a fresh poll, a reload.
    pub fn recovery_bound(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms + 2 * self.timeout_ms + 3 * self.tick_ms)
            + CLIENT_SLACK
    }

    /// The longest a paused request may wait on one callout: its timeout,
    /// and the tick that notices a lost answer.
    pub fn callout_bound(&self) -> Duration {
        Duration::from_millis(self.timeout_ms + 500 + 2 * self.tick_ms) + CLIENT_SLACK
    }
}

/// Calls `f` every `every` until it returns `Some` or `within` has passed.
/// Returns the value and how long it took.
pub fn poll<T>(within: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some((v, start.elapsed()));
        }
        if start.elapsed() > within {
            return None;
        }
        thread::sleep(every);
    }
}

/// Starts Envoy with `doc`, its `authority` cluster on `authority_port`, and
/// waits (bounded by `within`) until `probe` gets a 200 ten times in a row
/// over 200 ms, on new connections: the first snapshot has arrived and every
/// worker has loaded it (a worker loads the shared set on its tick; until
/// then it answers 503 "revocation state not yet known", as specified).
pub fn edge(doc: &serde_json::Value, authority_port: u16, probe: &Request, within: Duration) -> Envoy {
    let envoy = Envoy::start(&Options::with_document(doc).authority(authority_port));
    let ready = ready(&envoy, probe, within);
    assert!(
        ready.is_some(),
        "the edge did not allow {probe} within {within:?} of starting; log tail:\n{}",
        tail(&envoy.log(), 30)
    );
    envoy
}

/// Waits (bounded) until `probe` gets ten 200s in a row, 20 ms apart.
pub fn ready(envoy: &Envoy, probe: &Request, within: Duration) -> Option<Duration> {
    let mut run = 0;
    poll(within, Duration::from_millis(20), || {
        match http::send(envoy.listener, probe) {
            Ok(r) if r.status == 200 => run += 1,
            _ => run = 0,
        }
        (run >= 10).then_some(())
    })
    .map(|(_, took)| took)
}

/// `GET /api/items` with `Authorization: Bearer <token>`.
pub fn api(token: &str) -> Request {
    Request::get("/api/items").bearer(token)
}

/// The `Set-Cookie` lines of a response.
pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The value `Set-Cookie` gives cookie `name`, and the line's attributes.
pub fn set_cookie(r: &Response, name: &str) -> Option<(String, String)> {
    set_cookies(r).into_iter().find_map(|line| {
        let (pair, attrs) = line.split_once(';').unwrap_or((&line, ""));
        let (n, v) = pair.split_once('=')?;
        (n.trim() == name).then(|| (v.trim().to_owned(), attrs.trim().to_owned()))
    })
}

/// Asserts that a denial is RFC 6750 `invalid_token` for `description`.
pub fn assert_denied(r: &Response, status: u16, description: &str) {
    assert_eq!(r.status, status, "want {status} {description:?}: {r}");
    assert_eq!(r.json()["error_description"], description, "{r}");
}

/// Asserts that Envoy's log shows no panic, no Wasm trap and no crash, on
/// either host: a panic in the Wasm filter traps its VM; the native module
/// catches it at the Envoy boundary (answers 500, logs only where); a crash
/// is Envoy's signal handler's backtrace.
pub fn assert_no_crash(log: &str) {
    for needle in [
        "panicked",
        "Uncaught RuntimeError",
        "Function: proxy_on",
        "wasm trap",
        "Wasm VM failed",
        "caught at the Envoy boundary",
        "Caught Segmentation fault",
        "Caught Aborted",
        "Backtrace (use",
    ] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(needle)).take(5).collect();
        assert!(hits.is_empty(), "Envoy's log shows `{needle}`:\n{}", hits.join("\n"));
    }
}

/// A background client that sends `request` through `envoy` every ~20 ms
/// (one connection each) and records every answer that is not 200.
pub struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(u64, Vec<String>)>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Watch {
    pub fn start(listener: std::net::SocketAddr, request: Request) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((0u64, Vec::new())));
        let (s, w) = (stop.clone(), seen.clone());
        let start = Instant::now();
        let handle = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let r = http::send(listener, &request);
                let mut w = w.lock().unwrap();
                w.0 += 1;
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => w.1.push(format!("at {:?}: {}", start.elapsed(), r.text())),
                    Err(e) => w.1.push(format!("at {:?}: {e}", start.elapsed())),
                }
                drop(w);
                thread::sleep(Duration::from_millis(20));
            }
        });
        Watch { stop, seen, handle: Some(handle) }
    }

    /// Stops; returns (requests sent, answers that were not 200).
    pub fn stop(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the edge did with a revoked token after the revocation returned.
#[derive(Debug, Clone)]
pub struct Enforcement {
    /// When the last request that was still allowed had been sent.
    pub last_allowed: Option<Duration>,
    /// When the first denial ("token revoked") arrived.
    pub first_denied: Duration,
    pub samples: usize,
}

/// Sends `request` (one connection each, every 10 ms) from `since` until
/// `bound` + 300 ms have passed, and checks: every request sent after
/// `bound` is denied 401 "token revoked"; nothing but 200 or that denial
/// before. Panics otherwise.
pub fn measure_revocation(envoy: &Envoy, request: &Request, since: Instant, bound: Duration) -> Enforcement {
    let mut last_allowed = None;
    let mut first_denied = None;
    let mut samples = 0;
    let mut late = Vec::new();
    while since.elapsed() < bound + Duration::from_millis(300) {
        let sent = since.elapsed();
        let r = envoy.send(request);
        samples += 1;
        match r.status {
            200 => {
                last_allowed = Some(sent);
                if sent > bound {
                    late.push(format!("allowed at {sent:?}"));
                }
            }
            401 if r.json()["error_description"] == "token revoked" => {
                first_denied.get_or_insert(since.elapsed());
            }
            _ => late.push(format!("unexpected answer at {sent:?}: {r}")),
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        late.is_empty(),
        "{request}: a revoked token was not denied within {bound:?}: {late:?}"
    );
    Enforcement {
        last_allowed,
        first_denied: first_denied.unwrap_or_else(|| panic!("{request}: never denied")),
        samples,
    }
}
