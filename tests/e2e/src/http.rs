//! A tiny raw HTTP/1.1 client: it sends exactly the bytes a test asks for
//! (duplicate headers, odd casing, unnormalized paths), one request per
//! connection (`Connection: close`), with bounded timeouts.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Every socket operation of the client gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request as it goes on the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target, sent verbatim (`//admin/x`, `/a?b=c`).
    pub target: String,
    /// Sent in this order, names as written.
    pub headers: Vec<(String, String)>,
    /// Sent after `headers`, values as raw bytes (HTTP allows obs-text).
    pub raw_headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Credentials this request carries: they must never come back in a
    /// local answer (see [`Response::assert_no_secret`]).
    pub secrets: Vec<String>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            raw_headers: Vec::new(),
            body: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub fn post(target: &str) -> Request {
        Request::new("POST", target)
    }

    /// Adds a header as written (no de-duplication, casing kept).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header whose value is raw bytes, possibly not UTF-8.
    pub fn raw_header(mut self, name: &str, value: &[u8]) -> Request {
        self.raw_headers.push((name.into(), value.to_vec()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.scheme("Bearer", token)
    }

    /// `Authorization: <scheme> <token>`, for case-insensitivity checks.
    pub fn scheme(self, scheme: &str, token: &str) -> Request {
        self.header("Authorization", &format!("{scheme} {token}"))
            .secret(token)
    }

    /// `Cookie: <name>=<token>`.
    pub fn cookie(self, name: &str, token: &str) -> Request {
        self.header("Cookie", &format!("{name}={token}"))
            .secret(token)
    }

    /// Records `s` as a credential carried somewhere in this request.
    pub fn secret(mut self, s: &str) -> Request {
        if !s.is_empty() {
            self.secrets.push(s.into());
        }
        self
    }

    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }

    fn to_bytes(&self, host: &str) -> Vec<u8> {
        self.to_bytes_with(host, true)
    }

    /// The request's bytes; `close`: it ends with `Connection: close`.
    fn to_bytes_with(&self, host: &str, close: bool) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        let mut bytes = out.into_bytes();
        for (n, v) in &self.raw_headers {
            bytes.extend_from_slice(n.as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(v);
            bytes.extend_from_slice(b"\r\n");
        }
        if close {
            bytes.extend_from_slice(b"Connection: close\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.method, self.target)?;
        for (n, v) in &self.headers {
            write!(f, " [{n}: {}]", abbreviate(v))?;
        }
        Ok(())
    }
}

fn abbreviate(v: &str) -> String {
    if v.len() > 40 {
        format!(
            "{}…",
            &v[..v.char_indices().nth(37).map_or(v.len(), |(i, _)| i)]
        )
    } else {
        v.to_owned()
    }
}

/// A response, parsed.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status line and header block, as received.
    pub head: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    /// What the echo upstream received: values of request header `name`.
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        let json = self.json();
        match json["headers"].get(name.to_ascii_lowercase()) {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .unwrap_or_else(|| panic!("echo headers.{name} is not an array: {json}"))
                .iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect(),
        }
    }

    /// Fails when any of `secrets` (or its signature segment) occurs in the
    /// response headers, or in the body when `check_body`.
    pub fn secret_leaks(&self, secrets: &[String], check_body: bool) -> Vec<String> {
        let body = self.text();
        let mut leaks = Vec::new();
        for s in secrets {
            let mut needles = vec![s.as_str()];
            // The MAC alone is enough to be a leak.
            if let Some(sig) = s
                .rsplit('.')
                .next()
                .filter(|sig| sig.len() >= 16 && *sig != s)
            {
                needles.push(sig);
            }
            for n in needles {
                if self.head.contains(n) {
                    leaks.push(format!("response headers contain {}", abbreviate(n)));
                }
                if check_body && body.contains(n) {
                    leaks.push(format!("response body contains {}", abbreviate(n)));
                }
            }
        }
        leaks
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}\n{}", self.head.trim_end(), self.text())
    }
}

/// Sends `req` to `addr` and reads the whole response.
pub fn send(addr: SocketAddr, req: &Request) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&req.to_bytes(&addr.to_string()))?;
    stream.flush()?;
    read_response(&mut stream, req.method == "HEAD")
}

/// Sends `req` on an open connection to `addr` without `Connection:
/// close` and reads its response, leaving the connection open for the next
/// request (a keep-alive connection stays on the Envoy worker that accepted
/// it: see [`crate::workers`]).
pub fn send_on(stream: &mut TcpStream, addr: SocketAddr, req: &Request) -> io::Result<Response> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&req.to_bytes_with(&addr.to_string(), false))?;
    stream.flush()?;
    read_answer(stream, req)
}

/// Writes `req` on an open connection to `addr` (one whose Envoy worker a
/// test knows, see [`crate::workers`]); read the answer with
/// [`read_answer`].
pub fn write_request(stream: &mut TcpStream, addr: SocketAddr, req: &Request) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&req.to_bytes(&addr.to_string()))?;
    stream.flush()
}

/// Reads the answer to a request written with [`write_request`] or [`send_on`].
pub fn read_answer(stream: &mut TcpStream, req: &Request) -> io::Result<Response> {
    read_response(stream, req.method == "HEAD")
}

/// Reads one response: the head, then exactly the body its framing
/// announces (content-length or chunked), else up to the end of stream.
/// Not waiting for EOF matters: after a local reply Envoy waits for the
/// client to close first (`delayed_close_timeout`, 1 s).
fn read_response(stream: &mut TcpStream, head_only: bool) -> io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let mut eof = false;
    loop {
        if let Some(r) = try_parse(&raw, head_only, eof)? {
            return Ok(r);
        }
        if eof {
            return Err(invalid(format!(
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&raw)
            )));
        }
        match stream.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the peer sent everything counts as the end.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => eof = true,
            Err(e) => return Err(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The response in `raw`, or `None` while it is incomplete.
fn try_parse(raw: &[u8], head_only: bool, eof: bool) -> io::Result<Option<Response>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end + 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(len) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.1.parse().map_err(|_| invalid("bad content-length"))?;
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        headers,
        body,
        head,
    }))
}

/// The de-chunked body, or `None` while incomplete.
fn dechunk(mut rest: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&rest[..nl]).map_err(|_| invalid("bad chunk size"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid("bad chunk size"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            // Trailers (if any) end with an empty line.
            return Ok(rest.windows(2).any(|w| w == b"\r\n").then_some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
