//! Self-attention over the pixels of a feature map (diffusers' `Attention` as the
//! UNet2DModel blocks build it: GroupNorm, q/k/v projections, multi-head softmax
//! attention, output projection, residual, rescale).

use super::{group_norm, linear};
use crate::error::Result;
use crate::ops::Backend;

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_block<B: Backend>(
    b: &mut B,
    prefix: &str,
    x: &B::Tensor,
    channels: usize,
    head_dim: Option<usize>,
    groups: usize,
    eps: f64,
    rescale: f64,
) -> Result<B::Tensor> {
    let heads = channels / head_dim.unwrap_or(channels);
    let h = group_norm(b, x, &format!("{prefix}.group_norm"), channels, groups, eps)?;
    let tokens = b.to_tokens(&h)?;
    let q = linear(b, &tokens, &format!("{prefix}.to_q"), channels, channels)?;
    let k = linear(b, &tokens, &format!("{prefix}.to_k"), channels, channels)?;
    let v = linear(b, &tokens, &format!("{prefix}.to_v"), channels, channels)?;
    let o = b.attention(&q, &k, &v, heads)?;
    let o = linear(b, &o, &format!("{prefix}.to_out.0"), channels, channels)?;
    let o = b.from_tokens(&o, x)?;
    let out = b.add(&o, x)?;
    if rescale != 1.0 {
        b.affine(&out, 1.0 / rescale, 0.0)
    } else {
        Ok(out)
    }
}
