//! `tollgate-authority`: the auth cluster service and its admin CLI.

mod check_config;

use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollgate::token::{Algorithm, TimeCheck};
use tollgate_authority::config::{Config, StoreKind};
use tollgate_authority::directory::{hash_secret, Directory};
use tollgate_authority::feed::VersionKey;
use tollgate_authority::http::{self, AppState};
use tollgate_authority::keys::{generate_secret, Keys};
use tollgate_authority::service::{ApiTokenRequest, Authority, Settings};
use tollgate_authority::store::redis::RedisStore;
use tollgate_authority::store::sqlite::SqliteStore;
use tollgate_authority::store::Store;

#[derive(Parser)]
#[command(name = "tollgate-authority", version, about = "The Tollgate authority: issues, rotates and revokes tokens")]
struct Cli {
    /// TOML configuration file (defaults: the demo setup).
    #[arg(long, global = true, env = "TOLLGATE_CONFIG")]
    config: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct StoreArgs {
    /// Store kind (overrides config and TOLLGATE_STORE).
    #[arg(long, global = true, value_enum)]
    store: Option<StoreKind>,
    /// Embedded store directory (overrides config and TOLLGATE_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Redis URL (overrides config and TOLLGATE_REDIS_URL).
    #[arg(long, global = true)]
    redis_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Mint an access token with the active key and the subject's current version.
    Mint {
        #[arg(long)]
        sub: String,
        /// Space-separated scopes.
        #[arg(long, default_value = "")]
        scope: String,
        /// Lifetime in seconds, 1..=86400. Every later bump's feed entry lives
        /// at least this long; for longer-lived credentials use `api-token create`.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        #[arg(long)]
        sid: Option<String>,
    },
    /// Verify a token and print its claims (token from the argument or stdin).
    Inspect {
        /// Check time claims at this instant: seconds since the epoch, or `now`; `skip` skips them.
        #[arg(long, default_value = "now")]
        at: String,
        token: Option<String>,
    },
    /// Bump a version key: every token issued before is revoked.
    Revoke {
        #[command(subcommand)]
        what: RevokeWhat,
    },
    /// Long-lived API tokens.
    #[command(name = "api-token")]
    ApiToken {
        #[command(subcommand)]
        action: ApiTokenAction,
    },
    /// Print a new random signing secret (base64url) and a config snippet.
    Keygen {
        #[arg(long, default_value = "HS256")]
        alg: String,
        #[arg(long, default_value = "key-1")]
        kid: String,
    },
    /// Read a password or client secret on stdin; print its argon2id hash.
    HashSecret,
    /// Ask a running authority whether it is ready: exit 0 when its
    /// readiness endpoint answers 200, 1 otherwise (container health checks
    /// without curl).
    Healthcheck {
        /// URL to GET (plain http). Default: /readyz on the configured
        /// listen address, with an unspecified address (0.0.0.0, ::) read
        /// as loopback.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many milliseconds (readiness itself waits
        /// up to 2 s for the store).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Validate filter configuration documents as the filter does (for CI); exit 0 ok, 1 refused, 2 unreadable.
    CheckFilterConfig(check_config::Args),
}

#[derive(Args)]
struct ServeArgs {
    /// Listen address (overrides config and TOLLGATE_LISTEN). Port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Refresh replay grace window in milliseconds.
    #[arg(long)]
    refresh_grace_ms: Option<u64>,
    /// Access token lifetime in seconds.
    #[arg(long)]
    access_ttl_secs: Option<u64>,
}

#[derive(Subcommand)]
enum RevokeWhat {
    /// Revoke every token of a subject (`sub:` bump), refresh families included.
    Subject { sub: String },
    /// Revoke one session or API token (`sid:` bump).
    Session { sid: String },
}

#[derive(Subcommand)]
enum ApiTokenAction {
    /// Create an API token; the token is printed once and never stored.
    Create {
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "")]
        scope: String,
        /// Comma-separated CIDRs or addresses, or `*`.
        #[arg(long, default_value = "*")]
        hosts: String,
        /// Lifetime in days, or -1 for never.
        #[arg(long, allow_negative_numbers = true)]
        days: i64,
        #[arg(long)]
        name: Option<String>,
    },
    /// List API tokens (never the tokens themselves).
    List {
        #[arg(long)]
        sub: Option<String>,
    },
    /// Revoke an API token by id.
    Revoke { id: String },
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn load_config(cli: &Cli) -> Fallible<Config> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(s) = cli.store.store {
        cfg.store.kind = s;
    }
    if let Some(d) = &cli.store.data_dir {
        cfg.store.data_dir = d.clone();
    }
    if let Some(u) = &cli.store.redis_url {
        cfg.store.redis_url = u.clone();
    }
    Ok(cfg)
}

async fn open_store(cfg: &Config) -> Fallible<Arc<dyn Store>> {
    Ok(match cfg.store.kind {
        StoreKind::Sqlite => Arc::new(SqliteStore::open(&cfg.store.data_dir)?),
        StoreKind::Redis => {
            Arc::new(RedisStore::connect(&cfg.store.redis_url, &cfg.store.redis_prefix, cfg.store.redis_wait_replicas).await?)
        }
    })
}

async fn authority(cfg: &Config) -> Fallible<Authority> {
    cfg.validate()?;
    let keys = Keys::load(&cfg.key_configs())?;
    let directory = match &cfg.users_file {
        Some(path) => Directory::load(path)?,
        None => Directory::demo(),
    };
    let store = open_store(cfg).await?;
    let auth = Authority::new(store, Settings::from_config(cfg), keys, directory);
    // Record this access-token lifetime before issuing anything with it.
    auth.init().await?;
    Ok(auth)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(cfg: Config, args: ServeArgs) -> Fallible<()> {
    let mut cfg = cfg;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(g) = args.refresh_grace_ms {
        cfg.refresh_grace_ms = g;
    }
    if let Some(t) = args.access_ttl_secs {
        cfg.access_ttl_secs = t;
    }
    let auth = Arc::new(authority(&cfg).await?);
    if cfg.uses_demo_key() {
        tracing::warn!("signing with the built-in DEMO key (kid demo-2026); configure [[keys]] for anything but a demo");
    }
    if cfg.users_file.is_none() {
        tracing::warn!("no users_file: demo users alice and admin and client demo-client are enabled");
    }
    if !cfg.edge_credentials.is_configured() {
        tracing::warn!(
            "no edge credential ({}): /v1/revocations, /v1/versions and /metrics answer 401 to everyone, so edges cannot sync",
            tollgate_authority::edge::EDGE_CREDENTIAL_ENV
        );
    } else if cfg.edge_credentials.has_previous() {
        tracing::info!("edge credential rotation: the previous edge credential is accepted too");
    }
    if !cfg.throttle.enabled {
        tracing::warn!("credential-grant throttling is disabled ([throttle] enabled = false)");
    }
    if cfg.trusted_proxy_hops > 0 {
        tracing::info!(hops = cfg.trusted_proxy_hops, proxies = ?cfg.trusted_proxy_list(), "X-Forwarded-For is read from these peers only");
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    let addr = listener.local_addr()?;
    let identity = auth.store.identity();
    tracing::info!(%addr, store = auth.store.kind(), store_id = %identity.store_id, floor = identity.floor, "tollgate-authority listening");
    // A machine-readable line on stdout for scripts and tests (port 0).
    println!("tollgate-authority listening on http://{addr}");
    auth.feed_waiter.start(auth.store.clone()).await;
    let gc_auth = auth.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = gc_auth.store.gc(tollgate_authority::util::now_secs()).await {
                tracing::warn!(error = %e, "gc failed");
            }
        }
    });
    let state = AppState {
        auth,
        max_body: cfg.max_body_bytes,
        edge: Arc::new(cfg.edge_credentials.clone()),
        trusted_proxy_hops: cfg.trusted_proxy_hops,
        trusted_proxies: Arc::new(cfg.trusted_proxy_list()),
    };
    http::serve(state, listener, shutdown_signal()).await?;
    Ok(())
}

fn parse_at(at: &str) -> Fallible<TimeCheck> {
    Ok(match at {
        "now" => TimeCheck::At(tollgate_authority::util::now_secs()),
        "skip" => TimeCheck::Skip,
        t => TimeCheck::At(t.parse().map_err(|_| format!("--at {t:?}: expected seconds since the epoch, now or skip"))?),
    })
}

fn read_token(arg: Option<String>) -> Fallible<String> {
    match arg {
        Some(t) if t != "-" => Ok(t),
        _ => {
            let mut s = String::new();
            std::io::stdin().take(64 * 1024).read_to_string(&mut s)?;
            Ok(s.trim().to_owned())
        }
    }
}

async fn run(cli: Cli) -> Fallible<()> {
    let cfg = load_config(&cli)?;
    match cli.command {
        Command::Serve(args) => serve(cfg, args).await,
        Command::Mint { sub, scope, ttl_secs, sid } => {
            let auth = authority(&cfg).await?;
            println!("{}", auth.mint_for(&sub, &scope, ttl_secs, sid.as_deref()).await?);
            Ok(())
        }
        Command::Inspect { at, token } => {
            let check = parse_at(&at)?;
            let token = read_token(token)?;
            let auth = authority(&cfg).await?;
            match auth.verifier.verify(&token, check) {
                Ok(claims) => {
                    let mut keys = vec![VersionKey::subject(&claims.sub)?];
                    if let Some(sid) = &claims.sid {
                        keys.push(VersionKey::session(sid)?);
                    }
                    let mins = auth.versions(&keys).await?;
                    let revoked = mins.iter().any(|m| claims.ver < *m);
                    // The claims as the token carries them (the filter's writer, Claims::to_json).
                    let claims_json: serde_json::Value = serde_json::from_slice(&claims.to_json())?;
                    let out = serde_json::json!({
                        "valid": !revoked,
                        "error": if revoked { Some("token revoked") } else { None },
                        "claims": claims_json,
                        "min_versions": keys.iter().zip(&mins).map(|(k, m)| (k.to_string(), *m)).collect::<std::collections::BTreeMap<_, _>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    if revoked {
                        return Err("token revoked".into());
                    }
                    Ok(())
                }
                Err(e) => {
                    println!("{}", serde_json::json!({ "valid": false, "error": e.description() }));
                    Err(e.description().into())
                }
            }
        }
        Command::Revoke { what } => {
            let auth = authority(&cfg).await?;
            let key = match what {
                RevokeWhat::Subject { sub } => VersionKey::subject(&sub),
                RevokeWhat::Session { sid } => VersionKey::session(&sid),
            }
            .map_err(|e| e.description())?;
            let b = auth.revoke_key(&key).await?;
            println!("{}", serde_json::to_string(&b)?);
            Ok(())
        }
        Command::ApiToken { action } => {
            let auth = authority(&cfg).await?;
            match action {
                ApiTokenAction::Create { sub, scope, hosts, days, name } => {
                    let req = ApiTokenRequest {
                        sub,
                        scope,
                        hosts: hosts.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect(),
                        days,
                        name,
                    };
                    let created = auth.create_api_token(&req).await.map_err(|e| format!("{e:?}"))?;
                    println!("{}", serde_json::to_string_pretty(&created)?);
                }
                ApiTokenAction::List { sub } => {
                    let list = auth.store.list_api_tokens(sub.as_deref()).await?;
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                ApiTokenAction::Revoke { id } => {
                    if auth.store.api_token(&id).await?.is_none() {
                        return Err(format!("no API token {id}").into());
                    }
                    let b = auth.revoke_key(&VersionKey::session(&id).map_err(|e| e.description())?).await?;
                    println!("{}", serde_json::to_string(&b)?);
                }
            }
            Ok(())
        }
        Command::Keygen { alg, kid } => {
            let a = Algorithm::parse(&alg).ok_or("--alg must be HS256, HS384 or HS512")?;
            let secret = generate_secret(a);
            println!("# Store the secret in a file readable only by the authority (and the edges' secret store):");
            println!("{secret}");
            println!();
            println!("# Config snippet:");
            println!("[[keys]]\nkid = \"{kid}\"\nalg = \"{alg}\"\nsecret_file = \"/run/secrets/tollgate-{kid}\"\nactive = false");
            Ok(())
        }
        Command::Healthcheck { url, timeout_ms } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let addr: std::net::SocketAddr =
                        cfg.listen.parse().map_err(|_| format!("listen address {:?} is not ip:port; pass --url", cfg.listen))?;
                    let ip = match addr.ip() {
                        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
                        ip => ip,
                    };
                    format!("http://{}/readyz", std::net::SocketAddr::new(ip, addr.port()))
                }
            };
            match http::probe(&url, std::time::Duration::from_millis(timeout_ms)).await? {
                200 => {
                    println!("ready: {url} answered 200");
                    Ok(())
                }
                status => Err(format!("not ready: {url} answered {status}").into()),
            }
        }
        Command::CheckFilterConfig(_) => Ok(()), // handled in main, before any config is loaded
        Command::HashSecret => {
            let mut s = String::new();
            std::io::stdin().take(4096).read_to_string(&mut s)?;
            let secret = s.strip_suffix('\n').unwrap_or(&s);
            println!("{}", hash_secret(secret)?);
            Ok(())
        }
    }
}

/// Logs go to stderr: `TOLLGATE_LOG` filters (default `info`),
/// `TOLLGATE_LOG_FORMAT` is `text` (default) or `json` (one object per
/// line); colour only when stderr is a terminal.
fn init_logging() -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var("TOLLGATE_LOG_FORMAT").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("") | Ok("text") => fmt.init(),
        Ok("json") => fmt.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
        Ok(other) => return Err(format!("TOLLGATE_LOG_FORMAT={other:?}: expected text or json")),
        Err(_) => return Err("TOLLGATE_LOG_FORMAT is not UTF-8: expected text or json".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckFilterConfig(args) = &cli.command {
        return check_config::run(args);
    }
    if let Err(e) = init_logging() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
