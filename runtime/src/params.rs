//! Checked sampler parameters: a raw [`SchedulerConfig`] (keys as the file has them, `None`
//! where it is silent) resolved once into [`DdpmParams`], [`DdimParams`] or
//! [`DpmSolverParams`], with the defaults of the diffusers scheduler class of the same
//! name (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler) for absent keys, and
//! every value checked in one place ([`check`]) with an error variant per bad value
//! ([`ParamError`]), as linfa's `ParamGuard` does.
//!
//! ```
//! use ddpm_runtime::params::{DdimParams, DpmSolverParams};
//! use ddpm_runtime::{SchedulerConfig, TimestepSpacing};
//! let config = SchedulerConfig::paper();
//! // An absent timestep_spacing is each class's own default.
//! assert_eq!(DdimParams::from_config(&config)?.chain.timestep_spacing, TimestepSpacing::Leading);
//! assert_eq!(DpmSolverParams::from_config(&config)?.chain.timestep_spacing, TimestepSpacing::Linspace);
//! # Ok::<(), ddpm_runtime::Error>(())
//! ```

use crate::config::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing, VarianceType};
use crate::prediction::X0Clamp;
use crate::schedule::Schedule;

/// A value of a scheduler config that no sampler can run, one variant per check. The
/// message says what was found and what was expected; [`ParamError::key`] names the key.
///
/// ```
/// use ddpm_runtime::params::{check, ParamError};
/// use ddpm_runtime::SchedulerConfig;
/// let bad = SchedulerConfig { beta_start: Some(0.0), ..SchedulerConfig::paper() };
/// assert_eq!(check(&bad), Err(ParamError::BetaStart(0.0)));
/// assert_eq!(ParamError::BetaStart(0.0).key(), "beta_start");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("found {0}, expected 1 to {max}", max = SchedulerConfig::MAX_TRAIN_TIMESTEPS)]
    NumTrainTimesteps(usize),
    #[error("found {0}, expected a number in (0, 1)")]
    BetaStart(f64),
    #[error("found {0}, expected a number in (0, 1)")]
    BetaEnd(f64),
    #[error("found {found} values, expected 1 to {max}", max = SchedulerConfig::MAX_TRAIN_TIMESTEPS)]
    TrainedBetasCount { found: usize },
    #[error("found {found} values, expected num_train_timesteps = {expected}")]
    TrainedBetasMismatch { found: usize, expected: usize },
    #[error("beta[{index}] = {value}, expected a number in (0, 1)")]
    TrainedBeta { index: usize, value: f64 },
    /// A beta the schedule derives (scaled_linear squares, sigmoid maps) outside [0, 1].
    #[error("beta[{index}] = {value}, expected a value in [0, 1]")]
    DerivedBeta { index: usize, value: f64 },
    #[error("found {0}, expected a finite number > 0")]
    ClipSampleRange(f64),
    #[error("found {0}, expected a finite number > 0")]
    SampleMaxValue(f64),
    #[error("found {0}, expected a number in (0, 1]")]
    DynamicThresholdingRatio(f64),
    #[error("found {found}, expected 0 to {max} (num_train_timesteps - 1)")]
    StepsOffset { found: i64, max: usize },
    #[error("found {0}, expected 1 or 2")]
    SolverOrder(usize),
}

impl ParamError {
    /// The scheduler config key the bad value belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            ParamError::NumTrainTimesteps(_) => "num_train_timesteps",
            ParamError::BetaStart(_) => "beta_start",
            ParamError::BetaEnd(_) => "beta_end",
            ParamError::TrainedBetasCount { .. } | ParamError::TrainedBetasMismatch { .. } | ParamError::TrainedBeta { .. } => {
                "trained_betas"
            }
            ParamError::DerivedBeta { .. } => "betas",
            ParamError::ClipSampleRange(_) => "clip_sample_range",
            ParamError::SampleMaxValue(_) => "sample_max_value",
            ParamError::DynamicThresholdingRatio(_) => "dynamic_thresholding_ratio",
            ParamError::StepsOffset { .. } => "steps_offset",
            ParamError::SolverOrder(_) => "solver_order",
        }
    }
}

fn fraction(v: Option<f64>, err: fn(f64) -> ParamError) -> Result<(), ParamError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0 && x < 1.0) => Err(err(x)),
        _ => Ok(()),
    }
}

fn positive(v: Option<f64>, err: fn(f64) -> ParamError) -> Result<(), ParamError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(err(x)),
        _ => Ok(()),
    }
}

/// Every value check of a scheduler config, in one place: what [`SchedulerConfig::validate`]
/// runs where configs are read, and what each `from_config` below runs before resolving.
///
/// ```
/// use ddpm_runtime::params::{check, ParamError};
/// use ddpm_runtime::SchedulerConfig;
/// assert_eq!(check(&SchedulerConfig::paper()), Ok(()));
/// let c = SchedulerConfig { steps_offset: Some(1000), ..SchedulerConfig::paper() };
/// assert_eq!(check(&c), Err(ParamError::StepsOffset { found: 1000, max: 999 }));
/// ```
pub fn check(config: &SchedulerConfig) -> Result<(), ParamError> {
    if let Some(n) = config.num_train_timesteps {
        if n == 0 || n > SchedulerConfig::MAX_TRAIN_TIMESTEPS {
            return Err(ParamError::NumTrainTimesteps(n));
        }
    }
    fraction(config.beta_start, ParamError::BetaStart)?;
    fraction(config.beta_end, ParamError::BetaEnd)?;
    if let Some(betas) = &config.trained_betas {
        if betas.is_empty() || betas.len() > SchedulerConfig::MAX_TRAIN_TIMESTEPS {
            return Err(ParamError::TrainedBetasCount { found: betas.len() });
        }
        if let Some(n) = config.num_train_timesteps {
            if betas.len() != n {
                return Err(ParamError::TrainedBetasMismatch { found: betas.len(), expected: n });
            }
        }
        if let Some((index, &value)) = betas.iter().enumerate().find(|(_, b)| !(b.is_finite() && **b > 0.0 && **b < 1.0)) {
            return Err(ParamError::TrainedBeta { index, value });
        }
    }
    positive(config.clip_sample_range, ParamError::ClipSampleRange)?;
    positive(config.sample_max_value, ParamError::SampleMaxValue)?;
    if let Some(r) = config.dynamic_thresholding_ratio {
        if !(r.is_finite() && r > 0.0 && r <= 1.0) {
            return Err(ParamError::DynamicThresholdingRatio(r));
        }
    }
    if let Some(o) = config.steps_offset {
        let n = config.num_train_timesteps();
        if o < 0 || o as usize >= n {
            return Err(ParamError::StepsOffset { found: o, max: n - 1 });
        }
    }
    if let Some(order) = config.solver_order {
        if !(1..=2).contains(&order) {
            return Err(ParamError::SolverOrder(order));
        }
    }
    // The schedule itself: every beta it derives must be a probability.
    schedule(config)?;
    Ok(())
}

/// The betas a (checked) config describes, with diffusers' defaults for absent keys:
/// 1,000 steps, linear from 1e-4 to 0.02.
pub(crate) fn schedule(config: &SchedulerConfig) -> Result<Schedule, ParamError> {
    let betas = match &config.trained_betas {
        Some(betas) => betas.clone(),
        None => {
            let n = config.num_train_timesteps.unwrap_or(1000);
            let (start, end) = (config.beta_start.unwrap_or(1e-4), config.beta_end.unwrap_or(0.02));
            crate::schedule::betas(config.beta_schedule.unwrap_or(BetaSchedule::Linear), start, end, n)
        }
    };
    if let Some((index, &value)) = betas.iter().enumerate().find(|(_, b)| !(**b >= 0.0 && **b <= 1.0)) {
        return Err(ParamError::DerivedBeta { index, value });
    }
    let betas = if config.rescale_betas_zero_snr.unwrap_or(false) { crate::schedule::rescale_betas_zero_snr(&betas) } else { betas };
    Ok(Schedule::from_betas(betas))
}

/// What the three samplers share: the schedule, what the model predicts, the clamp of the
/// predicted x_0, and where the inference timesteps go.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainParams {
    pub schedule: Schedule,
    pub prediction_type: PredictionType,
    pub clamp: X0Clamp,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
}

impl ChainParams {
    /// Resolves and checks a config with one class's defaults for `clip_sample` and
    /// `timestep_spacing`.
    fn resolve(config: &SchedulerConfig, clip_default: bool, spacing_default: TimestepSpacing) -> Result<Self, ParamError> {
        check(config)?;
        Ok(Self {
            schedule: schedule(config)?,
            prediction_type: config.prediction(),
            clamp: X0Clamp::from_config(config, clip_default),
            timestep_spacing: config.timestep_spacing.unwrap_or(spacing_default),
            steps_offset: config.steps_offset.unwrap_or(0),
        })
    }
}

/// DDPMScheduler's parameters. Defaults: the schedule of [`SchedulerConfig::paper`],
/// `variance_type` fixed_small, `clip_sample` true with range 1, `timestep_spacing` leading,
/// `steps_offset` 0, epsilon prediction, no thresholding.
///
/// ```
/// use ddpm_runtime::params::DdpmParams;
/// use ddpm_runtime::{SchedulerConfig, VarianceType};
/// let p = DdpmParams::from_config(&SchedulerConfig::default())?;
/// assert_eq!(p.variance_type, VarianceType::FixedSmall);
/// assert_eq!(p.chain.schedule.num_train_timesteps(), 1000);
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DdpmParams {
    pub chain: ChainParams,
    pub variance_type: VarianceType,
}

impl DdpmParams {
    /// Resolves and checks a config with DDPMScheduler's defaults.
    pub fn from_config(config: &SchedulerConfig) -> crate::Result<Self> {
        Ok(Self {
            chain: ChainParams::resolve(config, true, TimestepSpacing::Leading)?,
            variance_type: config.variance_type.unwrap_or(VarianceType::FixedSmall),
        })
    }
}

/// DDIMScheduler's parameters. Defaults: DDPMScheduler's schedule, `clip_sample` true,
/// `set_alpha_to_one` true, `timestep_spacing` leading, `steps_offset` 0.
///
/// ```
/// use ddpm_runtime::params::DdimParams;
/// use ddpm_runtime::SchedulerConfig;
/// let c = SchedulerConfig { set_alpha_to_one: Some(false), ..SchedulerConfig::paper() };
/// // The last step goes to alpha-bar_0 instead of 1.
/// let p = DdimParams::from_config(&c)?;
/// assert!(p.final_alpha_cumprod < 1.0);
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DdimParams {
    pub chain: ChainParams,
    /// alpha-bar before the first training step: 1 (`set_alpha_to_one`) or alpha-bar_0.
    pub final_alpha_cumprod: f64,
}

impl DdimParams {
    /// Resolves and checks a config with DDIMScheduler's defaults.
    pub fn from_config(config: &SchedulerConfig) -> crate::Result<Self> {
        let chain = ChainParams::resolve(config, true, TimestepSpacing::Leading)?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) { 1.0 } else { chain.schedule.alphas_cumprod()[0] };
        Ok(Self { chain, final_alpha_cumprod })
    }
}

/// DPMSolverMultistepScheduler's parameters (algorithm_type dpmsolver++, solver_type
/// midpoint). Defaults: `solver_order` 2, `lower_order_final` true, `timestep_spacing`
/// linspace, no clipping, no thresholding.
///
/// ```
/// use ddpm_runtime::params::DpmSolverParams;
/// use ddpm_runtime::SchedulerConfig;
/// let p = DpmSolverParams::from_config(&SchedulerConfig::default())?;
/// assert_eq!((p.solver_order, p.lower_order_final), (2, true));
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DpmSolverParams {
    pub chain: ChainParams,
    pub solver_order: usize,
    /// A first-order last step for short schedules (always so with final_sigmas_type zero).
    pub lower_order_final: bool,
    /// Zero terminal SNR was asked for (`rescale_betas_zero_snr`): sigma at the last
    /// training step is infinite, so it is nudged as diffusers does.
    pub zero_terminal_snr: bool,
}

impl DpmSolverParams {
    /// Resolves and checks a config with DPMSolverMultistepScheduler's defaults.
    pub fn from_config(config: &SchedulerConfig) -> crate::Result<Self> {
        Ok(Self {
            chain: ChainParams::resolve(config, false, TimestepSpacing::Linspace)?,
            solver_order: config.solver_order.unwrap_or(2),
            lower_order_final: config.lower_order_final.unwrap_or(true),
            zero_terminal_snr: config.rescale_betas_zero_snr.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper_with(f: impl FnOnce(&mut SchedulerConfig)) -> SchedulerConfig {
        let mut c = SchedulerConfig::paper();
        f(&mut c);
        c
    }

    #[test]
    fn each_bad_value_has_its_variant() {
        let cases: Vec<(SchedulerConfig, ParamError)> = vec![
            (paper_with(|c| c.num_train_timesteps = Some(0)), ParamError::NumTrainTimesteps(0)),
            (paper_with(|c| c.num_train_timesteps = Some(2_000_000)), ParamError::NumTrainTimesteps(2_000_000)),
            (paper_with(|c| c.beta_start = Some(-1.0)), ParamError::BetaStart(-1.0)),
            (paper_with(|c| c.beta_end = Some(1.0)), ParamError::BetaEnd(1.0)),
            (
                paper_with(|c| {
                    c.num_train_timesteps = None;
                    c.trained_betas = Some(vec![]);
                }),
                ParamError::TrainedBetasCount { found: 0 },
            ),
            (paper_with(|c| c.trained_betas = Some(vec![0.1; 3])), ParamError::TrainedBetasMismatch { found: 3, expected: 1000 }),
            (
                paper_with(|c| {
                    c.num_train_timesteps = None;
                    c.trained_betas = Some(vec![0.1, 1.5]);
                }),
                ParamError::TrainedBeta { index: 1, value: 1.5 },
            ),
            (paper_with(|c| c.clip_sample_range = Some(0.0)), ParamError::ClipSampleRange(0.0)),
            (paper_with(|c| c.sample_max_value = Some(f64::INFINITY)), ParamError::SampleMaxValue(f64::INFINITY)),
            (paper_with(|c| c.dynamic_thresholding_ratio = Some(1.5)), ParamError::DynamicThresholdingRatio(1.5)),
            (paper_with(|c| c.steps_offset = Some(-1)), ParamError::StepsOffset { found: -1, max: 999 }),
            (paper_with(|c| c.solver_order = Some(3)), ParamError::SolverOrder(3)),
        ];
        for (config, expected) in cases {
            assert_eq!(check(&config), Err(expected.clone()), "{config:?}");
            // Every sampler's params refuse it too, with the key named.
            let e = DdpmParams::from_config(&config).unwrap_err();
            assert!(e.to_string().contains(expected.key()), "{e}");
            assert!(DdimParams::from_config(&config).is_err());
            assert!(DpmSolverParams::from_config(&config).is_err());
        }
    }

    #[test]
    fn class_defaults_apply_to_absent_keys() {
        let empty = SchedulerConfig::default();
        let ddpm = DdpmParams::from_config(&empty).unwrap();
        assert_eq!(ddpm.chain.clamp, X0Clamp::Clip(1.0));
        assert_eq!(ddpm.chain.timestep_spacing, TimestepSpacing::Leading);
        let ddim = DdimParams::from_config(&empty).unwrap();
        assert_eq!(ddim.final_alpha_cumprod, 1.0);
        let dpm = DpmSolverParams::from_config(&empty).unwrap();
        assert_eq!(dpm.chain.clamp, X0Clamp::None);
        assert_eq!(dpm.chain.timestep_spacing, TimestepSpacing::Linspace);
        // A present key applies to every class that knows it.
        let given = SchedulerConfig { timestep_spacing: Some(TimestepSpacing::Trailing), ..empty };
        assert_eq!(DpmSolverParams::from_config(&given).unwrap().chain.timestep_spacing, TimestepSpacing::Trailing);
        assert_eq!(DdpmParams::from_config(&given).unwrap().chain.timestep_spacing, TimestepSpacing::Trailing);
    }

    #[test]
    fn errors_from_a_file_carry_its_name() {
        let e = SchedulerConfig::from_json_str(r#"{"solver_order": 3}"#, "sched.json").unwrap_err();
        assert_eq!(e.to_string(), "sched.json: config key `solver_order`: found 3, expected 1 or 2");
        assert!(matches!(e, crate::Error::Param { err: ParamError::SolverOrder(3), .. }));
    }
}
