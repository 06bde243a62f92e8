//! IJB-B/C-style template evaluation, as insightface's `eval_ijbc.py`.
//!
//! Layout under a root folder, for a target `IJBC` (or `IJBB`):
//! - `IJBC/meta/ijbc_face_tid_mid.txt`: one line per face, `image template_id media_id`;
//! - `IJBC/meta/ijbc_name_5pts_score.txt`: the same faces in the same order, `image x1 y1 … x5 y5
//!   faceness`;
//! - `IJBC/meta/ijbc_template_pair_label.txt`: `template_1 template_2 label` (1 = same person);
//! - `IJBC/loose_crop/<image>`: the images, aligned with [`align_face`](crate::align_face).
//!
//! Per image, the feature is `emb(orig) + emb(flip)` (F1; F0 uses the original only), L2
//! normalised unless `use_norm_score` (N1 keeps the raw norm), then multiplied by the faceness
//! score if `use_detector_score` (D1). A template is the **sum over its media** of the **mean
//! over each media's images**, L2-normalised; a pair's score is the dot product of its two
//! templates. TAR@FAR then follows [`tar_at_far`](crate::tar_at_far). insightface's default mode
//! is N1D1F1.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::align::{align_face, ALIGNED_SIZE};
use crate::embeddings::Embeddings;
use crate::error::{EvalError, Result};
use crate::roc::RocCurve;
use crate::tar_far::{TarFarReport, IJB_FARS};
use crate::verify::{embed_with_flip, ImageBatch};

/// The three switches of insightface's IJB evaluation; the defaults are its N1D1F1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IjbConfig {
    /// F1: add the embedding of the mirrored image.
    pub use_flip_test: bool,
    /// N1: keep each image feature's norm (no per-image L2 normalisation).
    pub use_norm_score: bool,
    /// D1: multiply each image feature by its faceness score.
    pub use_detector_score: bool,
}

impl Default for IjbConfig {
    fn default() -> Self {
        Self {
            use_flip_test: true,
            use_norm_score: true,
            use_detector_score: true,
        }
    }
}

impl IjbConfig {
    /// insightface's name of the mode, e.g. `N1D1F1`.
    pub fn mode(&self) -> String {
        format!(
            "N{}D{}F{}",
            u8::from(self.use_norm_score),
            u8::from(self.use_detector_score),
            u8::from(self.use_flip_test)
        )
    }
}

/// One face of the meta files.
#[derive(Debug, Clone, PartialEq)]
pub struct IjbFace {
    /// Image file name, relative to `loose_crop/`.
    pub image: String,
    /// Template id.
    pub template: u64,
    /// Media (photo or video) id.
    pub media: u64,
    /// Five landmarks in image pixels, template order.
    pub landmarks: [[f32; 2]; 5],
    /// Detector faceness score.
    pub faceness: f32,
}

/// A template pair to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplatePair {
    /// First template id.
    pub first: u64,
    /// Second template id.
    pub second: u64,
    /// Whether both show the same person.
    pub genuine: bool,
}

/// The meta files of one IJB target.
#[derive(Debug, Clone, PartialEq)]
pub struct IjbMeta {
    /// Folder of the images.
    pub image_dir: PathBuf,
    /// The faces, in meta-file order.
    pub faces: Vec<IjbFace>,
    /// The template pairs.
    pub pairs: Vec<TemplatePair>,
}

fn read_lines(path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Read {
        path: path.to_path_buf(),
        line: None,
        reason: e.to_string(),
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split_whitespace().map(str::to_string).collect()))
        .collect())
}

fn field<T: std::str::FromStr>(path: &Path, line: usize, fields: &[String], i: usize) -> Result<T> {
    let bad = |reason: String| EvalError::Read {
        path: path.to_path_buf(),
        line: Some(line),
        reason,
    };
    let text = fields
        .get(i)
        .ok_or_else(|| bad(format!("missing field {}", i + 1)))?;
    text.parse()
        .map_err(|_| bad(format!("field {} is not a number: {text:?}", i + 1)))
}

impl IjbMeta {
    /// Reads the meta files of `target` (`IJBC`, `IJBB`) under `root`.
    pub fn read(root: &Path, target: &str) -> Result<Self> {
        let meta = root.join(target).join("meta");
        let lower = target.to_lowercase();
        let tid_path = meta.join(format!("{lower}_face_tid_mid.txt"));
        let pts_path = meta.join(format!("{lower}_name_5pts_score.txt"));
        let pair_path = meta.join(format!("{lower}_template_pair_label.txt"));
        let tid = read_lines(&tid_path)?;
        let pts = read_lines(&pts_path)?;
        if tid.len() != pts.len() {
            return Err(EvalError::shape(
                format!(
                    "faces in {} (one per line of {})",
                    pts_path.display(),
                    tid_path.display()
                ),
                tid.len(),
                pts.len(),
            ));
        }
        let mut faces = Vec::with_capacity(tid.len());
        for ((line, t), (pline, p)) in tid.iter().zip(&pts) {
            if p.len() != 12 {
                return Err(EvalError::Read {
                    path: pts_path.clone(),
                    line: Some(*pline),
                    reason: format!(
                        "expected name, 10 coordinates and a score, got {} fields",
                        p.len()
                    ),
                });
            }
            if p[0] != t[0] {
                return Err(EvalError::Read {
                    path: pts_path.clone(),
                    line: Some(*pline),
                    reason: format!("image {} where {} has {}", p[0], tid_path.display(), t[0]),
                });
            }
            let mut landmarks = [[0f32; 2]; 5];
            for (k, point) in landmarks.iter_mut().enumerate() {
                point[0] = field(&pts_path, *pline, p, 1 + 2 * k)?;
                point[1] = field(&pts_path, *pline, p, 2 + 2 * k)?;
            }
            faces.push(IjbFace {
                image: t[0].clone(),
                template: field(&tid_path, *line, t, 1)?,
                media: field(&tid_path, *line, t, 2)?,
                landmarks,
                faceness: field(&pts_path, *pline, p, 11)?,
            });
        }
        let pairs = read_lines(&pair_path)?
            .iter()
            .map(|(line, f)| {
                Ok(TemplatePair {
                    first: field(&pair_path, *line, f, 0)?,
                    second: field(&pair_path, *line, f, 1)?,
                    genuine: field::<u8>(&pair_path, *line, f, 2)? == 1,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            image_dir: root.join(target).join("loose_crop"),
            faces,
            pairs,
        })
    }

    /// The template features (sorted by template id) from per-face embeddings in meta order.
    pub fn templates(
        &self,
        original: &Embeddings,
        flipped: Option<&Embeddings>,
        config: &IjbConfig,
    ) -> Result<Templates> {
        let faceness: Vec<f32> = self.faces.iter().map(|f| f.faceness).collect();
        let templates: Vec<u64> = self.faces.iter().map(|f| f.template).collect();
        let medias: Vec<u64> = self.faces.iter().map(|f| f.media).collect();
        template_features(original, flipped, &faceness, &templates, &medias, config)
    }

    /// Scores every pair with `templates` and returns the scores and labels.
    pub fn pair_scores(&self, templates: &Templates) -> Result<(Vec<f64>, Vec<bool>)> {
        let mut scores = Vec::with_capacity(self.pairs.len());
        for p in &self.pairs {
            scores.push(templates.score(p.first, p.second)?);
        }
        Ok((scores, self.pairs.iter().map(|p| p.genuine).collect()))
    }
}

/// The outcome of [`evaluate_ijb`].
#[derive(Debug, Clone)]
pub struct IjbResult {
    /// TAR at [`IJB_FARS`].
    pub report: TarFarReport,
    /// The ROC, for plots.
    pub roc: RocCurve,
    /// The score of every pair, in pair-file order.
    pub scores: Vec<f64>,
}

/// Reads an image file by its content (not its extension), aligns it and writes it as CHW f32
/// normalised `(x / 255 - 0.5) / 0.5`, RGB, into `out`.
fn load_aligned(path: &Path, landmarks: &[[f32; 2]; 5], out: &mut Vec<f32>) -> Result<()> {
    let read_err = |reason: String| EvalError::Read {
        path: path.to_path_buf(),
        line: None,
        reason,
    };
    let image = image::ImageReader::open(path)
        .map_err(|e| read_err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| read_err(e.to_string()))?
        .decode()
        .map_err(|e| read_err(e.to_string()))?
        .to_rgb8();
    let aligned = align_face(&image, landmarks);
    for c in 0..3 {
        out.extend(
            aligned
                .pixels()
                .map(|p| (f32::from(p.0[c]) / 255.0 - 0.5) / 0.5),
        );
    }
    Ok(())
}

/// The whole IJB protocol on `root/target`: align every face, embed it (as is and mirrored)
/// with `model` in batches of `batch_size`, pool templates, score the pairs, and report TAR at
/// [`IJB_FARS`]. Images are loaded one batch at a time.
pub fn evaluate_ijb<F, E>(
    root: &Path,
    target: &str,
    config: &IjbConfig,
    batch_size: usize,
    mut model: F,
) -> Result<IjbResult>
where
    F: FnMut(&ImageBatch<'_>) -> std::result::Result<Vec<f32>, E>,
    E: std::fmt::Display,
{
    let meta = IjbMeta::read(root, target)?;
    let side = ALIGNED_SIZE as usize;
    let (mut original, mut flipped, mut dim) = (Vec::new(), Vec::new(), 1);
    for chunk in meta.faces.chunks(batch_size.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
        for face in chunk {
            load_aligned(
                &meta.image_dir.join(&face.image),
                &face.landmarks,
                &mut pixels,
            )?;
        }
        let e = embed_with_flip(&pixels, [3, side, side], batch_size.max(1), &mut model)?;
        dim = e.original.dim();
        original.extend_from_slice(e.original.as_slice());
        flipped.extend_from_slice(e.flipped.as_slice());
    }
    let original = Embeddings::new(original, dim)?;
    let flipped = Embeddings::new(flipped, dim)?;
    let templates = meta.templates(&original, Some(&flipped), config)?;
    let (scores, labels) = meta.pair_scores(&templates)?;
    let roc = RocCurve::new(&scores, &labels)?;
    Ok(IjbResult {
        report: roc.tar_at_far(&IJB_FARS),
        roc,
        scores,
    })
}

/// L2-normalised template features, one row per template id.
#[derive(Debug, Clone, PartialEq)]
pub struct Templates {
    /// Template ids, ascending (as `np.unique`).
    pub ids: Vec<u64>,
    /// Row-major `[ids.len(), dim]` unit vectors (a zero template stays zero).
    pub features: Vec<f64>,
    /// Feature length.
    pub dim: usize,
    index: HashMap<u64, usize>,
}

impl Templates {
    /// The feature of template `id`.
    pub fn feature(&self, id: u64) -> Option<&[f64]> {
        self.index
            .get(&id)
            .map(|&i| &self.features[i * self.dim..(i + 1) * self.dim])
    }

    /// The cosine score of two templates.
    pub fn score(&self, first: u64, second: u64) -> Result<f64> {
        let get = |id| {
            self.feature(id).ok_or_else(|| {
                EvalError::invalid("template pair", "must name templates that have faces", id)
            })
        };
        let (a, b) = (get(first)?, get(second)?);
        Ok(a.iter().zip(b).map(|(x, y)| x * y).sum())
    }
}

/// insightface's `image2template_feature` after its per-image step: see the module docs.
pub fn template_features(
    original: &Embeddings,
    flipped: Option<&Embeddings>,
    faceness: &[f32],
    templates: &[u64],
    medias: &[u64],
    config: &IjbConfig,
) -> Result<Templates> {
    let n = original.rows();
    for (what, len) in [
        ("faceness", faceness.len()),
        ("templates", templates.len()),
        ("medias", medias.len()),
    ] {
        if len != n {
            return Err(EvalError::shape(
                format!("{what} per face embedding"),
                n,
                len,
            ));
        }
    }
    let features = match (config.use_flip_test, flipped) {
        (true, Some(f)) => original.sum(f)?,
        (true, None) => {
            return Err(EvalError::invalid(
                "eval.ijb.use_flip_test",
                "needs flipped embeddings",
                true,
            ))
        }
        (false, _) => original.clone(),
    };
    let dim = features.dim();
    let mut per_image: Vec<f64> = if config.use_norm_score {
        features.as_slice().iter().map(|&v| f64::from(v)).collect()
    } else {
        features.normalized()
    };
    if config.use_detector_score {
        for (row, &s) in per_image.chunks_exact_mut(dim).zip(faceness) {
            row.iter_mut().for_each(|v| *v *= f64::from(s));
        }
    }
    // template -> media -> image rows
    let mut groups: BTreeMap<u64, BTreeMap<u64, Vec<usize>>> = BTreeMap::new();
    for i in 0..n {
        groups
            .entry(templates[i])
            .or_default()
            .entry(medias[i])
            .or_default()
            .push(i);
    }
    let mut ids = Vec::with_capacity(groups.len());
    let mut out = Vec::with_capacity(groups.len() * dim);
    for (id, media) in groups {
        let mut sum = vec![0.0; dim];
        for rows in media.values() {
            for &r in rows {
                for (s, v) in sum.iter_mut().zip(&per_image[r * dim..(r + 1) * dim]) {
                    *s += v / rows.len() as f64;
                }
            }
        }
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            sum.iter_mut().for_each(|v| *v /= norm);
        }
        ids.push(id);
        out.extend(sum);
    }
    let index = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    Ok(Templates {
        ids,
        features: out,
        dim,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_mean_then_template_sum_then_normalise() {
        // Template 1: media 10 has images (1,0) and (0,1) -> mean (.5,.5); media 11 has (0,2).
        // Sum (.5, 2.5), normalised. Template 2: one image (3, 0) -> (1, 0).
        let e = Embeddings::new(vec![1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.0], 2).unwrap();
        let config = IjbConfig {
            use_flip_test: false,
            use_norm_score: true,
            use_detector_score: false,
        };
        let t = template_features(
            &e,
            None,
            &[1.0; 4],
            &[1, 1, 1, 2],
            &[10, 10, 11, 20],
            &config,
        )
        .unwrap();
        assert_eq!(t.ids, vec![1, 2]);
        let n = (0.5f64 * 0.5 + 2.5 * 2.5).sqrt();
        let f1 = t.feature(1).unwrap();
        assert!((f1[0] - 0.5 / n).abs() < 1e-15 && (f1[1] - 2.5 / n).abs() < 1e-15);
        assert_eq!(t.feature(2).unwrap(), &[1.0, 0.0]);
        assert!((t.score(1, 2).unwrap() - 0.5 / n).abs() < 1e-15);
        assert!(t.score(1, 3).is_err());

        // N0: per-image normalisation first makes (0, 2) count like (0, 1): sum (.5, 1.5).
        // D1: faceness 3 on the third image (after normalising) gives (0, 3): sum (.5, 3.5).
        let config = IjbConfig {
            use_norm_score: false,
            use_detector_score: true,
            ..config
        };
        let t = template_features(
            &e,
            None,
            &[1.0, 1.0, 3.0, 1.0],
            &[1, 1, 1, 2],
            &[10, 10, 11, 20],
            &config,
        )
        .unwrap();
        let n = (0.5f64 * 0.5 + 3.5 * 3.5).sqrt();
        assert!((t.feature(1).unwrap()[1] - 3.5 / n).abs() < 1e-15);
        assert_eq!(config.mode(), "N0D1F0");
        assert_eq!(IjbConfig::default().mode(), "N1D1F1");
    }

    #[test]
    fn flip_sum_and_missing_flips() {
        let e = Embeddings::new(vec![1.0, 0.0], 2).unwrap();
        let f = Embeddings::new(vec![0.0, 1.0], 2).unwrap();
        let config = IjbConfig {
            use_detector_score: false,
            ..Default::default()
        };
        let t = template_features(&e, Some(&f), &[0.5], &[7], &[1], &config).unwrap();
        let h = 0.5f64.sqrt();
        assert!((t.feature(7).unwrap()[0] - h).abs() < 1e-15);
        assert!(template_features(&e, None, &[0.5], &[7], &[1], &config).is_err());
        assert!(template_features(&e, Some(&f), &[0.5, 1.0], &[7], &[1], &config).is_err());
    }
}
