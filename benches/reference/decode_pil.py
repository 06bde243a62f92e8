#!/usr/bin/env python3
"""PIL + numpy counterpart of benches/data.rs: decode 112x112 JPEGs, augment, normalise to an
NCHW float32 batch, on one thread, 64 images per iteration.

Reads the JPEGs the Rust bench wrote (default target/lvface-bench-jpegs; run
`cargo bench -p lvface-bench --bench data` first). Cases, as in the Rust bench:

- decode:  PIL decode to RGB (Image.open(BytesIO).convert("RGB"), pixels loaded);
- flip:    decode, mirror every image, (x / 255 - 0.5) / 0.5 into a [64, 3, 112, 112] array;
- default: the same with the flip drawn with p 0.5 (insightface's training default);
- torchvision_default (only if torchvision is installed): insightface's own transform,
  RandomHorizontalFlip + ToTensor + Normalize(0.5, 0.5), stacked with torch.stack.

Output: one line per case, `bench=... images=64 median_ms=... min_ms=... images_per_s=...`
(images/s from the median), after the Python, PIL and numpy versions.
"""

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time

import numpy as np
from PIL import Image, __version__ as pil_version

BATCH = 64


def decode(data):
    image = Image.open(io.BytesIO(data))
    image = image.convert("RGB")
    image.load()
    return image


def normalise(images, flips):
    out = np.empty((len(images), 3, 112, 112), dtype=np.float32)
    for k, (image, flip) in enumerate(zip(images, flips)):
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = np.asarray(image, dtype=np.float32)  # HWC
        out[k] = ((pixels / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def time_case(fn, jpegs, iters, warmup):
    times = []
    first = 0
    for i in range(warmup + iters):
        chunk = [jpegs[(first + j) % len(jpegs)] for j in range(BATCH)]
        first = (first + BATCH) % len(jpegs)
        start = time.perf_counter()
        fn(chunk)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "lvface-bench-jpegs"
    )
    parser.add_argument("--dir", default=default_dir)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    names = sorted(n for n in os.listdir(args.dir) if n.endswith(".jpg"))
    if not names:
        sys.exit(f"no .jpg files in {args.dir}")
    jpegs = [open(os.path.join(args.dir, n), "rb").read() for n in names]
    print(
        f"python={platform.python_version()} pillow={pil_version} numpy={np.__version__} "
        f"images_in_dir={len(jpegs)} cpu=\"{platform.processor() or platform.machine()}\""
    )
    rng = random.Random(0)

    cases = {
        "decode": lambda chunk: [decode(d) for d in chunk],
        "flip": lambda chunk: normalise([decode(d) for d in chunk], [True] * len(chunk)),
        "default": lambda chunk: normalise(
            [decode(d) for d in chunk], [rng.random() < 0.5 for _ in chunk]
        ),
    }
    try:
        import torch
        from torchvision import transforms

        torch.set_num_threads(1)
        transform = transforms.Compose(
            [
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
            ]
        )
        cases["torchvision_default"] = lambda chunk: torch.stack(
            [transform(decode(d)) for d in chunk]
        )
    except ImportError:
        print("torchvision not installed: no torchvision case")

    for name, fn in cases.items():
        times = time_case(fn, jpegs, args.iters, args.warmup)
        median = statistics.median(times)
        print(
            f"bench=data/{name} images={BATCH} median_ms={1000 * median:.3f} "
            f"min_ms={1000 * min(times):.3f} images_per_s={BATCH / median:.0f}"
        )


if __name__ == "__main__":
    main()
