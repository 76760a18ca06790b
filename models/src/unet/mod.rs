//! Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (<https://arxiv.org/abs/2006.11239>), Appendix B: the PixelCNN++-style U-Net with
//! residual blocks, self-attention at chosen resolutions and a sinusoidal time embedding,
//! in the configuration space and with the parameter names of diffusers' UNet2DModel.

mod attention;
mod blocks;
mod layers;
mod path;
mod resnet;

pub use attention::{AttentionBlock, AttentionConfig};
pub use blocks::{DownBlock2D, MidBlock2D, UpBlock2D};
pub use layers::{Conv2d, GroupNorm, Linear};
pub use path::ParamPath;
pub use resnet::{ResnetBlock, ResnetConfig};

use crate::config::UNetConfig;
use crate::error::{Error, Result};
use crate::ops::Backend;

/// The U-Net: eps_theta(x_t, t[, y]), planned once from its config (every block with its
/// widths and state-dict keys), run over any [`Backend`].
///
/// ```
/// use ddpm_models::{UNet2DModel, UNetConfig};
/// let model = UNet2DModel::new(UNetConfig::digits())?;
/// let params = ddpm_models::parameter_list(&model.config)?;
/// assert_eq!(params[0].0, "time_embedding.linear_1.weight");
/// # Ok::<(), ddpm_models::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct UNet2DModel {
    pub config: UNetConfig,
    time_linear_1: Linear,
    time_linear_2: Linear,
    /// `class_embedding.weight` [num_class_embeds, time_embed_dim].
    class_embedding: Option<(String, usize)>,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock2D>,
    mid_block: Option<MidBlock2D>,
    up_blocks: Vec<UpBlock2D>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DModel {
    /// Checks the config's values and plans the network.
    pub fn new(config: UNetConfig) -> Result<Self> {
        config.check_values("config")?;
        let c = &config;
        let root = ParamPath::root();
        let (c0, ted) = (c.block_out_channels[0], c.time_embed_dim());
        let mut cin = c0;
        let down_blocks = (0..c.block_out_channels.len())
            .map(|i| {
                let block = DownBlock2D::new(c, i, cin);
                cin = c.block_out_channels[i];
                block
            })
            .collect();
        let mut prev = c.block_out_channels.last().copied().unwrap_or(c0);
        let up_blocks = (0..c.block_out_channels.len())
            .map(|i| {
                let block = UpBlock2D::new(c, i, prev);
                prev = c.block_out_channels[c.block_out_channels.len() - 1 - i];
                block
            })
            .collect();
        Ok(Self {
            time_linear_1: Linear::new(&root.pp("time_embedding").pp("linear_1"), c0, ted),
            time_linear_2: Linear::new(&root.pp("time_embedding").pp("linear_2"), ted, ted),
            class_embedding: c.num_class_embeds.map(|n| (root.pp("class_embedding").key("weight"), n)),
            conv_in: Conv2d::same3(&root.pp("conv_in"), c.in_channels, c0),
            down_blocks,
            mid_block: c.mid_block.then(|| MidBlock2D::new(c)),
            up_blocks,
            conv_norm_out: GroupNorm::new(&root.pp("conv_norm_out"), c0, c.norm_num_groups, c.norm_eps),
            conv_out: Conv2d::same3(&root.pp("conv_out"), c0, c.out_channels),
            config,
        })
    }

    /// The forward pass.
    ///
    /// # Shapes
    /// `sample` [B, in_channels, H, W], `timesteps` [B] (integers), `class_labels` [B] for a
    /// class-conditional model; returns [B, out_channels, H, W].
    pub fn forward<B: Backend>(
        &self,
        b: &mut B,
        sample: &B::Tensor,
        timesteps: &B::Tensor,
        class_labels: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let c = &self.config;

        // 1. time (and class) embedding
        let t_emb = b.timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)?;
        let emb = self.time_linear_1.forward(b, &t_emb)?;
        let emb = b.silu(&emb)?;
        let mut emb = self.time_linear_2.forward(b, &emb)?;
        match (&self.class_embedding, class_labels) {
            (Some((key, n)), Some(labels)) => {
                let table = b.param(key, &[*n, c.time_embed_dim()])?;
                let class_emb = b.embedding(labels, &table)?;
                emb = b.add(&emb, &class_emb)?;
            }
            (Some(_), None) => return Err(Error::Shape("the model is class-conditional: class_labels are needed".into())),
            (None, Some(_)) => return Err(Error::Shape("class_labels given to a model without num_class_embeds".into())),
            (None, None) => {}
        }

        // 2. input convolution
        let x = if c.center_input_sample { b.affine(sample, 2.0, -1.0)? } else { sample.clone() };
        let mut h = self.conv_in.forward(b, &x)?;

        // 3. down path, keeping every output for the skip connections
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(b, &h, &emb, &mut skips)?;
        }

        // 4. middle
        if let Some(mid) = &self.mid_block {
            h = mid.forward(b, &h, &emb)?;
        }

        // 5. up path
        for block in &self.up_blocks {
            h = block.forward(b, &h, &emb, &mut skips)?;
        }

        // 6. output
        let h = self.conv_norm_out.forward(b, &h)?;
        let h = b.silu(&h)?;
        self.conv_out.forward(b, &h)
    }
}
