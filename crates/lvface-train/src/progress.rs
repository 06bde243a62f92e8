//! What the user sees while training: the percentage done, the step counts, the step's figures
//! and an ETA. On a terminal they are one bar redrawn in place after every step (indicatif);
//! anywhere else (a log file, CI) one whole line per `run.log_every` steps with a text bar,
//! without carriage returns or terminal control codes ([`ProgressOutput`]). The ETA is the mean time per
//! step of the steps this process ran (timed from [`Progress::new`]) times the steps left: a
//! resumed run does not count the steps an earlier process ran, which it did not time.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Width in characters of the bar inside the brackets of a progress line.
const BAR_WIDTH: usize = 20;

/// Progress lines of one training process.
#[derive(Debug, Clone)]
pub struct Progress {
    total_steps: u64,
    start_step: u64,
    started: Instant,
    eta_seconds: Option<f64>,
}

impl Progress {
    /// Progress of a run of `total_steps` steps whose process starts after step `start_step`
    /// (0 for a fresh run, the checkpoint's step for a resumed one). The clock starts now.
    pub fn new(total_steps: u64, start_step: u64) -> Self {
        Self {
            total_steps,
            start_step,
            started: Instant::now(),
            eta_seconds: None,
        }
    }

    /// The line to print after step `step` (counted from 1), for example
    /// `[#######.............]  35% step 350/1000 epoch 3 early loss 12.3456 lr 1.00e-3 |g| 2.345
    /// 1234.5 img/s ETA 4m05s`. It also updates [`Progress::eta_seconds`].
    // The figures are the columns of a metrics line; a struct for them would only be built to
    // be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        step: u64,
        epoch: u64,
        phase: &str,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        images_per_s: f64,
    ) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.eta_seconds = self.estimate(step, elapsed);
        let eta = self.eta_seconds.map_or_else(|| "?".to_string(), format_eta);
        format!(
            "{} {:>3}% step {step}/{} epoch {epoch} {phase} loss {loss:.4} lr {lr:.2e} \
             |g| {grad_norm:.3} {images_per_s:.1} img/s ETA {eta}",
            bar(self.fraction(step), BAR_WIDTH),
            self.percent(step),
            self.total_steps,
        )
    }

    /// Seconds left as of the last [`Progress::line`]; `None` before the first line or when
    /// this process has not finished a step yet.
    pub fn eta_seconds(&self) -> Option<f64> {
        self.eta_seconds
    }

    /// Fraction of the run done after `step`, in [0, 1]; an empty run is done.
    fn fraction(&self, step: u64) -> f64 {
        if self.total_steps == 0 {
            1.0
        } else {
            (step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
        }
    }

    /// Whole percent done, rounded down so that 100% means finished.
    fn percent(&self, step: u64) -> u64 {
        if self.total_steps == 0 {
            100
        } else {
            (u128::from(step.min(self.total_steps)) * 100 / u128::from(self.total_steps)) as u64
        }
    }

    /// Seconds left after `step` when this process has run for `elapsed` seconds.
    fn estimate(&self, step: u64, elapsed: f64) -> Option<f64> {
        let left = self.total_steps.saturating_sub(step);
        if left == 0 {
            return Some(0.0);
        }
        let ran = step.checked_sub(self.start_step).filter(|&n| n > 0)?;
        Some(elapsed / ran as f64 * left as f64)
    }
}

/// A duration for people: `45s`, `4m05s`, `2h03m`, `3d04h`; `?` when `seconds` is not finite.
/// Negative durations read as `0s`. The seconds are rounded first, so 59.6 s is `1m00s`.
pub fn format_eta(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".to_string();
    }
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A text bar `[###.......]` with `width` characters inside the brackets, `#` for the done
/// part (rounded down, so the bar is full only when finished). `fraction` is clamped to [0, 1];
/// NaN draws an empty bar.
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let done = ((fraction * width as f64).floor() as usize).min(width);
    format!("[{}{}]", "#".repeat(done), ".".repeat(width - done))
}

/// Where the progress lines of rank 0 go: a bar redrawn in place on a terminal, plain lines
/// otherwise. Everything else the run prints while the bar is up goes through
/// [`ProgressOutput::suspend`], so that it is not drawn over.
pub(crate) struct ProgressOutput {
    bar: Option<ProgressBar>,
}

impl ProgressOutput {
    /// Output for a run of `total_steps` steps resuming after `start_step`; with `show` false
    /// (ranks other than 0) nothing is shown.
    pub(crate) fn new(show: bool, total_steps: u64, start_step: u64) -> Self {
        let bar = (show && std::io::stdout().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template("[{bar:20}] {percent:>3}% {msg}")
                .expect("the template is valid")
                .progress_chars("#>.");
            bar.set_style(style);
            bar.set_position(start_step);
            bar
        });
        Self { bar }
    }

    /// Shows `line` ([`Progress::line`] after step `step`): on the bar always, as a plain line
    /// only when it is `due`. Returns whether a plain line was printed.
    // The line is the run's report to its user on stdout.
    #[allow(clippy::print_stdout)]
    pub(crate) fn show(&self, line: &str, step: u64, due: bool) -> bool {
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(figures(line).to_string());
                false
            }
            None if due => {
                println!("{line}");
                true
            }
            None => false,
        }
    }

    /// Runs `print` with the bar out of the way.
    pub(crate) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Leaves the bar drawn where it is, for what the run prints after it.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// What follows the text bar and percentage in a progress line: the bar draws those itself.
fn figures(line: &str) -> &str {
    line.split_once("% ")
        .map_or(line, |(_, rest)| rest.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_the_lines_figures_after_its_own_bar_and_percentage() {
        let mut progress = Progress::new(1000, 0);
        let line = progress.line(350, 3, "early", 12.3456, 1e-3, 2.345, 1234.5);
        let rest = figures(&line);
        assert!(
            rest.starts_with("step 350/1000 epoch 3 early loss 12.3456 lr 1.00e-3 |g| 2.345"),
            "{rest}"
        );
        assert!(rest.contains("1234.5 img/s ETA "), "{rest}");
        assert_eq!(format!("{} {:>3}% {rest}", bar(0.35, BAR_WIDTH), 35), line);
        // Plain output (off a terminal) prints the line only when it is due.
        let output = ProgressOutput { bar: None };
        assert!(output.show(&line, 350, true));
        assert!(!output.show(&line, 351, false));
        assert_eq!(output.suspend(|| 7), 7);
    }

    #[test]
    fn eta_is_formatted_in_two_units() {
        assert_eq!(format_eta(0.0), "0s");
        assert_eq!(format_eta(45.0), "45s");
        assert_eq!(format_eta(59.4), "59s");
        assert_eq!(format_eta(59.6), "1m00s");
        assert_eq!(format_eta(245.0), "4m05s");
        assert_eq!(format_eta(3_599.0), "59m59s");
        assert_eq!(format_eta(3_600.0), "1h00m");
        assert_eq!(format_eta(2.0 * 3_600.0 + 3.0 * 60.0 + 10.0), "2h03m");
        assert_eq!(format_eta(86_400.0), "1d00h");
        assert_eq!(format_eta(3.0 * 86_400.0 + 4.0 * 3_600.0 + 59.0), "3d04h");
        assert_eq!(format_eta(-5.0), "0s");
        assert_eq!(format_eta(f64::NAN), "?");
        assert_eq!(format_eta(f64::INFINITY), "?");
    }

    #[test]
    fn bar_fills_from_the_left_and_clamps() {
        assert_eq!(bar(0.0, 10), "[..........]");
        assert_eq!(bar(0.5, 10), "[#####.....]");
        assert_eq!(bar(1.0, 10), "[##########]");
        assert_eq!(bar(0.35, 20), "[#######.............]");
        assert_eq!(bar(0.999, 10), "[#########.]");
        assert_eq!(bar(-0.5, 10), "[..........]");
        assert_eq!(bar(1.5, 10), "[##########]");
        assert_eq!(bar(f64::NAN, 4), "[....]");
        assert_eq!(bar(0.5, 0), "[]");
    }

    #[test]
    fn line_has_bar_percentage_counts_and_figures() {
        let mut progress = Progress::new(1000, 0);
        let line = progress.line(350, 3, "early", 12.345_61, 1e-3, 2.3451, 1234.54);
        assert!(
            line.starts_with("[#######.............]  35% step 350/1000 epoch 3 early "),
            "{line}"
        );
        assert!(
            line.contains("loss 12.3456 lr 1.00e-3 |g| 2.345 1234.5 img/s ETA "),
            "{line}"
        );
        assert!(!line.contains('\r') && !line.contains('\n'));
        assert!(progress.eta_seconds().is_some());
    }

    #[test]
    fn line_at_the_end_is_full_with_no_time_left() {
        let mut progress = Progress::new(80, 79);
        let line = progress.line(80, 2, "stable", 1.0, 0.0, 0.0, 0.0);
        assert!(
            line.starts_with("[####################] 100% step 80/80 "),
            "{line}"
        );
        assert!(line.ends_with("ETA 0s"), "{line}");
    }

    #[test]
    fn eta_counts_only_the_steps_this_process_ran() {
        // Resumed after step 900 of 1000: 10 steps in 5 s leave 90 steps, 45 s.
        let progress = Progress::new(1000, 900);
        assert_eq!(progress.estimate(910, 5.0), Some(45.0));
        // No step run yet: no estimate, and the line says so.
        assert_eq!(progress.estimate(900, 5.0), None);
        let mut progress = Progress::new(1000, 900);
        let line = progress.line(900, 9, "stable", 1.0, 1e-4, 1.0, 1.0);
        assert!(line.starts_with("[##################..]  90% "), "{line}");
        assert!(line.ends_with("ETA ?"), "{line}");
        assert_eq!(progress.eta_seconds(), None);
    }

    #[test]
    fn percent_rounds_down_and_empty_runs_are_done() {
        let progress = Progress::new(1000, 0);
        assert_eq!(progress.percent(999), 99);
        assert_eq!(progress.percent(1000), 100);
        assert_eq!(progress.percent(2000), 100);
        let empty = Progress::new(0, 0);
        assert_eq!(empty.percent(0), 100);
        assert_eq!(empty.fraction(0), 1.0);
    }
}
