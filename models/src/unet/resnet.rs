//! The residual block (diffusers' ResnetBlock2D, time_embedding_norm "default"):
//! GroupNorm, SiLU, conv, + projected time embedding, GroupNorm, SiLU, dropout, conv,
//! plus a 1x1-projected shortcut when the width changes.

use super::layers::{Conv2d, GroupNorm, Linear};
use super::ParamPath;
use crate::error::Result;
use crate::ops::Backend;

/// What a residual block is made with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// The width of the time embedding it adds.
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub dropout: f64,
    /// The output is divided by this (the middle block's `mid_block_scale_factor`).
    pub output_scale: f64,
}

/// A planned residual block.
#[derive(Debug, Clone, PartialEq)]
pub struct ResnetBlock {
    pub config: ResnetConfig,
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub fn new(path: &ParamPath, config: ResnetConfig) -> Self {
        let ResnetConfig { in_channels: cin, out_channels: cout, groups, eps, .. } = config;
        Self {
            config,
            norm1: GroupNorm::new(&path.pp("norm1"), cin, groups, eps),
            conv1: Conv2d::same3(&path.pp("conv1"), cin, cout),
            time_emb_proj: Linear::new(&path.pp("time_emb_proj"), config.temb_channels, cout),
            norm2: GroupNorm::new(&path.pp("norm2"), cout, groups, eps),
            conv2: Conv2d::same3(&path.pp("conv2"), cout, cout),
            conv_shortcut: (cin != cout).then(|| Conv2d::new(&path.pp("conv_shortcut"), cin, cout, 1, 1, 0)),
        }
    }

    /// # Shapes
    /// `x` [B, in, H, W], `emb` [B, temb] -> [B, out, H, W]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor, emb: &B::Tensor) -> Result<B::Tensor> {
        let h = self.norm1.forward(b, x)?;
        let h = b.silu(&h)?;
        let h = self.conv1.forward(b, &h)?;
        let t = b.silu(emb)?;
        let t = self.time_emb_proj.forward(b, &t)?;
        let h = b.add_per_channel(&h, &t)?;
        let h = self.norm2.forward(b, &h)?;
        let h = b.silu(&h)?;
        let h = b.dropout(&h, self.config.dropout)?;
        let h = self.conv2.forward(b, &h)?;
        let shortcut = match &self.conv_shortcut {
            Some(c) => c.forward(b, x)?,
            None => x.clone(),
        };
        let out = b.add(&shortcut, &h)?;
        if self.config.output_scale != 1.0 {
            b.affine(&out, 1.0 / self.config.output_scale, 0.0)
        } else {
            Ok(out)
        }
    }
}
