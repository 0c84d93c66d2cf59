//! `tollgate-authority check-filter-config`: the filter's validation as a
//! CI step. Exit codes, the field path in the output, the VM environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"));
    // The VM's environment is what each case says, not the caller's (`make`
    // exports the demo key and edge credential).
    for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("TOLLGATE_")) {
        c.env_remove(k);
    }
    c.arg("check-filter-config").args(args).env("TOLLGATE_LOG", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tollgate-authority")
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

const SECRET: &str = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";

#[test]
fn exit_codes_and_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let good = write(d, "good.json", &format!(r#"{{"issuer":"i","audiences":["a"],"keys":[{{"alg":"HS256","secret":"{SECRET}"}}]}}"#));
    let bad_path = write(d, "bad.json", &format!(
        r#"{{"issuer":"i","audiences":["a"],"keys":[{{"alg":"HS256","secret":"{SECRET}"}}],"rules":[{{"path":{{"prefix":"/"}}}},{{"path":{{"prefix":7}}}}]}}"#
    ));
    let not_json = write(d, "not.json", "{");
    let missing = d.join("absent.json").display().to_string();
    // (case, files, exit code, words in stdout)
    let cases: Vec<(&str, Vec<&str>, i32, Vec<String>)> = vec![
        ("accepted", vec![&good], 0, vec![format!("{good}: ok")]),
        ("field path and reason", vec![&good, &bad_path], 1, vec![format!("{good}: ok"), format!("{bad_path}: rules[1].path.prefix: invalid type: an integer, expected a string")]),
        ("not JSON", vec![&not_json], 1, vec![format!("{not_json}: EOF while parsing an object")]),
        ("unreadable file", vec![&good, &missing], 2, vec![format!("{good}: ok")]),
        ("no file", vec![], 2, vec![]),
    ];
    for (case, files, code, words) in cases {
        let o = run(&files, &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(code), "{case}: {out} {}", String::from_utf8_lossy(&o.stderr));
        for w in words {
            assert!(out.contains(&w), "{case}: {w:?} not in {out}");
        }
    }
}

#[test]
fn the_shipped_document_needs_its_vm_environment_or_assume_env() {
    let doc = repo("envoy/tollgate.json").display().to_string();
    let refused = run(&[&doc], &[]);
    let out = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(out.contains("keys[0].secret_env: environment variable TOLLGATE_DEMO_KEY is not set"), "{out}");
    // Secrets never show, even when one is refused.
    let short = "c2hvcnQtc2VjcmV0LXZhbHVl";
    let o = run(&[&doc], &[("TOLLGATE_DEMO_KEY", short), ("TOLLGATE_EDGE_CREDENTIAL", "x")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.code() == Some(1) && !out.contains(short), "{out}");
    let o = run(&["--assume-env", &doc], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn print_schema_is_the_committed_schema() {
    let o = run(&["--print-schema"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo("docs/filter-config.schema.json")).expect("schema");
    assert!(String::from_utf8_lossy(&o.stdout) == committed, "--print-schema differs from docs/filter-config.schema.json");
}
