#!/usr/bin/env python3
"""Writes the one-step parity fixture of lvface's training step
(`crates/lvface-train/tests/fixtures/train-step/`), computed as insightface's train_v2.py steps.

A small insightface ViT (vit_torch.FaceViT: width 16, depth 2, 2 heads, 112 px, patch 9,
512-d embedding; drop path and token masking off, so that the step is deterministic) and a
centre matrix of 12 classes drawn from N(0, 0.01), trained by one AdamW over two parameter
groups (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.1), as train_v2.py builds it.
One optimizer step over k micro-batches of 4 images, for k = 1 and k = 2:

  for each micro-batch: embeddings = backbone(images) (training mode: the head's BatchNorms
  normalise by the batch and update their running statistics); cosines against every centre
  (Partial FC at rate 1: every class is sampled), clamped to [-1, 1]; insightface's
  CombinedMarginLoss for ArcFace (s = 64, m2 = 0.5, written under no_grad, so the gradient
  goes straight through); softmax cross-entropy, mean over the micro-batch; backward (the
  micro-batches' gradients add up: train_v2 does not divide by k);
  then clip_grad_norm_(backbone, 5) on the summed gradients, AdamW step.

Files in `crates/lvface-train/tests/fixtures/train-step/`: `start.safetensors`, the starting
backbone's state_dict under insightface's names; `k1.safetensors` and `k2.safetensors`, the
state_dict after the step with k micro-batches (parameters and the BatchNorms' running
statistics); `data.safetensors`, the images (`images`, `[2, 4, 3, 112, 112]`), labels
(`labels`, `[2, 4]`), the centres before and after (`centres.start`, `centres.k1`,
`centres.k2`) and each micro-batch's loss (`loss.k1`, `loss.k2`). Run from the repository root:

    python3 benches/reference/train_step_parity.py

Not run by CI: PyTorch installs with pip.
"""

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vit_torch  # noqa: E402
from train_step_torch import combined_margin  # noqa: E402  (ArcFace s = 64, m2 = 0.5)

CLASSES, BATCH, MICRO = 12, 4, 2
OUT = Path(__file__).resolve().parents[2] / "crates/lvface-train/tests/fixtures/train-step"


def backbone_state(backbone):
    return {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}


def one_step(backbone, centres, images, labels, k):
    backbone = copy.deepcopy(backbone)
    centres = torch.nn.Parameter(centres.detach().clone())
    backbone.train()
    optimizer = torch.optim.AdamW(
        [{"params": backbone.parameters()}, {"params": [centres]}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    losses = []
    for i in range(k):
        embeddings = backbone(images[i])
        logits = F.linear(F.normalize(embeddings), F.normalize(centres)).clamp(-1, 1)
        loss = F.cross_entropy(combined_margin(logits, labels[i]), labels[i])
        loss.backward()
        losses.append(loss.item())
    torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5)
    optimizer.step()
    return backbone, centres, losses


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = vit_torch.FaceViT(dim=16, depth=2, num_heads=2, drop_path_rate=0.0,
                                 mask_ratio=0.0)
    centres = torch.normal(0, 0.01, (CLASSES, vit_torch.NUM_FEATURES))
    size = vit_torch.IMG_SIZE
    images = torch.rand(MICRO, BATCH, 3, size, size) * 2 - 1
    labels = torch.randint(0, CLASSES, (MICRO, BATCH))

    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__}
    save_file(backbone_state(backbone), str(OUT / "start.safetensors"), metadata=meta)
    data = {
        "images": images.contiguous(),
        "labels": labels.to(torch.int64).contiguous(),
        "centres.start": centres.clone().contiguous(),
    }
    for k in (1, 2):
        after, after_centres, losses = one_step(backbone, centres, images, labels, k)
        save_file(backbone_state(after), str(OUT / f"k{k}.safetensors"), metadata=meta)
        data[f"centres.k{k}"] = after_centres.detach().clone().contiguous()
        data[f"loss.k{k}"] = torch.tensor(losses, dtype=torch.float32)
        print(f"k={k}: losses {losses}")
    save_file(data, str(OUT / "data.safetensors"), metadata=meta)
    total = sum(f.stat().st_size for f in OUT.glob("*.safetensors"))
    print(f"wrote {OUT} ({total} bytes), torch {torch.__version__}")


if __name__ == "__main__":
    main()
