//! Importance sampling of t for L_vlb (Nichol & Dhariwal 2021, eq. 17, improved-diffusion's
//! `LossSecondMomentResampler`): p_t proportional to sqrt(E[L_t^2]) over the last 10 losses
//! seen at each t, mixed with 0.1% of the uniform distribution, and uniform until every t
//! has its 10. The history is part of every checkpoint, so a resumed run draws exactly the
//! timesteps the uninterrupted one would have.

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Losses kept per timestep.
pub(super) const HISTORY: usize = 10;
/// The uniform share of p_t.
const UNIFORM: f64 = 0.001;

/// The last [`HISTORY`] per-image losses at each timestep, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct LossHistory {
    per_t: Vec<Vec<f64>>,
}

impl LossHistory {
    pub(super) fn new(num_train_timesteps: usize) -> Self {
        Self { per_t: vec![Vec::new(); num_train_timesteps] }
    }

    fn warmed_up(&self) -> bool {
        self.per_t.iter().all(|h| h.len() == HISTORY)
    }

    /// p_t over 0..T.
    pub(super) fn probabilities(&self) -> Vec<f64> {
        let n = self.per_t.len();
        if !self.warmed_up() {
            return vec![1.0 / n as f64; n];
        }
        let w: Vec<f64> = self.per_t.iter().map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt()).collect();
        let total: f64 = w.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return vec![1.0 / n as f64; n];
        }
        w.iter().map(|x| x / total * (1.0 - UNIFORM) + UNIFORM / n as f64).collect()
    }

    /// Records the per-image losses of a batch.
    pub(super) fn update(&mut self, t: &[i64], losses: &[f64]) {
        for (&ti, &l) in t.iter().zip(losses) {
            let h = &mut self.per_t[ti as usize];
            if h.len() == HISTORY {
                h.remove(0);
            }
            h.push(l);
        }
    }

    /// The checkpoint file of the history.
    pub(super) const FILE: &'static str = "timestep_history.json";

    pub(super) fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string(self).map_err(|e| TrainError::Io(e.to_string()))?;
        Ok(ddpm_io::files::write_atomically(dir.join(Self::FILE), |w| w.write_all(json.as_bytes()))?)
    }

    /// Reads a checkpoint's history; it must hold `num_train_timesteps` entries of at most
    /// [`HISTORY`] finite losses.
    pub(super) fn load(dir: &Path, num_train_timesteps: usize) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = ddpm_io::files::read_regular_text(&path, 1 << 28, "timestep history")?;
        let h: Self = serde_json::from_str(&text).map_err(|e| {
            TrainError::Usage(format!("{}: not a timestep history ({e}); expected the JSON the trainer writes", path.display()))
        })?;
        if h.per_t.len() != num_train_timesteps || h.per_t.iter().any(|l| l.len() > HISTORY || l.iter().any(|x| !x.is_finite())) {
            return Err(TrainError::Usage(format!(
                "{}: expected {num_train_timesteps} timesteps of at most {HISTORY} finite losses each",
                path.display()
            )));
        }
        Ok(h)
    }
}

/// Draws a timestep from p (inverse CDF of one uniform draw).
pub(super) fn draw(p: &[f64], rng: &mut impl Rng) -> i64 {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (t, &pt) in p.iter().enumerate() {
        acc += pt;
        if u < acc {
            return t as i64;
        }
    }
    p.len() as i64 - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uniform_until_warm_then_proportional_to_the_second_moment() {
        let mut h = LossHistory::new(3);
        assert_eq!(h.probabilities(), vec![1.0 / 3.0; 3]);
        for _ in 0..HISTORY {
            h.update(&[0, 1, 2], &[1.0, 1.0, 2.0]);
        }
        let p = h.probabilities();
        let expect = |w: f64| w / 4.0 * (1.0 - UNIFORM) + UNIFORM / 3.0;
        assert!((p[0] - expect(1.0)).abs() < 1e-12 && (p[2] - expect(2.0)).abs() < 1e-12, "{p:?}");
        // The oldest loss leaves first.
        h.update(&[2], &[0.0]);
        assert_eq!(h.per_t[2].len(), HISTORY);
        assert_eq!(h.per_t[2][HISTORY - 1], 0.0);
    }

    #[test]
    fn draws_follow_p() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let p = [0.1, 0.0, 0.9];
        let draws: Vec<i64> = (0..1000).map(|_| draw(&p, &mut rng)).collect();
        assert!(!draws.contains(&1));
        let twos = draws.iter().filter(|&&t| t == 2).count();
        assert!((850..950).contains(&twos), "{twos}");
    }
}
