//! The embedded store: SQLite in WAL mode, `synchronous=FULL`.
//!
//! Every operation is one transaction (`BEGIN IMMEDIATE` for writes, so
//! writers serialize and a read-modify-write cannot interleave). The feed's
//! sequence number is assigned inside the bump's transaction, so a reader's
//! snapshot always holds a gap-free prefix of the sequence: a cursor can never
//! skip a bump that committed concurrently with the read.

use super::{
    ApiToken, BumpRequest, Bumped, Expected, FeedPage, Identity, NewFamily, Stats, Store,
    StoreError, StoreResult,
};
use crate::feed::{is_live, merge_expiry, next_min, next_seq, Entry, VersionKey};
use crate::refresh::{AccessStamp, Family, RefreshRecord, RefreshState, RefreshView, Rotation};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    key TEXT PRIMARY KEY,
    min_ver INTEGER NOT NULL,
    expires_at INTEGER,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_seq ON versions(seq);
CREATE TABLE IF NOT EXISTS families (
    sid TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    scope TEXT NOT NULL,
    client_id TEXT,
    ver INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY,
    sid TEXT NOT NULL,
    rotated_at_ms INTEGER,
    successor TEXT,
    sealed TEXT,
    iat INTEGER,
    exp INTEGER,
    jti TEXT
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    name TEXT,
    scope TEXT NOT NULL,
    hosts TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    ver INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_tokens_sub ON api_tokens(sub);
"#;

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    identity: Identity,
    path: PathBuf,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/authority.sqlite3`.
    pub fn open(dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| be(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("authority.sqlite3");
        let mut conn = Connection::open(&path).map_err(be)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(be)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(be)?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(be)?;
        // What the connection actually does, read back: an answered request
        // must be on disk, and a SIGKILL test cannot show a missing fsync.
        check_durability(&conn)?;
        conn.execute_batch(SCHEMA).map_err(be)?;
        let identity = identity(&mut conn, crate::util::random_id::<12>(""), crate::util::now_us()).map_err(be)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), identity, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability settings of the store's own connection, read back
    /// (`PRAGMA journal_mode`, `PRAGMA synchronous`).
    pub fn durability(&self) -> StoreResult<Durability> {
        let conn = self.conn.lock().map_err(|_| be("connection mutex poisoned"))?;
        Durability::read(&conn)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| be("connection mutex poisoned"))?;
            f(&mut guard).map_err(be)
        })
        .await
        .map_err(be)?
    }
}

/// `PRAGMA synchronous` levels (SQLite's numbering).
const SYNCHRONOUS_LEVELS: [&str; 4] = ["OFF", "NORMAL", "FULL", "EXTRA"];
/// The weakest `synchronous` level the store accepts: in WAL mode, `FULL`
/// fsyncs the WAL at every commit; `NORMAL` only at checkpoints, so a
/// committed (and answered) write can be lost on an OS crash or power loss.
const MIN_SYNCHRONOUS: i64 = 2;

/// The settings that make an acknowledged write durable, as SQLite reports
/// them for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `PRAGMA journal_mode`, lower case (`wal` is required).
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA (≥ 2 required).
    pub synchronous: i64,
}

impl Durability {
    pub fn read(conn: &Connection) -> StoreResult<Durability> {
        let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(be)?;
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(be)?;
        Ok(Durability { journal_mode: journal_mode.to_ascii_lowercase(), synchronous })
    }
}

/// Refuses a connection whose settings would acknowledge a write before it
/// is on disk: WAL journal mode and `synchronous=FULL` (or `EXTRA`) are
/// required. The error names the setting, what it is and what it must be.
pub fn check_durability(conn: &Connection) -> StoreResult<()> {
    let d = Durability::read(conn)?;
    if d.journal_mode != "wal" {
        return Err(StoreError::Durability(format!(
            "sqlite journal_mode is {} (WAL required: the store's transactions and concurrent CLI access rely on it)",
            d.journal_mode
        )));
    }
    if d.synchronous < MIN_SYNCHRONOUS {
        let name = usize::try_from(d.synchronous).ok().and_then(|i| SYNCHRONOUS_LEVELS.get(i)).copied().unwrap_or("unknown");
        return Err(StoreError::Durability(format!(
            "sqlite synchronous is {name} ({}): an acknowledged rotation or bump could be lost on a crash; synchronous=FULL required",
            d.synchronous
        )));
    }
    Ok(())
}

/// Reads the store's identity, creating it (id and floor together, in one
/// transaction) when the store is new. A store whose id predates floors
/// keeps floor 0, and says so in the log.
fn identity(conn: &mut Connection, fresh_id: String, now_us: u64) -> rusqlite::Result<Identity> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let meta = |tx: &Transaction, name: &str| -> rusqlite::Result<Option<String>> {
        tx.query_row("SELECT value FROM meta WHERE name=?1", [name], |r| r.get(0)).optional()
    };
    let identity = match meta(&tx, "store_id")? {
        None => {
            tx.execute("INSERT INTO meta(name, value) VALUES ('store_id', ?1)", params![fresh_id])?;
            tx.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('floor', ?1)", params![now_us.to_string()])?;
            tracing::info!(store_id = %fresh_id, floor = now_us, "new embedded store");
            Identity { store_id: fresh_id, floor: now_us }
        }
        Some(store_id) => match meta(&tx, "floor")? {
            Some(f) => Identity {
                floor: f.parse().map_err(|_| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "meta floor is not a number".into())
                })?,
                store_id,
            },
            None => {
                tracing::warn!(%store_id, "embedded store created before store floors: keys never bumped read version 0");
                Identity { store_id, floor: 0 }
            }
        },
    };
    tx.commit()?;
    Ok(identity)
}

fn counter(tx: &Transaction, name: &str) -> rusqlite::Result<u64> {
    let v: Option<i64> = tx
        .query_row("SELECT value FROM counters WHERE name=?1", [name], |r| r.get(0))
        .optional()?;
    Ok(to_u64(v.unwrap_or(0)))
}

fn set_counter(tx: &Transaction, name: &str, value: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value=excluded.value",
        params![name, to_i64(value)],
    )?;
    Ok(())
}

/// The minimum of `key`: its last bump, or the store's floor.
fn min_of(tx: &Connection, key: &str, floor: u64) -> rusqlite::Result<u64> {
    let v: Option<i64> = tx
        .query_row("SELECT min_ver FROM versions WHERE key=?1", [key], |r| r.get(0))
        .optional()?;
    Ok(v.map_or(floor, to_u64))
}

fn family_row(c: &Connection, sid: &str) -> rusqlite::Result<Option<(Family, String)>> {
    c.query_row(
        "SELECT sid, sub, scope, client_id, ver, created_at, expires_at, head FROM families WHERE sid=?1",
        [sid],
        |r| {
            Ok((
                Family {
                    sid: r.get(0)?,
                    sub: r.get(1)?,
                    scope: r.get(2)?,
                    client_id: r.get(3)?,
                    ver: to_u64(r.get(4)?),
                    created_at: to_u64(r.get(5)?),
                    expires_at: to_u64(r.get(6)?),
                },
                r.get(7)?,
            ))
        },
    )
    .optional()
}

fn api_row(r: &rusqlite::Row) -> rusqlite::Result<ApiToken> {
    let hosts: String = r.get(4)?;
    Ok(ApiToken {
        id: r.get(0)?,
        sub: r.get(1)?,
        name: r.get(2)?,
        scope: r.get(3)?,
        hosts: serde_json::from_str(&hosts).unwrap_or_default(),
        created_at: to_u64(r.get(5)?),
        expires_at: r.get::<_, Option<i64>>(6)?.map(to_u64),
        ver: to_u64(r.get(7)?),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(to_u64),
    })
}

const API_COLS: &str = "id, sub, name, scope, hosts, created_at, expires_at, ver, revoked_at";

#[async_trait]
impl Store for SqliteStore {
    fn identity(&self) -> Identity {
        self.identity.clone()
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn create_family(&self, f: &NewFamily) -> StoreResult<u64> {
        let f = f.clone();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ver = min_of(&tx, &format!("sub:{}", f.sub), floor)?.max(min_of(&tx, &format!("sid:{}", f.sid), floor)?);
            tx.execute(
                "INSERT INTO families(sid, sub, scope, client_id, ver, created_at, expires_at, head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    f.sid,
                    f.sub,
                    f.scope,
                    f.client_id,
                    to_i64(ver),
                    to_i64(f.created_at),
                    to_i64(f.expires_at),
                    f.first_token_hash
                ],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens(hash, sid) VALUES (?1, ?2)",
                params![f.first_token_hash, f.sid],
            )?;
            tx.commit()?;
            Ok(ver)
        })
        .await
    }

    async fn load_refresh(&self, token_hash: &str) -> StoreResult<RefreshView> {
        let hash = token_hash.to_owned();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            type Row = (String, Option<i64>, Option<String>, Option<String>, Option<i64>, Option<i64>, Option<String>);
            let row: Option<Row> = tx
                .query_row(
                    "SELECT sid, rotated_at_ms, successor, sealed, iat, exp, jti FROM refresh_tokens WHERE hash=?1",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .optional()?;
            let Some((sid, at, succ, sealed, iat, exp, jti)) = row else {
                return Ok(RefreshView::default());
            };
            let state = match (at, succ, sealed, iat, exp, jti) {
                (Some(at), Some(s), Some(sealed), Some(iat), Some(exp), Some(jti)) => {
                    RefreshState::Rotated(Rotation {
                        at_ms: to_u64(at),
                        successor_hash: s,
                        sealed_successor: sealed,
                        access: AccessStamp { iat: to_u64(iat), exp: to_u64(exp), jti },
                    })
                }
                _ => RefreshState::Active,
            };
            let (family, head) = match family_row(&tx, &sid)? {
                Some((f, h)) => (Some(f), Some(h)),
                None => (None, None),
            };
            let min_sub = match &family {
                Some(f) => min_of(&tx, &format!("sub:{}", f.sub), floor)?,
                None => floor,
            };
            let min_sid = min_of(&tx, &format!("sid:{sid}"), floor)?;
            tx.commit()?;
            Ok(RefreshView { record: Some(RefreshRecord { sid, state }), family, head, min_sub, min_sid })
        })
        .await
    }

    async fn apply_rotation(&self, token_hash: &str, expected: Expected, rot: &Rotation) -> StoreResult<bool> {
        let hash = token_hash.to_owned();
        let rot = rot.clone();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT sid, rotated_at_ms FROM refresh_tokens WHERE hash=?1",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((sid, None)) = row else { return Ok(false) };
            let Some((fam, _)) = family_row(&tx, &sid)? else { return Ok(false) };
            if min_of(&tx, &format!("sub:{}", fam.sub), floor)? != expected.min_sub
                || min_of(&tx, &format!("sid:{sid}"), floor)? != expected.min_sid
            {
                return Ok(false);
            }
            tx.execute(
                "UPDATE refresh_tokens SET rotated_at_ms=?2, successor=?3, sealed=?4, iat=?5, exp=?6, jti=?7
                 WHERE hash=?1",
                params![
                    hash,
                    to_i64(rot.at_ms),
                    rot.successor_hash,
                    rot.sealed_successor,
                    to_i64(rot.access.iat),
                    to_i64(rot.access.exp),
                    rot.access.jti
                ],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens(hash, sid) VALUES (?1, ?2)",
                params![rot.successor_hash, sid],
            )?;
            tx.execute("UPDATE families SET head=?2 WHERE sid=?1", params![sid, rot.successor_hash])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn family(&self, sid: &str) -> StoreResult<Option<Family>> {
        let sid = sid.to_owned();
        self.run(move |c| Ok(family_row(c, &sid)?.map(|(f, _)| f))).await
    }

    async fn family_head(&self, sid: &str) -> StoreResult<Option<String>> {
        let sid = sid.to_owned();
        self.run(move |c| Ok(family_row(c, &sid)?.map(|(_, h)| h))).await
    }

    async fn bump(&self, key: &VersionKey, req: BumpRequest) -> StoreResult<Option<Bumped>> {
        let key = key.clone();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let name = key.to_string();
            let existing: Option<(i64, Option<i64>)> = tx
                .query_row("SELECT min_ver, expires_at FROM versions WHERE key=?1", [&name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let current = existing.map_or(floor, |(m, _)| to_u64(m));
            if req.only_if_min.is_some_and(|m| m != current) {
                return Ok(None);
            }
            let ttl = counter(&tx, "access_ttl_max")?.max(req.access_ttl_secs);
            let mut expires = Some(req.now_secs.saturating_add(ttl).saturating_add(req.skew_secs));
            if let Some((_, old)) = existing {
                expires = merge_expiry(expires, old.map(to_u64));
            }
            match &key {
                VersionKey::Session(id) => {
                    let api: Option<Option<i64>> = tx
                        .query_row("SELECT expires_at FROM api_tokens WHERE id=?1", [id], |r| r.get(0))
                        .optional()?;
                    if let Some(exp) = api {
                        expires = merge_expiry(expires, exp.map(to_u64));
                        tx.execute(
                            "UPDATE api_tokens SET revoked_at=?2 WHERE id=?1 AND revoked_at IS NULL",
                            params![id, to_i64(req.now_secs)],
                        )?;
                    }
                }
                VersionKey::Subject(sub) => {
                    let mut stmt = tx.prepare(
                        "SELECT expires_at FROM api_tokens WHERE sub=?1 AND revoked_at IS NULL",
                    )?;
                    let exps = stmt.query_map([sub], |r| r.get::<_, Option<i64>>(0))?;
                    for e in exps {
                        expires = merge_expiry(expires, e?.map(to_u64));
                    }
                }
            }
            let min_ver = next_min(counter(&tx, "ver_high_water")?, current, req.now_us);
            set_counter(&tx, "ver_high_water", min_ver)?;
            let seq = next_seq(counter(&tx, "seq_high_water")?, req.now_us);
            set_counter(&tx, "seq_high_water", seq)?;
            tx.execute(
                "INSERT INTO versions(key, min_ver, expires_at, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET min_ver=excluded.min_ver,
                     expires_at=excluded.expires_at, seq=excluded.seq",
                params![name, to_i64(min_ver), expires.map(to_i64), to_i64(seq)],
            )?;
            tx.commit()?;
            Ok(Some(Bumped { key: name, min_ver, expires_at: expires, seq }))
        })
        .await
    }

    async fn raise_ttl_max(&self, secs: u64) -> StoreResult<u64> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = counter(&tx, "access_ttl_max")?.max(secs);
            set_counter(&tx, "access_ttl_max", v)?;
            tx.commit()?;
            Ok(v)
        })
        .await
    }

    async fn versions(&self, keys: &[VersionKey]) -> StoreResult<Vec<u64>> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                out.push(min_of(&tx, k, floor)?);
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn feed(&self, after: Option<u64>, now_secs: u64) -> StoreResult<FeedPage> {
        let identity = self.identity.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let high_water = counter(&tx, "seq_high_water")?;
            let mut stmt = tx.prepare(
                "SELECT key, min_ver, expires_at FROM versions
                 WHERE seq > ?1 AND seq <= ?2 AND (expires_at IS NULL OR expires_at > ?3)
                 ORDER BY seq",
            )?;
            let after = after.map(to_i64).unwrap_or(-1);
            let rows = stmt.query_map(params![after, to_i64(high_water), to_i64(now_secs)], |r| {
                Ok(Entry {
                    key: r.get(0)?,
                    min_ver: to_u64(r.get(1)?),
                    expires_at: r.get::<_, Option<i64>>(2)?.map(to_u64),
                })
            })?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            tx.commit()?;
            debug_assert!(entries.iter().all(|e| is_live(e.expires_at, now_secs)));
            Ok(FeedPage { identity, high_water, entries })
        })
        .await
    }

    async fn create_api_token(&self, t: &ApiToken) -> StoreResult<u64> {
        let t = t.clone();
        let floor = self.identity.floor;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ver = min_of(&tx, &format!("sub:{}", t.sub), floor)?.max(min_of(&tx, &format!("sid:{}", t.id), floor)?);
            let hosts = serde_json::to_string(&t.hosts).unwrap_or_else(|_| "[]".into());
            tx.execute(
                &format!("INSERT INTO api_tokens({API_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"),
                params![
                    t.id,
                    t.sub,
                    t.name,
                    t.scope,
                    hosts,
                    to_i64(t.created_at),
                    t.expires_at.map(to_i64),
                    to_i64(ver)
                ],
            )?;
            tx.commit()?;
            Ok(ver)
        })
        .await
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiToken>> {
        let id = id.to_owned();
        self.run(move |c| {
            c.query_row(&format!("SELECT {API_COLS} FROM api_tokens WHERE id=?1"), [&id], api_row)
                .optional()
        })
        .await
    }

    async fn list_api_tokens(&self, sub: Option<&str>) -> StoreResult<Vec<ApiToken>> {
        let sub = sub.map(str::to_owned);
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {API_COLS} FROM api_tokens WHERE ?1 IS NULL OR sub=?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([sub], api_row)?;
            rows.collect()
        })
        .await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        self.run(|c| {
            let families: i64 = c.query_row("SELECT count(*) FROM families", [], |r| r.get(0))?;
            let refresh: i64 = c.query_row("SELECT count(*) FROM refresh_tokens", [], |r| r.get(0))?;
            Ok(Stats { families: to_u64(families), refresh_tokens: to_u64(refresh) })
        })
        .await
    }

    async fn gc(&self, now_secs: u64) -> StoreResult<u64> {
        // Feed rows are filtered by expiry on read and the minimums must be
        // kept (refresh families outlive feed entries); only dead refresh
        // state is dropped here.
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM refresh_tokens WHERE sid IN (SELECT sid FROM families WHERE expires_at <= ?1)",
                [to_i64(now_secs)],
            )?;
            tx.execute("DELETE FROM families WHERE expires_at <= ?1", [to_i64(now_secs)])?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }
}
