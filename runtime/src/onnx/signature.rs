//! What a `.onnx` file declares, read without running it: its inputs and outputs (names,
//! element types, shapes) and its metadata (`unet_config`, `scheduler_config`), turned
//! into a [`ModelSignature`]: which tensor is the sample, the timestep and the class label,
//! the sample's shape, and whether it is a fused-step graph. Pure: a session's outlets are
//! first copied into [`TensorSpec`]s, so every rule here is unit-tested without a model.

use std::path::Path;

use ort::value::TensorElementType;
use serde_json::Value;

use crate::config::SchedulerConfig;
use crate::denoiser::ModelShape;
use crate::error::{Error, Result};

/// One input or output of a graph: name, element type, dimensions (negative: dynamic) and
/// the symbolic names of the dimensions ("" where there is none). `elem` is None for a
/// value that is not a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub elem: Option<TensorElementType>,
    pub shape: Vec<i64>,
    pub symbols: Vec<String>,
}

impl TensorSpec {
    /// A tensor with no symbolic dimension names.
    ///
    /// ```
    /// use ddpm_runtime::onnx::signature::TensorSpec;
    /// use ort::value::TensorElementType;
    /// let t = TensorSpec::new("timestep", TensorElementType::Int64, &[1]);
    /// assert_eq!(t.shape, vec![1]);
    /// ```
    pub fn new(name: &str, elem: TensorElementType, shape: &[i64]) -> Self {
        Self { name: name.into(), elem: Some(elem), shape: shape.to_vec(), symbols: vec![String::new(); shape.len()] }
    }
    /// The same with a symbolic name for the first (batch) dimension.
    pub fn with_batch_symbol(mut self, symbol: &str) -> Self {
        if let Some(s) = self.symbols.first_mut() {
            *s = symbol.into();
        }
        self
    }
}

/// The element type of the timestep input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepType {
    Int64,
    Int32,
    Float32,
}

/// The shape of the timestep input: a scalar, one value for the batch, or one per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepRank {
    Scalar,
    Single,
    PerItem,
}

/// How the model takes its timestep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestepInput {
    pub elem: TimestepType,
    pub rank: TimestepRank,
}

impl TimestepInput {
    /// The input's shape for a batch of `batch`.
    pub fn dims(&self, batch: usize) -> Vec<i64> {
        match self.rank {
            TimestepRank::Scalar => vec![],
            TimestepRank::Single => vec![1],
            TimestepRank::PerItem => vec![batch as i64],
        }
    }
}

/// What is fed to one input of the graph, in the graph's input order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Sample,
    Timestep,
    Labels,
    /// Of a fused-step graph.
    Coefficients,
    Noise,
}

/// Everything the runtime needs to know about a model to feed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSignature {
    pub shape: ModelShape,
    /// Per graph input, in order.
    pub feeds: Vec<Feed>,
    pub timestep: TimestepInput,
    /// The element type of the class-label input (int64 or int32), if any.
    pub class_type: Option<TensorElementType>,
    /// The output read as the model output (the first).
    pub output: String,
    /// A graph exported with `--fused-step`.
    pub fused: bool,
    /// The symbolic name of the sample's batch dimension, when it is dynamic and named.
    pub batch_dim: Option<String>,
    /// The batch size the graph fixes, when it fixes one.
    pub fixed_batch: Option<usize>,
    pub scheduler_config: Option<SchedulerConfig>,
    pub unet_config: Option<Value>,
    /// Classifier-free guidance: metadata `guidance_config`, written for models trained
    /// with label dropout.
    pub guidance: Option<GuidanceConfig>,
}

/// Metadata `guidance_config`: `{"null_class_label": K, "guidance_scale": S}`, the class
/// index that means "no label" and the recommended guidance scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidanceConfig {
    pub null_class_label: i64,
    #[serde(default = "one")]
    pub guidance_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl GuidanceConfig {
    /// Parses `{"null_class_label": K, "guidance_scale": S}` (the scale defaults to 1); any
    /// other key, or anything but an object, is an error saying what was expected.
    ///
    /// ```
    /// use ddpm_runtime::onnx::signature::GuidanceConfig;
    /// assert_eq!(GuidanceConfig::from_json_str(r#"{"null_class_label": 10}"#)?.guidance_scale, 1.0);
    /// assert!(GuidanceConfig::from_json_str("[10]").is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        let expected = "expected {\"null_class_label\": K, \"guidance_scale\": S}";
        let value: Value = serde_json::from_str(text).map_err(|e| format!("{e}; {expected}"))?;
        if !value.is_object() {
            return Err(format!("found {value}, {expected}"));
        }
        serde_json::from_value(value).map_err(|e| format!("{e}; {expected}"))
    }
}

fn usize_key(config: Option<&Value>, key: &str) -> Option<usize> {
    config?.get(key)?.as_u64().map(|v| v as usize)
}

impl ModelSignature {
    /// Reads a signature from a graph's inputs, outputs and custom metadata (`metadata`
    /// answers a key). `path` names the model in errors.
    ///
    /// ```
    /// use ddpm_runtime::onnx::signature::{ModelSignature, TensorSpec};
    /// use ort::value::TensorElementType as T;
    /// let inputs = [TensorSpec::new("sample", T::Float32, &[-1, 1, 28, 28]).with_batch_symbol("batch"),
    ///               TensorSpec::new("timestep", T::Int64, &[])];
    /// let outputs = [TensorSpec::new("noise_pred", T::Float32, &[-1, 1, 28, 28])];
    /// let sig = ModelSignature::from_parts(&inputs, &outputs, |_| None, std::path::Path::new("m.onnx"))?;
    /// assert_eq!((sig.shape.channels, sig.shape.height, sig.shape.out_channels), (1, 28, 1));
    /// assert_eq!(sig.batch_dim.as_deref(), Some("batch"));
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn from_parts(
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        metadata: impl Fn(&str) -> Option<String>,
        path: &Path,
    ) -> Result<Self> {
        let bad = |msg: String| Error::bad_file(path, msg);
        let unet_config = match metadata("unet_config") {
            Some(text) => {
                let v = serde_json::from_str::<Value>(&text).map_err(|e| bad(format!("metadata unet_config: invalid JSON: {e}")))?;
                if !v.is_object() {
                    return Err(bad("metadata unet_config: expected a JSON object".into()));
                }
                Some(v)
            }
            None => None,
        };
        let scheduler_config = match metadata("scheduler_config") {
            Some(text) => Some(SchedulerConfig::from_json_str(&text, &format!("{}: metadata scheduler_config", path.display()))?),
            None => None,
        };
        let guidance = match metadata("guidance_config") {
            Some(text) => {
                let g = GuidanceConfig::from_json_str(&text).map_err(|e| bad(format!("metadata guidance_config: {e}")))?;
                if !(g.guidance_scale.is_finite() && g.guidance_scale >= 0.0) {
                    return Err(bad(format!(
                        "metadata guidance_config: guidance_scale {}, expected a finite number >= 0",
                        g.guidance_scale
                    )));
                }
                Some(g)
            }
            None => None,
        };
        let unet = unet_config.as_ref();

        let mut tensors = Vec::with_capacity(inputs.len());
        for i in inputs {
            match i.elem {
                Some(t) => tensors.push((i, t)),
                None => return Err(bad(format!("input `{}` is not a tensor", i.name))),
            }
        }
        let find = |names: &[&str]| tensors.iter().find(|(i, _)| names.contains(&i.name.as_str())).copied();
        let (sample, sample_ty) = find(&["sample", "x", "input"])
            .or_else(|| tensors.iter().find(|(i, _)| i.shape.len() == 4).copied())
            .ok_or_else(|| bad("no `sample` input of shape [B, C, H, W]".into()))?;
        if sample_ty != TensorElementType::Float32 || sample.shape.len() != 4 {
            return Err(bad(format!(
                "input `{}`: found {sample_ty:?} of rank {}, expected float32 [B, C, H, W]",
                sample.name,
                sample.shape.len()
            )));
        }
        let (t_input, t_ty) = find(&["timestep", "timesteps", "t"]).ok_or_else(|| bad("no `timestep` input".into()))?;
        let elem = match t_ty {
            TensorElementType::Int64 => TimestepType::Int64,
            TensorElementType::Int32 => TimestepType::Int32,
            TensorElementType::Float32 => TimestepType::Float32,
            other => return Err(bad(format!("input `{}`: found {other:?}, expected int64, int32 or float32", t_input.name))),
        };
        let rank = match t_input.shape.as_slice() {
            [] => TimestepRank::Scalar,
            [1] => TimestepRank::Single,
            [_] => TimestepRank::PerItem,
            other => return Err(bad(format!("input `{}`: found rank {}, expected a scalar or [B]", t_input.name, other.len()))),
        };
        let class_input = find(&["class_labels", "class_label", "y"]);
        if let Some((c, t)) = class_input {
            if !matches!(t, TensorElementType::Int64 | TensorElementType::Int32) {
                return Err(bad(format!("input `{}`: found {t:?}, expected int64", c.name)));
            }
        }
        let out = outputs.first().ok_or_else(|| bad("the model has no output".into()))?;

        let dim = |v: i64| if v > 0 { Some(v as usize) } else { None };
        let sample_size = unet.and_then(|c| c.get("sample_size")).and_then(|v| {
            v.as_u64().map(|s| (s as usize, s as usize)).or_else(|| {
                let a = v.as_array()?;
                Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))
            })
        });
        let channels = dim(sample.shape[1])
            .or_else(|| usize_key(unet, "in_channels"))
            .ok_or_else(|| bad("input `sample` has no channel count and metadata unet_config no in_channels".into()))?;
        let (height, width) = match (dim(sample.shape[2]), dim(sample.shape[3])) {
            (Some(h), Some(w)) => (h, w),
            _ => sample_size
                .ok_or_else(|| bad("input `sample` has a dynamic height/width and metadata unet_config no sample_size".into()))?,
        };
        let out_channels = out.shape.get(1).copied().and_then(dim).or_else(|| usize_key(unet, "out_channels")).unwrap_or(channels);
        let num_classes = match (class_input, usize_key(unet, "num_class_embeds")) {
            (Some(_), Some(n)) => Some(n),
            (Some((c, _)), None) => {
                return Err(bad(format!("input `{}` is there but metadata unet_config has no num_class_embeds", c.name)))
            }
            (None, _) => None,
        };
        if let Some(g) = &guidance {
            if !num_classes.is_some_and(|k| g.null_class_label >= 0 && (g.null_class_label as usize) < k) {
                return Err(bad(format!(
                    "metadata guidance_config: null_class_label {} is not a class of this model ({} classes)",
                    g.null_class_label,
                    num_classes.unwrap_or(0)
                )));
            }
        }
        if channels == 0 || height == 0 || width == 0 || out_channels == 0 {
            return Err(bad(format!(
                "input `{}`: a sample of {channels}x{height}x{width} with {out_channels} output channels, expected every size at least 1",
                sample.name
            )));
        }
        crate::limits::check_memory(
            &format!(
                "{}: one sample of {channels}x{height}x{width} float32 (input `{}`, and {out_channels} output channels)",
                path.display(),
                sample.name
            ),
            crate::limits::bytes_of(&[channels.max(out_channels), height, width], 4 * 4),
        )?;
        if let Some(n) = num_classes {
            if n > 1 << 24 {
                return Err(bad(format!("metadata unet_config: num_class_embeds {n}, expected at most {}", 1 << 24)));
            }
        }
        let mut feeds = Vec::with_capacity(inputs.len());
        for i in inputs {
            feeds.push(if i.name == sample.name {
                Feed::Sample
            } else if i.name == t_input.name {
                Feed::Timestep
            } else if class_input.is_some_and(|(c, _)| c.name == i.name) {
                Feed::Labels
            } else if i.name == "coefficients" {
                Feed::Coefficients
            } else if i.name == "noise" {
                Feed::Noise
            } else {
                return Err(bad(format!("input `{}` is not one of sample, timestep, class_labels: this runtime cannot feed it", i.name)));
            });
        }
        let has_output = |name: &str| outputs.iter().any(|o| o.name == name);
        let fused_outputs = has_output("prev_sample") && has_output("pred_original_sample");
        let (coefficients, noise) = (feeds.contains(&Feed::Coefficients), feeds.contains(&Feed::Noise));
        if (coefficients && noise) != fused_outputs || coefficients != noise {
            return Err(bad(
                "a fused-step graph needs inputs coefficients and noise and outputs prev_sample and pred_original_sample".into()
            ));
        }
        let batch_dim = match (sample.shape.first(), sample.symbols.first()) {
            (Some(&d), Some(s)) if d < 0 && !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        Ok(Self {
            shape: ModelShape { channels, height, width, out_channels, num_classes },
            feeds,
            timestep: TimestepInput { elem, rank },
            class_type: class_input.map(|(_, t)| t),
            output: out.name.clone(),
            fused: fused_outputs,
            batch_dim,
            fixed_batch: dim(sample.shape[0]),
            scheduler_config,
            unet_config,
            guidance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TensorElementType as T;

    fn path() -> &'static Path {
        Path::new("m.onnx")
    }
    fn sample() -> TensorSpec {
        TensorSpec::new("sample", T::Float32, &[-1, 3, 32, 32]).with_batch_symbol("batch")
    }
    fn timestep(elem: T, shape: &[i64]) -> TensorSpec {
        TensorSpec::new("timestep", elem, shape)
    }
    fn out() -> Vec<TensorSpec> {
        vec![TensorSpec::new("noise_pred", T::Float32, &[-1, 3, 32, 32])]
    }
    fn meta(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
    }
    fn read(inputs: &[TensorSpec], outputs: &[TensorSpec], m: &'static [(&'static str, &'static str)]) -> Result<ModelSignature> {
        ModelSignature::from_parts(inputs, outputs, meta(m), path())
    }

    #[test]
    fn timestep_inputs_of_every_type_and_rank() {
        let cases = [
            (T::Int64, vec![], TimestepType::Int64, TimestepRank::Scalar),
            (T::Int64, vec![1], TimestepType::Int64, TimestepRank::Single),
            (T::Int64, vec![-1], TimestepType::Int64, TimestepRank::PerItem),
            (T::Int32, vec![], TimestepType::Int32, TimestepRank::Scalar),
            (T::Int32, vec![-1], TimestepType::Int32, TimestepRank::PerItem),
            (T::Float32, vec![1], TimestepType::Float32, TimestepRank::Single),
            (T::Float32, vec![8], TimestepType::Float32, TimestepRank::PerItem),
        ];
        for (elem, shape, want_elem, want_rank) in cases {
            let sig = read(&[sample(), timestep(elem, &shape)], &out(), &[]).unwrap();
            assert_eq!(sig.timestep, TimestepInput { elem: want_elem, rank: want_rank }, "{elem:?} {shape:?}");
            assert_eq!(sig.feeds, vec![Feed::Sample, Feed::Timestep]);
        }
        let e = read(&[sample(), timestep(T::Float64, &[])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("expected int64, int32 or float32"), "{e}");
        let e = read(&[sample(), timestep(T::Int64, &[1, 1])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("rank 2"), "{e}");
    }

    #[test]
    fn sample_inputs_of_wrong_type_or_rank_are_refused() {
        let e = read(&[TensorSpec::new("sample", T::Float16, &[-1, 3, 32, 32]), timestep(T::Int64, &[])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("expected float32 [B, C, H, W]"), "{e}");
        let e = read(&[TensorSpec::new("sample", T::Float32, &[-1, 3, 32]), timestep(T::Int64, &[])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("rank 3"), "{e}");
        let e = read(&[timestep(T::Int64, &[])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("no `sample` input"), "{e}");
        let e = read(&[sample()], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("no `timestep` input"), "{e}");
        let e = read(&[sample(), timestep(T::Int64, &[])], &[], &[]).unwrap_err();
        assert!(e.to_string().contains("no output"), "{e}");
        let not_tensor = TensorSpec { elem: None, ..TensorSpec::new("extra", T::Float32, &[]) };
        let e = read(&[sample(), timestep(T::Int64, &[]), not_tensor], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("not a tensor"), "{e}");
        let unknown = TensorSpec::new("guidance", T::Float32, &[1]);
        let e = read(&[sample(), timestep(T::Int64, &[]), unknown], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("input `guidance`"), "{e}");
    }

    #[test]
    fn shapes_come_from_the_graph_or_the_metadata() {
        let dynamic = TensorSpec::new("sample", T::Float32, &[-1, -1, -1, -1]);
        let sig = read(
            &[dynamic.clone(), timestep(T::Int64, &[])],
            &[TensorSpec::new("noise_pred", T::Float32, &[-1, -1, -1, -1])],
            &[("unet_config", r#"{"in_channels": 3, "out_channels": 6, "sample_size": [16, 24]}"#)],
        )
        .unwrap();
        assert_eq!((sig.shape.channels, sig.shape.height, sig.shape.width, sig.shape.out_channels), (3, 16, 24, 6));
        assert_eq!(sig.batch_dim, None, "no symbol, no named batch dimension");
        assert_eq!(sig.fixed_batch, None);
        let e = read(&[dynamic, timestep(T::Int64, &[])], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("no in_channels"), "{e}");
        let fixed = TensorSpec::new("sample", T::Float32, &[4, 1, 8, 8]);
        let sig = read(&[fixed, timestep(T::Int64, &[])], &out(), &[]).unwrap();
        assert_eq!(sig.fixed_batch, Some(4));
        assert_eq!(sig.shape.out_channels, 3, "the output's channels");
        let zero = TensorSpec::new("sample", T::Float32, &[1, 1, -1, -1]);
        let e = read(&[zero, timestep(T::Int64, &[])], &out(), &[("unet_config", r#"{"sample_size": 0}"#)]).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn metadata_present_absent_and_malformed() {
        let inputs = [sample(), timestep(T::Int64, &[])];
        let none = read(&inputs, &out(), &[]).unwrap();
        assert!(none.scheduler_config.is_none() && none.unet_config.is_none());
        let some =
            read(&inputs, &out(), &[("scheduler_config", r#"{"num_train_timesteps": 500}"#), ("unet_config", r#"{"sample_size": 32}"#)])
                .unwrap();
        assert_eq!(some.scheduler_config.and_then(|c| c.num_train_timesteps), Some(500));
        assert!(some.unet_config.is_some());
        let e = read(&inputs, &out(), &[("unet_config", "{not json")]).unwrap_err();
        assert!(e.to_string().contains("metadata unet_config: invalid JSON"), "{e}");
        let e = read(&inputs, &out(), &[("unet_config", "[1, 2]")]).unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
        let e = read(&inputs, &out(), &[("scheduler_config", r#"{"beta_end": 2}"#)]).unwrap_err();
        assert!(e.to_string().contains("metadata scheduler_config: config key `beta_end`"), "{e}");
        let e = read(&inputs, &out(), &[("scheduler_config", "nope")]).unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
    }

    #[test]
    fn class_labels_need_their_class_count() {
        let labels = TensorSpec::new("class_labels", T::Int64, &[-1]);
        let inputs = [sample(), timestep(T::Int64, &[]), labels.clone()];
        let e = read(&inputs, &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("no num_class_embeds"), "{e}");
        let sig = read(&inputs, &out(), &[("unet_config", r#"{"num_class_embeds": 10}"#)]).unwrap();
        assert_eq!(sig.shape.num_classes, Some(10));
        assert_eq!(sig.class_type, Some(T::Int64));
        let floats = TensorSpec::new("class_labels", T::Float32, &[-1]);
        let e = read(&[sample(), timestep(T::Int64, &[]), floats], &out(), &[("unet_config", r#"{"num_class_embeds": 10}"#)]).unwrap_err();
        assert!(e.to_string().contains("expected int64"), "{e}");
    }

    #[test]
    fn guidance_metadata_present_absent_and_malformed() {
        let labels = TensorSpec::new("class_labels", T::Int64, &[-1]);
        let inputs = [sample(), timestep(T::Int64, &[]), labels];
        let unet = ("unet_config", r#"{"num_class_embeds": 11}"#);
        let read = |inputs: &[TensorSpec], outputs: &[TensorSpec], pairs: &[(&str, &str)]| {
            ModelSignature::from_parts(inputs, outputs, |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string()), path())
        };
        let none = read(&inputs, &out(), &[unet]).unwrap();
        assert_eq!(none.guidance, None);
        let g = read(&inputs, &out(), &[unet, ("guidance_config", r#"{"null_class_label": 10, "guidance_scale": 3.0}"#)]).unwrap();
        assert_eq!(g.guidance, Some(GuidanceConfig { null_class_label: 10, guidance_scale: 3.0 }));
        let default_scale = read(&inputs, &out(), &[unet, ("guidance_config", r#"{"null_class_label": 10}"#)]).unwrap();
        assert_eq!(default_scale.guidance.map(|g| g.guidance_scale), Some(1.0));
        for (text, needle) in [
            (r#"{"null_class_label": 11}"#, "not a class of this model"),
            (r#"{"null_class_label": -1}"#, "not a class of this model"),
            (r#"{"null_class_label": 10, "guidance_scale": -2}"#, "guidance_scale -2"),
            (r#"{"null_label": 10}"#, "metadata guidance_config"),
            ("[10]", "metadata guidance_config"),
        ] {
            let e = read(&inputs, &out(), &[unet, ("guidance_config", text)]).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        // A model that is not class-conditional has no null label to name.
        let e = read(&[sample(), timestep(T::Int64, &[])], &out(), &[("guidance_config", r#"{"null_class_label": 0}"#)]).unwrap_err();
        assert!(e.to_string().contains("not a class of this model"), "{e}");
    }

    #[test]
    fn fused_step_graphs_need_all_four_tensors() {
        let coefficients = TensorSpec::new("coefficients", T::Float32, &[9]);
        let noise = TensorSpec::new("noise", T::Float32, &[-1, 3, 32, 32]);
        let mut outputs = out();
        outputs.push(TensorSpec::new("prev_sample", T::Float32, &[-1, 3, 32, 32]));
        outputs.push(TensorSpec::new("pred_original_sample", T::Float32, &[-1, 3, 32, 32]));
        let sig = read(&[sample(), timestep(T::Int64, &[]), coefficients.clone(), noise.clone()], &outputs, &[]).unwrap();
        assert!(sig.fused);
        assert_eq!(sig.feeds, vec![Feed::Sample, Feed::Timestep, Feed::Coefficients, Feed::Noise]);
        let e = read(&[sample(), timestep(T::Int64, &[]), coefficients], &outputs, &[]).unwrap_err();
        assert!(e.to_string().contains("a fused-step graph needs"), "{e}");
        let e = read(&[sample(), timestep(T::Int64, &[]), noise], &out(), &[]).unwrap_err();
        assert!(e.to_string().contains("a fused-step graph needs"), "{e}");
    }
}
