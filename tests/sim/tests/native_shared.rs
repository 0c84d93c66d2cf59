//! The native host's cross-worker state against the simulation's model of
//! Envoy's proxy-wasm shared data. `native/src/shared.rs` is compiled here
//! as it is (not a copy), and both stores take the same seeded random
//! sequences of reads and writes (unconditional, current, stale, zero and
//! invented compare-and-set tokens, empty values, missing keys): every
//! answer must be the same. So the invariants the simulation proves for
//! the engine over the model hold for the native module's store too.

#[path = "../../../native/src/shared.rs"]
#[allow(dead_code)]
mod native_shared;

use tollgate_sim::rng::Rng;
use tollgate_sim::shared::SharedData as Model;

#[test]
fn native_shared_data_answers_like_envoys() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    for seed in 1..=seeds {
        let mut rng = Rng::new(seed);
        let native = native_shared::SharedData::default();
        let mut model = Model::new();
        let keys = ["lease", "slot", "set", "workers"];
        let mut last_seen: Vec<Option<u32>> = vec![None; keys.len()];
        for step in 0..300 {
            let k = rng.below(keys.len() as u64) as usize;
            let key = keys[k];
            if rng.below(2) == 0 {
                let (a, b) = (native.get(key), model.get(key));
                assert_eq!(a, b, "seed {seed} step {step}: get {key}");
                last_seen[k] = a.1;
            } else {
                let value: Vec<u8> = if rng.below(4) == 0 { Vec::new() } else { format!("v{step}").into_bytes() };
                let cas = match rng.below(5) {
                    0 => None,
                    1 => Some(0),
                    2 => last_seen[k],
                    3 => last_seen[k].map(|c| c.wrapping_add(1)),
                    _ => Some(rng.below(1000) as u32 + 1),
                };
                let (a, b) = (native.set(key, &value, cas), model.set(key, &value, cas));
                assert_eq!(a, b, "seed {seed} step {step}: set {key} with {cas:?}");
            }
        }
    }
}
