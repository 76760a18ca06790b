//! The ONNX Runtime backend: a [`Denoiser`] over a `.onnx` file of the project's contract
//! (inputs `sample`, `timestep`, optional `class_labels`; output `noise_pred`; metadata
//! `unet_config` and `scheduler_config`), loaded through ort's `load-dynamic`.
//!
//! The parts, as ort splits its own: [`builder`] (options, precision and execution
//! provider, with fallbacks), [`signature`] (what the graph declares, pure), `session`
//! (sessions and the on-disk cache), `binding` (per-batch tensors), and here the
//! [`OnnxDenoiser`] that runs them.

mod binding;
pub mod builder;
mod cache;
mod library;
mod provider;
mod session;
pub mod signature;

use ort::session::{HasSelectedOutputs, RunOptions, Session, SessionInputValue};
use ort::value::TensorRef;
use serde_json::Value;

use crate::config::SchedulerConfig;
use crate::denoiser::{Denoiser, FusedDenoiser, FusedInput, ModelShape};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::sampler::AffineStep;
use binding::Buffers;
pub use builder::OnnxDenoiserBuilder;
pub use library::{environment, library_info, openvino_library, Library, LibraryInfo};
pub use provider::{ExecutionProvider, Precision};
use session::SessionFactory;
use signature::{Feed, ModelSignature};

/// The sessions of a model: one dynamic session for every batch size (each size keeps its
/// own buffers), or one session per batch size with the batch dimension fixed.
enum Sessions {
    Dynamic { session: Session, buffers: Vec<Buffers> },
    PerBatch(Vec<(Session, Buffers)>),
}

/// A `.onnx` U-Net run by ONNX Runtime.
///
/// Each batch size gets its own session with the batch dimension fixed (see
/// [`OnnxDenoiserBuilder::static_shapes`]), a timestep tensor that is rewritten in place and
/// a pre-allocated output, so that a step of a chain allocates no tensor.
///
/// ```no_run
/// use ddpm_runtime::{Denoiser, OnnxDenoiser};
/// let mut model = OnnxDenoiser::builder().from_file("model.onnx")?;
/// let s = model.shape();
/// let x = vec![0.0f32; 2 * s.sample_len()];
/// let labels = s.num_classes.map(|_| vec![3i64, 7]);
/// let eps = model.predict(&x, 2, 999, labels.as_deref())?;
/// assert_eq!(eps.len(), 2 * s.out_channels * s.pixels());
/// # Ok::<(), ddpm_runtime::Error>(())
/// ```
pub struct OnnxDenoiser {
    factory: SessionFactory,
    signature: ModelSignature,
    sessions: Sessions,
    /// What runs and why, in one line ("precision auto: fp32 (...) on cpu").
    choice: String,
    /// Whether the compiled blobs OpenVINO wrote (at a session's first run) have their
    /// checksums recorded.
    cache_recorded: bool,
}

impl OnnxDenoiser {
    /// Options: library path, execution providers, precision, threads, cache folder.
    ///
    /// ```no_run
    /// use ddpm_runtime::{ExecutionProvider, OnnxDenoiser};
    /// let model = OnnxDenoiser::builder()
    ///     .execution_providers_with_fallback(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu])
    ///     .cache_dir("/tmp/ddpm-cache")
    ///     .from_file("model.onnx")?;
    /// println!("runs on {}", model.execution_provider().name());
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn builder() -> OnnxDenoiserBuilder {
        OnnxDenoiserBuilder::default()
    }

    /// A sampling run of this model with its own scheduler config
    /// ([`OnnxDenoiser::scheduler_config`]).
    ///
    /// ```no_run
    /// use ddpm_runtime::{OnnxDenoiser, SamplerKind};
    /// let mut model = OnnxDenoiser::builder().from_file("model.onnx")?;
    /// let samples = model.pipeline().sampler(SamplerKind::DpmSolverPP).n(8).seed(1).run()?;
    /// # Ok::<(), ddpm_runtime::Error>(())
    /// ```
    pub fn pipeline(&mut self) -> Pipeline<'static, &mut OnnxDenoiser> {
        let config = self.scheduler_config();
        let guidance = self.signature.guidance;
        let pipeline = Pipeline::new(self, config);
        match guidance {
            // A model trained with label dropout: its null label, and its recommended scale.
            Some(g) => pipeline.null_class_label(g.null_class_label).guidance_scale(g.guidance_scale),
            None => pipeline,
        }
    }

    /// Prepares the session (and buffers) for model calls of `batch` samples now rather
    /// than on first use; a no-op for a batch already prepared or a dynamic-batch session.
    /// A guided run calls the model on 2B samples (the conditional and unconditional halves
    /// stacked), so that is the batch to prepare for it.
    pub fn prepare_batch(&mut self, batch: usize) -> Result<()> {
        if let Sessions::PerBatch(_) = self.sessions {
            self.bound_for(batch.max(1))?;
        }
        Ok(())
    }

    /// What the model's graph declares (inputs, outputs, metadata).
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// The execution provider in use.
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.factory.ep
    }

    /// The precision the model runs in (never [`Precision::Auto`]: auto's choice).
    pub fn precision(&self) -> Precision {
        self.factory.options.precision
    }

    /// One line saying which precision and execution provider run, and for
    /// [`Precision::Auto`] why: "precision auto: fp32 (this CPU has no bf16 arithmetic: ...) on cpu".
    pub fn precision_choice(&self) -> &str {
        &self.choice
    }

    /// The index of the buffers (and session) for a batch size, made on first use.
    fn bound_for(&mut self, batch: usize) -> Result<usize> {
        let s = self.signature.shape;
        let known = match &self.sessions {
            Sessions::Dynamic { buffers, .. } => buffers.iter().position(|b| b.batch == batch),
            Sessions::PerBatch(v) => v.iter().position(|(_, b)| b.batch == batch),
        };
        if let Some(i) = known {
            return Ok(i);
        }
        crate::limits::check_memory(
            &format!(
                "{}: a batch of {batch} samples of {}x{}x{} float32 (the model's input and output buffers)",
                self.factory.path.display(),
                s.channels,
                s.height,
                s.width
            ),
            crate::limits::bytes_of(&[batch, s.channels.max(s.out_channels), s.height, s.width], 4 * 8),
        )?;
        let buffers = Buffers::new(&self.signature, batch)?;
        match &mut self.sessions {
            Sessions::Dynamic { buffers: v, .. } => {
                v.push(buffers);
                Ok(v.len() - 1)
            }
            Sessions::PerBatch(v) => {
                let session = self.factory.session(Some(batch), self.signature.batch_dim.as_deref())?;
                // A new session compiles anew: its blobs are recorded after its first run.
                self.cache_recorded = false;
                v.push((session, buffers));
                Ok(v.len() - 1)
            }
        }
    }

    /// The scheduler config of the model's metadata; the paper's defaults when there is
    /// none (said once, in the log).
    pub fn scheduler_config(&self) -> SchedulerConfig {
        match &self.signature.scheduler_config {
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
        self.signature.scheduler_config.is_some()
    }

    /// The `unet_config` metadata, if any.
    pub fn unet_config(&self) -> Option<&Value> {
        self.signature.unet_config.as_ref()
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
        let s = self.signature.shape;
        let path = self.factory.path.clone();
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
                if !self.signature.fused {
                    return Err(Error::InvalidArgument(format!("{}: not a fused-step graph", path.display())));
                }
                out_len("prev buffer", prev.len(), sample.len(), s.channels)?;
                out_len("pred_x0 buffer", x0.len(), sample.len(), s.channels)?;
                if let Some(z) = noise {
                    out_len("noise", z.len(), sample.len(), s.channels)?;
                }
            }
        }
        if let Some(n) = self.signature.fixed_batch.filter(|&n| n != batch) {
            return Err(Error::Shape {
                name: format!("{}: input sample", path.display()),
                found: format!("a batch of {batch}"),
                expected: format!("the graph's fixed batch of {n} (use --batch-size {n})"),
            });
        }
        let i = self.bound_for(batch)?;
        let sig = &self.signature;
        let (session, buffers) = match &mut self.sessions {
            Sessions::Dynamic { session, buffers } => (session, &mut buffers[i]),
            Sessions::PerBatch(v) => {
                let (session, buffers) = &mut v[i];
                (session, buffers)
            }
        };
        buffers.fill(sig, t, class_labels)?;
        match &mode {
            Mode::Fused(step, noise, _, _) => buffers.fill_fused(Some(step), *noise)?,
            Mode::Predict(_) => buffers.fill_fused(None, None)?,
        }
        let buffers = &*buffers;
        let x = TensorRef::from_array_view(([batch, s.channels, s.height, s.width], sample))?;
        let value = |feed: Feed| -> Result<SessionInputValue<'_>> {
            let missing = || Error::InvalidArgument(format!("input {feed:?} has no value"));
            Ok(match feed {
                Feed::Sample => (&*x).into(),
                Feed::Timestep => (&buffers.timestep).into(),
                Feed::Labels => buffers.labels.as_ref().ok_or_else(missing)?.into(),
                Feed::Coefficients => (&buffers.fused.as_ref().ok_or_else(missing)?.coefficients).into(),
                Feed::Noise => (&buffers.fused.as_ref().ok_or_else(missing)?.noise).into(),
            })
        };
        let options: &RunOptions<HasSelectedOutputs> = match (&mode, &buffers.fused) {
            (Mode::Fused(..), Some(f)) => &f.run_options,
            _ => &buffers.run_options,
        };
        let run_failed = |e: ort::Error| {
            Error::bad_file(
                &path,
                format!("ONNX Runtime could not run the graph on input `sample` [{batch}, {}, {}, {}]: {e}", s.channels, s.height, s.width),
            )
        };
        let outputs = match sig.feeds.as_slice() {
            [a, b] => session.run_with_options([value(*a)?, value(*b)?], options),
            [a, b, c] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?], options),
            [a, b, c, d] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?, value(*d)?], options),
            [a, b, c, d, e] => session.run_with_options([value(*a)?, value(*b)?, value(*c)?, value(*d)?, value(*e)?], options),
            other => return Err(Error::InvalidArgument(format!("the model has {} inputs, expected 2 to 5", other.len()))),
        }
        .map_err(run_failed)?;
        if !self.cache_recorded {
            self.factory.record_compiled();
            self.cache_recorded = true;
        }
        let copy = |name: &str, dst: &mut [f32]| -> Result<()> {
            let (shape, data) = outputs
                .get(name)
                .ok_or_else(|| Error::bad_file(&path, format!("the graph produced no output `{name}`")))?
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::bad_file(&path, format!("model output `{name}`: {e}, expected float32")))?;
            if data.len() != dst.len() {
                return Err(Error::bad_file(
                    &path,
                    format!("model output `{name}`: shape {:?}, expected {} values", &shape[..], dst.len()),
                ));
            }
            dst.copy_from_slice(data);
            Ok(())
        };
        match mode {
            Mode::Predict(out) => copy(sig.output.as_str(), out),
            Mode::Fused(_, _, prev, x0) => {
                copy("prev_sample", prev)?;
                copy("pred_original_sample", x0)
            }
        }
    }
}

impl Denoiser for OnnxDenoiser {
    fn shape(&self) -> ModelShape {
        self.signature.shape
    }

    fn predict(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let s = self.signature.shape;
        let mut out = vec![0.0; batch * s.out_channels * s.pixels()];
        self.predict_into(sample, batch, t, class_labels, &mut out)?;
        Ok(out)
    }

    fn predict_into(&mut self, sample: &[f32], batch: usize, t: i64, class_labels: Option<&[i64]>, out: &mut [f32]) -> Result<()> {
        self.run(sample, batch, t, class_labels, Mode::Predict(out))
    }

    fn as_fused(&mut self) -> Option<&mut dyn FusedDenoiser> {
        if self.signature.fused {
            Some(self)
        } else {
            None
        }
    }
}

impl FusedDenoiser for OnnxDenoiser {
    fn fused_step(&mut self, input: FusedInput<'_>, prev: &mut [f32], pred_x0: &mut [f32]) -> Result<()> {
        self.run(input.sample, input.batch, input.t, input.class_labels, Mode::Fused(input.step, input.noise, prev, pred_x0))
    }
}
