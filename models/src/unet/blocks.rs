//! The down, middle and up blocks (diffusers' DownBlock2D / AttnDownBlock2D,
//! UNetMidBlock2D, UpBlock2D / AttnUpBlock2D).

use super::{attention_block, conv, resnet_block};
use crate::config::{DownBlock, UNetConfig, UpBlock};
use crate::error::{Error, Result};
use crate::ops::Backend;

#[allow(clippy::too_many_arguments)]
pub(crate) fn down_block<B: Backend>(
    b: &mut B,
    c: &UNetConfig,
    kind: DownBlock,
    i: usize,
    x: &B::Tensor,
    emb: &B::Tensor,
    cin: usize,
    cout: usize,
    downsample: bool,
    skips: &mut Vec<B::Tensor>,
) -> Result<B::Tensor> {
    let mut h = x.clone();
    for j in 0..c.layers_per_block {
        let prefix = format!("down_blocks.{i}");
        h = resnet_block(b, c, &format!("{prefix}.resnets.{j}"), &h, emb, if j == 0 { cin } else { cout }, cout, 1.0)?;
        if kind == DownBlock::AttnDownBlock2D {
            h = attention_block(b, &format!("{prefix}.attentions.{j}"), &h, cout, c.attention_head_dim, c.norm_num_groups, c.norm_eps, 1.0)?;
        }
        skips.push(h.clone());
    }
    if downsample {
        let name = format!("down_blocks.{i}.downsamplers.0.conv");
        h = if c.downsample_padding == 0 {
            let padded = b.pad_bottom_right(&h)?;
            conv(b, &padded, &name, cout, cout, 3, 2, 0)?
        } else {
            conv(b, &h, &name, cout, cout, 3, 2, c.downsample_padding)?
        };
        skips.push(h.clone());
    }
    Ok(h)
}

pub(crate) fn mid_block<B: Backend>(b: &mut B, c: &UNetConfig, x: &B::Tensor, emb: &B::Tensor) -> Result<B::Tensor> {
    let ch = *c.block_out_channels.last().unwrap_or(&0);
    let scale = c.mid_block_scale_factor;
    let mut h = resnet_block(b, c, "mid_block.resnets.0", x, emb, ch, ch, scale)?;
    if c.add_attention {
        let groups = c.attn_norm_num_groups.unwrap_or(c.norm_num_groups);
        h = attention_block(b, "mid_block.attentions.0", &h, ch, c.attention_head_dim, groups, c.norm_eps, scale)?;
    }
    resnet_block(b, c, "mid_block.resnets.1", &h, emb, ch, ch, scale)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn up_block<B: Backend>(
    b: &mut B,
    c: &UNetConfig,
    kind: UpBlock,
    i: usize,
    x: &B::Tensor,
    emb: &B::Tensor,
    prev: usize,
    cout: usize,
    cskip_in: usize,
    upsample: bool,
    skips: &mut Vec<B::Tensor>,
) -> Result<B::Tensor> {
    let layers = c.layers_per_block + 1;
    let mut h = x.clone();
    for j in 0..layers {
        let skip = skips.pop().ok_or_else(|| Error::Shape("ran out of skip connections".into()))?;
        let cskip = if j == layers - 1 { cskip_in } else { cout };
        let cres = if j == 0 { prev } else { cout };
        h = b.concat_channels(&h, &skip)?;
        let prefix = format!("up_blocks.{i}");
        h = resnet_block(b, c, &format!("{prefix}.resnets.{j}"), &h, emb, cres + cskip, cout, 1.0)?;
        if kind == UpBlock::AttnUpBlock2D {
            h = attention_block(b, &format!("{prefix}.attentions.{j}"), &h, cout, c.attention_head_dim, c.norm_num_groups, c.norm_eps, 1.0)?;
        }
    }
    if upsample {
        let up = b.upsample_nearest2x(&h)?;
        h = conv(b, &up, &format!("up_blocks.{i}.upsamplers.0.conv"), cout, cout, 3, 1, 1)?;
    }
    Ok(h)
}
