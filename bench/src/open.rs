//! `open`: an open-loop (wrk2-style) load generator. Request i is due at
//! `start + i / rate` whatever happened to the ones before it, and its
//! latency is measured from that due time, not from when it was sent, so a
//! stall is charged to every request it delays (no coordinated omission).
//! Tokens rotate through the same file wrk uses, one per request.
//!
//! Like wrk2, it keeps a fixed set of keep-alive connections (as many as
//! wrk's closed loop uses): a due request goes to an idle connection, or
//! waits in a queue, and the wait counts. No connection is opened during
//! the measurement, so connection setup never lands in the tail.
//!
//! Why not `oha -q`: oha sends one fixed set of headers, so it cannot rotate
//! 10,000 tokens, and a jwt_authn cache would see one token. This is ~100
//! lines on hyper and runs on the load-generator core like wrk.
//!
//! Tokio's timer has 1 ms granularity, far coarser than the 100 µs latencies
//! measured here, so the pacer spins (yielding to the runtime) for the last
//! stretch before each due time instead of sleeping through it.


use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

pub struct Args {
    pub url: String,
    pub tokens: Vec<String>,
    pub rate: u64,
    pub seconds: f64,
    pub connections: usize,
}

pub fn run(a: Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, drive(a))?;
    println!("{out}");
    Ok(())
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    ok: u64,
    non2xx: u64,
    errors: u64,
}

struct Job {
    due: Instant,
    req: hyper::Request<Empty<Bytes>>,
}

async fn drive(a: Args) -> Result<String, String> {
    let uri: hyper::Uri = a.url.parse().map_err(|e| format!("{}: {e}", a.url))?;
    let authority = uri.authority().ok_or("the URL needs host:port")?.to_string();
    let n = (a.rate as f64 * a.seconds) as u64;
    let interval = Duration::from_nanos(1_000_000_000 / a.rate.max(1));
    let tally = Rc::new(RefCell::new(Tally { latencies_ns: Vec::with_capacity(n as usize), ..Default::default() }));

    // The connections, opened before the clock starts.
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Rc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..a.connections.max(1) {
        let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("{authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::task::spawn_local(conn);
        let (rx, tally) = (rx.clone(), tally.clone());
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let res = tokio::time::timeout(Duration::from_secs(5), async {
                    send.ready().await?;
                    let resp = send.send_request(job.req).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                })
                .await;
                let latency = Instant::now() - job.due;
                let mut t = tally.borrow_mut();
                match res {
                    Ok(Ok(status)) => {
                        t.latencies_ns.push(latency.as_nanos() as u64);
                        if status.is_success() {
                            t.ok += 1
                        } else {
                            t.non2xx += 1
                        }
                    }
                    // A broken connection is an error and retires its worker.
                    _ => {
                        t.errors += 1;
                        break;
                    }
                }
            }
        }));
    }

    let mut max_lag = Duration::ZERO;
    let sched0 = schedstat();
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..n {
        let due = start + interval * i as u32;
        // Sleep while the due time is far, spin (yielding) when it is near.
        loop {
            let now = Instant::now();
            if now >= due {
                max_lag = max_lag.max(now - due);
                break;
            }
            if due - now > Duration::from_millis(2) {
                tokio::time::sleep(due - now - Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        let token = &a.tokens[i as usize % a.tokens.len()];
        let mut req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str())).header("host", &authority);
        if token != "-" {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        if tx.send(Job { due, req }).is_err() {
            return Err("every connection failed".into());
        }
    }
    let sent_for = Instant::now() - start;
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = Instant::now() - start;
    let sched1 = schedstat();
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
    Ok(serde_json::json!({
        "rate": a.rate,
        "connections": a.connections,
        "requests": n,
        "ok": t.ok,
        "non2xx": t.non2xx,
        "errors": t.errors,
        "sent_s": sent_for.as_secs_f64(),
        "elapsed_s": elapsed.as_secs_f64(),
        "achieved_rps": (t.ok + t.non2xx) as f64 / elapsed.as_secs_f64(),
        "max_schedule_lag_us": max_lag.as_secs_f64() * 1e6,
        // The generator's own thread over the run: CPU time, and time it was
        // ready to run but waited for its core (another task held it).
        "gen_cpu_us": (sched1.0.saturating_sub(sched0.0)) as f64 / 1e3,
        "gen_runq_wait_us": (sched1.1.saturating_sub(sched0.1)) as f64 / 1e3,
        "p50_us": pct(50.0),
        "p90_us": pct(90.0),
        "p99_us": pct(99.0),
        "p999_us": pct(99.9),
        "max_us": pct(100.0),
    })
    .to_string())
}

/// This thread's (ns on CPU, ns waiting on a run queue) from
/// /proc/thread-self/schedstat; zeros where the kernel has no schedstats.
fn schedstat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
