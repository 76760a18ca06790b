//! A small convolutional classifier for 28x28 digits, written over the same ops trait as
//! the U-Net: trained with libtorch (`trainer classifier`), exported to ONNX, and used by
//! `runtime eval` as the feature extractor for FID and as the judge of class labels.

use crate::error::Result;
use crate::ops::Backend;
use crate::unet::{conv, linear};

/// Widths of the convolution stack; the last one is the feature dimension.
pub const WIDTHS: [usize; 3] = [32, 64, 128];
pub const FEATURES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitClassifier {
    pub in_channels: usize,
    pub classes: usize,
}

impl DigitClassifier {
    /// (logits [B, classes], features [B, 128]) of images [B, C, H, W] in [-1, 1].
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        // 1. 28x28 -> 14x14 -> 7x7, two 3x3 convolutions a level, SiLU
        let [w0, w1, w2] = WIDTHS;
        let h = conv(b, x, "conv1", self.in_channels, w0, 3, 1, 1)?;
        let h = b.silu(&h)?;
        let h = conv(b, &h, "down1", w0, w0, 3, 2, 1)?;
        let h = b.silu(&h)?;
        let h = conv(b, &h, "conv2", w0, w1, 3, 1, 1)?;
        let h = b.silu(&h)?;
        let h = conv(b, &h, "down2", w1, w1, 3, 2, 1)?;
        let h = b.silu(&h)?;
        let h = conv(b, &h, "conv3", w1, w2, 3, 1, 1)?;
        let h = b.silu(&h)?;
        // 2. global average pool: the features; a linear layer: the logits
        let features = b.mean_spatial(&h)?;
        let logits = linear(b, &features, "fc", FEATURES, self.classes)?;
        Ok((logits, features))
    }

    /// Every parameter: (name, shape).
    pub fn parameter_list(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let mut b = crate::shape::ShapeBackend::default();
        self.forward(&mut b, &vec![1, self.in_channels, 28, 28])?;
        Ok(b.params)
    }
}
