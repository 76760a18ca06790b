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

/// The newest libonnxruntime.so.* in any of these `onnxruntime/capi` folders.
fn newest_lib(capi_dirs: impl Iterator<Item = PathBuf>) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = capi_dirs
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("libonnxruntime.so."))
        .map(|f| f.path())
        .collect();
    found.sort();
    found.pop()
}

/// Entries of the cache folder whose name starts with `prefix`.
fn cache_entries(cache: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.path()).collect()
}

/// The default build, in the project's Python environments.
fn find_in_cache(cache: &Path) -> Option<PathBuf> {
    newest_lib(
        cache_entries(cache, "venv-")
            .into_iter()
            .filter_map(|venv| std::fs::read_dir(venv.join("lib")).ok())
            .flat_map(|libs| libs.flatten())
            .map(|py| py.path().join("site-packages/onnxruntime/capi")),
    )
}

/// The OpenVINO build of ONNX Runtime that `scripts/setup-env.sh --openvino` installs.
fn find_openvino_in_cache(cache: &Path) -> Option<PathBuf> {
    newest_lib(
        cache_entries(cache, "ort-openvino-").into_iter().filter(|d| d.join(".complete").exists()).map(|d| d.join("onnxruntime/capi")),
    )
}

fn main() {
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
