#!/usr/bin/env python3
"""PyTorch reference of lvface's training step (`lvface probe --train-step`), on CPU or CUDA.

One optimizer step of insightface's arcface_torch on one device, with the backbone of
vit_torch.py (vit_t, 19.14 M parameters, token masking and drop path active) and Partial FC v2
(`partial_fc_v2.py`, `PartialFC_V2` with one rank):

  - a centre matrix [classes, 512] drawn from N(0, 0.01), trained by the same AdamW as the
    backbone (two parameter groups, as insightface's train_v2.py);
  - negative sampling at rate 0.3 keeping every positive (`PartialFC_V2.sample`: torch.rand over
    the classes, positives set to 2, topk, sort, labels remapped with searchsorted) and the
    sampled rows taken with index_select, so their gradient scatters back into the matrix;
  - normalised embeddings and centres, cosines clamped to [-1, 1], ArcFace combined margin
    s = 64, m = 0.5 applied in place under no_grad (insightface's `CombinedMarginLoss`: the
    gradient goes straight through), softmax cross-entropy (mean over the batch);
  - backward, clip_grad_norm_(backbone, 5), AdamW(lr 1e-3, weight decay 0.1) step, zero_grad.

Each step gets a fresh random batch (pixels uniform in [-1, 1], labels uniform below the number
of classes), made before its clock starts. After `--warmup` untimed steps, `--steps` are timed;
one line reports median, mean and min (`images_per_s` from the median) and, on CUDA, the peak
of allocated memory.

`--amp bf16` runs the forward pass and the loss under `torch.autocast(device, torch.bfloat16)`
as insightface's train_v2.py does with fp16 (its ViT turns autocast off around attention; the
model here keeps attention's products in whatever autocast gives them), parameters and
optimizer state in f32. On CUDA, a step's clock stops after `torch.cuda.synchronize()`.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vit_torch  # noqa: E402  (the same model as benches/reference/vit_torch.py)

S, M2 = 64.0, 0.5


def sample(centres, labels, sample_rate):
    """insightface's PartialFC_V2.sample on one rank: every positive kept, random negatives."""
    num_local = centres.shape[0]
    num_sample = int(sample_rate * num_local)
    with torch.no_grad():
        positive = torch.unique(labels, sorted=True)
        if num_sample - positive.size(0) >= 0:
            perm = torch.rand(size=[num_local], device=centres.device)
            perm[positive] = 2.0
            index = torch.topk(perm, k=num_sample)[1]
            index = index.sort()[0]
        else:
            index = positive
        labels = torch.searchsorted(index, labels)
    return torch.index_select(centres, 0, index), labels


def combined_margin(logits, labels):
    """insightface's CombinedMarginLoss for ArcFace (m1 = 1, m2 = 0.5, m3 = 0)."""
    index_positive = torch.where(labels != -1)[0]
    target_logit = logits[index_positive, labels[index_positive].view(-1)]
    with torch.no_grad():
        target_logit.arccos_()
        logits.arccos_()
        final_target_logit = target_logit + M2
        logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
        logits.cos_()
    return logits * S


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=["vit_t", "vit_s", "vit_b"], default="vit_t")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10_000)
    ap.add_argument("--sample-rate", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--amp", choices=["off", "bf16"], default="off",
                    help="autocast the forward pass and the loss to bf16")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    torch.set_num_threads(args.threads)
    print(f"torch={torch.__version__} python={platform.python_version()} "
          f"threads={torch.get_num_threads()} cpu=\"{vit_torch.cpu_model()}\"", flush=True)

    torch.manual_seed(0)
    backbone = vit_torch.build(args.model).to(device)
    backbone.train()
    centres = nn.Parameter(
        torch.normal(0, 0.01, (args.classes, vit_torch.NUM_FEATURES)).to(device))
    params = sum(p.numel() for p in backbone.parameters())
    print(f"model={args.model} params={params} params_m={params / 1e6:.2f} "
          f"centres={args.classes}x{vit_torch.NUM_FEATURES}", flush=True)
    optimizer = torch.optim.AdamW(
        [{"params": backbone.parameters()}, {"params": [centres]}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)

    size = vit_torch.IMG_SIZE

    def batch():
        images = torch.rand(args.batch, 3, size, size, device=device) * 2 - 1
        labels = torch.randint(0, args.classes, (args.batch,), device=device)
        return images, labels

    def step(images, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            embeddings = backbone(images)
            weight, local_labels = sample(centres, labels, args.sample_rate)
            logits = F.linear(F.normalize(embeddings), F.normalize(weight))
        # insightface's PartialFC_V2: the cosines in the autocast type, then `logits.float()`
        # before the clamp, the margin and the softmax.
        logits = logits.float().clamp(-1, 1)
        loss = F.cross_entropy(combined_margin(logits, local_labels), local_labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    times = []
    loss = float("nan")
    for i in range(args.warmup + args.steps):
        images, labels = batch()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(images, labels)
        if cuda:
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - t0) * 1e3
        if i >= args.warmup:
            times.append(elapsed)
    median_ms, mean_ms, min_ms = statistics.median(times), statistics.fmean(times), min(times)
    print(f"bench={args.model}/train_step_pfc classes={args.classes} "
          f"sample_rate={args.sample_rate} batch={args.batch} threads={args.threads} "
          f"warmup={args.warmup} steps={args.steps} median_ms={median_ms:.2f} "
          f"mean_ms={mean_ms:.2f} min_ms={min_ms:.2f} "
          f"images_per_s={args.batch / (median_ms / 1e3):.2f} loss={loss:.3f} "
          f"device={args.device} amp={args.amp}"
          + (f" peak_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}" if cuda else ""),
          flush=True)


if __name__ == "__main__":
    main()
