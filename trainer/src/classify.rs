//! `trainer classifier`: the digit classifier that `runtime eval` uses as its feature
//! extractor, trained with libtorch and exported to ONNX (checked against libtorch).

use std::collections::BTreeMap;
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

fn init(params: Vec<(String, Vec<usize>)>, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fan: BTreeMap<String, usize> = params
        .iter()
        .filter(|(n, _)| n.ends_with(".weight"))
        .map(|(n, s)| (n.trim_end_matches(".weight").to_string(), s[1..].iter().product::<usize>()))
        .collect();
    params
        .into_iter()
        .map(|(name, shape)| {
            let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m);
            let bound = 1.0 / (fan.get(module).copied().unwrap_or(1).max(1) as f32).sqrt();
            let data = (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-bound..bound)).collect();
            (name, Weight { shape, data })
        })
        .collect()
}

fn batch_tensor(data: &Dataset, idx: &[usize], device: Device) -> Result<Tensor> {
    let mut x = Vec::with_capacity(idx.len() * data.item_len());
    for &i in idx {
        data.push_item(i, false, &mut x);
    }
    Ok(Tensor::f_from_slice(&x)?.f_reshape([idx.len() as i64, data.channels as i64, data.height as i64, data.width as i64])?.f_to_device(device)?)
}

/// Accuracy of `weights` on a labelled data set.
pub fn accuracy(clf: &DigitClassifier, weights: &Weights, data: &Dataset) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let labels = data.labels.as_ref().ok_or_else(|| TrainError::Usage(format!("{}: no labels", data.source)))?;
    let mut b = TchBackend::from_weights(weights, Device::Cpu)?;
    let mut correct = 0usize;
    for chunk in (0..data.n).collect::<Vec<_>>().chunks(500) {
        let x = TchTensor(batch_tensor(data, chunk, Device::Cpu)?);
        let (logits, _) = clf.forward(&mut b, &x)?;
        let pred = Vec::<i64>::try_from(&logits.f_argmax(1, false)?)?;
        correct += chunk.iter().zip(pred).filter(|(&i, p)| labels[i] == *p).count();
    }
    Ok(correct as f64 / data.n as f64)
}

/// Trains the classifier (Adam, cross-entropy, small random shifts as augmentation).
pub fn train(data: &Dataset, classes: usize, epochs: usize, seed: u64) -> Result<(DigitClassifier, Weights)> {
    let labels = data.labels.as_ref().ok_or_else(|| TrainError::Usage(format!("{}: the classifier needs labels", data.source)))?;
    let clf = DigitClassifier { in_channels: data.channels, classes };
    let weights = init(clf.parameter_list()?, seed);
    let params: BTreeMap<String, Tensor> = weights
        .iter()
        .map(|(n, w)| {
            let shape: Vec<i64> = w.shape.iter().map(|&s| s as i64).collect();
            Ok((n.clone(), Tensor::f_from_slice(&w.data)?.f_reshape(&shape)?.set_requires_grad(true)))
        })
        .collect::<Result<_>>()?;
    let mut opt = AdamW::new(&params, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc1a5);
    let batch = 128;
    let mut t = 0u64;
    tch::manual_seed(seed as i64);
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..data.n).collect();
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(batch) {
            let x = batch_tensor(data, chunk, Device::Cpu)?;
            // Random shifts of up to 2 pixels: the classifier must judge samples, not memorise.
            let (dy, dx) = (rng.random_range(-2i64..=2), rng.random_range(-2i64..=2));
            let x = TchTensor(x.f_roll(&[dy, dx][..], &[2i64, 3][..])?);
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
            let lr = if epoch + 1 == epochs { 2e-4 } else { 1e-3 };
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
    let mut extractor = ddpm_runtime::eval::FeatureExtractor::from_memory(&bytes, "classifier")?;
    let ours = extractor.features(&flat, idx.len())?.0;
    let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = ours.iter().zip(&theirs).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    if err > 1e-4 {
        return Err(TrainError::Diverged(format!("exported classifier differs from libtorch: relative error {err:.2e}")));
    }
    ddpm_models::weights::write_atomically(out, &bytes)?;
    Ok(err)
}
