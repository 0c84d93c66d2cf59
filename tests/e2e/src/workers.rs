//! Envoy's workers one by one. Every harness Envoy runs `--concurrency 2`,
//! and each worker has its own engine: its own copy of the revocation set,
//! its own live-check groups, its own token cache. A property "on every
//! worker" is only shown by requests that land on every worker, which a
//! client does not choose: Envoy hands each accepted connection to one
//! worker, and the connection stays there.
//!
//! So a test pins connections: [`pinnable`] makes the listener hand a
//! new connection to the worker with the fewest (`connection_balance_config:
//! exact_balance`), and [`pin`] opens keep-alive connections one at a time,
//! reading Envoy's per-worker listener stat
//! (`listener.ingress.worker_<n>.downstream_cx_total`) after each to learn
//! which worker accepted it, until every worker holds the number asked for.
//! A request sent on a [`Pinned`] connection is answered by that worker.
//! Tests that need a given number of connections per worker without the
//! exact balancer (the kernel's `SO_REUSEPORT` hash chooses) use [`pinned`];
//! a [`Pinned`] connection can also carry one request written now and
//! answered later ([`Pinned::write`], [`Pinned::answer`]), or be cut off by
//! the client ([`Pinned::reset`]: an RST, the way a client that goes away
//! mid-request looks to Envoy).
//!
//! Also here: the documented revocation bound ([`revocation_bound`]) and
//! [`measure_on_every_worker`], which presents a revoked token on pinned
//! connections until every worker refuses it.

use crate::callouts::{Timing, CLIENT_SLACK};
use crate::envoy::{tail, Envoy, Options};
use crate::faults::FaultProxy;
use crate::http::{self, Request, Response};
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The listener line both shipped configurations share (`tests/config_files.rs`).
const LISTENER_ANCHOR: &str = "  - name: ingress\n";

/// Starts Envoy with `doc`, its `authority` cluster on `authority_port`
/// and a [`pinnable`] listener, and waits (bounded by `within`) until
/// `probe` passes on new connections ([`crate::callouts::ready`]: the first
/// snapshot reached every worker).
pub fn pinnable_edge(doc: &serde_json::Value, authority_port: u16, probe: &Request, within: Duration) -> Envoy {
    let envoy = Envoy::start(&pinnable(Options::with_document(doc).authority(authority_port)));
    assert!(
        crate::callouts::ready(&envoy, probe, within).is_some(),
        "the edge did not allow {probe} within {within:?} of starting; log tail:\n{}",
        tail(&envoy.log(), 30)
    );
    envoy
}

/// The `ingress` listener's stats prefix [`pinnable`] sets (otherwise
/// Envoy names listener stats by the configured address, `127.0.0.1_0`).
pub const LISTENER_STATS: &str = "ingress";

/// `options` with the `ingress` listener balancing connections exactly
/// (each new connection goes to the worker with the fewest), so that
/// [`pin`] fills every worker quickly and deterministically, and its stats
/// under `listener.ingress.` ([`LISTENER_STATS`]).
pub fn pinnable(options: Options) -> Options {
    options.edit_yaml(
        LISTENER_ANCHOR,
        &format!("{LISTENER_ANCHOR}    stat_prefix: {LISTENER_STATS}\n    connection_balance_config: {{ exact_balance: {{}} }}\n"),
        1,
    )
}

/// Envoy's per-worker count of connections the ingress listener accepted:
/// worker index → `downstream_cx_total`. The listener's stats are named by
/// [`LISTENER_STATS`] under [`pinnable`] options, by its configured address
/// otherwise; either way it is the one listener with workers (the admin's
/// has none). Every worker has the stat from the start (0 until it accepts
/// one).
pub fn accepted_per_worker(envoy: &Envoy) -> BTreeMap<usize, u64> {
    let r = http::send(envoy.admin, &Request::get("/stats?filter=downstream_cx_total"))
        .unwrap_or_else(|e| panic!("admin /stats: {e}"));
    assert_eq!(r.status, 200, "admin /stats: {r}");
    let counts: BTreeMap<usize, u64> = r
        .text()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.starts_with("listener.") && n.contains(".worker_") && n.ends_with(".downstream_cx_total"))
        .filter_map(|(n, v)| {
            let worker = n.split(".worker_").nth(1)?.split('.').next()?.parse().ok()?;
            Some((worker, v.trim().parse().ok()?))
        })
        .collect();
    assert!(
        !counts.is_empty(),
        "no per-worker listener stats `listener.<name>.worker_<n>.downstream_cx_total` in admin /stats:\n{}",
        r.text()
    );
    counts
}

/// A keep-alive connection to Envoy's listener, accepted by `worker`.
pub struct Pinned {
    pub worker: usize,
    stream: TcpStream,
    addr: SocketAddr,
}

impl Pinned {
    /// Sends `req` on this connection (so to this worker). Panics when the
    /// connection fails: Envoy keeps a keep-alive connection open after a
    /// local reply too, so a failure here is a finding, not noise.
    pub fn send(&mut self, req: &Request) -> Response {
        http::send_on(&mut self.stream, self.addr, req)
            .unwrap_or_else(|e| panic!("{req} on a connection pinned to worker {}: {e}", self.worker))
    }

    /// Writes `req` (with `Connection: close`) without waiting for the
    /// answer; read it with [`Pinned::answer`].
    pub fn write(&mut self, req: &Request) {
        http::write_request(&mut self.stream, self.addr, req).unwrap_or_else(|e| panic!("write {req}: {e}"));
    }

    /// Reads the answer to the request [`Pinned::write`] wrote.
    pub fn answer(mut self, req: &Request) -> io::Result<Response> {
        http::read_answer(&mut self.stream, req)
    }
    /// Closes the connection with an RST (`SO_LINGER` 0): the client is gone.
    pub fn reset(self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt(2) on a socket this value owns, with a
        // correctly sized `linger`; the fd stays valid until `self` drops.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.stream),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
        drop(self.stream);
    }
}


/// How long [`pin`] waits for Envoy to count one accepted connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens keep-alive connections to `envoy`'s listener one at a time until
/// every worker holds `per_worker` of them, and returns them (sorted by
/// worker). Each connection's worker is the one whose
/// [`accepted_per_worker`] count grew by exactly one while it was opened,
/// so nothing else may open connections to this listener meanwhile (start
/// background clients afterwards). Connections beyond a full worker's
/// share are closed.
pub fn pin(envoy: &Envoy, per_worker: usize) -> Vec<Pinned> {
    let mut counts = accepted_per_worker(envoy);
    let workers: Vec<usize> = counts.keys().copied().collect();
    let mut pinned: Vec<Pinned> = Vec::new();
    let mut spare = Vec::new();
    let full = |pinned: &[Pinned]| workers.iter().all(|w| pinned.iter().filter(|p| p.worker == *w).count() >= per_worker);
    let attempts = 4 * per_worker * workers.len() + 8;
    for _ in 0..attempts {
        if full(&pinned) {
            break;
        }
        let stream = TcpStream::connect_timeout(&envoy.listener, http::IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to Envoy's listener: {e}"));
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        let (now, grew) = loop {
            let now = accepted_per_worker(envoy);
            let grew: Vec<usize> = now
                .iter()
                .filter(|(w, n)| **n > counts.get(w).copied().unwrap_or(0))
                .map(|(w, _)| *w)
                .collect();
            if !grew.is_empty() {
                break (now, grew);
            }
            assert!(Instant::now() < deadline, "Envoy did not count an accepted connection within {ACCEPT_TIMEOUT:?}");
            thread::sleep(Duration::from_millis(5));
        };
        let total = |c: &BTreeMap<usize, u64>| c.values().sum::<u64>();
        assert!(
            grew.len() == 1 && total(&now) == total(&counts) + 1,
            "another client opened connections while pinning: {counts:?} -> {now:?}"
        );
        counts = now;
        let worker = grew[0];
        if pinned.iter().filter(|p| p.worker == worker).count() < per_worker {
            pinned.push(Pinned { worker, stream, addr: envoy.listener });
        } else {
            // Held open while pinning, so the balancer prefers the others.
            spare.push(stream);
        }
    }
    assert!(
        full(&pinned),
        "could not pin {per_worker} connections to each of the workers {workers:?} in {attempts} attempts \
         (got {:?}); log tail:\n{}",
        pinned.iter().map(|p| p.worker).collect::<Vec<_>>(),
        tail(&envoy.log(), 20)
    );
    pinned.sort_by_key(|p| p.worker);
    pinned
}

/// Envoy's requests in progress on the ingress listener (decoded, not yet
/// answered): `http.ingress.downstream_rq_active`.
pub fn active_requests(envoy: &Envoy) -> u64 {
    let r = http::send(envoy.admin, &Request::get("/stats?filter=^http.ingress.downstream_rq_active$"))
        .unwrap_or_else(|e| panic!("admin /stats: {e}"));
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("http.ingress.downstream_rq_active: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no http.ingress.downstream_rq_active in {}", r.text()))
}

/// Opens one connection and waits (bounded) until a worker has counted it.
/// Nothing else may connect meanwhile.
pub fn connect(envoy: &Envoy) -> Pinned {
    let before = accepted_per_worker(envoy);
    let stream = TcpStream::connect_timeout(&envoy.listener, http::IO_TIMEOUT).expect("connect to Envoy");
    let start = Instant::now();
    loop {
        let now = accepted_per_worker(envoy);
        let grew: Vec<usize> = now.iter().filter(|(w, n)| before.get(w).copied().unwrap_or(0) < **n).map(|(w, _)| *w).collect();
        match grew[..] {
            [worker] => return Pinned { worker, addr: envoy.listener, stream },
            [] if start.elapsed() < ACCEPT_TIMEOUT => thread::sleep(Duration::from_millis(5)),
            _ => panic!("cannot tell which worker accepted the connection: before {before:?}, now {now:?}"),
        }
    }
}

/// `per_worker[w]` connections on each worker `w` (connections landing on
/// a worker that has enough are closed). Panics when the kernel keeps
/// choosing one worker (bounded attempts).
pub fn pinned(envoy: &Envoy, per_worker: &[usize]) -> Vec<Vec<Pinned>> {
    let mut out: Vec<Vec<Pinned>> = per_worker.iter().map(|_| Vec::new()).collect();
    for _ in 0..400 {
        if out.iter().zip(per_worker).all(|(have, want)| have.len() >= *want) {
            return out;
        }
        let c = connect(envoy);
        if let Some(have) = out.get_mut(c.worker) {
            if have.len() < per_worker[c.worker] {
                have.push(c);
            }
        }
    }
    panic!(
        "could not open {per_worker:?} connections per worker in 400 attempts (got {:?})",
        out.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// What a round trip of a feed poll may take on this loaded 2-core machine
/// (measured: a few ms idle, rarely above 50 ms under a parallel build).
/// The callout timeout is NOT part of the bound: a poll that takes that long
/// is a failed poll, and the bound is about polls that succeed.
pub const FEED_ROUND_TRIP: Duration = Duration::from_millis(100);

/// The documented revocation bound (docs/configuration.md, `revocation.
/// sync_interval_ms`): a bump visible at the authority is enforced by every
/// worker within the sync interval, one poll's round trip and one tick (the
/// other workers' reload tick), plus what the test client itself adds
/// ([`CLIENT_SLACK`]: its sampling period and scheduling).
pub fn revocation_bound(t: &Timing) -> Duration {
    Duration::from_millis(t.sync_interval_ms + t.tick_ms) + FEED_ROUND_TRIP + CLIENT_SLACK
}

/// Returns right after the edge's next feed poll through `proxy` has been
/// answered: a bump made now is the worst case for the bound (the poll that
/// could have carried it has just read the store, so only the next one,
/// a whole interval later, does). Without this, a test's own rhythm can
/// lock onto the poll's phase and only ever sample the best case.
pub fn right_after_a_poll(proxy: &FaultProxy, t: &Timing) {
    let before = proxy.answered(FEED_PATH);
    let within = Duration::from_millis(3 * t.sync_interval_ms) + Duration::from_secs(5);
    let start = Instant::now();
    while proxy.answered(FEED_PATH) == before {
        assert!(start.elapsed() < within, "no feed poll was answered within {within:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The revocation feed's path (docs/authority-api.md).
pub const FEED_PATH: &str = "/v1/revocations";

/// The documented bound with the round trip measured instead of assumed:
/// the sync interval, the slowest feed poll the fault proxy in front of the
/// authority answered (`proxy`), one tick, and [`CLIENT_SLACK`]. For tests
/// that load the authority, where a poll's round trip is what the load
/// makes it.
pub fn revocation_bound_measured(t: &Timing, proxy: &FaultProxy) -> Duration {
    Duration::from_millis(t.sync_interval_ms + t.tick_ms) + proxy.slowest(FEED_PATH) + CLIENT_SLACK
}

/// What one worker did with a revoked token after the revocation returned.
#[derive(Debug, Clone)]
pub struct WorkerEnforcement {
    pub worker: usize,
    /// When the last request this worker still allowed had been sent.
    pub last_allowed: Option<Duration>,
    /// When this worker's last connection to refuse first refused it.
    pub all_denied: Duration,
    pub samples: usize,
}

/// Presents `request` (a revoked token) on every pinned connection in
/// turn, every ~10 ms, from `since` until `bound` + 300 ms have passed, and
/// checks, per connection: nothing but 200 or 401 "token revoked"; once
/// refused, never allowed again (a worker's minimum never goes backwards);
/// nothing allowed after `bound`; refused in the end. Returns each worker's
/// enforcement; panics naming the worker otherwise.
pub fn measure_on_every_worker(pinned: &mut [Pinned], request: &Request, since: Instant, bound: Duration) -> Vec<WorkerEnforcement> {
    let mut first_denied: Vec<Option<Duration>> = vec![None; pinned.len()];
    let mut last_allowed: Vec<Option<Duration>> = vec![None; pinned.len()];
    let mut samples = vec![0usize; pinned.len()];
    let mut violations = Vec::new();
    while since.elapsed() < bound + Duration::from_millis(300) {
        for (i, conn) in pinned.iter_mut().enumerate() {
            let sent = since.elapsed();
            let r = conn.send(request);
            samples[i] += 1;
            let w = conn.worker;
            match r.status {
                200 => {
                    last_allowed[i] = Some(sent);
                    if sent > bound {
                        violations.push(format!("worker {w} (connection {i}) allowed it at {sent:?}"));
                    }
                    if let Some(d) = first_denied[i] {
                        violations.push(format!("worker {w} (connection {i}) refused it at {d:?}, then allowed it at {sent:?}"));
                    }
                }
                401 if r.json()["error_description"] == "token revoked" => {
                    first_denied[i].get_or_insert(since.elapsed());
                }
                _ => violations.push(format!("worker {w} (connection {i}) answered at {sent:?}: {r}")),
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(violations.is_empty(), "{request}: the revoked token was not refused by every worker within {bound:?}: {violations:#?}");
    let mut per_worker: BTreeMap<usize, WorkerEnforcement> = BTreeMap::new();
    for (i, conn) in pinned.iter().enumerate() {
        let denied = first_denied[i].unwrap_or_else(|| panic!("{request}: worker {} never refused it", conn.worker));
        let e = per_worker.entry(conn.worker).or_insert(WorkerEnforcement {
            worker: conn.worker,
            last_allowed: None,
            all_denied: Duration::ZERO,
            samples: 0,
        });
        e.all_denied = e.all_denied.max(denied);
        e.last_allowed = e.last_allowed.max(last_allowed[i]);
        e.samples += samples[i];
    }
    per_worker.into_values().collect()
}
