//! Runs the filter in a real Envoy, on either host ([`Host`]: the Wasm
//! filter or the native module, `TOLLGATE_E2E_HOST`).
//!
//! Each [`Envoy`] renders its host's shipped configuration
//! (`envoy/envoy.yaml` or `envoy/envoy-native.yaml`: ports, module path and
//! optionally the filter document replaced, nothing else) into its own temp
//! dir, starts `envoy --concurrency 2 --use-dynamic-base-id` with the demo key
//! and the edge credential in its environment, and waits (bounded) until the
//! admin's `/ready` says `LIVE`. The listener and admin bind port 0; their
//! real ports are read back from the admin, so parallel tests never race for
//! a port. Tests name the filter's stats without the host's namespace
//! ([`Envoy::stat`]).
//!
//! No Envoy outlives the test process: every child is spawned from one
//! long-lived thread with `PR_SET_PDEATHSIG = SIGKILL` (the kernel kills it
//! when the test process dies, however it dies), [`Envoy`] kills its child
//! on drop (also while unwinding from a panic), and the shared instance is
//! stopped by an `atexit` hook.

use crate::authority::{EDGE_CREDENTIAL, EDGE_CREDENTIAL_ENV};
use crate::echo;
use crate::host::Host;
use crate::http::{self, Request, Response};
use crate::render::{self, Ports};
use crate::tokens::{DEMO_KEY_B64, DEMO_KEY_ENV};
use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long Envoy may take to become ready (or to validate a config). A
/// bound, not a wait: a Wasm Envoy is ready in about a second alone, but
/// the differential suite starts eight at once, each compiling the module
/// in V8 for two workers, and on a shared 2-core machine (load ~10) that
/// took more than 20 s.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(25);
/// Longer than the filter's tick without callouts (250 ms), which adds the
/// per-request counts to Envoy's counters.
const STATS_SETTLE: Duration = Duration::from_millis(400);
/// The counters the filter batches until its tick (`src/edge/engine.rs`:
/// `count` for the per-request decisions, the token cache's on the tick).
const BATCHED_COUNTERS: [&str; 4] = ["allowed", "anonymous", "denied.", "token_cache."];

/// The repository root (`tests/e2e/../..`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The Envoy binary: `$TOLLGATE_ENVOY`, else `<repo>/.venv/bin/envoy`.
/// Panics (the test fails) when it is missing.
pub fn envoy_binary() -> PathBuf {
    let path = match std::env::var_os("TOLLGATE_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/envoy"),
    };
    assert!(
        path.is_file(),
        "Envoy not found at {} (set TOLLGATE_ENVOY, or run `make build` / `make test`, \
         which install Envoy 1.40 into .venv)",
        path.display()
    );
    path
}

/// The configuration `host` ships, as `make run` uses it.
pub fn shipped_yaml(host: Host) -> String {
    let path = repo_root().join(host.yaml_file());
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The filter document embedded in the configuration `host` ships, parsed.
pub fn shipped_document(host: Host) -> serde_json::Value {
    let file = host.yaml_file();
    let doc = render::embedded_document(&shipped_yaml(host)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&doc).unwrap_or_else(|e| panic!("{file}: the embedded document is not JSON: {e}"))
}

/// The selected host's shipped configuration ([`Host::selected`]).
pub fn demo_yaml() -> String {
    shipped_yaml(Host::selected())
}

/// The filter document of the selected host's shipped configuration (the
/// same in both: `tests/config_files.rs`).
pub fn demo_document() -> serde_json::Value {
    shipped_document(Host::selected())
}

/// The demo document without anything that calls the authority: no
/// `authority`, `revocation` or `refresh` section, and no rule asks for a
/// live check (`fresh`, `max_staleness_ms`). Every decision is local, so the
/// filter's local behaviour is tested without an authority running (with
/// one, see `tests/revocation.rs` and friends).
pub fn local_document() -> serde_json::Value {
    let mut doc = demo_document();
    let top = doc.as_object_mut().expect("the demo document is an object");
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

/// One textual edit of the rendered configuration: `from` must occur
/// exactly `count` times (an edit the file no longer matches fails loudly).
/// Both hosts' files share everything but the filter block, so an edit
/// outside it applies to either.
#[derive(Debug, Clone)]
pub struct YamlEdit {
    pub from: String,
    pub to: String,
    pub count: usize,
}

/// How to run one Envoy.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host: the selected one ([`Host::selected`]) unless a
    /// host-specific test pins another ([`Options::on`]).
    pub host: Host,
    /// The filter document; `None` keeps the one in the host's shipped
    /// configuration.
    pub document: Option<String>,
    /// Put the demo key into Envoy's environment (`TOLLGATE_DEMO_KEY`).
    pub demo_key_env: bool,
    /// The edge credential in Envoy's environment
    /// (`TOLLGATE_EDGE_CREDENTIAL`, for the filter's
    /// `authority.credential_env`); default: the one every harness
    /// authority requires ([`crate::authority::EDGE_CREDENTIAL`]). `None`:
    /// the variable is not set.
    pub edge_credential: Option<String>,
    /// The port of the `authority` cluster; `None`: a port nothing listens on.
    pub authority_port: Option<u16>,
    /// Edits of the rendered YAML, applied in order after rendering.
    pub yaml_edits: Vec<YamlEdit>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: Host::selected(),
            document: None,
            demo_key_env: true,
            edge_credential: Some(EDGE_CREDENTIAL.to_owned()),
            authority_port: None,
            yaml_edits: Vec::new(),
        }
    }
}

impl Options {
    pub fn with_document(document: &serde_json::Value) -> Options {
        Options {
            document: Some(serde_json::to_string_pretty(document).expect("document serializes")),
            ..Options::default()
        }
    }

    /// The demo document without callouts ([`local_document`]).
    pub fn local() -> Options {
        Options::with_document(&local_document())
    }

    /// Points the `authority` cluster at `port` on loopback.
    pub fn authority(mut self, port: u16) -> Options {
        self.authority_port = Some(port);
        self
    }

    /// Runs on `host` whatever the selected one: for host-specific tests.
    pub fn on(mut self, host: Host) -> Options {
        self.host = host;
        self
    }

    /// Adds a YAML edit (see [`YamlEdit`]).
    pub fn edit_yaml(mut self, from: &str, to: &str, count: usize) -> Options {
        self.yaml_edits.push(YamlEdit {
            from: from.into(),
            to: to.into(),
            count,
        });
        self
    }
}

/// One prepared run: a temp dir with the rendered config and a command.
struct Prepared {
    dir: tempfile::TempDir,
    command: Command,
    host: Host,
}

impl Prepared {
    fn new(options: &Options, mode_args: &[&str]) -> Prepared {
        let binary = envoy_binary();
        let host = options.host;
        let module = host.module();
        let file = host.yaml_file();
        let dir = tempfile::Builder::new()
            .prefix("tollgate-e2e-")
            .tempdir()
            .expect("temp dir");
        let ports = Ports {
            listener: 0,
            admin: 0,
            upstream: echo::shared().port(),
            authority: options.authority_port.unwrap_or_else(closed_port),
        };
        let mut yaml =
            render::render(&shipped_yaml(host), host, ports, &module, options.document.as_deref())
                .unwrap_or_else(|e| panic!("cannot render {file}: {e}"));
        for edit in &options.yaml_edits {
            let found = yaml.matches(edit.from.as_str()).count();
            assert_eq!(
                found, edit.count,
                "{file}: expected `{}` {} times, found it {found} times",
                edit.from, edit.count
            );
            yaml = yaml.replace(edit.from.as_str(), &edit.to);
        }
        let config = dir.path().join("envoy.yaml");
        fs::write(&config, yaml).expect("write envoy.yaml");
        let out = fs::File::create(dir.path().join("stdout.log")).expect("stdout.log");
        let err = out.try_clone().expect("stderr");

        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--use-dynamic-base-id"])
            .arg("--base-id-path")
            .arg(dir.path().join("base-id"))
            .arg("--admin-address-path")
            .arg(dir.path().join("admin-address"))
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .args(mode_args)
            .current_dir(dir.path())
            .env_remove(DEMO_KEY_ENV)
            .env_remove(EDGE_CREDENTIAL_ENV)
            // The module is named by path; no search path of the caller's.
            .env_remove("ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if options.demo_key_env {
            command.env(DEMO_KEY_ENV, DEMO_KEY_B64);
        }
        if let Some(credential) = &options.edge_credential {
            command.env(EDGE_CREDENTIAL_ENV, credential);
        }
        Prepared { dir, command, host }
    }
}

/// A loopback port nothing listens on (the authority's, unused so far):
/// connections to it are refused at once.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Everything Envoy wrote: its log file, then stdout/stderr.
fn read_logs(dir: &Path) -> String {
    let mut all = String::new();
    for name in ["envoy.log", "stdout.log"] {
        if let Ok(text) = fs::read_to_string(dir.join(name)) {
            all.push_str(&text);
        }
    }
    all
}

/// The last `n` lines of `log`, for failure messages.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Why an Envoy did not come up.
#[derive(Debug)]
pub struct StartError {
    /// `Some` when Envoy exited; `None` when it was killed after the timeout.
    pub status: Option<ExitStatus>,
    pub log: String,
    pub reason: String,
}

/// A running Envoy with the filter. Killed on drop.
pub struct Envoy {
    /// The host the filter runs on.
    pub host: Host,
    child: Mutex<Option<Child>>,
    dir: Mutex<Option<tempfile::TempDir>>,
    dir_path: PathBuf,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
}

impl Envoy {
    /// Starts Envoy with `options`; panics with its log when it does not
    /// become ready.
    pub fn start(options: &Options) -> Envoy {
        Envoy::try_start(options).unwrap_or_else(|e| {
            panic!(
                "Envoy ({} host) did not start ({}; exit {:?}). Log tail:\n{}",
                options.host,
                e.reason,
                e.status,
                tail(&e.log, 40)
            )
        })
    }

    /// Starts Envoy and waits until it is ready, or until it exits or
    /// [`READY_TIMEOUT`] passes.
    pub fn try_start(options: &Options) -> Result<Envoy, StartError> {
        let Prepared { dir, command, host } = Prepared::new(options, &[]);
        let mut child = spawn_tied(command).unwrap_or_else(|e| panic!("cannot run Envoy: {e}"));
        let deadline = Instant::now() + READY_TIMEOUT;
        let admin_file = dir.path().join("admin-address");
        let fail = |child: &mut Child, reason: String| {
            let status = match child.try_wait() {
                Ok(Some(s)) => Some(s),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
            };
            StartError {
                status,
                log: read_logs(dir.path()),
                reason,
            }
        };
        let admin = loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(fail(&mut child, "Envoy exited during start-up".into()));
            }
            if Instant::now() > deadline {
                return Err(fail(
                    &mut child,
                    format!("not ready after {READY_TIMEOUT:?}"),
                ));
            }
            if let Some(admin) = fs::read_to_string(&admin_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                if let Ok(r) = http::send(admin, &Request::get("/ready")) {
                    if r.status == 200 && r.text().trim() == "LIVE" {
                        break admin;
                    }
                }
            }
            thread::sleep(POLL);
        };
        let listener = match ingress_address(admin) {
            Ok(a) => a,
            Err(e) => return Err(fail(&mut child, e)),
        };
        let dir_path = dir.path().to_owned();
        Ok(Envoy {
            host,
            child: Mutex::new(Some(child)),
            dir: Mutex::new(Some(dir)),
            dir_path,
            admin,
            listener,
        })
    }

    /// Sends `req` through Envoy's listener.
    pub fn send(&self, req: &Request) -> Response {
        http::send(self.listener, req).unwrap_or_else(|e| {
            panic!(
                "request {req} through Envoy failed: {e}\nEnvoy log tail:\n{}",
                tail(&self.log(), 20)
            )
        })
    }

    /// The filter's own counters and gauges, named without the host's
    /// namespace ([`Host::stats_namespace`]): `tollgate.allowed`, whatever
    /// the host. Every stat the filter declared is there, moved or not.
    ///
    /// The filter adds its per-request counts to Envoy's counters on its
    /// tick (`tollgate::edge::STATS_TICK_MS` at most), so this polls: it
    /// returns once two reads `STATS_SETTLE` apart agree on every batched
    /// counter (the counts of the requests sent so far have reached Envoy),
    /// or, under requests that never stop, after 10 s. Only the batched
    /// counters are compared: feed and live-check counters move on their
    /// own while the authority is polled, and are counted at once.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let batched = |all: BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            all.into_iter().filter(|(name, _)| BATCHED_COUNTERS.iter().any(|b| name.contains(b))).collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = batched(self.read_stats("Counters"));
        loop {
            thread::sleep(STATS_SETTLE);
            let now = batched(self.read_stats("Counters"));
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        self.read_stats("All")
    }

    fn read_stats(&self, kind: &str) -> BTreeMap<String, u64> {
        let namespace = self.host.stats_namespace();
        let filter = namespace.trim_end_matches('.');
        let r = http::send(self.admin, &Request::get(&format!("/stats?filter={filter}&type={kind}")))
            .unwrap_or_else(|e| panic!("admin /stats: {e}"));
        assert_eq!(r.status, 200, "admin /stats: {r}");
        r.text()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(n, v)| Some((n.strip_prefix(namespace)?.to_owned(), v.trim().parse().ok()?)))
            .collect()
    }

    /// Envoy's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.id())
    }

    /// Envoy's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("Envoy is running");
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
    }

    /// One of the filter's stats by its name without the host's namespace
    /// (0 when absent), e.g. `tollgate.refresh.ok` (in Envoy
    /// `wasmcustom.tollgate.refresh.ok` or
    /// `dynamicmodulescustom.tollgate.refresh.ok`).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Everything Envoy logged so far (Envoy flushes its log file
    /// periodically; call [`Envoy::stop`] first for a complete log).
    pub fn log(&self) -> String {
        read_logs(&self.dir_path)
    }

    /// Stops Envoy (SIGTERM, then SIGKILL after a bounded wait) and returns
    /// its complete log.
    pub fn stop(&self) -> String {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            terminate(&mut child);
        }
        self.log()
    }

    fn shutdown(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(dir) = dir {
            if thread::panicking() || std::env::var_os("TOLLGATE_E2E_KEEP").is_some() {
                eprintln!("Envoy's files are kept in {}", dir.keep().display());
            }
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn terminate(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal; no memory
    // is shared, the worst case (the child already reaped) is ESRCH.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The bound address of the `ingress` listener, from the admin.
fn ingress_address(admin: SocketAddr) -> Result<SocketAddr, String> {
    let r = http::send(admin, &Request::get("/listeners?format=json"))
        .map_err(|e| format!("admin /listeners: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("admin /listeners is not JSON ({e}): {}", r.text()))?;
    json["listener_statuses"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "ingress"))
        .and_then(|l| {
            let a = &l["local_address"]["socket_address"];
            Some(SocketAddr::new(
                a["address"].as_str()?.parse().ok()?,
                u16::try_from(a["port_value"].as_u64()?).ok()?,
            ))
        })
        .ok_or_else(|| format!("no ingress listener in admin /listeners: {json}"))
}

/// The Envoy shared by every test of this process that uses the local
/// document ([`local_document`]: the demo configuration without callouts).
/// Started on first use; stopped at exit.
pub fn shared() -> &'static Envoy {
    static SHARED: OnceLock<Envoy> = OnceLock::new();
    extern "C" fn stop_shared() {
        if let Some(e) = SHARED.get() {
            e.shutdown();
        }
    }
    SHARED.get_or_init(|| {
        let envoy = Envoy::start(&Options::local());
        // SAFETY: atexit(3) with a plain `extern "C" fn` that never
        // unwinds across the boundary (it only signals child processes).
        unsafe {
            libc::atexit(stop_shared);
        }
        envoy
    })
}

/// The outcome of `envoy --mode validate`.
#[derive(Debug)]
pub struct Validation {
    pub success: bool,
    pub log: String,
}

/// Runs `envoy --mode validate` on the rendered config (bounded by
/// [`READY_TIMEOUT`]). Validation loads the module and runs `on_configure`.
pub fn validate(options: &Options) -> Validation {
    let Prepared { dir, command, .. } = Prepared::new(options, &["--mode", "validate"]);
    let mut child = spawn_tied(command).unwrap_or_else(|e| panic!("cannot run Envoy: {e}"));
    let deadline = Instant::now() + READY_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "envoy --mode validate did not finish in {READY_TIMEOUT:?}:\n{}",
                tail(&read_logs(dir.path()), 20)
            );
        }
        thread::sleep(POLL);
    };
    Validation {
        success: status.success(),
        log: read_logs(dir.path()),
    }
}

pub use tollgate_test_support::process::spawn_tied;
