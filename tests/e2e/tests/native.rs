//! The same engine as a native Envoy dynamic module (`native/`), end to end:
//! `envoy/envoy-native.yaml` in a real Envoy 1.40 (`--concurrency 2`), in
//! front of the echo upstream and, for the callouts, the real authority.
//!
//! What is specified here: the module loads and Envoy agrees on its ABI
//! version; the decisions are the engine's (a valid token passes with the
//! identity headers, none is 401); a bad document is refused with the field
//! named in Envoy's log; a revocation reaches every worker within the
//! bound; a refresh storm is one callout for the whole Envoy (the workers
//! share one in-process store, so the first claim wins for all of them).
//!
//! Prerequisite: the module, built with unwinding panics:
//! `cargo build --profile native -p tollgate-native`
//! (or `$TOLLGATE_NATIVE_MODULE`), plus `make bins` for the authority.
//!
//! The harness (`tollgate_e2e::envoy`) renders and starts `envoy/envoy.yaml`
//! only, so this file carries a small native twin of it ([`native`]): it
//! renders `envoy-native.yaml` with the harness's own renderer and starts
//! Envoy the same way. Once the harness takes the YAML and module as
//! options, this twin goes and every e2e test can run on both hosts.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::config::Config;
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, set_cookie, Timing};
use tollgate_e2e::tokens::{self, DEMO_KEY_B64, DEMO_KEY_ENV};
use tollgate_e2e::{http, Request, Response};

mod native {
    //! Envoy with `envoy/envoy-native.yaml`: rendered (ports, module path,
    //! document) and run like the harness runs `envoy.yaml`.

    use std::collections::BTreeMap;
    use std::fs;
    use std::net::{SocketAddr, TcpListener};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::thread;
    use std::time::{Duration, Instant};
    use tollgate_e2e::envoy::{envoy_binary, repo_root, spawn_tied, tail, READY_TIMEOUT};
    use tollgate_e2e::render::{self, Ports};
    use tollgate_e2e::authority::{EDGE_CREDENTIAL, EDGE_CREDENTIAL_ENV};
    use tollgate_e2e::tokens::{DEMO_KEY_B64, DEMO_KEY_ENV};
    use tollgate_e2e::{echo, http, Request, Response};

    /// The module path as written in `envoy-native.yaml`.
    pub const MODULE_PATH: &str = "target/native/libtollgate_native.so";
    /// Where the dynamic-module filter's stats live (Envoy's default
    /// `metrics_namespace`; the Wasm filter's are under `wasmcustom.`).
    pub const STATS: &str = "dynamicmodulescustom.";
    const POLL: Duration = Duration::from_millis(25);

    pub fn yaml() -> String {
        let path = repo_root().join("envoy/envoy-native.yaml");
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// The module: `$TOLLGATE_NATIVE_MODULE`, else the release build.
    pub fn module() -> PathBuf {
        let path = std::env::var_os("TOLLGATE_NATIVE_MODULE").map_or_else(|| repo_root().join(MODULE_PATH), PathBuf::from);
        assert!(
            path.is_file(),
            "the native module {} is missing: cargo build --profile native -p tollgate-native",
            path.display()
        );
        path
    }

    /// The filter document embedded in `envoy-native.yaml`, parsed.
    pub fn document() -> serde_json::Value {
        let doc = render::embedded_document(&yaml()).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&doc).unwrap_or_else(|e| panic!("envoy-native.yaml's document is not JSON: {e}"))
    }

    /// `envoy-native.yaml` with ports, module and (optionally) document
    /// replaced, by the harness's renderer: it knows the Wasm module's
    /// anchor, so the native one is put in its place first.
    pub fn render(document: Option<&str>, authority: u16) -> String {
        let yaml = yaml();
        let anchor = format!("filename: {MODULE_PATH}");
        assert_eq!(yaml.matches(&anchor).count(), 1, "envoy-native.yaml: expected `{anchor}` once");
        let yaml = yaml.replace(&anchor, &format!("filename: {}", render::MODULE_PATH));
        let ports = Ports { listener: 0, admin: 0, upstream: echo::shared().port(), authority };
        render::render(&yaml, ports, &module(), document).unwrap_or_else(|e| panic!("cannot render envoy-native.yaml: {e}"))
    }

    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
    }

    fn command(dir: &std::path::Path, config: &std::path::Path, demo_key: bool, mode: &[&str]) -> Command {
        let out = fs::File::create(dir.join("stdout.log")).expect("stdout.log");
        let err = out.try_clone().expect("stderr");
        let mut c = Command::new(envoy_binary());
        c.arg("-c")
            .arg(config)
            .args(["--concurrency", "2", "--use-dynamic-base-id"])
            .arg("--base-id-path")
            .arg(dir.join("base-id"))
            .arg("--admin-address-path")
            .arg(dir.join("admin-address"))
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .args(mode)
            .current_dir(dir)
            .env_remove(DEMO_KEY_ENV)
            .env_remove("ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if demo_key {
            c.env(DEMO_KEY_ENV, DEMO_KEY_B64);
            // The native module reads Envoy's process environment: the edge
            // credential the harness's authorities require.
            c.env(EDGE_CREDENTIAL_ENV, EDGE_CREDENTIAL);
        } else {
            c.env_remove(EDGE_CREDENTIAL_ENV);
        }
        c
    }

    fn logs(dir: &std::path::Path) -> String {
        ["envoy.log", "stdout.log"].iter().filter_map(|n| fs::read_to_string(dir.join(n)).ok()).collect()
    }

    fn prepare(document: Option<&str>, authority: Option<u16>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new().prefix("tollgate-e2e-native-").tempdir().expect("temp dir");
        let config = dir.path().join("envoy.yaml");
        fs::write(&config, render(document, authority.unwrap_or_else(closed_port))).expect("write envoy.yaml");
        (dir, config)
    }

    /// `envoy --mode validate` on the rendered config: (passed, log).
    pub fn validate(document: Option<&str>, demo_key: bool) -> (bool, String) {
        let (dir, config) = prepare(document, None);
        let mut child = spawn_tied(command(dir.path(), &config, demo_key, &["--mode", "validate"])).expect("run Envoy");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.success(), logs(dir.path()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("envoy --mode validate did not finish:\n{}", tail(&logs(dir.path()), 20));
            }
            thread::sleep(POLL);
        }
    }

    /// A running Envoy with the native module. Killed on drop.
    pub struct NativeEnvoy {
        child: Mutex<Option<Child>>,
        dir: Option<tempfile::TempDir>,
        pub admin: SocketAddr,
        pub listener: SocketAddr,
    }

    impl NativeEnvoy {
        pub fn start(document: Option<&serde_json::Value>, authority: Option<u16>) -> NativeEnvoy {
            let doc = document.map(|d| serde_json::to_string_pretty(d).expect("document serializes"));
            let (dir, config) = prepare(doc.as_deref(), authority);
            let mut child = spawn_tied(command(dir.path(), &config, true, &[])).expect("run Envoy");
            let deadline = Instant::now() + READY_TIMEOUT;
            let admin: SocketAddr = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("Envoy exited during start-up ({status}):\n{}", tail(&logs(dir.path()), 40));
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("Envoy not ready after {READY_TIMEOUT:?}:\n{}", tail(&logs(dir.path()), 40));
                }
                if let Some(admin) = fs::read_to_string(dir.path().join("admin-address")).ok().and_then(|s| s.trim().parse().ok()) {
                    if http::send(admin, &Request::get("/ready")).is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE") {
                        break admin;
                    }
                }
                thread::sleep(POLL);
            };
            let listeners = http::send(admin, &Request::get("/listeners?format=json")).expect("admin /listeners").json();
            let listener = listeners["listener_statuses"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["name"] == "ingress"))
                .and_then(|l| {
                    let a = &l["local_address"]["socket_address"];
                    Some(SocketAddr::new(a["address"].as_str()?.parse().ok()?, u16::try_from(a["port_value"].as_u64()?).ok()?))
                })
                .unwrap_or_else(|| panic!("no ingress listener: {listeners}"));
            NativeEnvoy { child: Mutex::new(Some(child)), dir: Some(dir), admin, listener }
        }

        pub fn send(&self, req: &Request) -> Response {
            http::send(self.listener, req).unwrap_or_else(|e| panic!("{req} through Envoy: {e}\n{}", tail(&self.log(), 20)))
        }

        /// One stat of the module, by its name without the namespace (0 when absent).
        pub fn stat(&self, name: &str) -> u64 {
            let full = format!("{STATS}{name}");
            let r = http::send(self.admin, &Request::get(&format!("/stats?filter={full}"))).expect("admin /stats");
            let stats: BTreeMap<String, u64> =
                r.text().lines().filter_map(|l| l.split_once(": ")).filter_map(|(n, v)| Some((n.to_owned(), v.trim().parse().ok()?))).collect();
            stats.get(&full).copied().unwrap_or(0)
        }

        pub fn log(&self) -> String {
            self.dir.as_ref().map(|d| logs(d.path())).unwrap_or_default()
        }

        /// Stops Envoy (SIGTERM, bounded) and returns its complete log.
        pub fn stop(&self) -> String {
            if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
                // SAFETY: signalling our own child by its pid.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                    thread::sleep(POLL);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            self.log()
        }
    }

    impl Drop for NativeEnvoy {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(dir) = self.dir.take() {
                if thread::panicking() || std::env::var_os("TOLLGATE_E2E_KEEP").is_some() {
                    eprintln!("Envoy's files are kept in {}", dir.keep().display());
                }
            }
        }
    }
}

use native::NativeEnvoy;

/// The native document without callouts (as `tollgate_e2e::local_document`
/// makes of envoy.yaml's): every decision local.
fn local_document() -> serde_json::Value {
    let mut doc = native::document();
    let top = doc.as_object_mut().expect("an object");
    for section in ["authority", "revocation", "refresh"] {
        top.remove(section);
    }
    for rule in doc["rules"].as_array_mut().into_iter().flatten() {
        let rule = rule.as_object_mut().expect("a rule is an object");
        rule.remove("fresh");
        rule.remove("max_staleness_ms");
    }
    doc
}

/// The full native document with test intervals (as `callouts::document`).
fn callout_document(sync_interval_ms: u64, max_staleness_ms: u64, timeout_ms: u64) -> serde_json::Value {
    let mut doc = native::document();
    doc["authority"]["timeout_ms"] = timeout_ms.into();
    doc["revocation"]["sync_interval_ms"] = sync_interval_ms.into();
    doc["revocation"]["max_staleness_ms"] = max_staleness_ms.into();
    doc
}

/// Starts Envoy and waits until `probe` passes ten times in a row: the
/// first snapshot is in and every worker loaded it.
fn edge(doc: &serde_json::Value, authority: u16, probe: &Request, within: Duration) -> NativeEnvoy {
    let envoy = NativeEnvoy::start(Some(doc), Some(authority));
    let mut run = 0;
    let ready = callouts::poll(within, Duration::from_millis(20), || {
        match http::send(envoy.listener, probe) {
            Ok(r) if r.status == 200 => run += 1,
            _ => run = 0,
        }
        (run >= 10).then_some(())
    });
    assert!(ready.is_some(), "the native edge did not allow {probe} within {within:?}:\n{}", native_tail(&envoy));
    envoy
}

fn native_tail(envoy: &NativeEnvoy) -> String {
    tollgate_e2e::envoy::tail(&envoy.log(), 30)
}

/// Panics, caught or not, must not happen; nor crashes.
fn assert_clean(envoy: &NativeEnvoy) {
    assert_eq!(envoy.stat("tollgate.native.panic"), 0, "a panic was caught at the boundary:\n{}", native_tail(envoy));
    let log = envoy.stop();
    assert_no_crash(&log);
    for needle in ["Caught Segmentation fault", "Caught Aborted", "Backtrace (use"] {
        assert!(!log.contains(needle), "Envoy crashed (`{needle}`):\n{}", tollgate_e2e::envoy::tail(&log, 40));
    }
}

// ---- loading ------------------------------------------------------------------

#[test]
fn native_yaml_carries_the_same_document_as_tollgate_json_and_validates() {
    let path = tollgate_e2e::envoy::repo_root().join("envoy/tollgate.json");
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read tollgate.json")).expect("JSON");
    assert_eq!(native::document(), file, "envoy-native.yaml's document differs from envoy/tollgate.json");
    let env = |name: &str| match name {
        DEMO_KEY_ENV => Some(DEMO_KEY_B64.to_owned()),
        tollgate_e2e::authority::EDGE_CREDENTIAL_ENV => Some(tollgate_e2e::authority::EDGE_CREDENTIAL.to_owned()),
        _ => None,
    };
    let doc = tollgate_e2e::render::embedded_document(&native::yaml()).unwrap();
    Config::parse(doc.as_bytes(), &env).expect("the validator accepts the native document");

    let (ok, log) = native::validate(None, true);
    assert!(ok, "envoy --mode validate refused envoy-native.yaml:\n{}", tollgate_e2e::envoy::tail(&log, 30));
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "Envoy did not confirm the module's ABI version:\n{}",
        tollgate_e2e::envoy::tail(&log, 30)
    );
    assert!(log.contains("configuration accepted (native module, ABI v0.2.0"), "{}", tollgate_e2e::envoy::tail(&log, 30));
    assert!(log.contains("panic strategy unwind"), "the module under test must be built with panic = \"unwind\":\n{}", tollgate_e2e::envoy::tail(&log, 30));
}

#[test]
fn a_bad_document_is_refused_with_the_field_named_in_envoys_log() {
    struct Bad {
        name: &'static str,
        edit: fn(&mut serde_json::Value),
        demo_key: bool,
        field: &'static str,
    }
    let table = [
        Bad { name: "secret not in Envoy's environment", edit: |_| {}, demo_key: false, field: "keys[0].secret_env" },
        Bad { name: "a number where a string goes", edit: |d| d["issuer"] = 42.into(), demo_key: true, field: "issuer" },
        Bad { name: "an unknown rule field", edit: |d| d["rules"][1]["pathh"] = "/x".into(), demo_key: true, field: "rules[1]" },
        Bad { name: "a negative timeout", edit: |d| d["authority"]["timeout_ms"] = (-1).into(), demo_key: true, field: "authority.timeout_ms" },
    ];
    for bad in table {
        let mut doc = native::document();
        (bad.edit)(&mut doc);
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let (ok, log) = native::validate(Some(&text), bad.demo_key);
        assert!(!ok, "{}: Envoy accepted the document", bad.name);
        let refusal = log.lines().find(|l| l.contains("tollgate: filter `tollgate` refused")).unwrap_or_else(|| {
            panic!("{}: no refusal from the module in Envoy's log:\n{}", bad.name, tollgate_e2e::envoy::tail(&log, 20))
        });
        assert!(refusal.contains(bad.field), "{}: the refusal does not name `{}`: {refusal}", bad.name, bad.field);
        assert!(!log.contains(DEMO_KEY_B64), "{}: the secret reached Envoy's log", bad.name);
    }
}

// ---- local decisions ------------------------------------------------------------

#[test]
fn a_valid_token_passes_with_identity_headers_and_no_token_is_401() {
    let envoy = NativeEnvoy::start(Some(&local_document()), None);
    let token = tokens::mint(&tollgate::token::Claims {
        sid: Some("s-42".into()),
        ..tokens::claims("alice")
    });

    let r = envoy.send(&api(&token).header("X-Tollgate-Sub", "mallory"));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.upstream_header("x-tollgate-sub"), ["alice"], "the subject, and only the edge's: {r}");
    assert_eq!(r.upstream_header("x-tollgate-scope"), ["read write"]);
    assert_eq!(r.upstream_header("x-tollgate-sid"), ["s-42"]);
    assert_eq!(r.upstream_header("x-tollgate-ver"), ["1"]);

    let r = envoy.send(&Request::get("/api/items"));
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tollgate-demo\""));
    assert_eq!(r.json()["error_description"], "access token required");

    let wrong = tokens::mint(&tollgate::token::Claims { iss: "https://elsewhere".into(), ..tokens::claims("alice") });
    let r = envoy.send(&api(&wrong).secret(&wrong));
    assert_eq!(r.status, 401, "{r}");
    assert!(r.secret_leaks(&[wrong.clone()], true).is_empty(), "the token came back: {r}");

    let r = envoy.send(&Request::get("/public/x"));
    assert_eq!(r.status, 200, "an anonymous rule passes: {r}");

    assert!(envoy.stat("tollgate.allowed") >= 1);
    assert!(envoy.stat("tollgate.denied.no_token") >= 1);
    assert!(envoy.stat("tollgate.denied.bad_issuer") >= 1);
    assert_clean(&envoy);
}

#[test]
fn both_workers_decide_under_concurrent_load() {
    // Many connections at once land on both workers (one engine each).
    let envoy = NativeEnvoy::start(Some(&local_document()), None);
    let token = tokens::token_with_scope("bob", "read");
    let listener = envoy.listener;
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let token = token.clone();
            thread::spawn(move || {
                (0..25)
                    .map(|j| {
                        let req = if (i + j) % 2 == 0 { api(&token) } else { Request::get("/api/items") };
                        http::send(listener, &req).map(|r| (req.headers.is_empty(), r.status)).expect("answer")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (anonymous, status) in handles.into_iter().flat_map(|h| h.join().expect("client")) {
        assert_eq!(status, if anonymous { 401 } else { 200 });
    }
    assert_eq!(envoy.stat("tollgate.allowed") + envoy.stat("tollgate.denied.no_token"), 200);
    assert_clean(&envoy);
}

// ---- callouts -----------------------------------------------------------------

#[test]
fn a_revocation_reaches_every_worker_within_the_bound() {
    let doc = callout_document(200, 2000, 500);
    let timing = Timing::of(&doc);
    let bound = timing.revocation_bound();
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let bob = authority.mint("bob", "read");
    let envoy = edge(&doc, authority.port(), &api(&bob), bound * 4);

    let carol = authority.mint("carol", "read write");
    assert_eq!(envoy.send(&api(&carol)).status, 200);
    let bump = authority.revoke_subject("carol");
    assert_eq!(bump.key, "sub:carol");
    let since = Instant::now();
    // Every request after the bound is denied; one connection each, so
    // both workers are asked.
    let mut last_allowed = None;
    let mut first_denied = None;
    while since.elapsed() < bound + Duration::from_millis(300) {
        let sent = since.elapsed();
        let r = envoy.send(&api(&carol));
        match r.status {
            200 => {
                assert!(sent <= bound, "carol allowed {sent:?} after her revocation (bound {bound:?})");
                last_allowed = Some(sent);
            }
            401 if r.json()["error_description"] == "token revoked" => {
                first_denied.get_or_insert(sent);
            }
            _ => panic!("unexpected answer at {sent:?}: {r}"),
        }
        thread::sleep(Duration::from_millis(10));
    }
    let first_denied = first_denied.expect("carol was never denied");
    assert_eq!(envoy.send(&api(&bob)).status, 200, "bob, never revoked, passes");
    let fresh = authority.mint("carol", "read write");
    assert_eq!(envoy.send(&api(&fresh)).status, 200, "a token issued after the bump passes");
    assert!(envoy.stat("tollgate.revocation.sync_ok") > 0);
    assert!(envoy.stat("tollgate.revocation.entries") >= 1);
    eprintln!("REPORT native revocation: bound {bound:?}; first denied after {first_denied:?}, last allowed at {last_allowed:?}");
    assert_clean(&envoy);
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[test]
fn a_refresh_storm_is_one_callout_for_the_whole_envoy() {
    const CLIENTS: usize = 100;
    const ROTATED: &str = "tollgate_authority_refresh_total{outcome=\"rotated\"}";
    const GRANTS: &str = "tollgate_authority_grants_total{grant_type=\"refresh_token\",result=\"ok\"}";
    let authority = Authority::start(Store::Sqlite, Settings { access_ttl_secs: Some(2), ..Settings::default() });
    let mut doc = callout_document(200, 5000, 1000);
    doc["clock_skew_seconds"] = 0.into();
    doc["refresh"]["refresh_before_seconds"] = 1.into();
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    let envoy = edge(&doc, authority.port(), &api(&bob), timing.revocation_bound() * 4);

    let login = authority.login_alice();
    let exp = claims_of(&login.access_token)["exp"].as_u64().expect("exp");
    let at = u128::from(exp) * 1000 + 50;
    if at > now_ms() {
        thread::sleep(Duration::from_millis((at - now_ms()) as u64));
    }
    assert_eq!(envoy.send(&api(&login.access_token)).status, 401, "the access token has expired");

    let before = authority.metrics();
    let cookie = format!("tg_access={}; tg_refresh={}", login.access_token, login.refresh_token);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let listener = envoy.listener;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (barrier, cookie) = (barrier.clone(), cookie.clone());
            thread::spawn(move || {
                let req = Request::get(&format!("/api/items/{i}")).header("Cookie", &cookie);
                barrier.wait();
                http::send(listener, &req).expect("answer")
            })
        })
        .collect();
    let answers: Vec<Response> = handles.into_iter().map(|h| h.join().expect("client")).collect();
    let after = authority.metrics();
    let delta = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);

    let mut pairs = std::collections::BTreeSet::new();
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(r.status, 200, "client {i}: {r}");
        let access = set_cookie(r, "tg_access").map(|c| c.0);
        let refresh = set_cookie(r, "tg_refresh").map(|c| c.0);
        assert!(access.is_some() && refresh.is_some(), "client {i}: no new pair: {r}");
        let up = r.upstream_header("cookie").join("; ");
        assert!(!up.contains(&login.refresh_token), "client {i}: the upstream saw the refresh token");
        pairs.insert((access, refresh));
    }
    assert_eq!(pairs.len(), 1, "every client gets the same new pair");
    assert_eq!(delta(ROTATED), 1.0, "one rotation for {CLIENTS} requests");
    assert_eq!(
        delta(GRANTS),
        1.0,
        "one refresh callout for the whole Envoy (both workers share one in-process store); edge: ok={} coalesced={} shared={}",
        envoy.stat("tollgate.refresh.ok"),
        envoy.stat("tollgate.refresh.coalesced"),
        envoy.stat("tollgate.refresh.shared")
    );
    assert_eq!(envoy.stat("tollgate.refresh.ok"), 1);
    eprintln!(
        "REPORT native refresh storm: {CLIENTS} clients, one pair, 1 grant; edge: coalesced={} shared={}",
        envoy.stat("tollgate.refresh.coalesced"),
        envoy.stat("tollgate.refresh.shared")
    );
    assert_clean(&envoy);
}

#[test]
fn a_fresh_route_pauses_for_a_live_check_and_resumes_on_its_answer() {
    // The admin rule is `fresh`: the request waits for `GET /v1/versions`
    // (a callout from the stream, answered on its worker) and is resumed.
    let doc = callout_document(500, 5000, 500);
    let timing = Timing::of(&doc);
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let bob = authority.mint("bob", "read");
    let envoy = edge(&doc, authority.port(), &api(&bob), timing.revocation_bound() * 4);
    let admin = authority.admin_token();
    for i in 0..4 {
        let r = envoy.send(&Request::get(&format!("/admin/users/{i}")).bearer(&admin));
        assert_eq!(r.status, 200, "request {i}: {r}");
        assert_eq!(r.upstream_header("x-tollgate-sub"), ["admin"], "{r}");
    }
    let r = envoy.send(&Request::get("/admin/users").bearer(&bob));
    assert_eq!(r.status, 403, "a token without the admin scope: {r}");
    assert!(envoy.stat("tollgate.live_check.ok") >= 1, "no live check was answered");
    assert_eq!(envoy.stat("tollgate.live_check.failed"), 0);
    assert_clean(&envoy);
}
