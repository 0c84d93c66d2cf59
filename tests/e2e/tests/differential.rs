//! Differential tests: does the edge decide on the request the upstream
//! will act on?
//!
//! The filter decides on the method, path and headers as *it* reads them;
//! the application acts on them as *its framework* reads them. Wherever the
//! two readings differ, a request can be allowed as one thing and executed
//! as another. So this suite puts real frameworks this project did not
//! write behind the real Envoy and the real filter, and sends them a
//! systematically generated corpus of request spellings:
//!
//! - Flask on Werkzeug's development server and on the standard library's
//!   `wsgiref` (which folds `_` into `-` in header names), Starlette on
//!   uvicorn, Express 5 on Node (`tests/e2e/upstreams/`);
//! - each over HTTP/1.1 (raw bytes, [`tollgate_e2e::http`]) and HTTP/2 (h2c
//!   prior knowledge, [`tollgate_e2e::h2`]);
//! - each behind the selected host's shipped configuration
//!   (`envoy/envoy.yaml`, or `envoy/envoy-native.yaml` with
//!   `TOLLGATE_E2E_HOST=native`) and behind the same file with Istio's
//!   default connection-manager settings ([`render::ISTIO_DEFAULTS`]);
//! - with no token, a read token, a write token and an admin token.
//!
//! Every upstream handler answers with what its framework saw (handler,
//! method, path, every identity header value readable through the
//! idiomatic API and the raw server interface). Each answer is checked
//! against two properties:
//!
//! 1. no variant reaches a protected handler (admin, write, read) without
//!    the scope its rule demands, and no malformed or unverified credential
//!    reaches any handler;
//! 2. no identity value a framework reads was written by the client: it is
//!    absent or exactly what the edge derived from the token.
//!
//! Positive controls (the canonical spellings with the right token reach
//! each handler, on every framework, protocol and configuration) keep the
//! suite from passing by refusing everything.
//!
//! Prerequisites: `make build` and `scripts/deps-upstreams.sh` (Flask,
//! Starlette, uvicorn and `h2` in `.venv`, Express in
//! `tests/e2e/upstreams/express/node_modules`). Missing ones fail the test.
//! A per-framework summary table goes to stderr (also when the tests pass);
//! the findings are written to `$CARGO_TARGET_TMPDIR/differential-<config>.txt`
//! and the outcome of every variant to `differential-<config>.outcomes.txt`.
//!
//! Run: `scripts/deps-upstreams.sh && cargo build --release --target
//! wasm32-wasip1 -p tollgate && cargo test -p tollgate-e2e --test differential`.
//!
//! `TOLLGATE_DIFF_LEGACY_DOCUMENT=1` drops the rule fields a filter older
//! than the request-semantics work refuses (`ignore_case`), to measure what
//! such a filter lets through.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use tollgate::token::{self, Algorithm, Claims};
use tollgate_e2e::envoy::{demo_yaml, local_document, spawn_tied};
use tollgate_e2e::tokens::{self, *};
use tollgate_e2e::{echo, h2, http, render, Envoy, Options, Request, Response};

// ---- the upstreams ---------------------------------------------------------------

/// How long an upstream may take to announce its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Upstream {
    name: &'static str,
    addr: SocketAddr,
    _child: Mutex<Child>,
}

/// Starts `program args` (a framework app that prints `PORT <n>` first)
/// tied to the test process; its stderr goes to a log file.
fn start_upstream(name: &'static str, program: &Path, args: &[&OsStr]) -> Upstream {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("upstream-{}.log", name.replace('/', "-")));
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(h2::upstreams_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("upstream log"));
    let mut child = spawn_tied(command)
        .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
    let stdout = child.stdout.take().expect("upstream stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining, so the app never blocks on a full pipe.
        for _ in lines {}
    });
    let port = match rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{name} announced {line:?}, not `PORT <n>`")),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not start ({other:?}); did scripts/deps-upstreams.sh run? Its log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        }
    };
    Upstream {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: Mutex::new(child),
    }
}

/// The frameworks of this test process, started once (in parallel).
fn upstreams() -> &'static [Upstream] {
    static UPSTREAMS: OnceLock<Vec<Upstream>> = OnceLock::new();
    UPSTREAMS.get_or_init(|| {
        let dir = h2::upstreams_dir();
        let express = dir.join("express");
        assert!(
            express.join("node_modules/express/package.json").is_file(),
            "Express is not installed in {}: run scripts/deps-upstreams.sh",
            express.display()
        );
        let py = h2::python();
        let flask = dir.join("flask_app.py");
        let starlette = dir.join("starlette_app.py");
        let app_js = express.join("app.js");
        thread::scope(|s| {
            let handles = vec![
                s.spawn(|| {
                    start_upstream(
                        "flask/werkzeug",
                        &py,
                        &[flask.as_ref(), "werkzeug".as_ref()],
                    )
                }),
                s.spawn(|| {
                    start_upstream("flask/wsgiref", &py, &[flask.as_ref(), "wsgiref".as_ref()])
                }),
                s.spawn(|| start_upstream("starlette/uvicorn", &py, &[starlette.as_ref()])),
                s.spawn(|| start_upstream("express/node", Path::new("node"), &[app_js.as_ref()])),
            ];
            handles
                .into_iter()
                .map(|h| h.join().expect("upstream start"))
                .collect()
        })
    })
}

// ---- the edge --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    /// The host's configuration as shipped.
    Shipped,
    /// The same with Istio's default HCM settings.
    IstioDefaults,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Shipped => "shipped",
            Config::IstioDefaults => "istio-defaults",
        }
    }
}

/// The suite's filter document: the demo document without callouts, with
/// these rules. Segment-aware prefixes, case-insensitive where the rule
/// protects something; the header pair of the demo (`token-code` /
/// `token-user`) stays.
fn document() -> Value {
    let mut doc = local_document();
    doc["rules"] = json!([
        {"name": "public", "path": {"prefix": "/public"}, "anonymous": true},
        {"name": "admin", "path": {"prefix": "/admin"}, "ignore_case": true, "admin": true},
        {"name": "write", "path": {"prefix": "/api"}, "methods": ["POST", "PUT", "PATCH", "DELETE"],
         "scopes": ["write"], "ignore_case": true},
        {"name": "read", "path": {"prefix": "/api"}, "scopes": ["read"], "ignore_case": true},
    ]);
    assert_eq!(
        doc["sources"]["header_pair"],
        json!({"token": "token-code", "user": "token-user"})
    );
    if std::env::var_os("TOLLGATE_DIFF_LEGACY_DOCUMENT").is_some() {
        for rule in doc["rules"].as_array_mut().expect("rules") {
            rule.as_object_mut().expect("rule").remove("ignore_case");
        }
    }
    doc
}

/// One Envoy in front of `upstream`, configured as `config`.
fn edge(upstream: &Upstream, config: Config) -> Envoy {
    let echo_port = echo::shared().port();
    let mut options = Options::with_document(&document()).edit_yaml(
        &format!("port_value: {echo_port} }}"),
        &format!("port_value: {} }}", upstream.addr.port()),
        1,
    );
    if config == Config::IstioDefaults {
        let edits = render::istio_default_edits(&demo_yaml()).unwrap_or_else(|e| panic!("{e}"));
        for (from, to) in edits {
            options = options.edit_yaml(&from, &to, 1);
        }
    }
    Envoy::start(&options)
}

// ---- who sends -------------------------------------------------------------------

/// A caller: a token (or none) and what the edge must derive from it.
struct Who {
    label: &'static str,
    token: Option<String>,
    sub: &'static str,
    scope: String,
}

impl Who {
    fn has(&self, scope: &str) -> bool {
        self.token.is_some() && self.scope.split(' ').any(|s| s == scope)
    }

    /// The value the edge may put in identity header `h` (`None`: must be
    /// absent).
    fn identity(&self, h: &str) -> Option<String> {
        self.token.as_ref()?;
        match h {
            "x-tollgate-sub" => Some(self.sub.into()),
            "x-tollgate-scope" => Some(self.scope.clone()),
            "x-tollgate-ver" => Some("1".into()),
            _ => None,
        }
    }
}

fn callers() -> Vec<Who> {
    let who = |label, sub, scope: String| Who {
        label,
        token: Some(token_with_scope(sub, &scope)),
        sub,
        scope,
    };
    vec![
        Who {
            label: "none",
            token: None,
            sub: "",
            scope: String::new(),
        },
        who("read", "reader", "read".into()),
        who("write", "writer", "write".into()),
        who("admin", "root", format!("read write {ADMIN_SCOPE}")),
    ]
}

/// A token with every scope, signed with the wrong key: it must never
/// reach a handler, in any shape.
fn forged() -> String {
    tokens::key(
        Some(DEMO_KID),
        Algorithm::HS256,
        b"not-the-demo-secret-not-the-demo-secret!!",
    )
    .sign(
        Some("at+jwt"),
        &Claims {
            scope: Some(format!("read write {ADMIN_SCOPE}")),
            ..tokens::claims("forger")
        }
        .to_json(),
    )
}

// ---- the corpus ------------------------------------------------------------------

const NONE: usize = 0;
const READ: usize = 1;
const WRITE: usize = 2;
const ADMIN: usize = 3;
const ALL: [usize; 4] = [NONE, READ, WRITE, ADMIN];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Credential {
    /// `Authorization: Bearer <token>` (nothing when the caller has none).
    Bearer,
    /// A well-formed Authorization value written by the variant itself.
    BearerAttached,
    /// The header pair `token-code` / `token-user`.
    Pair,
    /// The header pair, written into the request by the variant itself.
    PairAttached,
    /// An Authorization shape that is not `Bearer <SP> <token>`: whatever
    /// the token, the request must not reach a handler.
    Malformed,
    /// A forged token: must not reach a handler.
    Forged,
}

struct Variant {
    class: &'static str,
    name: String,
    who: usize,
    credential: Credential,
    request: Request,
    /// Positive control: must reach this handler.
    expect: Option<&'static str>,
}

/// The admin route's spellings (sent as GET unless the spelling says).
#[rustfmt::skip]
const ADMIN_PATHS: &[&str] = &[
    "/admin", "/admin/", "/admin/users/", "/Admin/users", "/ADMIN/users", "/admin/Users", "/ADMIN",
    "/Admin/", "//admin/users", "/admin//users", "///admin/users", "/admin%2Fusers",
    "/admin%2fusers", "/%2Fadmin/users", "/admin/users%2F", "/admin%252Fusers", "/%61dmin/users",
    "/%41dmin/users", "/ad%6Din/users", "/admin/%75sers", "/admin;x/users", "/admin/users;x",
    "/admin;/users", "/admin/./users", "/./admin/users", "/admin/users/.", "/admin/x/../users",
    "/public/../admin/users", "/public/..%2Fadmin/users", "/public/%2e%2e/admin/users",
    "/public/%2E%2E/admin/users", "/public/.%2e/admin/users", "/public%2F..%2Fadmin/users",
    "/public/%252e%252e/admin/users", "/admin\\users", "/public\\..\\admin\\users",
    "/admin%5Cusers", "/admin%5cusers", "/admin/users.", "/admin./users", "/admin/users..",
    "/admin/users%20", "/admin/users%09", "/admin/users\t", "/admin/users%00", "/admin%00/users",
    "/admin/users%0a", "/admin\x01/users", "/admin/users?x=1", "/admin/users%3Fx=1",
    "/admin/users%23", "/admin/users#f", "/administrator", "/admin%2e/users", "/admin/users%2e",
];

/// The notes routes' spellings (sent as POST: the write handler).
#[rustfmt::skip]
const NOTES_PATHS: &[&str] = &[
    "/api/notes/", "/api/notes/1/", "/API/notes", "/Api/Notes", "/api/NOTES/1", "/API/NOTES/1",
    "//api/notes", "/api//notes", "/api/notes//1", "/api%2Fnotes", "/api%2fnotes/1",
    "/api/notes%2F1", "/%61pi/notes", "/a%70i/notes/1", "/api;x/notes", "/api/notes;x",
    "/api/notes/1;x", "/api/./notes", "/api/x/../notes", "/public/../api/notes",
    "/public/..%2Fapi/notes", "/public/%2e%2e/api/notes", "/public/%2E%2E/api/notes/1",
    "/api\\notes", "/api%5Cnotes", "/api/notes.", "/api/notes/1.", "/api./notes", "/api/notes%00",
    "/api/notes%20", "/api/notes\t", "/api/notes%09", "/api/notes?x=1",
];

const ADMIN_METHODS: &[&str] = &["GET", "get", "Get", "gEt", "HEAD", "head", "Head"];
const NOTES_METHODS: &[&str] = &[
    "POST", "post", "Post", "pOsT", "PUT", "put", "Put", "DELETE", "delete", "dElEtE", "PATCH",
    "patch", "GET", "get", "HEAD", "head",
];

/// Spellings of the identity headers, each sent with a value of its own.
#[rustfmt::skip]
const IDENTITY_SPELLINGS: &[&str] = &[
    "x-tollgate-sub", "X-Tollgate-Sub", "X-TOLLGATE-SUB", "x_tollgate_sub", "X_TOLLGATE_SUB",
    "x-tollgate_sub", "x_tollgate-sub", "X_Tollgate_Sub", "x-tollgate-scope", "x_tollgate_scope",
    "X_TOLLGATE_SCOPE", "x_tollgate_sid", "x_tollgate_ver", "x-tollgate-sid",
];

fn corpus(who: &[Who]) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut add = |class, name: String, w: usize, credential, request: Request, expect| {
        let request = match (credential, &who[w].token) {
            (Credential::Bearer, Some(t)) => request.bearer(t),
            (Credential::Pair, Some(t)) => request
                .header("token-code", t)
                .header("token-user", who[w].sub)
                .secret(t),
            _ => request,
        };
        out.push(Variant {
            class,
            name,
            who: w,
            credential,
            request,
            expect,
        });
    };
    use Credential::*;

    // Positive controls: canonical spellings with the right token.
    let controls: &[(&str, &str, usize, &str)] = &[
        ("GET", "/admin/users", ADMIN, "admin"),
        ("HEAD", "/admin/users", ADMIN, "admin"),
        ("GET", "/admin", ADMIN, "admin"),
        ("POST", "/api/notes", WRITE, "write"),
        ("PUT", "/api/notes/1", WRITE, "write"),
        ("PATCH", "/api/notes/1", WRITE, "write"),
        ("DELETE", "/api/notes/1", WRITE, "write"),
        ("GET", "/api/notes", READ, "read"),
        ("GET", "/api/notes/1", READ, "read"),
        ("GET", "/public/index.html", NONE, "public"),
        ("GET", "/public/index.html", READ, "public"),
    ];
    for &(m, p, w, h) in controls {
        add(
            "control",
            format!("{m} {p}"),
            w,
            Bearer,
            Request::new(m, p),
            Some(h),
        );
    }
    add(
        "control",
        "GET /api/notes (header pair)".into(),
        READ,
        Pair,
        Request::get("/api/notes"),
        Some("read"),
    );

    // Method spellings on the canonical paths, every caller.
    for &w in &ALL {
        for &m in ADMIN_METHODS {
            add(
                "method",
                format!("{m} /admin/users"),
                w,
                Bearer,
                Request::new(m, "/admin/users"),
                None,
            );
        }
        for p in ["/api/notes", "/api/notes/1"] {
            for &m in NOTES_METHODS {
                add(
                    "method",
                    format!("{m} {p}"),
                    w,
                    Bearer,
                    Request::new(m, p),
                    None,
                );
            }
        }
    }
    // Path spellings with the canonical method, every caller; then with a
    // method spelling the rule may not recognize, for the read caller.
    for &w in &ALL {
        for &p in ADMIN_PATHS {
            add(
                "path",
                format!("GET {p:?}"),
                w,
                Bearer,
                Request::get(p),
                None,
            );
        }
        for &p in NOTES_PATHS {
            add(
                "path",
                format!("POST {p:?}"),
                w,
                Bearer,
                Request::post(p),
                None,
            );
        }
    }
    for &p in ADMIN_PATHS {
        add(
            "path+method",
            format!("get {p:?}"),
            READ,
            Bearer,
            Request::new("get", p),
            None,
        );
    }
    for &p in NOTES_PATHS {
        add(
            "path+method",
            format!("post {p:?}"),
            READ,
            Bearer,
            Request::new("post", p),
            None,
        );
    }
    // Identity header spellings, each with a value no token carries.
    for &w in &ALL {
        for (i, &h) in IDENTITY_SPELLINGS.iter().enumerate() {
            for p in ["/api/notes", "/public/x", "/admin/users"] {
                let value = if h.to_ascii_lowercase().contains("scope") {
                    format!("read write {ADMIN_SCOPE}")
                } else {
                    format!("spoof-{i}")
                };
                add(
                    "identity",
                    format!("GET {p} [{h}: {value}]"),
                    w,
                    Bearer,
                    Request::get(p).header(h, &value),
                    None,
                );
            }
        }
        let all = IDENTITY_SPELLINGS
            .iter()
            .fold(Request::get("/api/notes"), |r, h| r.header(h, "spoof-all"));
        add(
            "identity",
            "GET /api/notes [every spelling]".into(),
            w,
            Bearer,
            all,
            None,
        );
    }
    // The header pair with the user header (or the token header) twice or
    // in another spelling, before or after the caller's own pair: servers
    // differ in which copy they keep.
    for w in [READ, ADMIN] {
        let (t, sub) = (who[w].token.clone().expect("token"), who[w].sub);
        let spellings: [(&str, &str, &str); 7] = [
            ("token-user", "token-user", "mallory"),
            ("token-user, same value", "token-user", sub),
            ("token_user", "token_user", "mallory"),
            ("TOKEN_USER", "TOKEN_USER", "mallory"),
            ("Token-User", "Token-User", "mallory"),
            ("token-code", "token-code", &t),
            ("token_code", "token_code", &t),
        ];
        for (name, n, v) in spellings {
            let pair = |r: Request| {
                r.header("token-code", &t)
                    .header("token-user", sub)
                    .secret(&t)
            };
            let before = pair(Request::get("/api/notes").header(n, v));
            add(
                "token-user",
                format!("GET /api/notes [{name} + pair]"),
                w,
                PairAttached,
                before,
                None,
            );
            let after = pair(Request::get("/api/notes")).header(n, v);
            add(
                "token-user",
                format!("GET /api/notes [pair + {name}]"),
                w,
                PairAttached,
                after,
                None,
            );
        }
    }
    // Authorization shapes: only `Bearer <SP> <token>` is a credential; the
    // scheme is case-insensitive (RFC 9110 §11.1). Each shape with the admin
    // token (a malformed one must not reach a handler) and with a forged
    // token (must never reach a handler).
    let forged = forged();
    let admin = who[ADMIN].token.clone().expect("admin token");
    for p in ["/public/x", "/api/notes", "/admin/users"] {
        for (t, other, w, bad) in [
            (&admin, &forged, ADMIN, Malformed),
            (&forged, &admin, NONE, Forged),
        ] {
            // A well-formed shape: verified like any bearer token.
            let fine = if bad == Forged {
                Forged
            } else {
                BearerAttached
            };
            let basic = token::b64::encode(format!("root:{t}").as_bytes());
            let shapes: Vec<(&str, String, Credential)> = vec![
                ("Bearer<TAB>", format!("Bearer\t{t}"), bad),
                ("Bearer<SP><SP>", format!("Bearer  {t}"), bad),
                ("Bearer Bearer", format!("Bearer Bearer {t}"), bad),
                ("Bearer, no token", "Bearer".into(), bad),
                ("Basic", format!("Basic {basic}"), bad),
                ("Token scheme", format!("Token {t}"), bad),
                ("token then junk", format!("Bearer {t} x"), bad),
                (
                    "Bearer twice, the other token second",
                    format!("Bearer {t}, Bearer {other}"),
                    bad,
                ),
                ("bearer lower-case", format!("bearer {t}"), fine),
                ("BEARER upper-case", format!("BEARER {t}"), fine),
                ("Bearer canonical", format!("Bearer {t}"), fine),
                // The same verified token twice: one credential.
                (
                    "Bearer twice, the same token",
                    format!("Bearer {t}, Bearer {t}"),
                    fine,
                ),
            ];
            let label = if bad == Forged { "forged " } else { "" };
            for (name, value, c) in shapes {
                let r = Request::get(p)
                    .header("Authorization", &value)
                    .secret(t)
                    .secret(other);
                add(
                    "authorization",
                    format!("GET {p} [{label}{name}]"),
                    w,
                    c,
                    r,
                    None,
                );
            }
            // Two Authorization header lines.
            for (name, second) in [
                ("Basic", "Basic cm9vdDpwdw".to_owned()),
                ("the other token", format!("Bearer {other}")),
            ] {
                let r = Request::get(p)
                    .header("Authorization", &format!("Bearer {t}"))
                    .header("authorization", &second)
                    .secret(t)
                    .secret(other);
                add(
                    "authorization",
                    format!("GET {p} [{label}Bearer + a second line: {name}]"),
                    w,
                    bad,
                    r,
                    None,
                );
            }
        }
    }
    // Method override headers on a read, for the read caller.
    for (n, v) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method-Override", "post"),
        ("x-http-method", "PUT"),
        ("x-method-override", "PATCH"),
        ("X_HTTP_METHOD_OVERRIDE", "DELETE"),
    ] {
        for p in ["/api/notes", "/api/notes/1"] {
            add(
                "override",
                format!("GET {p} [{n}: {v}]"),
                READ,
                Bearer,
                Request::get(p).header(n, v),
                None,
            );
        }
    }
    out
}

// ---- judging one answer --------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Protocol {
    H1,
    H2,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
        }
    }
}

/// What happened to one request.
enum Outcome {
    /// A framework handler answered; its description.
    Reached(Value),
    /// Envoy, the filter or the server's parser answered (no description).
    Stopped(u16),
    /// The protocol layer refused (stream reset, connection closed).
    Reset(String),
}

fn outcome(result: std::io::Result<Response>) -> Outcome {
    match result {
        Err(e) => Outcome::Reset(e.to_string()),
        Ok(r) => match r.header("x-upstream-saw") {
            None => Outcome::Stopped(r.status),
            Some(b64) => {
                let raw = token::b64::decode(b64.as_bytes())
                    .unwrap_or_else(|| panic!("X-Upstream-Saw is not base64url: {b64}"));
                Outcome::Reached(serde_json::from_slice(&raw).expect("X-Upstream-Saw is JSON"))
            }
        },
    }
}

/// The properties' verdict on one reached handler: what is wrong.
fn judge(v: &Variant, who: &Who, saw: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let handler = saw["handler"].as_str().unwrap_or("?");
    let status = saw["status"].as_u64().unwrap_or(0);
    let reached_handler = handler != "none";
    match v.credential {
        Credential::Malformed if reached_handler => wrong.push(format!(
            "malformed credential reached the {handler} handler"
        )),
        Credential::Forged if reached_handler => {
            wrong.push(format!("forged token reached the {handler} handler"))
        }
        _ => {}
    }
    if v.credential != Credential::Forged {
        let need = match handler {
            "admin" => Some(ADMIN_SCOPE),
            "write" => Some("write"),
            "read" => Some("read"),
            _ => None,
        };
        if let Some(scope) = need {
            if !who.has(scope) {
                wrong.push(format!(
                    "{handler} handler reached by the {} caller (as {} {}, status {status})",
                    who.label, saw["method"], saw["path"]
                ));
            }
        }
    }
    for read in saw["reads"].as_array().into_iter().flatten() {
        let h = read["header"].as_str().unwrap_or_default();
        let value = read["value"].as_str().unwrap_or_default();
        let via = read["via"].as_str().unwrap_or_default();
        let want = if h == "token-user" {
            if !matches!(v.credential, Credential::Pair | Credential::PairAttached) {
                continue; // not a credential here; nothing vouches for it
            }
            Some(who.sub.to_owned())
        } else if v.credential == Credential::Forged {
            None
        } else {
            who.identity(h)
        };
        if want.as_deref() != Some(value) {
            wrong.push(format!(
                "{via} reads {h} = {value:?} (the edge vouches for {})",
                want.map_or("nothing".into(), |w| format!("{w:?}"))
            ));
        }
    }
    wrong
}

// ---- running ---------------------------------------------------------------------

#[derive(Default, Clone)]
struct Tally {
    sent: usize,
    /// A framework handler answered (404/405 "none" handlers included).
    reached: usize,
    /// Answered without reaching the framework's router: by Envoy, the
    /// filter, or the server's own HTTP parser.
    stopped: usize,
    /// Refused at the protocol level (stream reset, connection closed).
    reset: usize,
    /// Reached, and at least one property failed.
    holes: usize,
}

struct Finding {
    framework: &'static str,
    protocol: Protocol,
    class: &'static str,
    variant: String,
    caller: &'static str,
    what: String,
}

struct Run {
    tallies: BTreeMap<(&'static str, Protocol), Tally>,
    holes: Vec<Finding>,
    controls: Vec<String>,
    /// Per variant: its name and caller, then `framework/protocol: outcome`.
    outcomes: Vec<String>,
    elapsed: Duration,
}

fn run(config: Config) -> Run {
    let start = Instant::now();
    let ups = upstreams();
    let who = callers();
    let corpus = corpus(&who);
    assert!(
        corpus.len() > 500,
        "the corpus shrank to {} variants",
        corpus.len()
    );
    // One Envoy per framework, started in parallel; one thread per framework.
    let results: Vec<Exercise> = thread::scope(|s| {
        let handles: Vec<_> = ups
            .iter()
            .map(|up| {
                let (who, corpus) = (&who, &corpus);
                s.spawn(move || exercise(up, config, who, corpus))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("framework thread"))
            .collect()
    });
    let mut out = Run {
        tallies: BTreeMap::new(),
        holes: Vec::new(),
        controls: Vec::new(),
        outcomes: corpus
            .iter()
            .map(|v| format!("[{}] {} as {}", v.class, v.name, who[v.who].label))
            .collect(),
        elapsed: Duration::ZERO,
    };
    for (up, e) in ups.iter().zip(results) {
        let [h1, h2] = e.tallies;
        out.tallies.insert((up.name, Protocol::H1), h1);
        out.tallies.insert((up.name, Protocol::H2), h2);
        out.holes.extend(e.holes);
        out.controls.extend(e.controls);
        for (line, [o1, o2]) in out.outcomes.iter_mut().zip(e.outcomes) {
            let _ = write!(line, "\n    {:<18} h1: {o1:<40} h2: {o2}", up.name);
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// What one framework made of the corpus: a tally per protocol, the
/// findings, the failed positive controls, and one short outcome per
/// variant and protocol.
struct Exercise {
    tallies: [Tally; 2],
    holes: Vec<Finding>,
    controls: Vec<String>,
    outcomes: Vec<[String; 2]>,
}

fn exercise(up: &Upstream, config: Config, who: &[Who], corpus: &[Variant]) -> Exercise {
    let envoy = edge(up, config);
    let mut h2c = h2::Client::start();
    let mut tallies = [Tally::default(), Tally::default()];
    let mut holes = Vec::new();
    let mut controls = Vec::new();
    let mut outcomes = Vec::new();
    for v in corpus {
        let mut short: [String; 2] = Default::default();
        for protocol in [Protocol::H1, Protocol::H2] {
            let result = match protocol {
                Protocol::H1 => http::send(envoy.listener, &v.request),
                Protocol::H2 => h2c.send(envoy.listener, &v.request),
            };
            let t = &mut tallies[protocol as usize];
            t.sent += 1;
            let o = outcome(result);
            let reached = match &o {
                Outcome::Reached(saw) => {
                    t.reached += 1;
                    let wrong = judge(v, &who[v.who], saw);
                    if !wrong.is_empty() {
                        t.holes += 1;
                    }
                    for what in wrong {
                        holes.push(Finding {
                            framework: up.name,
                            protocol,
                            class: v.class,
                            variant: v.name.clone(),
                            caller: who[v.who].label,
                            what,
                        });
                    }
                    saw["handler"].as_str().map(str::to_owned)
                }
                Outcome::Stopped(_) => {
                    t.stopped += 1;
                    None
                }
                Outcome::Reset(_) => {
                    t.reset += 1;
                    None
                }
            };
            let got = match &o {
                Outcome::Reached(saw) => format!(
                    "{} {} {}",
                    saw["status"],
                    saw["handler"].as_str().unwrap_or("?"),
                    saw["path"]
                ),
                Outcome::Stopped(s) => format!("stopped {s}"),
                Outcome::Reset(e) => format!("reset ({e})"),
            };
            short[protocol as usize] = got.clone();
            if let Some(want) = v.expect {
                if reached.as_deref() != Some(want) {
                    controls.push(format!(
                        "{} {} {}: {} as {} did not reach {want}: {got}",
                        config.name(),
                        up.name,
                        protocol.name(),
                        v.name,
                        who[v.who].label
                    ));
                }
            }
        }
        outcomes.push(short);
    }
    Exercise {
        tallies,
        holes,
        controls,
        outcomes,
    }
}

/// The per-framework table, and every finding grouped by variant.
fn report(config: Config, run: &Run) -> (String, String) {
    let mut table = format!(
        "differential, {} config, {:.1} s\n{:<18} {:<3} {:>6} {:>8} {:>8} {:>6} {:>6}\n",
        config.name(),
        run.elapsed.as_secs_f64(),
        "framework",
        "",
        "sent",
        "reached",
        "stopped",
        "reset",
        "holes"
    );
    for ((name, protocol), t) in &run.tallies {
        let _ = writeln!(
            table,
            "{name:<18} {:<3} {:>6} {:>8} {:>8} {:>6} {:>6}",
            protocol.name(),
            t.sent,
            t.reached,
            t.stopped,
            t.reset,
            t.holes
        );
    }
    // Group findings: one line per (class, variant, caller, what), listing
    // where it happened.
    let mut grouped: BTreeMap<(&str, &str, &str, &str), Vec<String>> = BTreeMap::new();
    for f in &run.holes {
        grouped
            .entry((f.class, f.variant.as_str(), f.caller, f.what.as_str()))
            .or_default()
            .push(format!("{}/{}", f.framework, f.protocol.name()));
    }
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut detail = String::new();
    for ((class, variant, caller, what), wheres) in &grouped {
        *by_class.entry(class).or_default() += 1;
        let _ = writeln!(
            detail,
            "[{class}] {variant} as {caller}: {what}\n    on {}",
            wheres.join(", ")
        );
    }
    let _ = writeln!(table, "findings by class: {by_class:?}");
    (table, detail)
}

fn check(config: Config) {
    let run = run(config);
    let (table, detail) = report(config, &run);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("differential-{}.txt", config.name()));
    let _ = std::fs::write(
        &file,
        format!("{table}\n{}\n{detail}", run.controls.join("\n")),
    );
    let all = file.with_extension("outcomes.txt");
    let _ = std::fs::write(&all, run.outcomes.join("\n"));
    // Straight to the process's stderr, past the test harness's capture: the
    // table is the point of the run, also when it passes.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!(
            "{table}(findings: {}; every outcome: {})\n",
            file.display(),
            all.display()
        )
        .as_bytes(),
    );
    assert!(
        run.controls.is_empty(),
        "{} positive controls failed: the canonical requests must reach their handlers\n{}\n\n{table}",
        run.controls.len(),
        run.controls.join("\n")
    );
    assert!(
        run.holes.is_empty(),
        "{} findings: requests the edge let through that the upstream read otherwise\n{table}\n{}",
        run.holes.len(),
        detail.lines().take(200).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn upstreams_act_only_on_what_the_edge_allowed_behind_the_shipped_config() {
    check(Config::Shipped);
}

#[test]
fn upstreams_act_only_on_what_the_edge_allowed_behind_istio_defaults() {
    check(Config::IstioDefaults);
}
