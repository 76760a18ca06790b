//! What a person watching a run sees: a progress bar on a terminal (steps, loss, speed,
//! ETA), a log line every 2% elsewhere.

use std::io::IsTerminal;
use std::time::Instant;

/// The progress of one call to `fit`.
pub(super) struct Report {
    bar: indicatif::ProgressBar,
    started: Instant,
    start: u64,
    total: u64,
    batch_size: usize,
    log_every: u64,
}

impl Report {
    pub(super) fn new(start: u64, total: u64, batch_size: usize) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total - start.min(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self { bar, started: Instant::now(), start, total, batch_size, log_every: (total / 50).max(1) }
    }

    /// After step `step` (1-based) with this loss.
    pub(super) fn step(&self, step: u64, loss: f64) {
        let rate = (step - self.start) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let images = rate * self.batch_size as f64;
        self.bar.set_position(step - self.start);
        self.bar.set_message(format!("loss {loss:.4}  {rate:.2} steps/s  {images:.0} images/s"));
        if self.bar.is_hidden() && (step.is_multiple_of(self.log_every) || step == self.total) {
            tracing::info!("step {step}/{}: loss {loss:.5}, {rate:.2} steps/s, {images:.0} images/s", self.total);
        }
    }

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
