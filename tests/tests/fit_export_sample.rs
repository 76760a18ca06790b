//! Across the crates: train a tiny class-conditional model with the trainer's library,
//! export it with the exporter, sample it with the runtime, and check that the three agree.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ddpm_models::UNetConfig;
use ddpm_runtime::{ClassLabels, Denoiser, OnnxDenoiser, Pipeline, SamplerKind};
use ddpm_trainer::data::Dataset;
use ddpm_trainer::options::preset;
use ddpm_trainer::train::{fit, FitSpec, Outcome};

const TINY: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [16, 32],
  "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "attention_head_dim": 16,
  "num_class_embeds": 2}"#;

/// Two classes of 8x8 images: a bright left half or a bright top half.
fn halves(n: usize) -> Dataset {
    let mut pixels = Vec::with_capacity(n * 64);
    for i in 0..n {
        for y in 0..8 {
            for x in 0..8 {
                let on = if i % 2 == 0 { x < 4 } else { y < 4 };
                pixels.push(if on { 230 } else { 20 });
            }
        }
    }
    Dataset {
        pixels,
        labels: Some((0..n).map(|i| (i % 2) as i64).collect()),
        class_names: vec![],
        n,
        channels: 1,
        height: 8,
        width: 8,
        skipped: 0,
        source: "generated".into(),
    }
}

#[test]
fn fit_then_export_then_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = UNetConfig::from_json_str(TINY, "tiny").unwrap();
    let mut options = preset("digits").unwrap().options;
    (options.steps, options.batch_size, options.save_every, options.sample_every, options.warmup, options.lr) = (300, 16, 300, 0, 20, 2e-3);
    options.cond_drop_prob = 0.0;
    let spec = FitSpec {
        run: run.clone(),
        data: halves(64),
        config,
        scheduler: ddpm_runtime::SchedulerConfig::paper(),
        options,
        resume: None,
        device: tch::Device::Cpu,
        threads: 1,
        init: None,
    };
    assert!(matches!(fit(spec, Arc::new(AtomicBool::new(false))).unwrap(), Outcome::Finished { .. }));

    let ckpt = ddpm_exporter::Checkpoint::open(&run).unwrap();
    let out = tmp.path().join("tiny.onnx");
    let report = ddpm_exporter::export_checkpoint(&ckpt, &out, &Default::default(), Some(1e-4)).unwrap();
    assert!(report.max_rel_error.unwrap() <= 1e-4);

    // The runtime draws the two classes apart: class 0 brighter on the left, 1 on top.
    let mut model = OnnxDenoiser::builder().intra_threads(1).from_file(&out).unwrap();
    assert_eq!(model.shape().num_classes, Some(2));
    let config = model.scheduler_config();
    for (label, left_brighter) in [(0, true), (1, false)] {
        let s = Pipeline::new(&mut model, config.clone())
            .sampler(SamplerKind::DpmSolverPP)
            .steps(20)
            .n(8)
            .class_labels(ClassLabels::Fixed(label))
            .run()
            .unwrap();
        let (mut left_minus_right, mut top_minus_bottom) = (0.0f32, 0.0f32);
        for img in s.data.chunks(64) {
            for y in 0..8 {
                for x in 0..8 {
                    let v = img[y * 8 + x];
                    left_minus_right += if x < 4 { v } else { -v };
                    top_minus_bottom += if y < 4 { v } else { -v };
                }
            }
        }
        assert_eq!(
            left_minus_right > top_minus_bottom,
            left_brighter,
            "label {label}: left-right {left_minus_right}, top-bottom {top_minus_bottom}"
        );
    }
}
