//! Mutations of valid files for the readers' property tests (runtime, models and trainer
//! include this file with `#[path]`): bytes overwritten, then a cut, then a tail appended.

use proptest::prelude::*;

/// A valid file mutated: some bytes overwritten, then cut at `cut` (a fraction of its
/// length), then `tail` appended.
pub fn mutate(seed: &[u8], flips: &[(usize, u8)], cut: f64, tail: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(i, v) in flips {
        if !b.is_empty() {
            let n = b.len();
            b[i % n] = v;
        }
    }
    b.truncate(((b.len() as f64) * cut).ceil() as usize);
    b.extend_from_slice(tail);
    b
}

/// The strategy for [`mutate`]'s arguments.
pub fn mutation() -> impl Strategy<Value = (Vec<(usize, u8)>, f64, Vec<u8>)> {
    (prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), 0.0f64..=1.0, prop::collection::vec(any::<u8>(), 0..16))
}

/// Cases per property: `default`, or DDPM_RS_FUZZ_CASES (scripts/fuzz.sh runs millions).
pub fn cases(default: u32) -> u32 {
    std::env::var("DDPM_RS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
