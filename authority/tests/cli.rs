//! The admin CLI against the embedded store: mint, inspect, revoke,
//! api-token, keygen, help.

use serde_json::Value;
use std::process::{Command, Output};

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate-authority"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("TOLLGATE_LOG", "error")
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .expect("run tollgate-authority")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().expect("dir");
    let help = stdout(&run(dir.path(), &["--help"]));
    for cmd in ["serve", "mint", "inspect", "revoke", "api-token", "keygen"] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
}

#[test]
fn mint_inspect_revoke_and_api_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let mint = run(d, &["mint", "--sub", "root", "--scope", "tollgate:admin", "--ttl-secs", "600"]);
    assert!(mint.status.success(), "{mint:?}");
    let token = stdout(&mint);
    let ok = run(d, &["inspect", "--at", "now", &token]);
    assert!(ok.status.success(), "{ok:?}");
    let shown: Value = serde_json::from_str(&stdout(&ok)).expect("json");
    assert_eq!((shown["valid"].as_bool(), shown["claims"]["sub"].as_str()), (Some(true), Some("root")));
    let expired = run(d, &["inspect", "--at", "99999999999", &token]);
    assert!(!expired.status.success());
    assert!(stdout(&expired).contains("token expired"));

    let rev = run(d, &["revoke", "subject", "root"]);
    assert!(rev.status.success(), "{rev:?}");
    let revoked = run(d, &["inspect", &token]);
    assert!(!revoked.status.success());
    assert!(stdout(&revoked).contains("\"valid\": false"));

    let created = run(d, &["api-token", "create", "--sub", "ci", "--scope", "read", "--hosts", "10.0.0.0/8", "--days", "-1"]);
    assert!(created.status.success(), "{created:?}");
    let c: Value = serde_json::from_str(&stdout(&created)).expect("json");
    let (id, api) = (c["id"].as_str().expect("id"), c["token"].as_str().expect("token"));
    assert!(run(d, &["inspect", api]).status.success());
    let list = stdout(&run(d, &["api-token", "list", "--sub", "ci"]));
    assert!(list.contains(id) && !list.contains(api), "listed without the token");
    assert!(run(d, &["api-token", "revoke", id]).status.success());
    assert!(!run(d, &["inspect", api]).status.success());
    assert!(!run(d, &["api-token", "revoke", "api_missing"]).status.success());
    assert!(!run(d, &["api-token", "create", "--sub", "ci", "--hosts", "nope", "--days", "1"]).status.success());
    assert!(run(d, &["revoke", "session", "s_x"]).status.success());
}

/// H1: `mint --ttl-secs` is bounded (a day); its lifetime is recorded so a
/// later bump's feed entry outlives the minted token.
#[test]
fn mint_lifetime_is_bounded_and_outlived_by_bumps() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    for bad in ["0", "86401", "31536000"] {
        let o = run(d, &["mint", "--sub", "root", "--ttl-secs", bad]);
        assert!(!o.status.success(), "--ttl-secs {bad} accepted");
        assert!(String::from_utf8_lossy(&o.stderr).contains("ttl_secs"), "{o:?}");
    }
    assert!(run(d, &["mint", "--sub", "root", "--scope", "tollgate:admin", "--ttl-secs", "7200"]).status.success());
    let rev = run(d, &["revoke", "subject", "root"]);
    assert!(rev.status.success(), "{rev:?}");
    let b: Value = serde_json::from_str(&stdout(&rev)).expect("json");
    let now = tollgate_authority::util::now_secs();
    assert!(b["expires_at"].as_u64().expect("expires_at") + 1 >= now + 7200, "{b}");
}

#[test]
fn keygen_prints_a_usable_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let out = stdout(&run(dir.path(), &["keygen", "--kid", "k2", "--alg", "HS384"]));
    let secret = out.lines().nth(1).expect("secret line");
    let raw = tollgate::token::b64::decode(secret.as_bytes()).expect("base64url");
    assert_eq!(raw.len(), 48);
    assert!(out.contains("kid = \"k2\""));
    assert!(!run(dir.path(), &["keygen", "--alg", "RS256"]).status.success());
}
