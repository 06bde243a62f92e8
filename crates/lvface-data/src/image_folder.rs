//! [`ImageFolder`]: a training set stored as one folder per identity.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::face_source::{EncodedFace, FaceSource};

/// A training set stored as `root/<identity>/<image>.{jpg,jpeg,png}`.
///
/// Labels are the positions of the identity folders in byte-wise sorted order, so the same tree
/// gives the same labels on every machine; [`ImageFolder::write_label_map`] records them next to
/// a run. Files with other extensions and files directly under `root` are ignored; hidden
/// entries (starting with `.`) too.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    items: Vec<(PathBuf, usize)>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(DataError::BadFolder {
                path,
                reason: "the name is not valid UTF-8".into(),
            });
        };
        if name.starts_with('.') {
            continue;
        }
        entries.push((name, path.clone(), path.is_dir()));
    }
    entries.sort();
    Ok(entries)
}

/// Whether `path` has an extension this crate decodes.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

impl ImageFolder {
    /// Lists `root`: every sub-folder is an identity, every JPEG or PNG in it an image.
    ///
    /// Fails when there is no identity folder or an identity folder holds no image (an empty
    /// class would silently shift nothing but waste a logit; it is almost always a mistake).
    pub fn open(root: &Path) -> Result<Self> {
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for (name, path, is_dir) in sorted_entries(root)? {
            if !is_dir {
                continue;
            }
            let label = classes.len();
            let before = items.len();
            for (_, file, is_dir) in sorted_entries(&path)? {
                if !is_dir && is_image_file(&file) {
                    items.push((file, label));
                }
            }
            if items.len() == before {
                return Err(DataError::BadFolder {
                    path,
                    reason: "identity folder holds no .jpg, .jpeg or .png image".into(),
                });
            }
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(DataError::BadFolder {
                path: root.to_path_buf(),
                reason: "no identity folders".into(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            items,
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Identity folder names; index = label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// `(file, label)` of every image, grouped by identity in label order.
    pub fn items(&self) -> &[(PathBuf, usize)] {
        &self.items
    }

    /// Writes `label<TAB>folder` lines to `path`.
    pub fn write_label_map(&self, path: &Path) -> Result<()> {
        let text: String = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{i}\t{name}\n"))
            .collect();
        std::fs::write(path, text).map_err(|e| DataError::io(path, e))
    }

    /// Reads a label map written by [`ImageFolder::write_label_map`]: folder names by label.
    pub fn read_label_map(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut names = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match line.split_once('\t') {
                Some((label, name)) if label.parse() == Ok(i) => names.push(name.to_string()),
                _ => {
                    return Err(DataError::BadFolder {
                        path: path.to_path_buf(),
                        reason: format!("line {} should be `{i}<TAB>name`, got {line:?}", i + 1),
                    })
                }
            }
        }
        Ok(names)
    }
}

impl FaceSource for ImageFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn num_classes(&self) -> Option<usize> {
        Some(self.classes.len())
    }

    fn encoded(&self, index: usize) -> Result<EncodedFace> {
        let (path, label) = &self.items[index];
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Ok(EncodedFace {
            bytes,
            label: *label,
            origin: path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_sorted_folder_names() {
        let root = std::env::temp_dir().join(format!("lvface-data-if-{}", std::process::id()));
        for (dir, file) in [
            ("b", "2.png"),
            ("b", "1.JPG"),
            ("a", "x.jpeg"),
            ("b", "notes.txt"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join(file), dir).unwrap();
        }
        std::fs::write(root.join("stray.jpg"), "x").unwrap();
        let folder = ImageFolder::open(&root).unwrap();
        assert_eq!(folder.classes(), ["a", "b"]);
        let names: Vec<(String, usize)> = folder
            .items()
            .iter()
            .map(|(p, l)| (p.file_name().unwrap().to_str().unwrap().to_string(), *l))
            .collect();
        let expected = [("x.jpeg", 0), ("1.JPG", 1), ("2.png", 1)];
        assert_eq!(names, expected.map(|(n, l)| (n.to_string(), l)));
        assert_eq!(folder.encoded(2).unwrap().bytes, b"b");

        let map = root.join("labels.tsv");
        folder.write_label_map(&map).unwrap();
        assert_eq!(std::fs::read_to_string(&map).unwrap(), "0\ta\n1\tb\n");
        assert_eq!(ImageFolder::read_label_map(&map).unwrap(), ["a", "b"]);

        std::fs::create_dir_all(root.join("c")).unwrap();
        let err = ImageFolder::open(&root).unwrap_err().to_string();
        assert!(err.contains("no .jpg"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
