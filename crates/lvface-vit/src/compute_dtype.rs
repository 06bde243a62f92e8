//! [`ComputeDType`]: mixed precision as PyTorch's automatic mixed precision (AMP) does it.
//!
//! Parameters stay f32 (the master weights the optimizer updates). In a half-precision
//! [`ComputeDType`] the heavy products of the backbone (the Linear layers and the patch
//! convolution) cast their operands to the half type, multiply there, and cast the result back
//! to the input's type, so everything between them (LayerNorm, the attention products and
//! softmax, BatchNorm, residual adds, biases) and the output stay f32, as in insightface's ViT,
//! which turns autocast off around `q·kᵀ`, the softmax and `·v`. burn's autodiff
//! differentiates the casts, so every gradient reaching a parameter is f32 as well.

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The type the backbone's matrix products and convolution compute in (TOML key
/// `vit.compute_dtype`: `"f32"`, `"bf16"` or `"f16"`).
///
/// The half types are meant for GPUs, whose tensor cores multiply them several times faster
/// than f32. On the CPU backend (`Flex`) they run, but slower than f32. bf16 keeps f32's
/// exponent range; f16 does not, and since lvface has no loss scaling (PyTorch's
/// `GradScaler`), gradients below f16's smallest normal value (6.1e-5) lose precision or flush
/// to zero: prefer bf16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDType {
    /// Everything in f32, exactly as without this setting.
    #[default]
    F32,
    /// bfloat16 products, f32 elsewhere.
    Bf16,
    /// IEEE half products, f32 elsewhere.
    F16,
}

impl ComputeDType {
    /// Whether `device` can compute in this type. f32 runs everywhere; the half types need the
    /// backend's support: burn's wgpu backend has no bf16 (WGSL lacks it) and has f16 only on
    /// adapters with `shader-f16`, and without this check a product in an unsupported type
    /// panics inside the backend.
    pub fn supported_on<B: Backend>(self, device: &B::Device) -> bool {
        self.half()
            .is_none_or(|half| B::supports_dtype(device, half.into()))
    }

    /// The TOML spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The half type of the products, or `None` when they run in f32 and nothing is cast.
    fn half(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(FloatDType::BF16),
            Self::F16 => Some(FloatDType::F16),
        }
    }

    /// `layer.forward(x)` with the product in this type; the bias is added after the cast
    /// back, so its gradient is reduced in f32.
    ///
    /// Both paths flatten the leading dimensions first, so the layer is one matrix product.
    /// burn's linear on a 3-D input is a batched product with a broadcast weight: Flex repacks
    /// the weight for every batch item and runs one single-threaded GEMM per item, and the
    /// weight's gradient is built as `[batch, in, out]` and then summed (in the half type, on
    /// the half path). On the flattened matrix it is one threaded GEMM each way.
    ///
    /// # Shapes
    /// - x: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub(crate) fn linear<B: Backend, const D: usize>(
        self,
        layer: &Linear<B>,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let mut dims = x.dims();
        let dtype = x.dtype();
        let rows = x.reshape([-1, dims[D - 1] as i64]);
        let Some(half) = self.half() else {
            dims[D - 1] = layer.weight.dims()[1];
            return layer.forward(rows).reshape(dims);
        };
        let weight = layer.weight.val();
        dims[D - 1] = weight.dims()[1];
        let y = linear(rows.cast(half), weight.cast(half), None).cast(dtype);
        let y = match &layer.bias {
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        };
        y.reshape(dims)
    }

    /// `layer.forward(images)` with the convolution in this type and the bias added after the
    /// cast back. Only the patch embedding's padding-free convolution is supported.
    ///
    /// # Shapes
    /// - images: `[batch, channels_in, height, width]`
    /// - output: `[batch, channels_out, height_out, width_out]`
    pub(crate) fn conv2d<B: Backend>(
        self,
        layer: &Conv2d<B>,
        images: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let Some(half) = self.half() else {
            return layer.forward(images);
        };
        debug_assert_eq!(layer.padding, PaddingConfig2d::Valid);
        let dtype = images.dtype();
        let options = ConvOptions::new(layer.stride, [0, 0], layer.dilation, layer.groups);
        let y = conv2d(
            images.cast(half),
            layer.weight.val().cast(half),
            None,
            options,
        )
        .cast(dtype);
        match &layer.bias {
            Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, Distribution};

    use super::*;

    type B = Flex;

    #[test]
    fn the_cpu_backend_computes_in_every_type() {
        for (dtype, name) in [
            (ComputeDType::F32, "f32"),
            (ComputeDType::Bf16, "bf16"),
            (ComputeDType::F16, "f16"),
        ] {
            assert!(dtype.supported_on::<B>(&Default::default()), "{name}");
            assert_eq!(dtype.name(), name);
        }
    }

    fn relative_error<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        let norm: f32 = b.clone().powf_scalar(2.0).sum().sqrt().into_scalar();
        let diff: f32 = (a - b).powf_scalar(2.0).sum().sqrt().into_scalar();
        diff / norm
    }

    #[test]
    fn f32_is_the_plain_layer_and_half_types_are_close_to_it() {
        let device = Default::default();
        let layer = LinearConfig::new(24, 40).init::<B>(&device);
        let conv = Conv2dConfig::new([3, 16], [4, 4])
            .with_stride([4, 4])
            .init::<B>(&device);
        let x = Tensor::<B, 3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), &device);
        let images = Tensor::<B, 4>::random([2, 3, 12, 13], Distribution::Default, &device);
        let plain = layer.forward(x.clone());
        let plain_conv = conv.forward(images.clone());

        let f32 = ComputeDType::F32;
        let error = relative_error(f32.linear(&layer, x.clone()), plain.clone());
        assert!(error < 1e-6, "f32 linear: relative error {error}");
        f32.conv2d(&conv, images.clone())
            .into_data()
            .assert_eq(&plain_conv.to_data(), true);

        for half in [ComputeDType::Bf16, ComputeDType::F16] {
            let y = half.linear(&layer, x.clone());
            assert_eq!((y.dims(), y.dtype()), ([2, 5, 40], DType::F32));
            let error = relative_error(y, plain.clone());
            assert!(error < 1e-2, "{half:?} linear: relative error {error}");
            let y = half.conv2d(&conv, images.clone());
            assert_eq!((y.dims(), y.dtype()), (plain_conv.dims(), DType::F32));
            let error = relative_error(y, plain_conv.clone());
            assert!(error < 1e-2, "{half:?} conv2d: relative error {error}");
        }
    }

    /// The flattened f32 product has the gradients of burn's batched one (a different order of
    /// summation, so equal to rounding), for the input, the weight and the bias.
    #[test]
    fn flattened_f32_linear_has_the_gradients_of_the_batched_layer() {
        type A = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let layer = LinearConfig::new(24, 40).init::<A>(&device);
        let x = Tensor::<A, 3>::random([3, 7, 24], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<A, 3>::random([3, 7, 40], Distribution::Normal(0.0, 1.0), &device);
        let gradients = |flatten: bool| {
            let x = x.clone().detach().require_grad();
            let y = if flatten {
                ComputeDType::F32.linear(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let grads = (y * upstream.clone()).sum().backward();
            let bias = layer.bias.as_ref().expect("a bias");
            (
                x.grad(&grads).expect("input gradient"),
                layer.weight.grad(&grads).expect("weight gradient"),
                bias.grad(&grads).expect("bias gradient"),
            )
        };
        let (dx, dw, db) = gradients(true);
        let (dx_want, dw_want, db_want) = gradients(false);
        assert_eq!(dw.dims(), [24, 40]);
        for (name, error) in [
            ("input", relative_error(dx, dx_want)),
            ("weight", relative_error(dw, dw_want)),
            (
                "bias",
                relative_error(db.unsqueeze::<2>(), db_want.unsqueeze()),
            ),
        ] {
            assert!(error < 1e-6, "{name} gradient: relative error {error}");
        }
    }

    #[test]
    fn names_are_lowercase() {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        for (name, dtype) in [
            ("f32", ComputeDType::F32),
            ("bf16", ComputeDType::Bf16),
            ("f16", ComputeDType::F16),
        ] {
            let de: StrDeserializer<Error> = name.into_deserializer();
            assert_eq!(ComputeDType::deserialize(de).unwrap(), dtype);
        }
        let de: StrDeserializer<Error> = "fp16".into_deserializer();
        assert!(ComputeDType::deserialize(de).is_err());
    }
}
