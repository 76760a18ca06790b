//! The reverse chain end to end: N samples in batches of B, seeded noise, class labels,
//! any sampler, any [`Denoiser`].

use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::{SchedulerConfig, TimestepSpacing};
use crate::denoiser::{Denoiser, FusedInput};
use crate::error::{Error, Result};
use crate::noise::{fill_normal, label_rng, sample_rng};
use crate::sampler::{self, Layout, SamplerKind, SamplerOptions};

/// Class labels for a class-conditional model.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    /// Uniform over the model's classes, drawn from the seed (the default).
    Uniform,
    /// The same label for every sample.
    Fixed(i64),
    /// One label per sample.
    PerSample(Vec<i64>),
}

/// Progress of a run, given to the progress callback after every model evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub evaluations_done: usize,
    pub evaluations_total: usize,
}

/// The samples of a run.
#[derive(Debug, Clone)]
pub struct Samples {
    /// [N, C, H, W] flattened, as the scheduler left them.
    pub data: Vec<f32>,
    pub shape: [usize; 4],
    /// The class label of each sample (class-conditional models).
    pub labels: Option<Vec<i64>>,
    /// The predicted x_0 after each recorded step: (step index, [N, C, H, W]).
    pub trajectory: Vec<(usize, Vec<f32>)>,
    /// Model evaluations (batches x steps) and the time spent inside the denoiser.
    pub evaluations: usize,
    /// How many of them also applied the sampler's update inside the model (a fused-step
    /// graph, see [`Pipeline::fused_step`]).
    pub fused_evaluations: usize,
    pub model_time: Duration,
    pub total_time: Duration,
}

/// Classifier-free guidance of one batch: `out2` holds the conditional outputs of `b`
/// items, then their unconditional ones; `out` receives u + s (c - u) on the first `mean`
/// values of each item (the prediction) and the conditional values after them (a learned
/// variance).
fn guide(out2: &[f32], out: &mut [f32], b: usize, mean: usize, scale: f64) {
    let item = out.len() / b.max(1);
    let (cond, uncond) = out2.split_at(b * item);
    for i in 0..b {
        let (c, u, o) = (&cond[i * item..(i + 1) * item], &uncond[i * item..(i + 1) * item], &mut out[i * item..(i + 1) * item]);
        for j in 0..item {
            o[j] = if j < mean { (u[j] as f64 + scale * (c[j] as f64 - u[j] as f64)) as f32 } else { c[j] };
        }
    }
}

/// How a guided step gets its conditional and unconditional predictions.
///
/// `Stacked` (the default) makes one model call on a batch of 2B (the conditional items,
/// then the same items with the null label); `Separate` makes two calls of B. Measured side
/// by side on the digits model (BENCHMARKS.md, `cargo bench -p ddpm-benches --bench
/// guidance`), the stacked call was the faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuidanceBatching {
    #[default]
    Stacked,
    Separate,
}

/// What a run will do (see [`Pipeline::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The timesteps of the chain, in order.
    pub timesteps: Vec<i64>,
    /// Model evaluations: batches x steps.
    pub evaluations: usize,
}

/// Builder for a sampling run.
///
/// ```no_run
/// use ddpm_runtime::{OnnxDenoiser, SamplerKind};
/// # fn main() -> ddpm_runtime::Result<()> {
/// let mut model = OnnxDenoiser::builder().from_file("model.onnx")?;
/// // The model's own scheduler config (the .onnx metadata) drives the chain.
/// let samples = model.pipeline().sampler(SamplerKind::Ddim).steps(50).n(16).seed(42).run()?;
/// assert_eq!(samples.shape[0], 16);
/// # Ok(()) }
/// ```
///
/// Any [`Denoiser`] runs with a config of its own:
///
/// ```
/// use ddpm_runtime::{GaussianDenoiser, ModelShape, Pipeline, SamplerKind, Schedule, SchedulerConfig};
/// let config = SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() };
/// let shape = ModelShape { channels: 1, height: 8, width: 8, out_channels: 1, num_classes: None };
/// let model = GaussianDenoiser { mean: 0.5, std: 0.1, schedule: Schedule::from_config(&config)?, shape };
/// let samples = Pipeline::new(model, config).sampler(SamplerKind::DpmSolverPP).steps(20).n(4).seed(1).run()?;
/// let mean = samples.data.iter().sum::<f32>() / samples.data.len() as f32;
/// assert!((mean - 0.5).abs() < 0.05, "{mean}");
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub struct Pipeline<'p, D: Denoiser> {
    denoiser: D,
    config: SchedulerConfig,
    options: SamplerOptions,
    n: usize,
    batch_size: usize,
    seed: u64,
    first_index: u64,
    labels: ClassLabels,
    noise: Option<Vec<f32>>,
    trajectory_every: Option<usize>,
    fused: bool,
    /// Classifier-free guidance: the scale and the model's null label.
    guidance_scale: f64,
    null_label: Option<i64>,
    guidance_batching: GuidanceBatching,
    progress: Option<Box<dyn FnMut(Progress) + 'p>>,
}

impl<'p, D: Denoiser> Pipeline<'p, D> {
    /// A run of one sample with DDIM (50 steps) and seed 0.
    pub fn new(denoiser: D, config: SchedulerConfig) -> Self {
        Self {
            denoiser,
            config,
            options: SamplerOptions::default(),
            n: 1,
            batch_size: 16,
            seed: 0,
            first_index: 0,
            labels: ClassLabels::Uniform,
            noise: None,
            trajectory_every: None,
            fused: true,
            guidance_scale: 1.0,
            null_label: None,
            guidance_batching: GuidanceBatching::default(),
            progress: None,
        }
    }
    pub fn sampler(mut self, kind: SamplerKind) -> Self {
        self.options.kind = kind;
        self
    }
    /// Number of inference steps (default: the sampler's, see [`SamplerKind::default_steps`]).
    pub fn steps(mut self, steps: usize) -> Self {
        self.options.steps = Some(steps);
        self
    }
    pub fn eta(mut self, eta: f64) -> Self {
        self.options.eta = eta;
        self
    }
    pub fn timestep_spacing(mut self, spacing: TimestepSpacing) -> Self {
        self.options.timestep_spacing = Some(spacing);
        self
    }
    pub fn options(mut self, options: SamplerOptions) -> Self {
        self.options = options;
        self
    }
    /// Number of samples.
    pub fn n(mut self, n: usize) -> Self {
        self.n = n;
        self
    }
    /// Samples per model evaluation (does not change the output bytes).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Draw samples `first .. first + n` of the seed's per-sample streams (noise and uniform
    /// labels) instead of `0 .. n`: shards of one sample set, drawn apart (on several
    /// machines, or as concurrent batches), that together hold the bytes of one run.
    ///
    /// ```
    /// use ddpm_runtime::{GaussianDenoiser, ModelShape, Pipeline, SamplerKind, Schedule, SchedulerConfig};
    /// let config = SchedulerConfig::paper();
    /// let shape = ModelShape { channels: 1, height: 4, width: 4, out_channels: 1, num_classes: None };
    /// let model = || GaussianDenoiser { mean: 0.2, std: 0.3, schedule: Schedule::from_config(&config).unwrap(), shape };
    /// let run = |first, n| Pipeline::new(model(), config.clone()).sampler(SamplerKind::Ddpm).steps(10).seed(7).first_index(first).n(n).run().unwrap().data;
    /// let mut shards = run(0, 3);
    /// shards.extend(run(3, 2));
    /// assert_eq!(shards, run(0, 5));
    /// ```
    pub fn first_index(mut self, first: u64) -> Self {
        self.first_index = first;
        self
    }
    pub fn class_labels(mut self, labels: ClassLabels) -> Self {
        self.labels = labels;
        self
    }
    /// Start from this x_T ([N, C, H, W] flattened) instead of noise drawn from the seed;
    /// N is taken from its length.
    pub fn initial_noise(mut self, noise: Vec<f32>) -> Self {
        self.noise = Some(noise);
        self
    }
    /// Record the predicted x_0 every `every` steps (and at the last step).
    pub fn record_trajectory(mut self, every: usize) -> Self {
        self.trajectory_every = Some(every.max(1));
        self
    }
    /// With a denoiser that can apply the sampler's update itself (a graph exported with
    /// `--fused-step`), let it do so for the steps that have that form (DDIM, DDPM without a
    /// learned variance or thresholding): on, by default. The update then runs in float32
    /// inside the model instead of float64 in the sampler.
    pub fn fused_step(mut self, on: bool) -> Self {
        self.fused = on;
        self
    }
    /// Classifier-free guidance (Ho & Salimans 2021) with diffusers' convention: the model
    /// output is u + s (c - u), c conditioned on the sample's label and u on the model's
    /// null label ([`Pipeline::null_class_label`]); s = 1 (the default) is plain
    /// conditional sampling, bit for bit. A learned variance (a 2C-channel output) keeps
    /// the conditional prediction's variance channels. Both predictions come from one
    /// model call on a stacked batch of 2B by default ([`Pipeline::guidance_batching`]);
    /// the fused step is not used for guided steps
    /// (its graph sees one prediction), so the update runs in Rust.
    ///
    /// ```
    /// use ddpm_runtime::{ClassLabels, GaussianDenoiser, ModelShape, Pipeline, SamplerKind, Schedule, SchedulerConfig};
    /// let config = SchedulerConfig::paper();
    /// let shape = ModelShape { channels: 1, height: 2, width: 2, out_channels: 1, num_classes: Some(3) };
    /// let model = GaussianDenoiser { mean: 0.0, std: 0.5, schedule: Schedule::from_config(&config)?, shape };
    /// // Label 2 is the null label: only 0 and 1 are drawn.
    /// let s = Pipeline::new(model, config).sampler(SamplerKind::Ddim).steps(5).n(8).null_class_label(2).guidance_scale(3.0).run()?;
    /// assert!(s.labels.unwrap().iter().all(|&l| l < 2));
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn guidance_scale(mut self, scale: f64) -> Self {
        self.guidance_scale = scale;
        self
    }
    /// How a guided step gets its two predictions (see [`GuidanceBatching`]); the same
    /// values either way, up to the float32 rounding of the model at another batch size.
    pub fn guidance_batching(mut self, batching: GuidanceBatching) -> Self {
        self.guidance_batching = batching;
        self
    }
    /// The model's null label: the class index that means "no label" (a model trained
    /// with label dropout). Never drawn by uniform labels; refused as a requested label.
    pub fn null_class_label(mut self, label: i64) -> Self {
        self.null_label = Some(label);
        self
    }
    pub fn on_progress(mut self, f: impl FnMut(Progress) + 'p) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// What this run will do: its timesteps and model evaluations (checks the scheduler
    /// config and options as [`Pipeline::run`] does).
    ///
    /// ```
    /// use ddpm_runtime::{GaussianDenoiser, ModelShape, Pipeline, SamplerKind, Schedule, SchedulerConfig};
    /// let config = SchedulerConfig::paper();
    /// let shape = ModelShape { channels: 1, height: 4, width: 4, out_channels: 1, num_classes: None };
    /// let model = GaussianDenoiser { mean: 0.0, std: 0.5, schedule: Schedule::from_config(&config)?, shape };
    /// let plan = Pipeline::new(model, config).sampler(SamplerKind::Ddim).steps(10).n(20).batch_size(8).plan()?;
    /// assert_eq!((plan.timesteps.len(), plan.evaluations), (10, 30));
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn plan(&self) -> Result<Plan> {
        let timesteps = sampler::build(&self.config, &self.options)?.timesteps().to_vec();
        let evaluations = self.sample_count()?.div_ceil(self.batch_size.max(1)) * timesteps.len();
        Ok(Plan { timesteps, evaluations })
    }

    fn sample_count(&self) -> Result<usize> {
        let shape = self.denoiser.shape();
        match &self.noise {
            Some(noise) => {
                if noise.is_empty() || noise.len() % shape.sample_len() != 0 {
                    return Err(Error::Shape {
                        name: "initial noise".into(),
                        found: format!("{} values", noise.len()),
                        expected: format!("a multiple of C*H*W = {}*{}*{}", shape.channels, shape.height, shape.width),
                    });
                }
                Ok(noise.len() / shape.sample_len())
            }
            None => Ok(self.n),
        }
    }

    fn resolve_labels(&self, n: usize) -> Result<Option<Vec<i64>>> {
        let Some(classes) = self.denoiser.shape().num_classes else {
            return match &self.labels {
                ClassLabels::Uniform => Ok(None),
                _ => Err(Error::InvalidArgument("class labels given, but the model is not class-conditional".into())),
            };
        };
        let null = self.null_label;
        let check = |l: i64| {
            if l < 0 || l as usize >= classes {
                Err(Error::InvalidArgument(format!("class label {l} is outside 0..{classes} of this model")))
            } else if Some(l) == null {
                Err(Error::InvalidArgument(format!("class label {l} is the model's null label (\"no label\"); expected a class")))
            } else {
                Ok(l)
            }
        };
        let labels = match &self.labels {
            // Uniform over the classes; a null label is skipped (k >= null maps to k + 1).
            ClassLabels::Uniform => (0..n)
                .map(|i| {
                    let real = classes as i64 - i64::from(null.is_some());
                    let k = label_rng(self.seed, self.first_index + i as u64).random_range(0..real.max(1));
                    match null {
                        Some(z) if k >= z => k + 1,
                        _ => k,
                    }
                })
                .collect(),
            ClassLabels::Fixed(l) => vec![check(*l)?; n],
            ClassLabels::PerSample(v) => {
                if v.len() != n {
                    return Err(Error::Shape {
                        name: "class labels".into(),
                        found: format!("{} labels", v.len()),
                        expected: format!("{n} (one per sample)"),
                    });
                }
                v.iter().map(|&l| check(l)).collect::<Result<_>>()?
            }
        };
        Ok(Some(labels))
    }

    /// Runs the chain.
    pub fn run(mut self) -> Result<Samples> {
        let started = Instant::now();
        let shape = self.denoiser.shape();
        let n = self.sample_count()?;
        if n == 0 {
            return Err(Error::InvalidArgument("n: found 0, expected at least 1 sample".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::InvalidArgument("batch size: found 0, expected at least 1".into()));
        }
        if let Some(noise) = &self.noise {
            if noise.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite("initial noise".into()));
            }
        }
        let per = shape.sample_len();
        // One sampler for the run, reset between batches.
        let mut sampler = sampler::build(&self.config, &self.options)?;
        let timesteps = sampler.timesteps().to_vec();
        let steps = timesteps.len();
        // Everything the run holds, checked before anything is allocated: the samples, the
        // recorded trajectory, a batch's buffers and the labels.
        let frames = self.trajectory_every.map_or(0, |e| steps.div_ceil(e.max(1)) + 1);
        let b = self.batch_size.min(n);
        let needed = crate::limits::bytes_of(&[n, per], 4 * (1 + frames))
            + crate::limits::bytes_of(
                &[b, per.max(shape.out_channels * shape.pixels())],
                4 * if self.guidance_scale != 1.0 { 10 } else { 6 },
            )
            + crate::limits::bytes_of(&[n], 8);
        crate::limits::check_memory(
            &format!(
                "{n} samples of {}x{}x{} float32 in batches of {b}{}",
                shape.channels,
                shape.height,
                shape.width,
                if frames > 0 { format!(" with {frames} trajectory frames") } else { String::new() }
            ),
            needed,
        )?;
        let guided = self.guidance_scale != 1.0;
        if !(self.guidance_scale.is_finite() && self.guidance_scale >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "guidance scale: found {}, expected a finite number >= 0 (1: no guidance)",
                self.guidance_scale
            )));
        }
        let null = match (guided, self.null_label, shape.num_classes) {
            (false, _, _) => None,
            (true, Some(z), Some(k)) if z >= 0 && (z as usize) < k => Some(z),
            (true, Some(z), _) => return Err(Error::InvalidArgument(format!("null class label {z} is not a class of this model"))),
            (true, None, _) => {
                return Err(Error::InvalidArgument(format!(
                    "guidance scale {}: the model has no null label (it was not trained with label dropout); use a guidance scale of 1",
                    self.guidance_scale
                )))
            }
        };
        if self.first_index.checked_add(n as u64).is_none() {
            return Err(Error::InvalidArgument(format!(
                "first sample index {} with {n} samples: expected the last index to be at most {}",
                self.first_index,
                u64::MAX
            )));
        }
        let labels = self.resolve_labels(n)?;
        let total_evals = n.div_ceil(self.batch_size) * steps;
        let mut data = vec![0.0f32; n * per];
        let mut trajectory: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut evals = 0;
        let mut fused_evals = 0;
        let mut model_time = Duration::ZERO;
        // The fused graph sees one prediction: guided steps run the update in Rust.
        let fused = self.fused && !guided && self.denoiser.as_fused().is_some();

        for start in (0..n).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(n);
            let b = end - start;
            let mut rngs: Vec<_> = (start..end).map(|i| sample_rng(self.seed, self.first_index + i as u64)).collect();
            // 1. x_T
            let x = &mut data[start * per..end * per];
            match &self.noise {
                Some(noise) => x.copy_from_slice(&noise[start * per..end * per]),
                None => {
                    for (rng, item) in rngs.iter_mut().zip(x.chunks_mut(per)) {
                        fill_normal(rng, item);
                    }
                }
            }
            let batch_labels = labels.as_ref().map(|l| &l[start..end]);
            // 2. the reverse chain
            sampler.reset();
            // Buffers of the chain, allocated once per batch: nothing is allocated per step.
            let mut step_noise = vec![0.0f32; b * per];
            let mut x0 = vec![0.0f32; b * per];
            let mut out = vec![0.0f32; b * shape.out_channels * shape.pixels()];
            let mut prev = if fused { vec![0.0f32; b * per] } else { Vec::new() };
            // Guidance: the batch twice (conditional, then null labels) and both outputs.
            let (mut x2, mut out2, labels2) = match (null, batch_labels) {
                (Some(z), Some(l)) => {
                    let mut l2 = l.to_vec();
                    l2.extend(std::iter::repeat_n(z, b));
                    let x2 = if self.guidance_batching == GuidanceBatching::Stacked { vec![0.0f32; 2 * b * per] } else { Vec::new() };
                    (x2, vec![0.0f32; 2 * out.len()], l2)
                }
                _ => (Vec::new(), Vec::new(), Vec::new()),
            };
            let layout = Layout { batch: b, channels: shape.channels, out_channels: shape.out_channels, pixels: shape.pixels() };
            for (i, &t) in timesteps.iter().enumerate() {
                let record = self.trajectory_every.is_some_and(|e| i % e == 0 || i + 1 == timesteps.len());
                let noise = if sampler.needs_noise(i) {
                    for (rng, item) in rngs.iter_mut().zip(step_noise.chunks_mut(per)) {
                        fill_normal(rng, item);
                    }
                    Some(&step_noise[..])
                } else {
                    None
                };
                let fused_model = if fused { sampler.affine_step(i).zip(self.denoiser.as_fused()) } else { None };
                if let Some((step, model)) = fused_model {
                    let t0 = Instant::now();
                    let input = FusedInput { sample: x, batch: b, t, class_labels: batch_labels, step: &step, noise };
                    model.fused_step(input, &mut prev, &mut x0)?;
                    model_time += t0.elapsed();
                    if !prev.iter().all(|v| v.is_finite()) {
                        return Err(Error::NonFinite(format!("fused step output at t = {t}")));
                    }
                    x.copy_from_slice(&prev);
                    fused_evals += 1;
                } else {
                    let t0 = Instant::now();
                    if out2.is_empty() {
                        self.denoiser.predict_into(x, b, t, batch_labels, &mut out)?;
                    } else {
                        if x2.is_empty() {
                            let (cond, uncond) = out2.split_at_mut(out.len());
                            self.denoiser.predict_into(x, b, t, Some(&labels2[..b]), cond)?;
                            self.denoiser.predict_into(x, b, t, Some(&labels2[b..]), uncond)?;
                        } else {
                            x2[..b * per].copy_from_slice(x);
                            x2[b * per..].copy_from_slice(x);
                            self.denoiser.predict_into(&x2, 2 * b, t, Some(&labels2), &mut out2)?;
                        }
                        guide(&out2, &mut out, b, shape.channels * shape.pixels(), self.guidance_scale);
                    }
                    model_time += t0.elapsed();
                    if !out.iter().all(|v| v.is_finite()) {
                        return Err(Error::NonFinite(format!("model output at t = {t}")));
                    }
                    sampler.step(i, &out, x, layout, noise, record.then_some(&mut x0[..]))?;
                }
                if record {
                    let pos = trajectory.iter().position(|(s, _)| *s == i).unwrap_or_else(|| {
                        trajectory.push((i, vec![0.0; n * per]));
                        trajectory.len() - 1
                    });
                    trajectory[pos].1[start * per..end * per].copy_from_slice(&x0);
                }
                evals += 1;
                if let Some(p) = self.progress.as_mut() {
                    p(Progress { evaluations_done: evals, evaluations_total: total_evals });
                }
            }
        }
        Ok(Samples {
            data,
            shape: [n, shape.channels, shape.height, shape.width],
            labels,
            trajectory,
            evaluations: evals,
            fused_evaluations: fused_evals,
            model_time,
            total_time: started.elapsed(),
        })
    }
}
