#!/usr/bin/env python3
"""PyTorch CPU reference benchmark of the insightface face ViT.

A self-contained implementation of the face ViT described in docs (insightface
`recognition/arcface_torch/backbones/vit.py` layout and state_dict key names), timed in
fp32 on the CPU so that lvface's Rust CPU backend can be compared with it on the same
machine.

Measurements (one machine-readable line each):
  vit_*/eval        model.eval(), torch.no_grad(), forward of a batch of 64
  vit_*/train_step  model.train() (DropPath and token masking active), forward of a
                    batch of 32, loss = out.pow(2).mean(), backward; no optimizer step

`--check-fixture DIR` loads the vit-parity fixture (vit_micro) with strict=True and
prints the max abs difference to the fixture's expected output.
"""

import argparse
import json
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

import torch
from torch import nn

IMG_SIZE = 112
PATCH_SIZE = 9
NUM_FEATURES = 512

# name -> (embed_dim, depth, num_heads, drop_path_rate, mask_ratio)
PRESETS = {
    "vit_micro": (64, 2, 8, 0.0, 0.0),
    "vit_t": (256, 12, 8, 0.1, 0.1),
    "vit_s": (512, 12, 8, 0.1, 0.1),
    "vit_b": (512, 24, 8, 0.1, 0.1),
}


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, bias=True)

    def forward(self, x):
        # [B, 3, 112, 112] -> [B, D, 12, 12] -> [B, 144, D]; the last 4 rows/cols are unused.
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        b, n, d = x.shape
        # Output features are laid out [3][heads][head_dim].
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, N, hd]
        scores = (q @ k.transpose(-2, -1)) * self.scale
        weights = scores.softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample, rescale the kept ones."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        mask.bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    def __init__(self, dim, num_heads, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, 4 * dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class FaceViT(nn.Module):
    def __init__(self, dim, depth, num_heads, drop_path_rate=0.1, mask_ratio=0.1):
        super().__init__()
        self.num_tokens = (IMG_SIZE // PATCH_SIZE) ** 2  # 144
        self.mask_ratio = mask_ratio
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(dim, num_heads, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.feature = nn.Sequential(
            nn.Linear(self.num_tokens * dim, dim, bias=False),
            nn.BatchNorm1d(dim, eps=2e-5),
            nn.Linear(dim, NUM_FEATURES, bias=False),
            nn.BatchNorm1d(NUM_FEATURES, eps=2e-5),
        )
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _mask_tokens(self, x):
        """Keep a random subset of int(N * (1 - 0.1)) tokens per sample.

        The effective ratio is 0.1 whenever masking is enabled (see docs §7).
        Returns the kept tokens and the permutation that restores the original order.
        """
        b, n, d = x.shape
        n_keep = int(n * (1 - 0.1))
        order = torch.rand(b, n, device=x.device).argsort(dim=1)
        restore = order.argsort(dim=1)
        kept = torch.gather(x, 1, order[:, :n_keep, None].expand(-1, -1, d))
        return kept, restore

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        restore = None
        if self.training and self.mask_ratio > 0:
            x, restore = self._mask_tokens(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x.float())
        if restore is not None:
            b, n_keep, d = x.shape
            fill = self.mask_token.expand(b, self.num_tokens - n_keep, d)
            x = torch.cat([x, fill], dim=1)
            x = torch.gather(x, 1, restore[:, :, None].expand(-1, -1, d))
        return self.feature(x.reshape(x.shape[0], -1))


def build(name):
    dim, depth, heads, dpr, mask = PRESETS[name]
    return FaceViT(dim, depth, heads, drop_path_rate=dpr, mask_ratio=mask)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_safetensors(path):
    """Read a .safetensors file; uses the `safetensors` package when installed."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        return load_file(str(path))
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = dtypes[info["dtype"]]
        buf = bytearray(raw[base + start : base + end])
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[key] = flat.reshape(info["shape"]).clone()
    return out


def check_fixture(directory):
    directory = Path(directory)
    model = build("vit_micro")
    state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    io = load_safetensors(directory / "io.safetensors")
    with torch.no_grad():
        got = model(io["input"].float())
    diff = (got - io["output"].float()).abs().max().item()
    ok = diff <= 1e-4
    print(f"fixture=vit_micro dir={directory} strict=True max_abs_diff={diff:.3e} "
          f"tol=1e-4 result={'PASS' if ok else 'FAIL'}")
    return ok


def time_iters(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), statistics.fmean(times), min(times)


def report(name, kind, batch, threads, times):
    median_ms, mean_ms, min_ms = times
    ips = batch / (median_ms / 1e3)
    print(f"bench={name}/{kind} batch={batch} threads={threads} median_ms={median_ms:.2f} "
          f"mean_ms={mean_ms:.2f} min_ms={min_ms:.2f} images_per_s={ips:.2f}", flush=True)


def bench(name, threads, iters, warmup, eval_batch, train_batch):
    torch.manual_seed(0)
    model = build(name)
    params = sum(p.numel() for p in model.parameters())
    print(f"model={name} params={params} params_m={params / 1e6:.2f}", flush=True)

    model.eval()
    x = torch.randn(eval_batch, 3, IMG_SIZE, IMG_SIZE)

    def eval_step():
        with torch.no_grad():
            model(x)

    report(name, "eval", eval_batch, threads, time_iters(eval_step, warmup, iters))

    model.train()
    xt = torch.randn(train_batch, 3, IMG_SIZE, IMG_SIZE)

    def train_step():
        model.zero_grad(set_to_none=True)
        loss = model(xt).pow(2).mean()
        loss.backward()

    report(name, "train_step", train_batch, threads, time_iters(train_step, warmup, iters))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--model", choices=["vit_t", "vit_s"], default="vit_t")
    ap.add_argument("--eval-batch", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--check-fixture", metavar="DIR", help="run the vit-parity fixture check and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    print(f"torch={torch.__version__} python={platform.python_version()} "
          f"threads={torch.get_num_threads()} cpu=\"{cpu_model()}\"", flush=True)

    if args.check_fixture:
        sys.exit(0 if check_fixture(args.check_fixture) else 1)

    bench(args.model, args.threads, args.iters, args.warmup, args.eval_batch, args.train_batch)


if __name__ == "__main__":
    main()
