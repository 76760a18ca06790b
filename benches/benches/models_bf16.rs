//! As benches/models.rs, in bfloat16 (`Precision::Bf16`, the OpenVINO execution provider).
fn benches(c: &mut criterion::Criterion) {
    ddpm_benches::model_benches(c, ddpm_runtime::Precision::Bf16);
}
criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
