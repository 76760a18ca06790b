//! Self-attention over the pixels of a feature map (diffusers' `Attention` as the
//! UNet2DModel blocks build it: GroupNorm, q/k/v projections, multi-head softmax
//! attention, output projection, residual, rescale).

use super::layers::{GroupNorm, Linear};
use super::ParamPath;
use crate::error::Result;
use crate::ops::Backend;

/// What an attention block is made with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionConfig {
    pub channels: usize,
    /// None: one head over all channels (diffusers' `attention_head_dim` null).
    pub head_dim: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    /// The output is divided by this (`rescale_output_factor`).
    pub rescale: f64,
}

/// A planned attention block.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionBlock {
    pub config: AttentionConfig,
    heads: usize,
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl AttentionBlock {
    pub fn new(path: &ParamPath, config: AttentionConfig) -> Self {
        let c = config.channels;
        Self {
            config,
            heads: c / config.head_dim.unwrap_or(c).max(1),
            group_norm: GroupNorm::new(&path.pp("group_norm"), c, config.groups, config.eps),
            to_q: Linear::new(&path.pp("to_q"), c, c),
            to_k: Linear::new(&path.pp("to_k"), c, c),
            to_v: Linear::new(&path.pp("to_v"), c, c),
            to_out: Linear::new(&path.pp("to_out").pp(0), c, c),
        }
    }

    /// # Shapes
    /// [B, C, H, W] -> [B, C, H, W]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let h = self.group_norm.forward(b, x)?;
        let tokens = b.to_tokens(&h)?;
        let q = self.to_q.forward(b, &tokens)?;
        let k = self.to_k.forward(b, &tokens)?;
        let v = self.to_v.forward(b, &tokens)?;
        let o = b.attention(&q, &k, &v, self.heads)?;
        let o = self.to_out.forward(b, &o)?;
        let o = b.tokens_to_image(&o, x)?;
        let out = b.add(&o, x)?;
        if self.config.rescale != 1.0 {
            b.affine(&out, 1.0 / self.config.rescale, 0.0)
        } else {
            Ok(out)
        }
    }
}
