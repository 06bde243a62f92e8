#!/usr/bin/env python3
"""Gathers results/*.log and steps.jsonl of run.sh into results/results.json."""

import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
dry = sys.argv[2] == "1"


def fields(line):
    """The key=value pairs of one line (values as numbers where they are numbers)."""
    found = {}
    for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line):
        value = value.strip('"')
        try:
            value = float(value)
        except ValueError:
            pass
        found[key] = value
    return found


steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line]
for step in steps:
    log = (out / f"{step['step']}.log").read_text(errors="replace").splitlines()
    # The measuring line of each tool: lvface's `parity ...` / `bench=...` / `nccl ...`, PyTorch's
    # `bench=...`.
    measured = [fields(l) for l in log if l.startswith(("parity ", "bench=", "torch=", "nccl "))]
    if measured:
        step["measured"] = measured
    if step["rc"] != 0:
        step["tail"] = log[-6:]
results = {
    "dry_run": dry,
    "machine": (out / "machine.log").read_text(errors="replace").splitlines(),
    "steps": steps,
    "passed": all(s["rc"] == 0 for s in steps),
}
(out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
print(f"results: {out / 'results.json'}: {sum(s['rc'] == 0 for s in steps)} of {len(steps)} steps passed")
