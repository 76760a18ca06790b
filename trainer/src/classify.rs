//! `trainer classifier`: the digit classifier that `runtime eval` uses as its feature
//! extractor, trained with libtorch and exported to ONNX (checked against libtorch).

use std::path::Path;

use ddpm_models::classifier::DigitClassifier;
use ddpm_models::tch_backend::{TchBackend, TchTensor};
use ddpm_models::{Weight, Weights};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;

fn batch_tensor(data: &Dataset, idx: &[usize], device: Device) -> Result<Tensor> {
    shifted_batch(data, idx, &[], device)
}

/// Items `idx` as a [B, C, H, W] tensor; with `shifts` (one (dy, dx) per item), each image
/// moved by its own shift, the uncovered border filled with the background (-1).
fn shifted_batch(data: &Dataset, idx: &[usize], shifts: &[(i64, i64)], device: Device) -> Result<Tensor> {
    let (c, h, w) = (data.channels, data.height as i64, data.width as i64);
    let mut item = Vec::with_capacity(data.item_len());
    let mut x = Vec::with_capacity(idx.len() * data.item_len());
    for (k, &i) in idx.iter().enumerate() {
        item.clear();
        data.push_item(i, false, &mut item);
        let Some(&(dy, dx)) = shifts.get(k) else {
            x.extend_from_slice(&item);
            continue;
        };
        for ch in 0..c {
            let plane = &item[ch * (h * w) as usize..(ch + 1) * (h * w) as usize];
            for y in 0..h {
                for xx in 0..w {
                    let (sy, sx) = (y - dy, xx - dx);
                    let inside = (0..h).contains(&sy) && (0..w).contains(&sx);
                    x.push(if inside { plane[(sy * w + sx) as usize] } else { -1.0 });
                }
            }
        }
    }
    Ok(Tensor::f_from_slice(&x)?.f_reshape([idx.len() as i64, c as i64, h, w])?.f_to_device(device)?)
}

/// Accuracy of `weights` on a labelled data set: overall, and per class (the share of each
/// class's images classified as that class).
pub fn accuracy(clf: &DigitClassifier, weights: &Weights, data: &Dataset) -> Result<(f64, Vec<f64>)> {
    let _guard = tch::no_grad_guard();
    let labels = data.labels.as_ref().ok_or_else(|| TrainError::Usage(format!("{}: no labels", data.source)))?;
    let mut b = TchBackend::from_weights(weights, Device::Cpu)?;
    let mut correct = vec![0usize; clf.classes];
    let mut seen = vec![0usize; clf.classes];
    for chunk in (0..data.n).collect::<Vec<_>>().chunks(500) {
        let x = TchTensor(batch_tensor(data, chunk, Device::Cpu)?);
        let (logits, _) = clf.forward(&mut b, &x)?;
        let pred = Vec::<i64>::try_from(&logits.f_argmax(1, false)?)?;
        for (&i, p) in chunk.iter().zip(pred) {
            let Some(k) = usize::try_from(labels[i]).ok().filter(|&k| k < clf.classes) else { continue };
            seen[k] += 1;
            correct[k] += usize::from(labels[i] == p);
        }
    }
    let overall = correct.iter().sum::<usize>() as f64 / data.n.max(1) as f64;
    Ok((overall, correct.iter().zip(&seen).map(|(&c, &n)| c as f64 / n.max(1) as f64).collect()))
}

/// Trains the classifier (Adam, cross-entropy, a cosine learning-rate decay from 1e-3, each
/// image moved by its own random shift of up to 2 pixels as augmentation).
pub fn train(data: &Dataset, classes: usize, epochs: usize, seed: u64) -> Result<(DigitClassifier, Weights)> {
    let labels = data.labels.as_ref().ok_or_else(|| TrainError::Usage(format!("{}: the classifier needs labels", data.source)))?;
    let clf = DigitClassifier { in_channels: data.channels, classes };
    let weights = ddpm_models::init::pytorch_default(&clf.parameter_list()?, seed);
    let params = ddpm_models::tch_backend::weights_to_tensors(&weights, Device::Cpu, true)?;
    let mut opt = AdamW::new(&params, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc1a5);
    let batch = 128;
    let mut t = 0u64;
    let total_steps = (epochs * data.n.div_ceil(batch)) as u64;
    tch::manual_seed(seed as i64);
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..data.n).collect();
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(batch) {
            // Random shifts of up to 2 pixels, one per image: the classifier must judge
            // samples, not memorise where the training digits sit.
            let shifts: Vec<(i64, i64)> = chunk.iter().map(|_| (rng.random_range(-2i64..=2), rng.random_range(-2i64..=2))).collect();
            let x = TchTensor(shifted_batch(data, chunk, &shifts, Device::Cpu)?);
            let y = Tensor::f_from_slice(&chunk.iter().map(|&i| labels[i]).collect::<Vec<_>>())?;
            let mut b = TchBackend::from_tensors(params.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect(), Device::Cpu);
            let (logits, _) = clf.forward(&mut b, &x)?;
            let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100)?;
            for p in params.values() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_zero_()?;
                }
            }
            loss.f_backward()?;
            t += 1;
            let progress = (t - 1) as f64 / total_steps.max(1) as f64;
            let lr = 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            opt.step(&params, lr, t)?;
            total += loss.double_value(&[]) * chunk.len() as f64;
        }
        tracing::info!("classifier epoch {}: cross-entropy {:.4}", epoch + 1, total / data.n as f64);
    }
    let mut out = Weights::new();
    for (n, p) in &params {
        let data = Vec::<f32>::try_from(&p.f_detach()?.f_flatten(0, -1)?.f_to_kind(Kind::Float)?)?;
        out.insert(n.clone(), Weight { shape: p.size().iter().map(|&s| s as usize).collect(), data });
    }
    Ok((clf, out))
}

/// Exports to ONNX, checks ONNX Runtime against libtorch on the data, writes atomically.
pub fn export(clf: &DigitClassifier, weights: &Weights, data: &Dataset, out: &Path) -> Result<f32> {
    let bytes = ddpm_exporter::export_classifier(clf, weights).map_err(|e| TrainError::Io(e.to_string()))?;
    let env = ddpm_runtime::onnx::environment(None)?;
    let _ = env;
    let idx: Vec<usize> = (0..data.n.min(64)).collect();
    let x = batch_tensor(data, &idx, Device::Cpu)?;
    let theirs = {
        let _guard = tch::no_grad_guard();
        let mut b = TchBackend::from_weights(weights, Device::Cpu)?;
        let (_, f) = clf.forward(&mut b, &TchTensor(x.shallow_clone()))?;
        Vec::<f32>::try_from(&f.f_flatten(0, -1)?)?
    };
    let flat = Vec::<f32>::try_from(&x.f_flatten(0, -1)?)?;
    let mut extractor = ddpm_eval::FeatureExtractor::from_memory(&bytes, "classifier")?;
    let ours = extractor.features(&flat, idx.len())?.0;
    let err = ddpm_models::compare::rel_error(&ours, &theirs);
    if err > 1e-4 {
        return Err(TrainError::Diverged(format!("exported classifier differs from libtorch: relative error {err:.2e}")));
    }
    ddpm_io::files::write_atomically(out, |w| w.write_all(&bytes))?;
    Ok(err)
}
