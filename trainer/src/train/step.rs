//! The optimisation step of Algorithm 1: forward, L_simple = || target - model(x_t, t) ||^2,
//! backward, gradient clipping, AdamW with linear warm-up, EMA.

use std::collections::BTreeMap;

use ddpm_models::tch_backend::{TchBackend, TchTensor};
use ddpm_models::UNet2DModel;
use ddpm_runtime::{PredictionType, Schedule};
use tch::{Device, Kind, Tensor};

use super::batch::Batch;
use crate::error::Result;
use crate::optim::{clip_grad_norm, ema_decay, ema_update, AdamW};
use crate::options::TrainOptions;

/// What a step trains: the network, its parameters and their EMA, the optimizer.
pub(super) struct Trainee<'m> {
    pub(super) model: &'m UNet2DModel,
    pub(super) params: BTreeMap<String, Tensor>,
    pub(super) ema: BTreeMap<String, Tensor>,
    pub(super) opt: AdamW,
    pub(super) device: Device,
}

impl Trainee<'_> {
    /// Trains on `batch` as step `step` + 1; returns (loss, learning rate). A non-finite
    /// loss is returned before any update, for the caller to stop on.
    pub(super) fn step(
        &mut self,
        batch: &Batch,
        step: u64,
        schedule: &Schedule,
        prediction: PredictionType,
        options: &TrainOptions,
    ) -> Result<(f64, f64)> {
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
        let loss = out.f_sub(&target)?.f_square()?.f_mean(Kind::Float)?;
        let loss_value = loss.double_value(&[]);
        let lr = options.lr * ((step + 1) as f64 / options.warmup.max(1) as f64).min(1.0);
        if !loss_value.is_finite() {
            return Ok((loss_value, lr));
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
        Ok((loss_value, lr))
    }
}
