//! Batch assembly: which images, flips, timesteps and noise a step trains on, each a
//! function of (seed, epoch) or (seed, step), so that a resumed run draws exactly what the
//! uninterrupted run would have.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Dataset;

/// The sample order of an epoch: a permutation drawn from (seed, epoch).
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006f_7264_6572);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// One step's training inputs: x_0 [B, C, H, W], labels (class-conditional data), the
/// timesteps t [B] and the noise eps [B, C, H, W].
pub(super) struct Batch {
    /// [C, H, W] of an image.
    pub(super) item: [usize; 3],
    pub(super) x0: Vec<f32>,
    pub(super) labels: Vec<i64>,
    pub(super) t: Vec<i64>,
    pub(super) noise: Vec<f32>,
    /// Per-image loss weights: 1 / (T p_t) under importance sampling, else 1.
    pub(super) weights: Vec<f64>,
}

/// Draws the batches of a run: epochs walk the data in a seeded order.
pub(super) struct Batches<'d> {
    data: &'d Dataset,
    seed: u64,
    batch_size: usize,
    flip: bool,
    t_count: i64,
    order_epoch: u64,
    order: Vec<usize>,
    /// (probability, null label) of label dropout.
    drop: Option<(f64, i64)>,
}

impl<'d> Batches<'d> {
    pub(super) fn new(data: &'d Dataset, seed: u64, batch_size: usize, flip: bool, t_count: i64) -> Self {
        Self { data, seed, batch_size, flip, t_count, order_epoch: u64::MAX, order: Vec::new(), drop: None }
    }

    /// Label dropout: each label becomes `null` with probability `p` (drawn from the step's
    /// stream after everything else, so that p = 0 draws nothing and changes nothing).
    pub(super) fn with_label_dropout(mut self, p: f64, null: i64) -> Self {
        self.drop = (p > 0.0).then_some((p, null));
        self
    }

    /// The batch of step `step` (0-based); t uniform, or drawn from `p` (importance
    /// sampling).
    pub(super) fn at(&mut self, step: u64, p: Option<&[f64]>) -> Batch {
        let (b, per) = (self.batch_size, self.data.item_len());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(step + 1);
        let mut x0 = Vec::with_capacity(b * per);
        let mut labels = Vec::with_capacity(b);
        for i in 0..b {
            let k = step * b as u64 + i as u64;
            let (epoch, pos) = (k / self.data.n as u64, (k % self.data.n as u64) as usize);
            if epoch != self.order_epoch {
                self.order = epoch_order(self.data.n, self.seed, epoch);
                self.order_epoch = epoch;
            }
            let idx = self.order[pos];
            let flip = self.flip && rng.random_bool(0.5);
            self.data.push_item(idx, flip, &mut x0);
            if let Some(l) = &self.data.labels {
                labels.push(l[idx]);
            }
        }
        let (t, weights): (Vec<i64>, Vec<f64>) = match p {
            None => ((0..b).map(|_| rng.random_range(0..self.t_count)).collect(), vec![1.0; b]),
            Some(p) => (0..b)
                .map(|_| {
                    let t = super::timesteps::draw(p, &mut rng);
                    (t, 1.0 / (p.len() as f64 * p[t as usize]))
                })
                .unzip(),
        };
        let noise = (0..b * per).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
        if let Some((p, null)) = self.drop {
            for l in labels.iter_mut() {
                if rng.random_bool(p) {
                    *l = null;
                }
            }
        }
        Batch { item: [self.data.channels, self.data.height, self.data.width], x0, labels, t, noise, weights }
    }
}
