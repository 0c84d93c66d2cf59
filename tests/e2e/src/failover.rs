//! Pieces for Redis failover tests: a TCP proxy whose target a test
//! switches (the address the authority's `--redis-url` names, as a
//! Sentinel-aware proxy or a DNS switch would move it), and plain RESP
//! commands to a `redis-server` (`REPLICAOF NO ONE`, `INFO replication`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

struct Shared {
    target: Mutex<SocketAddr>,
    /// Both sockets of every open pair, to cut on a switch.
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A loopback TCP proxy to a switchable target. Stops on drop.
pub struct TcpProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TCP proxy");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking listener");
        let shared = Arc::new(Shared { target: Mutex::new(target), open: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });
        let s = shared.clone();
        thread::Builder::new()
            .name("tcp-proxy".into())
            .spawn(move || {
                while !s.stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let target = *s.target.lock().unwrap();
                            let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                                let _ = client.shutdown(Shutdown::Both);
                                continue;
                            };
                            pipe(&s, client, server);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
            .expect("spawn the TCP proxy");
        TcpProxy { port, shared }
    }

    /// From now on new connections go to `target`; every open one is cut
    /// (both ends), so clients reconnect — to the new target.
    pub fn switch(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = target;
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(s: &Arc<Shared>, client: TcpStream, server: TcpStream) {
    let mut open = s.open.lock().unwrap();
    open.retain(|c| c.peer_addr().is_ok());
    for c in [&client, &server] {
        if let Ok(c) = c.try_clone() {
            open.push(c);
        }
    }
    drop(open);
    for (from, to) in [(client.try_clone(), server.try_clone()), (Ok(server), Ok(client))] {
        let (Ok(mut from), Ok(mut to)) = (from, to) else { continue };
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

/// One command to the `redis-server` on `port`, in RESP; the reply as text
/// (a status or error line without its marker, a bulk string's content, an
/// integer's digits). Panics when the server does not answer.
pub fn redis_command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to redis-server :{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).expect("write a Redis command");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            if n < 0 {
                return String::new();
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            String::from_utf8_lossy(&buf[..n as usize]).into_owned()
        }
        Some(b'+' | b'-' | b':') => line[1..].to_owned(),
        _ => panic!("{args:?}: unexpected reply {line:?}"),
    }
}

/// One field of `INFO replication` on `port` (e.g. `master_repl_offset`).
pub fn replication_field(port: u16, field: &str) -> Option<String> {
    let info = redis_command(port, &["INFO", "replication"]);
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_owned()))
}
