//! As benches/models.rs, in bfloat16 (`Precision::Bf16`, the OpenVINO execution provider).
//! On a CPU without bf16 arithmetic the runtime refuses bf16, so there is nothing to time:
//! the bench says so and measures nothing.
fn benches(c: &mut criterion::Criterion) {
    let cpu = ddpm_runtime::CpuFeatures::get();
    if !cpu.has_bf16() {
        eprintln!("models_bf16: not run: this CPU has no bf16 arithmetic (no avx512_bf16, no amx_bf16; it {})", cpu.summary());
        return;
    }
    ddpm_benches::model_benches(c, ddpm_runtime::Precision::Bf16);
}
criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
