//! Errors of lvface-data.

use std::path::{Path, PathBuf};

/// What can go wrong reading, writing or decoding face data.
///
/// Every variant names the file (or the record inside a file) it is about, so that a message in
/// a training log is enough to find the bad bytes.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or a write.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// A RecordIO file breaks the framing: bad magic word, a length running past the end of the
    /// file, a continuation part out of order, a payload too short for its header.
    #[error("{path}: corrupt record at byte {offset}: {reason}")]
    CorruptRecord {
        /// The `.rec` file.
        path: PathBuf,
        /// Byte offset of the record (or part) header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A line of a `.idx` file is malformed or points outside the `.rec` file.
    #[error("{path}:{line}: {reason}")]
    BadIndex {
        /// The `.idx` file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key asked for is not in the index.
    #[error("{path}: no record with key {key}")]
    MissingKey {
        /// The `.rec` file.
        path: PathBuf,
        /// The key asked for.
        key: u64,
    },
    /// A record's label is not a class index, or is not below the number of classes.
    #[error("{path}: record {key} at byte {offset}: {reason}")]
    BadLabel {
        /// The `.rec` file or the image.
        path: PathBuf,
        /// Record key (or item index for other sources).
        key: u64,
        /// Byte offset of the record (0 for files that are not RecordIO).
        offset: u64,
        /// What is wrong with the label.
        reason: String,
    },
    /// The `property` file is not `classes,height,width`.
    #[error("{path}: {reason}")]
    BadProperty {
        /// The `property` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pickle stream is malformed, or asks for something a plain-data reader refuses.
    #[error("{path}: pickle byte {offset}: {reason}")]
    Pickle {
        /// The `.bin` file.
        path: PathBuf,
        /// Byte offset of the offending opcode.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A `.bin` file unpickles, but not into `(list of images, list of bools)` of matching sizes.
    #[error("{path}: not a verification set: {reason}")]
    BadBin {
        /// The `.bin` file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image does not decode, or is not JPEG or PNG.
    #[error("{origin}: cannot decode image: {reason}")]
    CorruptImage {
        /// The file, or the `.rec` file with record key and byte offset.
        origin: String,
        /// What the decoder reported.
        reason: String,
    },
    /// An image could not be encoded.
    #[error("{origin}: cannot encode image: {reason}")]
    Encode {
        /// What was being written.
        origin: String,
        /// What the encoder reported.
        reason: String,
    },
    /// An image folder (or a synthetic request) holds nothing to train on, or breaks the layout.
    #[error("{path}: {reason}")]
    BadFolder {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A writer was used against its contract (for example labels not grouped by identity).
    #[error("{path}: {reason}")]
    BadWrite {
        /// The file being written.
        path: PathBuf,
        /// The broken rule.
        reason: String,
    },
    /// A loader worker failed in a way no error value describes: a panic while reading,
    /// decoding or augmenting an image, or workers gone before the epoch's last batch.
    #[error("loader: {reason}")]
    Loader {
        /// What happened, naming the image where one is known.
        reason: String,
    },
    /// A configuration field breaks its rule.
    #[error("data.{field} {rule}, got {value}")]
    InvalidConfig {
        /// The field name, as written in TOML.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
        /// The offending value.
        value: String,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`DataError::CorruptRecord`] for `path` at `offset`.
    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Self::CorruptRecord {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// A [`DataError::InvalidConfig`].
    pub(crate) fn config(field: &'static str, rule: &str, value: impl ToString) -> Self {
        Self::InvalidConfig {
            field,
            rule: rule.to_string(),
            value: value.to_string(),
        }
    }
}

/// Result with a [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;
