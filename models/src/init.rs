//! The one weight initialiser: PyTorch's defaults, as a fresh diffusers UNet2DModel (or
//! any network of conv, linear, norm and embedding layers) has them.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::weights::{Weight, Weights};

/// PyTorch's default initialisation of the parameters `params` (name, shape), drawn from
/// `seed` in their order: conv and linear weights and biases U(-1/sqrt(fan_in),
/// 1/sqrt(fan_in)) with the fan-in of the module's weight, norm scales 1 and shifts 0,
/// embedding tables (`class_embedding`) N(0, 1).
///
/// ```
/// let params = vec![("fc.weight".to_string(), vec![2, 4]), ("fc.bias".to_string(), vec![2]), ("norm.weight".to_string(), vec![2])];
/// let w = ddpm_models::init::pytorch_default(&params, 0);
/// assert!(w["fc.weight"].data.iter().all(|v| v.abs() <= 0.5)); // 1/sqrt(4)
/// assert_eq!(w["norm.weight"].data, vec![1.0, 1.0]);
/// ```
pub fn pytorch_default(params: &[(String, Vec<usize>)], seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fan_in: BTreeMap<&str, usize> = params
        .iter()
        .filter(|(n, s)| n.ends_with(".weight") && s.len() >= 2)
        .map(|(n, s)| (n.trim_end_matches(".weight"), s[1..].iter().product()))
        .collect();
    let mut out = Weights::new();
    for (name, shape) in params {
        let n: usize = shape.iter().product();
        let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m);
        let data: Vec<f32> = if module.ends_with("embedding") {
            (0..n).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect()
        } else if module.contains("norm") {
            vec![if name.ends_with(".weight") { 1.0 } else { 0.0 }; n]
        } else {
            let bound = 1.0 / (fan_in.get(module).copied().unwrap_or(1).max(1) as f32).sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        out.insert(name.clone(), Weight { shape: shape.clone(), data });
    }
    out
}
