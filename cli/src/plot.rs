//! `runtime plot`: line charts of the CSV files the tools write (loss.csv, `nll --csv`,
//! `nll --rd`, scripts/eval-guidance.sh's sweep), one panel per `--y`.

use std::path::PathBuf;

use ddpm_io::plot::{line_chart, Panel, PALETTE};

use crate::bad;

#[derive(clap::Args)]
pub struct PlotArgs {
    /// A CSV file with a header row and numbers in every other row.
    #[arg(long, value_name = "FILE.csv")]
    csv: PathBuf,
    /// The column on the x axis.
    #[arg(long, value_name = "COLUMN")]
    x: String,
    /// One panel: the columns drawn in it, comma-separated (one line each). Repeat for
    /// panels side by side.
    #[arg(long, value_name = "COLUMN[,COLUMN...]", required = true)]
    y: Vec<String>,
    /// The panels' titles, one per --y, in order [default: the columns against x].
    #[arg(long, value_name = "TEXT")]
    title: Vec<String>,
    /// The y axis of every panel in log scale (rows with a value <= 0 are left out of it).
    #[arg(long)]
    log_y: bool,
    /// Only the rows whose COLUMN equals VALUE (a text column such as `term` of `nll --csv`).
    #[arg(long, value_name = "COLUMN=VALUE")]
    filter: Option<String>,
    /// The chart, written to a temporary name, then renamed.
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
}

pub fn plot(args: PlotArgs) -> anyhow::Result<()> {
    let file = args.csv.display().to_string();
    if args.out.extension().is_none_or(|e| !e.eq_ignore_ascii_case("png")) {
        return Err(bad(format!("--out {}: expected a FILE.png", args.out.display())));
    }
    if !args.title.is_empty() && args.title.len() != args.y.len() {
        return Err(bad(format!("--title given {} times for {} --y panels: expected one per panel", args.title.len(), args.y.len())));
    }
    let text = ddpm_io::files::read_regular_text(&args.csv, 64 << 20, "CSV file")?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| bad(format!("{file}: not a CSV file ({e})")))?.iter().map(str::to_string).collect();
    if header.iter().all(String::is_empty) {
        return Err(bad(format!("{file}: no header row, expected column names (e.g. step,loss)")));
    }
    // A name given twice would make --x or --y ambiguous.
    if let Some((i, name)) = header.iter().enumerate().find(|(i, h)| header[..*i].contains(h)) {
        return Err(bad(format!(
            "{file}: column `{name}` appears twice in the header (again as column {}), expected distinct names",
            i + 1
        )));
    }
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("{file}: no column `{name}`; its columns are {}", header.join(", "))))
    };
    let filter = match &args.filter {
        None => None,
        Some(f) => {
            let (c, v) = f.split_once('=').ok_or_else(|| bad(format!("--filter {f}: expected COLUMN=VALUE")))?;
            Some((column(c)?, v.to_string()))
        }
    };
    let x = column(&args.x)?;
    let panels_cols: Vec<Vec<(String, usize)>> = args
        .y
        .iter()
        .map(|p| p.split(',').map(|c| column(c.trim()).map(|i| (c.trim().to_string(), i))).collect::<anyhow::Result<Vec<_>>>())
        .collect::<anyhow::Result<_>>()?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("{file}: row {}: {e}", i + 2)))?;
        if filter.as_ref().is_some_and(|(c, v)| record.get(*c) != Some(v.as_str())) {
            continue;
        }
        rows.push(record.iter().map(str::to_string).collect());
    }
    if rows.is_empty() {
        return Err(bad(format!("{file}: no data rows{}", if filter.is_some() { " match --filter" } else { "" })));
    }
    let number = |row: usize, col: usize| -> anyhow::Result<f64> {
        let cell = &rows[row][col];
        match cell.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(bad(format!("{file}: column `{}`, data row {}: `{cell}`, expected a finite number", header[col], row + 1))),
        }
    };
    let xs: Vec<f64> = (0..rows.len()).map(|r| number(r, x)).collect::<anyhow::Result<_>>()?;
    let mut panels = Vec::new();
    for (k, cols) in panels_cols.iter().enumerate() {
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let title = args.title.get(k).cloned().unwrap_or_else(|| format!("{} against {}", names.join(", "), args.x));
        let y_label = if cols.len() == 1 { names[0].to_string() } else { String::new() };
        let mut panel = Panel::new(title, args.x.clone(), y_label);
        panel.log_y = args.log_y;
        for (j, (name, col)) in cols.iter().enumerate() {
            let points = (0..rows.len()).map(|r| number(r, *col).map(|y| (xs[r], y))).collect::<anyhow::Result<_>>()?;
            let legend = if cols.len() > 1 { name.clone() } else { String::new() };
            panel = panel.line(legend, points, PALETTE[j % PALETTE.len()], 2);
        }
        panels.push(panel);
    }
    if args.log_y && panels.iter().flat_map(|p| &p.lines).flat_map(|l| &l.points).all(|p| p.1 <= 0.0) {
        return Err(bad(format!("{file}: nothing to draw: no value above 0 for --log-y")));
    }
    line_chart(&args.out, &panels)?;
    println!("wrote {} ({} rows, {} panels)", args.out.display(), rows.len(), panels.len());
    Ok(())
}
