//! The tensors bound to one batch size: a timestep and a class-label tensor rewritten in
//! place at each call, and pre-allocated outputs, so that a step allocates no tensor.

use ort::memory::Allocator;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions};
use ort::value::{DynValue, Tensor, TensorElementType};

use super::signature::{ModelSignature, TimestepType};
use crate::error::{Error, Result};
use crate::sampler::AffineStep;

/// The extra tensors of a fused-step graph.
pub(super) struct FusedBuffers {
    pub(super) coefficients: DynValue,
    pub(super) noise: DynValue,
    /// `prev_sample` and `pred_original_sample` pre-allocated.
    pub(super) run_options: RunOptions<HasSelectedOutputs>,
}

/// The input and output tensors of one batch size.
pub(super) struct Buffers {
    pub(super) batch: usize,
    pub(super) timestep: DynValue,
    pub(super) labels: Option<DynValue>,
    /// `noise_pred` pre-allocated.
    pub(super) run_options: RunOptions<HasSelectedOutputs>,
    pub(super) fused: Option<FusedBuffers>,
}

impl Buffers {
    /// The tensors for a batch of `batch` of a model with this signature.
    pub(super) fn new(sig: &ModelSignature, batch: usize) -> Result<Self> {
        let s = sig.shape;
        let dims = sig.timestep.dims(batch);
        let n = dims.iter().product::<i64>().max(1) as usize;
        let timestep: DynValue = match sig.timestep.elem {
            TimestepType::Int64 => Tensor::from_array((dims, vec![0i64; n]))?.into_dyn(),
            TimestepType::Int32 => Tensor::from_array((dims, vec![0i32; n]))?.into_dyn(),
            TimestepType::Float32 => Tensor::from_array((dims, vec![0f32; n]))?.into_dyn(),
        };
        let b = batch as i64;
        let labels: Option<DynValue> = match sig.class_type {
            Some(TensorElementType::Int32) => Some(Tensor::from_array((vec![b], vec![0i32; batch]))?.into_dyn()),
            Some(_) => Some(Tensor::from_array((vec![b], vec![0i64; batch]))?.into_dyn()),
            None => None,
        };
        let out = Tensor::<f32>::new(&Allocator::default(), [batch, s.out_channels, s.height, s.width])?;
        let run_options = RunOptions::new()?.with_outputs(OutputSelector::no_default().with(&sig.output).preallocate(&sig.output, out));
        let fused = if sig.fused {
            let dims = [batch, s.channels, s.height, s.width];
            let mut selector = OutputSelector::no_default();
            for name in ["prev_sample", "pred_original_sample"] {
                selector = selector.with(name).preallocate(name, Tensor::<f32>::new(&Allocator::default(), dims)?);
            }
            Some(FusedBuffers {
                coefficients: Tensor::from_array(([9usize], vec![0f32; 9]))?.into_dyn(),
                noise: Tensor::<f32>::new(&Allocator::default(), dims)?.into_dyn(),
                run_options: RunOptions::new()?.with_outputs(selector),
            })
        } else {
            None
        };
        Ok(Self { batch, timestep, labels, run_options, fused })
    }

    /// Writes the timestep and the class labels of this call.
    pub(super) fn fill(&mut self, sig: &ModelSignature, t: i64, class_labels: Option<&[i64]>) -> Result<()> {
        match sig.timestep.elem {
            TimestepType::Int64 => self.timestep.try_extract_tensor_mut::<i64>()?.1.fill(t),
            TimestepType::Int32 => self.timestep.try_extract_tensor_mut::<i32>()?.1.fill(t as i32),
            TimestepType::Float32 => self.timestep.try_extract_tensor_mut::<f32>()?.1.fill(t as f32),
        }
        if let Some(value) = self.labels.as_mut() {
            let labels =
                class_labels.ok_or_else(|| Error::InvalidArgument("the model is class-conditional: class labels are needed".into()))?;
            if labels.len() != self.batch {
                return Err(Error::Shape {
                    name: "class labels".into(),
                    found: format!("{} labels", labels.len()),
                    expected: format!("{} (one per sample)", self.batch),
                });
            }
            if sig.class_type == Some(TensorElementType::Int32) {
                let dst = value.try_extract_tensor_mut::<i32>()?.1;
                dst.iter_mut().zip(labels).for_each(|(d, &l)| *d = l as i32);
            } else {
                value.try_extract_tensor_mut::<i64>()?.1.copy_from_slice(labels);
            }
        }
        Ok(())
    }

    /// Writes a fused step's coefficients and noise (None: zeros). A plain prediction on a
    /// fused-step graph (`step` None) feeds zero coefficients.
    pub(super) fn fill_fused(&mut self, step: Option<&AffineStep>, noise: Option<&[f32]>) -> Result<()> {
        let Some(f) = self.fused.as_mut() else { return Ok(()) };
        let dst = f.coefficients.try_extract_tensor_mut::<f32>()?.1;
        match step {
            Some(c) => dst.copy_from_slice(&c.to_f32()),
            None => {
                dst.fill(0.0);
                return Ok(());
            }
        }
        let dst = f.noise.try_extract_tensor_mut::<f32>()?.1;
        match noise {
            Some(z) => dst.copy_from_slice(z),
            None => dst.fill(0.0),
        }
        Ok(())
    }
}
