//! Errors of the trainer: bad usage or data (exit 2), a diverged run (exit 1), internal.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad usage: flags, config, run folder (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Unusable training data (exit 2).
    #[error("{0}")]
    Data(String),
    /// The loss became NaN or infinite (exit 1); the last good checkpoint is kept.
    #[error("{0}")]
    Diverged(String),
    #[error(transparent)]
    Model(#[from] ddpm_models::Error),
    #[error(transparent)]
    Runtime(#[from] ddpm_runtime::Error),
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    #[error("{0}")]
    Io(String),
}

impl TrainError {
    pub fn is_bad_input(&self) -> bool {
        match self {
            TrainError::Usage(_) | TrainError::Data(_) => true,
            TrainError::Model(e) => e.is_bad_input(),
            TrainError::Runtime(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

impl From<ddpm_io::Error> for TrainError {
    fn from(e: ddpm_io::Error) -> Self {
        TrainError::Runtime(e.into())
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
