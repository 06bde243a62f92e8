#!/usr/bin/env python3
"""Opt-in check of an lvface ONNX export with onnxruntime (not run by CI).

Applies the rules of insightface's MFR checker (challenges/mfr/onnx_helper.py, ArcFaceORT.check)
that need a runtime, on top of the structural ones `cargo xtask export` already checked:

- onnx.checker.check_model passes;
- one 4-D input [*, 3, 112, 112] and exactly one output; at least 8 nodes;
- no initializer narrower than 4 bytes (no fp16 weights); size <= 1024 MB;
- a batch of 32 gives finite values of shape [32, D] with D <= 512 (or --max-dim);
- the batch is dynamic: batches of 1 and 32 give the same rows;
- optionally, with --images and --embeddings, onnxruntime's embeddings of aligned 112x112 images
  match lvface's (`cargo xtask embed --weights ... IMAGES --out emb.npy`, without --flip or
  --normalize) within --atol.

Usage:
    pip install onnx onnxruntime numpy pillow
    python3 crates/lvface-export/tests/reference/check_onnx.py model.onnx \
        [--images a.jpg b.jpg --embeddings emb.npy] [--max-dim 512] [--atol 1e-4]

Prints one line per check and exits non-zero on the first failure.
"""

import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def ok(message):
    print(f"ok   {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--images", nargs="*", default=[])
    parser.add_argument("--embeddings")
    parser.add_argument("--max-dim", type=int, default=512)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()

    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    size_mb = os.path.getsize(args.model) / 1024 / 1024
    if size_mb > 1024:
        fail(f"size {size_mb:.1f} MB > 1024 MB")
    ok(f"size {size_mb:.2f} MB")

    model = onnx.load(args.model)
    onnx.checker.check_model(model)
    ok(f"onnx.checker (ir {model.ir_version}, opset {model.opset_import[0].version})")
    graph = model.graph
    if len(graph.node) < 8:
        fail(f"{len(graph.node)} nodes < 8")
    ok(f"{len(graph.node)} nodes")
    narrow = [t.name for t in graph.initializer
              if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64,
                                     onnx.TensorProto.INT32, onnx.TensorProto.DOUBLE)]
    if narrow:
        fail(f"initializers with under-4-byte types: {narrow[:5]}")
    ok(f"{len(graph.initializer)} initializers, all 4 bytes or wider")

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or list(inputs[0].shape[1:]) != [3, 112, 112]:
        fail(f"inputs {[(i.name, i.shape) for i in inputs]}")
    if len(outputs) != 1:
        fail(f"{len(outputs)} outputs")
    ok(f"input {inputs[0].name} {inputs[0].shape}, output {outputs[0].name} {outputs[0].shape}")

    rng = np.random.default_rng(0)
    # The checker feeds (pixel - 127.5) / 127.5 of RGB images: values in [-1, 1].
    batch = rng.uniform(-1, 1, size=(32, 3, 112, 112)).astype(np.float32)
    (features,) = session.run(None, {inputs[0].name: batch})
    if features.ndim != 2 or features.shape[0] != 32 or features.shape[1] > args.max_dim:
        fail(f"feature shape {features.shape}")
    if not np.all(np.isfinite(features)):
        fail("NaN or Inf on a batch of 32")
    ok(f"batch of 32 -> {features.shape}, finite")
    (single,) = session.run(None, {inputs[0].name: batch[:1]})
    diff = float(np.abs(single[0] - features[0]).max())
    if diff > 1e-4:
        fail(f"batch 1 and batch 32 differ by {diff}")
    ok(f"dynamic batch (batch 1 vs 32: max diff {diff:.2e})")

    if args.images:
        from PIL import Image

        pixels = []
        for path in args.images:
            image = Image.open(path).convert("RGB")
            if image.size != (112, 112):
                fail(f"{path} is {image.size}; compare on aligned 112x112 crops only")
            pixels.append(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
        x = (np.stack(pixels) - 127.5) / 127.5
        (ours,) = session.run(None, {inputs[0].name: x.astype(np.float32)})
        theirs = np.load(args.embeddings)
        diff = float(np.abs(ours - theirs).max())
        if diff > args.atol:
            fail(f"onnxruntime and lvface embeddings differ by {diff} > {args.atol}")
        ok(f"{len(args.images)} images: onnxruntime vs lvface max abs diff {diff:.2e}")
    print("all checks passed")


if __name__ == "__main__":
    main()
