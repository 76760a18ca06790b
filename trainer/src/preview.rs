//! Preview grids during training: the runtime's DDIM sampler driving the EMA weights
//! through a libtorch [`Denoiser`].

use std::collections::BTreeMap;
use std::path::Path;

use ddpm_models::tch_backend::{TchBackend, TchTensor};
use ddpm_models::UNet2DModel;
use ddpm_runtime::{ClassLabels, Denoiser, ModelShape, Pipeline, SamplerKind, SchedulerConfig};
use tch::{Device, Tensor};

/// A U-Net on libtorch as a runtime `Denoiser` (no gradients, dropout off).
pub struct TchDenoiser<'a> {
    pub model: &'a UNet2DModel,
    pub backend: TchBackend,
}

impl<'a> TchDenoiser<'a> {
    pub fn new(model: &'a UNet2DModel, params: &BTreeMap<String, Tensor>, device: Device) -> Self {
        let map = params.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        Self { model, backend: TchBackend::from_tensors(map, device) }
    }
}

impl Denoiser for TchDenoiser<'_> {
    fn shape(&self) -> ModelShape {
        let c = &self.model.config;
        let (h, w) = c.sample_size.unwrap_or((0, 0));
        ModelShape { channels: c.in_channels, height: h, width: w, out_channels: c.out_channels, num_classes: c.num_class_embeds }
    }

    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> ddpm_runtime::Result<Vec<f32>> {
        let mut run = || -> ddpm_models::Result<Vec<f32>> {
            let _guard = tch::no_grad_guard();
            let s = self.shape();
            let dev = self.backend.device;
            let x = TchTensor(
                Tensor::f_from_slice(sample)?
                    .f_reshape([batch as i64, s.channels as i64, s.height as i64, s.width as i64])?
                    .f_to_device(dev)?,
            );
            let tt = TchTensor(Tensor::f_from_slice(&vec![t; batch])?.f_to_device(dev)?);
            let labels = match class_labels {
                Some(l) => Some(TchTensor(Tensor::f_from_slice(l)?.f_to_device(dev)?)),
                None => None,
            };
            self.backend.train = false;
            let out = self.model.forward(&mut self.backend, &x, &tt, labels.as_ref())?;
            Ok(Vec::<f32>::try_from(&out.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?)
        };
        run().map_err(|e| ddpm_runtime::Error::Denoiser(e.to_string()))
    }
}

/// Draws a grid of samples (DDIM, fixed seed 0, so grids are comparable across steps; for
/// class-conditional models, one column per class).
pub fn write_preview(
    path: &Path,
    model: &UNet2DModel,
    ema: &BTreeMap<String, Tensor>,
    schedule: &SchedulerConfig,
    device: Device,
    steps: usize,
) -> crate::error::Result<()> {
    let mut denoiser = TchDenoiser::new(model, ema, device);
    let (n, labels) = match model.config.num_class_embeds {
        Some(k) => {
            let per = k.min(10);
            let n = per * 2;
            (n, ClassLabels::PerSample((0..n).map(|i| (i % per) as i64).collect()))
        }
        None => (16, ClassLabels::Uniform),
    };
    let samples = Pipeline::new(&mut denoiser, schedule.clone())
        .sampler(SamplerKind::Ddim)
        .steps(steps)
        .n(n)
        .batch_size(n)
        .seed(0)
        .class_labels(labels)
        .run()?;
    let data: Vec<f32> = samples.data.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    ddpm_io::png::write_png_grid(path, &data, samples.shape)?;
    Ok(())
}
