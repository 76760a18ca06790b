//! Line charts as PNG images (plotters, drawn into a buffer and written atomically). They
//! carry no text (no font is needed): the numbers go in a CSV beside each chart.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// One line of a chart: its points and colour (RGB) and stroke width in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub points: Vec<(f64, f64)>,
    pub rgb: (u8, u8, u8),
    pub width: u32,
}

/// Draws `lines` in an 800x400 chart (white, a black frame) and writes it as an RGB PNG.
/// With `log_y` the y values are drawn as log10 (non-positive ones are left out). A chart
/// with no drawable point writes nothing.
///
/// ```
/// use ddpm_io::plot::{line_chart, Line};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("chart.png");
/// let line = Line { points: (1..10).map(|i| (i as f64, 1.0 / i as f64)).collect(), rgb: (0, 0, 255), width: 2 };
/// line_chart(&path, &[line], true)?;
/// let (_, c, h, w) = ddpm_io::png::read_png(&path)?;
/// assert_eq!((c, h, w), (3, 400, 800));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn line_chart(path: &Path, lines: &[Line], log_y: bool) -> Result<()> {
    let (w, h) = (800u32, 400u32);
    let drawn: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|l| {
            l.points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0))
                .map(|&(x, y)| (x, if log_y { y.log10() } else { y }))
                .collect()
        })
        .collect();
    let all = || drawn.iter().flatten();
    let (x_lo, x_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_lo, y_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Ok(());
    }
    let pad = |lo: f64, hi: f64| if hi > lo { (hi - lo) * 0.03 } else { 0.5 };
    let (px, py) = (pad(x_lo, x_hi), pad(y_lo, y_hi));
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = |e: String| Error::bad_file(path, format!("drawing the chart: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .build_cartesian_2d((x_lo - px)..(x_hi + px), (y_lo - py)..(y_hi + py))
            .map_err(|e| err(e.to_string()))?;
        for (points, line) in drawn.iter().zip(lines) {
            let (r, g, b) = line.rgb;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), RGBColor(r, g, b).stroke_width(line.width)))
                .map_err(|e| err(e.to_string()))?;
        }
        root.draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK)).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    crate::png::write_rgb_png(path, &buf, w as usize, h as usize)
}
