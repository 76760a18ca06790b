//! Finding and loading the ONNX Runtime library (ort's `load-dynamic`), once per process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::error::{Error, Result};

/// The library path recorded at build time (see build.rs).
const RECORDED_DYLIB: Option<&str> = option_env!("DDPM_RS_ORT_DYLIB_RECORDED");

/// The OpenVINO build of ONNX Runtime that the set-up can install
/// (`scripts/setup-env.sh --openvino`), recorded at build time (see build.rs).
const RECORDED_OPENVINO_DYLIB: Option<&str> = option_env!("DDPM_RS_ORT_OPENVINO_DYLIB_RECORDED");

/// Which ONNX Runtime library a model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// The default build (the `onnxruntime` wheel; CPU, or CUDA/TensorRT with onnxruntime-gpu).
    Default,
    /// The build with the OpenVINO execution provider (the `onnxruntime-openvino` wheel).
    OpenVino,
}

struct Loaded {
    env: Environment,
    path: PathBuf,
    library: Library,
}

static ENVIRONMENT: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads ONNX Runtime once per process: from `explicit` when given (and only from there),
/// else from `ORT_DYLIB_PATH`, else from the path the set-up recorded at build time (the
/// OpenVINO build for [`Library::OpenVino`]), else from the system's library path. The
/// error lists every attempt. A process holds one library: asking for the other one after
/// the first load is an error.
pub fn environment(explicit: Option<&Path>) -> Result<Environment> {
    environment_for(explicit, Library::Default)
}

pub(super) fn environment_for(explicit: Option<&Path>, library: Library) -> Result<Environment> {
    let mut guard = ENVIRONMENT.lock().map_err(|_| Error::OrtLoad("a previous attempt panicked".into()))?;
    if let Some(loaded) = guard.as_ref() {
        // The OpenVINO build also has the default build's CPU provider.
        let wrong_build = loaded.library == Library::Default && library == Library::OpenVino;
        let explicit_differs = explicit.is_some_and(|p| p != loaded.path);
        if wrong_build && explicit.is_none() || explicit_differs {
            return Err(Error::InvalidArgument(format!(
                "this process already loaded ONNX Runtime from {} ({:?} build); one process holds one library",
                loaded.path.display(),
                loaded.library
            )));
        }
        return Ok(loaded.env.clone());
    }
    let candidates: Vec<(String, PathBuf)> = match explicit {
        Some(p) => vec![("explicit path".into(), p.to_path_buf())],
        None => {
            let mut c = Vec::new();
            if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
                c.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
            }
            match library {
                Library::Default => {
                    if let Some(p) = RECORDED_DYLIB {
                        c.push(("path recorded by the set-up".into(), PathBuf::from(p)));
                    }
                    c.push(("system library path".into(), PathBuf::from("libonnxruntime.so")));
                }
                Library::OpenVino => {
                    if let Some(p) = RECORDED_OPENVINO_DYLIB {
                        c.push(("OpenVINO build recorded by the set-up".into(), PathBuf::from(p)));
                    }
                }
            }
            c
        }
    };
    let mut tried = Vec::new();
    for (source, path) in candidates {
        if path.is_absolute() && !path.exists() {
            tried.push(format!("{} ({source}): not found", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder.with_name("ddpm-rs").build()?;
                tracing::debug!("ONNX Runtime loaded from {} ({source})", path.display());
                *guard = Some(Loaded { env: env.clone(), path, library });
                return Ok(env);
            }
            Err(e) => tried.push(format!("{} ({source}): {e}", path.display())),
        }
    }
    let hint = match library {
        Library::Default => "run `make build` (or scripts/setup-env.sh) to install it, or set ORT_DYLIB_PATH",
        Library::OpenVino => {
            "the OpenVINO build of ONNX Runtime is a set-up option: run `scripts/setup-env.sh --openvino` (or `make setup-openvino`) and rebuild, or set ORT_DYLIB_PATH to its libonnxruntime.so"
        }
    };
    if tried.is_empty() {
        tried.push("nothing".into());
    }
    Err(Error::OrtLoad(format!("{}; {hint}", tried.join("; "))))
}

/// The path of the ONNX Runtime library this process loaded, if any.
pub(super) fn loaded_library() -> Option<PathBuf> {
    ENVIRONMENT.lock().ok()?.as_ref().map(|l| l.path.clone())
}
