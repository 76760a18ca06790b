//! `scheduler_config.json`: the keys of diffusers' DDPMScheduler, DDIMScheduler and
//! DPMSolverMultistepScheduler, parsed with diffusers' `from_config` semantics: a key that
//! is present applies to every sampler that knows it; a key that is absent takes the
//! default of the sampler that runs. Unknown keys are an error naming the key; keys of
//! those schedulers that this runtime does not implement are accepted only at the value
//! that makes them a no-op.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How the betas are laid out over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
    Sigmoid,
}

/// The variance of the DDPM reverse step (diffusers' `variance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceType {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
    FixedLargeLog,
    Learned,
    LearnedRange,
}

impl VarianceType {
    /// Whether the model predicts its variance in a second set of C output channels.
    pub fn is_learned(self) -> bool {
        matches!(self, VarianceType::Learned | VarianceType::LearnedRange)
    }
}

/// What the network predicts (diffusers' `prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// How inference timesteps are spread over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

impl std::str::FromStr for TimestepSpacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            "linspace" => Ok(Self::Linspace),
            other => Err(Error::config(
                "timestep_spacing",
                format!("found \"{other}\", expected one of leading, trailing, linspace"),
            )),
        }
    }
}

/// A parsed scheduler config. `None` means "absent": the sampler's own default applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerConfig {
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<BetaSchedule>,
    pub trained_betas: Option<Vec<f64>>,
    pub variance_type: Option<VarianceType>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub prediction_type: Option<PredictionType>,
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: Option<i64>,
    pub set_alpha_to_one: Option<bool>,
    pub thresholding: Option<bool>,
    pub dynamic_thresholding_ratio: Option<f64>,
    pub sample_max_value: Option<f64>,
    pub rescale_betas_zero_snr: Option<bool>,
    /// DPM-Solver++ order (1 or 2).
    pub solver_order: Option<usize>,
    /// DPM-Solver++: first-order final step for short schedules.
    pub lower_order_final: Option<bool>,
}

/// The DDPM paper's schedule: what a model without a scheduler config gets.
pub const PAPER_DEFAULTS: &str = r#"{"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "variance_type": "fixed_small", "clip_sample": true, "prediction_type": "epsilon"}"#;

/// Keys of diffusers' schedulers that this runtime does not implement, accepted only at
/// the value that makes them a no-op (their diffusers default).
fn inert_key(key: &str, value: &Value) -> Option<bool> {
    let ok = match key {
        "algorithm_type" => value == "dpmsolver++",
        "solver_type" => value == "midpoint",
        "euler_at_final" | "use_karras_sigmas" | "use_exponential_sigmas" | "use_beta_sigmas"
        | "use_lu_lambdas" | "use_flow_sigmas" => value == false,
        "final_sigmas_type" => value == "zero",
        "lambda_min_clipped" => {
            value.is_null() || value == "-Infinity" || value.as_f64().is_some_and(|v| v == f64::NEG_INFINITY)
        }
        "variance_type" => value.is_null(),
        // Used by diffusers only when use_flow_sigmas is true, or as a label.
        "flow_shift" | "timestep_type" | "shift_terminal" => true,
        _ => return None,
    };
    Some(ok)
}

impl SchedulerConfig {
    /// The paper's defaults (see [`PAPER_DEFAULTS`]).
    pub fn paper() -> Self {
        Self::from_json_str(PAPER_DEFAULTS, "paper defaults").unwrap_or_default()
    }

    /// Parses the JSON text of a `scheduler_config.json`. `what` names the source in errors.
    pub fn from_json_str(text: &str, what: &str) -> Result<Self> {
        // Python's json writes -inf as a bare `-Infinity` (DPMSolverMultistepScheduler's
        // lambda_min_clipped), which is not JSON: read it as a string.
        let text = sanitize_non_finite(text);
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Json { what: what.to_string(), msg: e.to_string() })?;
        let Value::Object(map) = value else {
            return Err(Error::Json { what: what.to_string(), msg: "expected a JSON object".into() });
        };
        let named = |e: Error| match e {
            Error::Config { file, key, msg } if file.is_empty() => Error::Config { file: what.to_string(), key, msg },
            other => other,
        };
        let c = Self::from_map(&map).map_err(named)?;
        c.validate().map_err(named)?;
        Ok(c)
    }

    /// The most training timesteps a config may declare (the schedule holds several f64
    /// arrays of this length; diffusion models use 1,000 to 4,000).
    pub const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;

    /// Checks every value once, where configs are read (the runtime, the exporter and the
    /// trainer all come through here): ranges of the numbers, and the betas the config
    /// gives (each in (0, 1)), so that no tool accepts a config another refuses.
    pub fn validate(&self) -> Result<()> {
        let positive_fraction = |key: &str, v: Option<f64>| -> Result<()> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0 && x < 1.0) => {
                    Err(Error::config(key, format!("found {x}, expected a number in (0, 1)")))
                }
                _ => Ok(()),
            }
        };
        if let Some(n) = self.num_train_timesteps {
            if n == 0 || n > Self::MAX_TRAIN_TIMESTEPS {
                return Err(Error::config(
                    "num_train_timesteps",
                    format!("found {n}, expected 1 to {}", Self::MAX_TRAIN_TIMESTEPS),
                ));
            }
        }
        positive_fraction("beta_start", self.beta_start)?;
        positive_fraction("beta_end", self.beta_end)?;
        if let Some(betas) = &self.trained_betas {
            if betas.is_empty() || betas.len() > Self::MAX_TRAIN_TIMESTEPS {
                return Err(Error::config(
                    "trained_betas",
                    format!("found {} values, expected 1 to {}", betas.len(), Self::MAX_TRAIN_TIMESTEPS),
                ));
            }
            if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(b.is_finite() && **b > 0.0 && **b < 1.0)) {
                return Err(Error::config("trained_betas", format!("beta[{i}] = {b}, expected a number in (0, 1)")));
            }
        }
        let positive = |key: &str, v: Option<f64>| -> Result<()> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => Err(Error::config(key, format!("found {x}, expected a finite number > 0"))),
                _ => Ok(()),
            }
        };
        positive("clip_sample_range", self.clip_sample_range)?;
        positive("sample_max_value", self.sample_max_value)?;
        if let Some(r) = self.dynamic_thresholding_ratio {
            if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                return Err(Error::config("dynamic_thresholding_ratio", format!("found {r}, expected a number in (0, 1]")));
            }
        }
        if let Some(o) = self.steps_offset {
            let n = self.num_train_timesteps();
            if o < 0 || o as usize >= n {
                return Err(Error::config("steps_offset", format!("found {o}, expected 0 to {} (num_train_timesteps - 1)", n - 1)));
            }
        }
        // The schedule itself: every beta it derives (scaled_linear squares, sigmoid maps)
        // must be a probability, and alpha-bar must stay positive.
        crate::schedule::Schedule::from_config(self)?;
        Ok(())
    }

    /// Reads a `scheduler_config.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let mut c = SchedulerConfig::default();
        for (key, v) in map {
            if key.starts_with('_') {
                continue; // _class_name, _diffusers_version
            }
            match key.as_str() {
                "num_train_timesteps" => c.num_train_timesteps = Some(usize::try_from(uint(key, v)?).unwrap_or(usize::MAX)),
                "beta_start" => c.beta_start = Some(float(key, v)?),
                "beta_end" => c.beta_end = Some(float(key, v)?),
                "beta_schedule" => {
                    c.beta_schedule = Some(match string(key, v)? {
                        "linear" => BetaSchedule::Linear,
                        "scaled_linear" => BetaSchedule::ScaledLinear,
                        "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
                        "sigmoid" => BetaSchedule::Sigmoid,
                        s => return Err(one_of(key, s, "linear, scaled_linear, squaredcos_cap_v2, sigmoid")),
                    })
                }
                "trained_betas" => {
                    if !v.is_null() {
                        let arr = v.as_array().ok_or_else(|| wrong_type(key, v, "a list of numbers"))?;
                        let betas = arr
                            .iter()
                            .map(|b| b.as_f64().ok_or_else(|| wrong_type(key, b, "a number")))
                            .collect::<Result<Vec<_>>>()?;
                        c.trained_betas = Some(betas);
                    }
                }
                "variance_type" if !v.is_null() => {
                    c.variance_type = Some(match string(key, v)? {
                        "fixed_small" => VarianceType::FixedSmall,
                        "fixed_small_log" => VarianceType::FixedSmallLog,
                        "fixed_large" => VarianceType::FixedLarge,
                        "fixed_large_log" => VarianceType::FixedLargeLog,
                        "learned" => VarianceType::Learned,
                        "learned_range" => VarianceType::LearnedRange,
                        s => {
                            return Err(one_of(
                                key,
                                s,
                                "fixed_small, fixed_small_log, fixed_large, fixed_large_log, learned, learned_range",
                            ))
                        }
                    })
                }
                "clip_sample" => c.clip_sample = Some(boolean(key, v)?),
                "clip_sample_range" => c.clip_sample_range = Some(float(key, v)?),
                "prediction_type" => {
                    c.prediction_type = Some(match string(key, v)? {
                        "epsilon" => PredictionType::Epsilon,
                        "v_prediction" => PredictionType::VPrediction,
                        "sample" => PredictionType::Sample,
                        s => return Err(one_of(key, s, "epsilon, v_prediction, sample")),
                    })
                }
                "timestep_spacing" => c.timestep_spacing = Some(string(key, v)?.parse()?),
                "steps_offset" => c.steps_offset = Some(i64::try_from(uint(key, v)?).unwrap_or(i64::MAX)),
                "set_alpha_to_one" => c.set_alpha_to_one = Some(boolean(key, v)?),
                "thresholding" => c.thresholding = Some(boolean(key, v)?),
                "dynamic_thresholding_ratio" => c.dynamic_thresholding_ratio = Some(float(key, v)?),
                "sample_max_value" => c.sample_max_value = Some(float(key, v)?),
                "rescale_betas_zero_snr" => c.rescale_betas_zero_snr = Some(boolean(key, v)?),
                "solver_order" => {
                    let order = uint(key, v)?;
                    if !(1..=2).contains(&order) {
                        return Err(Error::config(key, format!("found {order}, expected 1 or 2")));
                    }
                    c.solver_order = Some(order as usize);
                }
                "lower_order_final" => c.lower_order_final = Some(boolean(key, v)?),
                other => match inert_key(other, v) {
                    Some(true) => {}
                    Some(false) => {
                        return Err(Error::config(other, format!("found {v}, which this runtime does not implement")))
                    }
                    None => return Err(Error::config(other, "unknown scheduler config key")),
                },
            }
        }
        if let (Some(betas), Some(n)) = (&c.trained_betas, c.num_train_timesteps) {
            if betas.len() != n {
                return Err(Error::config(
                    "trained_betas",
                    format!("found {} values, expected num_train_timesteps = {n}", betas.len()),
                ));
            }
        }
        Ok(c)
    }

    /// The JSON object of this config, with only the keys that are set.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        macro_rules! put {
            ($k:ident) => {
                if let Some(v) = &self.$k {
                    m.insert(stringify!($k).into(), serde_json::json!(v));
                }
            };
        }
        put!(num_train_timesteps);
        put!(beta_start);
        put!(beta_end);
        if let Some(b) = self.beta_schedule {
            let s = match b {
                BetaSchedule::Linear => "linear",
                BetaSchedule::ScaledLinear => "scaled_linear",
                BetaSchedule::SquaredcosCapV2 => "squaredcos_cap_v2",
                BetaSchedule::Sigmoid => "sigmoid",
            };
            m.insert("beta_schedule".into(), s.into());
        }
        put!(trained_betas);
        if let Some(v) = self.variance_type {
            let s = match v {
                VarianceType::FixedSmall => "fixed_small",
                VarianceType::FixedSmallLog => "fixed_small_log",
                VarianceType::FixedLarge => "fixed_large",
                VarianceType::FixedLargeLog => "fixed_large_log",
                VarianceType::Learned => "learned",
                VarianceType::LearnedRange => "learned_range",
            };
            m.insert("variance_type".into(), s.into());
        }
        put!(clip_sample);
        put!(clip_sample_range);
        if let Some(p) = self.prediction_type {
            let s = match p {
                PredictionType::Epsilon => "epsilon",
                PredictionType::VPrediction => "v_prediction",
                PredictionType::Sample => "sample",
            };
            m.insert("prediction_type".into(), s.into());
        }
        if let Some(t) = self.timestep_spacing {
            let s = match t {
                TimestepSpacing::Leading => "leading",
                TimestepSpacing::Trailing => "trailing",
                TimestepSpacing::Linspace => "linspace",
            };
            m.insert("timestep_spacing".into(), s.into());
        }
        put!(steps_offset);
        put!(set_alpha_to_one);
        put!(thresholding);
        put!(dynamic_thresholding_ratio);
        put!(sample_max_value);
        put!(rescale_betas_zero_snr);
        put!(solver_order);
        put!(lower_order_final);
        Value::Object(m)
    }

    // Resolved values, with the defaults shared by all three diffusers schedulers.
    pub fn num_train_timesteps(&self) -> usize {
        self.trained_betas.as_ref().map_or(self.num_train_timesteps.unwrap_or(1000), Vec::len)
    }
    pub fn prediction(&self) -> PredictionType {
        self.prediction_type.unwrap_or(PredictionType::Epsilon)
    }
}

fn sanitize_non_finite(text: &str) -> String {
    // Replace the bare tokens -Infinity / Infinity / NaN outside strings by strings.
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        if ch == '"' {
            in_string = true;
        }
        let mut matched = false;
        for token in ["-Infinity", "Infinity", "NaN"] {
            if rest.starts_with(token) {
                out.push('"');
                out.push_str(token);
                out.push('"');
                rest = &rest[token.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

fn wrong_type(key: &str, v: &Value, expected: &str) -> Error {
    Error::config(key, format!("found {v}, expected {expected}"))
}
fn one_of(key: &str, found: &str, expected: &str) -> Error {
    Error::config(key, format!("found \"{found}\", expected one of {expected}"))
}
fn float(key: &str, v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| wrong_type(key, v, "a number"))
}
fn uint(key: &str, v: &Value) -> Result<u64> {
    v.as_u64().ok_or_else(|| wrong_type(key, v, "a non-negative integer"))
}
fn boolean(key: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| wrong_type(key, v, "true or false"))
}
fn string<'a>(key: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| wrong_type(key, v, "a string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = SchedulerConfig::from_json_str(r#"{"beta_start": 0.001, "betta_end": 0.02}"#, "x").unwrap_err();
        assert!(err.to_string().contains("betta_end"), "{err}");
    }

    #[test]
    fn wrong_value_is_named() {
        let err = SchedulerConfig::from_json_str(r#"{"beta_schedule": "cubic"}"#, "x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("beta_schedule") && msg.contains("cubic"), "{msg}");
    }

    #[test]
    fn diffusers_dpm_config_with_infinity_parses() {
        let text = r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++",
            "lambda_min_clipped": -Infinity, "variance_type": null, "solver_order": 2,
            "use_karras_sigmas": false, "final_sigmas_type": "zero", "timestep_spacing": "linspace"}"#;
        let c = SchedulerConfig::from_json_str(text, "x").unwrap();
        assert_eq!(c.solver_order, Some(2));
        assert_eq!(c.timestep_spacing, Some(TimestepSpacing::Linspace));
    }

    #[test]
    fn unimplemented_option_is_refused() {
        let err = SchedulerConfig::from_json_str(r#"{"use_karras_sigmas": true}"#, "x").unwrap_err();
        assert!(err.to_string().contains("use_karras_sigmas"));
    }

    #[test]
    fn json_round_trip() {
        let c = SchedulerConfig::paper();
        let back = SchedulerConfig::from_json_str(&c.to_json().to_string(), "x").unwrap();
        assert_eq!(c, back);
        assert_eq!(c.num_train_timesteps, Some(1000));
    }
}
