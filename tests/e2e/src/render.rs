//! Renders a shipped Envoy configuration (`envoy/envoy.yaml` for the Wasm
//! filter, `envoy/envoy-native.yaml` for the native module: see
//! [`Host`]) for one test instance by careful text substitution: ONLY the
//! four ports, the module path and (optionally) the filter's configuration
//! document change. Every anchor must occur exactly once, so an edit of the
//! file that the harness does not understand fails loudly instead of
//! silently testing something else.

use crate::host::Host;
use std::path::Path;

/// The ports both shipped configurations use for `make run`.
pub const LISTENER_PORT: u16 = 10000;
pub const ADMIN_PORT: u16 = 9901;
pub const UPSTREAM_PORT: u16 = 8081;
pub const AUTHORITY_PORT: u16 = 8080;

/// What replaces the demo values. Port 0 lets the kernel choose (the harness
/// reads the bound ports back from Envoy's admin).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub listener: u16,
    pub admin: u16,
    pub upstream: u16,
    pub authority: u16,
}

/// `yaml`, the configuration `host` ships, with the ports and module path
/// (as `host` writes it, [`Host::module_as_written`]) replaced and, when
/// given, the configuration document replaced by `document`.
pub fn render(
    yaml: &str,
    host: Host,
    ports: Ports,
    module: &Path,
    document: Option<&str>,
) -> Result<String, String> {
    let mut out = yaml.to_owned();
    for (from, to) in [
        (LISTENER_PORT, ports.listener),
        (ADMIN_PORT, ports.admin),
        (UPSTREAM_PORT, ports.upstream),
        (AUTHORITY_PORT, ports.authority),
    ] {
        out = replace_once(
            &out,
            &format!("port_value: {from} }}"),
            &format!("port_value: {to} }}"),
        )?;
    }
    let module = module.to_str().ok_or("module path is not UTF-8")?;
    // A JSON string is a valid YAML double-quoted scalar.
    let quoted = serde_json::to_string(module).map_err(|e| e.to_string())?;
    out = replace_once(
        &out,
        &format!("filename: {}", host.module_as_written()),
        &format!("filename: {quoted}"),
    )?;
    if let Some(doc) = document {
        out = replace_document(&out, doc)?;
    }
    Ok(out)
}

fn replace_once(text: &str, from: &str, to: &str) -> Result<String, String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(format!(
            "expected `{from}` exactly once, found it {n} times"
        )),
    }
}

/// The line span of the literal block holding the filter configuration:
/// `(index of the "value: |" line, end (exclusive), indentation of the block)`.
fn document_block(lines: &[&str]) -> Result<(usize, usize, usize), String> {
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == "value: |")
        .map(|(i, _)| i)
        .collect();
    let [start] = starts[..] else {
        return Err(format!(
            "expected one `value: |` block, found {}",
            starts.len()
        ));
    };
    let outer = indent(lines[start]);
    let mut end = start + 1;
    while end < lines.len() && (lines[end].trim().is_empty() || indent(lines[end]) > outer) {
        end += 1;
    }
    // Trailing blank lines belong to what follows.
    while end > start + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let inner = lines[start + 1..end]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .ok_or("the `value: |` block is empty")?;
    Ok((start, end, inner))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The filter configuration document embedded in `yaml`, de-indented.
pub fn embedded_document(yaml: &str) -> Result<String, String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let (start, end, inner) = document_block(&lines)?;
    let mut doc = String::new();
    for l in &lines[start + 1..end] {
        doc.push_str(l.get(inner..).unwrap_or(""));
        doc.push('\n');
    }
    Ok(doc)
}

fn replace_document(yaml: &str, document: &str) -> Result<String, String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let (start, end, inner) = document_block(&lines)?;
    let pad = " ".repeat(inner);
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    for l in document.lines() {
        out.push(if l.is_empty() {
            String::new()
        } else {
            format!("{pad}{l}")
        });
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if yaml.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

// ---- the Istio-default variant -------------------------------------------------

/// The `http_connection_manager` settings that decide which spelling of a
/// request reaches the filter, as Istio's sidecars and gateways set them by
/// default (mesh config `pathNormalization: BASE`, escaped slashes kept,
/// header names with underscores allowed). The shipped configurations
/// normalize more; the filter must hold under these too, since the same
/// document runs in an Istio `WasmPlugin`.
pub const ISTIO_DEFAULTS: [(&str, &str); 4] = [
    ("normalize_path", "true"),
    ("merge_slashes", "false"),
    ("path_with_escaped_slashes_action", "KEEP_UNCHANGED"),
    ("headers_with_underscores_action", "ALLOW"),
];

/// The HCM field holding `headers_with_underscores_action`.
const PROTOCOL_OPTIONS: &str = "common_http_protocol_options";
/// The line after which missing HCM fields are inserted.
const HCM_ANCHOR: &str = "stat_prefix: ingress";

/// The textual edits `(from, to)`, to apply in order, each `from` occurring
/// exactly once at its turn, that give `yaml` the [`ISTIO_DEFAULTS`]: a
/// setting present once gets its value replaced, an absent one is inserted
/// after `stat_prefix: ingress` (`headers_with_underscores_action` as
/// `common_http_protocol_options: { ... }` when that block is absent too).
/// A setting present more than once, or a `common_http_protocol_options`
/// without the setting, is an error: a shape the harness does not
/// understand fails loudly instead of testing something else.
pub fn istio_default_edits(yaml: &str) -> Result<Vec<(String, String)>, String> {
    let mut text = yaml.to_owned();
    let mut edits = Vec::new();
    for (key, value) in ISTIO_DEFAULTS {
        let needle = format!("{key}:");
        let (from, to) = match text.matches(needle.as_str()).count() {
            1 => {
                let at = text.find(needle.as_str()).expect("counted once") + needle.len();
                let rest = &text[at..];
                let spaces = rest.len() - rest.trim_start_matches(' ').len();
                let old = rest[spaces..]
                    .split([',', '}', ' ', '\n', '#'])
                    .next()
                    .unwrap_or_default();
                if old.is_empty() {
                    return Err(format!("`{needle}` has no scalar value"));
                }
                (format!("{needle} {old}"), format!("{needle} {value}"))
            }
            0 => {
                let anchor = text
                    .lines()
                    .find(|l| l.trim() == HCM_ANCHOR)
                    .ok_or_else(|| format!("no `{HCM_ANCHOR}` line"))?
                    .to_owned();
                let pad = " ".repeat(indent(&anchor));
                let line = if key == "headers_with_underscores_action" {
                    if text.contains(PROTOCOL_OPTIONS) {
                        return Err(format!(
                            "`{PROTOCOL_OPTIONS}` without `{needle}`: \
                             cannot set it by text substitution"
                        ));
                    }
                    format!("{pad}{PROTOCOL_OPTIONS}: {{ {key}: {value} }}")
                } else {
                    format!("{pad}{key}: {value}")
                };
                (format!("{anchor}\n"), format!("{anchor}\n{line}\n"))
            }
            n => {
                return Err(format!(
                    "expected `{needle}` at most once, found it {n} times"
                ))
            }
        };
        text = replace_once(&text, &from, &to)?;
        edits.push((from, to));
    }
    Ok(edits)
}

/// `yaml` with the [`ISTIO_DEFAULTS`] ([`istio_default_edits`] applied).
pub fn istio_defaults(yaml: &str) -> Result<String, String> {
    let mut text = yaml.to_owned();
    for (from, to) in istio_default_edits(yaml)? {
        text = replace_once(&text, &from, &to)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(host: Host) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(host.yaml_file());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn istio_defaults_set_each_setting_exactly_once_in_each_shipped_file() {
        for host in Host::ALL {
            let shipped = shipped(host);
            let out = istio_defaults(&shipped)
                .unwrap_or_else(|e| panic!("{}: a shape we do not understand: {e}", host.yaml_file()));
            for (key, value) in ISTIO_DEFAULTS {
                assert_eq!(out.matches(&format!("{key}:")).count(), 1, "{host} {key}:\n{out}");
                assert!(
                    out.contains(&format!("{key}: {value}")),
                    "{host} {key}: {value}\n{out}"
                );
            }
            // Nothing else changed: the filter document is untouched.
            assert_eq!(embedded_document(&out), embedded_document(&shipped), "{host}");
        }
    }

    #[test]
    fn istio_defaults_replace_values_and_insert_missing_settings() {
        let hcm = "    - filters:\n        stat_prefix: ingress\n        normalize_path: false\n        merge_slashes: true # why\n        common_http_protocol_options: { idle_timeout: 1s, headers_with_underscores_action: REJECT_REQUEST }\n";
        let out = istio_defaults(hcm).unwrap();
        assert_eq!(
            out,
            "    - filters:\n        stat_prefix: ingress\n        path_with_escaped_slashes_action: KEEP_UNCHANGED\n        normalize_path: true\n        merge_slashes: false # why\n        common_http_protocol_options: { idle_timeout: 1s, headers_with_underscores_action: ALLOW }\n"
        );
        let bare = "  stat_prefix: ingress\n";
        let out = istio_defaults(bare).unwrap();
        assert!(
            out.contains(
                "  common_http_protocol_options: { headers_with_underscores_action: ALLOW }\n"
            ),
            "{out}"
        );
        assert!(out.contains("  merge_slashes: false\n"), "{out}");
    }

    #[test]
    fn istio_defaults_refuse_shapes_they_do_not_understand() {
        let twice = "  stat_prefix: ingress\n  merge_slashes: true\n  merge_slashes: true\n";
        assert!(istio_defaults(twice).unwrap_err().contains("at most once"));
        let block =
            "  stat_prefix: ingress\n  common_http_protocol_options:\n    idle_timeout: 1s\n";
        assert!(istio_defaults(block).unwrap_err().contains("cannot set it"));
        assert!(istio_defaults("merge_slashes: true\n")
            .unwrap_err()
            .contains("stat_prefix"));
    }
}
