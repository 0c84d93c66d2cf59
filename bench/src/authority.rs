//! `authority`: load on the authority's two hot endpoints, to size a fleet.
//!
//! - `feed`: what every Envoy's poller sends. One snapshot for a cursor,
//!   then each connection repeats `GET /v1/revocations?after=<cursor>` with
//!   the edge credential, closed loop: nothing changes meanwhile, so every
//!   answer is the steady-state empty delta a fleet mostly sees.
//! - `refresh`: `POST /v1/token` with `grant_type=refresh_token`, closed
//!   loop. Every answer rotates the family (a store write), and the next
//!   request of that connection presents the new refresh token, as a client
//!   does; a replayed token would be answered from the grace window and
//!   measure less. One family per connection, each started with one
//!   password grant before the clock starts.
//! - `bump`: `POST /v1/subjects/<sub>/revoke` at a fixed rate (an admin
//!   token from one password grant), the load beside the feed phase.
//!
//! Why not oha: the refresh chain needs each request's body to come from the
//! previous answer, which a fixed-request generator cannot do; one generator
//! for all three keeps the numbers comparable.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct Args {
    pub url: String,
    pub mode: String,
    pub seconds: f64,
    pub connections: usize,
    /// `bump` only: bumps per second.
    pub rate: u64,
}

const USER: (&str, &str) = ("alice", "alice-password");
const ADMIN: (&str, &str) = ("admin", "admin-password");

pub fn run(a: Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, drive(a))?;
    println!("{out}");
    Ok(())
}

struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Conn {
    async fn open(authority: &str) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("{authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::task::spawn_local(conn);
        Ok(Conn { send, authority: authority.to_owned() })
    }

    /// One request; the status and the body.
    async fn call(&mut self, method: &str, path: &str, auth: Option<&str>, form: Option<String>) -> Result<(u16, Bytes), String> {
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.authority);
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        let body = match form {
            Some(f) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let fut = async {
            self.send.ready().await?;
            let resp = self.send.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 10 s".into()),
        }
    }
}

/// A password grant; the access and refresh tokens.
async fn login(c: &mut Conn, who: (&str, &str), scope: Option<&str>) -> Result<(String, String), String> {
    let mut form = format!("grant_type=password&username={}&password={}", who.0, who.1);
    if let Some(s) = scope {
        form.push_str(&format!("&scope={}", s.replace(' ', "+").replace(':', "%3A")));
    }
    let (status, body) = c.call("POST", "/v1/token", None, Some(form)).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| format!("login as {}: {status}, not JSON", who.0))?;
    match (status, v["access_token"].as_str(), v["refresh_token"].as_str()) {
        (200, Some(a), Some(r)) => Ok((a.to_owned(), r.to_owned())),
        _ => Err(format!("login as {}: {status} {}", who.0, v["error"])),
    }
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    ok: u64,
    status: BTreeMap<u16, u64>,
    errors: u64,
}

async fn drive(a: Args) -> Result<String, String> {
    let uri: hyper::Uri = a.url.parse().map_err(|e| format!("{}: {e}", a.url))?;
    let authority = uri.authority().ok_or("the URL needs host:port")?.to_string();
    let credential = std::env::var(crate::gen::CREDENTIAL_ENV).unwrap_or_default();
    let n = a.connections.max(1);
    let tally = Rc::new(RefCell::new(Tally::default()));

    // Everything that is not the measured request happens before the clock.
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(&authority).await?);
    }
    let cursor = if a.mode == "feed" {
        let (status, body) = conns[0].call("GET", "/v1/revocations", Some(&credential), None).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| format!("feed snapshot: {status}, not JSON"))?;
        let c = v["cursor"].as_str().ok_or(format!("feed snapshot: {status} {}", v["error"]))?;
        c.to_owned()
    } else {
        String::new()
    };
    let mut refresh_tokens = Vec::new();
    let mut admin = String::new();
    match a.mode.as_str() {
        "refresh" => {
            for c in conns.iter_mut() {
                refresh_tokens.push(login(c, USER, None).await?.1);
            }
        }
        "bump" => admin = login(&mut conns[0], ADMIN, Some("tollgate:admin")).await?.0,
        "feed" => {}
        m => return Err(format!("--mode {m}: feed, refresh or bump")),
    }

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let mut tasks = Vec::new();
    if a.mode == "bump" {
        // Open loop on one connection: bump i is due at start + i / rate.
        let mut c = conns.remove(0);
        let interval = Duration::from_nanos(1_000_000_000 / a.rate.max(1));
        let tally = tally.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut i: u32 = 0;
            loop {
                let due = start + interval * i;
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let t0 = Instant::now();
                let res = c.call("POST", &format!("/v1/subjects/bench-{i}/revoke"), Some(&admin), None).await;
                record(&tally, t0, res.map(|(s, _)| s));
                i += 1;
            }
        }));
    } else {
        for (k, mut c) in conns.into_iter().enumerate() {
            let tally = tally.clone();
            let path = format!("/v1/revocations?after={cursor}");
            let credential = credential.clone();
            let mut refresh = refresh_tokens.get(k).cloned().unwrap_or_default();
            let feed = a.mode == "feed";
            tasks.push(tokio::task::spawn_local(async move {
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let res = if feed {
                        c.call("GET", &path, Some(&credential), None).await.map(|(s, _)| s)
                    } else {
                        let form = format!("grant_type=refresh_token&refresh_token={refresh}");
                        c.call("POST", "/v1/token", None, Some(form)).await.and_then(|(s, body)| {
                            if s == 200 {
                                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                                refresh = v["refresh_token"].as_str().ok_or("no refresh_token in a 200")?.to_owned();
                            }
                            Ok(s)
                        })
                    };
                    // A broken connection or a refused refresh chain ends this worker.
                    let stop = match &res {
                        Err(_) => true,
                        Ok(s) => !feed && *s != 200,
                    };
                    record(&tally, t0, res);
                    if stop {
                        break;
                    }
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut t = tally.borrow_mut();
    t.latencies_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &t.latencies_ns;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[i.clamp(1, v.len()) - 1] as f64 / 1000.0
    };
    let status: BTreeMap<String, u64> = t.status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Ok(json!({
        "mode": a.mode,
        "connections": n,
        "requests": t.latencies_ns.len(),
        "ok": t.ok,
        "status": status,
        "errors": t.errors,
        "elapsed_s": elapsed,
        "rps": t.ok as f64 / elapsed.max(1e-9),
        "p50_us": pct(50.0),
        "p99_us": pct(99.0),
    })
    .to_string())
}

fn record(tally: &Rc<RefCell<Tally>>, t0: Instant, res: Result<u16, String>) {
    let mut t = tally.borrow_mut();
    match res {
        Ok(s) => {
            t.latencies_ns.push(t0.elapsed().as_nanos() as u64);
            *t.status.entry(s).or_default() += 1;
            if (200..300).contains(&s) {
                t.ok += 1;
            }
        }
        Err(_) => t.errors += 1,
    }
}
