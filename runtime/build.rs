//! Records where the set-up put libonnxruntime.so, so that built binaries find ONNX
//! Runtime with no environment variable set. `DDPM_RS_ORT_DYLIB` (set by the Makefile)
//! wins; otherwise the project's Python environments in the cache folder are searched.

use std::path::{Path, PathBuf};

fn cache_dir() -> Option<PathBuf> {
    if let Ok(c) = std::env::var("DDPM_RS_CACHE") {
        return Some(PathBuf::from(c));
    }
    if let Ok(x) = std::env::var("XDG_CACHE_HOME") {
        return Some(Path::new(&x).join("ddpm-rs"));
    }
    std::env::var("HOME").ok().map(|h| Path::new(&h).join(".cache").join("ddpm-rs"))
}

fn find_in_cache(cache: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    for venv in std::fs::read_dir(cache).ok()?.flatten() {
        let name = venv.file_name().to_string_lossy().to_string();
        if !name.starts_with("venv-") {
            continue;
        }
        let Ok(libs) = std::fs::read_dir(venv.path().join("lib")) else { continue };
        for py in libs.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else { continue };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().starts_with("libonnxruntime.so.") {
                    found.push(f.path());
                }
            }
        }
    }
    found.sort();
    found.pop()
}

/// The OpenVINO build of ONNX Runtime that `scripts/setup-env.sh --openvino` installs.
fn find_openvino_in_cache(cache: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(cache).ok()?.flatten() {
        if !dir.file_name().to_string_lossy().starts_with("ort-openvino-") || !dir.path().join(".complete").exists() {
            continue;
        }
        let capi = dir.path().join("onnxruntime/capi");
        let Ok(files) = std::fs::read_dir(&capi) else { continue };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().starts_with("libonnxruntime.so.") {
                found.push(f.path());
            }
        }
    }
    found.sort();
    found.pop()
}

fn main() {
    // The default model is embedded when the project ships one (models/pretrained/digits).
    println!("cargo:rustc-check-cfg=cfg(default_model)");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/digits/digits.onnx");
    println!("cargo:rerun-if-changed={}", model.display());
    if model.is_file() {
        println!("cargo:rustc-cfg=default_model");
    }
    println!("cargo:rerun-if-env-changed=DDPM_RS_ORT_DYLIB");
    println!("cargo:rerun-if-env-changed=DDPM_RS_CACHE");
    println!("cargo:rerun-if-changed=build.rs");
    let recorded = std::env::var("DDPM_RS_ORT_DYLIB")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| cache_dir().and_then(|c| find_in_cache(&c)));
    if let Some(path) = recorded {
        println!("cargo:rustc-env=DDPM_RS_ORT_DYLIB_RECORDED={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=DDPM_RS_ORT_OPENVINO_DYLIB");
    if let Some(cache) = cache_dir().filter(|c| c.is_dir()) {
        // Re-run when the set-up adds something to the cache folder (the OpenVINO build).
        println!("cargo:rerun-if-changed={}", cache.display());
    }
    let openvino = std::env::var("DDPM_RS_ORT_OPENVINO_DYLIB")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| cache_dir().and_then(|c| find_openvino_in_cache(&c)));
    if let Some(path) = openvino {
        println!("cargo:rustc-env=DDPM_RS_ORT_OPENVINO_DYLIB_RECORDED={}", path.display());
    }
}
