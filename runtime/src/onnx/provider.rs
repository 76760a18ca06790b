//! Execution providers and precisions, and how they are registered on a session.

use super::library::Library;
use super::session::LoadOptions;
use crate::error::{Error, Result};

crate::named_enum! {
    /// Where the model runs.
    ///
    /// ```
    /// use ddpm_runtime::ExecutionProvider;
    /// assert_eq!("tensorrt".parse::<ExecutionProvider>()?, ExecutionProvider::TensorRt);
    /// assert_eq!(ExecutionProvider::OpenVino.name(), "openvino");
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub enum ExecutionProvider {
        Cpu => "cpu",
        Cuda => "cuda",
        TensorRt => "tensorrt",
        /// ONNX Runtime's OpenVINO execution provider on the CPU (needs the OpenVINO build of
        /// ONNX Runtime, see [`Library::OpenVino`]).
        OpenVino => "openvino",
    }
}

impl std::str::FromStr for ExecutionProvider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s)
            .ok_or_else(|| Error::InvalidArgument(format!("execution provider: found \"{s}\", expected {}", Self::expected())))
    }
}

crate::named_enum! {
    /// The arithmetic a model runs in.
    ///
    /// ```
    /// use ddpm_runtime::Precision;
    /// assert_eq!("auto".parse::<Precision>()?, Precision::Auto);
    /// // Named, measured, and not shipped on the CPU: refused with the reason.
    /// assert!("fp16".parse::<Precision>().unwrap_err().to_string().contains("not available on the CPU"));
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    #[derive(Default)]
    pub enum Precision {
        /// float32 everywhere: the reference.
        #[default]
        Fp32 => "fp32",
        /// Convolutions and matrix products in bfloat16 (AVX512-BF16 / AMX), through the OpenVINO
        /// execution provider's inference precision hint; inputs, outputs and the sampler stay
        /// float32. Refused on a CPU without bf16 arithmetic (OpenVINO would quietly run fp32).
        Bf16 => "bf16",
        /// The fastest precision this CPU and library really run: bf16 where the CPU computes in
        /// bf16 and the OpenVINO build of ONNX Runtime loads, fp32 otherwise. What was chosen,
        /// and why, is [`OnnxDenoiser::precision_choice`](super::OnnxDenoiser::precision_choice).
        Auto => "auto",
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp16" | "int8" => Err(Error::InvalidArgument(format!(
                "precision {s}: not available on the CPU in this release (measured and not shipped, see BENCHMARKS.md); expected fp32, bf16 or auto"
            ))),
            other => Self::from_name(other)
                .ok_or_else(|| Error::InvalidArgument(format!("precision: found \"{other}\", expected fp32, bf16 or auto"))),
        }
    }
}

impl Precision {
    /// Refuses a precision the CPU cannot compute in: bf16 without AVX512-BF16 or AMX-BF16.
    pub fn check_cpu(self) -> Result<()> {
        let cpu = crate::sys::CpuFeatures::get();
        if self == Self::Bf16 && !cpu.has_bf16() {
            return Err(Error::Unsupported(format!(
                "precision bf16: this CPU ({}) has no bf16 arithmetic (needs avx512_bf16 or amx_bf16; it {}); use --precision fp32, or --precision auto for the fastest precision this machine runs",
                crate::sys::cpu_model(),
                cpu.summary()
            )));
        }
        Ok(())
    }
}

impl ExecutionProvider {
    pub(super) fn library(self) -> Library {
        match self {
            Self::OpenVino => Library::OpenVino,
            _ => Library::Default,
        }
    }

    /// Registers this provider on a session builder; an error if it is not there.
    pub(super) fn register(
        self,
        builder: ort::session::builder::SessionBuilder,
        options: &LoadOptions,
    ) -> Result<ort::session::builder::SessionBuilder> {
        let unavailable = |msg: &str| Error::ExecutionProvider { ep: self.name().into(), msg: msg.into() };
        if options.precision != Precision::Fp32 && self != Self::OpenVino {
            return Err(unavailable(&format!("precision {} runs on the openvino execution provider only", options.precision.name())));
        }
        match self {
            Self::Cpu => Ok(builder),
            #[cfg(feature = "openvino")]
            Self::OpenVino => {
                use ort::ep::{ArbitrarilyConfigurableExecutionProvider as _, ExecutionProvider as _};
                if !ort::ep::OpenVINO::is_available()? {
                    return Err(unavailable("the loaded ONNX Runtime library has no OpenVINO support"));
                }
                let hint = match options.precision {
                    Precision::Bf16 => "bf16",
                    Precision::Fp32 | Precision::Auto => "f32",
                };
                let mut ep = ort::ep::OpenVINO::default()
                    .with_device_type("CPU")
                    .with_num_threads(options.threads)
                    .with_arbitrary_config("load_config", format!("{{\"CPU\":{{\"INFERENCE_PRECISION_HINT\":\"{hint}\"}}}}"));
                if let Some(dir) = &options.cache_dir {
                    let dir = dir.join("openvino");
                    if std::fs::create_dir_all(&dir).is_ok() {
                        super::cache::verify_folder(&dir);
                        ep = ep.with_cache_dir(dir.display());
                    }
                }
                // No silent fall-back to ONNX Runtime's own CPU kernels.
                let builder = builder.with_disable_cpu_fallback().map_err(ort::Error::from)?;
                Ok(builder.with_execution_providers([ep.build().error_on_failure()]).map_err(|e| unavailable(&e.to_string()))?)
            }
            #[cfg(not(feature = "openvino"))]
            Self::OpenVino => Err(unavailable("this build has no OpenVINO support (build ddpm-runtime with --features openvino)")),
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
                let mut ep = ort::ep::TensorRT::default();
                if let Some(dir) = &options.cache_dir {
                    let dir = dir.join("tensorrt");
                    if std::fs::create_dir_all(&dir).is_ok() {
                        ep = ep.with_engine_cache(true).with_engine_cache_path(dir.display());
                    }
                }
                Ok(builder.with_execution_providers([ep.build().error_on_failure()]).map_err(|e| unavailable(&e.to_string()))?)
            }
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => Err(unavailable("this build has no CUDA support (build ddpm-runtime with --features cuda)")),
            #[cfg(not(feature = "tensorrt"))]
            Self::TensorRt => Err(unavailable("this build has no TensorRT support (build ddpm-runtime with --features tensorrt)")),
        }
    }
}
