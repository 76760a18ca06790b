//! `scheduler_config.json`: the keys of diffusers' DDPMScheduler, DDIMScheduler and
//! DPMSolverMultistepScheduler, read with serde into one raw [`SchedulerConfig`] whose
//! fields are `None` where the file is silent. diffusers' `from_config` semantics: a key
//! that is present applies to every sampler that knows it; a key that is absent takes the
//! default of the sampler that runs, which [`crate::params`] resolves (and checks) once.
//! Unknown keys are an error naming the key; keys of those schedulers that this runtime
//! does not implement are accepted only at the value that makes them a no-op.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::named_enum;

named_enum! {
    /// How the betas are laid out over the training timesteps (`beta_schedule`).
    pub enum BetaSchedule {
        Linear => "linear",
        ScaledLinear => "scaled_linear",
        SquaredcosCapV2 => "squaredcos_cap_v2",
        Sigmoid => "sigmoid",
    }
}

named_enum! {
    /// The variance of the DDPM reverse step (diffusers' `variance_type`).
    ///
    /// ```
    /// use ddpm_runtime::VarianceType;
    /// assert!(VarianceType::LearnedRange.is_learned());
    /// assert_eq!(VarianceType::from_name("fixed_small"), Some(VarianceType::FixedSmall));
    /// ```
    pub enum VarianceType {
        FixedSmall => "fixed_small",
        FixedSmallLog => "fixed_small_log",
        FixedLarge => "fixed_large",
        FixedLargeLog => "fixed_large_log",
        Learned => "learned",
        LearnedRange => "learned_range",
    }
}

impl VarianceType {
    /// Whether the model predicts its variance in a second set of C output channels.
    pub fn is_learned(self) -> bool {
        matches!(self, VarianceType::Learned | VarianceType::LearnedRange)
    }
}

named_enum! {
    /// What the network predicts (diffusers' `prediction_type`).
    pub enum PredictionType {
        Epsilon => "epsilon",
        VPrediction => "v_prediction",
        Sample => "sample",
    }
}

named_enum! {
    /// How inference timesteps are spread over the training timesteps (`timestep_spacing`).
    ///
    /// ```
    /// use ddpm_runtime::TimestepSpacing;
    /// assert_eq!("trailing".parse::<TimestepSpacing>()?, TimestepSpacing::Trailing);
    /// assert!("every-other".parse::<TimestepSpacing>().is_err());
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub enum TimestepSpacing {
        Leading => "leading",
        Trailing => "trailing",
        Linspace => "linspace",
    }
}

impl std::str::FromStr for TimestepSpacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| Error::config("timestep_spacing", format!("found \"{s}\", expected {}", Self::expected())))
    }
}

/// A scheduler config as its file says it: `None` where a key is absent (the sampler's own
/// default then applies, see [`crate::params`]). Keyed exactly like diffusers.
///
/// ```
/// use ddpm_runtime::{BetaSchedule, SchedulerConfig};
/// let c = SchedulerConfig::from_json_str(r#"{"beta_schedule": "squaredcos_cap_v2", "_class_name": "DDIMScheduler"}"#, "cfg.json")?;
/// assert_eq!(c.beta_schedule, Some(BetaSchedule::SquaredcosCapV2));
/// assert_eq!(c.num_train_timesteps, None);
/// let e = SchedulerConfig::from_json_str(r#"{"beta_end": 1.5}"#, "cfg.json").unwrap_err();
/// assert_eq!(e.to_string(), "cfg.json: config key `beta_end`: found 1.5, expected a number in (0, 1)");
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_timesteps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_end: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_schedule: Option<BetaSchedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variance_type: Option<VarianceType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample_range: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<PredictionType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<TimestepSpacing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholding: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_thresholding_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_max_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_betas_zero_snr: Option<bool>,
    /// DPM-Solver++ order (1 or 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver_order: Option<usize>,
    /// DPM-Solver++: first-order final step for short schedules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_order_final: Option<bool>,
}

/// Keys of diffusers' schedulers that this runtime does not implement, accepted only at
/// the value that makes them a no-op (their diffusers default).
fn inert_key(key: &str, value: &Value) -> Option<bool> {
    let ok = match key {
        "algorithm_type" => value == "dpmsolver++",
        "solver_type" => value == "midpoint",
        "euler_at_final" | "use_karras_sigmas" | "use_exponential_sigmas" | "use_beta_sigmas" | "use_lu_lambdas" | "use_flow_sigmas" => {
            value == false
        }
        "final_sigmas_type" => value == "zero",
        "lambda_min_clipped" => value.is_null() || value == "-Infinity" || value.as_f64().is_some_and(|v| v == f64::NEG_INFINITY),
        // Used by diffusers only when use_flow_sigmas is true, or as a label.
        "flow_shift" | "timestep_type" | "shift_terminal" => true,
        _ => return None,
    };
    Some(ok)
}

impl SchedulerConfig {
    /// The most training timesteps a config may declare (the schedule holds several f64
    /// arrays of this length; diffusion models use 1,000 to 4,000).
    pub const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;

    /// The DDPM paper's schedule (Ho et al. 2020, section 4): 1,000 steps, betas linear
    /// from 1e-4 to 0.02, the fixed small variance, clipped x_0, epsilon prediction. What a
    /// model without a scheduler config gets, and what the trainer trains with by default.
    ///
    /// ```
    /// let paper = ddpm_runtime::SchedulerConfig::paper();
    /// assert_eq!(paper.num_train_timesteps, Some(1000));
    /// assert_eq!(paper.beta_end, Some(0.02));
    /// ```
    pub fn paper() -> Self {
        SchedulerConfig {
            num_train_timesteps: Some(1000),
            beta_start: Some(1e-4),
            beta_end: Some(0.02),
            beta_schedule: Some(BetaSchedule::Linear),
            variance_type: Some(VarianceType::FixedSmall),
            clip_sample: Some(true),
            prediction_type: Some(PredictionType::Epsilon),
            ..Default::default()
        }
    }

    /// This config as the text of a diffusers `scheduler_config.json` of `class_name`
    /// (only the keys that are set, plus `_class_name`).
    ///
    /// ```
    /// use ddpm_runtime::SchedulerConfig;
    /// let text = SchedulerConfig::paper().to_json_string("DDPMScheduler");
    /// assert!(text.contains("\"_class_name\": \"DDPMScheduler\""));
    /// assert_eq!(SchedulerConfig::from_json_str(&text, "x")?, SchedulerConfig::paper());
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn to_json_string(&self, class_name: &str) -> String {
        let mut m = Map::new();
        m.insert("_class_name".into(), class_name.into());
        if let Value::Object(keys) = self.to_json() {
            m.extend(keys);
        }
        serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default()
    }

    /// Parses the JSON text of a `scheduler_config.json` and checks every value
    /// ([`SchedulerConfig::validate`]). `what` names the source in errors.
    pub fn from_json_str(text: &str, what: &str) -> Result<Self> {
        let mut map = json_object(text, what)?;
        for (key, value) in std::mem::take(&mut map) {
            match inert_key(&key, &value) {
                Some(true) => {}
                Some(false) => {
                    return Err(Error::Config {
                        file: what.into(),
                        key,
                        msg: format!("found {value}, which this runtime does not implement"),
                    })
                }
                None => {
                    map.insert(key, value);
                }
            }
        }
        let c: Self = from_json_map(map, what, "scheduler config")?;
        c.validate().map_err(|e| e.in_file(what))?;
        Ok(c)
    }

    /// Checks every value once, where configs are read (the runtime, the exporter and the
    /// trainer all come through here): ranges of the numbers, and the betas the config
    /// gives or derives (each in (0, 1)), so that no tool accepts a config another refuses.
    /// The checks are [`crate::params::ParamError`]'s.
    pub fn validate(&self) -> Result<()> {
        crate::params::check(self).map_err(Error::from)
    }

    /// Reads a `scheduler_config.json` file (a regular file of at most
    /// [`crate::limits::MAX_CONFIG_BYTES`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = ddpm_io::files::read_regular_text(path, crate::limits::MAX_CONFIG_BYTES, "scheduler config")?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// The JSON object of this config, with only the keys that are set.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The number of training timesteps: the length of `trained_betas`, else
    /// `num_train_timesteps`, else diffusers' 1000.
    pub fn num_train_timesteps(&self) -> usize {
        self.trained_betas.as_ref().map_or(self.num_train_timesteps.unwrap_or(1000), Vec::len)
    }
    /// What the model predicts (diffusers' default: epsilon).
    pub fn prediction(&self) -> PredictionType {
        self.prediction_type.unwrap_or(PredictionType::Epsilon)
    }
}

/// The JSON object of a config file's text, without the keys diffusers keeps for itself
/// (`_class_name`, `_diffusers_version`, ...). Python's json writes -inf as a bare
/// `-Infinity` (DPMSolverMultistepScheduler's lambda_min_clipped), which is not JSON: such
/// tokens are read as strings.
pub fn json_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    let text = sanitize_non_finite(text);
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::Json { what: what.to_string(), msg: e.to_string() })?;
    let Value::Object(mut map) = value else {
        return Err(Error::Json { what: what.to_string(), msg: "expected a JSON object".into() });
    };
    map.retain(|k, _| !k.starts_with('_'));
    Ok(map)
}

/// Deserializes a config struct from a JSON object: an unknown key is an error naming it
/// (`kind` says what config it is not a key of), a value of the wrong type or range an
/// error naming its key; `what` (the file) prefixes both.
///
/// ```
/// use serde_json::json;
/// #[derive(serde::Deserialize, Debug)]
/// struct Cfg { steps: usize }
/// let map = json!({"steps": 10, "stpes": 3}).as_object().cloned().unwrap_or_default();
/// let e = ddpm_runtime::config::from_json_map::<Cfg>(map, "a.json", "test config").unwrap_err();
/// assert_eq!(e.to_string(), "a.json: config key `stpes`: unknown test config key");
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub fn from_json_map<T: serde::de::DeserializeOwned>(map: Map<String, Value>, what: &str, kind: &str) -> Result<T> {
    let mut unknown = Vec::new();
    let value = Value::Object(map);
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignored = serde_ignored::Deserializer::new(&value, &mut record);
    let parsed: std::result::Result<T, _> = serde_path_to_error::deserialize(ignored);
    if let Some(key) = unknown.into_iter().next() {
        return Err(Error::Config { file: what.into(), key, msg: format!("unknown {kind} key") });
    }
    parsed.map_err(|e| Error::Config { file: what.into(), key: e.path().to_string(), msg: e.into_inner().to_string() })
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
