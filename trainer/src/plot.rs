//! The loss curve as a PNG (plotters, no text: the numbers are in loss.csv).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};

/// Raw loss in light grey, its running mean (window 1% of the run, at least 10) in blue,
/// on a log scale.
pub fn write_loss_png(path: &Path, rows: &[(u64, f64)]) -> Result<()> {
    if rows.len() < 2 {
        return Ok(());
    }
    let (w, h) = (800u32, 400u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = |e: String| TrainError::Io(format!("{}: {e}", path.display()));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let x_max = rows.last().map_or(1, |r| r.0).max(1);
        let logs: Vec<(u64, f64)> = rows.iter().filter(|r| r.1 > 0.0).map(|&(s, l)| (s, l.log10())).collect();
        let lo = logs.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let hi = logs.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
        if !(lo.is_finite() && hi.is_finite()) {
            return Ok(());
        }
        let mut chart =
            ChartBuilder::on(&root).margin(12).build_cartesian_2d(0u64..x_max, (lo - 0.05)..(hi + 0.05)).map_err(|e| err(e.to_string()))?;
        chart.draw_series(LineSeries::new(logs.iter().copied(), RGBColor(200, 200, 200))).map_err(|e| err(e.to_string()))?;
        let win = (logs.len() / 100).max(10);
        let mut smooth = Vec::with_capacity(logs.len());
        let mut acc = 0.0;
        for (i, &(s, l)) in logs.iter().enumerate() {
            acc += l;
            if i >= win {
                acc -= logs[i - win].1;
            }
            smooth.push((s, acc / (i + 1).min(win) as f64));
        }
        chart.draw_series(LineSeries::new(smooth, BLUE.stroke_width(2))).map_err(|e| err(e.to_string()))?;
        root.draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK)).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| err("bad buffer".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| err(e.to_string()))?;
    ddpm_io::files::write_atomically(path, |w| w.write_all(&png))?;
    Ok(())
}
