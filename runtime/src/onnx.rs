//! The ONNX Runtime backend: a [`Denoiser`] over a `.onnx` file of the project's contract
//! (inputs `sample`, `timestep`, optional `class_labels`; output `noise_pred`; metadata
//! `unet_config` and `scheduler_config`), loaded through ort's `load-dynamic`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use serde_json::Value;

use crate::config::SchedulerConfig;
use crate::denoiser::{Denoiser, ModelShape};
use crate::error::{Error, Result};

/// The library path recorded at build time (see build.rs).
const RECORDED_DYLIB: Option<&str> = option_env!("DDPM_RS_ORT_DYLIB_RECORDED");

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads ONNX Runtime once per process: from `explicit` when given (and only from there),
/// else from `ORT_DYLIB_PATH`, else from the path the set-up recorded at build time, else
/// from the system's library path. The error lists every attempt.
pub fn environment(explicit: Option<&Path>) -> Result<Environment> {
    let mut guard = ENVIRONMENT.lock().map_err(|_| Error::OrtLoad("a previous attempt panicked".into()))?;
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let candidates: Vec<(String, PathBuf)> = match explicit {
        Some(p) => vec![("explicit path".into(), p.to_path_buf())],
        None => {
            let mut c = Vec::new();
            if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
                c.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
            }
            if let Some(p) = RECORDED_DYLIB {
                c.push(("path recorded by the set-up".into(), PathBuf::from(p)));
            }
            c.push(("system library path".into(), PathBuf::from("libonnxruntime.so")));
            c
        }
    };
    let mut tried = Vec::new();
    for (source, path) in candidates {
        if path.is_absolute() && !path.exists() {
            tried.push(format!("{} ({source}): not found", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder.with_name("ddpm-rs").build()?;
                tracing::debug!("ONNX Runtime loaded from {} ({source})", path.display());
                *guard = Some(env.clone());
                return Ok(env);
            }
            Err(e) => tried.push(format!("{} ({source}): {e}", path.display())),
        }
    }
    Err(Error::OrtLoad(format!(
        "{}; run `make build` (or scripts/setup-env.sh) to install it, or set ORT_DYLIB_PATH",
        tried.join("; ")
    )))
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
}

impl std::str::FromStr for ExecutionProvider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "tensorrt" => Ok(Self::TensorRt),
            "openvino" => Ok(Self::OpenVino),
            other => Err(Error::InvalidArgument(format!(
                "execution provider: found \"{other}\", expected one of cpu, cuda, tensorrt, openvino"
            ))),
        }
    }
}

impl ExecutionProvider {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
            Self::OpenVino => "openvino",
        }
    }

    /// Registers this provider on a session builder; an error if it is not there.
    fn register(self, builder: ort::session::builder::SessionBuilder) -> Result<ort::session::builder::SessionBuilder> {
        let unavailable = |msg: &str| Error::ExecutionProvider { ep: self.name().into(), msg: msg.into() };
        match self {
            Self::Cpu => Ok(builder),
            #[cfg(feature = "cuda")]
            Self::Cuda => {
                use ort::ep::ExecutionProvider as _;
                if !ort::ep::CUDA::is_available()? {
                    return Err(unavailable("the loaded ONNX Runtime library has no CUDA support (install onnxruntime-gpu)"));
                }
                Ok(builder
                    .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                    .map_err(|e| unavailable(&e.to_string()))?)
            }
            #[cfg(feature = "tensorrt")]
            Self::TensorRt => {
                use ort::ep::ExecutionProvider as _;
                if !ort::ep::TensorRT::is_available()? {
                    return Err(unavailable("the loaded ONNX Runtime library has no TensorRT support (install onnxruntime-gpu)"));
                }
                Ok(builder
                    .with_execution_providers([ort::ep::TensorRT::default().build().error_on_failure()])
                    .map_err(|e| unavailable(&e.to_string()))?)
            }
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => Err(unavailable("this build has no CUDA support (build ddpm-runtime with --features cuda)")),
            #[cfg(not(feature = "tensorrt"))]
            Self::TensorRt => {
                Err(unavailable("this build has no TensorRT support (build ddpm-runtime with --features tensorrt)"))
            }
            Self::OpenVino => Err(unavailable("this build has no OpenVINO support")),
        }
    }
}

/// How the model declares its timestep input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimestepInput {
    Int64 { scalar: bool, single: bool },
    Int32 { scalar: bool, single: bool },
    Float32 { scalar: bool, single: bool },
}

/// Options for loading a model; see [`OnnxDenoiser::builder`].
#[derive(Debug, Clone)]
pub struct OnnxDenoiserBuilder {
    dylib: Option<PathBuf>,
    providers: Vec<ExecutionProvider>,
    intra_threads: Option<usize>,
}

pub use crate::sys::physical_cores;

impl OnnxDenoiserBuilder {
    /// Load ONNX Runtime from this library file (see [`environment`]).
    pub fn dylib(mut self, path: impl Into<PathBuf>) -> Self {
        self.dylib = Some(path.into());
        self
    }
    /// The execution provider (default: CPU). An unavailable provider is an error.
    pub fn execution_provider(mut self, ep: ExecutionProvider) -> Self {
        self.providers = vec![ep];
        self
    }
    /// Providers tried in order; the first that registers is used (an explicit fallback list).
    pub fn execution_providers_with_fallback(mut self, eps: Vec<ExecutionProvider>) -> Self {
        self.providers = eps;
        self
    }
    /// Intra-op threads (default: the number of physical cores).
    pub fn intra_threads(mut self, n: usize) -> Self {
        self.intra_threads = Some(n);
        self
    }

    /// Loads a model file.
    pub fn from_file(self, path: impl AsRef<Path>) -> Result<OnnxDenoiser> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.load(&bytes, path)
    }

    /// Loads a model from memory (`name` is used in messages).
    pub fn from_memory(self, bytes: &[u8], name: &str) -> Result<OnnxDenoiser> {
        self.load(bytes, Path::new(name))
    }

    fn load(self, bytes: &[u8], path: &Path) -> Result<OnnxDenoiser> {
        let env = environment(self.dylib.as_deref())?;
        let threads = self.intra_threads.unwrap_or_else(physical_cores);
        let mut last_err = None;
        let mut session = None;
        for (i, ep) in self.providers.iter().enumerate() {
            let builder = Session::builder(&env)?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(ort::Error::from)?
                .with_intra_threads(threads)
                .map_err(ort::Error::from)?;
            match ep.register(builder) {
                Ok(mut b) => {
                    let s = b.commit_from_memory(bytes).map_err(|e| Error::bad_file(path, format!("not a loadable ONNX model: {e}")))?;
                    if i > 0 {
                        tracing::info!("execution provider {} used (fallback)", ep.name());
                    }
                    session = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let session = match session {
            Some(s) => s,
            None => return Err(last_err.unwrap_or_else(|| Error::InvalidArgument("no execution provider given".into()))),
        };
        OnnxDenoiser::from_session(session, path)
    }
}

/// A `.onnx` U-Net run by ONNX Runtime.
pub struct OnnxDenoiser {
    session: Session,
    sample_input: String,
    timestep_input: (String, TimestepInput),
    class_input: Option<(String, TensorElementType)>,
    output: String,
    shape: ModelShape,
    scheduler_config: Option<SchedulerConfig>,
    unet_config: Option<Value>,
}

fn tensor_info(vt: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

fn usize_key(config: &Option<Value>, key: &str) -> Option<usize> {
    config.as_ref()?.get(key)?.as_u64().map(|v| v as usize)
}

impl OnnxDenoiser {
    /// Options: library path, execution providers, threads.
    pub fn builder() -> OnnxDenoiserBuilder {
        OnnxDenoiserBuilder { dylib: None, providers: vec![ExecutionProvider::Cpu], intra_threads: None }
    }

    fn from_session(session: Session, path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::bad_file(path, msg);
        let meta = session.metadata()?;
        let unet_config = match meta.custom("unet_config") {
            Some(text) => Some(serde_json::from_str::<Value>(&text).map_err(|e| bad(format!("metadata unet_config: invalid JSON: {e}")))?),
            None => None,
        };
        let scheduler_config = match meta.custom("scheduler_config") {
            Some(text) => Some(
                SchedulerConfig::from_json_str(&text, &format!("{}: metadata scheduler_config", path.display()))?,
            ),
            None => None,
        };
        drop(meta);

        let inputs: Vec<(String, TensorElementType, Vec<i64>)> = session
            .inputs()
            .iter()
            .filter_map(|o| tensor_info(o.dtype()).map(|(t, s)| (o.name().to_string(), t, s)))
            .collect();
        let find = |names: &[&str]| inputs.iter().find(|(n, _, _)| names.contains(&n.as_str())).cloned();
        let (sample_name, sample_ty, sample_shape) = find(&["sample", "x", "input"])
            .or_else(|| inputs.iter().find(|(_, _, s)| s.len() == 4).cloned())
            .ok_or_else(|| bad("no `sample` input of shape [B, C, H, W]".into()))?;
        if sample_ty != TensorElementType::Float32 || sample_shape.len() != 4 {
            return Err(bad(format!(
                "input `{sample_name}`: found {sample_ty:?} of rank {}, expected float32 [B, C, H, W]",
                sample_shape.len()
            )));
        }
        let (t_name, t_ty, t_shape) = find(&["timestep", "timesteps", "t"])
            .ok_or_else(|| bad("no `timestep` input".into()))?;
        let scalar = t_shape.is_empty();
        let single = t_shape.first() == Some(&1);
        let t_kind = match t_ty {
            TensorElementType::Int64 => TimestepInput::Int64 { scalar, single },
            TensorElementType::Int32 => TimestepInput::Int32 { scalar, single },
            TensorElementType::Float32 => TimestepInput::Float32 { scalar, single },
            other => return Err(bad(format!("input `{t_name}`: found {other:?}, expected int64, int32 or float32"))),
        };
        let class_input = find(&["class_labels", "class_label", "y"]).map(|(n, t, _)| (n, t));
        if let Some((n, t)) = &class_input {
            if !matches!(t, TensorElementType::Int64 | TensorElementType::Int32) {
                return Err(bad(format!("input `{n}`: found {t:?}, expected int64")));
            }
        }
        let out = session.outputs().first().ok_or_else(|| bad("the model has no output".into()))?;
        let output = out.name().to_string();
        let out_shape = tensor_info(out.dtype()).map(|(_, s)| s).unwrap_or_default();

        let dim = |v: i64| if v > 0 { Some(v as usize) } else { None };
        let sample_size = unet_config.as_ref().and_then(|c| c.get("sample_size")).and_then(|v| {
            v.as_u64().map(|s| (s as usize, s as usize)).or_else(|| {
                let a = v.as_array()?;
                Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))
            })
        });
        let channels = dim(sample_shape[1])
            .or_else(|| usize_key(&unet_config, "in_channels"))
            .ok_or_else(|| bad("input `sample` has no channel count and metadata unet_config no in_channels".into()))?;
        let (height, width) = match (dim(sample_shape[2]), dim(sample_shape[3])) {
            (Some(h), Some(w)) => (h, w),
            _ => sample_size.ok_or_else(|| {
                bad("input `sample` has a dynamic height/width and metadata unet_config no sample_size".into())
            })?,
        };
        let out_channels = out_shape
            .get(1)
            .copied()
            .and_then(dim)
            .or_else(|| usize_key(&unet_config, "out_channels"))
            .unwrap_or(channels);
        let num_classes = match (&class_input, usize_key(&unet_config, "num_class_embeds")) {
            (Some(_), Some(n)) => Some(n),
            (Some((n, _)), None) => {
                return Err(bad(format!("input `{n}` is there but metadata unet_config has no num_class_embeds")))
            }
            (None, _) => None,
        };
        Ok(Self {
            session,
            sample_input: sample_name,
            timestep_input: (t_name, t_kind),
            class_input,
            output,
            shape: ModelShape { channels, height, width, out_channels, num_classes },
            scheduler_config,
            unet_config,
        })
    }

    /// The scheduler config of the model's metadata; the paper's defaults when there is
    /// none (said once, in the log).
    pub fn scheduler_config(&self) -> SchedulerConfig {
        match &self.scheduler_config {
            Some(c) => c.clone(),
            None => {
                tracing::warn!(
                    "the model has no scheduler_config metadata: using the DDPM paper's schedule (linear betas 1e-4..0.02, T = 1000, epsilon, fixed_small, clip_sample)"
                );
                SchedulerConfig::paper()
            }
        }
    }

    /// Whether the model carries its own scheduler config.
    pub fn has_scheduler_config(&self) -> bool {
        self.scheduler_config.is_some()
    }

    /// The `unet_config` metadata, if any.
    pub fn unet_config(&self) -> Option<&Value> {
        self.unet_config.as_ref()
    }
}

impl Denoiser for OnnxDenoiser {
    fn shape(&self) -> ModelShape {
        self.shape
    }

    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let s = self.shape;
        if sample.len() != batch * s.sample_len() {
            return Err(Error::Shape {
                name: "sample".into(),
                found: format!("{} values", sample.len()),
                expected: format!("[{batch}, {}, {}, {}]", s.channels, s.height, s.width),
            });
        }
        let x = Tensor::from_array((vec![batch as i64, s.channels as i64, s.height as i64, s.width as i64], sample.to_vec()))?;
        let t_shape = |scalar: bool, single: bool| -> Vec<i64> {
            if scalar {
                vec![]
            } else if single {
                vec![1]
            } else {
                vec![batch as i64]
            }
        };
        let t_value: ort::value::DynValue = match self.timestep_input.1 {
            TimestepInput::Int64 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![t; n]))?.into_dyn()
            }
            TimestepInput::Int32 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![t as i32; n]))?.into_dyn()
            }
            TimestepInput::Float32 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![t as f32; n]))?.into_dyn()
            }
        };
        let mut inputs: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)> = vec![
            (self.sample_input.as_str().into(), x.into_dyn().into()),
            (self.timestep_input.0.as_str().into(), t_value.into()),
        ];
        if let Some((name, ty)) = &self.class_input {
            let labels = class_labels.ok_or_else(|| {
                Error::InvalidArgument("the model is class-conditional: class labels are needed".into())
            })?;
            let v: ort::value::DynValue = if *ty == TensorElementType::Int32 {
                Tensor::from_array((vec![batch as i64], labels.iter().map(|&l| l as i32).collect::<Vec<_>>()))?.into_dyn()
            } else {
                Tensor::from_array((vec![batch as i64], labels.to_vec()))?.into_dyn()
            };
            inputs.push((name.as_str().into(), v.into()));
        }
        let outputs = self.session.run(inputs)?;
        let (shape, data) = outputs[self.output.as_str()].try_extract_tensor::<f32>()?;
        let expected_len = batch * s.out_channels * s.pixels();
        if data.len() != expected_len {
            return Err(Error::Shape {
                name: format!("model output `{}`", self.output),
                found: format!("{:?}", &shape[..]),
                expected: format!("[{batch}, {}, {}, {}]", s.out_channels, s.height, s.width),
            });
        }
        Ok(data.to_vec())
    }
}
