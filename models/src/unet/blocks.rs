//! The down, middle and up blocks (diffusers' DownBlock2D / AttnDownBlock2D,
//! UNetMidBlock2D, UpBlock2D / AttnUpBlock2D), planned from a [`UNetConfig`].

use super::attention::{AttentionBlock, AttentionConfig};
use super::layers::Conv2d;
use super::resnet::{ResnetBlock, ResnetConfig};
use super::ParamPath;
use crate::config::{DownBlock, UNetConfig, UpBlock};
use crate::error::{Error, Result};
use crate::ops::Backend;

/// The settings every block of a network shares.
fn resnet(c: &UNetConfig, in_channels: usize, out_channels: usize, output_scale: f64) -> ResnetConfig {
    ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: c.time_embed_dim(),
        groups: c.norm_num_groups,
        eps: c.norm_eps,
        dropout: c.dropout,
        output_scale,
    }
}

fn attention(c: &UNetConfig, channels: usize, groups: usize, rescale: f64) -> AttentionConfig {
    AttentionConfig { channels, head_dim: c.attention_head_dim, groups, eps: c.norm_eps, rescale }
}

/// The stride-2 convolution of a down block (diffusers' Downsample2D): with padding 0 the
/// input is first padded by one row and column at the bottom right.
#[derive(Debug, Clone, PartialEq)]
struct Downsample {
    conv: Conv2d,
    pad_bottom_right: bool,
}

/// A planned down block: `layers_per_block` residual blocks (each followed by attention in
/// AttnDownBlock2D), then a downsampler except at the last level.
#[derive(Debug, Clone, PartialEq)]
pub struct DownBlock2D {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<AttentionBlock>,
    downsampler: Option<Downsample>,
}

impl DownBlock2D {
    /// Level `i` of `c`, from `in_channels` to `block_out_channels[i]`.
    pub fn new(c: &UNetConfig, i: usize, in_channels: usize) -> Self {
        let path = ParamPath::root().pp("down_blocks").pp(i);
        let cout = c.block_out_channels[i];
        let resnets = (0..c.layers_per_block)
            .map(|j| ResnetBlock::new(&path.pp("resnets").pp(j), resnet(c, if j == 0 { in_channels } else { cout }, cout, 1.0)))
            .collect();
        let attentions = if c.down_block_types[i] == DownBlock::AttnDownBlock2D {
            (0..c.layers_per_block)
                .map(|j| AttentionBlock::new(&path.pp("attentions").pp(j), attention(c, cout, c.norm_num_groups, 1.0)))
                .collect()
        } else {
            Vec::new()
        };
        let last = i + 1 == c.block_out_channels.len();
        let downsampler = (!last).then(|| {
            let conv_path = path.pp("downsamplers").pp(0).pp("conv");
            let pad_bottom_right = c.downsample_padding == 0;
            let padding = if pad_bottom_right { 0 } else { c.downsample_padding };
            Downsample { conv: Conv2d::new(&conv_path, cout, cout, 3, 2, padding), pad_bottom_right }
        });
        Self { resnets, attentions, downsampler }
    }

    /// # Shapes
    /// [B, in, H, W] -> [B, out, H/2, W/2] (H, W at the last level); every layer's output
    /// is pushed to `skips` for the up path.
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor, emb: &B::Tensor, skips: &mut Vec<B::Tensor>) -> Result<B::Tensor> {
        let mut h = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(b, &h, emb)?;
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(b, &h)?;
            }
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            let input = if down.pad_bottom_right { b.pad_bottom_right(&h)? } else { h };
            h = down.conv.forward(b, &input)?;
            skips.push(h.clone());
        }
        Ok(h)
    }
}

/// The planned middle block: residual, attention (unless `add_attention` is false),
/// residual, each scaled by `mid_block_scale_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct MidBlock2D {
    resnets: [ResnetBlock; 2],
    attention: Option<AttentionBlock>,
}

impl MidBlock2D {
    pub fn new(c: &UNetConfig) -> Self {
        let path = ParamPath::root().pp("mid_block");
        let ch = c.block_out_channels.last().copied().unwrap_or(0);
        let scale = c.mid_block_scale_factor;
        let groups = c.attn_norm_num_groups.unwrap_or(c.norm_num_groups);
        Self {
            resnets: [0, 1].map(|j| ResnetBlock::new(&path.pp("resnets").pp(j), resnet(c, ch, ch, scale))),
            attention: c.add_attention.then(|| AttentionBlock::new(&path.pp("attentions").pp(0), attention(c, ch, groups, scale))),
        }
    }

    /// # Shapes
    /// [B, C, H, W] -> [B, C, H, W]
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor, emb: &B::Tensor) -> Result<B::Tensor> {
        let mut h = self.resnets[0].forward(b, x, emb)?;
        if let Some(attn) = &self.attention {
            h = attn.forward(b, &h)?;
        }
        self.resnets[1].forward(b, &h, emb)
    }
}

/// A planned up block: `layers_per_block + 1` residual blocks, each on the concatenation
/// with a skip connection (and followed by attention in AttnUpBlock2D), then a nearest
/// upsampling and a convolution except at the last level.
#[derive(Debug, Clone, PartialEq)]
pub struct UpBlock2D {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<AttentionBlock>,
    upsampler: Option<Conv2d>,
}

impl UpBlock2D {
    /// Level `i` of the up path (widths in reverse order), from `prev_channels`.
    pub fn new(c: &UNetConfig, i: usize, prev_channels: usize) -> Self {
        let path = ParamPath::root().pp("up_blocks").pp(i);
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let cout = rev[i];
        let skip_in = rev[(i + 1).min(rev.len() - 1)];
        let layers = c.layers_per_block + 1;
        let resnets = (0..layers)
            .map(|j| {
                let skip = if j == layers - 1 { skip_in } else { cout };
                let res = if j == 0 { prev_channels } else { cout };
                ResnetBlock::new(&path.pp("resnets").pp(j), resnet(c, res + skip, cout, 1.0))
            })
            .collect();
        let attentions = if c.up_block_types[i] == UpBlock::AttnUpBlock2D {
            (0..layers).map(|j| AttentionBlock::new(&path.pp("attentions").pp(j), attention(c, cout, c.norm_num_groups, 1.0))).collect()
        } else {
            Vec::new()
        };
        let last = i + 1 == rev.len();
        let upsampler = (!last).then(|| Conv2d::same3(&path.pp("upsamplers").pp(0).pp("conv"), cout, cout));
        Self { resnets, attentions, upsampler }
    }

    /// # Shapes
    /// [B, prev, H, W] -> [B, out, 2H, 2W] (H, W at the last level), taking its skip
    /// connections from the end of `skips`.
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor, emb: &B::Tensor, skips: &mut Vec<B::Tensor>) -> Result<B::Tensor> {
        let mut h = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().ok_or_else(|| Error::Shape("ran out of skip connections".into()))?;
            h = b.concat_channels(&h, &skip)?;
            h = resnet.forward(b, &h, emb)?;
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(b, &h)?;
            }
        }
        if let Some(conv) = &self.upsampler {
            let up = b.upsample_nearest2x(&h)?;
            h = conv.forward(b, &up)?;
        }
        Ok(h)
    }
}
