//! Parameter paths as diffusers' state dict spells them (`down_blocks.1.attentions.0.to_q`),
//! built by appending parts as candle's `VarBuilder::pp` does, once, when a network is
//! planned: a missing or misshapen tensor error then names the exact key.

use std::fmt;

/// A dotted path into the state dict.
///
/// ```
/// use ddpm_models::unet::ParamPath;
/// let p = ParamPath::root().pp("down_blocks").pp(1).pp("resnets").pp(0).pp("conv1");
/// assert_eq!(p.key("weight"), "down_blocks.1.resnets.0.conv1.weight");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamPath(String);

impl ParamPath {
    /// The empty path (the state dict's top level).
    pub fn root() -> Self {
        Self(String::new())
    }
    /// This path with one more part.
    pub fn pp(&self, part: impl fmt::Display) -> Self {
        if self.0.is_empty() {
            Self(part.to_string())
        } else {
            Self(format!("{}.{part}", self.0))
        }
    }
    /// The key of the tensor `leaf` under this path.
    pub fn key(&self, leaf: &str) -> String {
        self.pp(leaf).0
    }
}

impl fmt::Display for ParamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
