//! `unet/config.json`: diffusers' UNet2DModel keys, parsed with its defaults. Keys outside
//! the supported set are an error naming the key, unless they hold their default.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// A block of the down path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownBlock {
    DownBlock2D,
    AttnDownBlock2D,
}

/// A block of the up path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpBlock {
    UpBlock2D,
    AttnUpBlock2D,
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
            down_block_types: vec![
                DownBlock::DownBlock2D,
                DownBlock::AttnDownBlock2D,
                DownBlock::DownBlock2D,
                DownBlock::DownBlock2D,
            ],
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
    pub fn from_json_str(text: &str, file: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_file(file, format!("invalid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::bad_file(file, "expected a JSON object"));
        };
        let c = Self::from_map(&map, file)?;
        c.validate(file)?;
        Ok(c)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = ddpm_runtime::limits::read_regular_text(path, ddpm_runtime::limits::MAX_CONFIG_BYTES, "UNet2DModel config")?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    fn from_map(map: &Map<String, Value>, file: &str) -> Result<Self> {
        let err = |key: &str, msg: String| Error::Config { file: file.into(), key: key.into(), msg };
        let uint = |k: &str, v: &Value| v.as_u64().map(|x| x as usize).ok_or_else(|| err(k, format!("found {v}, expected a non-negative integer")));
        let float = |k: &str, v: &Value| v.as_f64().ok_or_else(|| err(k, format!("found {v}, expected a number")));
        let boolean = |k: &str, v: &Value| v.as_bool().ok_or_else(|| err(k, format!("found {v}, expected true or false")));
        let string = |k: &str, v: &Value| v.as_str().map(str::to_string).ok_or_else(|| err(k, format!("found {v}, expected a string")));
        let list = |k: &str, v: &Value| v.as_array().cloned().ok_or_else(|| err(k, format!("found {v}, expected a list")));
        let only = |k: &str, v: &Value, allowed: &[Value]| {
            if allowed.contains(v) {
                Ok(())
            } else {
                Err(err(k, format!("found {v}, only {} is supported", allowed.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" or "))))
            }
        };
        let mut c = UNetConfig::default();
        for (key, v) in map {
            let k = key.as_str();
            if k.starts_with('_') {
                continue;
            }
            match k {
                "sample_size" => {
                    c.sample_size = match v {
                        Value::Null => None,
                        Value::Array(a) if a.len() == 2 => Some((uint(k, &a[0])?, uint(k, &a[1])?)),
                        _ => {
                            let s = uint(k, v)?;
                            Some((s, s))
                        }
                    }
                }
                "in_channels" => c.in_channels = uint(k, v)?,
                "out_channels" => c.out_channels = uint(k, v)?,
                "center_input_sample" => c.center_input_sample = boolean(k, v)?,
                "time_embedding_type" => only(k, v, &[json!("positional")])?,
                "time_embedding_dim" => c.time_embedding_dim = if v.is_null() { None } else { Some(uint(k, v)?) },
                "freq_shift" => c.freq_shift = float(k, v)?,
                "flip_sin_to_cos" => c.flip_sin_to_cos = boolean(k, v)?,
                "down_block_types" => {
                    c.down_block_types = list(k, v)?
                        .iter()
                        .map(|b| match b.as_str() {
                            Some("DownBlock2D") => Ok(DownBlock::DownBlock2D),
                            Some("AttnDownBlock2D") => Ok(DownBlock::AttnDownBlock2D),
                            _ => Err(err(k, format!("found {b}, expected DownBlock2D or AttnDownBlock2D"))),
                        })
                        .collect::<Result<_>>()?
                }
                "up_block_types" => {
                    c.up_block_types = list(k, v)?
                        .iter()
                        .map(|b| match b.as_str() {
                            Some("UpBlock2D") => Ok(UpBlock::UpBlock2D),
                            Some("AttnUpBlock2D") => Ok(UpBlock::AttnUpBlock2D),
                            _ => Err(err(k, format!("found {b}, expected UpBlock2D or AttnUpBlock2D"))),
                        })
                        .collect::<Result<_>>()?
                }
                "mid_block_type" => {
                    only(k, v, &[json!("UNetMidBlock2D"), Value::Null])?;
                    c.mid_block = !v.is_null();
                }
                "block_out_channels" => c.block_out_channels = list(k, v)?.iter().map(|b| uint(k, b)).collect::<Result<_>>()?,
                "layers_per_block" => c.layers_per_block = uint(k, v)?,
                "mid_block_scale_factor" => c.mid_block_scale_factor = float(k, v)?,
                "downsample_padding" => c.downsample_padding = uint(k, v)?,
                "downsample_type" | "upsample_type" => only(k, v, &[json!("conv")])?,
                "dropout" => c.dropout = float(k, v)?,
                "act_fn" => only(k, v, &[json!("silu"), json!("swish")])?,
                "attention_head_dim" => c.attention_head_dim = if v.is_null() { None } else { Some(uint(k, v)?) },
                "norm_num_groups" => c.norm_num_groups = uint(k, v)?,
                "attn_norm_num_groups" => c.attn_norm_num_groups = if v.is_null() { None } else { Some(uint(k, v)?) },
                "norm_eps" => c.norm_eps = float(k, v)?,
                "resnet_time_scale_shift" => only(k, v, &[json!("default")])?,
                "add_attention" => c.add_attention = boolean(k, v)?,
                "class_embed_type" => only(k, v, &[Value::Null])?,
                "num_class_embeds" => c.num_class_embeds = if v.is_null() { None } else { Some(uint(k, v)?) },
                "num_train_timesteps" => c.num_train_timesteps = if v.is_null() { None } else { Some(uint(k, v)?) },
                other => return Err(err(other, format!("unknown UNet2DModel config key (value {})", string(other, v).unwrap_or_else(|_| v.to_string())))),
            }
        }
        Ok(c)
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
            return err("down_block_types", format!("found {} blocks, expected {n} (one per block_out_channels)", self.down_block_types.len()));
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
            if g == 0 || last % g != 0 {
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
        let down: Vec<&str> = self.down_block_types.iter().map(|b| match b {
            DownBlock::DownBlock2D => "DownBlock2D",
            DownBlock::AttnDownBlock2D => "AttnDownBlock2D",
        }).collect();
        let up: Vec<&str> = self.up_block_types.iter().map(|b| match b {
            UpBlock::UpBlock2D => "UpBlock2D",
            UpBlock::AttnUpBlock2D => "AttnUpBlock2D",
        }).collect();
        let sample_size = match self.sample_size {
            None => Value::Null,
            Some((h, w)) if h == w => json!(h),
            Some((h, w)) => json!([h, w]),
        };
        json!({
            "_class_name": "UNet2DModel",
            "act_fn": "silu",
            "add_attention": self.add_attention,
            "attention_head_dim": self.attention_head_dim,
            "attn_norm_num_groups": self.attn_norm_num_groups,
            "block_out_channels": self.block_out_channels,
            "center_input_sample": self.center_input_sample,
            "class_embed_type": null,
            "down_block_types": down,
            "downsample_padding": self.downsample_padding,
            "downsample_type": "conv",
            "dropout": self.dropout,
            "flip_sin_to_cos": self.flip_sin_to_cos,
            "freq_shift": self.freq_shift,
            "in_channels": self.in_channels,
            "layers_per_block": self.layers_per_block,
            "mid_block_scale_factor": self.mid_block_scale_factor,
            "mid_block_type": if self.mid_block { json!("UNetMidBlock2D") } else { Value::Null },
            "norm_eps": self.norm_eps,
            "norm_num_groups": self.norm_num_groups,
            "num_class_embeds": self.num_class_embeds,
            "num_train_timesteps": self.num_train_timesteps,
            "out_channels": self.out_channels,
            "resnet_time_scale_shift": "default",
            "sample_size": sample_size,
            "time_embedding_dim": self.time_embedding_dim,
            "time_embedding_type": "positional",
            "up_block_types": up,
            "upsample_type": "conv",
        })
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
