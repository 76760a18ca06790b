//! How the project compares two outputs of the same network (libtorch, ONNX Runtime,
//! diffusers): one number, scaled by the reference's largest magnitude.

/// max |a - b| / max |b|: the largest difference relative to the reference `b`'s scale
/// (at least 1e-12).
///
/// ```
/// let e = ddpm_models::compare::rel_error(&[1.0, 2.1], &[1.0, 2.0]);
/// assert!((e - 0.05).abs() < 1e-6, "{e}");
/// ```
pub fn rel_error(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
