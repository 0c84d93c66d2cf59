//! `gen`: the token files and one Envoy configuration per contender.
//!
//! Every contender gets the same listener settings (HTTP connection manager
//! with the path normalization of envoy/envoy.yaml) and the same route: a
//! `direct_response` 200, so the upstream costs nothing and costs the same
//! everywhere. Only the HTTP filter in front of the router differs.

use crate::{b64url, bench_document, load_config, now, Contender, CONTENDERS};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use tollgate::config::Config;
use tollgate::token::{self, Algorithm, Claims, Key, TimeCheck};

pub struct Args {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub wasm: PathBuf,
    pub floor_wasm: PathBuf,
    /// The native Envoy module (`cargo build --profile native -p tollgate-native`).
    pub native: PathBuf,
    pub port_base: u16,
    /// `revocation.wait_ms` of the long-polling feed Envoy.
    pub feed_wait_ms: u64,
}

pub const KEY_ENV: &str = "TOLLGATE_DEMO_KEY";
pub const CREDENTIAL_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL";

pub fn listen_port(base: u16, i: usize) -> u16 {
    base + i as u16
}
pub fn admin_port(base: u16, i: usize) -> u16 {
    base + 100 + i as u16
}
pub fn authz_port(base: u16) -> u16 {
    base + 99
}
/// The authority of the feed phase (scripts/bench/run.sh starts it there).
pub fn authority_port(base: u16) -> u16 {
    base + 98
}
/// The feed phase's Envoys: polling, then long polling.
pub const FEED_MODES: &[&str] = &["feed_poll", "feed_long"];
pub fn feed_listen_port(base: u16, mode: usize) -> u16 {
    base + 50 + mode as u16
}
pub fn feed_admin_port(base: u16, mode: usize) -> u16 {
    base + 150 + mode as u16
}

pub fn run(a: Args) -> Result<(), String> {
    fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    // The filter's document for every Tollgate-core contender.
    let doc_path = a.dir.join("tollgate-bench.json");
    let tollgate_json = serde_json::to_string_pretty(&bench_document(&a.config)?).unwrap();
    fs::write(&doc_path, &tollgate_json).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    let (config, doc) = load_config(&doc_path)?;
    let secret_b64 = std::env::var(KEY_ENV).map_err(|_| format!("{KEY_ENV} is not set"))?;
    let secret = token::b64::decode(secret_b64.trim().trim_end_matches('=').as_bytes())
        .ok_or(format!("{KEY_ENV} is not base64url"))?;
    let key_doc = &doc["keys"][0];
    let kid = key_doc["kid"].as_str().map(str::to_owned);
    let alg = Algorithm::parse(key_doc["alg"].as_str().unwrap_or("")).ok_or("keys[0].alg")?;
    if alg != Algorithm::HS256 {
        return Err("the bench compares HS256 (what jwt_authn's oct JWKS and Tollgate share)".into());
    }
    let key = Key::new(kid.clone(), alg, &secret).map_err(|e| e.to_string())?;
    let wrong_key = Key::new(kid.clone(), alg, b"a-different-secret-of-32-bytes-or-more!!").map_err(|e| e.to_string())?;
    let issuer = doc["issuer"].as_str().unwrap_or_default().to_owned();
    let audience = doc["audiences"][0].as_str().unwrap_or_default().to_owned();
    let t = now();

    let claims = |sub: String, i: usize| Claims {
        iss: issuer.clone(),
        sub,
        aud: vec![audience.clone()],
        exp: Some(t + 7200),
        nbf: None,
        iat: Some(t),
        jti: Some(format!("jti-{i:06}")),
        ver: 1 + (i as u64 % 7),
        sid: Some(format!("sid-{i:06}")),
        scope: Some("read write".into()),
        hosts: None,
    };

    // Two pools sized from the filter's own cache capacity (the bench
    // document's `token_cache.entries`, or its default): one that fits in
    // each worker's cache and one four times larger. Distinct subjects,
    // sessions and ids, and no token in both: the large pool's run gets no
    // hits from what the small pool's runs left in the caches.
    let capacity = config.token_cache_entries;
    let fit_n = capacity.max(1);
    let over_n = 4 * fit_n;
    let mint_range = |r: std::ops::Range<usize>| -> Vec<String> {
        r.map(|i| token::mint(&key, &claims(format!("user-{i:07}"), i))).collect()
    };
    let fit = mint_range(0..fit_n);
    let over = mint_range(fit_n..fit_n + over_n);
    // The denied mix, in equal parts: a MAC made with another key, expired,
    // another audience, and a token that is not a JWS at all.
    let mut denied = Vec::new();
    for i in 0..1000 {
        let mut c = claims(format!("user-{i:05}"), i);
        let tok = match i % 4 {
            0 => token::mint(&wrong_key, &c),
            1 => {
                c.iat = Some(t - 7200);
                c.exp = Some(t - 3600);
                token::mint(&key, &c)
            }
            2 => {
                c.aud = vec!["some-other-api".into()];
                token::mint(&key, &c)
            }
            _ => format!("not-a-jws-{i:04}"),
        };
        denied.push(tok);
    }

    // The tokens mean what the workloads say, to Tollgate's own verifier.
    for tok in fit.iter().chain(&over) {
        config.verifier.verify(tok, TimeCheck::At(t)).map_err(|e| format!("a pool token fails: {e}"))?;
    }
    if let Some(tok) = denied.iter().find(|tok| config.verifier.verify(tok, TimeCheck::At(t)).is_ok()) {
        return Err(format!("a denied-mix token verifies: {tok}"));
    }
    write_lines(&a.dir.join("tokens-fit.txt"), &fit)?;
    write_lines(&a.dir.join("tokens-over.txt"), &over)?;
    write_lines(&a.dir.join("tokens-denied.txt"), &denied)?;
    // For run.sh (sourced) and the report.
    let sizes = format!("CACHE_ENTRIES={capacity}\nPOOL_FIT={fit_n}\nPOOL_OVER={over_n}\n");
    fs::write(a.dir.join("pools.env"), sizes).map_err(|e| format!("{}/pools.env: {e}", a.dir.display()))?;

    let jwks = json!({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(&secret)}]}).to_string();
    let wasm = fs::canonicalize(&a.wasm).map_err(|e| format!("{}: {e}", a.wasm.display()))?;
    let floor_wasm = fs::canonicalize(&a.floor_wasm).map_err(|e| format!("{}: {e}", a.floor_wasm.display()))?;
    let native = fs::canonicalize(&a.native).map_err(|e| format!("{}: {e}", a.native.display()))?;
    let ctx = Ctx {
        issuer,
        audiences: doc["audiences"].clone(),
        jwks,
        tollgate_json,
        wasm,
        floor_wasm,
        native,
        base: a.port_base,
        jwt_cache_size: capacity,
    };
    for (i, c) in CONTENDERS.iter().enumerate() {
        let cfg = envoy_config(&ctx, c, i);
        let path = a.dir.join(format!("envoy-{}.json", c.id));
        fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for (m, mode) in FEED_MODES.iter().enumerate() {
        let cfg = feed_config(&ctx, &a.config, m, *mode == "feed_long", a.feed_wait_ms)?;
        let path = a.dir.join(format!("envoy-{mode}.json"));
        fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "gen: token cache {capacity} entries per worker; pools of {fit_n} and {over_n} tokens, {} denied, {} Envoy configs in {}",
        denied.len(),
        CONTENDERS.len() + FEED_MODES.len(),
        a.dir.display()
    );
    Ok(())
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    let mut s = lines.join("\n");
    s.push('\n');
    fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))
}

struct Ctx {
    issuer: String,
    audiences: Value,
    jwks: String,
    tollgate_json: String,
    wasm: PathBuf,
    floor_wasm: PathBuf,
    native: PathBuf,
    base: u16,
    /// jwt_authn's `jwt_cache_size`: Tollgate's per-worker cache capacity.
    jwt_cache_size: usize,
}

fn envoy_config(ctx: &Ctx, c: &Contender, i: usize) -> Value {
    let filters = match c.id {
        "bare" => vec![],
        "jwt_authn_cache" => vec![jwt_authn(ctx, true)],
        "jwt_authn_nocache" => vec![jwt_authn(ctx, false)],
        "ext_authz" => vec![ext_authz(ctx)],
        "tollgate" => vec![tollgate(ctx)],
        "native" => vec![native(ctx)],
        "wasm_noop" => vec![floor(ctx, "noop")],
        "wasm_hostcalls" => vec![floor(ctx, "hostcalls")],
        other => unreachable!("contender {other}"),
    };
    let clusters = if c.id == "ext_authz" { vec![static_cluster("authz", authz_port(ctx.base))] } else { vec![] };
    listener_config(admin_port(ctx.base, i), listen_port(ctx.base, i), filters, clusters)
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
    })
}

/// The feed phase: Tollgate with the authority and revocation sections of
/// envoy/tollgate.json, polling every `sync_interval_ms` or long polling
/// (`revocation.wait_ms`), against the bench's authority.
fn feed_config(ctx: &Ctx, shipped: &Path, m: usize, long: bool, wait_ms: u64) -> Result<Value, String> {
    let bytes = fs::read(shipped).map_err(|e| format!("{}: {e}", shipped.display()))?;
    let full: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", shipped.display()))?;
    let mut doc: Value = serde_json::from_str(&ctx.tollgate_json).map_err(|e| e.to_string())?;
    let mut authority = full.get("authority").cloned().ok_or("envoy/tollgate.json has no `authority`")?;
    authority["cluster"] = json!("authority");
    let mut revocation = full.get("revocation").cloned().ok_or("envoy/tollgate.json has no `revocation`")?;
    if long {
        revocation["wait_ms"] = json!(wait_ms);
    } else if let Some(r) = revocation.as_object_mut() {
        r.remove("wait_ms");
    }
    doc["authority"] = authority;
    doc["revocation"] = revocation;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    Config::parse(text.as_bytes(), &|name| std::env::var(name).ok()).map_err(|e| format!("the feed document: {e}"))?;
    let mut f = tollgate(ctx);
    f["typed_config"]["config"]["configuration"]["value"] = json!(text);
    f["typed_config"]["config"]["vm_config"]["environment_variables"]["host_env_keys"] = json!([KEY_ENV, CREDENTIAL_ENV]);
    let clusters = vec![static_cluster("authority", authority_port(ctx.base))];
    Ok(listener_config(feed_admin_port(ctx.base, m), feed_listen_port(ctx.base, m), vec![f], clusters))
}

fn listener_config(admin: u16, listen: u16, mut filters: Vec<Value>, clusters: Vec<Value>) -> Value {
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                // Connections spread evenly over the workers (at --concurrency 2
                // the kernel may hand all of them to one), so every worker's
                // caches fill before RSS is read. Keep-alive: accepts happen
                // before the measurement only.
                "connection_balance_config": {"exact_balance": {}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "normalize_path": true,
                        "merge_slashes": true,
                        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                        "route_config": {"name": "local", "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]
                        }]},
                        "http_filters": filters
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

/// jwt_authn with the same key as a local `oct` JWKS, the same issuer,
/// audiences and skew, the token kept (`forward`), and `sub`/`scope` copied
/// to the same headers Tollgate sets. Cache on: `jwt_cache_config` with
/// `jwt_cache_size` equal to Tollgate's per-worker token cache (both caches
/// are per worker); off: absent.
fn jwt_authn(ctx: &Ctx, cache: bool) -> Value {
    let mut provider = json!({
        "issuer": ctx.issuer,
        "audiences": ctx.audiences,
        "local_jwks": {"inline_string": ctx.jwks},
        "forward": true,
        "clock_skew_seconds": 30,
        "claim_to_headers": [
            {"header_name": "x-tollgate-sub", "claim_name": "sub"},
            {"header_name": "x-tollgate-scope", "claim_name": "scope"}
        ]
    });
    if cache {
        provider["jwt_cache_config"] = json!({"jwt_cache_size": ctx.jwt_cache_size});
    }
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"tollgate": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "tollgate"}}]
        }
    })
}

/// ext_authz (HTTP) to the bench authorizer, which runs Tollgate's core on
/// the forwarded request and answers 200 with the identity headers or the
/// denial. Envoy copies `x-tollgate-*` from its answer upstream.
fn ext_authz(ctx: &Ctx) -> Value {
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": false,
            "allowed_headers": {"patterns": [{"exact": "authorization"}, {"exact": "cookie"}]},
            "http_service": {
                "server_uri": {"uri": format!("http://127.0.0.1:{}", authz_port(ctx.base)), "cluster": "authz", "timeout": "1s"},
                "authorization_response": {"allowed_upstream_headers": {"patterns": [{"prefix": "x-tollgate-"}]}}
            }
        }
    })
}

/// The filter as envoy/envoy.yaml loads it, with the bench document
/// (envoy/tollgate.json without the authority callouts, see `bench_document`).
fn tollgate(ctx: &Ctx) -> Value {
    json!({
        "name": "tollgate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "tollgate",
                "root_id": "tollgate",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "vm_id": "tollgate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": ctx.wasm.to_string_lossy()}},
                    "environment_variables": {"host_env_keys": [KEY_ENV]}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": ctx.tollgate_json
                }
            }
        }
    })
}

/// The same engine and document as a native Envoy dynamic module, loaded as
/// envoy/envoy-native.yaml loads it.
fn native(ctx: &Ctx) -> Value {
    json!({
        "name": "tollgate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {
                "module": {"local": {"filename": ctx.native.to_string_lossy()}},
                "do_not_close": true
            },
            "filter_name": "tollgate",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": ctx.tollgate_json}
        }
    })
}

/// A reference filter from bench/wasm-floor, loaded like Tollgate.
fn floor(ctx: &Ctx, mode: &str) -> Value {
    json!({
        "name": "floor",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "floor",
                "root_id": "floor",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "vm_id": "floor",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": ctx.floor_wasm.to_string_lossy()}}
                },
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": mode}
            }
        }
    })
}
