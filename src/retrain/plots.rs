//! PNG charts for retraining reports (loss curves, before/after per-class metrics).
//!
//! Rendering uses plotters' bitmap backend into an in-memory RGB buffer, text is drawn
//! with ab_glyph from the embedded DejaVu Sans font (no fontconfig/freetype needed),
//! and the PNG is encoded in memory with the `png` crate and written with the model crate's
//! atomic write (temp file, fsync, rename).

use contextrast_model::atomic::write_atomic;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Plot errors are messages naming the output file; the report writer logs them and goes on
/// (a missing picture must not fail a retraining run).
type Result<T> = std::result::Result<T, String>;

/// Width of every chart, in pixels.
pub const WIDTH: u32 = 900;
/// Height of every chart, in pixels.
pub const HEIGHT: u32 = 500;

const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Colour-blind friendly palette (Okabe-Ito), cycled per series.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];
const BEFORE_COLOR: RGBColor = RGBColor(150, 150, 150);
const AFTER_COLOR: RGBColor = RGBColor(0, 114, 178);

/// Registers the embedded font with plotters once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                plotters::style::register_font(FONT_FAMILY, style, FONT_BYTES)
                    .map_err(|_| "embedded font DejaVuSans.ttf is invalid".to_string())?;
            }
            Ok(())
        })
        .clone()
}

/// Renders with `draw` into a WIDTHxHEIGHT RGB buffer and writes it atomically as PNG.
fn render_png<F>(path: &Path, draw: F) -> Result<()>
where
    F: FnOnce(
        DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
{
    let ctx = |e: String| format!("plot {}: {e}", path.display());
    ensure_font().map_err(ctx)?;
    let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| ctx(e.to_string()))?;
        draw(root.clone()).map_err(ctx)?;
        root.present().map_err(|e| ctx(e.to_string()))?;
    }
    write_png_atomic(path, &buf)
}

/// Encodes in memory, then writes through the workspace's one atomic write. The report's
/// directory must exist: a plot never creates one where a typo put it.
fn write_png_atomic(path: &Path, rgb: &[u8]) -> Result<()> {
    let fail = |e: String| format!("write plot {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(fail(format!("no directory {}", dir.display())));
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| fail(e.to_string()))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| fail(e.to_string()))?;
        writer.finish().map_err(|e| fail(e.to_string()))?;
    }
    write_atomic(path, &png_bytes).map_err(|e| fail(e.to_string()))
}

/// Returns a non-degenerate (lo, hi) range covering `values` (finite ones only),
/// padded by 5% on each side when `pad` is set.
fn data_range(values: impl Iterator<Item = f64>, pad: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let half = if lo == 0.0 { 0.5 } else { lo.abs() * 0.05 };
        return (lo - half, hi + half);
    }
    if pad {
        let m = (hi - lo) * 0.05;
        (lo - m, hi + m)
    } else {
        (lo, hi)
    }
}

/// Splits a series into runs of consecutive finite points (NaN/inf break the line).
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            run.push((x, y));
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Tick label without a useless trailing `.0` (epochs, steps) and with few digits.
fn tick_label(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

type BarChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws category names centred under each bar group, shortened with `…` to fit the slot.
fn draw_category_labels(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    chart: &BarChart<'_, '_>,
    categories: &[&str],
) -> std::result::Result<(), String> {
    if categories.is_empty() {
        return Ok(());
    }
    let n = categories.len();
    let size = if n > 12 { 11 } else { 14 };
    let font = (FONT_FAMILY, size).into_font();
    let (left, _) = chart.backend_coord(&(0.0, 0.0));
    let (right, _) = chart.backend_coord(&(n as f64, 0.0));
    let slot = ((right - left) as f64 / n as f64 - 4.0).max(8.0) as u32;
    let style = font
        .color(&RGBColor(40, 40, 40))
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in categories.iter().enumerate() {
        let mut label = name.to_string();
        let mut chars: Vec<char> = name.chars().collect();
        while root
            .estimate_text_size(&label, &style)
            .map(|(w, _)| w > slot)
            .unwrap_or(false)
            && !chars.is_empty()
        {
            chars.pop();
            label = chars.iter().collect::<String>() + "…";
        }
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(label, (x, y + 8), style.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Line chart (900x500 PNG): one coloured line per `(name, points)` series with a legend.
///
/// Axis ranges come from the finite data; NaN/infinite points are skipped (they break
/// the line), single points are drawn as dots, empty input gives an empty 0..1 frame.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, &[(f64, f64)])],
) -> Result<()> {
    let all = || {
        series
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (x0, x1) = data_range(all().map(|p| p.0), false);
    let (y0, y1) = data_range(all().map(|p| p.1), true);

    render_png(path, |root| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_FAMILY, 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| tick_label(*x))
            .label_style((FONT_FAMILY, 14))
            .axis_desc_style((FONT_FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(e)?;

        let mut any_legend = false;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let style = color.stroke_width(2);
            let runs = finite_runs(pts);
            let mut first = true;
            for run in runs {
                let single = run.len() == 1;
                if single {
                    let ann = chart
                        .draw_series(run.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(e)?;
                    if first {
                        ann.label(*name).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], style)
                        });
                    }
                } else {
                    let ann = chart.draw_series(LineSeries::new(run, style)).map_err(e)?;
                    if first {
                        ann.label(*name).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], style)
                        });
                    }
                }
                any_legend |= first;
                first = false;
            }
        }
        if any_legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT_FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .draw()
                .map_err(e)?;
        }
        Ok(())
    })
}

/// Grouped bar chart (900x500 PNG): per category a `before` and an `after` bar,
/// e.g. per-class IoU of the current model vs the candidate.
///
/// The y axis spans 0..max(1.0, data max); non-finite values are drawn as missing.
/// `categories`, `before` and `after` must have equal lengths.
#[allow(clippy::too_many_arguments)]
pub fn before_after_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[&str],
    before: &[f64],
    after: &[f64],
    before_name: &str,
    after_name: &str,
) -> Result<()> {
    if before.len() != categories.len() || after.len() != categories.len() {
        return Err(format!(
            "plot {}: length mismatch: {} categories, {} before values, {} after values",
            path.display(),
            categories.len(),
            before.len(),
            after.len()
        ));
    }
    let data_max = before
        .iter()
        .chain(after)
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let y_max = data_max * 1.18; // headroom for value labels and the legend box
    let n = categories.len().max(1);
    let many = categories.len() > 12;

    render_png(path, |root| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_FAMILY, 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_label)
            .label_style((FONT_FAMILY, 14))
            .axis_desc_style((FONT_FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(e)?;

        draw_category_labels(&root, &chart, categories)?;

        let bar_w = 0.36;
        for (k, (values, name, color)) in [
            (before, before_name, BEFORE_COLOR),
            (after, after_name, AFTER_COLOR),
        ]
        .into_iter()
        .enumerate()
        {
            let offset = if k == 0 { 0.5 - bar_w } else { 0.5 };
            let bars = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(move |(i, &v)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 0.0), (x + bar_w, v.max(0.0))], color.filled())
                });
            chart
                .draw_series(bars)
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            if !many {
                let labels = values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(move |(i, &v)| {
                        let x = i as f64 + offset + bar_w / 2.0;
                        Text::new(
                            format!("{v:.2}"),
                            (x, v.max(0.0)),
                            (FONT_FAMILY, 12)
                                .into_font()
                                .color(&RGBColor(40, 40, 40))
                                .pos(Pos::new(HPos::Center, VPos::Bottom)),
                        )
                    });
                chart.draw_series(labels).map_err(e)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Series<'a> = (&'a str, &'a [(f64, f64)]);

    fn load(path: &Path) -> image::RgbImage {
        let dir = path.parent().expect("plots are written into a directory");
        let temps: Vec<_> = std::fs::read_dir(dir)
            .expect("plot directory readable")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(temps.is_empty(), "temp file left behind: {temps:?}");
        let img = image::open(path).expect("decodes as PNG").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        img
    }

    /// Counts pixels in the rectangle matching `pred`.
    fn count(
        img: &image::RgbImage,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
        pred: impl Fn(&image::Rgb<u8>) -> bool,
    ) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| pred(img.get_pixel(x, y)))
            .count()
    }

    fn dark(p: &image::Rgb<u8>) -> bool {
        p.0.iter().all(|&c| c < 100)
    }

    fn coloured(p: &image::Rgb<u8>) -> bool {
        let (mx, mn) = (*p.0.iter().max().unwrap(), *p.0.iter().min().unwrap());
        mx - mn > 60
    }

    // Title band: caption is centred at the top, within the margin + caption height.
    const TITLE: (u32, u32, u32, u32) = (250, 0, 650, 45);
    // Inside the plot area (right of y labels, above x labels, below the caption).
    const PLOT: (u32, u32, u32, u32) = (100, 60, 880, 430);

    #[test]
    fn line_chart_renders_lines_legend_and_title() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let train: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, 1.2 * (-(i as f64) / 15.0).exp() + 0.05))
            .collect();
        let mut val: Vec<(f64, f64)> = (0..50)
            .step_by(5)
            .map(|i| (i as f64, 1.3 * (-(i as f64) / 18.0).exp() + 0.12))
            .collect();
        val[3].1 = f64::NAN;
        line_chart(
            &path,
            "Training loss",
            "epoch",
            "loss",
            &[("train", &train), ("validation", &val)],
        )
        .unwrap();
        let img = load(&path);
        assert!(count(&img, PLOT, coloured) > 500, "no series pixels");
        assert!(count(&img, TITLE, dark) > 50, "title text not rendered");
    }

    #[test]
    fn line_chart_degenerate_inputs_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let empty: &[(f64, f64)] = &[];
        let single = [(3.0, 0.5)];
        let flat = [(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)];
        let nans = [(f64::NAN, 1.0), (1.0, f64::NAN)];
        let cases: [&[Series<'_>]; 6] = [
            &[],
            &[("empty", empty)],
            &[("single", &single)],
            &[("flat", &flat)],
            &[("nans", &nans)],
            &[("empty", empty), ("single", &single), ("flat", &flat)],
        ];
        for (i, series) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case{i}.png"));
            line_chart(&path, "Degenerate", "x", "y", series).unwrap();
            let img = load(&path);
            assert!(count(&img, TITLE, dark) > 50, "case {i}: title missing");
        }
    }

    #[test]
    fn bars_render_and_overwrite_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iou.png");
        std::fs::write(&path, b"old").unwrap();
        let cats = [
            "road",
            "sidewalk",
            "building",
            "vegetation",
            "sky",
            "person",
        ];
        let before = [0.91, 0.62, 0.80, 0.85, 0.93, 0.41];
        let after = [0.93, 0.70, 0.81, 0.84, 0.94, 0.55];
        before_after_bars(
            &path,
            "Per-class IoU",
            "IoU",
            &cats,
            &before,
            &after,
            "current",
            "candidate",
        )
        .unwrap();
        let img = load(&path);
        assert!(count(&img, PLOT, coloured) > 5000, "no bar pixels");
        assert!(count(&img, TITLE, dark) > 50, "title text not rendered");
    }

    #[test]
    fn bars_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.png");
        before_after_bars(&path, "Empty", "IoU", &[], &[], &[], "a", "b").unwrap();
        load(&path);
        before_after_bars(
            &path,
            "Big + NaN",
            "count",
            &["a", "b"],
            &[3.5, f64::NAN],
            &[-1.0, 7.0],
            "a",
            "b",
        )
        .unwrap();
        load(&path);
        let names: Vec<String> = (0..20)
            .map(|i| format!("very-long-class-name-{i}"))
            .collect();
        let cats: Vec<&str> = names.iter().map(String::as_str).collect();
        let vals: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
        before_after_bars(&path, "Many", "IoU", &cats, &vals, &vals, "a", "b").unwrap();
        load(&path);
    }

    #[test]
    fn bars_length_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let err = before_after_bars(&path, "t", "y", &["a", "b"], &[0.1], &[0.2, 0.3], "x", "y")
            .unwrap_err();
        assert!(err.contains("bad.png"), "{err}");
        let err = before_after_bars(&path, "t", "y", &["a"], &[0.1], &[], "x", "y").unwrap_err();
        assert!(err.contains("mismatch"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn unwritable_path_reports_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("x.png");
        let err = line_chart(&path, "t", "x", "y", &[]).unwrap_err();
        assert!(err.contains("x.png"), "{err}");
    }

    /// Writes sample PNGs for eyeballing, and checks they decode at full size:
    /// `PLOTS_SAMPLE_DIR=/some/dir cargo test -p contextrast write_samples -- --ignored`
    /// (a temporary directory when the variable is unset).
    #[test]
    #[ignore = "writes sample images for a person to look at"]
    fn write_samples_when_requested() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::env::var_os("PLOTS_SAMPLE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| tmp.path().to_path_buf());
        std::fs::create_dir_all(&dir).unwrap();
        let train: Vec<(f64, f64)> = (0..60)
            .map(|i| {
                let t = i as f64;
                (t, 1.1 * (-t / 14.0).exp() + 0.08 + 0.03 * (t * 1.7).sin())
            })
            .collect();
        let val: Vec<(f64, f64)> = (0..60)
            .step_by(5)
            .map(|i| (i as f64, 1.2 * (-(i as f64) / 17.0).exp() + 0.15))
            .collect();
        line_chart(
            &dir.join("sample_line_chart.png"),
            "Retraining loss (run 2024-06-01)",
            "epoch",
            "cross-entropy loss",
            &[("train", &train), ("validation", &val)],
        )
        .unwrap();
        before_after_bars(
            &dir.join("sample_before_after_bars.png"),
            "Per-class IoU: current vs candidate",
            "IoU",
            &[
                "road",
                "sidewalk",
                "building",
                "vegetation",
                "sky",
                "person",
                "car",
            ],
            &[0.91, 0.62, 0.80, 0.85, 0.93, 0.41, 0.77],
            &[0.93, 0.70, 0.81, 0.84, 0.94, 0.55, 0.79],
            "current model",
            "candidate",
        )
        .unwrap();
        for name in ["sample_line_chart.png", "sample_before_after_bars.png"] {
            let img = load(&dir.join(name));
            assert!(
                count(&img, (0, 0, WIDTH, HEIGHT), dark) > 500,
                "{name} is blank"
            );
        }
    }
}
