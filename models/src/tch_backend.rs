//! The libtorch implementation of [`Backend`], for training and for checking exports.

use std::collections::{BTreeMap, HashMap};

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::ops::{timestep_frequencies, Backend};
use crate::weights::{Weight, Weights};

/// A libtorch tensor whose `clone` is a shallow clone (shared storage, as PyTorch's
/// autograd graph expects).
pub struct TchTensor(pub Tensor);

impl Clone for TchTensor {
    fn clone(&self) -> Self {
        TchTensor(self.0.shallow_clone())
    }
}

impl std::ops::Deref for TchTensor {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.0
    }
}

/// Runs the U-Net on libtorch tensors whose parameters are looked up by diffusers name.
pub struct TchBackend {
    params: HashMap<String, Tensor>,
    /// Dropout is active only when training.
    pub train: bool,
    pub device: Device,
}

impl TchBackend {
    /// Parameters from float32 weights, placed on `device`.
    pub fn from_weights(weights: &Weights, device: Device) -> Result<Self> {
        let params = weights_to_tensors(weights, device, false)?.into_iter().collect();
        Ok(Self { params, train: false, device })
    }

    /// Parameters that are existing tensors (for example the variables of a VarStore).
    pub fn from_tensors(params: HashMap<String, Tensor>, device: Device) -> Self {
        Self { params, train: false, device }
    }

    /// Copies the parameters back into float32 weights.
    pub fn to_weights(&self) -> Result<Weights> {
        tensors_to_weights(&self.params)
    }
}

/// Float32 weights as libtorch tensors on `device` (leaves that require a gradient when
/// `requires_grad`): the one conversion from [`Weights`] to tch.
pub fn weights_to_tensors(weights: &Weights, device: Device, requires_grad: bool) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, w) in weights {
        let shape: Vec<i64> = w.shape.iter().map(|&s| s as i64).collect();
        let t = Tensor::f_from_slice(&w.data)?.f_reshape(&shape)?.f_to_device(device)?.set_requires_grad(requires_grad);
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// libtorch tensors (any float kind, any device) as float32 [`Weights`]: the one conversion
/// from tch.
pub fn tensors_to_weights<'a>(tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>) -> Result<Weights> {
    let mut out = Weights::new();
    for (name, t) in tensors {
        let shape: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
        let flat = t.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_flatten(0, -1)?;
        out.insert(name.clone(), Weight { shape, data: Vec::<f32>::try_from(&flat)? });
    }
    Ok(out)
}

impl Backend for TchBackend {
    type Tensor = TchTensor;

    fn param(&mut self, name: &str, shape: &[usize]) -> Result<TchTensor> {
        let t = self.params.get(name).ok_or_else(|| Error::Weight {
            file: "checkpoint".into(),
            name: name.into(),
            msg: format!("missing (expected shape {shape:?})"),
        })?;
        let size: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
        if size != shape {
            return Err(Error::Weight { file: "checkpoint".into(), name: name.into(), msg: format!("shape {size:?}, expected {shape:?}") });
        }
        Ok(TchTensor(t.shallow_clone()))
    }
    fn conv2d(&mut self, x: &TchTensor, w: &TchTensor, b: &TchTensor, stride: usize, padding: usize) -> Result<TchTensor> {
        let (s, p) = (stride as i64, padding as i64);
        Ok(TchTensor(x.f_conv2d(w, Some(&b.0), [s, s], [p, p], [1, 1], 1)?))
    }
    fn pad_bottom_right(&mut self, x: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_constant_pad_nd([0, 1, 0, 1])?))
    }
    fn group_norm(&mut self, x: &TchTensor, groups: usize, eps: f64, w: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_group_norm(groups as i64, Some(&w.0), Some(&b.0), eps, false)?))
    }
    fn linear(&mut self, x: &TchTensor, w: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_linear(w, Some(&b.0))?))
    }
    fn silu(&mut self, x: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_silu()?))
    }
    fn dropout(&mut self, x: &TchTensor, p: f64) -> Result<TchTensor> {
        if self.train && p > 0.0 {
            Ok(TchTensor(x.f_dropout(p, true)?))
        } else {
            Ok(x.clone())
        }
    }
    fn add(&mut self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(a.f_add(b)?))
    }
    fn add_per_channel(&mut self, x: &TchTensor, v: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_add(&v.f_unsqueeze(-1)?.f_unsqueeze(-1)?)?))
    }
    fn affine(&mut self, x: &TchTensor, mul: f64, add: f64) -> Result<TchTensor> {
        let y = if mul != 1.0 { x.f_mul_scalar(mul)? } else { x.shallow_clone() };
        Ok(TchTensor(if add != 0.0 { y.f_add_scalar(add)? } else { y }))
    }
    fn concat_channels(&mut self, a: &TchTensor, b: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(Tensor::f_cat(&[&a.0, &b.0], 1)?))
    }
    fn upsample_nearest2x(&mut self, x: &TchTensor) -> Result<TchTensor> {
        let s = x.size();
        Ok(TchTensor(x.f_upsample_nearest2d([s[2] * 2, s[3] * 2], None, None)?))
    }
    fn to_tokens(&mut self, x: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_flatten(2, 3)?.f_transpose(1, 2)?))
    }
    fn tokens_to_image(&mut self, x: &TchTensor, like: &TchTensor) -> Result<TchTensor> {
        let s = like.size();
        let c = x.size()[2];
        Ok(TchTensor(x.f_transpose(1, 2)?.f_reshape([s[0], c, s[2], s[3]])?))
    }
    fn attention(&mut self, q: &TchTensor, k: &TchTensor, v: &TchTensor, heads: usize) -> Result<TchTensor> {
        let s = q.size();
        let (b, n, c) = (s[0], s[1], s[2]);
        let h = heads as i64;
        let d = c / h;
        let split = |t: &Tensor| -> Result<Tensor> { Ok(t.f_reshape([b, -1, h, d])?.f_transpose(1, 2)?) };
        let (q, k, v) = (split(q)?, split(k)?, split(v)?);
        // PyTorch's fused kernel, as diffusers' AttnProcessor2_0 uses (scale 1/sqrt(d)).
        let o = Tensor::f_scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false)?;
        Ok(TchTensor(o.f_transpose(1, 2)?.f_reshape([b, n, c])?))
    }
    fn timestep_embedding(&mut self, t: &TchTensor, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<TchTensor> {
        let freqs = Tensor::f_from_slice(&timestep_frequencies(dim, freq_shift))?.f_to_device(t.device())?;
        let args = t.f_to_kind(Kind::Float)?.f_unsqueeze(1)?.f_mul(&freqs.f_unsqueeze(0)?)?;
        let (sin, cos) = (args.f_sin()?, args.f_cos()?);
        let emb = if flip_sin_to_cos { Tensor::f_cat(&[&cos, &sin], 1)? } else { Tensor::f_cat(&[&sin, &cos], 1)? };
        Ok(TchTensor(if dim % 2 == 1 { emb.f_constant_pad_nd([0, 1])? } else { emb }))
    }
    fn flatten(&mut self, x: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(x.f_flatten(1, -1)?))
    }
    fn embedding(&mut self, ids: &TchTensor, table: &TchTensor) -> Result<TchTensor> {
        Ok(TchTensor(Tensor::f_embedding(table, &ids.f_to_kind(Kind::Int64)?, -1, false, false)?))
    }
}

/// Runs a checkpoint's forward pass on libtorch (no gradients) and returns the output as
/// float32 (a convenience for tests and the exporter's verification).
pub fn forward_f32(
    model: &crate::unet::UNet2DModel,
    weights: &Weights,
    sample: &[f32],
    shape: [usize; 4],
    timesteps: &[i64],
    class_labels: Option<&[i64]>,
) -> Result<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let mut b = TchBackend::from_weights(weights, Device::Cpu)?;
    let dims: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    let x = TchTensor(Tensor::f_from_slice(sample)?.f_reshape(&dims)?);
    let t = TchTensor(Tensor::f_from_slice(timesteps)?);
    let labels = match class_labels {
        Some(l) => Some(TchTensor(Tensor::f_from_slice(l)?)),
        None => None,
    };
    let out = model.forward(&mut b, &x, &t, labels.as_ref())?;
    Ok(Vec::<f32>::try_from(&out.f_flatten(0, -1)?)?)
}
