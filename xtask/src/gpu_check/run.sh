#!/usr/bin/env bash
# lvface's one-shot GPU check. On the GPU machine, in this folder: `./run.sh` (8 minutes at
# most: every step has its own time limit within the budget). `./run.sh --dry-run` runs the same steps at toy
# sizes on the CPU backend, to check the bundle anywhere. Logs go to results/, and
# results/results.json gathers what every step measured.
set -u
cd "$(dirname "$0")"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=results
rm -rf "$OUT" runs
mkdir -p "$OUT"
: > "$OUT/steps.jsonl"
BACKEND=cuda
[ "$DRY" = 1 ] && BACKEND=cpu
export RUST_BACKTRACE=0

# The CUDA headers NVRTC compiles against, when the bundle carries them and CUDA_PATH is unset.
if [ -f cuda-headers.tar.gz ] && [ -z "${CUDA_PATH:-}" ]; then
    mkdir -p cuda && tar xzf cuda-headers.tar.gz -C cuda && export CUDA_PATH="$PWD/cuda"
fi

have_gpu() { [ "$DRY" = 0 ] && command -v nvidia-smi > /dev/null 2>&1; }

# The whole check stays within BUDGET seconds: a step gets its own limit or what is left, and
# is skipped (exit code -1) when less than 15 s are left. Steps run most important first.
BUDGET=${BUDGET:-480}
BEGIN=$(date +%s)

# run NAME LIMIT_SECONDS COMMAND...: the output in results/NAME.log, one line in steps.jsonl
# (exit code, seconds, the GPU's peak memory.used in MiB while it ran where nvidia-smi exists).
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - BEGIN)))
    if [ "$left" -lt 15 ]; then
        printf '{"step":"%s","rc":-1,"seconds":0,"gpu_peak_mib":null,"skipped":true}\n' \
            "$name" >> "$OUT/steps.jsonl"
        echo "skipped: the check's time budget" > "$OUT/$name.log"
        echo "== $name: skipped (${left} s of the budget left)"
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    local sampler=""
    if have_gpu; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
            > "$OUT/$name.mem" 2> /dev/null &
        sampler=$!
    fi
    local start end rc peak=null
    start=$(date +%s.%N)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    if [ -n "$sampler" ]; then
        kill "$sampler" 2> /dev/null
        wait "$sampler" 2> /dev/null
        peak=$(sort -n "$OUT/$name.mem" | tail -n 1)
        [ -n "$peak" ] || peak=null
    fi
    printf '{"step":"%s","rc":%d,"seconds":%s,"gpu_peak_mib":%s}\n' \
        "$name" "$rc" "$(awk "BEGIN { printf \"%.1f\", $end - $start }")" "$peak" >> "$OUT/steps.jsonl"
    if [ "$peak" = null ]; then
        echo "== $name: exit $rc"
    else
        echo "== $name: exit $rc, GPU memory peak $peak MiB"
    fi
    tail -n 4 "$OUT/$name.log"
}

echo "== what this machine has"
{
    date -u
    uname -a
    grep -m1 "model name" /proc/cpuinfo
    if command -v nvidia-smi > /dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' \
        2>&1 || echo "torch: not importable"
} | tee "$OUT/machine.log"
run cuda_env 20 ./lvface cuda-env

run parity_f32 60 ./lvface parity --fixture fixtures/vit-parity --backend "$BACKEND"
run smoke_f32 90 ./lvface train --config configs/smoke.toml --backend "$BACKEND" --out runs/smoke-f32

# Training-step throughput in bf16, lvface beside PyTorch (autocast) on the same device: vit_t
# first, vit_b after the bf16 checks.
if [ "$DRY" = 1 ]; then
    STEPS=(--warmup 0 --steps 1 --classes 100)
    TORCH_DEVICE=cpu
    BATCH=2
else
    STEPS=(--warmup 3 --steps 10 --classes 100000)
    TORCH_DEVICE=cuda
    BATCH=128
fi
step_pair() {
    local model=$1
    run "step_${model}_lvface" 75 ./lvface probe --train-step --backend "$BACKEND" --model "$model" \
        --batch "$BATCH" --compute-dtype bf16 "${STEPS[@]}"
    run "step_${model}_torch" 75 python3 reference/train_step_torch.py --device "$TORCH_DEVICE" \
        --amp bf16 --threads "$(nproc)" --model "$model" --batch "$BATCH" "${STEPS[@]}"
}
step_pair vit_t

run parity_bf16 60 ./lvface parity --fixture fixtures/vit-parity --backend "$BACKEND" --compute-dtype bf16
run smoke_bf16 90 ./lvface train --config configs/smoke.toml --backend "$BACKEND" \
    --out runs/smoke-bf16 --set 'vit.compute_dtype="bf16"'

[ "$DRY" = 1 ] || step_pair vit_b

# NCCL: a one-rank communicator all-reduces 256 MiB on the GPU (what ranks on several GPUs, in one
# process or several, go through; NCCL refuses two ranks on one GPU), then --devices 1.
NCCL_ELEMENTS=67108864
[ "$DRY" = 1 ] && NCCL_ELEMENTS=1024
run nccl_one_rank 45 ./lvface cuda-env --all-reduce "$NCCL_ELEMENTS"
run devices_1 60 ./lvface train --config configs/smoke.toml --backend "$BACKEND" --devices 1 \
    --out runs/devices-1

python3 results.py "$OUT" "$DRY"
