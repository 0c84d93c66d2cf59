//! Connections whose Envoy worker is known. Envoy (`--concurrency 2`) hands
//! each accepted connection to one worker (the kernel's `SO_REUSEPORT`
//! hash), and every request of a connection runs on that worker. Tests of
//! what the filter's workers do for each other (a refresh claimed by one
//! worker and awaited by the other) need to put requests on a chosen worker:
//! [`pinned`] opens connections one at a time and reads, from the ingress
//! listener's per-worker `downstream_cx_total` in the admin's stats, which
//! worker took each one.
//!
//! A [`Pinned`] connection carries one request ([`Pinned::send`] then
//! [`Pinned::answer`]), or is cut off by the client ([`Pinned::reset`]: an
//! RST, the way a client that goes away mid-request looks to Envoy).

use crate::envoy::Envoy;
use crate::http::{self, Request, Response};
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// How long Envoy may take to count an accepted connection.
const ACCEPT_BOUND: Duration = Duration::from_secs(5);

/// A connection to Envoy's listener, accepted by worker `worker`.
pub struct Pinned {
    pub worker: usize,
    addr: SocketAddr,
    stream: TcpStream,
}

impl Pinned {
    /// Writes `req` (without waiting for the answer).
    pub fn send(&mut self, req: &Request) {
        http::write_request(&mut self.stream, self.addr, req).unwrap_or_else(|e| panic!("write {req}: {e}"));
    }

    /// Reads the answer to the request [`Pinned::send`] wrote.
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

/// Connections accepted so far by each worker of the ingress listener.
pub fn accepted(envoy: &Envoy) -> BTreeMap<usize, u64> {
    let r = http::send(envoy.admin, &Request::get("/stats?filter=downstream_cx_total"))
        .unwrap_or_else(|e| panic!("admin /stats: {e}"));
    // Named by the configured address (port 0 in the tests), so: the one
    // listener with workers (the admin's has none).
    r.text()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.starts_with("listener.") && n.contains(".worker_") && n.ends_with(".downstream_cx_total"))
        .filter_map(|(n, v)| {
            let worker = n.split(".worker_").nth(1)?.split('.').next()?.parse().ok()?;
            Some((worker, v.trim().parse().ok()?))
        })
        .collect()
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
    let before = accepted(envoy);
    let stream = TcpStream::connect_timeout(&envoy.listener, http::IO_TIMEOUT).expect("connect to Envoy");
    let start = Instant::now();
    loop {
        let now = accepted(envoy);
        let grew: Vec<usize> = now.iter().filter(|(w, n)| before.get(w).copied().unwrap_or(0) < **n).map(|(w, _)| *w).collect();
        match grew[..] {
            [worker] => return Pinned { worker, addr: envoy.listener, stream },
            [] if start.elapsed() < ACCEPT_BOUND => thread::sleep(Duration::from_millis(5)),
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
