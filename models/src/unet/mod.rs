//! Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (<https://arxiv.org/abs/2006.11239>), Appendix B: the PixelCNN++-style U-Net with
//! residual blocks, self-attention at chosen resolutions and a sinusoidal time embedding,
//! in the configuration space and with the parameter names of diffusers' UNet2DModel.

mod attention;
mod blocks;
mod resnet;

use crate::config::UNetConfig;
use crate::error::{Error, Result};
use crate::ops::Backend;

pub(crate) use attention::attention_block;
pub(crate) use resnet::resnet_block;

/// Loads `{prefix}.weight` / `{prefix}.bias` and applies a convolution.
pub(crate) fn conv<B: Backend>(b: &mut B, x: &B::Tensor, prefix: &str, cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Result<B::Tensor> {
    let w = b.param(&format!("{prefix}.weight"), &[cout, cin, k, k])?;
    let bias = b.param(&format!("{prefix}.bias"), &[cout])?;
    b.conv2d(x, &w, &bias, stride, pad)
}

pub(crate) fn group_norm<B: Backend>(b: &mut B, x: &B::Tensor, prefix: &str, channels: usize, groups: usize, eps: f64) -> Result<B::Tensor> {
    let w = b.param(&format!("{prefix}.weight"), &[channels])?;
    let bias = b.param(&format!("{prefix}.bias"), &[channels])?;
    b.group_norm(x, groups, eps, &w, &bias)
}

pub(crate) fn linear<B: Backend>(b: &mut B, x: &B::Tensor, prefix: &str, cin: usize, cout: usize) -> Result<B::Tensor> {
    let w = b.param(&format!("{prefix}.weight"), &[cout, cin])?;
    let bias = b.param(&format!("{prefix}.bias"), &[cout])?;
    b.linear(x, &w, &bias)
}

/// The U-Net: eps_theta(x_t, t[, y]).
#[derive(Debug, Clone)]
pub struct UNet2DModel {
    pub config: UNetConfig,
}

impl UNet2DModel {
    pub fn new(config: UNetConfig) -> Result<Self> {
        config.check_values("config")?;
        Ok(Self { config })
    }

    /// The forward pass.
    ///
    /// # Shapes
    /// `sample` [B, in_channels, H, W], `timesteps` [B] (integers), `class_labels` [B] for a
    /// class-conditional model; returns [B, out_channels, H, W].
    pub fn forward<B: Backend>(&self, b: &mut B, sample: &B::Tensor, timesteps: &B::Tensor, class_labels: Option<&B::Tensor>) -> Result<B::Tensor> {
        let c = &self.config;
        let c0 = c.block_out_channels[0];
        let ted = c.time_embed_dim();

        // 1. time (and class) embedding
        let t_emb = b.timestep_embedding(timesteps, c0, c.flip_sin_to_cos, c.freq_shift)?;
        let emb = linear(b, &t_emb, "time_embedding.linear_1", c0, ted)?;
        let emb = b.silu(&emb)?;
        let mut emb = linear(b, &emb, "time_embedding.linear_2", ted, ted)?;
        match (c.num_class_embeds, class_labels) {
            (Some(n), Some(labels)) => {
                let table = b.param("class_embedding.weight", &[n, ted])?;
                let class_emb = b.embedding(labels, &table)?;
                emb = b.add(&emb, &class_emb)?;
            }
            (Some(_), None) => return Err(Error::Shape("the model is class-conditional: class_labels are needed".into())),
            (None, Some(_)) => return Err(Error::Shape("class_labels given to a model without num_class_embeds".into())),
            (None, None) => {}
        }

        // 2. input convolution
        let x = if c.center_input_sample { b.affine(sample, 2.0, -1.0)? } else { sample.clone() };
        let mut h = conv(b, &x, "conv_in", c.in_channels, c0, 3, 1, 1)?;

        // 3. down path, keeping every output for the skip connections
        let mut skips = vec![h.clone()];
        let mut cin = c0;
        for (i, &kind) in c.down_block_types.iter().enumerate() {
            let cout = c.block_out_channels[i];
            let last = i + 1 == c.block_out_channels.len();
            h = blocks::down_block(b, c, kind, i, &h, &emb, cin, cout, !last, &mut skips)?;
            cin = cout;
        }

        // 4. middle
        if c.mid_block {
            h = blocks::mid_block(b, c, &h, &emb)?;
        }

        // 5. up path
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let mut prev = rev[0];
        for (i, &kind) in c.up_block_types.iter().enumerate() {
            let cout = rev[i];
            let cskip_in = rev[(i + 1).min(rev.len() - 1)];
            let last = i + 1 == rev.len();
            h = blocks::up_block(b, c, kind, i, &h, &emb, prev, cout, cskip_in, !last, &mut skips)?;
            prev = cout;
        }

        // 6. output
        let h = group_norm(b, &h, "conv_norm_out", c0, c.norm_num_groups, c.norm_eps)?;
        let h = b.silu(&h)?;
        conv(b, &h, "conv_out", c0, c.out_channels, 3, 1, 1)
    }
}
