//! Reloading the filter's configuration in a running Envoy, the way Istio
//! delivers a `WasmPlugin` change: Envoy's extension config discovery
//! (ECDS) for the `tollgate` HTTP filter, from a file.
//!
//! [`Ecds::options`] takes the host's shipped configuration as the harness
//! renders it and replaces the filter's inline `typed_config` by a
//! `config_discovery` block whose config source is a file in a directory
//! Envoy watches (`path_config_source` with `watched_directory`); the file
//! holds the same `typed_config` (module, VM settings, the document) as a
//! `TypedExtensionConfig`. [`Ecds::publish`] writes a new document the way
//! Kubernetes swaps a mounted ConfigMap: into a temp file in the watched
//! directory, then renamed over the old one (atomic: Envoy never reads half
//! a file). Envoy counts each accepted update
//! (`extension_config_discovery.http_filter.tollgate.config_reload`) and
//! each refused one (`config_fail`): [`Ecds::reloads`].
//!
//! Nothing else of the shipped configuration changes.

use crate::envoy::{shipped_yaml, Envoy, Options};
use crate::host::Host;
use crate::http::{self, Request};
use crate::render::{self, Ports};
use std::fs;
use std::path::PathBuf;

/// The filter's name in both shipped configurations.
const FILTER: &str = "tollgate";

/// A filter configuration delivered by ECDS from a watched file.
pub struct Ecds {
    host: Host,
    dir: tempfile::TempDir,
}

impl Ecds {
    /// The directory Envoy watches, and `options` with the filter's
    /// configuration moved there (from `options.document`, else the shipped
    /// one). Start Envoy with the returned options; keep the [`Ecds`].
    pub fn options(options: Options) -> (Ecds, Options) {
        let dir = tempfile::Builder::new().prefix("tollgate-e2e-ecds-").tempdir().expect("temp dir");
        let ecds = Ecds { host: options.host, dir };
        let inline = ecds.filter_block(options.document.as_deref());
        let type_url = inline
            .lines()
            .find_map(|l| l.trim().strip_prefix("\"@type\": "))
            .expect("the filter's typed_config names its type")
            .trim()
            .to_owned();
        ecds.publish_block(&inline);
        let indent = " ".repeat(indent(inline.lines().next().expect("a filter block")));
        let file = serde_json::to_string(&ecds.file().display().to_string()).expect("path");
        let dir = serde_json::to_string(&ecds.dir.path().display().to_string()).expect("path");
        let discovery = format!(
            "{indent}- name: {FILTER}\n\
             {indent}  config_discovery:\n\
             {indent}    config_source:\n\
             {indent}      resource_api_version: V3\n\
             {indent}      path_config_source:\n\
             {indent}        path: {file}\n\
             {indent}        watched_directory: {{ path: {dir} }}\n\
             {indent}    type_urls: [{type_url}]\n"
        );
        let options = options
            .edit_yaml(&inline, &discovery, 1)
            // A config source needs a node identity, even a file.
            .edit_yaml("\nadmin:\n", "\nnode: { id: tollgate-e2e, cluster: tollgate-e2e }\nadmin:\n", 1);
        (ecds, options)
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("tollgate-filter.yaml")
    }

    /// The `- name: tollgate` filter block as the harness renders it for
    /// this host with `document` (ports do not occur in it).
    fn filter_block(&self, document: Option<&str>) -> String {
        let ports = Ports { listener: 0, admin: 0, upstream: 0, authority: 0 };
        let yaml = render::render(&shipped_yaml(self.host), self.host, ports, &self.host.module(), document)
            .unwrap_or_else(|e| panic!("render {}: {e}", self.host.yaml_file()));
        let lines: Vec<&str> = yaml.lines().collect();
        let starts: Vec<usize> =
            (0..lines.len()).filter(|i| lines[*i].trim() == format!("- name: {FILTER}")).collect();
        let [start] = starts[..] else { panic!("expected one `- name: {FILTER}` filter, found {}", starts.len()) };
        let outer = indent(lines[start]);
        let mut end = start + 1;
        while end < lines.len() && (lines[end].trim().is_empty() || indent(lines[end]) > outer) {
            end += 1;
        }
        while lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        let mut block = lines[start..end].join("\n");
        block.push('\n');
        block
    }

    /// Publishes `document` (the filter's JSON configuration): Envoy
    /// reloads the filter on every worker.
    pub fn publish(&self, document: &serde_json::Value) {
        let doc = serde_json::to_string_pretty(document).expect("document serializes");
        let block = self.filter_block(Some(&doc));
        self.publish_block(&block);
    }

    /// Writes the `TypedExtensionConfig` holding `block`'s `typed_config`,
    /// atomically (temp file in the watched directory, then rename).
    fn publish_block(&self, block: &str) {
        let mut lines = block.lines();
        let head = lines.next().expect("a filter block");
        let inner = indent(head) + 2;
        let mut out = format!(
            "resources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: {FILTER}\n"
        );
        for l in lines {
            if l.trim().is_empty() {
                out.push('\n');
            } else {
                assert!(indent(l) >= inner, "unexpected indentation in the filter block: {l:?}");
                out.push_str("  ");
                out.push_str(&l[inner..]);
                out.push('\n');
            }
        }
        let tmp = self.dir.path().join(".tollgate-filter.yaml.tmp");
        fs::write(&tmp, out).expect("write the ECDS file");
        fs::rename(&tmp, self.file()).expect("rename the ECDS file into place");
    }

    /// `(accepted, refused)` filter configuration updates of `envoy`: the
    /// first publish counts as one accepted.
    pub fn reloads(envoy: &Envoy) -> (u64, u64) {
        let r = http::send(envoy.admin, &Request::get("/stats?filter=extension_config_discovery"))
            .unwrap_or_else(|e| panic!("admin /stats: {e}"));
        let stat = |name: &str| {
            r.text()
                .lines()
                .filter_map(|l| l.split_once(": "))
                .find(|(n, _)| n.ends_with(&format!(".{FILTER}.{name}")))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        (stat("config_reload"), stat("config_fail"))
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}
