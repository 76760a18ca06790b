//! The optimisation step of Algorithm 1: forward, L_simple = || target - model(x_t, t) ||^2,
//! backward, gradient clipping, AdamW with linear warm-up, EMA.

use std::collections::BTreeMap;

use ddpm_models::tch_backend::{TchBackend, TchTensor};
use ddpm_models::UNet2DModel;
use ddpm_runtime::{PredictionType, Schedule};
use tch::{Device, Kind, Tensor};

use super::batch::Batch;
use super::vlb::VlbConstants;
use crate::error::Result;
use crate::optim::{clip_grad_norm, ema_decay, ema_update, AdamW};
use crate::options::{Loss, TrainOptions};

/// L_hybrid's weight of L_vlb (Nichol & Dhariwal 2021, section 3.1).
pub(super) const LAMBDA: f64 = 0.001;

/// What the objective compares the model's output with.
pub(super) struct ObjectiveInputs<'a> {
    pub(super) target: &'a Tensor,
    pub(super) x0: &'a Tensor,
    pub(super) xt: &'a Tensor,
    pub(super) t: &'a Tensor,
    pub(super) num_train_timesteps: usize,
}

/// The objective of each image [B] from the model's mean output (C channels) and its
/// learned variance channels: L_simple = mean (target - out)^2; hybrid, L_simple +
/// lambda T L_t with the mean detached inside L_t (improved-diffusion's `RESCALED_MSE`:
/// T L_t estimates L_vlb = sum_t L_t); vlb, T L_t. L_t in bits/dim.
pub(super) fn objective(
    loss: Loss,
    mean_out: &Tensor,
    var_out: Option<&Tensor>,
    i: &ObjectiveInputs<'_>,
    vlb: Option<&VlbConstants>,
) -> Result<Tensor> {
    let mse =
        || -> Result<Tensor> { Ok(mean_out.f_sub(i.target)?.f_square()?.f_mean_dim([1i64, 2, 3].as_slice(), false, mean_out.kind())?) };
    let t_count = i.num_train_timesteps as f64;
    Ok(match (loss, vlb) {
        (Loss::Simple, _) | (_, None) => mse()?,
        (Loss::Hybrid, Some(vlb)) => {
            let vb = vlb.terms(&mean_out.f_detach()?, var_out, i.x0, i.xt, i.t)?;
            mse()?.f_add(&vb.f_mul_scalar(LAMBDA * t_count)?)?
        }
        (Loss::Vlb, Some(vlb)) => vlb.terms(mean_out, var_out, i.x0, i.xt, i.t)?.f_mul_scalar(t_count)?,
    })
}

/// What a step trains: the network, its parameters and their EMA, the optimizer.
pub(super) struct Trainee<'m> {
    pub(super) model: &'m UNet2DModel,
    pub(super) params: BTreeMap<String, Tensor>,
    pub(super) ema: BTreeMap<String, Tensor>,
    pub(super) opt: AdamW,
    pub(super) device: Device,
}

impl Trainee<'_> {
    /// Trains on `batch` as step `step` + 1; returns (loss, learning rate, each image's loss
    /// before its importance weight). A non-finite loss is returned before any update, for
    /// the caller to stop on. `vlb` holds the bound's constants for --loss hybrid or vlb.
    ///
    /// The objective per image is [`objective`]'s.
    pub(super) fn step(
        &mut self,
        batch: &Batch,
        step: u64,
        schedule: &Schedule,
        prediction: PredictionType,
        options: &TrainOptions,
        vlb: Option<&VlbConstants>,
    ) -> Result<(f64, f64, Vec<f64>)> {
        let config = &self.model.config;
        let b = batch.t.len() as i64;
        let [c, h, w] = batch.item.map(|d| d as i64);
        let xt = schedule.add_noise(&batch.x0, &batch.noise, &batch.t)?;
        let target = schedule.training_target(prediction, &batch.x0, &batch.noise, &batch.t)?;

        tch::manual_seed((options.seed.wrapping_mul(1_000_003).wrapping_add(step)) as i64);
        let device = self.device;
        let xt = TchTensor(Tensor::f_from_slice(&xt)?.f_reshape([b, c, h, w])?.f_to_device(device)?);
        let tt = TchTensor(Tensor::f_from_slice(&batch.t)?.f_to_device(device)?);
        let target = Tensor::f_from_slice(&target)?.f_reshape([b, c, h, w])?.f_to_device(device)?;
        let labels = match config.num_class_embeds {
            Some(_) => Some(TchTensor(Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?)),
            None => None,
        };
        let mut backend = TchBackend::from_tensors(self.params.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect(), device);
        backend.train = true;
        let out = self.model.forward(&mut backend, &xt, &tt, labels.as_ref())?;
        // A learned variance is the second C channels of the output.
        let (mean_out, var_out) = if config.out_channels == 2 * config.in_channels {
            (out.f_narrow(1, 0, c)?, Some(out.f_narrow(1, c, c)?))
        } else {
            (out.shallow_clone(), None)
        };
        let x0 = Tensor::f_from_slice(&batch.x0)?.f_reshape([b, c, h, w])?.f_to_device(device)?;
        let inputs = ObjectiveInputs { target: &target, x0: &x0, xt: &xt.0, t: &tt.0, num_train_timesteps: schedule.num_train_timesteps() };
        let per_image = objective(options.loss, &mean_out, var_out.as_ref(), &inputs, vlb)?;
        let weights = Tensor::f_from_slice(&batch.weights.iter().map(|&x| x as f32).collect::<Vec<_>>())?.f_to_device(device)?;
        let loss = per_image.f_mul(&weights)?.f_mean(Kind::Float)?;
        let loss_value = loss.double_value(&[]);
        let per_image: Vec<f64> =
            Vec::<f32>::try_from(&per_image.f_detach()?.f_to_device(Device::Cpu)?)?.into_iter().map(f64::from).collect();
        let lr = options.lr * ((step + 1) as f64 / options.warmup.max(1) as f64).min(1.0);
        if !loss_value.is_finite() {
            return Ok((loss_value, lr, per_image));
        }
        for p in self.params.values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        loss.f_backward()?;
        clip_grad_norm(&self.params, options.grad_clip)?;
        self.opt.step(&self.params, lr, step + 1)?;
        ema_update(&self.ema, &self.params, ema_decay(step + 1, options.ema_decay))?;
        Ok((loss_value, lr, per_image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_runtime::{SchedulerConfig, VarianceType};
    use serde_json::Value;

    /// L_hybrid and its gradient with respect to the model's output (noise prediction and
    /// learned_range v) against improved-diffusion's, by torch autograd in float64 on fixed
    /// inputs (python/make_vlb_fixtures.py): the gradient of the mean comes from L_simple
    /// alone, the variance's from L_vlb alone.
    #[test]
    fn hybrid_loss_and_gradient_match_the_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/vlb/terms.json");
        let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let floats = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
        let betas = floats(&f["betas"]);
        let schedule = Schedule::from_config(&SchedulerConfig { trained_betas: Some(betas), ..Default::default() }).unwrap();
        let shape: Vec<i64> = f["shape"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let tensor = |v: &Value| Tensor::from_slice(&floats(v)).reshape(&shape);
        let h = &f["hybrid_learned_range_epsilon"];
        let t: Vec<i64> = f["t"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let (x0, xt, tt, target) = (tensor(&f["x0"]), tensor(&f["xt"]), Tensor::from_slice(&t), tensor(&h["noise"]));
        let eps = tensor(&h["eps_out"]).set_requires_grad(true);
        let v = tensor(&h["v_out"]).set_requires_grad(true);
        let vlb = VlbConstants::new(&schedule, VarianceType::LearnedRange, PredictionType::Epsilon, Device::Cpu).unwrap();
        let inputs = ObjectiveInputs { target: &target, x0: &x0, xt: &xt, t: &tt, num_train_timesteps: schedule.num_train_timesteps() };
        let per_image = objective(Loss::Hybrid, &eps, Some(&v), &inputs, Some(&vlb)).unwrap();
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-6 * scale + 1e-12, "{what}: {x} vs the reference's {y}");
            }
        };
        close(&Vec::<f64>::try_from(&per_image).unwrap(), &floats(&h["per_image_loss"]), "per-image loss");
        per_image.mean(tch::Kind::Double).backward();
        close(&Vec::<f64>::try_from(&eps.grad().flatten(0, -1)).unwrap(), &floats(&h["grad_eps"]), "gradient of the noise prediction");
        close(&Vec::<f64>::try_from(&v.grad().flatten(0, -1)).unwrap(), &floats(&h["grad_v"]), "gradient of v");
    }
}
