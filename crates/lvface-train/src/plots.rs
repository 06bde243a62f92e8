//! Plots of a run's curves, as PNG and SVG, from the run folder's JSON-lines files:
//! `loss.{png,svg}` (loss against step, a dashed vertical line where the curriculum phase
//! changes), `lr.{png,svg}` (learning rate against step) and, once `eval.jsonl` has lines,
//! `accuracy.{png,svg}` (verification accuracy against step, one curve per pair set).
//!
//! Drawing follows lvface-eval's ROC plots (`crates/lvface-eval/src/plot.rs`): plotters draws
//! into an RGB buffer that the `image` crate encodes as PNG, and text uses lvface-eval's
//! embedded font, so no system font is needed. A curve of more than 2000 points is
//! reduced to the lowest and highest value of each of 1000 runs of consecutive
//! points: a run of millions of steps keeps its envelope and stays a small SVG.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lvface_eval::COLORS;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::run_folder::{EVAL_FILE, METRICS_FILE};

/// Size in pixels of every plot.
pub const PLOT_SIZE: (u32, u32) = (800, 500);
/// The most points a drawn curve keeps.
const MAX_POINTS: usize = 2_000;
const BOUNDARY: RGBColor = RGBColor(120, 120, 120);

/// The columns of a `metrics.jsonl` line that the plots use; the others are ignored.
#[derive(Debug, Deserialize)]
struct MetricsLine {
    step: u64,
    /// The phase index or name: a boundary is drawn wherever it changes.
    phase: serde_json::Value,
    loss: f64,
    lr: f64,
}

/// The columns of an `eval.jsonl` line that the plots use.
#[derive(Debug, Deserialize)]
struct EvalLine {
    step: u64,
    set: String,
    accuracy: f64,
}

/// Writes the plots of the run in `run_dir` (see the module documentation) and returns the
/// paths written, PNG before SVG for each plot. A missing or empty `metrics.jsonl` is an
/// error; a missing or empty `eval.jsonl` only leaves out the accuracy plot. A line that is not
/// a JSON object with the expected keys is an error naming the file and the line number.
pub fn write_curves(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let metrics_path = run_dir.join(METRICS_FILE);
    let metrics: Vec<MetricsLine> = read_lines(&metrics_path)?;
    if metrics.is_empty() {
        bail!("{} has no steps to plot", metrics_path.display());
    }
    let eval_path = run_dir.join(EVAL_FILE);
    let evals: Vec<EvalLine> = if eval_path.exists() {
        read_lines(&eval_path)?
    } else {
        Vec::new()
    };

    let step = |m: &MetricsLine| m.step as f64;
    let boundaries: Vec<f64> = metrics
        .windows(2)
        .filter(|w| w[0].phase != w[1].phase)
        .map(|w| step(&w[1]))
        .collect();
    let loss = vec![Series {
        label: "loss".into(),
        points: metrics.iter().map(|m| (step(m), m.loss)).collect(),
    }];
    let lr = vec![Series {
        label: "learning rate".into(),
        points: metrics.iter().map(|m| (step(m), m.lr)).collect(),
    }];

    let mut written = Vec::new();
    let mut write = |name: &str, plot: Plot<'_>| -> Result<()> {
        let png = run_dir.join(format!("{name}.png"));
        plot.write_png(&png)?;
        let svg = run_dir.join(format!("{name}.svg"));
        plot.write_svg(&svg)?;
        written.extend([png, svg]);
        Ok(())
    };
    write(
        "loss",
        Plot {
            title: "Training loss",
            y_desc: "loss",
            series: &loss,
            boundaries: &boundaries,
            y_label: |y| format!("{y:.2}"),
            legend: SeriesLabelPosition::UpperRight,
            markers: false,
        },
    )?;
    write(
        "lr",
        Plot {
            title: "Learning rate",
            y_desc: "learning rate",
            series: &lr,
            boundaries: &boundaries,
            // Tick values at zero can be a rounding error away from it.
            y_label: |y| {
                if y.abs() < 1e-15 {
                    "0".into()
                } else {
                    format!("{y:.1e}")
                }
            },
            legend: SeriesLabelPosition::UpperRight,
            markers: false,
        },
    )?;
    if !evals.is_empty() {
        let mut sets: Vec<Series> = Vec::new();
        for e in &evals {
            let point = (e.step as f64, e.accuracy);
            match sets.iter_mut().find(|s| s.label == e.set) {
                Some(s) => s.points.push(point),
                None => sets.push(Series {
                    label: e.set.clone(),
                    points: vec![point],
                }),
            }
        }
        write(
            "accuracy",
            Plot {
                title: "Verification accuracy",
                y_desc: "accuracy",
                series: &sets,
                boundaries: &boundaries,
                y_label: |y| format!("{y:.3}"),
                // Accuracy rises: the legend goes where the curves start.
                legend: SeriesLabelPosition::LowerRight,
                // Verifications are sparse; a marker shows where each one was.
                markers: true,
            },
        )?;
    }
    Ok(written)
}

/// Parses every non-blank line of the JSON-lines file at `path`.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("parsing {} line {}", path.display(), i + 1))
        })
        .collect()
}

/// One named curve, in file order.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// One line chart against the training step.
struct Plot<'a> {
    title: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    /// Steps where the curriculum phase changes, drawn as dashed vertical lines.
    boundaries: &'a [f64],
    y_label: fn(f64) -> String,
    legend: SeriesLabelPosition,
    /// Whether every point gets a marker; a curve of one point always does.
    markers: bool,
}

impl Plot<'_> {
    fn write_png(&self, path: &Path) -> Result<()> {
        let (w, h) = PLOT_SIZE;
        let mut pixels = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present())
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        }
        image::RgbImage::from_raw(w, h, pixels)
            .expect("buffer should be width x height x 3")
            .save_with_format(path, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn write_svg(&self, path: &Path) -> Result<()> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present())
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        }
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        lvface_eval::register_font();
        root.fill(&WHITE)?;
        let curves: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| decimate(&s.points, MAX_POINTS))
            .collect();
        let points = || curves.iter().flatten();
        let (x_range, y_range) = (
            padded_range(points().map(|p| p.0), 0.0),
            padded_range(points().map(|p| p.1), 0.05),
        );

        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range.clone(), y_range.clone())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(self.y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| (self.y_label)(*y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()?;
        for (i, &x) in self.boundaries.iter().enumerate() {
            let line = vec![(x, y_range.start), (x, y_range.end)];
            let series =
                chart.draw_series(DashedLineSeries::new(line, 6, 4, BOUNDARY.stroke_width(1)))?;
            if i == 0 {
                series.label("phase change").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], BOUNDARY.stroke_width(1))
                });
            }
        }
        for (i, (s, points)) in self.series.iter().zip(curves).enumerate() {
            let color = COLORS[i % COLORS.len()];
            let style = color.stroke_width(2);
            let marked = self.markers || points.len() == 1;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            // A curve of one point would otherwise be invisible.
            if marked {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(self.legend.clone())
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// The range from the smallest to the largest value, widened by `pad` times its length on both
/// sides; a single value (or none) gets a range of its own around it.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let half = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        return lo - half..hi + half;
    }
    let margin = (hi - lo) * pad;
    lo - margin..hi + margin
}

/// At most `max_points` of `points`: all of them when they fit, else the lowest and the
/// highest point (in their order) of each of `max_points / 2` consecutive runs.
fn decimate(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    let buckets = max_points / 2;
    if points.len() <= max_points || buckets == 0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * buckets);
    for b in 0..buckets {
        let run = &points[b * points.len() / buckets..(b + 1) * points.len() / buckets];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in run.iter().enumerate() {
            if p.1 < run[lo].1 {
                lo = i;
            }
            if p.1 > run[hi].1 {
                hi = i;
            }
        }
        out.push(run[lo.min(hi)]);
        if lo != hi {
            out.push(run[lo.max(hi)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the workspace's `target/tmp`.
    fn run_dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tmp")
            .join(format!("lvface-train-plots-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn metrics_text(steps: u64, switch_at: u64) -> String {
        (1..=steps)
            .map(|step| {
                let phase = u64::from(step >= switch_at);
                let loss = 20.0 / (1.0 + step as f64 * 0.1);
                let lr = 1e-3 * (1.0 - step as f64 / steps as f64);
                format!(
                    "{{\"step\":{step},\"epoch\":{},\"phase\":{phase},\"loss\":{loss},\
                     \"lr\":{lr},\"grad_norm\":1.5,\"images_per_s\":100.0}}\n",
                    step / 10
                )
            })
            .collect()
    }

    fn assert_png(path: &Path) -> image::RgbImage {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), PLOT_SIZE, "{}", path.display());
        img
    }

    fn count(img: &image::RgbImage, color: RGBColor) -> usize {
        let RGBColor(r, g, b) = color;
        img.pixels().filter(|p| p.0 == [r, g, b]).count()
    }

    #[test]
    fn writes_loss_lr_and_accuracy_plots() {
        let dir = run_dir("all");
        std::fs::write(dir.join(METRICS_FILE), metrics_text(60, 31)).unwrap();
        std::fs::write(
            dir.join(EVAL_FILE),
            "{\"step\":20,\"set\":\"lfw\",\"accuracy\":0.71,\"std\":0.01}\n\
             {\"step\":20,\"set\":\"cfp_fp\",\"accuracy\":0.62}\n\
             \n\
             {\"step\":40,\"set\":\"lfw\",\"accuracy\":0.83}\n\
             {\"step\":40,\"set\":\"cfp_fp\",\"accuracy\":0.7}\n\
             {\"step\":60,\"set\":\"lfw\",\"accuracy\":0.9}\n",
        )
        .unwrap();
        let written = write_curves(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "loss.png",
                "loss.svg",
                "lr.png",
                "lr.svg",
                "accuracy.png",
                "accuracy.svg"
            ]
        );
        let loss = assert_png(&dir.join("loss.png"));
        assert!(count(&loss, COLORS[0]) > 100, "loss curve pixels");
        assert!(count(&loss, BOUNDARY) > 20, "phase boundary pixels");
        let dark = loss
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 80))
            .count();
        assert!(dark > 100, "text and axis pixels: {dark}");
        assert_png(&dir.join("lr.png"));
        let accuracy = assert_png(&dir.join("accuracy.png"));
        assert!(count(&accuracy, COLORS[0]) > 50, "first set's pixels");
        assert!(count(&accuracy, COLORS[1]) > 50, "second set's pixels");

        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Training loss"));
        assert!(svg.contains("phase change"));
        let svg = std::fs::read_to_string(dir.join("accuracy.svg")).unwrap();
        assert!(svg.contains("lfw") && svg.contains("cfp_fp"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_eval_lines_there_is_no_accuracy_plot() {
        let dir = run_dir("no-eval");
        std::fs::write(dir.join(METRICS_FILE), metrics_text(5, 100)).unwrap();
        assert_eq!(write_curves(&dir).unwrap().len(), 4);
        std::fs::write(dir.join(EVAL_FILE), "\n").unwrap();
        assert_eq!(write_curves(&dir).unwrap().len(), 4);
        assert!(!dir.join("accuracy.png").exists());
        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        assert!(!svg.contains("phase change"), "one phase, no boundary");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_single_step_still_plots() {
        let dir = run_dir("single");
        std::fs::write(dir.join(METRICS_FILE), metrics_text(1, 100)).unwrap();
        std::fs::write(
            dir.join(EVAL_FILE),
            "{\"step\":1,\"set\":\"lfw\",\"accuracy\":0.5}\n",
        )
        .unwrap();
        assert_eq!(write_curves(&dir).unwrap().len(), 6);
        let accuracy = assert_png(&dir.join("accuracy.png"));
        assert!(count(&accuracy, COLORS[0]) > 10, "the one point's marker");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = run_dir("bad");
        let mut text = metrics_text(3, 100);
        text.push_str("{\"step\":4,\"phase\":0,\"loss\":\"x\",\"lr\":0.1}\n");
        std::fs::write(dir.join(METRICS_FILE), text).unwrap();
        let err = format!("{:#}", write_curves(&dir).unwrap_err());
        assert!(
            err.contains("metrics.jsonl line 4"),
            "error should name the line: {err}"
        );

        std::fs::write(dir.join(METRICS_FILE), metrics_text(3, 100)).unwrap();
        std::fs::write(
            dir.join(EVAL_FILE),
            "{\"step\":1,\"set\":\"lfw\",\"accuracy\":0.5}\nnot json\n",
        )
        .unwrap();
        let err = format!("{:#}", write_curves(&dir).unwrap_err());
        assert!(err.contains("eval.jsonl line 2"), "{err}");

        std::fs::write(dir.join(METRICS_FILE), "").unwrap();
        let err = format!("{:#}", write_curves(&dir).unwrap_err());
        assert!(err.contains("no steps"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = format!("{:#}", write_curves(&dir).unwrap_err());
        assert!(
            err.contains("reading") && err.contains("metrics.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn decimation_keeps_the_envelope() {
        let points: Vec<(f64, f64)> = (0..10_000)
            .map(|i| {
                (
                    f64::from(i),
                    if i == 4_321 { 99.0 } else { f64::from(i % 7) },
                )
            })
            .collect();
        let kept = decimate(&points, 100);
        assert!(kept.len() <= 100, "{}", kept.len());
        assert!(kept.contains(&(4_321.0, 99.0)));
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "order is kept");
        assert_eq!(decimate(&points[..50], 100), points[..50].to_vec());
    }

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded_range([0.0, 10.0].into_iter(), 0.1), -1.0..11.0);
        let r = padded_range([2.0].into_iter(), 0.1);
        assert!(r.start < 2.0 && r.end > 2.0);
        let r = padded_range([0.0, 0.0].into_iter(), 0.1);
        assert!(r.start < 0.0 && r.end > 0.0);
        assert_eq!(padded_range(std::iter::empty(), 0.1), 0.0..1.0);
    }
}
