//! The metrics dashboards and alerts read, from a live Envoy with Tollgate
//! and a live authority:
//! - the edge's `tollgate.denied.<reason>` counters are ONE Prometheus
//!   metric with a `reason` label (the example configs' `stats_tags`);
//! - both expositions parse with a real Prometheus parser (the Python
//!   `prometheus_client` text and OpenMetrics parsers, installed by
//!   scripts/deploy/tools.sh);
//! - every metric the alert rules and the Grafana dashboard in
//!   deploy/monitoring/ name is exported by one of them.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_e2e::authority::{Authority, Settings, Store, EDGE_CREDENTIAL};
use tollgate_e2e::envoy::{demo_document, repo_root};
use tollgate_e2e::tokens::{claims, mint};
use tollgate_e2e::{http, Envoy, Host, Options, Request};

/// The Python that parses the expositions (scripts/deploy/tools.sh puts
/// `prometheus_client` into it).
fn python() -> std::path::PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(py.is_file(), "{} missing: run scripts/deploy/tools.sh (make test does)", py.display());
    py
}

/// Parses `text` with prometheus_client's parser for `format`
/// ("text" = the 0.0.4 text format Envoy serves, "openmetrics" = what the
/// authority serves) and returns every family and sample name. Panics with
/// the parser's error when the exposition does not parse.
fn parse(format: &str, text: &str) -> BTreeSet<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
parse = om if sys.argv[1] == "openmetrics" else text
names = set()
for family in parse(sys.stdin.read()):
    names.add(family.name)
    for s in family.samples:
        names.add(s.name)
print("\n".join(sorted(names)))
"#;
    let mut child = Command::new(python())
        .args(["-c", script, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write exposition");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the {format} exposition does not parse:\n{}\n(is prometheus_client installed? scripts/deploy/tools.sh)\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Metric names a PromQL text uses: identifiers of our two namespaces.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (promql[i..].starts_with("tollgate_authority_") || promql[i..].starts_with("envoy_tollgate_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = promql[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(promql.len(), |e| i + e);
            out.insert(promql[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Every metric name the rules file and the dashboard use.
fn names_in_rules_and_dashboard() -> BTreeSet<String> {
    let dir = repo_root().join("deploy/monitoring");
    let rules = std::fs::read_to_string(dir.join("tollgate.rules.yml")).expect("deploy/monitoring/tollgate.rules.yml");
    let dashboard = std::fs::read_to_string(dir.join("tollgate-dashboard.json")).expect("deploy/monitoring/tollgate-dashboard.json");
    let board: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(target["expr"].as_str().unwrap_or_default());
            exprs.push('\n');
        }
    }
    let mut names = metric_names(&rules);
    let from_board = metric_names(&exprs);
    assert!(!from_board.is_empty(), "the dashboard's panels query no metric");
    names.extend(from_board);
    names
}

#[test]
fn edge_denials_are_one_metric_with_a_reason_label_and_every_monitored_metric_is_exported() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let envoy = Envoy::start(&Options::with_document(&demo_document()).authority(authority.port()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while envoy.stat("tollgate.revocation.sync_ok") == 0 {
        assert!(Instant::now() < deadline, "the edge never synced with the authority:\n{}", envoy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let alice = authority.mint("alice", "read");
    let expired = mint(&tollgate::token::Claims { exp: Some(1), ..claims("bob") });
    for (req, status) in [
        (Request::get("/api/items").bearer(&alice), 200),
        (Request::get("/api/items"), 401),
        (Request::get("/api/items"), 401),
        (Request::get("/api/items").bearer(&expired), 401),
    ] {
        assert_eq!(envoy.send(&req).status, status, "{req}");
    }
    // The authority side: a login, a rotation, a replay, a refused password.
    let pair = authority.login_alice();
    assert_eq!(authority.refresh(&pair.refresh_token).status, 200);
    assert_eq!(authority.refresh(&pair.refresh_token).status, 200);
    let refused = authority.post_form("/v1/token", &[("grant_type", "password"), ("username", "alice"), ("password", "wrong")]);
    assert_eq!(refused.status, 400, "{refused}");

    // The filter adds its per-request counts on its tick: wait until they
    // have reached Envoy before reading the exposition.
    let _ = envoy.stats();
    let edge = http::send(envoy.admin, &Request::get("/stats/prometheus")).expect("admin /stats/prometheus");
    assert_eq!(edge.status, 200, "{edge}");
    let edge = edge.text();
    let host = match envoy.host {
        Host::Wasm => "wasmcustom",
        Host::Native => "dynamicmodulescustom",
    };
    // The label form: one family, the reason a label.
    for (reason, n) in [("no_token", 2), ("expired", 1)] {
        let want = format!("envoy_tollgate_denied{{tollgate_host=\"{host}\",reason=\"{reason}\"}} {n}");
        assert!(edge.lines().any(|l| l == want), "no line {want:?} in:\n{}", grep(&edge, "tollgate"));
    }
    assert_eq!(edge.matches("# TYPE envoy_tollgate_denied ").count(), 1, "one family for every reason");
    assert!(
        !edge.contains("tollgate_denied_no_token") && !edge.contains("custom_tollgate_"),
        "no per-reason or per-host metric names left:\n{}",
        grep(&edge, "tollgate")
    );

    let auth = authority.send(&Request::get("/metrics").bearer(EDGE_CREDENTIAL));
    assert_eq!(auth.status, 200, "{auth}");
    let auth_text = auth.text();
    assert!(auth_text.contains("tollgate_authority_build_info{version=\""), "build info:\n{auth_text}");

    let mut exported = parse("text", &edge);
    exported.extend(parse("openmetrics", &auth_text));
    let wanted = names_in_rules_and_dashboard();
    // A family without series yet (a counter nothing has counted, such as
    // throttled grants) is exported by its name alone: a sample name counts
    // when it or its family is there.
    let is_exported = |n: &String| {
        exported.contains(n)
            || ["_total", "_bucket", "_count", "_sum", "_info"]
                .iter()
                .any(|suffix| n.strip_suffix(suffix).is_some_and(|family| exported.contains(family)))
    };
    let missing: Vec<&String> = wanted.iter().filter(|n| !is_exported(n)).collect();
    assert!(
        missing.is_empty(),
        "the rules or the dashboard name metrics nobody exports: {missing:?}\nexported: {exported:?}"
    );
}

fn grep(text: &str, needle: &str) -> String {
    text.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>().join("\n")
}

/// The name extraction the cross-check relies on.
#[test]
fn metric_names_are_found_in_promql() {
    let cases: &[(&str, &[&str])] = &[
        ("sum by (reason) (rate(envoy_tollgate_denied[5m]))", &["envoy_tollgate_denied"]),
        (
            "histogram_quantile(0.99, sum by (le) (rate(tollgate_authority_token_request_duration_seconds_bucket[5m]))) > 1",
            &["tollgate_authority_token_request_duration_seconds_bucket"],
        ),
        ("a_tollgate_authority_x + envoy_tollgate_y{reason=\"x\"}", &["envoy_tollgate_y"]),
        ("up", &[]),
    ];
    for (expr, want) in cases {
        let got: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{expr}");
    }
}
