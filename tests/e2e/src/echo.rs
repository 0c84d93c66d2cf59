//! The echo upstream: a small HTTP/1.1 server that answers every request
//! `200` with a JSON body describing what it received:
//!
//! ```json
//! {"method": "GET", "path": "/api/x", "headers": {"x-tollgate-sub": ["alice"]}}
//! ```
//!
//! Header names are lower-cased (HTTP names are case-insensitive; Envoy sends
//! them lower-case anyway) and every value is kept, in arrival order, so a
//! test can see duplicates. Keep-alive is supported (Envoy pools upstream
//! connections); request bodies (`content-length` or chunked) are read and
//! returned as `"body"` (UTF-8, lossy), so a test can see that a body arrived
//! intact. A HEAD request gets the headers only. std only: one thread per
//! connection.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::thread;

/// Serves `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            // A connection that failed before accept (reset, ...) is not fatal.
            Err(_) => continue,
        };
        thread::spawn(move || {
            let _ = handle(stream);
        });
    }
    Ok(())
}

/// The echo upstream of this test process, started on first use on a free
/// loopback port; it lives as long as the process.
pub fn shared() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        thread::Builder::new()
            .name("echo-upstream".into())
            .spawn(move || serve(listener))
            .expect("spawn the echo upstream");
        addr
    })
}

/// A request line and its headers (lower-case names).
pub(crate) struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

fn handle(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let body = read_body(&mut reader, &head.headers)?;
        let close = head.headers.iter().any(|(n, v)| {
            n == "connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
        let body = describe(&head, &body);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        // A response to HEAD has no content (RFC 9110 §9.3.2). Methods are
        // case-sensitive: Envoy expects no content after `HEAD` only, so
        // `head` (which HTTP/2 lets through) gets the body.
        if head.method != "HEAD" {
            out.push_str(&body);
        }
        writer.write_all(out.as_bytes())?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// The JSON description of a request.
fn describe(head: &Head, body: &[u8]) -> String {
    let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, v) in &head.headers {
        headers.entry(n.as_str()).or_default().push(v.as_str());
    }
    let body = String::from_utf8_lossy(body);
    serde_json::json!({ "method": head.method, "path": head.path, "headers": headers, "body": body })
        .to_string()
}

/// Reads one request line and its headers; `None` at a clean end of stream.
pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    // Tolerate empty lines between requests (RFC 9112 §2.2).
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim_end().is_empty() {
            break;
        }
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(method), Some(path), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut raw = Vec::new();
    loop {
        // Header values may hold obs-text (bytes above 0x7f): read bytes and
        // echo them lossily rather than drop the connection.
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&raw);
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        method,
        path,
        headers,
    }))
}

/// The body after `head`: chunked or `content-length`.
pub(crate) fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let mut chunk = Vec::new();
            reader.by_ref().take(size as u64 + 2).read_to_end(&mut chunk)?;
            chunk.truncate(size);
            body.extend_from_slice(&chunk);
        }
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    reader.by_ref().take(len).read_to_end(&mut body)?;
    Ok(body)
}
