//! Seeded randomness whose stream does not depend on the batch size: sample k of a run
//! draws all its noise (x_T, then each stochastic step) from its own ChaCha8 stream k of
//! the run's seed, so any batching of the same N samples gives the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The random stream of one sample.
pub fn sample_rng(seed: u64, sample_index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(sample_index);
    rng
}

/// The stream a class label is drawn from (kept apart from the noise streams).
pub fn label_rng(seed: u64, sample_index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c61_6265_6c73_0000);
    rng.set_stream(sample_index);
    rng
}

/// Fills `out` with standard normal values.
pub fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    for v in out {
        *v = rng.sample(StandardNormal);
    }
}
