//! A `.bin`-style pair set from its embeddings to a report folder: the 10-fold figures, TAR@FAR
//! and the ROC of the pair cosines ([`evaluate_pair_set`]), then `report.json`, `report.md`
//! and one ROC plot per set in PNG and SVG ([`write_report_dir`]).

use std::path::{Path, PathBuf};

use crate::embeddings::Embeddings;
use crate::error::{EvalError, Result};
use crate::kfold::Verification;
use crate::plot::{RocPlot, RocSeries};
use crate::report::{EvalReport, SetReport};
use crate::roc::RocCurve;
use crate::tar_far::IJB_FARS;

/// One evaluated pair set: its figures and the ROC of its pair cosines.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSetResult {
    /// The 10-fold figures and TAR@FAR at [`IJB_FARS`] of the cosines.
    pub report: SetReport,
    /// The ROC of the cosine similarities of the pairs.
    pub roc: RocCurve,
}

/// Evaluates the pair set `name` from the embeddings of its images (pair `i` = rows `2i`,
/// `2i + 1`) and, when given, those of the mirrored images (scored by their sum, as
/// [`Verification::evaluate_embeddings`]).
///
/// The ROC and TAR@FAR use the cosine similarity of the L2-normalised (flip-summed) embeddings
/// of each pair.
pub fn evaluate_pair_set(
    name: &str,
    verification: &Verification,
    embeddings: &Embeddings,
    flipped: Option<&Embeddings>,
    issame: &[bool],
) -> Result<PairSetResult> {
    let figures = verification.evaluate_embeddings(embeddings, flipped, issame)?;
    let cosines = match flipped {
        Some(flipped) => embeddings.sum(flipped)?.pair_cosines()?,
        None => embeddings.pair_cosines()?,
    };
    let roc = RocCurve::new(&cosines, issame)?;
    Ok(PairSetResult {
        report: SetReport {
            name: name.to_string(),
            verification: Some(figures),
            tar_far: Some(roc.tar_at_far(&IJB_FARS)),
        },
        roc,
    })
}

/// The report of `sets`, evaluated from `source` (a run, a weights file, an embeddings file).
pub fn pair_set_report(source: &str, sets: &[PairSetResult]) -> EvalReport {
    EvalReport {
        source: source.to_string(),
        sets: sets.iter().map(|s| s.report.clone()).collect(),
    }
}

/// Writes `report.json` and `report.md` of `sets` into `dir` (created if needed), and per set
/// `roc-NAME.png` and `roc-NAME.svg` (TAR against FAR of the pair cosines; `NAME` is the set's
/// name with characters other than letters, digits, `-`, `_` and `.` replaced by `_`, and
/// `-2`, `-3`, … appended to a repeated name). Returns the paths written, in that order.
pub fn write_report_dir(dir: &Path, source: &str, sets: &[PairSetResult]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::write(dir, e))?;
    let report = pair_set_report(source, sets);
    let json = dir.join("report.json");
    report.write_json(&json)?;
    let markdown = dir.join("report.md");
    report.write_markdown(&markdown)?;
    let mut written = vec![json, markdown];
    let mut stems: Vec<String> = Vec::new();
    for set in sets {
        let base = file_stem(&set.report.name);
        let mut stem = base.clone();
        let mut n = 1;
        while stems.contains(&stem) {
            n += 1;
            stem = format!("{base}-{n}");
        }
        stems.push(stem.clone());
        let pairs = set.roc.genuine + set.roc.impostors;
        let plot = RocPlot::new(format!("{} ({pairs} pairs)", set.report.name));
        let series = [RocSeries {
            label: &set.report.name,
            roc: &set.roc,
        }];
        let png = dir.join(format!("roc-{stem}.png"));
        plot.write_png(&png, &series)?;
        let svg = dir.join(format!("roc-{stem}.svg"));
        plot.write_svg(&svg, &series)?;
        written.extend([png, svg]);
    }
    Ok(written)
}

fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "set".to_string()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kfold::VerificationConfig;
    use crate::report::machine_line;

    /// 20 pairs of 2-d embeddings, genuine and impostor alternating: genuine pairs point the
    /// same way (squared distance 0), impostors are orthogonal (2), except genuine pair 0,
    /// whose images point in opposite directions (4).
    ///
    /// Fold 0 (pairs 0 and 1) trains on folds 1..9, which every threshold in (0, 2] separates;
    /// the first, 0.01, rejects pair 0: accuracy 1/2. Every other fold trains with pair 0 in
    /// the training folds, which no threshold below 4 accepts; the first best is again 0.01,
    /// and the fold is right: accuracy 1. Mean 0.95, population std
    /// sqrt((0.45² + 9 × 0.05²) / 10) = 0.15, threshold 0.01. VAL at FAR 1e-3: the threshold is
    /// interpolated at about 2 (no impostor below 2), which accepts every genuine pair but
    /// pair 0: VAL 0 in fold 0 and 1 elsewhere, mean 0.9.
    fn known_set() -> (Vec<f32>, Vec<bool>) {
        let mut values = Vec::new();
        let mut issame = Vec::new();
        for i in 0..20 {
            let pair: [f32; 4] = match i {
                0 => [2.0, 0.0, -1.0, 0.0],
                i if i % 2 == 0 => [0.0, 2.0, 0.0, 1.0],
                _ => [1.0, 0.0, 0.0, 2.0],
            };
            values.extend(pair);
            issame.push(i % 2 == 0);
        }
        (values, issame)
    }

    #[test]
    fn known_set_gives_the_worked_out_figures() {
        let (values, issame) = known_set();
        let embeddings = Embeddings::new(values, 2).unwrap();
        let verification = VerificationConfig::default().init();
        let result =
            evaluate_pair_set("tiny set", &verification, &embeddings, None, &issame).unwrap();
        let figures = result.report.verification.as_ref().unwrap();
        assert!((figures.accuracy - 0.95).abs() < 1e-12);
        assert!((figures.accuracy_std - 0.15).abs() < 1e-12);
        assert!((figures.val - 0.9).abs() < 1e-12);
        // Norms: pair 0 has 2 and 1, genuine pairs 2 and 1, impostors 1 and 2: mean 1.5.
        assert_eq!(
            machine_line("tiny set", figures),
            "set=tiny_set accuracy=0.9500 std=0.1500 val@far1e-3=0.9000 threshold=0.010 \
             pairs=20 xnorm=1.500"
        );
        // Cosines: 1 for 9 genuine pairs, -1 for pair 0, 0 for the impostors.
        assert_eq!((result.roc.genuine, result.roc.impostors), (10, 10));
        let tar = result.report.tar_far.as_ref().unwrap();
        assert_eq!(tar.at(1e-1).unwrap().tar_at_or_below, 0.9);
        assert!((tar.auc - 0.9).abs() < 1e-12, "{}", tar.auc);

        // Flip-summed: originals and flips that only add up to the same directions.
        let (values, _) = known_set();
        let shift = |sign: f32| -> Embeddings {
            let v = values
                .chunks_exact(2)
                .map(|r| [r[0] / 2.0 + sign * 5.0, r[1] / 2.0 - sign * 7.0])
                .flat_map(|r| r.into_iter())
                .collect();
            Embeddings::new(v, 2).unwrap()
        };
        let (original, mirrored) = (shift(1.0), shift(-1.0));
        let summed =
            evaluate_pair_set("tiny", &verification, &original, Some(&mirrored), &issame).unwrap();
        let v = summed.report.verification.unwrap();
        assert!((v.accuracy - 0.95).abs() < 1e-12);
        assert_eq!(summed.roc, result.roc);
        let alone = evaluate_pair_set("tiny", &verification, &original, None, &issame).unwrap();
        assert_ne!(alone.roc, result.roc);
    }

    #[test]
    fn report_folder_holds_json_markdown_and_plots() {
        let dir = std::env::temp_dir().join(format!("lvface-eval-pair-set-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let (values, issame) = known_set();
        let embeddings = Embeddings::new(values, 2).unwrap();
        let verification = VerificationConfig::default().init();
        let set = evaluate_pair_set("lfw", &verification, &embeddings, None, &issame).unwrap();
        let odd = evaluate_pair_set("a b/c", &verification, &embeddings, None, &issame).unwrap();
        let sets = [set.clone(), odd, set];
        let written = write_report_dir(&dir.join("out"), "emb.npy", &sets).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "report.json",
                "report.md",
                "roc-lfw.png",
                "roc-lfw.svg",
                "roc-a_b_c.png",
                "roc-a_b_c.svg",
                "roc-lfw-2.png",
                "roc-lfw-2.svg"
            ]
        );
        let back = EvalReport::read_json(&written[0]).unwrap();
        assert_eq!(back, pair_set_report("emb.npy", &sets));
        assert_eq!(back.source, "emb.npy");
        let md = std::fs::read_to_string(&written[1]).unwrap();
        assert!(md.contains("| lfw | 20 | 95.00 ± 15.00 |"), "{md}");
        let png = std::fs::read(&written[2]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&written[3]).unwrap();
        assert!(
            svg.contains("lfw (AUC 0.9000)"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
