//! The parameterized layers the blocks are made of, planned once with their state-dict
//! keys and shapes: a convolution, a group norm, a linear layer.

use super::ParamPath;
use crate::error::Result;
use crate::ops::Backend;

/// A square-kernel 2-D convolution with bias (`{path}.weight` [out, in, k, k], `{path}.bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub weight: String,
    pub bias: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    /// A 3x3 convolution, stride 1, padding 1 (the shape-keeping one).
    pub fn same3(path: &ParamPath, in_channels: usize, out_channels: usize) -> Self {
        Self::new(path, in_channels, out_channels, 3, 1, 1)
    }
    pub fn new(path: &ParamPath, in_channels: usize, out_channels: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        Self { weight: path.key("weight"), bias: path.key("bias"), in_channels, out_channels, kernel, stride, padding }
    }

    /// # Shapes
    /// [B, in, H, W] -> [B, out, (H + 2p - k) / s + 1, ...]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let k = self.kernel;
        let w = b.param(&self.weight, &[self.out_channels, self.in_channels, k, k])?;
        let bias = b.param(&self.bias, &[self.out_channels])?;
        b.conv2d(x, &w, &bias, self.stride, self.padding)
    }
}

/// Group normalization with a per-channel affine (`{path}.weight`, `{path}.bias` [C]).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNorm {
    pub weight: String,
    pub bias: String,
    pub channels: usize,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(path: &ParamPath, channels: usize, groups: usize, eps: f64) -> Self {
        Self { weight: path.key("weight"), bias: path.key("bias"), channels, groups, eps }
    }

    /// # Shapes
    /// [B, C, H, W] -> [B, C, H, W]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let w = b.param(&self.weight, &[self.channels])?;
        let bias = b.param(&self.bias, &[self.channels])?;
        b.group_norm(x, self.groups, self.eps, &w, &bias)
    }
}

/// A linear layer (`{path}.weight` [out, in], `{path}.bias` [out]).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: String,
    pub bias: String,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    pub fn new(path: &ParamPath, in_features: usize, out_features: usize) -> Self {
        Self { weight: path.key("weight"), bias: path.key("bias"), in_features, out_features }
    }

    /// # Shapes
    /// [..., in] -> [..., out]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let w = b.param(&self.weight, &[self.out_features, self.in_features])?;
        let bias = b.param(&self.bias, &[self.out_features])?;
        b.linear(x, &w, &bias)
    }
}
