//! Times the same U-Net in libtorch eager (tch, the trainer's backend) from a diffusers
//! unet/ folder, for scripts/bench_compare.py. Prints one JSON object.
//!
//! bench-tch --ckpt unet/ --batch B [--threads N] [--iters N]

use std::time::Instant;

use anyhow::{anyhow, bail};
use ddpm_benches::min_median;
use ddpm_models::tch_backend::{TchBackend, TchTensor};
use ddpm_models::{UNet2DModel, UNetCheckpoint};
use serde_json::json;
use tch::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let (mut ckpt, mut batch, mut threads, mut iters) = (String::new(), 1usize, 2i32, 20usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--ckpt" => ckpt = value()?,
            "--batch" => batch = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--iters" => iters = value()?.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    tch::set_num_threads(threads);
    tch::set_num_interop_threads(1);
    let ck = UNetCheckpoint::load(std::path::Path::new(&ckpt))?;
    let model = UNet2DModel::new(ck.config.clone())?;
    let mut backend = TchBackend::from_weights(&ck.weights, Device::Cpu)?;
    backend.train = false;
    let c = &ck.config;
    let (h, w) = c.sample_size.ok_or_else(|| anyhow!("config has no sample_size"))?;
    let n = batch * c.in_channels * h * w;
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let _guard = tch::no_grad_guard();
    let x = TchTensor(Tensor::f_from_slice(&data)?.f_reshape([batch as i64, c.in_channels as i64, h as i64, w as i64])?);
    let labels = c.num_class_embeds.map(|k| TchTensor(Tensor::from_slice(&(0..batch as i64).map(|i| i % k as i64).collect::<Vec<_>>())));
    let mut times = Vec::new();
    for i in 0..iters + 3 {
        let t = TchTensor(Tensor::from_slice(&vec![(i as i64 * 37) % 1000; batch]));
        let start = Instant::now();
        let out = model.forward(&mut backend, &x, &t, labels.as_ref())?;
        let _ = out.0.f_sum(tch::Kind::Float)?.f_double_value(&[])?;
        if i >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (min_ms, median_ms) = min_median(times);
    println!("{}", json!({"batch": batch, "min_ms": min_ms, "median_ms": median_ms}));
    Ok(())
}
