//! Line charts as PNG images (plotters, drawn into a buffer and written atomically), with
//! axes, tick labels, a title and a legend in DejaVu Sans (embedded by the `dejavu` crate:
//! no system font is read). The numbers themselves go in a CSV beside each chart.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// One line of a chart: its name in the legend (none when empty), its points, colour (RGB)
/// and stroke width in pixels. Points that are not finite (or not positive on a log axis)
/// are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub rgb: (u8, u8, u8),
    pub width: u32,
}

/// One panel: a title, the axes' names, a linear or log10 y axis, and its lines.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub lines: Vec<Line>,
}

impl Panel {
    /// A panel with a title and axis names and no lines yet.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Panel { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Default::default() }
    }

    /// The same panel with a log10 y axis.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }

    /// The same panel with one more line.
    pub fn line(mut self, name: impl Into<String>, points: Vec<(f64, f64)>, rgb: (u8, u8, u8), width: u32) -> Self {
        self.lines.push(Line { name: name.into(), points, rgb, width });
        self
    }
}

/// The colours given to successive lines by tools that do not choose their own.
pub const PALETTE: [(u8, u8, u8); 6] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (90, 90, 90)];

const FONT: &str = "sans-serif";

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument("the embedded DejaVu Sans font could not be read".into()))
    }
}

/// A tick label: up to 3 significant digits, no trailing zeros.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws the panels side by side (each 800x420 for one panel, 560x420 for several) and
/// writes the chart as an RGB PNG. Panels with no drawable point are drawn empty; a chart
/// where no panel has a drawable point writes nothing.
///
/// ```
/// use ddpm_io::plot::{line_chart, Panel};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("chart.png");
/// let points = (1..10).map(|i| (i as f64, 1.0 / i as f64)).collect();
/// let panel = Panel::new("1/x", "x", "y").log_y().line("1/x", points, (0, 0, 255), 2);
/// line_chart(&path, &[panel])?;
/// let (_, c, h, w) = ddpm_io::png::read_png(&path)?;
/// assert_eq!((c, h, w), (3, 420, 800));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn line_chart(path: &Path, panels: &[Panel]) -> Result<()> {
    register_font()?;
    let n = panels.len().max(1) as u32;
    let (pw, h) = (if n == 1 { 800u32 } else { 560 }, 420u32);
    let w = pw * n;
    let drawn: Vec<Vec<Vec<(f64, f64)>>> = panels
        .iter()
        .map(|p| {
            p.lines
                .iter()
                .map(|l| {
                    l.points
                        .iter()
                        .filter(|q| q.0.is_finite() && q.1.is_finite() && (!p.log_y || q.1 > 0.0))
                        .map(|&(x, y)| (x, if p.log_y { y.log10() } else { y }))
                        .collect()
                })
                .collect()
        })
        .collect();
    if drawn.iter().flatten().all(|l| l.is_empty()) {
        return Ok(());
    }
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = |e: String| Error::bad_file(path, format!("drawing the chart: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((1, n as usize));
        for ((panel, lines), area) in panels.iter().zip(&drawn).zip(&areas) {
            let all = || lines.iter().flatten();
            let (x_lo, x_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
            let (y_lo, y_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
            let (x_lo, x_hi, y_lo, y_hi) = if x_lo.is_finite() { (x_lo, x_hi, y_lo, y_hi) } else { (0.0, 1.0, 0.0, 1.0) };
            if !((x_hi - x_lo) * 1.1).is_finite() || !((y_hi - y_lo) * 1.1).is_finite() {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "panel `{}`: values from ({x_lo:e}, {y_lo:e}) to ({x_hi:e}, {y_hi:e}) span more than a float64 axis can draw",
                        panel.title
                    ),
                ));
            }
            let pad = |lo: f64, hi: f64| if hi > lo { (hi - lo) * 0.04 } else { lo.abs().max(1.0) * 0.05 };
            let (px, py) = (pad(x_lo, x_hi), pad(y_lo, y_hi));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FONT, 20))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d((x_lo - px)..(x_hi + px), (y_lo - py)..(y_hi + py))
                .map_err(|e| err(e.to_string()))?;
            let log_y = panel.log_y;
            let y_fmt = move |v: &f64| if log_y { tick(10f64.powf(*v)) } else { tick(*v) };
            chart
                .configure_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .x_desc(&panel.x_label)
                .y_desc(if log_y { format!("{} (log scale)", panel.y_label) } else { panel.y_label.clone() })
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 15))
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&y_fmt)
                .draw()
                .map_err(|e| err(e.to_string()))?;
            let mut named = false;
            for (points, line) in lines.iter().zip(&panel.lines) {
                let (r, g, b) = line.rgb;
                let style = RGBColor(r, g, b).stroke_width(line.width);
                if points.len() <= 12 {
                    // Few points (a sweep): mark each one.
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, RGBColor(r, g, b).filled())))
                        .map_err(|e| err(e.to_string()))?;
                }
                // Segment by segment: plotters joins a wide polyline with miters, which spike
                // far out of the chart at sharp turns (a noisy loss curve).
                let series = chart
                    .draw_series(points.windows(2).map(|s| PathElement::new(vec![s[0], s[1]], style)))
                    .map_err(|e| err(e.to_string()))?;
                if !line.name.is_empty() {
                    named = true;
                    series.label(&line.name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                }
            }
            if named {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(180, 180, 180))
                    .label_font((FONT, 13))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    crate::png::write_rgb_png(path, &buf, w as usize, h as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1.5), "1.5");
        assert_eq!(tick(58.9), "58.9");
        assert_eq!(tick(0.955), "0.955");
        assert_eq!(tick(1000.0), "1000");
        assert_eq!(tick(0.035481), "0.0355");
        assert_eq!(tick(2.0e-5), "2.0e-5");
    }

    #[test]
    fn panels_sit_side_by_side_and_text_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let p = |title: &str| Panel::new(title, "x", "y").line("a", vec![(0.0, 1.0), (1.0, 2.0)], (0, 0, 255), 2);
        line_chart(&path, &[p("one"), p("two")]).unwrap();
        let (px, c, h, w) = crate::png::read_png(&path).unwrap();
        assert_eq!((c, h, w), (3, 420, 1120));
        // The caption row above the plot of each panel holds dark (text) pixels ([C, H, W]
        // values in [-1, 1]; channel 0 is red).
        let dark = |x0: usize, x1: usize| (0..30).any(|y| (x0..x1).any(|x| px[y * w + x] < -0.2));
        assert!(dark(0, 560) && dark(560, 1120));
    }

    #[test]
    fn values_too_far_apart_to_draw_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let panel = Panel::new("t", "x", "y").line("", vec![(0.0, -1e308), (1.0, 1e308)], (0, 0, 0), 1);
        let e = line_chart(&path, &[panel]).unwrap_err().to_string();
        assert!(e.contains("span more than"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn nothing_drawable_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let panel = Panel::new("t", "x", "y").log_y().line("", vec![(0.0, -1.0), (f64::NAN, 1.0)], (0, 0, 0), 1);
        line_chart(&path, &[panel]).unwrap();
        assert!(!path.exists());
    }
}
