//! The small set of tensor operations the U-Net is written over. Training runs it on
//! libtorch ([`crate::tch_backend`]), export records it as ONNX nodes (ddpm-exporter), and
//! [`crate::shape::ShapeBackend`] walks it to list the parameters. One forward pass, three
//! backends, so the exported graph cannot drift from the trained model.

use crate::error::Result;

/// Tensor operations of the U-Net. Shapes: images are [B, C, H, W], token sequences
/// [B, N, C], vectors [B, C]; parameters use PyTorch's layouts (conv weight
/// [out, in, kh, kw], linear weight [out, in]).
pub trait Backend {
    type Tensor: Clone;

    /// The parameter `name` (a diffusers state-dict key) of the given shape.
    fn param(&mut self, name: &str, shape: &[usize]) -> Result<Self::Tensor>;

    /// 2-D convolution, square kernel, symmetric zero padding.
    fn conv2d(&mut self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor, stride: usize, padding: usize) -> Result<Self::Tensor>;
    /// Zero padding of one row at the bottom and one column at the right (diffusers'
    /// Downsample2D with padding 0).
    fn pad_bottom_right(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    fn group_norm(&mut self, x: &Self::Tensor, groups: usize, eps: f64, w: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// x W^T + b over the last dimension.
    fn linear(&mut self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    fn silu(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Dropout with probability `p` (identity outside training).
    fn dropout(&mut self, x: &Self::Tensor, p: f64) -> Result<Self::Tensor>;
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// [B, C, H, W] + [B, C] broadcast over H and W.
    fn add_per_channel(&mut self, x: &Self::Tensor, v: &Self::Tensor) -> Result<Self::Tensor>;
    /// x * mul + add.
    fn affine(&mut self, x: &Self::Tensor, mul: f64, add: f64) -> Result<Self::Tensor>;
    fn concat_channels(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Nearest-neighbour upsampling by 2.
    fn upsample_nearest2x(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// [B, C, H, W] -> [B, H*W, C].
    fn to_tokens(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// [B, H*W, C] -> [B, C, H, W], with B, H, W taken from `like`.
    fn tokens_to_image(&mut self, x: &Self::Tensor, like: &Self::Tensor) -> Result<Self::Tensor>;
    /// Multi-head scaled dot-product attention over [B, N, C] (C split into `heads`).
    fn attention(&mut self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, heads: usize) -> Result<Self::Tensor>;
    /// diffusers' `get_timestep_embedding`: [B] timesteps -> [B, dim] sinusoids.
    fn timestep_embedding(&mut self, t: &Self::Tensor, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Self::Tensor>;
    /// Rows of `table` [num, dim] picked by integer `ids` [B] -> [B, dim].
    fn embedding(&mut self, ids: &Self::Tensor, table: &Self::Tensor) -> Result<Self::Tensor>;
    /// [B, C, H, W] -> [B, C*H*W].
    fn flatten(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
}

/// The frequencies of diffusers' sinusoidal timestep embedding, computed in float32 as
/// diffusers does (exp(-ln(10000) * i / (half - shift))), so both backends use the same
/// constants.
pub fn timestep_frequencies(dim: usize, freq_shift: f64) -> Vec<f32> {
    let half = dim / 2;
    let scale = -(10000f32.ln());
    (0..half).map(|i| (scale * i as f32 / (half as f32 - freq_shift as f32)).exp()).collect()
}
