//! [`BinPairs`]: an insightface verification set (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, ...).

use std::path::Path;

use crate::error::{DataError, Result};
use crate::pickle::{read_pickle, write_pickle, PickleValue};

/// A verification set: `2 * N` encoded images forming `N` pairs (images `2i` and `2i + 1`) and
/// one same-identity flag per pair, stored as the pickle `(bins, issame_list)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BinPairs {
    /// Encoded images (JPEG or PNG), two per pair, consecutive.
    pub images: Vec<Vec<u8>>,
    /// Whether pair `i` shows one identity.
    pub issame: Vec<bool>,
}

impl BinPairs {
    /// Reads a `.bin` file written by Python 2 (protocol 2) or Python 3 (protocols 2 to 5).
    pub fn read(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_bytes(&data, path)
    }

    /// Parses the bytes of a `.bin` file; `path` names it in errors.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| DataError::BadBin {
            path: path.to_path_buf(),
            reason,
        };
        let (bins, issame) = match read_pickle(data, path)? {
            PickleValue::Tuple(items) | PickleValue::List(items) if items.len() == 2 => {
                let mut items = items.into_iter();
                (
                    items.next().expect("two items"),
                    items.next().expect("two items"),
                )
            }
            other => {
                return Err(bad(format!(
                    "expected a pair (bins, issame_list), got {}",
                    kind(&other)
                )))
            }
        };
        let (PickleValue::List(bins) | PickleValue::Tuple(bins)) = bins else {
            return Err(bad(format!("bins should be a list, got {}", kind(&bins))));
        };
        let (PickleValue::List(issame) | PickleValue::Tuple(issame)) = issame else {
            return Err(bad(format!(
                "issame_list should be a list, got {}",
                kind(&issame)
            )));
        };
        let images = bins
            .into_iter()
            .enumerate()
            .map(|(i, b)| match b {
                PickleValue::Bytes(bytes) => Ok(bytes),
                other => Err(bad(format!(
                    "image {i} should be bytes, got {}",
                    kind(&other)
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let issame = issame
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                PickleValue::Bool(b) => Ok(b),
                PickleValue::Int(n @ (0 | 1)) => Ok(n == 1),
                other => Err(bad(format!(
                    "issame {i} should be a bool, got {}",
                    kind(&other)
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        if images.len() != 2 * issame.len() {
            return Err(bad(format!(
                "{} images for {} pairs; expected two images per pair",
                images.len(),
                issame.len()
            )));
        }
        Ok(Self { images, issame })
    }

    /// The pickle of `(bins, issame_list)`, protocol 4.
    pub fn to_bytes(&self) -> Vec<u8> {
        let bins = self
            .images
            .iter()
            .map(|b| PickleValue::Bytes(b.clone()))
            .collect();
        let issame = self.issame.iter().map(|&b| PickleValue::Bool(b)).collect();
        write_pickle(&PickleValue::Tuple(vec![
            PickleValue::List(bins),
            PickleValue::List(issame),
        ]))
    }

    /// Writes the set to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|e| DataError::io(path, e))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.issame.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.issame.is_empty()
    }

    /// Number of same-identity pairs.
    pub fn same_count(&self) -> usize {
        self.issame.iter().filter(|&&b| b).count()
    }
}

fn kind(value: &PickleValue) -> &'static str {
    match value {
        PickleValue::None => "None",
        PickleValue::Bool(_) => "a bool",
        PickleValue::Int(_) => "an int",
        PickleValue::Float(_) => "a float",
        PickleValue::Bytes(_) => "bytes",
        PickleValue::Str(_) => "a str",
        PickleValue::List(_) => "a list",
        PickleValue::Tuple(_) => "a tuple",
        PickleValue::Dict(_) => "a dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python2_and_python3_files() {
        let expected = BinPairs {
            images: vec![b"ab".to_vec(), b"cd".to_vec()],
            issame: vec![true],
        };
        // Python 2 cPickle protocol 2, and Python 3 protocol 4.
        let py2 = b"\x80\x02]q\x01(U\x02abq\x02U\x02cdq\x03e]q\x04\x88a\x86q\x05.";
        let py3 = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x02cd\x94e]\x94\x88a\x86\x94.";
        for bytes in [py2.as_slice(), py3] {
            let set = BinPairs::from_bytes(bytes, Path::new("lfw.bin")).unwrap();
            assert_eq!(set, expected);
            assert_eq!((set.len(), set.same_count()), (1, 1));
        }
    }

    #[test]
    fn wrong_shapes_are_named() {
        let path = Path::new("x.bin");
        // pickle.dumps(([b"ab"], [True]), protocol=4): one image for one pair.
        let odd =
            b"\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00]\x94C\x02ab\x94a]\x94\x88a\x86\x94.";
        let err = BinPairs::from_bytes(odd, path).unwrap_err().to_string();
        assert!(
            err.contains("x.bin") && err.contains("1 images for 1 pairs"),
            "{err}"
        );
        let err = BinPairs::from_bytes(b"\x80\x04K\x01.", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("got an int"), "{err}");
    }

    #[test]
    fn write_then_read_is_identity() {
        let set = BinPairs {
            images: (0..6u8).map(|i| vec![i; 1 + 100 * i as usize]).collect(),
            issame: vec![true, false, true],
        };
        assert_eq!(
            BinPairs::from_bytes(&set.to_bytes(), Path::new("s.bin")).unwrap(),
            set
        );
    }
}
