//! An HTTP/2 client for tests: h2c with prior knowledge (no TLS, no
//! upgrade), as Envoy's listener accepts it (`codec_type: AUTO`).
//!
//! Why a Python worker and not the Rust `h2` crate or `curl`: these tests
//! exist to send what well-behaved clients never send, and only the Python
//! `h2` library, with its outbound validation and normalization switched
//! off, puts arbitrary bytes on the wire:
//! - the `h2` crate takes `http::Method`, `http::Uri` and `HeaderName`,
//!   which refuse or rewrite exactly the spellings under test (control
//!   bytes and `\` in paths, upper-case header names), and brings tokio
//!   and a heavy compile into every e2e build;
//! - `curl --http2-prior-knowledge` lower-cases header names, refuses
//!   control bytes in URLs and costs one process per request.
//!
//! One long-lived worker process (`tests/e2e/upstreams/h2_client.py`, run by
//! the project venv's Python, see [`python`]) serves a [`Client`]; each
//! request gets its own connection, so a request Envoy refuses at the
//! protocol level cannot disturb the next. The worker is tied to the test
//! process like every other child (`spawn_tied`) and bounds every socket
//! operation; a stream reset or GOAWAY comes back as an `Err` naming it.

use crate::envoy::{repo_root, spawn_tied};
use crate::http::Request;
use crate::Response;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The Python that runs the worker and the Python upstreams:
/// `$TOLLGATE_PYTHON`, else `<repo>/.venv/bin/python` (where
/// `scripts/deps-upstreams.sh` installs `h2` and the frameworks). Panics
/// (the test fails) when it is missing.
pub fn python() -> PathBuf {
    let path = match std::env::var_os("TOLLGATE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    };
    assert!(
        path.exists(),
        "Python not found at {} (set TOLLGATE_PYTHON, or run scripts/deps-upstreams.sh)",
        path.display()
    );
    path
}

/// The directory of the upstream apps and the worker script.
pub fn upstreams_dir() -> PathBuf {
    repo_root().join("tests/e2e/upstreams")
}

/// A request exactly as it goes into the HEADERS frame: pseudo-headers
/// first, then fields, in order, names and values as bytes.
#[derive(Debug, Clone)]
pub struct Exact {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Exact {
    /// The HTTP/2 form of an HTTP/1.1 test [`Request`]: `:method` and
    /// `:path` are the request's method and target byte for byte, the
    /// authority is `addr`, and header names are lower-cased (HTTP/2
    /// requires it; [`Exact::field`] sends a name verbatim). `Host`,
    /// `Connection` and `Content-Length` have no place here: HTTP/2 carries
    /// them as `:authority`, not at all, and frame lengths.
    pub fn from_request(addr: SocketAddr, req: &Request) -> Exact {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), req.method.as_bytes().to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":authority".to_vec(), addr.to_string().into_bytes()),
            (b":path".to_vec(), req.target.as_bytes().to_vec()),
        ];
        let named = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .chain(
                req.raw_headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice())),
            );
        for (n, v) in named {
            if matches!(
                n.to_ascii_lowercase().as_str(),
                "host" | "connection" | "content-length"
            ) {
                continue;
            }
            fields.push((n.to_ascii_lowercase().into_bytes(), v.to_vec()));
        }
        Exact {
            fields,
            body: req.body.clone(),
        }
    }

    /// Appends a field with its name exactly as given (upper case, `_`).
    pub fn field(mut self, name: &[u8], value: &[u8]) -> Exact {
        self.fields.push((name.to_vec(), value.to_vec()));
        self
    }
}

/// One worker process.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Bytes as a Latin-1 string (one char per byte): what the worker expects.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn unlatin1(s: &str) -> io::Result<Vec<u8>> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| io::Error::other("worker sent a non-Latin-1 char"))
        })
        .collect()
}

impl Client {
    /// Starts a worker; panics (the test fails) when Python is missing.
    pub fn start() -> Client {
        let mut command = Command::new(python());
        command
            .arg(upstreams_dir().join("h2_client.py"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_tied(command)
            .unwrap_or_else(|e| panic!("cannot start the HTTP/2 client worker: {e}"));
        let stdin = child.stdin.take().expect("worker stdin");
        let stdout = BufReader::new(child.stdout.take().expect("worker stdout"));
        Client {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends `req` over a new h2c connection to `addr`.
    pub fn send(&mut self, addr: SocketAddr, req: &Request) -> io::Result<Response> {
        self.send_exact(addr, &Exact::from_request(addr, req))
    }

    /// Sends exactly `req`'s fields and body over a new h2c connection.
    pub fn send_exact(&mut self, addr: SocketAddr, req: &Exact) -> io::Result<Response> {
        let line = serde_json::json!({
            "addr": addr.to_string(),
            "headers": req.fields.iter().map(|(n, v)| [latin1(n), latin1(v)]).collect::<Vec<_>>(),
            "body": latin1(&req.body),
        });
        let mut out = line.to_string();
        out.push('\n');
        let mut answer = String::new();
        let exchanged = self
            .stdin
            .write_all(out.as_bytes())
            .and_then(|_| self.stdin.flush())
            .and_then(|_| self.stdout.read_line(&mut answer));
        match exchanged {
            Ok(n) if n > 0 => {}
            other => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "the HTTP/2 client worker died ({other:?}); is `h2` installed \
                     (scripts/deps-upstreams.sh)? Its stderr:\n{err}"
                );
            }
        }
        let v: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| io::Error::other(format!("worker answer is not JSON ({e}): {answer}")))?;
        if v["ok"] != true {
            return Err(io::Error::other(
                v["error"]
                    .as_str()
                    .unwrap_or("unknown worker error")
                    .to_owned(),
            ));
        }
        let status = v["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| io::Error::other(format!("no :status in {answer}")))?;
        let mut headers = Vec::new();
        let mut head = format!("HTTP/2 {status}\r\n");
        for h in v["headers"].as_array().into_iter().flatten() {
            let (Some(n), Some(val)) = (h[0].as_str(), h[1].as_str()) else {
                return Err(io::Error::other(format!("bad header in {answer}")));
            };
            head.push_str(&format!("{n}: {val}\r\n"));
            headers.push((n.to_ascii_lowercase(), val.to_owned()));
        }
        head.push_str("\r\n");
        Ok(Response {
            status,
            headers,
            body: unlatin1(v["body"].as_str().unwrap_or_default())?,
            head,
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `req` over HTTP/2 with the worker shared by this test process
/// (started on first use; one request at a time).
pub fn send(addr: SocketAddr, req: &Request) -> io::Result<Response> {
    static SHARED: OnceLock<Mutex<Client>> = OnceLock::new();
    SHARED
        .get_or_init(|| Mutex::new(Client::start()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(addr, req)
}
