//! What the workers of one Envoy share through proxy-wasm shared data, and
//! the compare-and-set steps on it: the revocation poller's lease, the
//! published revocation set with its fingerprint, and worker ids.

use super::Host;

pub const WORKERS_KEY: &str = "tollgate.workers";

/// The revocation keys of one authority and issuer: a configuration that
/// points elsewhere (another authority, another issuer) never inherits the
/// set, the floor, the lease or the sync time of the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub lease: String,
    pub set: String,
    pub meta: String,
}

impl Keys {
    pub fn for_config(config: &crate::config::Config) -> Keys {
        use sha2::{Digest, Sha256};
        let (cluster, host) = config.authority.as_ref().map_or(("", ""), |a| (a.cluster.as_str(), a.host.as_str()));
        let digest = Sha256::new()
            .chain_update(cluster)
            .chain_update([0])
            .chain_update(host)
            .chain_update([0])
            .chain_update(&config.verifier.rules.issuer)
            .finalize();
        let ns: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Keys {
            lease: format!("tollgate.revocation.{ns}.lease"),
            set: format!("tollgate.revocation.{ns}.set"),
            meta: format!("tollgate.revocation.{ns}.meta"),
        }
    }
}

/// What the poller publishes beside the set: its fingerprint, when it was
/// last synced, and until when a long poll is outstanding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    pub fingerprint: String,
    pub synced_at_ms: Option<u64>,
    pub held_until_ms: Option<u64>,
}

/// `<fingerprint>:<synced_at_ms>:<held_until_ms>` (0: none).
pub(super) fn read_meta(host: &dyn Host, keys: &Keys) -> Option<Meta> {
    let bytes = host.shared_get(&keys.meta).0?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut parts = text.split(':');
    let fingerprint = parts.next()?.to_owned();
    let mut number = || parts.next().and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0);
    let synced_at_ms = number();
    let held_until_ms = number();
    Some(Meta { fingerprint, synced_at_ms, held_until_ms })
}

pub(super) fn write_meta(host: &mut dyn Host, keys: &Keys, meta: &Meta) {
    let text = format!("{}:{}:{}", meta.fingerprint, meta.synced_at_ms.unwrap_or(0), meta.held_until_ms.unwrap_or(0));
    let _ = host.shared_set(&keys.meta, text.as_bytes(), None);
}

/// Takes or renews the poller lease (`<worker>:<until_ms>`); true when this
/// worker holds it until `now + lease_ms`.
pub(super) fn take_lease(host: &mut dyn Host, keys: &Keys, me: u32, now: u64, lease_ms: u64) -> bool {
    let (bytes, cas) = host.shared_get(&keys.lease);
    let holder = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| {
        let (w, until) = s.split_once(':')?;
        Some((w.parse::<u32>().ok()?, until.parse::<u64>().ok()?))
    });
    match holder {
        Some((w, until)) if w != me && until > now => false,
        _ => {
            let lease = format!("{me}:{}", now + lease_ms);
            host.shared_set(&keys.lease, lease.as_bytes(), cas).is_ok()
        }
    }
}

/// Creates every key the workers compare-and-set, where missing. Envoy's
/// shared data has no create-if-absent: a set of a missing key succeeds
/// whatever its cas, so two workers that both find a key missing would both
/// "win" their first compare-and-set (two worker ids alike, two lease
/// holders, two claims of one refresh slot). Envoy configures the plugin's
/// main-thread VM before its workers' VMs, so the keys exist before any
/// worker competes for them; every later write is a real compare-and-set.
pub fn create_keys(host: &mut dyn Host, keys: &Keys, refresh_slots: u32) {
    let mut create = |key: &str, value: &[u8]| {
        if host.shared_get(key).1.is_none() {
            let _ = host.shared_set(key, value, None);
        }
    };
    create(WORKERS_KEY, b"0");
    create(&keys.lease, b"0:0");
    for n in 0..refresh_slots {
        create(&crate::refresh::slot_key_of(n), b"");
    }
}

/// A number no other worker of this Envoy has (a compare-and-set counter).
pub fn claim_worker_id(host: &mut dyn Host) -> u32 {
    for _ in 0..16 {
        let (bytes, cas) = host.shared_get(WORKERS_KEY);
        let n = bytes
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
            .wrapping_add(1);
        if host.shared_set(WORKERS_KEY, n.to_string().as_bytes(), cas).is_ok() {
            return n;
        }
    }
    0
}
