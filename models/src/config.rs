//! `unet/config.json`: diffusers' UNet2DModel keys, read with serde into [`UNetConfig`]
//! with diffusers' defaults for absent keys. Unknown keys are an error naming the key; keys
//! this U-Net does not implement are accepted only at the one value it implements.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

ddpm_runtime::named_enum! {
    /// A block of the down path.
    pub enum DownBlock {
        DownBlock2D => "DownBlock2D",
        AttnDownBlock2D => "AttnDownBlock2D",
    }
}

ddpm_runtime::named_enum! {
    /// A block of the up path.
    pub enum UpBlock {
        UpBlock2D => "UpBlock2D",
        AttnUpBlock2D => "AttnUpBlock2D",
    }
}

ddpm_runtime::named_enum! {
    /// The middle block (`mid_block_type`; null for none).
    pub enum MidBlock {
        UNetMidBlock2D => "UNetMidBlock2D",
    }
}

// Keys with one implemented value: the value is the only name of the enum.
ddpm_runtime::named_enum! {
    /// `time_embedding_type`.
    pub enum TimeEmbeddingType { Positional => "positional" }
}
ddpm_runtime::named_enum! {
    /// `downsample_type` and `upsample_type`.
    pub enum ResampleType { Conv => "conv" }
}
ddpm_runtime::named_enum! {
    /// `act_fn` (diffusers treats swish as silu).
    pub enum ActFn { Silu => "silu", Swish => "swish" }
}
ddpm_runtime::named_enum! {
    /// `resnet_time_scale_shift`.
    pub enum ResnetTimeScaleShift { Default => "default" }
}

/// A resolved UNet2DModel config (every value set, diffusers' defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    /// Height and width (`sample_size`: an int or a pair); None when absent.
    pub sample_size: Option<(usize, usize)>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_dim: Option<usize>,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<DownBlock>,
    pub mid_block: bool,
    pub up_block_types: Vec<UpBlock>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub dropout: f64,
    /// None: one head per block (diffusers: head dim = channels).
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub add_attention: bool,
    pub num_class_embeds: Option<usize>,
    /// Ignored for positional time embeddings; kept to write it back.
    pub num_train_timesteps: Option<usize>,
}

impl Default for UNetConfig {
    /// diffusers' UNet2DModel defaults.
    fn default() -> Self {
        Self {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: vec![
                DownBlock::DownBlock2D,
                DownBlock::AttnDownBlock2D,
                DownBlock::AttnDownBlock2D,
                DownBlock::AttnDownBlock2D,
            ],
            mid_block: true,
            up_block_types: vec![UpBlock::AttnUpBlock2D, UpBlock::AttnUpBlock2D, UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D],
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            dropout: 0.0,
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            add_attention: true,
            num_class_embeds: None,
            num_train_timesteps: None,
        }
    }
}

impl UNetConfig {
    /// The DDPM paper's CIFAR-10 network (as the converted `ddpm-cifar10-32` has it).
    pub fn ddpm_cifar10() -> Self {
        Self {
            sample_size: Some((32, 32)),
            block_out_channels: vec![128, 256, 256, 256],
            down_block_types: vec![DownBlock::DownBlock2D, DownBlock::AttnDownBlock2D, DownBlock::DownBlock2D, DownBlock::DownBlock2D],
            up_block_types: vec![UpBlock::UpBlock2D, UpBlock::UpBlock2D, UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D],
            attention_head_dim: None,
            dropout: 0.1,
            norm_eps: 1e-6,
            downsample_padding: 0,
            flip_sin_to_cos: false,
            freq_shift: 1.0,
            ..Self::default()
        }
    }

    /// A small class-conditional network for 28x28 digits (attention at 7x7).
    pub fn digits() -> Self {
        Self {
            sample_size: Some((28, 28)),
            in_channels: 1,
            out_channels: 1,
            block_out_channels: vec![32, 64, 64],
            down_block_types: vec![DownBlock::DownBlock2D, DownBlock::DownBlock2D, DownBlock::AttnDownBlock2D],
            up_block_types: vec![UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D, UpBlock::UpBlock2D],
            attention_head_dim: Some(32),
            norm_num_groups: 16,
            dropout: 0.1,
            num_class_embeds: Some(10),
            ..Self::default()
        }
    }

    /// The time embedding width (4 x the first block's channels unless set).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(self.block_out_channels[0] * 4)
    }

    /// Parses and checks the text of a config.json; `file` names it in errors.
    ///
    /// ```
    /// use ddpm_models::UNetConfig;
    /// let c = UNetConfig::from_json_str(r#"{"sample_size": 32, "block_out_channels": [64, 128], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}"#, "config.json")?;
    /// assert_eq!(c.sample_size, Some((32, 32)));
    /// assert_eq!(c.layers_per_block, 2); // diffusers' default
    /// let e = UNetConfig::from_json_str(r#"{"act_fn": "gelu"}"#, "config.json").unwrap_err();
    /// assert!(e.to_string().starts_with("config.json: config key `act_fn`"));
    /// # Ok::<(), ddpm_models::Error>(())
    /// ```
    pub fn from_json_str(text: &str, file: &str) -> Result<Self> {
        let map = ddpm_runtime::config::json_object(text, file).map_err(|e| match e {
            ddpm_runtime::Error::Json { msg, .. } => Error::bad_file(file, format!("invalid JSON: {msg}")),
            other => Error::Runtime(other),
        })?;
        let keys: Keys = ddpm_runtime::config::from_json_map(map, file, "UNet2DModel config").map_err(|e| match e {
            ddpm_runtime::Error::Config { file, key, msg } => Error::Config { file, key, msg },
            other => Error::Runtime(other),
        })?;
        let c = keys.resolve(file)?;
        c.validate(file)?;
        Ok(c)
    }

    /// Reads and checks a `config.json` (a regular file of at most
    /// [`ddpm_io::limits::MAX_CONFIG_BYTES`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = ddpm_io::files::read_regular_text(path, ddpm_io::limits::MAX_CONFIG_BYTES, "UNet2DModel config")?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Every check of a config read from a file: [`check_values`](Self::check_values), then
    /// the parameter count the network would have.
    pub fn validate(&self, file: &str) -> Result<()> {
        self.check_values(file)?;
        let params = crate::shape::parameter_count(self)?;
        if params > Self::MAX_PARAMETERS {
            return Err(Error::Config {
                file: file.into(),
                key: "block_out_channels".into(),
                msg: format!("the network would have {params} parameters, expected at most {}", Self::MAX_PARAMETERS),
            });
        }
        Ok(())
    }

    /// Sizes, ranges and consistency: what diffusers would fail on later (or silently get
    /// wrong), and sizes beyond any real network.
    pub fn check_values(&self, file: &str) -> Result<()> {
        let err = |key: &str, msg: String| Err(Error::Config { file: file.into(), key: key.into(), msg });
        let n = self.block_out_channels.len();
        if n == 0 {
            return err("block_out_channels", "found an empty list, expected one width per level".into());
        }
        // Sizes first, with the numbers, so that nothing below (nor the parameter walk)
        // loops or allocates for a config that asks for more than any machine has.
        if n > Self::MAX_LEVELS {
            return err("block_out_channels", format!("found {n} levels, expected at most {}", Self::MAX_LEVELS));
        }
        if let Some(&c) = self.block_out_channels.iter().find(|&&c| c == 0 || c > Self::MAX_WIDTH) {
            return err("block_out_channels", format!("found a width of {c}, expected 1 to {}", Self::MAX_WIDTH));
        }
        if self.layers_per_block > Self::MAX_LAYERS_PER_BLOCK {
            return err("layers_per_block", format!("found {}, expected 1 to {}", self.layers_per_block, Self::MAX_LAYERS_PER_BLOCK));
        }
        for (key, v) in [("in_channels", self.in_channels), ("out_channels", self.out_channels)] {
            if v == 0 || v > Self::MAX_IMAGE_CHANNELS {
                return err(key, format!("found {v}, expected 1 to {}", Self::MAX_IMAGE_CHANNELS));
            }
        }
        if let Some((h, w)) = self.sample_size {
            if h == 0 || w == 0 || h > Self::MAX_SAMPLE_SIZE || w > Self::MAX_SAMPLE_SIZE {
                return err("sample_size", format!("found {h}x{w}, expected each side 1 to {}", Self::MAX_SAMPLE_SIZE));
            }
        }
        if let Some(d) = self.time_embedding_dim {
            if d == 0 || d > Self::MAX_WIDTH * 4 {
                return err("time_embedding_dim", format!("found {d}, expected 1 to {}", Self::MAX_WIDTH * 4));
            }
        }
        if let Some(k) = self.num_class_embeds {
            if k > Self::MAX_CLASSES {
                return err("num_class_embeds", format!("found {k}, expected at most {}", Self::MAX_CLASSES));
            }
        }
        if let Some(t) = self.num_train_timesteps {
            if t > 1_000_000 {
                return err("num_train_timesteps", format!("found {t}, expected at most 1000000"));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return err("norm_eps", format!("found {}, expected a finite number > 0", self.norm_eps));
        }
        if !self.freq_shift.is_finite() {
            return err("freq_shift", format!("found {}, expected a finite number", self.freq_shift));
        }
        if !(self.mid_block_scale_factor.is_finite() && self.mid_block_scale_factor > 0.0) {
            return err("mid_block_scale_factor", format!("found {}, expected a finite number > 0", self.mid_block_scale_factor));
        }
        if self.downsample_padding > 1 {
            return err("downsample_padding", format!("found {}, expected 0 or 1", self.downsample_padding));
        }
        if self.down_block_types.len() != n {
            return err(
                "down_block_types",
                format!("found {} blocks, expected {n} (one per block_out_channels)", self.down_block_types.len()),
            );
        }
        if self.up_block_types.len() != n {
            return err("up_block_types", format!("found {} blocks, expected {n} (one per block_out_channels)", self.up_block_types.len()));
        }
        if self.layers_per_block == 0 {
            return err("layers_per_block", "found 0, expected at least 1".into());
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return err("in_channels", "channel counts must be at least 1".into());
        }
        for &c in &self.block_out_channels {
            if self.norm_num_groups == 0 || c % self.norm_num_groups != 0 {
                return err("norm_num_groups", format!("{} does not divide block width {c}", self.norm_num_groups));
            }
            if let Some(h) = self.attention_head_dim {
                if h == 0 || c % h != 0 {
                    return err("attention_head_dim", format!("{h} does not divide block width {c}"));
                }
            }
        }
        if let Some(g) = self.attn_norm_num_groups {
            let last = self.block_out_channels[n - 1];
            if g == 0 || !last.is_multiple_of(g) {
                return err("attn_norm_num_groups", format!("{g} does not divide the middle block's width {last}"));
            }
        }
        if self.num_class_embeds == Some(0) {
            return err("num_class_embeds", "found 0, expected at least 1 class (or null)".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err("dropout", format!("found {}, expected a probability in [0, 1)", self.dropout));
        }
        if let Some((h, w)) = self.sample_size {
            let f = 1usize << (n - 1);
            if h % f != 0 || w % f != 0 {
                return err("sample_size", format!("{h}x{w} is not divisible by 2^{} (the number of downsamplings)", n - 1));
            }
        }
        Ok(())
    }

    /// Limits of [`validate`](Self::validate), far beyond any diffusers UNet2DModel (the
    /// largest, at 256x256, has 6 levels of at most 512 channels and ~114M parameters).
    pub const MAX_LEVELS: usize = 8;
    pub const MAX_WIDTH: usize = 8192;
    pub const MAX_LAYERS_PER_BLOCK: usize = 32;
    pub const MAX_IMAGE_CHANNELS: usize = 1024;
    pub const MAX_SAMPLE_SIZE: usize = 4096;
    pub const MAX_CLASSES: usize = 1_000_000;
    pub const MAX_PARAMETERS: usize = 4_000_000_000;

    /// The config as diffusers writes it (every key), for `config.json` and ONNX metadata.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(Keys::from(self)).unwrap_or_default();
        if let Value::Object(m) = &mut v {
            m.insert("_class_name".into(), "UNet2DModel".into());
        }
        v
    }
}

/// The keys of a UNet2DModel `config.json`, as diffusers names them, with its defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Keys {
    #[serde(with = "sample_size")]
    sample_size: Option<(usize, usize)>,
    in_channels: usize,
    out_channels: usize,
    center_input_sample: bool,
    time_embedding_type: TimeEmbeddingType,
    time_embedding_dim: Option<usize>,
    freq_shift: f64,
    flip_sin_to_cos: bool,
    down_block_types: Vec<DownBlock>,
    mid_block_type: Option<MidBlock>,
    up_block_types: Vec<UpBlock>,
    block_out_channels: Vec<usize>,
    layers_per_block: usize,
    mid_block_scale_factor: f64,
    downsample_padding: usize,
    downsample_type: ResampleType,
    upsample_type: ResampleType,
    dropout: f64,
    act_fn: ActFn,
    attention_head_dim: Option<usize>,
    norm_num_groups: usize,
    attn_norm_num_groups: Option<usize>,
    norm_eps: f64,
    resnet_time_scale_shift: ResnetTimeScaleShift,
    add_attention: bool,
    /// Only null (no class embedding beyond `num_class_embeds`) is implemented.
    class_embed_type: Option<Value>,
    num_class_embeds: Option<usize>,
    num_train_timesteps: Option<usize>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::from(&UNetConfig::default())
    }
}

impl From<&UNetConfig> for Keys {
    fn from(c: &UNetConfig) -> Self {
        Keys {
            sample_size: c.sample_size,
            in_channels: c.in_channels,
            out_channels: c.out_channels,
            center_input_sample: c.center_input_sample,
            time_embedding_type: TimeEmbeddingType::Positional,
            time_embedding_dim: c.time_embedding_dim,
            freq_shift: c.freq_shift,
            flip_sin_to_cos: c.flip_sin_to_cos,
            down_block_types: c.down_block_types.clone(),
            mid_block_type: c.mid_block.then_some(MidBlock::UNetMidBlock2D),
            up_block_types: c.up_block_types.clone(),
            block_out_channels: c.block_out_channels.clone(),
            layers_per_block: c.layers_per_block,
            mid_block_scale_factor: c.mid_block_scale_factor,
            downsample_padding: c.downsample_padding,
            downsample_type: ResampleType::Conv,
            upsample_type: ResampleType::Conv,
            dropout: c.dropout,
            act_fn: ActFn::Silu,
            attention_head_dim: c.attention_head_dim,
            norm_num_groups: c.norm_num_groups,
            attn_norm_num_groups: c.attn_norm_num_groups,
            norm_eps: c.norm_eps,
            resnet_time_scale_shift: ResnetTimeScaleShift::Default,
            add_attention: c.add_attention,
            class_embed_type: None,
            num_class_embeds: c.num_class_embeds,
            num_train_timesteps: c.num_train_timesteps,
        }
    }
}

impl Keys {
    fn resolve(self, file: &str) -> Result<UNetConfig> {
        if let Some(v) = self.class_embed_type {
            return Err(Error::Config {
                file: file.into(),
                key: "class_embed_type".into(),
                msg: format!("found {v}, only null is supported"),
            });
        }
        Ok(UNetConfig {
            sample_size: self.sample_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            center_input_sample: self.center_input_sample,
            time_embedding_dim: self.time_embedding_dim,
            freq_shift: self.freq_shift,
            flip_sin_to_cos: self.flip_sin_to_cos,
            down_block_types: self.down_block_types,
            mid_block: self.mid_block_type.is_some(),
            up_block_types: self.up_block_types,
            block_out_channels: self.block_out_channels,
            layers_per_block: self.layers_per_block,
            mid_block_scale_factor: self.mid_block_scale_factor,
            downsample_padding: self.downsample_padding,
            dropout: self.dropout,
            attention_head_dim: self.attention_head_dim,
            norm_num_groups: self.norm_num_groups,
            attn_norm_num_groups: self.attn_norm_num_groups,
            norm_eps: self.norm_eps,
            add_attention: self.add_attention,
            num_class_embeds: self.num_class_embeds,
            num_train_timesteps: self.num_train_timesteps,
        })
    }
}

/// `sample_size`: an int (square), a pair [height, width], or null.
mod sample_size {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Size {
        Square(usize),
        Pair([usize; 2]),
    }

    pub fn serialize<S: Serializer>(v: &Option<(usize, usize)>, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            None => s.serialize_none(),
            Some((h, w)) if h == w => Size::Square(h).serialize(s),
            Some((h, w)) => Size::Pair([h, w]).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(usize, usize)>, D::Error> {
        Ok(
            match Option::<Size>::deserialize(d)
                .map_err(|_| serde::de::Error::custom("expected an integer, a pair [height, width] or null"))?
            {
                None => None,
                Some(Size::Square(s)) => Some((s, s)),
                Some(Size::Pair([h, w])) => Some((h, w)),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let e = UNetConfig::from_json_str(r#"{"in_channels": 3, "cross_attention_dim": 768}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("cross_attention_dim"), "{e}");
    }

    #[test]
    fn unsupported_block_is_named() {
        let e = UNetConfig::from_json_str(r#"{"down_block_types": ["CrossAttnDownBlock2D"]}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("down_block_types") && e.to_string().contains("CrossAttnDownBlock2D"), "{e}");
    }

    #[test]
    fn null_and_absent_head_dim_differ() {
        let absent = UNetConfig::from_json_str("{}", "c").unwrap();
        let null = UNetConfig::from_json_str(r#"{"attention_head_dim": null}"#, "c").unwrap();
        assert_eq!(absent.attention_head_dim, Some(8));
        assert_eq!(null.attention_head_dim, None);
    }

    #[test]
    fn json_round_trip() {
        for c in [UNetConfig::ddpm_cifar10(), UNetConfig::digits(), UNetConfig::default()] {
            let back = UNetConfig::from_json_str(&c.to_json().to_string(), "c").unwrap();
            assert_eq!(back, c);
        }
    }
}
