//! The schedule math and the samplers against diffusers, on fixtures made by
//! python/make_runtime_fixtures.py (diffusers 0.42.1).

use ddpm_runtime::sampler::{self, Layout, SamplerKind, SamplerOptions};
use ddpm_runtime::spacing::{ddpm_timesteps, dpm_solver_timesteps};
use ddpm_runtime::{Schedule, SchedulerConfig, TimestepSpacing};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/runtime/").to_string() + name;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn config(v: &Value) -> SchedulerConfig {
    SchedulerConfig::from_json_str(&v.to_string(), "fixture").unwrap()
}

#[test]
fn every_beta_schedule_matches_diffusers() {
    let f = fixture("schedules.json");
    for case in f["cases"].as_array().unwrap() {
        let s = Schedule::from_config(&config(&case["config"])).unwrap();
        let (betas, ab) = (floats(&case["betas"]), floats(&case["alphas_cumprod"]));
        assert_eq!(s.betas().len(), betas.len());
        for (i, (&ours, &theirs)) in s.betas().iter().zip(&betas).enumerate() {
            let err = (ours - theirs as f64).abs();
            // diffusers computes in float32; its zero-SNR rescaling loses ~2e-7 absolute to
            // cancellation in 1 - ab[i] / ab[i-1] (the same code in float64 gives our values).
            assert!(err <= 2e-5 * theirs.abs() as f64 + 5e-7, "{}: beta[{i}] {ours} vs {theirs}", case["config"]);
        }
        // diffusers' cumulative product runs in float32: its relative error grows to ~1e-5 over 1000 steps.
        for (i, (&ours, &theirs)) in s.alphas_cumprod().iter().zip(&ab).enumerate() {
            let err = (ours - theirs as f64).abs();
            assert!(err <= 2e-5 * theirs.abs() as f64 + 1e-8, "{}: alphas_cumprod[{i}] {ours} vs {theirs}", case["config"]);
        }
    }
}

#[test]
fn add_noise_and_velocity_match_diffusers() {
    let f = &fixture("schedules.json")["forward"];
    let s = Schedule::from_config(&SchedulerConfig::default()).unwrap();
    let t: Vec<i64> = f["timesteps"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let (x0, noise) = (floats(&f["x0"]), floats(&f["noise"]));
    for (ours, key) in [(s.add_noise(&x0, &noise, &t).unwrap(), "noisy"), (s.velocity(&x0, &noise, &t).unwrap(), "velocity")] {
        let theirs = floats(&f[key]);
        let max = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1e-5, "{key}: max abs error {max}");
    }
}

#[test]
fn every_spacing_matches_diffusers() {
    let f = fixture("spacing.json");
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() > 100, "only {} spacing cases", cases.len());
    for case in cases {
        let spacing: TimestepSpacing = case["spacing"].as_str().unwrap().parse().unwrap();
        let (t, steps, offset) =
            (case["T"].as_u64().unwrap() as usize, case["steps"].as_u64().unwrap() as usize, case["steps_offset"].as_i64().unwrap());
        let ours = match case["sampler"].as_str().unwrap() {
            "dpm" => dpm_solver_timesteps(spacing, t, steps, offset),
            _ => ddpm_timesteps(spacing, t, steps, offset),
        }
        .unwrap();
        let theirs: Vec<i64> = case["timesteps"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(ours, theirs, "{case}");
    }
}

/// Max of |ours - theirs| / max(1, |theirs|): the absolute error for values up to 1, the
/// relative error above (a float32 value of 2,000, as the cosine schedule's first DPM step
/// gives with these stand-in model outputs, carries 1e-4 of rounding on its own).
fn scaled_error(ours: &[f32], theirs: &[f32]) -> f32 {
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max)
}

#[test]
fn every_sampler_matches_diffusers_step_for_step() {
    let f = fixture("chains.json");
    let mut report = Vec::new();
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let kind: SamplerKind = case["sampler"].as_str().unwrap().parse().unwrap();
        let options = SamplerOptions {
            kind,
            steps: Some(case["steps"].as_u64().unwrap() as usize),
            eta: case["eta"].as_f64().unwrap(),
            timestep_spacing: None,
        };
        let mut s = sampler::build(&config(&case["config"]), &options).unwrap();
        let expected_ts: Vec<i64> = case["timesteps"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(s.timesteps(), &expected_ts[..], "{name}: timesteps");
        let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let layout = Layout {
            batch: shape[0],
            channels: shape[1],
            out_channels: case["out_channels"].as_u64().unwrap() as usize,
            pixels: shape[2] * shape[3],
        };
        // Two chains: one fed diffusers' x_t at every step (the error of one step), and one
        // left to run on its own output (the error accumulated over the chain).
        let mut free = sampler::build(&config(&case["config"]), &options).unwrap();
        let mut x_free = floats(&case["x_T"]);
        let mut x_in = x_free.clone();
        let mut worst = 0.0f32;
        for (i, step) in case["steps_data"].as_array().unwrap().iter().enumerate() {
            let out = floats(&step["model_output"]);
            let noise = step.get("noise").map(floats);
            assert_eq!(s.needs_noise(i), noise.is_some(), "{name}: step {i} noise");
            let mut x = x_in.clone();
            s.step(i, &out, &mut x, layout, noise.as_deref(), None).unwrap();
            free.step(i, &out, &mut x_free, layout, noise.as_deref(), None).unwrap();
            let expected = floats(&step["prev_sample"]);
            let err = scaled_error(&x, &expected);
            assert!(err <= 1e-5, "{name}: step {i} (t = {}): max abs error {err}", step["t"]);
            worst = worst.max(err);
            let drift = scaled_error(&x_free, &expected);
            assert!(drift <= 1e-4, "{name}: free-running chain at step {i}: max abs error {drift}");
            x_in = expected;
        }
        report.push(format!("{name}: {worst:.1e}"));
    }
    eprintln!("max abs error per step:\n  {}", report.join("\n  "));
}
