//! The training set that `data.rec` names: an insightface RecordIO folder (`train.rec`,
//! `train.idx`, `property`), a `.rec` file, or an image folder with one sub-folder per identity.
//! Both open as an `Arc<dyn FaceSource>` for the loader, with the number of classes the set
//! declares; the class count never comes from the configuration.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lvface_data::{FaceSource, ImageFolder, Loader, RecordDataset};

/// What kind of training set a `data.rec` path holds, decided from the file system alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// A folder holding `train.rec`, or a `.rec` file.
    RecordIo,
    /// A folder of identity folders.
    ImageFolder,
}

fn source_kind(path: &str) -> Result<SourceKind> {
    let p = Path::new(path);
    if !p.exists() {
        bail!("data.rec: {path} does not exist");
    }
    if p.is_file() {
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("rec")) {
            return Ok(SourceKind::RecordIo);
        }
        bail!(
            "data.rec: {path} is a file; give a RecordIO folder (holding train.rec), a .rec file \
             or an image folder (one sub-folder per identity)"
        );
    }
    if p.join("train.rec").is_file() {
        return Ok(SourceKind::RecordIo);
    }
    let listing = std::fs::read_dir(p).with_context(|| format!("data.rec: listing {path}"))?;
    for entry in listing {
        let entry = entry.with_context(|| format!("data.rec: listing {path}"))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_dir() {
            return Ok(SourceKind::ImageFolder);
        }
    }
    bail!(
        "data.rec: {path} is neither a RecordIO folder (it holds no train.rec) nor an image \
         folder (it holds no identity sub-folder)"
    )
}

/// Opens the training set at `path` (the value of `data.rec`) and returns it with its number of
/// classes.
///
/// `path` is a folder holding `train.rec` (with `train.idx` and `property` when present; see
/// [`RecordDataset::open`]), a `.rec` file, or an image folder with one sub-folder per identity
/// (labels in byte-wise sorted folder order; see [`ImageFolder::open`]). Opening reads the
/// RecordIO index or lists the folders; no image is decoded.
///
/// Errors name `data.rec` and the path: a path that does not exist, a folder that is neither
/// kind, a set that does not open (a corrupt index, an identity folder without images), and a
/// RecordIO set that does not say how many classes it has (no identity records and no
/// `property` file).
pub fn open_training_source(path: &str) -> Result<(Arc<dyn FaceSource>, usize)> {
    let source: Arc<dyn FaceSource> = match source_kind(path)? {
        SourceKind::RecordIo => Arc::new(
            RecordDataset::open(Path::new(path))
                .with_context(|| format!("data.rec: opening the RecordIO set {path}"))?,
        ),
        SourceKind::ImageFolder => Arc::new(
            ImageFolder::open(Path::new(path))
                .with_context(|| format!("data.rec: opening the image folder {path}"))?,
        ),
    };
    let classes = source.num_classes().with_context(|| {
        format!(
            "data.rec: {path} does not say how many classes it has (no identity records and no \
             `property` file); write a `property` file (`classes,height,width`) next to train.rec"
        )
    })?;
    check_class_count(classes, path)?;
    Ok((source, classes))
}

/// Names on stderr, one line each, the images `loader` replaced since the last call under
/// `data.on_corrupt = "skip"`, so that a bad file is found from the log of the rank that met it.
// A warning, like the other warnings of the binary, goes to stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn log_skips(loader: &Loader, rank: usize) {
    for skip in loader.take_skips() {
        // A decoder's message may hold line breaks; the warning stays one line.
        let reason = skip.reason.trim().replace(['\n', '\r'], " ");
        eprintln!(
            "warning: rank {rank}, epoch {}: skipped {} (data.on_corrupt = \"skip\"); image {} \
             of the training set takes its place",
            skip.epoch, reason, skip.replacement
        );
    }
}

/// Refuses a class count the classifier cannot hold, before anything is allocated for it (the
/// centres, their moments and the prototype bank take `classes · num_features` floats each).
pub(crate) fn check_class_count(classes: usize, path: &str) -> Result<()> {
    if classes == 0 {
        bail!("data.rec: {path} declares 0 classes");
    }
    if classes > lvface_pfc::MAX_CLASSES {
        bail!(
            "data.rec: {path} declares {classes} classes, more than the {} the classifier holds \
             (labels travel as f32); check its `property` file or identity records",
            lvface_pfc::MAX_CLASSES
        );
    }
    Ok(())
}

/// Checks, before a run folder is created, that `path` (the value of `data.rec`) opens as a
/// training set with a class count: the same checks and messages as [`open_training_source`],
/// which reads only the RecordIO index or the folder listing, no image.
pub fn check_training_source(path: &str) -> Result<()> {
    open_training_source(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use lvface_data::record_io::RecordWriter;
    use lvface_data::{ImageCodec, IrHeader, SyntheticConfig, SyntheticFaces};

    use super::*;

    /// A fresh folder under the workspace's `target/tmp`.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tmp")
            .join(format!("lvface-train-source-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn faces() -> SyntheticFaces {
        SyntheticFaces::new(SyntheticConfig {
            identities: 3,
            images_per_identity: 2,
            pairs: 0,
            size: 32,
            codec: ImageCodec::Png,
            ..Default::default()
        })
        .unwrap()
    }

    fn s(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    fn error(path: &str) -> String {
        let message = format!("{:#}", open_training_source(path).err().unwrap());
        let checked = format!("{:#}", check_training_source(path).err().unwrap());
        assert_eq!(message, checked);
        assert!(message.contains("data.rec"), "{message}");
        assert!(message.contains(path), "{message}");
        message
    }

    #[test]
    fn record_io_folder_file_and_image_folder_give_the_same_set() {
        let dir = scratch("both");
        let rec = dir.join("rec");
        faces().write_rec(&rec).unwrap();
        let folders = dir.join("folders");
        faces().write_folders(&folders).unwrap();

        for path in [rec.clone(), rec.join("train.rec"), folders.clone()] {
            check_training_source(s(&path)).unwrap();
            let (source, classes) = open_training_source(s(&path)).unwrap();
            assert_eq!((source.len(), classes), (6, 3), "{}", path.display());
            let labels: Vec<usize> = (0..6).map(|i| source.encoded(i).unwrap().label).collect();
            assert_eq!(labels, [0, 0, 1, 1, 2, 2], "{}", path.display());
        }
        // The same image bytes, whichever way the set is stored.
        let (from_rec, _) = open_training_source(s(&rec)).unwrap();
        let (from_folders, _) = open_training_source(s(&folders)).unwrap();
        for i in 0..6 {
            assert_eq!(
                from_rec.encoded(i).unwrap().bytes,
                from_folders.encoded(i).unwrap().bytes
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_paths_name_the_key_and_the_path() {
        let dir = scratch("bad");
        let missing = dir.join("missing");
        assert!(error(s(&missing)).contains("does not exist"));

        let empty = dir.join("empty");
        std::fs::create_dir_all(empty.join(".hidden")).unwrap();
        std::fs::write(empty.join("notes.txt"), "x").unwrap();
        let message = error(s(&empty));
        assert!(message.contains("neither a RecordIO folder"), "{message}");

        let file = empty.join("notes.txt");
        assert!(error(s(&file)).contains("is a file"));

        // An identity folder without images is refused by ImageFolder, named here too.
        let folders = dir.join("folders");
        faces().write_folders(&folders).unwrap();
        std::fs::create_dir_all(folders.join("zz-empty")).unwrap();
        let message = error(s(&folders));
        assert!(message.contains("zz-empty"), "{message}");

        // A plain im2rec set (no header record) without `property`: no class count.
        let plain = dir.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let rec = plain.join("train.rec");
        let mut writer = RecordWriter::new(std::fs::File::create(&rec).unwrap(), &rec);
        let mut idx = String::new();
        for key in 0..2u64 {
            let offset = writer
                .write_record(&IrHeader::scalar(key as f32, key).pack(b"img"))
                .unwrap();
            idx.push_str(&format!("{key}\t{offset}\n"));
        }
        writer.finish().unwrap();
        std::fs::write(plain.join("train.idx"), idx).unwrap();
        let message = error(s(&plain));
        assert!(message.contains("how many classes"), "{message}");
        // With a `property` file the same set opens.
        std::fs::write(plain.join("property"), "2,112,112\n").unwrap();
        let (source, classes) = open_training_source(s(&plain)).unwrap();
        assert_eq!((source.len(), classes), (2, 2));
        // A `property` file claiming more classes than the classifier holds is refused when the
        // set opens, before centres or prototypes are allocated for it.
        std::fs::write(plain.join("property"), "4000000000,112,112\n").unwrap();
        let message = error(s(&plain));
        assert!(
            message.contains("4000000000 classes") && message.contains("property"),
            "{message}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
