//! Conversions between what a network predicts (epsilon, v or x_0) and the predicted
//! x_0 / epsilon, plus clipping and dynamic thresholding of the predicted x_0
//! (Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep
//! Language Understanding", <https://arxiv.org/abs/2205.11487>).

use crate::config::{PredictionType, SchedulerConfig};

/// (x_0, epsilon) predicted from one model output element at a step with alpha-bar `ab`,
/// written with sqrt(ab) = `a` and sqrt(1 - ab) = `s`.
#[inline]
pub fn to_x0_eps(prediction: PredictionType, a: f64, s: f64, sample: f64, out: f64) -> (f64, f64) {
    match prediction {
        PredictionType::Epsilon => ((sample - s * out) / a, out),
        PredictionType::Sample => (out, (sample - a * out) / s),
        PredictionType::VPrediction => (a * sample - s * out, a * out + s * sample),
    }
}

/// How the predicted x_0 is kept in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum X0Clamp {
    None,
    /// clip_sample: clamp to [-range, range].
    Clip(f64),
    /// Dynamic thresholding at this quantile of |x_0|, s clamped to [1, sample_max_value].
    Threshold {
        ratio: f64,
        max: f64,
    },
}

impl X0Clamp {
    /// The clamp a scheduler config asks for (`clip_default`: the sampler's default for
    /// clip_sample; thresholding wins over clipping, as in diffusers).
    pub fn from_config(config: &SchedulerConfig, clip_default: bool) -> Self {
        if config.thresholding.unwrap_or(false) {
            X0Clamp::Threshold { ratio: config.dynamic_thresholding_ratio.unwrap_or(0.995), max: config.sample_max_value.unwrap_or(1.0) }
        } else if config.clip_sample.unwrap_or(clip_default) {
            X0Clamp::Clip(config.clip_sample_range.unwrap_or(1.0))
        } else {
            X0Clamp::None
        }
    }

    /// Applies the clamp to the predicted x_0 of one batch item, in place.
    pub fn apply(self, x0: &mut [f64]) {
        match self {
            X0Clamp::None => {}
            X0Clamp::Clip(r) => x0.iter_mut().for_each(|v| *v = v.clamp(-r, r)),
            X0Clamp::Threshold { ratio, max } => {
                let s = quantile_abs(x0, ratio).clamp(1.0, max.max(1.0));
                x0.iter_mut().for_each(|v| *v = v.clamp(-s, s) / s);
            }
        }
    }
}

/// The q-quantile of |x| with linear interpolation (torch.quantile's default).
pub fn quantile_abs(x: &[f64], q: f64) -> f64 {
    let mut a: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    a.sort_by(f64::total_cmp);
    if a.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (a.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    a[lo] + (a[hi] - a[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_agree_on_a_noised_point() {
        let (x0, eps, ab) = (0.3f64, -1.2f64, 0.7f64);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let xt = a * x0 + s * eps;
        let v = a * eps - s * x0;
        for (p, out) in [(PredictionType::Epsilon, eps), (PredictionType::Sample, x0), (PredictionType::VPrediction, v)] {
            let (px0, peps) = to_x0_eps(p, a, s, xt, out);
            assert!((px0 - x0).abs() < 1e-12 && (peps - eps).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile_abs(&[1.0, -2.0, 3.0, -4.0], 0.5), 2.5);
        assert_eq!(quantile_abs(&[1.0, -2.0, 3.0, -4.0], 1.0), 4.0);
    }

    #[test]
    fn threshold_divides_by_s() {
        let mut x = vec![-4.0, 0.5, 2.0, 1.0];
        X0Clamp::Threshold { ratio: 1.0, max: 2.0 }.apply(&mut x);
        assert_eq!(x, vec![-1.0, 0.25, 1.0, 0.5]);
    }
}
