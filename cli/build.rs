//! Embeds the models the project ships: every `models/pretrained/NAME/NAME.onnx` becomes a
//! built-in model `NAME` (`runtime sample --model-name NAME`); `digits` is the default.

use std::path::Path;

fn main() {
    // Read when the script runs, not `env!` when it is compiled: Cargo reuses a compiled build
    // script across clones at other paths that share one target folder ($DDPM_RS_CACHE/target),
    // and a path baked in at compile time would name another clone's models (or none).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    let root = Path::new(&manifest_dir).join("../models/pretrained");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=build.rs");
    let mut models: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().to_string();
            let file = dir.join(format!("{name}.onnx"));
            println!("cargo:rerun-if-changed={}", file.display());
            file.is_file().then(|| (name, file.canonicalize().unwrap_or(file)))
        })
        .collect();
    models.sort();
    // `default_model`: the build ships the default (digits), so `runtime sample` needs no path.
    println!("cargo:rustc-check-cfg=cfg(default_model)");
    if models.iter().any(|(n, _)| n == "digits") {
        println!("cargo:rustc-cfg=default_model");
    }
    let mut code = String::from("/// The built-in models: (name, .onnx bytes), by name.\npub const MODELS: &[(&str, &[u8])] = &[\n");
    for (name, file) in &models {
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("pretrained_models.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=could not write {}: {e}", out.display());
    }
}
