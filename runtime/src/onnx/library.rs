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

/// The OpenVINO build of ONNX Runtime recorded at build time, when it is installed.
///
/// ```
/// if let Some(path) = ddpm_runtime::onnx::openvino_library() {
///     assert!(std::path::Path::new(path).is_file());
/// }
/// ```
pub fn openvino_library() -> Option<&'static str> {
    RECORDED_OPENVINO_DYLIB.filter(|p| Path::new(p).is_file())
}

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
                // ONNX Runtime's own log goes through `tracing` (debug level): its errors
                // reach the caller as the returned error, said once, not printed twice.
                let logger: ort::logging::LoggerFunction = std::sync::Arc::new(|level, category, _id, location, message| {
                    tracing::debug!("ONNX Runtime {level:?} [{category}] {location}: {message}");
                });
                let env = builder.with_name("ddpm-rs").with_logger(logger).build()?;
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

/// What `runtime info` says of the loaded ONNX Runtime library.
#[derive(Debug, Clone)]
pub struct LibraryInfo {
    pub path: PathBuf,
    pub build: Library,
    /// From the library's build string ("git-branch=rel-1.31.1, ...") or its file name.
    pub version: String,
    /// The execution providers the library was built with (ONNX Runtime's names).
    pub providers: Vec<String>,
}

/// Loads ONNX Runtime as [`environment_for`] does (the OpenVINO build when `library` says
/// so) and describes it.
pub fn library_info(explicit: Option<&Path>, library: Library) -> Result<LibraryInfo> {
    environment_for(explicit, library)?;
    let (path, build) = {
        let guard = ENVIRONMENT.lock().map_err(|_| Error::OrtLoad("a previous attempt panicked".into()))?;
        let loaded = guard.as_ref().ok_or_else(|| Error::OrtLoad("not loaded".into()))?;
        (loaded.path.clone(), loaded.library)
    };
    let info = ort::info();
    let version = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .or_else(|| {
            let name = path.file_name()?.to_string_lossy().to_string();
            name.strip_prefix("libonnxruntime.so.").map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(LibraryInfo { path, build, version, providers: available_providers()? })
}

/// The execution providers compiled into the loaded library (ONNX Runtime's
/// GetAvailableProviders).
fn available_providers() -> Result<Vec<String>> {
    use std::ffi::{c_char, c_int, CStr};
    let api = ort::api();
    let (get, release) = (api.GetAvailableProviders, api.ReleaseAvailableProviders);
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut n: c_int = 0;
    // SAFETY: ONNX Runtime fills `list` with `n` NUL-terminated strings that stay valid until
    // they are released below; a non-null status is an error and leaves nothing to release.
    unsafe {
        let status = get(&mut list, &mut n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Ok(Vec::new());
        }
        let names = (0..n.max(0) as usize).map(|i| CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned()).collect();
        let _ = release(list, n);
        Ok(names)
    }
}
