#!/usr/bin/env python3
"""PyTorch CPU reference of lvface's margin-softmax bench (benches/loss.rs).

ArcFace combined margin (s=64, m=0.5, margin applied without gradient as insightface's
arcface_torch does) + softmax cross-entropy, forward + backward, batch 128, width 512, for
100,000 and 1,000,000 classes at sample rate 1.0 and 0.1 (Partial FC: positives kept, random
negatives, labels remapped). Prints one line per case with the median time and the peak RSS.
"""

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

S, M = 64.0, 0.5


def margin_loss(emb, centres, labels):
    cos = F.linear(F.normalize(emb), F.normalize(centres)).clamp(-1, 1)
    with torch.no_grad():
        idx = torch.arange(len(labels))
        target = cos[idx, labels]
        margined = torch.cos(torch.acos(target) + M)
        delta = torch.zeros_like(cos)
        delta[idx, labels] = margined - target
    return F.cross_entropy(S * (cos + delta), labels)


def sample(labels, classes, rate, generator):
    positives = torch.unique(labels)
    budget = max(int(rate * classes), len(positives))
    scores = torch.rand(classes, generator=generator)
    scores[positives] = 2.0
    index = torch.topk(scores, budget).indices.sort().values
    return index, torch.searchsorted(index, labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--classes", default="100000,1000000")
    # One rate per process gives each case its own peak memory.
    parser.add_argument("--rates", default="1.0,0.1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch={torch.__version__} threads={args.threads}")
    generator = torch.Generator().manual_seed(0)
    for classes in [int(c) for c in args.classes.split(",")]:
        centres = (torch.randn(classes, 512) * 0.01).requires_grad_()
        emb = torch.randn(128, 512, requires_grad=True)
        labels = (torch.arange(128) * 7919) % classes
        for rate in [float(r) for r in args.rates.split(",")]:
            times = []
            for i in range(args.iters + 2):
                start = time.perf_counter()
                if rate < 1.0:
                    index, targets = sample(labels, classes, rate, generator)
                    weights = centres[index]
                else:
                    weights, targets = centres, labels
                margin_loss(emb, weights, targets).backward()
                emb.grad = None
                centres.grad = None
                if i >= 2:
                    times.append(time.perf_counter() - start)
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"bench=margin_softmax/C{classes}/rate{rate} threads={args.threads} "
                f"median_ms={1000 * statistics.median(times):.1f} peak_rss_mb={peak_mb:.0f}"
            )


if __name__ == "__main__":
    main()
