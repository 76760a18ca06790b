//! A small convolutional classifier for 28x28 digits, written over the same ops trait as
//! the U-Net: trained with libtorch (`trainer classifier`), exported to ONNX, and used by
//! `runtime eval` as the feature extractor for FID and as the judge of class labels.

use crate::error::Result;
use crate::ops::Backend;
use crate::unet::{Conv2d, Linear, ParamPath};

/// Widths of the two convolution levels.
pub const WIDTHS: [usize; 2] = [32, 64];
/// The feature dimension (the hidden layer before the logits).
pub const FEATURES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitClassifier {
    pub in_channels: usize,
    pub classes: usize,
}

impl DigitClassifier {
    /// (logits [B, classes], features [B, 128]) of images [B, C, 28, 28] in [-1, 1].
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        // 1. 28x28 -> 14x14 -> 7x7: a 3x3 convolution and a strided one a level, SiLU
        let [w0, w1] = WIDTHS;
        let root = ParamPath::root();
        let convs = [
            Conv2d::same3(&root.pp("conv1"), self.in_channels, w0),
            Conv2d::new(&root.pp("down1"), w0, w0, 3, 2, 1),
            Conv2d::same3(&root.pp("conv2"), w0, w1),
            Conv2d::new(&root.pp("down2"), w1, w1, 3, 2, 1),
        ];
        let mut h = x.clone();
        for conv in &convs {
            h = conv.forward(b, &h)?;
            h = b.silu(&h)?;
        }
        // 2. the 7x7 map keeps the layout a digit is made of: flatten, a hidden layer (the
        // features), the logits
        let h = b.flatten(&h)?;
        let features = Linear::new(&root.pp("fc1"), w1 * 7 * 7, FEATURES).forward(b, &h)?;
        let features = b.silu(&features)?;
        let logits = Linear::new(&root.pp("fc2"), FEATURES, self.classes).forward(b, &features)?;
        Ok((logits, features))
    }

    /// Every parameter: (name, shape).
    pub fn parameter_list(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let mut b = crate::shape::ShapeBackend::default();
        self.forward(&mut b, &vec![1, self.in_channels, 28, 28])?;
        Ok(b.params)
    }
}
