//! [`IrHeader`]: the 24-byte header MXNet puts in front of every image payload.

/// Size in bytes of the packed header (`'IfQQ'`).
pub const IR_HEADER_LEN: usize = 24;

/// The label of a record: MXNet's `IRHeader(flag, label, id, id2)` packed as `'IfQQ'`
/// (little-endian `u32 flag`, `f32 label`, `u64 id`, `u64 id2`).
///
/// With `flag == 0` the label is the scalar `label` field. With `flag == n > 0` the scalar field
/// is unused (written as 0) and `n` little-endian `f32` labels follow the header, before the
/// image bytes. [`IrHeader::labels`] holds them in both cases.
#[derive(Debug, Clone, PartialEq)]
pub struct IrHeader {
    /// The raw flag: 0 for a scalar label, else the number of vector labels.
    pub flag: u32,
    /// The labels: one value for a scalar label, `flag` values otherwise.
    pub labels: Vec<f32>,
    /// The record id (insightface writes the record key here).
    pub id: u64,
    /// The second id (unused by insightface, written as 0).
    pub id2: u64,
}

impl IrHeader {
    /// A header with a scalar label (`flag == 0`).
    pub fn scalar(label: f32, id: u64) -> Self {
        Self {
            flag: 0,
            labels: vec![label],
            id,
            id2: 0,
        }
    }

    /// A header with a vector label (`flag == labels.len()`).
    ///
    /// An empty vector gives a scalar label of 0, since MXNet cannot express an empty vector.
    pub fn vector(labels: Vec<f32>, id: u64) -> Self {
        if labels.is_empty() {
            return Self::scalar(0.0, id);
        }
        let flag = u32::try_from(labels.len()).expect("label vector should have under 2^32 values");
        Self {
            flag,
            labels,
            id,
            id2: 0,
        }
    }

    /// The label used for training: the scalar label, or the first vector label, as MXNet's
    /// insightface dataset reads it.
    pub fn class_label(&self) -> f32 {
        self.labels.first().copied().unwrap_or(0.0)
    }

    /// Splits a record payload into its header and the bytes after it (the image).
    ///
    /// Returns a description of the problem when the payload is shorter than the header and the
    /// `flag` labels it announces; the caller adds the file and offset.
    pub fn parse(payload: &[u8]) -> std::result::Result<(Self, &[u8]), String> {
        if payload.len() < IR_HEADER_LEN {
            return Err(format!(
                "payload of {} bytes is shorter than the {IR_HEADER_LEN}-byte IRHeader",
                payload.len()
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
        let flag = u32_at(0);
        let scalar = f32::from_bits(u32_at(4));
        let id = u64_at(8);
        let id2 = u64_at(16);
        let rest = &payload[IR_HEADER_LEN..];
        if flag == 0 {
            return Ok((
                Self {
                    flag,
                    labels: vec![scalar],
                    id,
                    id2,
                },
                rest,
            ));
        }
        let needed = u64::from(flag) * 4;
        if (rest.len() as u64) < needed {
            return Err(format!(
                "IRHeader announces {flag} labels ({needed} bytes) but only {} bytes follow",
                rest.len()
            ));
        }
        let needed = needed as usize;
        let labels = rest[..needed]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok((
            Self {
                flag,
                labels,
                id,
                id2,
            },
            &rest[needed..],
        ))
    }

    /// Packs the header, its vector labels and `body` into one record payload.
    pub fn pack(&self, body: &[u8]) -> Vec<u8> {
        let extra = if self.flag == 0 {
            0
        } else {
            self.labels.len() * 4
        };
        let mut out = Vec::with_capacity(IR_HEADER_LEN + extra + body.len());
        out.extend_from_slice(&self.flag.to_le_bytes());
        let scalar = if self.flag == 0 {
            self.class_label()
        } else {
            0.0
        };
        out.extend_from_slice(&scalar.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.id2.to_le_bytes());
        if self.flag != 0 {
            for label in &self.labels {
                out.extend_from_slice(&label.to_le_bytes());
            }
        }
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_header_matches_struct_pack() {
        // struct.pack('<IfQQ', 0, 3.0, 7, 0) + b'img'
        let mut expected = vec![0, 0, 0, 0, 0, 0, 0x40, 0x40, 7, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(b"img");
        let packed = IrHeader::scalar(3.0, 7).pack(b"img");
        assert_eq!(packed, expected);
        let (header, body) = IrHeader::parse(&packed).unwrap();
        assert_eq!(header, IrHeader::scalar(3.0, 7));
        assert_eq!(body, b"img");
    }

    #[test]
    fn vector_header_puts_labels_before_the_image() {
        // struct.pack('<IfQQ', 2, 0.0, 0, 0) + struct.pack('<2f', 11.0, 15.0)
        let mut expected = vec![2, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(&[0, 0, 0x30, 0x41, 0, 0, 0x70, 0x41]);
        let packed = IrHeader::vector(vec![11.0, 15.0], 0).pack(&[]);
        assert_eq!(packed, expected);
        let (header, body) = IrHeader::parse(&packed).unwrap();
        assert_eq!(header.labels, vec![11.0, 15.0]);
        assert_eq!(header.class_label(), 11.0);
        assert!(body.is_empty());
    }

    #[test]
    fn short_payloads_are_described_not_panicked_on() {
        assert!(IrHeader::parse(&[0; 23]).unwrap_err().contains("shorter"));
        let mut lying = IrHeader::scalar(0.0, 0).pack(&[]);
        lying[0] = 5; // five labels announced, none present
        assert!(IrHeader::parse(&lying)
            .unwrap_err()
            .contains("announces 5 labels"));
    }
}
