//! The demo upstream (`make run`) and the tests' upstream: answers every
//! request 200 with `{"method","path","headers":{name:[values]}}`.
//!
//! Usage: echo-upstream [--listen 127.0.0.1:8081]

use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:8081");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(addr) => listen = addr,
                None => return usage("--listen needs an address"),
            },
            "-h" | "--help" => {
                println!("usage: echo-upstream [--listen ADDR]   (default 127.0.0.1:8081)");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-upstream: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        // The first line of stdout names the bound address (useful with port 0).
        Ok(addr) => println!("echo-upstream listening on {addr}"),
        Err(e) => eprintln!("echo-upstream: {e}"),
    }
    match tollgate_e2e::echo::serve(listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("echo-upstream: {msg}\nusage: echo-upstream [--listen ADDR]");
    ExitCode::from(2)
}
