//! The residual block (diffusers' ResnetBlock2D, time_embedding_norm "default"):
//! GroupNorm, SiLU, conv, + projected time embedding, GroupNorm, SiLU, dropout, conv,
//! plus a 1x1-projected shortcut when the width changes.

use super::{conv, group_norm, linear};
use crate::config::UNetConfig;
use crate::error::Result;
use crate::ops::Backend;

#[allow(clippy::too_many_arguments)]
pub(crate) fn resnet_block<B: Backend>(
    b: &mut B,
    c: &UNetConfig,
    prefix: &str,
    x: &B::Tensor,
    emb: &B::Tensor,
    cin: usize,
    cout: usize,
    output_scale: f64,
) -> Result<B::Tensor> {
    let (g, eps) = (c.norm_num_groups, c.norm_eps);
    let h = group_norm(b, x, &format!("{prefix}.norm1"), cin, g, eps)?;
    let h = b.silu(&h)?;
    let h = conv(b, &h, &format!("{prefix}.conv1"), cin, cout, 3, 1, 1)?;
    let t = b.silu(emb)?;
    let t = linear(b, &t, &format!("{prefix}.time_emb_proj"), c.time_embed_dim(), cout)?;
    let h = b.add_per_channel(&h, &t)?;
    let h = group_norm(b, &h, &format!("{prefix}.norm2"), cout, g, eps)?;
    let h = b.silu(&h)?;
    let h = b.dropout(&h, c.dropout)?;
    let h = conv(b, &h, &format!("{prefix}.conv2"), cout, cout, 3, 1, 1)?;
    let shortcut = if cin != cout { conv(b, x, &format!("{prefix}.conv_shortcut"), cin, cout, 1, 1, 0)? } else { x.clone() };
    let out = b.add(&shortcut, &h)?;
    if output_scale != 1.0 {
        b.affine(&out, 1.0 / output_scale, 0.0)
    } else {
        Ok(out)
    }
}
