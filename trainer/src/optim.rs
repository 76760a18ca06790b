//! AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization") with PyTorch's
//! update rule, global-norm gradient clipping, and an exponential moving average of the
//! weights. Written on tch tensors because a checkpoint must hold the moments, which
//! tch's optimizer does not expose.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::error::Result;

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// First and second moments by parameter name.
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl AdamW {
    pub fn new(params: &BTreeMap<String, Tensor>, weight_decay: f64) -> Result<Self> {
        let zeros = |p: &Tensor| p.f_zeros_like();
        let m = params.iter().map(|(k, p)| Ok((k.clone(), zeros(p)?))).collect::<Result<_>>()?;
        let v = params.iter().map(|(k, p)| Ok((k.clone(), zeros(p)?))).collect::<Result<_>>()?;
        Ok(Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, m, v })
    }

    /// One update at 1-based step `t` with learning rate `lr`.
    pub fn step(&mut self, params: &BTreeMap<String, Tensor>, lr: f64, t: u64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        for (name, p) in params {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let (m, v) = match (self.m.get_mut(name), self.v.get_mut(name)) {
                (Some(m), Some(v)) => (m, v),
                _ => continue,
            };
            // PyTorch's single-tensor AdamW, in place: p *= 1 - lr wd; m = lerp(m, g, 1 - b1);
            // v = b2 v + (1 - b2) g^2; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
            let mut p = p.shallow_clone();
            if self.weight_decay != 0.0 {
                let _ = p.f_mul_scalar_(1.0 - lr * self.weight_decay)?;
            }
            let _ = m.f_lerp_(&g, 1.0 - self.beta1)?;
            let _ = v.f_mul_scalar_(self.beta2)?.f_addcmul_(&g.f_mul_scalar(1.0 - self.beta2)?, &g)?;
            let mut denom = v.f_sqrt()?;
            let _ = denom.f_div_scalar_(bc2.sqrt())?.f_add_scalar_(self.eps)?.f_mul_scalar_(-bc1 / lr)?;
            let _ = p.f_addcdiv_(m, &denom)?;
        }
        Ok(())
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm`; returns the norm
/// before clipping (PyTorch's clip_grad_norm_).
pub fn clip_grad_norm(params: &BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let mut total = 0.0f64;
    for p in params.values() {
        let g = p.grad();
        if g.defined() {
            total += g.f_norm()?.double_value(&[]).powi(2);
        }
    }
    let norm = total.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for p in params.values() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(coef)?;
                }
            }
        }
    }
    Ok(norm)
}

/// The EMA decay at `step` (1-based): (1 + step) / (10 + step), capped at `max_decay`
/// (diffusers' EMAModel without inverse-gamma warm-up), so short runs are not dominated by
/// the random initialisation.
pub fn ema_decay(step: u64, max_decay: f64) -> f64 {
    ((1.0 + step as f64) / (10.0 + step as f64)).min(max_decay)
}

/// ema = decay * ema + (1 - decay) * param.
pub fn ema_update(ema: &BTreeMap<String, Tensor>, params: &BTreeMap<String, Tensor>, decay: f64) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, e) in ema {
        if let Some(p) = params.get(name) {
            let mut e = e.shallow_clone();
            let _ = e.f_lerp_(&p.f_detach()?, 1.0 - decay)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // With a constant gradient g, the first Adam step moves by lr * sign(g) (up to eps).
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut params = BTreeMap::new();
        params.insert("w".to_string(), p.shallow_clone());
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        loss.backward();
        let mut opt = AdamW::new(&params, 0.0).unwrap();
        opt.step(&params, 0.1, 1).unwrap();
        let after: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        assert!((after[0] - 0.9).abs() < 1e-5 && (after[1] - -1.9).abs() < 1e-5, "{after:?}");
    }

    #[test]
    fn ema_decay_warms_up() {
        assert!((ema_decay(1, 0.9999) - 2.0 / 11.0).abs() < 1e-12);
        assert_eq!(ema_decay(10_000_000, 0.9999), 0.9999);
    }
}
