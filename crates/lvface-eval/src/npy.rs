//! [`NpyArray`]: float arrays in NumPy's `.npy` format, for embeddings computed elsewhere
//! (`np.save("emb.npy", embeddings)`).
//!
//! Supported: format versions 1.0 (`u16` header length), 2.0 and 3.0 (`u32` header length; 3.0
//! only allows UTF-8 in the header, which is ASCII here), C order, little-endian `float32`
//! (`'<f4'`) and `float64` (`'<f8'`). Anything else (other dtypes, big-endian data, Fortran
//! order, object arrays, data shorter or longer than the shape) is an [`EvalError::Read`]
//! saying what was found. `float64` values are rounded to `f32`, the precision of
//! [`Embeddings`].

use std::path::Path;

use crate::embeddings::Embeddings;
use crate::error::{EvalError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element type of an `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// Little-endian `float32`, `'<f4'`.
    F4,
    /// Little-endian `float64`, `'<f8'`.
    F8,
}

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F4 => 4,
            Self::F8 => 8,
        }
    }
}

/// An `.npy` array: its shape, its stored element type and its values in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape; empty for a 0-d array.
    pub shape: Vec<usize>,
    /// The element type in the file.
    pub dtype: NpyDtype,
    /// The values, row-major, as `f32`.
    pub values: Vec<f32>,
}

impl NpyArray {
    /// Reads the `.npy` file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
        Self::parse(&bytes, path)
    }

    /// Parses the bytes of an `.npy` file; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| read_error(path, reason);
        if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not an .npy file (it does not start with \\x93NUMPY)".into()
            ));
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let start = match (major, minor) {
            (1, 0) => 10,
            (2, 0) | (3, 0) => 12,
            _ => {
                return Err(bad(format!(
                    ".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)"
                )))
            }
        };
        if bytes.len() < start {
            return Err(bad("the header length is cut off".into()));
        }
        let header_len = bytes[8..start]
            .iter()
            .rev()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let data_start = start
            .checked_add(header_len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "the header is {header_len} bytes long, but only {} bytes follow",
                    bytes.len() - start
                ))
            })?;
        let header = std::str::from_utf8(&bytes[start..data_start])
            .map_err(|_| bad("the header is not UTF-8 text".into()))?;
        let header = Header::parse(header).map_err(|e| bad(format!("header {header:?}: {e}")))?;
        if header.fortran_order {
            return Err(bad(
                "the array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
            ));
        }
        let dtype = match header.descr.as_str() {
            "<f4" => NpyDtype::F4,
            "<f8" => NpyDtype::F8,
            other => {
                return Err(bad(format!(
                    "dtype {other:?} is not supported; expected little-endian float32 ('<f4') \
                     or float64 ('<f8')"
                )))
            }
        };
        let count = header
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {:?} is too large", header.shape)))?;
        let data = &bytes[data_start..];
        let expected = count.checked_mul(dtype.size());
        if expected != Some(data.len()) {
            return Err(bad(format!(
                "shape {:?} of {} needs {} data bytes, the file has {}",
                header.shape,
                header.descr,
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                data.len()
            )));
        }
        let values = match dtype {
            NpyDtype::F4 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
            NpyDtype::F8 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        };
        Ok(Self {
            shape: header.shape,
            dtype,
            values,
        })
    }

    /// The array as embeddings, one row per image: it must be 2-d, `[rows, dim]` with
    /// `dim > 0`, and every value finite.
    pub fn into_embeddings(self) -> Result<Embeddings> {
        match self.shape[..] {
            [_, dim] if dim > 0 => Embeddings::new(self.values, dim),
            _ => Err(EvalError::InvalidConfig {
                field: "embeddings array".into(),
                rule: "must be 2-d, [images, dim] with dim > 0".into(),
                value: format!("shape {:?}", self.shape),
            }),
        }
    }

    /// The embeddings of a `.bin` set of `pairs` pairs, in the set's image order (pair `i` is
    /// rows `2i` and `2i + 1`).
    ///
    /// Without `flipped` the array is `[2 x pairs, dim]`, used as given (flip-summed already or
    /// not); the second value is `None`. With `flipped` it is `[2 x 2 x pairs, dim]`: the
    /// `2 x pairs` originals, then the `2 x pairs` mirrored images in the same order, returned
    /// apart so that the protocol sums them and takes XNorm over both.
    pub fn into_pair_embeddings(
        self,
        pairs: usize,
        flipped: bool,
    ) -> Result<(Embeddings, Option<Embeddings>)> {
        let shape = self.shape.clone();
        let all = self.into_embeddings()?;
        let images = 2 * pairs;
        let expected = if flipped { 2 * images } else { images };
        if all.rows() != expected {
            let layout = if flipped {
                "[2 x 2 x pairs, dim]: originals then flipped"
            } else {
                "[2 x pairs, dim]"
            };
            return Err(EvalError::shape(
                format!("rows of the embeddings array {shape:?} for {pairs} pairs, {layout}"),
                expected,
                all.rows(),
            ));
        }
        if !flipped {
            return Ok((all, None));
        }
        let dim = all.dim();
        let (original, mirrored) = all.as_slice().split_at(images * dim);
        Ok((
            Embeddings::new(original.to_vec(), dim)?,
            Some(Embeddings::new(mirrored.to_vec(), dim)?),
        ))
    }
}

fn read_error(path: &Path, reason: impl ToString) -> EvalError {
    EvalError::Read {
        path: path.to_path_buf(),
        line: None,
        reason: reason.to_string(),
    }
}

/// The header dictionary: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }`.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the header's Python literal.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl Header {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut p = Parser {
            text: text.trim_end_matches(['\n', ' ', '\0']).as_bytes(),
            at: 0,
        };
        p.expect(b'{')?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        loop {
            p.skip_spaces();
            if p.eat(b'}') {
                break;
            }
            let key = match p.literal()? {
                Literal::Str(key) => key,
                other => return Err(format!("expected a key string, got {other:?}")),
            };
            p.skip_spaces();
            p.expect(b':')?;
            p.skip_spaces();
            let value = p.literal()?;
            match (key.as_str(), value) {
                ("descr", Literal::Str(s)) => descr = Some(s),
                ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
                ("shape", Literal::Tuple(t)) => shape = Some(t),
                (key @ ("descr" | "fortran_order" | "shape"), value) => {
                    return Err(format!("unexpected value {value:?} for {key:?}"))
                }
                (key, _) => return Err(format!("unexpected key {key:?}")),
            }
            p.skip_spaces();
            if !p.eat(b',') {
                p.skip_spaces();
                p.expect(b'}')?;
                break;
            }
        }
        p.skip_spaces();
        if p.at != p.text.len() {
            return Err("text after the closing brace".into());
        }
        Ok(Self {
            descr: descr.ok_or("no 'descr' (an object or structured dtype?)")?,
            fortran_order: fortran_order.ok_or("no 'fortran_order'")?,
            shape: shape.ok_or("no 'shape'")?,
        })
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> std::result::Result<(), String> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at byte {}",
                char::from(byte),
                self.at
            ))
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn literal(&mut self) -> std::result::Result<Literal, String> {
        match self.peek() {
            Some(quote @ (b'\'' | b'"')) => {
                self.at += 1;
                let start = self.at;
                while self.peek().is_some_and(|b| b != quote) {
                    self.at += 1;
                }
                let s = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
                self.expect(quote)?;
                Ok(Literal::Str(s))
            }
            Some(b'(') => {
                self.at += 1;
                let mut dims = Vec::new();
                loop {
                    self.skip_spaces();
                    if self.eat(b')') {
                        break;
                    }
                    let start = self.at;
                    while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                        self.at += 1;
                    }
                    let digits =
                        std::str::from_utf8(&self.text[start..self.at]).expect("ASCII digits");
                    // A Python 2 long is written `3L`.
                    self.eat(b'L');
                    let dim = digits
                        .parse::<usize>()
                        .map_err(|_| format!("expected a dimension at byte {start}"))?;
                    dims.push(dim);
                    self.skip_spaces();
                    if !self.eat(b',') {
                        self.skip_spaces();
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Literal::Tuple(dims))
            }
            _ => {
                for (word, value) in [("True", true), ("False", false)] {
                    if self.text[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(Literal::Bool(value));
                    }
                }
                Err(format!("unexpected text at byte {}", self.at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` file as numpy writes it: the header padded with spaces to a multiple of 64
    /// bytes (16 for `align`), ending in a newline.
    fn npy(major: u8, header: &str, data: &[u8], align: usize) -> Vec<u8> {
        let prefix = if major == 1 { 10 } else { 12 };
        let mut header = header.to_string();
        while (prefix + header.len() + 1) % align != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend([major, 0]);
        if major == 1 {
            bytes.extend((header.len() as u16).to_le_bytes());
        } else {
            bytes.extend((header.len() as u32).to_le_bytes());
        }
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn f4(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn f8(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn parse(bytes: &[u8]) -> Result<NpyArray> {
        NpyArray::parse(bytes, Path::new("emb.npy"))
    }

    fn error(bytes: &[u8]) -> String {
        parse(bytes).unwrap_err().to_string()
    }

    #[test]
    fn version_1_float32_is_read_row_major() {
        // What `np.save` writes for np.arange(6, dtype='<f4').reshape(3, 2) / 4.
        let values = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25];
        let bytes = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
            &f4(&values),
            64,
        );
        assert_eq!(
            bytes.len() % 64,
            24,
            "the header ends on a 64-byte boundary"
        );
        let array = parse(&bytes).unwrap();
        assert_eq!(array.shape, vec![3, 2]);
        assert_eq!(array.dtype, NpyDtype::F4);
        assert_eq!(array.values, values);
        let e = array.into_embeddings().unwrap();
        assert_eq!((e.rows(), e.dim()), (3, 2));
        assert_eq!(e.row(2), &[1.0, 1.25]);
    }

    #[test]
    fn version_2_float64_and_other_header_spellings() {
        // Version 2.0 (u32 header length), float64, keys in another order, double quotes, a
        // Python 2 long and numpy's older 16-byte alignment.
        let values = [1.5, -2.0, 1e-3, 3.0];
        let bytes = npy(
            2,
            "{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}",
            &f8(&values),
            16,
        );
        let array = parse(&bytes).unwrap();
        assert_eq!(array.shape, vec![2, 2]);
        assert_eq!(array.dtype, NpyDtype::F8);
        let expected: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        assert_eq!(array.values, expected);

        // Version 3.0 has the same layout; 1-d and 0-d shapes parse but are not embeddings.
        let bytes = npy(
            3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
            &f4(&[1.0; 4]),
            64,
        );
        let array = parse(&bytes).unwrap();
        assert_eq!(array.shape, vec![4]);
        let err = array.into_embeddings().unwrap_err().to_string();
        assert!(err.contains("must be 2-d") && err.contains("[4]"), "{err}");
        let bytes = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &f8(&[2.0]),
            64,
        );
        assert_eq!(parse(&bytes).unwrap().values, vec![2.0]);
    }

    #[test]
    fn unsupported_files_are_clear_errors() {
        let header = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
        };
        let ok = header("<f4", "False", "(2, 2)");
        let data = f4(&[1.0; 4]);

        let err = error(&npy(1, &header("<i4", "False", "(2, 2)"), &data, 64));
        assert!(err.contains("dtype \"<i4\" is not supported"), "{err}");
        let err = error(&npy(1, &header(">f4", "False", "(2, 2)"), &data, 64));
        assert!(
            err.contains("\">f4\"") && err.contains("little-endian"),
            "{err}"
        );
        let err = error(&npy(1, &header("<f4", "True", "(2, 2)"), &data, 64));
        assert!(err.contains("Fortran order"), "{err}");
        let err = error(&npy(1, &header("<f4", "False", "(3, 2)"), &data, 64));
        assert!(
            err.contains("shape [3, 2] of <f4 needs 24 data bytes, the file has 16"),
            "{err}"
        );
        let mut long = npy(1, &ok, &data, 64);
        long.extend([0; 4]);
        assert!(error(&long).contains("the file has 20"));
        let mut v4 = npy(2, &ok, &data, 64);
        v4[6] = 4;
        assert!(error(&v4).contains("version 4.0 is not supported"));
        assert!(error(b"PK\x03\x04 a zip, as np.savez writes").contains("not an .npy file"));
        let mut cut = npy(1, &ok, &data, 64);
        cut.truncate(40);
        assert!(
            error(&cut).contains("only 30 bytes follow"),
            "{}",
            error(&cut)
        );
        let err = error(&npy(
            1,
            "{'descr': [('a', '<f4')], 'shape': (2,)}",
            &data,
            64,
        ));
        assert!(err.contains("unexpected text"), "{err}");
        let err = error(&npy(1, "{'descr': '<f4', 'shape': (4,)}", &data, 64));
        assert!(err.contains("no 'fortran_order'"), "{err}");
        assert!(err.starts_with("cannot read emb.npy: "), "{err}");

        let nan = npy(1, &ok, &f4(&[1.0, f32::NAN, 0.0, 0.0]), 64);
        let err = parse(&nan).unwrap().into_embeddings().unwrap_err();
        assert!(
            matches!(err, EvalError::NotFinite { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn pair_embeddings_split_originals_and_flips() {
        // 2 pairs of 2-d embeddings, then their flips.
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let array = NpyArray {
            shape: vec![8, 2],
            dtype: NpyDtype::F4,
            values,
        };
        let (original, flipped) = array.clone().into_pair_embeddings(2, true).unwrap();
        let flipped = flipped.unwrap();
        assert_eq!(original.rows(), 4);
        assert_eq!(original.row(0), &[0.0, 1.0]);
        assert_eq!(flipped.row(0), &[8.0, 9.0]);
        assert_eq!(flipped.row(3), &[14.0, 15.0]);

        let (plain, none) = array.clone().into_pair_embeddings(4, false).unwrap();
        assert_eq!(plain.rows(), 8);
        assert!(none.is_none());

        let err = array.clone().into_pair_embeddings(4, true).unwrap_err();
        assert!(
            matches!(
                err,
                EvalError::ShapeMismatch {
                    expected: 16,
                    got: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("originals then flipped"), "{err}");
        let err = array
            .into_pair_embeddings(2, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 4, got 8"), "{err}");
    }
}
