//! The default model is embedded when the project ships one (models/pretrained/digits).

use std::path::Path;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(default_model)");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/digits/digits.onnx");
    println!("cargo:rerun-if-changed={}", model.display());
    println!("cargo:rerun-if-changed=build.rs");
    if model.is_file() {
        println!("cargo:rustc-cfg=default_model");
    }
}
