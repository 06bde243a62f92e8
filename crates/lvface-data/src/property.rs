//! [`Property`]: the `property` file insightface writes beside `train.rec`.

use std::path::Path;

use crate::error::{DataError, Result};

/// The contents of a `property` file: `classes,height,width` on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property {
    /// Number of identities.
    pub classes: usize,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
}

impl Property {
    /// Parses `text`; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| DataError::BadProperty {
            path: path.to_path_buf(),
            reason,
        };
        let fields: Vec<&str> = text.trim().split(',').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(bad(format!(
                "expected `classes,height,width`, got {:?}",
                text.trim()
            )));
        }
        let number = |i: usize, name: &str| {
            fields[i].parse::<u64>().map_err(|_| {
                bad(format!(
                    "{name} {:?} is not a non-negative integer",
                    fields[i]
                ))
            })
        };
        let classes = number(0, "classes")?;
        let (height, width) = (number(1, "height")?, number(2, "width")?);
        let fits = |v: u64| u32::try_from(v).ok().filter(|&v| v > 0);
        match (usize::try_from(classes), fits(height), fits(width)) {
            (Ok(classes), Some(height), Some(width)) => Ok(Self {
                classes,
                height,
                width,
            }),
            _ => Err(bad(format!("values out of range in {:?}", text.trim()))),
        }
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Writes `classes,height,width\n` to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = format!("{},{},{}\n", self.classes, self.height, self.width);
        std::fs::write(path, text).map_err(|e| DataError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_insightface_property_lines() {
        let p = Property::parse("93431,112,112\n", Path::new("property")).unwrap();
        assert_eq!(
            p,
            Property {
                classes: 93431,
                height: 112,
                width: 112
            }
        );
        let err = Property::parse("93431,112", Path::new("dir/property")).unwrap_err();
        assert!(
            err.to_string().starts_with("dir/property: expected"),
            "{err}"
        );
        assert!(Property::parse("a,1,1", Path::new("p")).is_err());
        assert!(Property::parse("1,0,1", Path::new("p")).is_err());
    }
}
