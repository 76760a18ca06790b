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
            // The Triton test environment's onnxruntime serves Triton's Python backend.
            .filter(|venv| !venv.file_name().is_some_and(|n| n.to_string_lossy().starts_with("venv-triton-")))
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

/// The Python of the Triton environment: `DDPM_RS_TRITON_PYTHON`, else the newest complete
/// `venv-triton-*` of the cache folder (`scripts/setup-env.sh --triton`).
#[cfg(feature = "triton")]
fn triton_python() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=DDPM_RS_TRITON_PYTHON");
    if let Some(p) = std::env::var_os("DDPM_RS_TRITON_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut venvs: Vec<PathBuf> = cache_dir()
        .map(|c| cache_entries(&c, "venv-triton-"))
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.join(".complete").exists())
        .collect();
    venvs.sort();
    venvs.pop().map(|v| v.join("bin/python"))
}

/// The KServe v2 client (feature `triton`): the protocol's definitions are read from the
/// tritonclient wheel's compiled descriptors (triton_descriptors.py) and compiled by
/// tonic-prost-build; nothing of the protocol is kept in the repository.
#[cfg(feature = "triton")]
fn triton_client() {
    use tonic_prost_build::FileDescriptorSet;
    println!("cargo:rerun-if-changed=triton_descriptors.py");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let fds_path = out.join("triton_protocol.fds.bin");
    let Some(python) = triton_python() else {
        panic!(
            "feature triton: no Triton environment to read the protocol from; run scripts/setup-env.sh --triton \
             (or set DDPM_RS_TRITON_PYTHON to a Python with tritonclient)"
        )
    };
    let status = std::process::Command::new(&python).arg("triton_descriptors.py").arg(&fds_path).status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("feature triton: {} triton_descriptors.py failed: {other:?}", python.display()),
    }
    let bytes = std::fs::read(&fds_path).expect("the descriptors just written");
    let fds = <FileDescriptorSet as prost::Message>::decode(bytes.as_slice()).expect("a FileDescriptorSet");
    tonic_prost_build::configure().build_server(false).compile_fds(fds).expect("tonic-prost-build");
}

fn main() {
    #[cfg(feature = "triton")]
    triton_client();
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
