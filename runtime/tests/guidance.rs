//! Classifier-free guidance: a guided chain equals an unguided chain of a model that
//! outputs u + s (c - u) itself; scale 1 is plain conditional sampling to the byte; the
//! null label is never drawn; bad scales and labels are refused.

use ddpm_runtime::{ClassLabels, Denoiser, GuidanceBatching, ModelShape, Pipeline, Result, SamplerKind, SchedulerConfig};

const SHAPE: ModelShape = ModelShape { channels: 1, height: 3, width: 3, out_channels: 1, num_classes: Some(3) };
const NULL: i64 = 2;

/// A class-conditional model with known outputs: 0.1 x + offset(label), the null label's
/// offset being the unconditional prediction.
fn affine(x: f32, label: i64) -> f32 {
    0.1 * x + [0.3, -0.2, 0.05][label as usize]
}

struct Conditional;
impl Denoiser for Conditional {
    fn shape(&self) -> ModelShape {
        SHAPE
    }
    fn predict(&mut self, sample: &[f32], _batch: usize, _t: i64, labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let labels = labels.unwrap_or(&[]);
        Ok(sample.chunks(9).zip(labels).flat_map(|(item, &l)| item.iter().map(move |&x| affine(x, l))).collect())
    }
}

/// The guided output written out: u + s (c - u), with c and u as the model computes them.
struct Formula(f64);
impl Denoiser for Formula {
    fn shape(&self) -> ModelShape {
        SHAPE
    }
    fn predict(&mut self, sample: &[f32], _batch: usize, _t: i64, labels: Option<&[i64]>) -> Result<Vec<f32>> {
        let s = self.0;
        let labels = labels.unwrap_or(&[]);
        Ok(sample
            .chunks(9)
            .zip(labels)
            .flat_map(|(item, &l)| {
                item.iter().map(move |&x| {
                    let (c, u) = (affine(x, l) as f64, affine(x, NULL) as f64);
                    (u + s * (c - u)) as f32
                })
            })
            .collect())
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig { clip_sample: Some(false), ..SchedulerConfig::paper() }
}

#[test]
fn guided_sampling_is_the_formula_for_every_sampler() {
    let labels = ClassLabels::PerSample(vec![0, 1, 1, 0, 0]);
    for kind in [SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::DpmSolverPP] {
        for scale in [0.0, 2.0, 7.5] {
            let formula = Pipeline::new(Formula(scale), config());
            let formula = formula.sampler(kind).steps(8).n(5).batch_size(3).seed(4).class_labels(labels.clone()).run().unwrap();
            // One call on the stacked 2B batch, or two calls of B: the same values.
            for batching in [GuidanceBatching::Stacked, GuidanceBatching::Separate] {
                let guided = Pipeline::new(Conditional, config()).null_class_label(NULL).guidance_scale(scale).guidance_batching(batching);
                let guided = guided.sampler(kind).steps(8).n(5).batch_size(3).seed(4).class_labels(labels.clone()).run().unwrap();
                assert_eq!(guided.data, formula.data, "{kind:?} scale {scale} {batching:?}");
            }
        }
    }
}

#[test]
fn scale_one_is_unguided_sampling_to_the_byte() {
    let labels = ClassLabels::PerSample(vec![1, 0, 1]);
    let run =
        |p: Pipeline<'_, Conditional>| p.sampler(SamplerKind::Ddim).steps(10).n(3).seed(9).class_labels(labels.clone()).run().unwrap();
    let plain = run(Pipeline::new(Conditional, config()));
    let one = run(Pipeline::new(Conditional, config()).null_class_label(NULL).guidance_scale(1.0));
    assert_eq!(plain.data, one.data);
}

#[test]
fn uniform_labels_never_draw_the_null_label() {
    // The null label in the middle of the classes, so that skipping it is what is tested.
    let s = Pipeline::new(Conditional, config()).sampler(SamplerKind::Ddim).steps(2).n(300).null_class_label(1).run().unwrap();
    let labels = s.labels.unwrap();
    assert!(!labels.contains(&1));
    assert!(labels.contains(&0) && labels.contains(&2));
}

#[test]
fn bad_scales_and_labels_are_refused() {
    let err = |p: Pipeline<'_, Conditional>| p.sampler(SamplerKind::Ddim).steps(2).n(2).run().unwrap_err().to_string();
    let e = err(Pipeline::new(Conditional, config()).guidance_scale(3.0));
    assert!(e.contains("no null label"), "{e}");
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        let e = err(Pipeline::new(Conditional, config()).null_class_label(NULL).guidance_scale(bad));
        assert!(e.contains("guidance scale"), "{e}");
    }
    let e = err(Pipeline::new(Conditional, config()).null_class_label(NULL).class_labels(ClassLabels::Fixed(NULL)));
    assert!(e.contains("null label"), "{e}");
}
