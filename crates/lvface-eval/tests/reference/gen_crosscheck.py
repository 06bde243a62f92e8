"""Independent numpy implementation of the lvface-eval protocols, and the fixture it writes.

Writes tests/fixtures/crosscheck.json and tests/fixtures/crosscheck_embeddings.f32 (raw
little-endian f32: original embeddings then flipped embeddings, each [2 * pairs, dim]).
tests/crosscheck.rs checks the Rust crate against them. Run from anywhere:

    python3 crates/lvface-eval/tests/reference/gen_crosscheck.py

Needs only numpy. The protocol follows insightface `recognition/arcface_torch/eval/verification.py`
and `eval_ijbc.py`, written out here without sklearn and scipy:
- KFold(n_splits=10, shuffle=False): contiguous folds, the first n % 10 one pair larger;
- best threshold of np.arange(0, 4, 0.01) on the training folds by np.argmax (first best);
- VAL@FAR=1e-3 on np.arange(0, 4, 0.001), threshold from the training FAR curve: with i the last
  index where far <= target, thresholds[i] on an exact hit, else linear between i and i + 1;
- sklearn.metrics.roc_curve(drop_intermediate=True) and insightface's nearest-FPR lookup.
"""

import json
import pathlib
import sys

import numpy as np

SEED = 20240607
PAIRS = 2503
DIM = 3
TAR_SCORES = 8000
TAR_DENOMINATOR = 500
FARS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"


def make_embeddings(rng):
    issame = rng.random(PAIRS) < 0.5
    first = rng.normal(size=(PAIRS, DIM))
    other = rng.normal(size=(PAIRS, DIM))
    noisy = first + 1.1 * rng.normal(size=(PAIRS, DIM))
    second = np.where(issame[:, None], noisy, other)
    # Edge cases: identical pairs (distance exactly 0) and opposite pairs (distance exactly 4).
    second[:5] = first[:5]
    second[5:10] = -first[5:10] * 2.0
    emb = np.empty((2 * PAIRS, DIM))
    emb[0::2] = first
    emb[1::2] = second
    orig = emb.astype(np.float32)
    flip = (emb + 0.2 * rng.normal(size=emb.shape)).astype(np.float32)
    return orig, flip, issame


def kfold(n, k=10):
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    start = 0
    for size in sizes:
        test = np.arange(start, start + size)
        train = np.concatenate([np.arange(0, start), np.arange(start + size, n)])
        yield train, test
        start += size


def accuracy_at(dist, same, thresholds):
    """Accuracy of `dist < t` for every t, vectorised."""
    pred = dist[:, None] < thresholds[None, :]
    correct = (pred & same[:, None]) | (~pred & ~same[:, None])
    return correct.sum(axis=0) / len(dist)


def interpolate(far, thresholds, target):
    if far.max() < target:
        return 0.0
    i = int(np.searchsorted(far, target, side="right")) - 1
    if far[i] == target or i + 1 == len(far):
        return float(thresholds[i])
    x0, x1, y0, y1 = far[i], far[i + 1], thresholds[i], thresholds[i + 1]
    return float(y0 * ((x1 - target) / (x1 - x0)) + y1 * ((target - x0) / (x1 - x0)))


def verification(orig, flip, issame):
    summed = (orig + flip).astype(np.float64)
    norms = np.sqrt((summed * summed).sum(axis=1))
    unit = summed / np.where(norms > 0, norms, 1.0)[:, None]
    dist = ((unit[0::2] - unit[1::2]) ** 2).sum(axis=1)
    raw = np.concatenate([orig, flip]).astype(np.float64)
    xnorm = float(np.sqrt((raw * raw).sum(axis=1)).mean())

    thresholds = np.arange(0, 4, 0.01)
    accs, best = [], []
    for train, test in kfold(len(dist)):
        j = int(np.argmax(accuracy_at(dist[train], issame[train], thresholds)))
        best.append(j)
        accs.append(float(accuracy_at(dist[test], issame[test], thresholds[j : j + 1])[0]))

    val_thresholds = np.arange(0, 4, 0.001)
    vals, fars, val_t = [], [], []
    for train, test in kfold(len(dist)):
        d, s = dist[train], issame[train]
        far_train = ((d[~s][:, None] < val_thresholds[None, :]).sum(axis=0)) / (~s).sum()
        t = interpolate(far_train, val_thresholds, 1e-3)
        d, s = dist[test], issame[test]
        vals.append(float(((d < t) & s).sum() / s.sum()))
        fars.append(float(((d < t) & ~s).sum() / (~s).sum()))
        val_t.append(t)

    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": accs,
        "fold_threshold_indices": best,
        "fold_thresholds": [float(thresholds[j]) for j in best],
        "val": float(np.mean(vals)),
        "val_std": float(np.std(vals)),
        "far": float(np.mean(fars)),
        "fold_val_thresholds": val_t,
        "xnorm": xnorm,
        "distances_head": [float(x) for x in dist[:12]],
    }


def roc_curve(labels, scores, drop_intermediate=True):
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], labels[order].astype(np.float64)
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, len(y) - 1]
    tps = np.cumsum(y)[idx]
    fps = 1 + idx - tps
    thr = s[idx]
    if drop_intermediate and len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps, thr = np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def tar_far(rng):
    labels = rng.random(TAR_SCORES) < 0.25
    raw = np.where(labels, rng.normal(0.55, 0.12, TAR_SCORES), rng.normal(0.05, 0.1, TAR_SCORES))
    k = np.round(raw * TAR_DENOMINATOR).astype(np.int64)  # ties on a 1/500 grid
    scores = k / TAR_DENOMINATOR
    fpr, tpr, thr = roc_curve(labels, scores)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    ffpr, ftpr = np.flipud(fpr), np.flipud(tpr)
    fthr = np.flipud(thr)
    full_fpr, full_tpr, full_thr = roc_curve(labels, scores, drop_intermediate=False)
    out = {"tar": [], "fpr": [], "threshold": [], "tar_at_or_below": [], "threshold_at_or_below": []}
    for x in FARS:
        _, i = min(list(zip(abs(ffpr - x), range(len(ffpr)))))
        out["tar"].append(float(ftpr[i]))
        out["fpr"].append(float(ffpr[i]))
        out["threshold"].append(None if np.isinf(fthr[i]) else float(fthr[i]))
        j = np.where(full_fpr <= x)[0][-1]
        out["tar_at_or_below"].append(float(full_tpr[j]))
        out["threshold_at_or_below"].append(None if np.isinf(full_thr[j]) else float(full_thr[j]))
    return {
        "score_numerators": k.tolist(),
        "denominator": TAR_DENOMINATOR,
        "labels": "".join("1" if l else "0" for l in labels),
        "fars": FARS,
        "impostors": int((~labels).sum()),
        "kept_points": int(len(fpr)),
        "auc": auc,
        **out,
    }


def main():
    rng = np.random.default_rng(SEED)
    orig, flip, issame = make_embeddings(rng)
    fixture = {
        "generator": "tests/reference/gen_crosscheck.py",
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "seed": SEED,
        "pairs": PAIRS,
        "dim": DIM,
        "issame": "".join("1" if s else "0" for s in issame),
        "verification": verification(orig, flip, issame),
        "tar_far": tar_far(rng),
    }
    FIXTURES.mkdir(exist_ok=True)
    with open(FIXTURES / "crosscheck_embeddings.f32", "wb") as f:
        f.write(np.concatenate([orig, flip]).astype("<f4").tobytes())
    with open(FIXTURES / "crosscheck.json", "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    v = fixture["verification"]
    print(f"accuracy={v['accuracy']:.6f} std={v['accuracy_std']:.6f} val={v['val']:.6f}")
    print(f"thresholds={v['fold_thresholds']}")
    print(f"tar={fixture['tar_far']['tar']} impostors={fixture['tar_far']['impostors']}")


if __name__ == "__main__":
    main()
