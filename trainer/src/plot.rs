//! The loss curve as a PNG (the numbers are in loss.csv).

use std::path::Path;

use ddpm_io::plot::{line_chart, Panel};

use crate::error::Result;

/// Raw loss in light grey, its running mean (window 1% of the run, at least 10) in blue,
/// on a log scale.
pub fn write_loss_png(path: &Path, rows: &[(u64, f64)]) -> Result<()> {
    if rows.len() < 2 {
        return Ok(());
    }
    let raw: Vec<(f64, f64)> = rows.iter().filter(|r| r.1 > 0.0).map(|&(s, l)| (s as f64, l)).collect();
    let win = (raw.len() / 100).max(10);
    let (mut acc, mut smooth) = (0.0, Vec::with_capacity(raw.len()));
    for (i, &(s, l)) in raw.iter().enumerate() {
        // The running mean of log10(loss), drawn back on the linear scale the chart logs.
        acc += l.log10();
        if i >= win {
            acc -= raw[i - win].1.log10();
        }
        smooth.push((s, 10f64.powf(acc / (i + 1).min(win) as f64)));
    }
    let label = format!("running mean ({win} steps)");
    let panel =
        Panel::new("training loss", "step", "loss").log_y().line("loss", raw, (200, 200, 200), 1).line(label, smooth, (0, 0, 255), 2);
    Ok(line_chart(path, &[panel])?)
}
