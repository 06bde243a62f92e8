#!/usr/bin/env python3
"""Writes the import targets' seeds: a one-block insightface-layout ViT (width 8, 4-pixel images
in 2-pixel patches: `seed_config` in fuzz_targets/weights.rs) as a zip .pt, a legacy .pt and a
.safetensors (written by hand, so only PyTorch is needed).

    python3 seeds.py ../../../target/fuzz-corpus
"""

import json
import struct
import sys
from pathlib import Path

import torch

D, T, P, F, M = 8, 4, 2, 8, 16
SHAPES = {
    "pos_embed": (1, T, D),
    "mask_token": (1, 1, D),
    "patch_embed.proj.weight": (D, 3, P, P),
    "patch_embed.proj.bias": (D,),
    "blocks.0.norm1.weight": (D,),
    "blocks.0.norm1.bias": (D,),
    "blocks.0.norm2.weight": (D,),
    "blocks.0.norm2.bias": (D,),
    "blocks.0.attn.qkv.weight": (3 * D, D),
    "blocks.0.attn.proj.weight": (D, D),
    "blocks.0.attn.proj.bias": (D,),
    "blocks.0.mlp.fc1.weight": (M, D),
    "blocks.0.mlp.fc1.bias": (M,),
    "blocks.0.mlp.fc2.weight": (D, M),
    "blocks.0.mlp.fc2.bias": (D,),
    "norm.weight": (D,),
    "norm.bias": (D,),
    "feature.0.weight": (F, T * D),
    "feature.1.weight": (F,),
    "feature.1.bias": (F,),
    "feature.1.running_mean": (F,),
    "feature.1.running_var": (F,),
    "feature.2.weight": (F, F),
    "feature.3.weight": (F,),
    "feature.3.bias": (F,),
    "feature.3.running_mean": (F,),
    "feature.3.running_var": (F,),
}


def main():
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    sd = {k: torch.randn(s) * 0.1 for k, s in SHAPES.items()}
    for bn in ("feature.1", "feature.3"):
        sd[f"{bn}.running_var"] = sd[f"{bn}.running_var"].abs() + 1
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(3, dtype=torch.int64)
    (out / "import_pt").mkdir(parents=True, exist_ok=True)
    (out / "import_safetensors").mkdir(parents=True, exist_ok=True)
    torch.save(sd, out / "import_pt/tiny_vit.pt")
    torch.save(sd, out / "import_pt/tiny_vit_legacy.pt", _use_new_zipfile_serialization=False)
    header, blobs, offset = {}, [], 0
    for key, value in sd.items():
        raw = bytes(value.contiguous().untyped_storage())
        dtype = "I64" if value.dtype == torch.int64 else "F32"
        header[key] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(out / "import_safetensors/tiny_vit.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    main()
