//! A fault-injecting HTTP/1.1 proxy between Envoy's `authority` cluster and
//! the real authority. In [`Fault::PassThrough`] it forwards every request
//! unchanged (the real authority stays the source of truth) and counts them
//! by path; the other modes break the authority in one defined way each.
//!
//! Envoy keeps upstream connections alive, so the proxy serves keep-alive
//! downstream and makes one connection per request upstream.

use crate::echo;
use crate::http::{self, Request};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the proxy (that is, "the authority", as Envoy sees it) behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the real authority. If it is down, close the connection.
    PassThrough,
    /// Nothing listens: connections are refused (open ones are closed).
    Refuse,
    /// Hold each request this long before forwarding it.
    Delay(Duration),
    /// Answer every request with this status and a non-JSON body.
    Status(u16),
    /// Answer 200 `application/json` with a body that is not JSON.
    Garbage,
    /// Answer 200 `application/json` with a body of this many bytes.
    Oversized(usize),
}

struct Shared {
    fault: Mutex<Fault>,
    /// Faults for one path each (query excluded), over `fault`.
    by_path: Mutex<BTreeMap<String, Fault>>,
    target: Mutex<SocketAddr>,
    /// Requests received, by path without the query.
    counts: Mutex<BTreeMap<String, u64>>,
    /// Requests answered (the answer written back to Envoy), by path.
    answered: Mutex<BTreeMap<String, u64>>,
    /// The longest time from a request's arrival to its answer, by path.
    slowest: Mutex<BTreeMap<String, Duration>>,
    /// Paths held this long before being forwarded, in [`Fault::PassThrough`].
    path_delays: Mutex<BTreeMap<String, Duration>>,
    stop: AtomicBool,
}

/// The proxy. Stops on drop.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::PassThrough),
            by_path: Mutex::new(BTreeMap::new()),
            target: Mutex::new(target),
            counts: Mutex::new(BTreeMap::new()),
            answered: Mutex::new(BTreeMap::new()),
            slowest: Mutex::new(BTreeMap::new()),
            path_delays: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(Some(listener), port, s))
            .expect("spawn the fault proxy");
        FaultProxy { port, shared }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
        // Let the accept loop close or reopen the listener.
        thread::sleep(Duration::from_millis(20));
    }

    /// Breaks requests for `path` only (query excluded) in one way, or,
    /// with `None`, lets them follow [`FaultProxy::set`] again: e.g. stall
    /// the revocation feed while live checks pass. `Fault::Refuse` here
    /// closes the connection a request for `path` arrives on.
    pub fn set_for(&self, path: &str, fault: Option<Fault>) {
        let mut by_path = self.shared.by_path.lock().unwrap();
        match fault {
            Some(f) => by_path.insert(path.to_owned(), f),
            None => by_path.remove(path),
        };
    }

    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().unwrap()
    }

    /// Requests received so far for `path` (query excluded).
    pub fn count(&self, path: &str) -> u64 {
        self.shared.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// While passing through, holds every request for `path` (query
    /// excluded) `delay` before forwarding it (`None`: no longer): one
    /// endpoint stalls, the others (the revocation feed) answer at once.
    /// A held request is forwarded even if Envoy gave up on it meanwhile,
    /// as a slow authority would still act on it.
    pub fn delay_path(&self, path: &str, delay: Option<Duration>) {
        let mut delays = self.shared.path_delays.lock().unwrap();
        match delay {
            Some(d) => delays.insert(path.to_owned(), d),
            None => delays.remove(path),
        };
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.counts.lock().unwrap().clone()
    }

    /// The longest round trip of a request for `path` seen here so far
    /// (arrival to answer written, authority and proxy included).
    pub fn slowest(&self, path: &str) -> Duration {
        self.shared.slowest.lock().unwrap().get(path).copied().unwrap_or_default()
    }

    /// Requests for `path` whose answer has been written back to Envoy so
    /// far: after it grows, the authority has answered (read its store for)
    /// that request.
    pub fn answered(&self, path: &str) -> u64 {
        self.shared.answered.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn fault(s: &Shared) -> Fault {
    *s.fault.lock().unwrap()
}

fn accept_loop(mut listener: Option<TcpListener>, port: u16, s: Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        if fault(&s) == Fault::Refuse {
            // Closing the listening socket: new connections are refused.
            listener = None;
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    l.set_nonblocking(true).expect("nonblocking listener");
                    listener.insert(l)
                }
                Err(_) => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        l.set_nonblocking(true).expect("nonblocking listener");
        match l.accept() {
            Ok((stream, _)) => {
                let s = s.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &s);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// One downstream (Envoy) connection: requests until it closes.
fn serve(stream: TcpStream, s: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(req) = read_request(&mut reader)? else { return Ok(()) };
        let arrived = std::time::Instant::now();
        let path = req.target.split('?').next().unwrap_or("").to_owned();
        *s.counts.lock().unwrap().entry(path.clone()).or_default() += 1;
        let by_path = s.by_path.lock().unwrap().get(&path).copied();
        let answer = match by_path.unwrap_or_else(|| fault(s)) {
            Fault::Refuse => return Ok(()),
            Fault::PassThrough => {
                let hold = s.path_delays.lock().unwrap().get(&path).copied();
                if let Some(d) = hold {
                    thread::sleep(d);
                }
                forward(s, &req)
            }
            Fault::Delay(d) => {
                thread::sleep(d);
                forward(s, &req)
            }
            Fault::Status(code) => Some(raw(code, "text/html", b"<html><body>authority is having a bad day</body></html>")),
            Fault::Garbage => Some(raw(200, "application/json", b"<html>\x00\xff not json {{{")),
            Fault::Oversized(n) => {
                let mut body = Vec::with_capacity(n);
                body.extend_from_slice(b"{\"pad\":\"");
                body.resize(n - 2, b'a');
                body.extend_from_slice(b"\"}");
                Some(raw(200, "application/json", &body))
            }
        };
        match answer {
            Some(bytes) => {
                writer.write_all(&bytes)?;
                writer.flush()?;
                let took = arrived.elapsed();
                let mut slowest = s.slowest.lock().unwrap();
                let longest = slowest.entry(path.clone()).or_default();
                *longest = (*longest).max(took);
                drop(slowest);
                *s.answered.lock().unwrap().entry(path).or_default() += 1;
            }
            // The authority is down: so is this connection.
            None => return Ok(()),
        }
    }
}

fn raw(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Forwards `req` to the real authority; `None` when it cannot be reached.
fn forward(s: &Shared, req: &Request) -> Option<Vec<u8>> {
    let target = *s.target.lock().unwrap();
    let r = http::send(target, req).ok()?;
    let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
    for (n, v) in &r.headers {
        if !matches!(
            n.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", r.body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    Some(bytes)
}

/// Reads one request (the echo server's reader); `None` at a clean end.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let Some(head) = echo::read_head(reader)? else { return Ok(None) };
    let body = echo::read_body(reader, &head.headers)?;
    let mut req = Request::new(&head.method, &head.path);
    for (name, value) in &head.headers {
        // The client sets Host, Content-Length and Connection itself.
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            req = req.header(name, value);
        }
    }
    Ok(Some(req.body(&body)))
}
