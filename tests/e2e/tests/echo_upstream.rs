//! The `echo-upstream` binary (`make run`'s demo upstream) answers with what
//! it received.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use tollgate_e2e::http::{send, Request};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn echo_upstream_binary_echoes_method_path_and_every_header_value() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo-upstream"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run echo-upstream");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The first line names the bound address (it is printed after bind).
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("echo-upstream listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");

    let r = send(
        addr,
        &Request::post("/a//b?x=1&y")
            .header("X-Dup", "one")
            .header("x-dup", "two")
            .header("Content-Type", "text/plain")
            .body(b"hello"),
    )
    .expect("request to echo-upstream");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json = r.json();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/a//b?x=1&y");
    assert_eq!(json["body"], "hello");
    assert_eq!(json["headers"]["x-dup"], serde_json::json!(["one", "two"]));
    assert_eq!(json["headers"]["content-length"], serde_json::json!(["5"]));
    assert_eq!(json["headers"]["connection"], serde_json::json!(["close"]));
    drop(running);
}
