//! Renders `envoy/envoy.yaml` for one test instance by careful text
//! substitution: ONLY the four ports, the module path and (optionally) the
//! filter's configuration document change. Every anchor must occur exactly
//! once, so an edit of the file that the harness does not understand fails
//! loudly instead of silently testing something else.

use std::path::Path;

/// The ports `envoy/envoy.yaml` uses for `make run`.
pub const LISTENER_PORT: u16 = 10000;
pub const ADMIN_PORT: u16 = 9901;
pub const UPSTREAM_PORT: u16 = 8081;
pub const AUTHORITY_PORT: u16 = 8080;
/// The module path as written in the file (relative to the repository).
pub const MODULE_PATH: &str = "target/wasm32-wasip1/release/tollgate.wasm";

/// What replaces the demo values. Port 0 lets the kernel choose (the harness
/// reads the bound ports back from Envoy's admin).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub listener: u16,
    pub admin: u16,
    pub upstream: u16,
    pub authority: u16,
}

/// `yaml` with the ports and module path replaced and, when given, the
/// configuration document replaced by `document`.
pub fn render(
    yaml: &str,
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
        &format!("filename: {MODULE_PATH}"),
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
            "envoy.yaml: expected `{from}` exactly once, found it {n} times"
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
            "envoy.yaml: expected one `value: |` block, found {}",
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
        .ok_or("envoy.yaml: the `value: |` block is empty")?;
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
