//! The runtime on real networks in float32: one model evaluation, and whole chains, for the
//! default digits model and the DDPM paper's CIFAR-10 network (random weights).
fn benches(c: &mut criterion::Criterion) {
    ddpm_benches::model_benches(c, ddpm_runtime::Precision::Fp32);
}
criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
