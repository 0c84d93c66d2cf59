//! At load the filter logs, once, its version, a fingerprint of its
//! configuration document and what the document holds (rules, key ids),
//! on either host, and nothing of the document itself: not its secret,
//! not its issuer.

use tollgate_e2e::envoy::local_document;
use tollgate_e2e::host::Host;
use tollgate_e2e::{Envoy, Options};

#[test]
fn the_filter_logs_its_version_and_configuration_fingerprint_once_at_load() {
    let document = local_document();
    let envoy = Envoy::start(&Options::with_document(&document));
    let log = envoy.stop();
    // The bytes Envoy was given (Options serializes the document pretty).
    let bytes = serde_json::to_string_pretty(&document).expect("serializes");
    let fingerprint = tollgate::edge::fingerprint(bytes.as_bytes()).expect("a JSON document");
    let host = match Host::selected() {
        Host::Wasm => "wasm",
        Host::Native => "native",
    };
    let rules = document["rules"].as_array().map_or(0, Vec::len);
    let kids: Vec<&str> = document["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or("-"))
        .collect();
    let want = format!(
        "tollgate {}: configuration accepted on the {host} host (fingerprint {fingerprint}, {rules} rules, {} keys: {})",
        tollgate::edge::VERSION,
        kids.len(),
        kids.join(", ")
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("configuration accepted on the")).collect();
    assert_eq!(lines.len(), 1, "one load line per Envoy and document:\n{}", lines.join("\n"));
    assert!(lines[0].ends_with(&want), "{}\nwant it to end with\n{want}", lines[0]);
    assert!(lines[0].contains("[info]"), "logged at info: {}", lines[0]);
    // Nothing of the document: its secrets (inline or from the environment), its issuer.
    let issuer = document["issuer"].as_str().expect("issuer");
    assert!(!log.contains(issuer), "the document's issuer reached the log");
    assert!(!log.contains(tollgate_e2e::tokens::DEMO_KEY_B64), "the key's secret reached the log");
}
