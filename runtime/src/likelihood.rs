//! The variational bound of Ho et al. 2020 (eq. 5) on the negative log-likelihood, in bits
//! per dimension, term by term:
//!
//! - L_T = KL(q(x_T | x_0) || N(0, I)), the prior;
//! - L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t = 2..T, x_t drawn from
//!   q(x_t | x_0);
//! - L_0 = -log p(x_0 | x_1) under the discretized Gaussian decoder: 256 bins of data scaled
//!   to [-1, 1], the outer bins open to +-inf.
//!
//! Indexed by the model's 0-based timesteps, the KL term at t >= 1 is the paper's L_t and
//! the decoder sits at t = 0. Conventions the paper leaves open follow improved-diffusion's
//! `gaussian_diffusion.py` (Nichol & Dhariwal 2021), the one implementation of this bound in
//! the lineage: the posterior log-variance at t = 0 is clipped (its first entry replaced by
//! the second), fixed_large uses beta~_1 at t = 0 and beta_t after, learned_range
//! interpolates between the clipped posterior log-variance and log beta_t; `learned` reads
//! the variance itself, as diffusers' DDPMScheduler does. The model's mean is the one its
//! sampler uses: the predicted x_0 is clipped when the scheduler config says `clip_sample`
//! (or thresholded, with `thresholding`).
//!
//! The same bound, read from the prior down, is a progressive lossy code (section 4.3): the
//! rate spent to hold x_t (the prior and the KL terms above t) against the distortion of the
//! x_0 predicted from x_t ([`Bound::rate_distortion`]).

use rand_distr::Distribution;

use crate::config::{PredictionType, SchedulerConfig, VarianceType};
use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::prediction::{to_x0_eps, X0Clamp};
use crate::schedule::Schedule;

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) in nats.
///
/// ```
/// use ddpm_runtime::likelihood::normal_kl;
/// assert_eq!(normal_kl(0.0, 0.0, 0.0, 0.0), 0.0);
/// assert!((normal_kl(1.0, 0.0, 0.0, 0.0) - 0.5).abs() < 1e-12);
/// ```
pub fn normal_kl(m1: f64, lv1: f64, m2: f64, lv2: f64) -> f64 {
    0.5 * (-1.0 + lv2 - lv1 + (lv1 - lv2).exp() + (m1 - m2) * (m1 - m2) * (-lv2).exp())
}

/// improved-diffusion's approximation of the standard normal CDF (GPT-2's GELU):
/// 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
pub fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// log p(x) of a value x in [-1, 1] on the 256-level grid under N(mean, e^(2 log_scale))
/// discretized to bins of width 2/255, the outer bins open to +-inf (floored at log 1e-12).
///
/// ```
/// use ddpm_runtime::likelihood::discretized_gaussian_log_likelihood;
/// // A sharp Gaussian on the value puts nearly all its mass in the value's bin.
/// assert!(discretized_gaussian_log_likelihood(0.2, 0.2, -8.0) > -1e-3);
/// ```
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let centered = x - mean;
    let inv_stdv = (-log_scale).exp();
    let cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0));
    if x < -0.999 {
        cdf_plus.max(1e-12).ln()
    } else if x > 0.999 {
        (1.0 - cdf_min).max(1e-12).ln()
    } else {
        (cdf_plus - cdf_min).max(1e-12).ln()
    }
}

/// How the bound reads a model: its schedule, prediction, variance and clamp.
#[derive(Debug, Clone)]
pub struct BoundModel {
    pub schedule: Schedule,
    pub prediction: PredictionType,
    pub variance_type: VarianceType,
    pub clamp: X0Clamp,
}

impl BoundModel {
    /// From a scheduler config: its schedule and prediction type, its variance type
    /// (fixed_small when absent), and the clamp of the DDPM sampler (clip_sample true when
    /// absent, as in DDPMScheduler).
    pub fn from_config(config: &SchedulerConfig) -> Result<Self> {
        let p = crate::params::DdpmParams::from_config(config)?;
        Ok(Self { schedule: p.chain.schedule, prediction: p.chain.prediction_type, variance_type: p.variance_type, clamp: p.chain.clamp })
    }

    /// The log-variance of p(x_{t-1} | x_t) for one value (`v`: the model's variance
    /// channel, for a learned variance).
    fn model_log_variance(&self, t: i64, v: Option<f64>) -> f64 {
        match (self.schedule.fixed_log_variance(t, self.variance_type), v) {
            (Some(lv), _) => lv,
            (None, Some(v)) => self.schedule.learned_log_variance(t, self.variance_type, v),
            (None, None) => self.schedule.posterior_log_variance_clipped(t),
        }
    }

    /// The predicted x_0 of one image (clamped as the sampler clamps it).
    pub fn predicted_x0(&self, t: i64, xt: &[f32], out: &[f32]) -> Vec<f64> {
        let ab = self.schedule.alpha_bar(t);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let mut x0: Vec<f64> = xt.iter().zip(out).map(|(&x, &o)| to_x0_eps(self.prediction, a, s, x as f64, o as f64).0).collect();
        self.clamp.apply(&mut x0);
        x0
    }

    /// The bound's term at timestep `t` for one image, in bits per dimension: the decoder's
    /// -log p(x_0 | x_1) at t = 0, KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) after.
    /// `x0` and `xt` have the image's C*H*W values, `out` the model's output for it (C*H*W
    /// values, or 2*C*H*W with a learned variance: the second half).
    ///
    /// ```
    /// use ddpm_runtime::likelihood::BoundModel;
    /// use ddpm_runtime::SchedulerConfig;
    /// let m = BoundModel::from_config(&SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() })?;
    /// // A model that predicts the noise exactly matches the posterior: no KL.
    /// let (x0, eps) = ([0.5f32, -0.25], [0.3f32, -1.2]);
    /// let ab = m.schedule.alpha_bar(500);
    /// let xt: Vec<f32> = x0.iter().zip(&eps).map(|(x, e)| (ab.sqrt() * *x as f64 + (1.0 - ab).sqrt() * *e as f64) as f32).collect();
    /// assert!(m.term_bits_per_dim(500, &x0, &xt, &eps) < 1e-9);
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn term_bits_per_dim(&self, t: i64, x0: &[f32], xt: &[f32], out: &[f32]) -> f64 {
        let n = x0.len();
        let pred_x0 = self.predicted_x0(t, xt, &out[..n]);
        self.term_from_pred_x0(t, x0, xt, &pred_x0, out.get(n..2 * n))
    }

    fn term_from_pred_x0(&self, t: i64, x0: &[f32], xt: &[f32], pred_x0: &[f64], v: Option<&[f32]>) -> f64 {
        let (c0, ct) = self.schedule.posterior_mean_coefficients(t, t - 1);
        let post_lv = self.schedule.posterior_log_variance_clipped(t);
        let mut sum = 0.0;
        for j in 0..x0.len() {
            let (x, xt_j) = (x0[j] as f64, xt[j] as f64);
            let model_mean = c0 * pred_x0[j] + ct * xt_j;
            let lv = self.model_log_variance(t, v.map(|v| v[j] as f64));
            sum += if t == 0 {
                -discretized_gaussian_log_likelihood(x, model_mean, 0.5 * lv)
            } else {
                normal_kl(c0 * x + ct * xt_j, post_lv, model_mean, lv)
            };
        }
        sum / x0.len() as f64 / std::f64::consts::LN_2
    }

    /// L_T for one image in bits per dimension: KL(q(x_T | x_0) || N(0, I)).
    pub fn prior_bits_per_dim(&self, x0: &[f32]) -> f64 {
        let t = self.schedule.num_train_timesteps() as i64 - 1;
        let ab = self.schedule.alpha_bar(t);
        let sum: f64 = x0.iter().map(|&x| normal_kl(ab.sqrt() * x as f64, (1.0 - ab).ln(), 0.0, 0.0)).sum();
        sum / x0.len() as f64 / std::f64::consts::LN_2
    }
}

/// What a bound computation evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundOptions {
    /// Evaluate every `t_stride`-th KL term (t = 0 and T - 1 always) and scale each by the
    /// terms it stands for: 1 is the exact bound, larger a quicker estimate.
    pub t_stride: usize,
    /// Images per model evaluation.
    pub batch_size: usize,
    /// The noise of x_t ~ q(x_t | x_0), per image and timestep.
    pub seed: u64,
}

impl Default for BoundOptions {
    fn default() -> Self {
        Self { t_stride: 1, batch_size: 16, seed: 0 }
    }
}

/// Which term of the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    Prior,
    Kl,
    Decoder,
}

impl TermKind {
    /// `prior`, `kl` or `decoder` (the CSV's `term` column).
    pub fn name(self) -> &'static str {
        match self {
            TermKind::Prior => "prior",
            TermKind::Kl => "kl",
            TermKind::Decoder => "decoder",
        }
    }
}

/// One term averaged over the images, in bits per dimension (a KL term of a strided
/// estimate is scaled by the terms it stands for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    pub kind: TermKind,
    /// The model's timestep (T for the prior).
    pub t: i64,
    pub bits_per_dim: f64,
    /// RMSE of the x_0 predicted from x_t against x_0, on the [0, 255] scale (0 for the
    /// prior).
    pub distortion: f64,
}

/// A point of the rate-distortion curve: a receiver holding x_t (sent from x_T down, the
/// prior and the KL terms of the timesteps above t: `rate` bits/dim) predicts x_0 from it,
/// off by `distortion` (RMSE, [0, 255] scale). The last point, t = 0, is the paper's lossy
/// end (its CIFAR-10 model: 1.78 bits/dim, RMSE 0.95); L_0 then codes x_0 losslessly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    pub t: i64,
    pub rate: f64,
    pub distortion: f64,
}

/// The bound over a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Each image's bound, bits/dim.
    pub per_image: Vec<f64>,
    /// The terms in the order they were computed: the prior, then t = T-1 down to 0.
    pub terms: Vec<Term>,
    /// Whether only every `t_stride`-th term was evaluated.
    pub t_stride: usize,
}

impl Bound {
    /// The mean bound, bits/dim.
    pub fn mean(&self) -> f64 {
        self.per_image.iter().sum::<f64>() / self.per_image.len().max(1) as f64
    }
    /// The half-width of the 95% interval of the mean (1.96 standard errors over images).
    pub fn ci95(&self) -> f64 {
        let n = self.per_image.len();
        if n < 2 {
            return f64::NAN;
        }
        let m = self.mean();
        let var = self.per_image.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
        1.96 * (var / n as f64).sqrt()
    }
    /// The sum of the terms of one kind, bits/dim.
    pub fn total(&self, kind: TermKind) -> f64 {
        self.terms.iter().filter(|t| t.kind == kind).map(|t| t.bits_per_dim).sum()
    }
    /// The bound as saved progress (complete: continuing from it evaluates nothing).
    pub fn progress(&self) -> BoundProgress {
        BoundProgress { per_image: self.per_image.clone(), terms: self.terms.clone() }
    }
    /// Whether this is a strided estimate rather than the exact bound.
    pub fn is_estimate(&self) -> bool {
        self.t_stride > 1
    }
    /// The rate-distortion curve (Ho et al. section 4.3, Figure 5), one point per evaluated
    /// timestep from T - 1 down to 0: the distortion of the x_0 predicted from x_t against
    /// the rate of sending x_T ... x_t, i.e. of the terms before t's own (the prior, then
    /// the KL terms above t). The prior has no prediction of its own and no point.
    pub fn rate_distortion(&self) -> Vec<RatePoint> {
        let mut rate = 0.0;
        let mut points = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            if term.kind != TermKind::Prior {
                points.push(RatePoint { t: term.t, rate, distortion: term.distortion });
            }
            rate += term.bits_per_dim;
        }
        points
    }
}

/// The timesteps a bound evaluates, from T-1 down to 0, with the number of terms each
/// stands for.
fn evaluated_timesteps(t_count: usize, stride: usize) -> Vec<(i64, usize)> {
    let mut ts: Vec<i64> = (1..t_count as i64).rev().step_by(stride).collect();
    if ts.first() != Some(&(t_count as i64 - 1)) && t_count > 1 {
        ts.insert(0, t_count as i64 - 1);
    }
    // Each evaluated t >= 1 stands for the terms down to the next evaluated one.
    let mut out = Vec::with_capacity(ts.len() + 1);
    for (i, &t) in ts.iter().enumerate() {
        let next = ts.get(i + 1).copied().unwrap_or(0);
        out.push((t, (t - next) as usize));
    }
    out.push((0, 1));
    out
}

/// The variational bound of `model` on `n` images [N, C, H, W] in [-1, 1] (the data's
/// 256-level grid), with `labels` for a class-conditional model. `progress` is called after
/// each model evaluation with (done, total).
///
/// ```
/// use ddpm_runtime::likelihood::{variational_bound, BoundModel, BoundOptions};
/// use ddpm_runtime::{GaussianDenoiser, ModelShape, Schedule, SchedulerConfig};
/// let config = SchedulerConfig { num_train_timesteps: Some(50), clip_sample: Some(false), ..SchedulerConfig::paper() };
/// let bound = BoundModel::from_config(&config)?;
/// let shape = ModelShape { channels: 1, height: 2, width: 2, out_channels: 1, num_classes: None };
/// let mut model = GaussianDenoiser { mean: 0.0, std: 0.5, schedule: bound.schedule.clone(), shape };
/// let images = vec![0.0f32, 0.2, -0.4, 1.0, -1.0, 0.6, 0.2, 0.0];
/// let b = variational_bound(&mut model, &bound, &images, 2, None, &BoundOptions::default(), |_, _| {})?;
/// assert_eq!(b.terms.len(), 1 + 50); // the prior, then t = 49 down to 0
/// assert!(b.mean() > 0.0 && b.mean().is_finite());
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub fn variational_bound<D: Denoiser>(
    model: &mut D,
    bound: &BoundModel,
    images: &[f32],
    n: usize,
    labels: Option<&[i64]>,
    options: &BoundOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Bound> {
    variational_bound_resumable(model, bound, images, n, labels, options, None, |_| Ok(()), progress)
}

/// A bound part-way through: the terms evaluated so far (the prior first, then t = T-1
/// down) and each image's running sum. [`variational_bound_resumable`] hands one to its
/// `checkpoint` callback after each timestep and continues from one. Serialized, each value
/// is kept as its bit pattern, so that a bound continued from a saved one equals an
/// uninterrupted one exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "ProgressRepr", try_from = "ProgressRepr")]
pub struct BoundProgress {
    per_image: Vec<f64>,
    terms: Vec<Term>,
}

impl BoundProgress {
    /// The terms evaluated so far, the prior included.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }
    /// The number of images.
    pub fn images(&self) -> usize {
        self.per_image.len()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressRepr {
    /// f64::to_bits of each image's running sum.
    per_image: Vec<u64>,
    /// (term, t, f64::to_bits of bits_per_dim, f64::to_bits of distortion).
    terms: Vec<(String, i64, u64, u64)>,
}

impl From<BoundProgress> for ProgressRepr {
    fn from(p: BoundProgress) -> Self {
        ProgressRepr {
            per_image: p.per_image.iter().map(|v| v.to_bits()).collect(),
            terms: p.terms.iter().map(|t| (t.kind.name().to_string(), t.t, t.bits_per_dim.to_bits(), t.distortion.to_bits())).collect(),
        }
    }
}

impl TryFrom<ProgressRepr> for BoundProgress {
    type Error = String;
    fn try_from(r: ProgressRepr) -> std::result::Result<Self, String> {
        let terms = r
            .terms
            .into_iter()
            .map(|(kind, t, bits, distortion)| {
                let kind = match kind.as_str() {
                    "prior" => TermKind::Prior,
                    "kl" => TermKind::Kl,
                    "decoder" => TermKind::Decoder,
                    other => return Err(format!("term {other:?}: expected prior, kl or decoder")),
                };
                Ok(Term { kind, t, bits_per_dim: f64::from_bits(bits), distortion: f64::from_bits(distortion) })
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(BoundProgress { per_image: r.per_image.into_iter().map(f64::from_bits).collect(), terms })
    }
}

/// [`variational_bound`], continued from `resume` (saved progress of the same bound: the same
/// model, images, labels, seed and stride; the batch size may differ) when given, with
/// `checkpoint` called after each timestep with the progress so far (an error from it stops
/// the bound and is returned). Progress that does not fit these images and this model's
/// timesteps is an error.
#[allow(clippy::too_many_arguments)]
pub fn variational_bound_resumable<D: Denoiser>(
    model: &mut D,
    bound: &BoundModel,
    images: &[f32],
    n: usize,
    labels: Option<&[i64]>,
    options: &BoundOptions,
    resume: Option<BoundProgress>,
    mut checkpoint: impl FnMut(&BoundProgress) -> Result<()>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Bound> {
    let shape = model.shape();
    let per = shape.sample_len();
    if n == 0 || images.len() != n * per {
        return Err(Error::Shape {
            name: "images".into(),
            found: format!("{} values", images.len()),
            expected: format!("{n} images of {}x{}x{} (at least 1)", shape.channels, shape.height, shape.width),
        });
    }
    if options.t_stride == 0 || options.batch_size == 0 {
        return Err(Error::InvalidArgument(format!(
            "t-stride {} and batch size {}: expected at least 1 each",
            options.t_stride, options.batch_size
        )));
    }
    let learned = bound.variance_type.is_learned();
    if learned && shape.out_channels != 2 * shape.channels {
        return Err(Error::Shape {
            name: "model output".into(),
            found: format!("{} channels", shape.out_channels),
            expected: format!("{} (variance_type {} needs a learned variance)", 2 * shape.channels, bound.variance_type),
        });
    }
    match (shape.num_classes, labels) {
        (Some(_), None) => return Err(Error::InvalidArgument("the model is class-conditional: the bound needs the images' labels".into())),
        (_, Some(l)) if l.len() != n => {
            return Err(Error::Shape { name: "labels".into(), found: format!("{} labels", l.len()), expected: format!("{n}") })
        }
        _ => {}
    }
    if images.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("images".into()));
    }
    let t_count = bound.schedule.num_train_timesteps();
    let plan = evaluated_timesteps(t_count, options.t_stride);
    let batches = n.div_ceil(options.batch_size);
    let total = batches * plan.len();
    crate::limits::check_memory(
        &format!("the bound of {n} images of {}x{}x{} in batches of {}", shape.channels, shape.height, shape.width, options.batch_size),
        crate::limits::bytes_of(&[options.batch_size.min(n), per.max(shape.out_channels * shape.pixels())], 4 * 4),
    )?;

    let mut state = match resume {
        Some(p) => {
            check_progress(&p, n, t_count, &plan)?;
            p
        }
        None => {
            let per_image: Vec<f64> = (0..n).map(|i| bound.prior_bits_per_dim(&images[i * per..(i + 1) * per])).collect();
            let prior =
                Term { kind: TermKind::Prior, t: t_count as i64, bits_per_dim: per_image.iter().sum::<f64>() / n as f64, distortion: 0.0 };
            BoundProgress { per_image, terms: vec![prior] }
        }
    };
    let first = state.terms.len() - 1;
    let mut done = first * batches;
    progress(done, total);
    let out_len = shape.out_channels * shape.pixels();
    for &(t, weight) in &plan[first..] {
        let (mut term_sum, mut sq_err) = (0.0, 0.0);
        let ab = bound.schedule.alpha_bar(t);
        for start in (0..n).step_by(options.batch_size) {
            let end = (start + options.batch_size).min(n);
            let b = end - start;
            let x0 = &images[start * per..end * per];
            // x_t ~ q(x_t | x_0), the noise from (seed, image, t).
            let mut xt = vec![0.0f32; b * per];
            for i in 0..b {
                let mut rng = crate::noise::sample_rng(options.seed ^ ((t as u64) << 32), (start + i) as u64);
                for j in 0..per {
                    let eps: f64 = rand_distr::StandardNormal.sample(&mut rng);
                    xt[i * per + j] = (ab.sqrt() * x0[i * per + j] as f64 + (1.0 - ab).sqrt() * eps) as f32;
                }
            }
            let mut out = vec![0.0f32; b * out_len];
            model.predict_into(&xt, b, t, labels.map(|l| &l[start..end]), &mut out)?;
            if out.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!("model output at t = {t}")));
            }
            for i in 0..b {
                let (xi, xti, oi) = (&x0[i * per..(i + 1) * per], &xt[i * per..(i + 1) * per], &out[i * out_len..(i + 1) * out_len]);
                let pred_x0 = bound.predicted_x0(t, xti, &oi[..per]);
                let term = bound.term_from_pred_x0(t, xi, xti, &pred_x0, learned.then(|| &oi[per..2 * per])) * weight as f64;
                state.per_image[start + i] += term;
                term_sum += term;
                sq_err += xi.iter().zip(&pred_x0).map(|(&x, &p)| (x as f64 - p) * (x as f64 - p)).sum::<f64>();
            }
            done += 1;
            progress(done, total);
        }
        let kind = if t == 0 { TermKind::Decoder } else { TermKind::Kl };
        // [-1, 1] -> [0, 255]: a difference scales by 127.5.
        let distortion = (sq_err / (n * per) as f64).sqrt() * 127.5;
        state.terms.push(Term { kind, t, bits_per_dim: term_sum / n as f64, distortion });
        checkpoint(&state)?;
    }
    Ok(Bound { per_image: state.per_image, terms: state.terms, t_stride: options.t_stride })
}

/// Whether saved progress is part of a bound of `n` images over `plan`.
fn check_progress(p: &BoundProgress, n: usize, t_count: usize, plan: &[(i64, usize)]) -> Result<()> {
    let mismatch = |what: String| Err(Error::InvalidArgument(format!("the saved progress is not of this bound: {what}")));
    if p.per_image.len() != n {
        return mismatch(format!("it holds {} images, this bound {n}", p.per_image.len()));
    }
    if p.per_image.iter().any(|v| !v.is_finite()) {
        return mismatch("it holds non-finite values".into());
    }
    match p.terms.first() {
        Some(t) if t.kind == TermKind::Prior && t.t == t_count as i64 => {}
        _ => return mismatch(format!("it does not start with the prior at t = {t_count}")),
    }
    if p.terms.len() > plan.len() + 1 {
        return mismatch(format!("it holds {} terms, this bound has {}", p.terms.len(), plan.len() + 1));
    }
    for (term, &(t, _)) in p.terms[1..].iter().zip(plan) {
        let kind = if t == 0 { TermKind::Decoder } else { TermKind::Kl };
        if term.t != t || term.kind != kind || !term.bits_per_dim.is_finite() {
            return mismatch(format!("its term at t = {} is not this bound's next term (t = {t})", term.t));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denoiser::{GaussianDenoiser, ModelShape};
    use serde_json::Value;

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    /// Each term against improved-diffusion's `_vb_terms_bpd` (a float64 transcription,
    /// python/make_vlb_fixtures.py): fixed_small, fixed_large and learned_range, on the eps,
    /// v and x_0 prediction types, t = 0 (the decoder), 1, 25 and T - 1.
    #[test]
    fn terms_match_improved_diffusion() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/vlb/terms.json");
        let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let betas: Vec<f64> = f["betas"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let t: Vec<i64> = f["t"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let (x0, xt) = (floats(&f["x0"]), floats(&f["xt"]));
        let per = x0.len() / t.len();
        let mut checked = 0;
        for case in f["cases"].as_array().unwrap() {
            let variance_type = VarianceType::from_name(case["variance_type"].as_str().unwrap()).unwrap();
            let prediction = PredictionType::from_name(case["prediction_type"].as_str().unwrap()).unwrap();
            let m = BoundModel { schedule: Schedule::from_betas(betas.clone()), prediction, variance_type, clamp: X0Clamp::None };
            let (out, v) = (floats(&case["out"]), floats(&case["v"]));
            for (i, &ti) in t.iter().enumerate() {
                let r = i * per..(i + 1) * per;
                let mut o = out[r.clone()].to_vec();
                if variance_type.is_learned() {
                    o.extend_from_slice(&v[r.clone()]);
                }
                let ours = m.term_bits_per_dim(ti, &x0[r.clone()], &xt[r.clone()], &o);
                let want = case["terms_bits_per_dim"][i].as_f64().unwrap();
                assert!((ours - want).abs() <= 1e-5 * want.abs() + 1e-9, "{variance_type} {prediction} t = {ti}: {ours} vs {want}");
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }

    /// For data x_0 ~ N(m, s^2), each value independent, and the exact noise predictor,
    /// E[x_0 | x_t] is known and with fixed_small the KL term at t is
    /// 0.5 c_t^2 Var(x_0 | x_t) / beta~_t nats per dimension, Var(x_0 | x_t) =
    /// s^2 (1 - ab_t) / (ab_t s^2 + 1 - ab_t), c_t the posterior mean's coefficient on x_0.
    #[test]
    fn kl_terms_of_gaussian_data_match_the_closed_form() {
        let config = SchedulerConfig { num_train_timesteps: Some(100), clip_sample: Some(false), ..SchedulerConfig::paper() };
        let bound = BoundModel::from_config(&config).unwrap();
        let (mean, std) = (0.1, 0.4);
        let shape = ModelShape { channels: 1, height: 16, width: 16, out_channels: 1, num_classes: None };
        let mut model = GaussianDenoiser { mean, std, schedule: bound.schedule.clone(), shape };
        let n = 64;
        let mut rng = crate::noise::sample_rng(99, 0);
        let images: Vec<f32> = (0..n * 256)
            .map(|_| {
                let z: f64 = rand_distr::StandardNormal.sample(&mut rng);
                (mean + std * z) as f32
            })
            .collect();
        let b = variational_bound(&mut model, &bound, &images, n, None, &BoundOptions { batch_size: 64, ..Default::default() }, |_, _| {})
            .unwrap();
        let s = &bound.schedule;
        let mut closed_total = 0.0;
        for term in b.terms.iter().filter(|t| t.kind == TermKind::Kl) {
            let ab = s.alpha_bar(term.t);
            let var_x0 = std * std * (1.0 - ab) / (ab * std * std + 1.0 - ab);
            let (c0, _) = s.posterior_mean_coefficients(term.t, term.t - 1);
            let closed = 0.5 * c0 * c0 * var_x0 / s.posterior_variance(term.t) / std::f64::consts::LN_2;
            closed_total += closed;
            // 16,384 values a term: a few percent of Monte Carlo error at most.
            assert!((term.bits_per_dim - closed).abs() <= 0.06 * closed + 1e-9, "t = {}: {} vs {closed}", term.t, term.bits_per_dim);
        }
        let ours = b.total(TermKind::Kl);
        assert!((ours - closed_total).abs() <= 0.01 * closed_total, "sum of KL terms {ours} vs the closed form's {closed_total}");

        // The exact denoiser's x_0 prediction is E[x_0 | x_t]: its RMSE is
        // sqrt(Var(x_0 | x_t)), times 127.5 on the [0, 255] scale.
        let rd = b.rate_distortion();
        for p in &rd {
            let ab = s.alpha_bar(p.t);
            let rmse = (std * std * (1.0 - ab) / (ab * std * std + 1.0 - ab)).sqrt() * 127.5;
            assert!((p.distortion - rmse).abs() <= 0.03 * rmse, "t = {}: distortion {} vs {rmse}", p.t, p.distortion);
        }
        // Holding x_t costs the terms before t's own: x_{T-1} the prior alone, x_0 the prior
        // and every KL term (the lossy end; L_0 then codes x_0 losslessly).
        let prior = b.total(TermKind::Prior);
        assert_eq!(rd.len(), 100);
        assert_eq!((rd[0].t, rd[0].rate), (99, prior));
        assert_eq!(rd[99].t, 0);
        assert!((rd[99].rate - (prior + ours)).abs() <= 1e-12, "{} vs {}", rd[99].rate, prior + ours);
        assert!(rd.windows(2).all(|w| w[1].rate >= w[0].rate && w[1].t < w[0].t));
    }

    /// A bound stopped part-way (its checkpoint callback fails, as a killed process would
    /// stop) and continued from the saved progress, through its serialized form, equals the
    /// uninterrupted bound bit for bit, at another batch size too; progress of another bound
    /// is refused.
    #[test]
    fn a_bound_continued_from_saved_progress_equals_an_uninterrupted_one() {
        let config = SchedulerConfig { num_train_timesteps: Some(40), clip_sample: Some(false), ..SchedulerConfig::paper() };
        let bound = BoundModel::from_config(&config).unwrap();
        let shape = ModelShape { channels: 1, height: 4, width: 4, out_channels: 1, num_classes: None };
        let mut model = GaussianDenoiser { mean: 0.1, std: 0.4, schedule: bound.schedule.clone(), shape };
        let n = 5;
        let images: Vec<f32> = (0..n * 16).map(|i| ((i * 37 % 255) as f32 / 127.5 - 1.0).clamp(-1.0, 1.0)).collect();
        let options = BoundOptions { t_stride: 3, batch_size: 2, seed: 7 };
        let whole = variational_bound(&mut model, &bound, &images, n, None, &options, |_, _| {}).unwrap();

        let mut saved = None;
        let mut calls = 0;
        let stopped = variational_bound_resumable(
            &mut model,
            &bound,
            &images,
            n,
            None,
            &options,
            None,
            |p| {
                calls += 1;
                saved = Some(serde_json::to_string(p).unwrap());
                if calls == 6 {
                    return Err(Error::InvalidArgument("killed".into()));
                }
                Ok(())
            },
            |_, _| {},
        );
        assert!(stopped.is_err());
        let progress: BoundProgress = serde_json::from_str(saved.as_deref().unwrap()).unwrap();
        assert_eq!(progress.terms().len(), 7, "the prior and 6 terms");
        let other_batch = BoundOptions { batch_size: 3, ..options.clone() };
        let mut evaluations = Vec::new();
        let resumed = variational_bound_resumable(
            &mut model,
            &bound,
            &images,
            n,
            None,
            &other_batch,
            Some(progress.clone()),
            |_| Ok(()),
            |d, _| evaluations.push(d),
        )
        .unwrap();
        assert_eq!(resumed, whole);
        // Two batches of 3 a term: the 6 saved terms are not evaluated again.
        assert_eq!(evaluations.first(), Some(&12));
        assert_eq!(evaluations.len() - 1, (whole.terms.len() - 7) * 2);

        // Progress of another bound: other images count, other stride.
        let err = variational_bound_resumable(
            &mut model,
            &bound,
            &images[..4 * 16],
            4,
            None,
            &options,
            Some(progress.clone()),
            |_| Ok(()),
            |_, _| {},
        );
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("5 images")));
        let strided = BoundOptions { t_stride: 1, ..options };
        let err = variational_bound_resumable(&mut model, &bound, &images, n, None, &strided, Some(progress), |_| Ok(()), |_, _| {});
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("next term")));
    }

    #[test]
    fn a_strided_estimate_covers_every_term_once() {
        for (t_count, stride) in [(1000, 1), (1000, 10), (1000, 7), (50, 100), (2, 1)] {
            let plan = evaluated_timesteps(t_count, stride);
            assert_eq!(plan.iter().map(|p| p.1).sum::<usize>(), t_count, "{t_count} {stride}");
            assert_eq!(plan.first().map(|p| p.0), Some(t_count as i64 - 1));
            assert_eq!(plan.last(), Some(&(0, 1)));
        }
    }
}
