//! The ONNX Runtime backend: a [`Denoiser`] over a `.onnx` file of the project's contract
//! (inputs `sample`, `timestep`, optional `class_labels`; output `noise_pred`; metadata
//! `unet_config` and `scheduler_config`), loaded through ort's `load-dynamic`.


mod cache;
mod library;
mod provider;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use serde_json::Value;

use crate::config::SchedulerConfig;
use crate::denoiser::{Denoiser, ModelShape};
use crate::error::{Error, Result};
use crate::sampler::AffineStep;
use cache::{content_key, prune_cache, CACHE_KEEP};
use library::{environment_for, loaded_library};
pub use library::{environment, library_info, Library, LibraryInfo};
pub use provider::{ExecutionProvider, Precision};

/// How the model declares its timestep input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimestepInput {
    Int64 { scalar: bool, single: bool },
    Int32 { scalar: bool, single: bool },
    Float32 { scalar: bool, single: bool },
}

/// What the session options are made of (kept to build one session per batch size).
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    threads: usize,
    precision: Precision,
    cache_dir: Option<PathBuf>,
    static_shapes: bool,
}

/// Options for loading a model; see [`OnnxDenoiser::builder`].
#[derive(Debug, Clone)]
pub struct OnnxDenoiserBuilder {
    dylib: Option<PathBuf>,
    providers: Vec<ExecutionProvider>,
    providers_given: bool,
    intra_threads: Option<usize>,
    precision: Precision,
    cache_dir: Option<PathBuf>,
    static_shapes: bool,
    batch_size: Option<usize>,
}

pub use crate::sys::physical_cores;

impl OnnxDenoiserBuilder {
    /// Load ONNX Runtime from this library file (see [`environment`]).
    pub fn dylib(mut self, path: impl Into<PathBuf>) -> Self {
        self.dylib = Some(path.into());
        self
    }
    /// The execution provider (default: CPU, or OpenVINO for a reduced precision). An
    /// unavailable provider is an error.
    pub fn execution_provider(mut self, ep: ExecutionProvider) -> Self {
        self.providers = vec![ep];
        self.providers_given = true;
        self
    }
    /// Providers tried in order; the first that registers is used (an explicit fallback list).
    pub fn execution_providers_with_fallback(mut self, eps: Vec<ExecutionProvider>) -> Self {
        self.providers = eps;
        self.providers_given = true;
        self
    }
    /// Intra-op threads (default: the number of physical cores).
    pub fn intra_threads(mut self, n: usize) -> Self {
        self.intra_threads = Some(n);
        self
    }
    /// The arithmetic of the model (default fp32). [`Precision::Bf16`] runs on the OpenVINO
    /// execution provider, which is then the default provider.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// A folder where the optimized model (CPU) or the compiled one (OpenVINO, TensorRT) is
    /// kept after the first load, so that the next process starts faster. None by default.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
    /// One session per batch size with the batch dimension fixed (the default, true), or one
    /// session with a dynamic batch dimension. Fixed shapes let ONNX Runtime and OpenVINO
    /// plan memory and kernels once; each new batch size costs one more session.
    pub fn static_shapes(mut self, on: bool) -> Self {
        self.static_shapes = on;
        self
    }
    /// The batch size to prepare a session for while loading (others are prepared on first
    /// use).
    pub fn batch_size(mut self, batch: usize) -> Self {
        self.batch_size = Some(batch);
        self
    }

    /// Loads a model file.
    pub fn from_file(self, path: impl AsRef<Path>) -> Result<OnnxDenoiser> {
        let path = path.as_ref();
        // An ONNX protobuf holds at most 2 GiB.
        let bytes = crate::limits::read_regular_file(path, 2 << 30, "ONNX model")?;
        self.load(bytes.into(), path)
    }

    /// Loads a model from memory (`name` is used in messages).
    pub fn from_memory(self, bytes: &[u8], name: &str) -> Result<OnnxDenoiser> {
        self.load(Arc::from(bytes), Path::new(name))
    }

    fn load(self, bytes: Arc<[u8]>, path: &Path) -> Result<OnnxDenoiser> {
        if let Some(t) = self.intra_threads {
            crate::limits::check_threads("intra-op threads", t)?;
        }
        let cpu = crate::sys::CpuFeatures::get();
        // What runs: the requested precision, checked against the CPU, or auto's choice.
        let (precision, providers, choice) = match self.precision {
            Precision::Auto => {
                let openvino_allowed = !self.providers_given || self.providers.contains(&ExecutionProvider::OpenVino);
                if cpu.has_bf16() && openvino_allowed {
                    let fallback = if self.providers_given {
                        self.providers.iter().copied().filter(|&e| e != ExecutionProvider::OpenVino).collect()
                    } else {
                        vec![ExecutionProvider::Cpu]
                    };
                    (Precision::Bf16, vec![ExecutionProvider::OpenVino], Some(fallback))
                } else {
                    let why = if cpu.has_bf16() {
                        "the execution providers asked for do not include openvino".to_string()
                    } else {
                        format!("this CPU has no bf16 arithmetic: no avx512_bf16, no amx_bf16; it {}", cpu.summary())
                    };
                    let providers = if self.providers_given { self.providers.clone() } else { vec![ExecutionProvider::Cpu] };
                    return self.load_with(bytes, path, Precision::Fp32, providers, format!("precision auto: fp32 ({why})"));
                }
            }
            Precision::Bf16 => {
                Precision::Bf16.check_cpu()?;
                let providers = if self.providers_given { self.providers.clone() } else { vec![ExecutionProvider::OpenVino] };
                (Precision::Bf16, providers, None)
            }
            Precision::Fp32 => (Precision::Fp32, self.providers.clone(), None),
        };
        match choice {
            None => {
                let note = format!("precision {}", precision.name());
                self.load_with(bytes, path, precision, providers, note)
            }
            // auto on a bf16 CPU: bf16 on OpenVINO, else (no OpenVINO build) fp32, said so.
            Some(fallback) => {
                let why = format!("this CPU has {}", if cpu.avx512_bf16 { "avx512_bf16" } else { "amx_bf16" });
                match self.clone().load_with(bytes.clone(), path, precision, providers, format!("precision auto: bf16 on openvino ({why})")) {
                    Ok(m) => Ok(m),
                    Err(e) if !fallback.is_empty() => {
                        let note = format!("precision auto: fp32 ({why}, but bf16 is not available: {e})");
                        self.load_with(bytes, path, Precision::Fp32, fallback, note)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn load_with(
        self,
        bytes: Arc<[u8]>,
        path: &Path,
        precision: Precision,
        providers: Vec<ExecutionProvider>,
        choice: String,
    ) -> Result<OnnxDenoiser> {
        let options = LoadOptions {
            threads: self.intra_threads.unwrap_or_else(physical_cores),
            precision,
            cache_dir: self.cache_dir.clone(),
            static_shapes: self.static_shapes,
        };
        // The first provider that registers on a probe session is the one used.
        let mut last_err = None;
        let mut chosen = None;
        for (i, &ep) in providers.iter().enumerate() {
            let env = match environment_for(self.dylib.as_deref(), ep.library()) {
                Ok(env) => env,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let builder = Session::builder(&env)?
                .with_optimization_level(GraphOptimizationLevel::Disable)
                .map_err(ort::Error::from)?
                .with_intra_threads(1)
                .map_err(ort::Error::from)?;
            // The probe compiles nothing into the cache folder (only the real sessions do).
            let probe_options = LoadOptions { cache_dir: None, ..options.clone() };
            match ep.register(builder, &probe_options).and_then(|_| probe(&env, &bytes, path)) {
                Ok(probe) => {
                    if i > 0 {
                        tracing::info!("execution provider {} used (fallback)", ep.name());
                    }
                    chosen = Some((ep, env, probe));
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((ep, env, probe)) = chosen else {
            return Err(last_err.unwrap_or_else(|| Error::InvalidArgument("no execution provider given".into())));
        };
        let mut model = OnnxDenoiser::from_probe(probe, path)?;
        model.env = Some(env);
        model.bytes = bytes;
        model.ep = ep;
        model.options = options;
        model.path = path.to_path_buf();
        model.choice = format!("{choice} on {}", ep.name());
        if !model.options.static_shapes || model.batch_dim.is_none() {
            // One session for every batch size.
            model.dynamic = Some(model.make_session(None)?);
        } else if let Some(b) = self.batch_size {
            model.bound_for(b)?;
        }
        Ok(model)
    }
}

/// Reads a model's inputs, outputs and metadata with a session that does no optimization.
fn probe(env: &Environment, bytes: &[u8], path: &Path) -> Result<Session> {
    Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(ort::Error::from)?
        .with_intra_threads(1)
        .map_err(ort::Error::from)?
        .commit_from_memory(bytes)
        .map_err(|e| Error::bad_file(path, format!("not a loadable ONNX model: {e}")))
}

/// What is fed to one input of the graph, in the graph's input order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Feed {
    Sample,
    Timestep,
    Labels,
    /// Of a fused-step graph.
    Coefficients,
    Noise,
}

/// A session for one batch size, with its input and output buffers.
struct Bound {
    batch: usize,
    /// None: the denoiser's dynamic session.
    session: Option<Session>,
    timestep: ort::value::DynValue,
    labels: Option<ort::value::DynValue>,
    /// `noise_pred` pre-allocated.
    run_options: RunOptions<HasSelectedOutputs>,
    /// A fused-step graph's `coefficients` and `noise` inputs, and its outputs
    /// `prev_sample` and `pred_original_sample` pre-allocated.
    fused: Option<(ort::value::DynValue, ort::value::DynValue, RunOptions<HasSelectedOutputs>)>,
}

/// A `.onnx` U-Net run by ONNX Runtime.
///
/// Each batch size gets its own session with the batch dimension fixed (see
/// [`OnnxDenoiserBuilder::static_shapes`]), a timestep tensor that is rewritten in place and
/// a pre-allocated output, so that a step of a chain allocates no tensor.
pub struct OnnxDenoiser {
    env: Option<Environment>,
    bytes: Arc<[u8]>,
    path: PathBuf,
    ep: ExecutionProvider,
    options: LoadOptions,
    /// The symbolic name of the batch dimension of `sample`, when it has one.
    batch_dim: Option<String>,
    /// The batch size the graph fixes, when it fixes one.
    fixed_batch: Option<usize>,
    /// A graph exported with `--fused-step`.
    fused: bool,
    feeds: Vec<Feed>,
    dynamic: Option<Session>,
    bound: Vec<Bound>,
    timestep_input: TimestepInput,
    class_type: Option<TensorElementType>,
    output: String,
    shape: ModelShape,
    scheduler_config: Option<SchedulerConfig>,
    unet_config: Option<Value>,
    /// What runs and why, in one line ("precision auto: fp32 (...) on cpu").
    choice: String,
    /// Whether the compiled blobs OpenVINO wrote (at a session's first run) have their
    /// checksums recorded.
    cache_recorded: bool,
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
    /// Options: library path, execution providers, precision, threads, cache folder.
    pub fn builder() -> OnnxDenoiserBuilder {
        OnnxDenoiserBuilder {
            dylib: None,
            providers: vec![ExecutionProvider::Cpu],
            providers_given: false,
            intra_threads: None,
            precision: Precision::Fp32,
            cache_dir: None,
            static_shapes: true,
            batch_size: None,
        }
    }

    fn from_probe(session: Session, path: &Path) -> Result<Self> {
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
        if inputs.len() != session.inputs().len() {
            return Err(bad("an input of the model is not a tensor".into()));
        }
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
        if channels == 0 || height == 0 || width == 0 || out_channels == 0 {
            return Err(bad(format!(
                "input `{sample_name}`: a sample of {channels}x{height}x{width} with {out_channels} output channels, expected every size at least 1"
            )));
        }
        crate::limits::check_memory(
            &format!("{}: one sample of {channels}x{height}x{width} float32 (input `{sample_name}`, and {out_channels} output channels)", path.display()),
            crate::limits::bytes_of(&[channels.max(out_channels), height, width], 4 * 4),
        )?;
        if let Some(n) = num_classes {
            if n > 1 << 24 {
                return Err(bad(format!("metadata unet_config: num_class_embeds {n}, expected at most {}", 1 << 24)));
            }
        }
        let mut feeds = Vec::new();
        for (name, _, _) in &inputs {
            feeds.push(if *name == sample_name {
                Feed::Sample
            } else if *name == t_name {
                Feed::Timestep
            } else if class_input.as_ref().is_some_and(|(n, _)| n == name) {
                Feed::Labels
            } else if name == "coefficients" {
                Feed::Coefficients
            } else if name == "noise" {
                Feed::Noise
            } else {
                return Err(bad(format!(
                    "input `{name}` is not one of sample, timestep, class_labels: this runtime cannot feed it"
                )));
            });
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let has_fused_outputs = outputs.contains(&"prev_sample") && outputs.contains(&"pred_original_sample");
        let has_fused_inputs = feeds.contains(&Feed::Coefficients) && feeds.contains(&Feed::Noise);
        if has_fused_inputs != has_fused_outputs || feeds.contains(&Feed::Coefficients) != feeds.contains(&Feed::Noise) {
            return Err(bad(
                "a fused-step graph needs inputs coefficients and noise and outputs prev_sample and pred_original_sample".into(),
            ));
        }
        let batch_dim = session.inputs().iter().find(|o| o.name() == sample_name).and_then(|o| match o.dtype() {
            ValueType::Tensor { shape, dimension_symbols, .. } if shape.first().is_some_and(|&d| d < 0) => {
                dimension_symbols.first().filter(|s| !s.is_empty()).map(|s| s.to_string())
            }
            _ => None,
        });
        Ok(Self {
            env: None,
            bytes: Arc::from(&[][..]),
            path: path.to_path_buf(),
            ep: ExecutionProvider::Cpu,
            options: LoadOptions { threads: 1, precision: Precision::Fp32, cache_dir: None, static_shapes: true },
            fused: has_fused_outputs,
            batch_dim,
            fixed_batch: (sample_shape[0] > 0).then_some(sample_shape[0] as usize),
            feeds,
            dynamic: None,
            bound: Vec::new(),
            timestep_input: t_kind,
            class_type: class_input.map(|(_, t)| t),
            output,
            shape: ModelShape { channels, height, width, out_channels, num_classes },
            scheduler_config,
            unet_config,
            choice: String::new(),
            cache_recorded: false,
        })
    }

    /// The execution provider in use.
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.ep
    }

    /// The precision the model runs in (never [`Precision::Auto`]: auto's choice).
    pub fn precision(&self) -> Precision {
        self.options.precision
    }

    /// One line saying which precision and execution provider run, and for
    /// [`Precision::Auto`] why: "precision auto: fp32 (this CPU has no bf16 arithmetic: ...) on cpu".
    pub fn precision_choice(&self) -> &str {
        &self.choice
    }

    /// A session with this batch size fixed (None: as the graph declares it). With a cache
    /// folder on the CPU provider, the optimized graph is written there on first use and
    /// loaded from there afterwards.
    fn make_session(&self, batch: Option<usize>) -> Result<Session> {
        let env = self.env.as_ref().ok_or_else(|| Error::InvalidArgument("the model is not loaded".into()))?;
        let builder = |level: GraphOptimizationLevel| -> Result<ort::session::builder::SessionBuilder> {
            let mut b = Session::builder(env)?
                .with_optimization_level(level)
                .map_err(ort::Error::from)?
                .with_intra_threads(self.options.threads)
                .map_err(ort::Error::from)?;
            if let (Some(n), Some(dim)) = (batch, &self.batch_dim) {
                b = b.with_dimension_override(dim, n as i64).map_err(ort::Error::from)?;
            }
            self.ep.register(b, &self.options)
        };
        let bad_model = |e: ort::Error| Error::bad_file(&self.path, format!("not a loadable ONNX model: {e}"));
        let cached = match (&self.options.cache_dir, self.ep) {
            (Some(dir), ExecutionProvider::Cpu) => Some(dir.join("optimized").join(format!(
                "{}-b{}.onnx",
                content_key(&self.bytes, loaded_library().as_deref()),
                batch.map_or("dyn".to_string(), |b| b.to_string())
            ))),
            _ => None,
        };
        if let Some(file) = &cached {
            if file.is_file() {
                let loaded = cache::read_verified(file)
                    .and_then(|bytes| builder(GraphOptimizationLevel::Disable).map_err(|e| e.to_string())?.commit_from_memory(&bytes).map_err(|e| e.to_string()));
                match loaded {
                    Ok(s) => {
                        // Marks it as recently used for prune_cache.
                        let _ = std::fs::File::options().append(true).open(file).and_then(|f| f.set_modified(std::time::SystemTime::now()));
                        return Ok(s);
                    }
                    Err(e) => {
                        tracing::warn!("{}: cached model not used ({e}); rebuilding it", file.display());
                        cache::remove(file);
                    }
                }
            }
            // Optimize once, written under a temporary name and renamed into place.
            if let Some(parent) = file.parent() {
                if std::fs::create_dir_all(parent).is_ok() {
                    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
                    let session = builder(GraphOptimizationLevel::All)?
                        .with_optimized_model_path(&tmp)
                        .map_err(ort::Error::from)?
                        .commit_from_memory(&self.bytes)
                        .map_err(bad_model)?;
                    if std::fs::rename(&tmp, file).is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    } else if let Err(e) = cache::record_checksum(file) {
                        tracing::warn!("{}: could not record its checksum ({e})", file.display());
                        cache::remove(file);
                    }
                    prune_cache(parent, CACHE_KEEP);
                    return Ok(session);
                }
            }
        }
        let session = builder(GraphOptimizationLevel::All)?.commit_from_memory(&self.bytes).map_err(bad_model)?;
        if let (Some(dir), ExecutionProvider::OpenVino) = (&self.options.cache_dir, self.ep) {
            cache::record_folder(&dir.join("openvino"));
            prune_cache(&dir.join("openvino"), CACHE_KEEP);
        }
        Ok(session)
    }

    /// The session and buffers for a batch size, made on first use.
    fn bound_for(&mut self, batch: usize) -> Result<usize> {
        if let Some(i) = self.bound.iter().position(|b| b.batch == batch) {
            return Ok(i);
        }
        // A model without a named batch dimension (or static_shapes off): the one dynamic
        // session serves every size, and each size keeps its own buffers.
        let s = self.shape;
        crate::limits::check_memory(
            &format!(
                "{}: a batch of {batch} samples of {}x{}x{} float32 (the model's input and output buffers)",
                self.path.display(),
                s.channels,
                s.height,
                s.width
            ),
            crate::limits::bytes_of(&[batch, s.channels.max(s.out_channels), s.height, s.width], 4 * 8),
        )?;
        let session = if self.dynamic.is_some() { None } else { Some(self.make_session(Some(batch))?) };
        // A new session compiles anew: its blobs are recorded after its first run.
        self.cache_recorded = false;
        let b = batch as i64;
        let t_shape = |scalar: bool, single: bool| -> Vec<i64> {
            if scalar {
                vec![]
            } else if single {
                vec![1]
            } else {
                vec![b]
            }
        };
        let timestep: ort::value::DynValue = match self.timestep_input {
            TimestepInput::Int64 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![0i64; n]))?.into_dyn()
            }
            TimestepInput::Int32 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![0i32; n]))?.into_dyn()
            }
            TimestepInput::Float32 { scalar, single } => {
                let sh = t_shape(scalar, single);
                let n = sh.iter().product::<i64>().max(1) as usize;
                Tensor::from_array((sh, vec![0f32; n]))?.into_dyn()
            }
        };
        let labels: Option<ort::value::DynValue> = match self.class_type {
            Some(TensorElementType::Int32) => Some(Tensor::from_array((vec![b], vec![0i32; batch]))?.into_dyn()),
            Some(_) => Some(Tensor::from_array((vec![b], vec![0i64; batch]))?.into_dyn()),
            None => None,
        };
        let out = Tensor::<f32>::new(&Allocator::default(), [batch, s.out_channels, s.height, s.width])?;
        let run_options = RunOptions::new()?.with_outputs(OutputSelector::no_default().with(&self.output).preallocate(&self.output, out));
        let fused = if self.fused {
            let dims = [batch, s.channels, s.height, s.width];
            let mut selector = OutputSelector::no_default();
            for name in ["prev_sample", "pred_original_sample"] {
                selector = selector.with(name).preallocate(name, Tensor::<f32>::new(&Allocator::default(), dims)?);
            }
            Some((
                Tensor::from_array(([9usize], vec![0f32; 9]))?.into_dyn(),
                Tensor::<f32>::new(&Allocator::default(), dims)?.into_dyn(),
                RunOptions::new()?.with_outputs(selector),
            ))
        } else {
            None
        };
        self.bound.push(Bound { batch, session, timestep, labels, run_options, fused });
        Ok(self.bound.len() - 1)
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

/// What one run of the graph computes.
enum Mode<'a> {
    /// `noise_pred` into the buffer.
    Predict(&'a mut [f32]),
    /// A fused step: coefficients, noise (None: zeros), then `prev_sample` and
    /// `pred_original_sample` into the buffers.
    Fused(&'a AffineStep, Option<&'a [f32]>, &'a mut [f32], &'a mut [f32]),
}

impl OnnxDenoiser {
    /// Checks the shapes, fills the per-batch-size input tensors and runs the graph.
    fn run(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>, mode: Mode<'_>) -> Result<()> {
        let s = self.shape;
        if sample.len() != batch * s.sample_len() || batch == 0 {
            return Err(Error::Shape {
                name: "sample".into(),
                found: format!("{} values", sample.len()),
                expected: format!("[{batch}, {}, {}, {}] with a batch of at least 1", s.channels, s.height, s.width),
            });
        }
        let out_len = |name: &str, len: usize, expected: usize, channels: usize| -> Result<()> {
            if len == expected {
                return Ok(());
            }
            Err(Error::Shape {
                name: name.into(),
                found: format!("{len} values"),
                expected: format!("[{batch}, {channels}, {}, {}]", s.height, s.width),
            })
        };
        match &mode {
            Mode::Predict(out) => out_len("output buffer", out.len(), batch * s.out_channels * s.pixels(), s.out_channels)?,
            Mode::Fused(_, noise, prev, x0) => {
                if !self.fused {
                    return Err(Error::InvalidArgument(format!("{}: not a fused-step graph", self.path.display())));
                }
                out_len("prev buffer", prev.len(), sample.len(), s.channels)?;
                out_len("pred_x0 buffer", x0.len(), sample.len(), s.channels)?;
                if let Some(z) = noise {
                    out_len("noise", z.len(), sample.len(), s.channels)?;
                }
            }
        }
        if let Some(n) = self.fixed_batch.filter(|&n| n != batch) {
            return Err(Error::Shape {
                name: format!("{}: input sample", self.path.display()),
                found: format!("a batch of {batch}"),
                expected: format!("the graph's fixed batch of {n} (use --batch-size {n})"),
            });
        }
        let i = self.bound_for(batch)?;
        let bound = &mut self.bound[i];
        match self.timestep_input {
            TimestepInput::Int64 { .. } => bound.timestep.try_extract_tensor_mut::<i64>()?.1.fill(t),
            TimestepInput::Int32 { .. } => bound.timestep.try_extract_tensor_mut::<i32>()?.1.fill(t as i32),
            TimestepInput::Float32 { .. } => bound.timestep.try_extract_tensor_mut::<f32>()?.1.fill(t as f32),
        }
        if let Some(labels_value) = bound.labels.as_mut() {
            let labels = class_labels.ok_or_else(|| {
                Error::InvalidArgument("the model is class-conditional: class labels are needed".into())
            })?;
            if labels.len() != batch {
                return Err(Error::Shape {
                    name: "class labels".into(),
                    found: format!("{} labels", labels.len()),
                    expected: format!("{batch} (one per sample)"),
                });
            }
            if self.class_type == Some(TensorElementType::Int32) {
                let dst = labels_value.try_extract_tensor_mut::<i32>()?.1;
                dst.iter_mut().zip(labels).for_each(|(d, &l)| *d = l as i32);
            } else {
                labels_value.try_extract_tensor_mut::<i64>()?.1.copy_from_slice(labels);
            }
        }
        if let Some((coefficients, noise_value, _)) = bound.fused.as_mut() {
            // A plain prediction on a fused-step graph feeds zero coefficients.
            let (c, z) = match &mode {
                Mode::Fused(c, z, _, _) => (Some(*c), *z),
                Mode::Predict(_) => (None, None),
            };
            let dst = coefficients.try_extract_tensor_mut::<f32>()?.1;
            match c {
                Some(c) => dst.copy_from_slice(&c[..]),
                None => dst.fill(0.0),
            }
            if c.is_some() {
                let dst = noise_value.try_extract_tensor_mut::<f32>()?.1;
                match z {
                    Some(z) => dst.copy_from_slice(z),
                    None => dst.fill(0.0),
                }
            }
        }
        let x = TensorRef::from_array_view(([batch, s.channels, s.height, s.width], sample))?;
        let value = |feed: Feed| -> Result<SessionInputValue<'_>> {
            let missing = || Error::InvalidArgument(format!("input {feed:?} has no value"));
            Ok(match feed {
                Feed::Sample => (&*x).into(),
                Feed::Timestep => (&bound.timestep).into(),
                Feed::Labels => bound.labels.as_ref().ok_or_else(missing)?.into(),
                Feed::Coefficients => (&bound.fused.as_ref().ok_or_else(missing)?.0).into(),
                Feed::Noise => (&bound.fused.as_ref().ok_or_else(missing)?.1).into(),
            })
        };
        let session = match bound.session.as_mut() {
            Some(s) => s,
            None => self.dynamic.as_mut().ok_or_else(|| Error::InvalidArgument("the model is not loaded".into()))?,
        };
        let options = match (&mode, &bound.fused) {
            (Mode::Fused(..), Some((_, _, o))) => o,
            _ => &bound.run_options,
        };
        let path = &self.path;
        let run_failed = |e: ort::Error| {
            Error::bad_file(path, format!("ONNX Runtime could not run the graph on input `sample` [{batch}, {}, {}, {}]: {e}", s.channels, s.height, s.width))
        };
        let outputs = match self.feeds.as_slice() {
            [a, b] => session.run_with_options([value(*a)?, value(*b)?], options),
            [a, b, c] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?], options),
            [a, b, c, d] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?, value(*d)?], options),
            [a, b, c, d, e] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?, value(*d)?, value(*e)?], options),
            other => return Err(Error::InvalidArgument(format!("the model has {} inputs, expected 2 to 5", other.len()))),
        }
        .map_err(run_failed)?;
        if !self.cache_recorded {
            // ONNX Runtime's OpenVINO provider compiles (and writes its cache) at the first run.
            if let (Some(dir), ExecutionProvider::OpenVino) = (&self.options.cache_dir, self.ep) {
                cache::record_folder(&dir.join("openvino"));
            }
            self.cache_recorded = true;
        }
        let copy = |name: &str, dst: &mut [f32]| -> Result<()> {
            let (shape, data) = outputs
                .get(name)
                .ok_or_else(|| Error::bad_file(path, format!("the graph produced no output `{name}`")))?
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::bad_file(path, format!("model output `{name}`: {e}, expected float32")))?;
            if data.len() != dst.len() {
                return Err(Error::bad_file(
                    path,
                    format!("model output `{name}`: shape {:?}, expected {} values", &shape[..], dst.len()),
                ));
            }
            dst.copy_from_slice(data);
            Ok(())
        };
        match mode {
            Mode::Predict(out) => copy(self.output.as_str(), out),
            Mode::Fused(_, _, prev, x0) => {
                copy("prev_sample", prev)?;
                copy("pred_original_sample", x0)
            }
        }
    }
}

impl Denoiser for OnnxDenoiser {
    fn shape(&self) -> ModelShape {
        self.shape
    }

    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let mut out = vec![0.0; batch * self.shape.out_channels * self.shape.pixels()];
        self.predict_into(sample, batch, t, class_labels, &mut out)?;
        Ok(out)
    }

    fn predict_into(
        &mut self,
        sample: &[f32],
        batch: usize,
        t: i64,
        class_labels: Option<&[i64]>,
        out: &mut [f32],
    ) -> Result<()> {
        self.run(sample, batch, t, class_labels, Mode::Predict(out))
    }

    fn supports_fused_step(&self) -> bool {
        self.fused
    }

    fn fused_step(
        &mut self,
        sample: &[f32],
        batch: usize,
        t: i64,
        class_labels: Option<&[i64]>,
        coefficients: &AffineStep,
        noise: Option<&[f32]>,
        prev: &mut [f32],
        pred_x0: &mut [f32],
    ) -> Result<()> {
        self.run(sample, batch, t, class_labels, Mode::Fused(coefficients, noise, prev, pred_x0))
    }
}

