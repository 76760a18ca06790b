//! Loading a model: the builder, the precision and execution provider it resolves to
//! (with the fallbacks it was given), and the one-phase construction of an
//! [`OnnxDenoiser`] from a probe of the model's signature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::library::environment_for;
use super::session::{outlets, probe, LoadOptions, SessionFactory};
use super::signature::ModelSignature;
use super::{ExecutionProvider, OnnxDenoiser, Precision, Sessions};
use crate::error::{Error, Result};
use crate::sys::physical_cores;

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

impl Default for OnnxDenoiserBuilder {
    /// The CPU provider, fp32, one thread per physical core, no cache, fixed batch sizes.
    fn default() -> Self {
        Self {
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
}

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

    /// Loads a model file (a regular file of at most 2 GiB, the most a protobuf holds).
    ///
    /// ```no_run
    /// use ddpm_runtime::{OnnxDenoiser, Precision};
    /// let model = OnnxDenoiser::builder().precision(Precision::Auto).intra_threads(2).from_file("model.onnx")?;
    /// println!("{}", model.precision_choice());
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn from_file(self, path: impl AsRef<Path>) -> Result<OnnxDenoiser> {
        let path = path.as_ref();
        // An ONNX protobuf holds at most 2 GiB.
        let bytes = ddpm_io::files::read_regular_file(path, 2 << 30, "ONNX model")?;
        self.load(bytes.into(), path)
    }

    /// Loads a model from memory (`name` is used in messages).
    ///
    /// ```no_run
    /// let bytes = std::fs::read("model.onnx")?;
    /// let model = ddpm_runtime::OnnxDenoiser::builder().from_memory(&bytes, "my model")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
                match self.clone().load_with(bytes.clone(), path, precision, providers, format!("precision auto: bf16 on openvino ({why})"))
                {
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
        let (inputs, outputs) = outlets(&probe);
        let metadata = probe.metadata()?;
        let signature = ModelSignature::from_parts(&inputs, &outputs, |key| metadata.custom(key), path)?;
        drop(metadata);
        drop(probe);
        let factory = SessionFactory { env, bytes, path: path.to_path_buf(), ep, options };
        let sessions = if !factory.options.static_shapes || signature.batch_dim.is_none() {
            // One session for every batch size.
            Sessions::Dynamic { session: factory.session(None, None)?, buffers: Vec::new() }
        } else {
            Sessions::PerBatch(Vec::new())
        };
        let mut model = OnnxDenoiser { factory, signature, sessions, choice: format!("{choice} on {}", ep.name()), cache_recorded: false };
        if let (Sessions::PerBatch(_), Some(b)) = (&model.sessions, self.batch_size) {
            model.bound_for(b)?;
        }
        Ok(model)
    }
}
