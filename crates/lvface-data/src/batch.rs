//! [`Batch`]: normalised NCHW pixels and labels, and their burn tensors.

use burn::prelude::*;
use burn::tensor::TensorData;
use image::RgbImage;

use crate::decode::normalize_into;

/// A batch of normalised RGB faces, `[batch, 3, height, width]` row-major, with one label each.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `shape[0] * 3 * shape[2] * shape[3]` values, planar RGB, in `[-1, 1]`.
    pub pixels: Vec<f32>,
    /// `[batch, 3, height, width]`.
    pub shape: [usize; 4],
    /// Class of each image.
    pub labels: Vec<i64>,
    /// Dataset index of each image (for tracing a sample back to its file).
    pub indices: Vec<usize>,
}

impl Batch {
    /// Normalises equally sized `images` into one batch.
    ///
    /// # Panics
    /// If the images differ in size or `labels` and `indices` do not have one entry per image.
    pub fn from_images(images: &[RgbImage], labels: Vec<i64>, indices: Vec<usize>) -> Self {
        assert_eq!(images.len(), labels.len(), "one label per image");
        assert_eq!(images.len(), indices.len(), "one index per image");
        let (w, h) = images.first().map_or((0, 0), |i| i.dimensions());
        let plane = 3 * (w * h) as usize;
        let mut pixels = vec![0.0; images.len() * plane];
        for (image, out) in images.iter().zip(pixels.chunks_exact_mut(plane.max(1))) {
            assert_eq!(
                image.dimensions(),
                (w, h),
                "all images of a batch have one size"
            );
            normalize_into(image, out);
        }
        Self {
            pixels,
            shape: [images.len(), 3, h as usize, w as usize],
            labels,
            indices,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// The pixels as a tensor on `device`.
    ///
    /// # Shapes
    /// `[batch, 3, height, width]`
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.pixels.clone(), self.shape), device)
    }

    /// The labels as an integer tensor on `device`.
    ///
    /// # Shapes
    /// `[batch]`
    pub fn labels_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(self.labels.clone(), [self.labels.len()]),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn tensor_has_nchw_layout_and_labels() {
        let a = RgbImage::from_fn(4, 2, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 100) as u8, 0])
        });
        let b = RgbImage::from_pixel(4, 2, image::Rgb([255, 255, 255]));
        let batch = Batch::from_images(&[a, b], vec![3, 9], vec![0, 1]);
        assert_eq!(batch.shape, [2, 3, 2, 4]);
        let device = Default::default();
        let t = batch.to_tensor::<Flex>(&device);
        assert_eq!(t.dims(), [2, 3, 2, 4]);
        let values: Vec<f32> = t.into_data().to_vec().unwrap();
        // Image 0, channel 1 (green), row 1, column 2: green = 100.
        let at = 8 + 4 + 2;
        assert!((values[at] - (100.0 / 127.5 - 1.0)).abs() < 1e-6);
        // Image 1 is white: every value is 1.
        assert!(values[24..].iter().all(|&v| (v - 1.0).abs() < 1e-6));
        let labels: Vec<i64> = batch
            .labels_tensor::<Flex>(&device)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(labels, vec![3, 9]);
    }
}
