//! L_vlb per training image, in bits per dimension, in libtorch so that it trains (Ho et
//! al. 2020, eq. 5; Nichol & Dhariwal 2021, section 3.1): at t > 0 the KL between the
//! posterior q(x_{t-1} | x_t, x_0) and the model's p(x_{t-1} | x_t), at t = 0 the negative
//! log-likelihood of x_0 under the discretized Gaussian decoder (256 bins of data in
//! [-1, 1], the outer bins open to +-inf). Conventions where the paper leaves them open
//! follow improved-diffusion's `gaussian_diffusion.py`: the clipped posterior
//! log-variance, learned_range between it and log beta_t, and the predicted x_0 not clipped
//! while training. The constants per t come from the runtime's `Schedule`.

use ddpm_runtime::{PredictionType, Schedule, VarianceType};
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// The per-t constants of the bound, as 1-D float tensors indexed by t.
pub(super) struct VlbConstants {
    variance_type: VarianceType,
    prediction: PredictionType,
    sqrt_ab: Tensor,
    sqrt_one_minus_ab: Tensor,
    /// Posterior mean coefficients on x_0 and on x_t.
    coef_x0: Tensor,
    coef_xt: Tensor,
    /// The posterior's log-variance (clipped at t = 0).
    posterior_log_var: Tensor,
    /// The model's log-variance for a fixed variance type; learned_range's upper bound
    /// (log beta_t) for a learned one.
    model_log_var: Tensor,
}

fn column(values: impl Iterator<Item = f64>, device: Device) -> Result<Tensor> {
    let v: Vec<f64> = values.collect();
    Ok(Tensor::f_from_slice(&v)?.f_to_device(device)?)
}

/// [B] values picked by the timesteps, as [B, 1, 1, 1] of `kind` (the inputs' float kind:
/// float32 in training, float64 in the reference test).
fn at(table: &Tensor, t: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(table.f_index_select(0, t)?.f_view([-1, 1, 1, 1])?.f_to_kind(kind)?)
}

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) elementwise, in nats.
pub(crate) fn normal_kl(m1: &Tensor, lv1: &Tensor, m2: &Tensor, lv2: &Tensor) -> Result<Tensor> {
    let d = m1.f_sub(m2)?;
    let term = lv2.f_sub(lv1)?.f_add(&lv1.f_sub(lv2)?.f_exp()?)?.f_add(&d.f_square()?.f_mul(&lv2.f_neg()?.f_exp()?)?)?;
    Ok(term.f_sub_scalar(1.0)?.f_mul_scalar(0.5)?)
}

/// A fast approximation of the standard normal CDF (improved-diffusion's, from GPT-2's
/// GELU): 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
fn approx_standard_normal_cdf(x: &Tensor) -> Result<Tensor> {
    let inner = x.f_add(&x.f_pow_tensor_scalar(3)?.f_mul_scalar(0.044715)?)?.f_mul_scalar((2.0 / std::f64::consts::PI).sqrt())?;
    Ok(inner.f_tanh()?.f_add_scalar(1.0)?.f_mul_scalar(0.5)?)
}

/// log p(x) of data x in [-1, 1] under a Gaussian discretized to 256 bins of width 2/255,
/// the outer bins open to +-inf, elementwise.
pub(crate) fn discretized_gaussian_log_likelihood(x: &Tensor, means: &Tensor, log_scales: &Tensor) -> Result<Tensor> {
    let centered = x.f_sub(means)?;
    let inv_stdv = log_scales.f_neg()?.f_exp()?;
    let cdf_plus = approx_standard_normal_cdf(&inv_stdv.f_mul(&centered.f_add_scalar(1.0 / 255.0)?)?)?;
    let cdf_min = approx_standard_normal_cdf(&inv_stdv.f_mul(&centered.f_sub_scalar(1.0 / 255.0)?)?)?;
    let log_cdf_plus = cdf_plus.f_clamp_min(1e-12)?.f_log()?;
    let log_one_minus_cdf_min = cdf_min.f_neg()?.f_add_scalar(1.0)?.f_clamp_min(1e-12)?.f_log()?;
    let log_delta = cdf_plus.f_sub(&cdf_min)?.f_clamp_min(1e-12)?.f_log()?;
    let upper = log_one_minus_cdf_min.f_where_self(&x.f_gt(0.999)?, &log_delta)?;
    Ok(log_cdf_plus.f_where_self(&x.f_lt(-0.999)?, &upper)?)
}

impl VlbConstants {
    pub(super) fn new(schedule: &Schedule, variance_type: VarianceType, prediction: PredictionType, device: Device) -> Result<Self> {
        let ts = 0..schedule.num_train_timesteps() as i64;
        let ab = |t: i64| schedule.alpha_bar(t);
        let coef: Vec<(f64, f64)> = ts.clone().map(|t| schedule.posterior_mean_coefficients(t, t - 1)).collect();
        let model_log_var = ts.clone().map(|t| match schedule.fixed_log_variance(t, variance_type) {
            Some(lv) => lv,
            None => schedule.learned_range_bounds(t).1,
        });
        Ok(Self {
            variance_type,
            prediction,
            sqrt_ab: column(ts.clone().map(|t| ab(t).sqrt()), device)?,
            sqrt_one_minus_ab: column(ts.clone().map(|t| (1.0 - ab(t)).sqrt()), device)?,
            coef_x0: column(coef.iter().map(|c| c.0), device)?,
            coef_xt: column(coef.iter().map(|c| c.1), device)?,
            posterior_log_var: column(ts.clone().map(|t| schedule.posterior_log_variance_clipped(t)), device)?,
            model_log_var: column(model_log_var, device)?,
        })
    }

    /// L_t in bits per dimension for each image [B]: `out` is the model's prediction (C
    /// channels, its mean), `v` its learned_range variance channels (None for a fixed
    /// variance); `x0`, `xt` [B, C, H, W], `t` [B] int64.
    pub(super) fn terms(&self, out: &Tensor, v: Option<&Tensor>, x0: &Tensor, xt: &Tensor, t: &Tensor) -> Result<Tensor> {
        let k = x0.kind();
        let (a, s) = (at(&self.sqrt_ab, t, k)?, at(&self.sqrt_one_minus_ab, t, k)?);
        let pred_x0 = match self.prediction {
            PredictionType::Epsilon => xt.f_sub(&s.f_mul(out)?)?.f_div(&a)?,
            PredictionType::Sample => out.shallow_clone(),
            PredictionType::VPrediction => a.f_mul(xt)?.f_sub(&s.f_mul(out)?)?,
        };
        let (c0, ct) = (at(&self.coef_x0, t, k)?, at(&self.coef_xt, t, k)?);
        let model_mean = c0.f_mul(&pred_x0)?.f_add(&ct.f_mul(xt)?)?;
        let true_mean = c0.f_mul(x0)?.f_add(&ct.f_mul(xt)?)?;
        let posterior_log_var = at(&self.posterior_log_var, t, k)?;
        let model_log_var = match (v, self.variance_type) {
            (Some(v), VarianceType::LearnedRange) => {
                let frac = v.f_add_scalar(1.0)?.f_mul_scalar(0.5)?;
                let max_log = at(&self.model_log_var, t, k)?;
                frac.f_mul(&max_log)?.f_add(&frac.f_neg()?.f_add_scalar(1.0)?.f_mul(&posterior_log_var)?)?
            }
            (Some(v), _) => v.f_clamp_min(1e-20)?.f_log()?,
            (None, _) => at(&self.model_log_var, t, k)?.f_expand_as(x0)?,
        };
        let ln2 = std::f64::consts::LN_2;
        let kl = normal_kl(&true_mean, &posterior_log_var.f_expand_as(x0)?, &model_mean, &model_log_var)?
            .f_mean_dim([1, 2, 3].as_slice(), false, k)?
            .f_div_scalar(ln2)?;
        let decoder = discretized_gaussian_log_likelihood(x0, &model_mean, &model_log_var.f_mul_scalar(0.5)?)?
            .f_neg()?
            .f_mean_dim([1, 2, 3].as_slice(), false, k)?
            .f_div_scalar(ln2)?;
        Ok(decoder.f_where_self(&t.f_eq(0)?, &kl)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_runtime::SchedulerConfig;
    use serde_json::Value;

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    /// Each term of the bound against improved-diffusion's `_vb_terms_bpd` (a float64
    /// transcription, python/make_vlb_fixtures.py) on fixed inputs: every variance type the
    /// trainer learns or fixes, every prediction type, t = 0 (the decoder), 1, 25, T - 1.
    #[test]
    fn terms_match_improved_diffusion() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/vlb/terms.json");
        let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let betas: Vec<f64> = f["betas"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let schedule = Schedule::from_config(&SchedulerConfig { trained_betas: Some(betas), ..Default::default() }).unwrap();
        let shape: Vec<i64> = f["shape"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let tensor = |v: &Value| Tensor::from_slice(&floats(v)).reshape(&shape);
        let t: Vec<i64> = f["t"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let (x0, xt, tt) = (tensor(&f["x0"]), tensor(&f["xt"]), Tensor::from_slice(&t));
        let mut checked = 0;
        for case in f["cases"].as_array().unwrap() {
            let variance = VarianceType::from_name(case["variance_type"].as_str().unwrap()).unwrap();
            let prediction = PredictionType::from_name(case["prediction_type"].as_str().unwrap()).unwrap();
            let consts = VlbConstants::new(&schedule, variance, prediction, Device::Cpu).unwrap();
            let v = variance.is_learned().then(|| tensor(&case["v"]));
            // In float64, as the reference computes (training runs the same code in float32).
            let ours = Vec::<f64>::try_from(&consts.terms(&tensor(&case["out"]), v.as_ref(), &x0, &xt, &tt).unwrap()).unwrap();
            let want = floats(&case["terms_bits_per_dim"]);
            for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-12, "{variance} {prediction} t = {}: {a} vs improved-diffusion's {b}", t[i]);
                checked += 1;
            }
        }
        assert_eq!(checked, 9 * 4);
    }
}
