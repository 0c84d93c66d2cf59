//! The revocation state as the edge learns it: feed pages
//! (`FeedPage::parse`), the set (`RevocationSet::apply`, `prune`,
//! `encode`/`decode`, the shared-data form) and live answers
//! (`LiveVersions::record`), against a model written from the module's
//! invariants.

use super::{ensure, known_members, Check};
use serde_json::Value;
use std::collections::BTreeMap;
use tollgate::config::MAX_CLOCK_SKEW;
use tollgate::revocation::{Entry, FeedError, FeedPage, LiveVersions, RevocationSet, MAX_FEED_BYTES};

/// One thing that happens to a worker's revocation state.
#[derive(Debug, Clone)]
pub enum Step {
    /// A feed body as received, parsed and (when it parses) applied at `now_ms`.
    Body { body: Vec<u8>, now_ms: u64 },
    /// Entries dropped once expired, at `now_s`.
    Prune { now_s: u64 },
    /// The authority forgot our cursor (410).
    ForgetCursor,
    /// Another worker's shared data: decoded, and on success it replaces the set.
    Shared { bytes: Vec<u8> },
    /// A `GET /v1/versions` answer for `asked`.
    Live { asked: Vec<String>, body: Vec<u8>, now_ms: u64 },
}

/// The model: what the set must hold.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    entries: BTreeMap<String, (u64, Option<u64>)>,
    cursor: Option<String>,
    synced_at_ms: Option<u64>,
    floor: u64,
    store: Option<String>,
}

impl Model {
    /// Larger minimum wins; the later expiry wins and "never" is latest;
    /// entries stay until their expiry plus the largest skew has passed
    /// here; floor only rises.
    fn apply(&mut self, page: &FeedPage, now_ms: u64) {
        self.floor = self.floor.max(page.floor);
        if page.store.is_some() {
            self.store = page.store.clone();
        }
        for e in &page.entries {
            let merged = match self.entries.get(&e.key) {
                None => (e.min_ver, e.expires_at),
                Some(&(min, exp)) => (min.max(e.min_ver), exp.zip(e.expires_at).map(|(a, b)| a.max(b))),
            };
            self.entries.insert(e.key.clone(), merged);
        }
        self.prune(now_ms / 1000);
        self.cursor = Some(page.cursor.clone());
        self.synced_at_ms = Some(now_ms);
    }

    /// An edge accepts a token until `exp` plus its skew (at most
    /// `MAX_CLOCK_SKEW`): the entry that revokes it lives as long.
    fn prune(&mut self, now_s: u64) {
        let horizon = now_s.saturating_sub(MAX_CLOCK_SKEW);
        self.entries.retain(|_, (_, exp)| exp.is_none_or(|e| e > horizon));
    }
}

/// Compares everything the set lets one observe with the model.
fn agrees(set: &RevocationSet, m: &Model, probe: &[String]) -> Check {
    ensure!(set.len() == m.entries.len(), "{} entries, the model {}", set.len(), m.entries.len());
    for k in m.entries.keys().chain(probe) {
        let want = m.entries.get(k).map(|(min, _)| *min);
        ensure!(set.min_version(k) == want, "min_version({k:?}) = {:?}, the model {want:?}", set.min_version(k));
    }
    ensure!(set.cursor() == m.cursor.as_deref(), "cursor {:?}, the model {:?}", set.cursor(), m.cursor);
    ensure!(set.synced_at_ms() == m.synced_at_ms, "synced at {:?}, the model {:?}", set.synced_at_ms(), m.synced_at_ms);
    ensure!(set.floor() == m.floor, "floor {}, the model {}", set.floor(), m.floor);
    // is_revoked: below the floor, or below a key's minimum.
    for (k, (min, _)) in &m.entries {
        if let Some(sub) = k.strip_prefix("sub:") {
            for ver in [0, m.floor, min.saturating_sub(1), *min, min.saturating_add(1), u64::MAX] {
                let want = ver < m.floor || ver < *min;
                ensure!(set.is_revoked(sub, None, ver) == want, "is_revoked({sub:?}, {ver}) = {}", !want);
            }
        }
    }
    Ok(())
}

/// The set read back from its shared-data encoding must be the same set.
fn round_trips(set: &RevocationSet, m: &Model) -> Check {
    let encoded = set.encode();
    let back = RevocationSet::decode(&encoded).ok_or("the set does not decode its own encoding")?;
    agrees(&back, m, &[])?;
    // One set, one encoding (workers reload on a changed fingerprint).
    ensure!(back.encode() == encoded, "the set read back encodes to other bytes");
    ensure!(back.generation() == set.generation(), "generation {} read back as {}", set.generation(), back.generation());
    if let Some(store) = &m.store {
        let other = FeedPage { snapshot: true, entries: vec![], cursor: String::new(), store: Some(format!("{store}x")), floor: 0, now: None };
        ensure!(back.is_other_store(&other), "the store id did not travel");
    }
    Ok(())
}

/// A page as the authority writes it: the protocol module's own serializer
/// (the one both sides share).
pub fn page_json(page: &FeedPage) -> Vec<u8> {
    serde_json::to_vec(page).unwrap_or_default()
}

/// Runs `steps` on a fresh set and a model side by side:
///
/// - a body parses only within the size limit, only as a JSON object a
///   generic parser reads the same way, and only with `sub:`/`sid:` keys;
///   what parses, written again as the authority writes pages, parses
///   back to itself;
/// - after every step the set agrees with the model (every minimum, the
///   number of entries, cursor, sync time, floor, `is_revoked`), so no
///   minimum and no floor ever goes backwards and an entry disappears only
///   once expired by more than any edge's clock skew;
/// - `apply` reports every change of entries, cursor, floor or store (the
///   other workers reload on it), and the generation advances by exactly
///   one (wrapping: it is compared for change, never ordered, and a shared
///   set may hold any value) per reported change, and otherwise stays;
/// - the shared-data encoding reads back to the same set and re-encodes to
///   the same bytes (one set, one fingerprint), and decoding any bytes never
///   panics (what decodes re-encodes and decodes the same);
/// - a live answer is taken whole or not at all, never lowers a minimum,
///   and is read back as the larger of old and new.
pub fn check_steps(steps: &[Step]) -> Check {
    let mut set = RevocationSet::new();
    let mut model = Model::default();
    let mut live = LiveVersions::default();
    let mut live_model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |e: String| format!("step {i} ({step:?}): {e}");
        let mut probe: Vec<String> = Vec::new();
        let generation = set.generation();
        match step {
            Step::Body { body, now_ms } => {
                let parsed = FeedPage::parse(body);
                check_parse(body, &parsed).map_err(at)?;
                if let Ok(page) = parsed {
                    let rewritten = FeedPage::parse(&page_json(&page));
                    ensure!(rewritten.as_ref() == Ok(&page), "{}", at(format!("written as the authority writes it, it parses as {rewritten:?}")));
                    probe = page.entries.iter().map(|e| e.key.clone()).collect();
                    apply(&mut set, &mut model, page, *now_ms).map_err(at)?;
                }
            }
            Step::Prune { now_s } => {
                let before = model.entries.len();
                model.prune(*now_s);
                let dropped = set.prune(*now_s);
                ensure!(dropped == (before != model.entries.len()), "{}", at(format!("prune said {dropped}")));
            }
            Step::ForgetCursor => {
                let had = model.cursor.take().is_some();
                set.forget_cursor();
                ensure!(set.generation() == generation.wrapping_add(u64::from(had)), "{}", at(format!("generation {generation} -> {}, a cursor to forget: {had}", set.generation())));
                ensure!(set.feed_path(0) == "/v1/revocations", "{}", at(format!("feed path {}", set.feed_path(0))));
            }
            Step::Shared { bytes } => {
                if let Some(decoded) = RevocationSet::decode(bytes) {
                    let again = RevocationSet::decode(&decoded.encode()).ok_or_else(|| at("a decoded set does not decode its own encoding".into()))?;
                    ensure!(again.len() == decoded.len() && again.cursor() == decoded.cursor() && again.floor() == decoded.floor()
                        && again.generation() == decoded.generation() && again.synced_at_ms() == decoded.synced_at_ms(),
                        "{}", at("a decoded set re-encodes to another set".into()));
                    ensure!(decoded.feed_path(0).starts_with("/v1/revocations"), "{}", at("feed path".into()));
                    let Some(v) = known_members(bytes, &["g", "c", "t", "f", "s", "e"]).map(Value::Object) else {
                        return Err(at("decoded bytes whose members serde_json::Value refuses".into()));
                    };
                    model = Model {
                        entries: v["e"].as_array().into_iter().flatten().filter_map(|e| {
                            Some((e[0].as_str()?.to_owned(), (e[1].as_u64()?, e[2].as_u64())))
                        }).collect(),
                        cursor: v["c"].as_str().map(str::to_owned),
                        synced_at_ms: v["t"].as_u64(),
                        floor: v["f"].as_u64().unwrap_or(0),
                        store: v["s"].as_str().map(str::to_owned),
                    };
                    set = decoded;
                }
            }
            Step::Live { asked, body, now_ms } => {
                let before: Vec<Option<u64>> = asked.iter().map(|k| live.get(k, *now_ms, u64::MAX, None)).collect();
                let taken = live.record(asked, body, *now_ms);
                let answer = known_members(body, &["versions"]).map(Value::Object);
                let versions = answer.as_ref().and_then(|a| a.get("versions")).and_then(Value::as_object);
                if taken {
                    let versions = versions.ok_or_else(|| at("taken, but no versions object".into()))?;
                    for k in asked {
                        let v = versions.get(k).and_then(Value::as_u64).ok_or_else(|| at(format!("taken without a version for {k:?}")))?;
                        let min = live_model.get(k).map_or(v, |(old, _)| v.max(*old));
                        live_model.insert(k.clone(), (min, *now_ms));
                    }
                } else {
                    for (k, b) in asked.iter().zip(&before) {
                        ensure!(live.get(k, *now_ms, u64::MAX, None) == *b, "{}", at(format!("refused, yet {k:?} changed")));
                    }
                }
                for (k, (min, _)) in &live_model {
                    ensure!(live.get(k, *now_ms, u64::MAX, None) == Some(*min), "{}", at(format!("live {k:?}: {:?}, want {min}", live.get(k, *now_ms, u64::MAX, None))));
                }
            }
        }
        if matches!(step, Step::Prune { .. } | Step::Live { .. }) {
            ensure!(set.generation() == generation, "{}", at(format!("generation {generation} -> {}", set.generation())));
        }
        agrees(&set, &model, &probe).map_err(at)?;
        round_trips(&set, &model).map_err(at)?;
    }
    Ok(())
}

fn apply(set: &mut RevocationSet, model: &mut Model, page: FeedPage, now_ms: u64) -> Check {
    let before = model.clone();
    let generation = set.generation();
    model.apply(&page, now_ms);
    let changed = set.apply(page, now_ms);
    let model_changed = before.entries != model.entries || before.cursor != model.cursor || before.floor != model.floor || before.store != model.store;
    // A change never goes unreported (the workers would not reload); an
    // entry that arrives already expired may report one that is not.
    ensure!(changed || !model_changed, "apply said unchanged, yet the model changed");
    ensure!(set.generation() == generation.wrapping_add(u64::from(changed)), "generation {generation} -> {} with changed={changed}", set.generation());
    Ok(())
}

/// A parsed body: within the limit, a JSON object with the right members,
/// `sub:`/`sid:` keys only, entries as a generic parser reads them.
fn check_parse(body: &[u8], parsed: &Result<FeedPage, FeedError>) -> Check {
    if body.len() > MAX_FEED_BYTES {
        ensure!(parsed == &Err(FeedError::TooLarge), "a body over the limit: {parsed:?}");
    }
    let Ok(page) = parsed else { return Ok(()) };
    let v = Value::Object(
        known_members(body, &["snapshot", "entries", "cursor", "store", "floor", "now"])
            .ok_or("parsed a body whose members serde_json::Value refuses")?,
    );
    ensure!(v.get("snapshot").and_then(Value::as_bool) == Some(page.snapshot), "snapshot differs from the JSON");
    ensure!(v.get("cursor").and_then(Value::as_str) == Some(page.cursor.as_str()), "cursor differs from the JSON");
    let entries = v.get("entries").and_then(Value::as_array).ok_or("parsed without an entries array")?;
    ensure!(entries.len() == page.entries.len(), "{} entries, the JSON has {}", page.entries.len(), entries.len());
    for (e, j) in page.entries.iter().zip(entries) {
        let want = Entry {
            key: j.get("key").and_then(Value::as_str).unwrap_or_default().to_owned(),
            min_ver: j.get("min_ver").and_then(Value::as_u64).ok_or("an entry without an integer min_ver")?,
            expires_at: j.get("expires_at").and_then(Value::as_u64),
        };
        ensure!(*e == want, "entry {e:?}, the JSON says {want:?}");
        ensure!(e.key.starts_with("sub:") || e.key.starts_with("sid:"), "parsed key {:?}", e.key);
    }
    Ok(())
}
