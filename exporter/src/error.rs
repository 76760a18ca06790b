//! Errors of the exporter.

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Bad usage or a bad checkpoint (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Model(#[from] ddpm_models::Error),
    #[error(transparent)]
    Runtime(#[from] ddpm_runtime::Error),
    /// The exported model does not reproduce the checkpoint (exit 1).
    #[error("verification failed: max relative error {error:.3e} between ONNX Runtime and libtorch exceeds {tolerance:.0e}")]
    Mismatch { error: f32, tolerance: f32 },
    /// A failure of the exporter itself (exit 1).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExportError {
    pub fn is_bad_input(&self) -> bool {
        match self {
            ExportError::Usage(_) => true,
            ExportError::Model(e) => e.is_bad_input(),
            ExportError::Runtime(e) => e.is_bad_input(),
            ExportError::Mismatch { .. } | ExportError::Internal(_) => false,
        }
    }
}

impl From<ddpm_io::Error> for ExportError {
    fn from(e: ddpm_io::Error) -> Self {
        ExportError::Runtime(e.into())
    }
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;
