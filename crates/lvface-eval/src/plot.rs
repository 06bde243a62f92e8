//! ROC plots with a logarithmic FAR axis, as SVG and as PNG.
//!
//! Each curve is drawn as the best TAR at or below each FAR (the staircase of the full ROC),
//! sampled at 600 log-spaced FARs from the axis minimum to 1: a curve of millions of pairs stays
//! a small file, and on a log axis no straight segment between sparse ROC points is implied.
//! The axis starts at the power of ten at or below the smallest resolvable FAR, `1 / impostors`,
//! of the curve with the most impostors; FPR 0 is drawn at that left edge. Text in both formats
//! uses the DejaVu Sans subset in `assets/` (printable ASCII and ±, −, ×), so no system font is
//! needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{EvalError, Result};
use crate::roc::RocCurve;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const SAMPLES: usize = 600;
/// The colours of successive curves (matplotlib's first six), shared by every lvface plot.
pub const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// One curve of a ROC plot.
#[derive(Debug, Clone, Copy)]
pub struct RocSeries<'a> {
    /// Legend text (the AUC is appended).
    pub label: &'a str,
    /// The curve.
    pub roc: &'a RocCurve,
}

/// Size and title of a ROC plot.
#[derive(Debug, Clone, PartialEq)]
pub struct RocPlot {
    /// Title drawn above the plot.
    pub title: String,
    /// Width in pixels (SVG user units).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl RocPlot {
    /// An 800×600 plot titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            width: 800,
            height: 600,
        }
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self, series: &[RocSeries<'_>]) -> Result<String> {
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (self.width, self.height)).into_drawing_area();
            self.draw(&root, series)
                .map_err(|e| EvalError::write(Path::new("<svg>"), e))?;
            root.present()
                .map_err(|e| EvalError::write(Path::new("<svg>"), e))?;
        }
        Ok(svg)
    }

    /// Writes the SVG document to `path`.
    pub fn write_svg(&self, path: &Path, series: &[RocSeries<'_>]) -> Result<()> {
        let svg = self.to_svg(series)?;
        std::fs::write(path, svg).map_err(|e| EvalError::write(path, e))
    }

    /// The plot as RGB pixels, row-major, `width * height * 3` bytes.
    pub fn to_rgb(&self, series: &[RocSeries<'_>]) -> Result<image::RgbImage> {
        let (w, h) = (self.width, self.height);
        let mut pixels = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
            self.draw(&root, series)
                .map_err(|e| EvalError::write(Path::new("<png>"), e))?;
            root.present()
                .map_err(|e| EvalError::write(Path::new("<png>"), e))?;
        }
        Ok(image::RgbImage::from_raw(w, h, pixels).expect("buffer should be width x height x 3"))
    }

    /// Writes the plot as a PNG file.
    pub fn write_png(&self, path: &Path, series: &[RocSeries<'_>]) -> Result<()> {
        let rgb = self.to_rgb(series)?;
        rgb.save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| EvalError::write(path, e))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        series: &[RocSeries<'_>],
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        register_font();
        root.fill(&WHITE)?;
        let max_impostors = series.iter().map(|s| s.roc.impostors).max().unwrap_or(10);
        let x_min = 10f64
            .powf((1.0 / max_impostors.max(1) as f64).log10().floor())
            .min(0.1);
        let curves: Vec<Vec<(f64, f64)>> = series
            .iter()
            .map(|s| {
                (0..SAMPLES)
                    .map(|k| {
                        let x = x_min * (1.0 / x_min).powf(k as f64 / (SAMPLES - 1) as f64);
                        let below = s.roc.fpr.partition_point(|&f| f <= x) - 1;
                        (x, s.roc.tpr[below])
                    })
                    .collect()
            })
            .collect();
        let lowest = curves
            .iter()
            .filter_map(|c| c.first().map(|p| p.1))
            .fold(1.0f64, f64::min);
        let y_min = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9);

        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            // A hair below the first decade, so that its tick label is drawn.
            .build_cartesian_2d((x_min * 0.98..1.0f64).log_scale(), y_min..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc("False accept rate (FAR)")
            .y_desc("True accept rate (TAR)")
            .x_label_formatter(&|x| decade_label(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()?;
        for (i, (s, points)) in series.iter().zip(curves).enumerate() {
            let color = COLORS[i % COLORS.len()];
            let label = format!("{} (AUC {:.4})", s.label, s.roc.auc());
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// `1e-6` for a power of ten (up to rounding in the log scale), else one significant digit.
fn decade_label(x: f64) -> String {
    let e = x.log10();
    if (e - e.round()).abs() < 1e-6 {
        format!("1e{}", e.round() as i32)
    } else {
        format!("{x:.0e}")
    }
}

/// Registers the embedded DejaVu Sans subset (printable ASCII and ±, −, ×) with plotters as
/// the `"sans-serif"` family, once per process, so that text draws without a system font.
/// Other crates' plots (lvface-train's training curves) call it before drawing.
pub fn register_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font should parse"));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roc() -> RocCurve {
        let scores: Vec<f64> = (0..200).map(|i| f64::from(i) / 200.0).collect();
        let labels: Vec<bool> = (0..200).map(|i| i % 3 == 0 || i > 150).collect();
        RocCurve::new(&scores, &labels).unwrap()
    }

    #[test]
    fn decade_labels_are_clean() {
        assert_eq!(decade_label(9.999999999999999e-6), "1e-5");
        assert_eq!(decade_label(1.0), "1e0");
        assert_eq!(decade_label(2e-3), "2e-3");
    }

    #[test]
    fn svg_has_log_axis_labels_and_legend() {
        let roc = roc();
        let svg = RocPlot::new("ROC test")
            .to_svg(&[RocSeries {
                label: "model",
                roc: &roc,
            }])
            .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("ROC test"));
        // 100 impostors (0..=150 not divisible by 3): the axis starts at 1e-2, one label per
        // decade.
        for label in ["1e-2", "1e-1", "1e0"] {
            assert!(svg.contains(&format!(">\n{label}\n<")), "missing {label}");
        }
        assert!(!svg.contains(">\n1e-3\n<"));
        assert!(svg.contains("model (AUC"));
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn png_has_the_size_and_draws_the_curve_colour() {
        let roc = roc();
        let plot = RocPlot {
            width: 320,
            height: 240,
            ..RocPlot::new("t")
        };
        let img = plot
            .to_rgb(&[RocSeries {
                label: "m",
                roc: &roc,
            }])
            .unwrap();
        assert_eq!(img.dimensions(), (320, 240));
        let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        assert!(blue > 100, "curve pixels: {blue}");
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
        assert!(dark > 100, "text and axis pixels: {dark}");
    }
}
