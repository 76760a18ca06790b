//! ONNX Runtime sessions of one model: the probe that reads its signature, and the real
//! sessions (one per batch size, or one dynamic), optimized once and kept in the on-disk
//! cache when a cache folder is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::ValueType;

use super::cache::{self, content_key, prune_cache, CACHE_KEEP};
use super::library::loaded_library;
use super::provider::{ExecutionProvider, Precision};
use super::signature::TensorSpec;
use crate::error::{Error, Result};

/// What the sessions of one model are made with.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    pub(crate) threads: usize,
    pub(crate) precision: Precision,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) static_shapes: bool,
}

/// Everything needed to make another session of a loaded model.
pub(super) struct SessionFactory {
    pub(super) env: Environment,
    pub(super) bytes: Arc<[u8]>,
    pub(super) path: PathBuf,
    pub(super) ep: ExecutionProvider,
    pub(super) options: LoadOptions,
}

/// A session that does no optimization, to read a model's inputs, outputs and metadata.
pub(super) fn probe(env: &Environment, bytes: &[u8], path: &Path) -> Result<Session> {
    Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(ort::Error::from)?
        .with_intra_threads(1)
        .map_err(ort::Error::from)?
        .commit_from_memory(bytes)
        .map_err(|e| Error::bad_file(path, format!("not a loadable ONNX model: {e}")))
}

/// A session's inputs and outputs as [`TensorSpec`]s.
pub(super) fn outlets(session: &Session) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let spec = |name: &str, vt: &ValueType| match vt {
        ValueType::Tensor { ty, shape, dimension_symbols } => TensorSpec {
            name: name.to_string(),
            elem: Some(*ty),
            shape: shape.to_vec(),
            symbols: dimension_symbols.iter().map(|s| s.to_string()).collect(),
        },
        _ => TensorSpec { name: name.to_string(), elem: None, shape: vec![], symbols: vec![] },
    };
    let inputs = session.inputs().iter().map(|o| spec(o.name(), o.dtype())).collect();
    let outputs = session.outputs().iter().map(|o| spec(o.name(), o.dtype())).collect();
    (inputs, outputs)
}

impl SessionFactory {
    /// A session with the batch dimension `batch_dim` fixed to `batch` (None: as the graph
    /// declares it). With a cache folder on the CPU provider, the optimized graph is written
    /// there on first use and loaded from there afterwards.
    pub(super) fn session(&self, batch: Option<usize>, batch_dim: Option<&str>) -> Result<Session> {
        let builder = |level: GraphOptimizationLevel| -> Result<SessionBuilder> {
            let mut b = Session::builder(&self.env)?
                .with_optimization_level(level)
                .map_err(ort::Error::from)?
                .with_intra_threads(self.options.threads)
                .map_err(ort::Error::from)?;
            if let (Some(n), Some(dim)) = (batch, batch_dim) {
                b = b.with_dimension_override(dim, n as i64).map_err(ort::Error::from)?;
            }
            self.ep.register(b, &self.options)
        };
        let bad_model = |e: ort::Error| Error::bad_file(&self.path, format!("not a loadable ONNX model: {e}"));
        let cached = match (&self.options.cache_dir, self.ep) {
            (Some(dir), ExecutionProvider::Cpu) => Some(dir.join("optimized").join(format!(
                "{}-b{}.onnx",
                content_key(&self.bytes, loaded_library().as_deref()),
                batch.map_or("dyn".to_string(), |b| b.to_string())
            ))),
            _ => None,
        };
        if let Some(file) = &cached {
            if file.is_file() {
                let loaded = cache::read_verified(file).and_then(|bytes| {
                    builder(GraphOptimizationLevel::Disable)
                        .map_err(|e| e.to_string())?
                        .commit_from_memory(&bytes)
                        .map_err(|e| e.to_string())
                });
                match loaded {
                    Ok(s) => {
                        // Marks it as recently used for prune_cache.
                        let _ = std::fs::File::options().append(true).open(file).and_then(|f| f.set_modified(std::time::SystemTime::now()));
                        return Ok(s);
                    }
                    Err(e) => {
                        tracing::warn!("{}: cached model not used ({e}); rebuilding it", file.display());
                        cache::remove(file);
                    }
                }
            }
            // Optimize once, written by ONNX Runtime under a temporary name beside the
            // cache file and renamed into place.
            if let Some(parent) = file.parent() {
                if std::fs::create_dir_all(parent).is_ok() {
                    if let Ok(tmp) = ddpm_io::files::temp_file_beside(file) {
                        let session = builder(GraphOptimizationLevel::All)?
                            .with_optimized_model_path(tmp.path())
                            .map_err(ort::Error::from)?
                            .commit_from_memory(&self.bytes)
                            .map_err(bad_model)?;
                        if tmp.persist(file).is_ok() {
                            if let Err(e) = cache::record_checksum(file) {
                                tracing::warn!("{}: could not record its checksum ({e})", file.display());
                                cache::remove(file);
                            }
                        }
                        prune_cache(parent, CACHE_KEEP);
                        return Ok(session);
                    }
                }
            }
        }
        let session = builder(GraphOptimizationLevel::All)?.commit_from_memory(&self.bytes).map_err(bad_model)?;
        if let (Some(dir), ExecutionProvider::OpenVino) = (&self.options.cache_dir, self.ep) {
            cache::record_folder(&dir.join("openvino"));
            prune_cache(&dir.join("openvino"), CACHE_KEEP);
        }
        Ok(session)
    }

    /// Records the checksums of the blobs OpenVINO compiled into the cache folder (it
    /// compiles, and writes them, at a session's first run).
    pub(super) fn record_compiled(&self) {
        if let (Some(dir), ExecutionProvider::OpenVino) = (&self.options.cache_dir, self.ep) {
            cache::record_folder(&dir.join("openvino"));
        }
    }
}
