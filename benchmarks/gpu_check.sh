#!/usr/bin/env bash
# The GPU check (docs/gpu.md): what to run first on a machine with a GPU.
#
#   bash benchmarks/gpu_check.sh          on a GPU, from a bare checkout: install, build the CUDA
#                                         kernels, run the tests marked cuda, a smoke Table 1 with
#                                         --device cuda, the op benchmarks against the device's
#                                         measured copy bandwidth and the IL benchmarks; writes
#                                         results/benchmarks/ops-<gpu>.json, il-generation-<gpu>.json
#                                         and a one-page gpu-check-<gpu>.md (<= 8 minutes on one
#                                         H100/H200 with the wheels cached or a fast link)
#   bash benchmarks/gpu_check.sh --cpu    the same steps on the CPU with tiny sizes, no install, no
#                                         build (GPU_CHECK_CPU=1 too): how the test suite keeps this
#                                         script from rotting (tests/test_gpu_check.py)
#
# Environment:
#   OUT=DIR                   everything goes under DIR (the device tool's $OUT) instead of
#                             results/benchmarks (the figures) and runs/gpu-check-<gpu> (the work)
#   GPU_CHECK_SKIP_INSTALL=1  the environment already has requirements.txt (a machine without
#                             network): skip pip install -r, still build the CUDA kernels
#   GPU_CHECK_SKIP_BUILD=1    the CUDA build of ltbench._C is already in place
#   GPU_CHECK_FULL=1          also time the torch.compile peers of the ops (minutes of compiling)
#   PYTHON=...                the interpreter (default: python)
#
# Every step runs under its own time limit and writes its log next to the results; a failed step
# is reported and the next one still runs (the summary shows what failed); the exit status is 1
# when any step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# this checkout's code, whatever else is installed (pip install -e . below points there too)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
MODE=gpu
if [[ "${1:-}" == "--cpu" || "${GPU_CHECK_CPU:-0}" == "1" ]]; then
  MODE=cpu
fi

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" >&2; }

if [[ "$MODE" == gpu ]]; then
  if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
    log "no NVIDIA GPU here (nvidia-smi fails); run with --cpu for the CPU mode"
    exit 2
  fi
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  SLUG="$(echo "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')"
  DEV=cuda
else
  GPU_NAME="none (CPU mode)"
  SLUG=cpu-check
  DEV=cpu
fi

if [[ -n "${OUT:-}" ]]; then
  DEST="$OUT"
  WORK="$OUT/gpu-check-$SLUG"
elif [[ "$MODE" == gpu ]]; then
  DEST="$ROOT/results/benchmarks"
  WORK="$ROOT/runs/gpu-check-$SLUG"
else  # the CPU mode never writes into results/
  DEST="$ROOT/runs/gpu-check-$SLUG"
  WORK="$DEST/work"
fi
mkdir -p "$DEST" "$WORK"
STEPS="$WORK/steps.tsv"
: > "$STEPS"
FAILED=0
T0=$SECONDS

# step NAME LIMIT_S CMD...: run CMD under a time limit, log to $WORK/NAME.log, record rc and seconds
step() {
  local name=$1 limit=$2
  shift 2
  local t=$SECONDS rc=0
  log "$name: $*"
  timeout --kill-after=30 "$limit" "$@" > "$WORK/$name.log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t))" >> "$STEPS"
  if [[ $rc -ne 0 ]]; then
    FAILED=1
    log "$name FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", over its ${limit} s limit")); its log ends:"
    tail -n 25 "$WORK/$name.log" >&2 || true
  fi
}
skipped() { printf '%s\tskipped: %s\t0\n' "$1" "$2" >> "$STEPS"; }

log "mode $MODE, device: $GPU_NAME; results in $DEST, work in $WORK"
{
  echo "mode=$MODE"
  echo "gpu=$GPU_NAME"
  echo "git=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2> /dev/null || echo -dirty)"
  [[ "$MODE" == gpu ]] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader | head -n 1 | sed 's/^/nvidia_smi=/'
  echo "nproc=$(nproc)"
} > "$WORK/env.txt"

# 1. install and build ------------------------------------------------------------------------
if [[ "$MODE" == cpu ]]; then
  skipped install "CPU mode"
  skipped build "CPU mode (the CPU kernels of the checkout's build are used)"
else
  if [[ "${GPU_CHECK_SKIP_INSTALL:-0}" == "1" ]]; then
    skipped install "GPU_CHECK_SKIP_INSTALL=1"
  else
    step install 420 "$PY" -m pip install --progress-bar off -r requirements.txt
  fi
  if [[ "${GPU_CHECK_SKIP_BUILD:-0}" == "1" ]]; then
    skipped build "GPU_CHECK_SKIP_BUILD=1"
  else
    # this GPU's architecture only: the build's minutes go to the one target that runs here
    ARCH="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))' 2> /dev/null || echo "9.0")"
    step build 420 env FORCE_CUDA=1 MAX_JOBS="$(nproc)" TORCH_CUDA_ARCH_LIST="$ARCH" "$PY" -m pip install --no-build-isolation --no-deps -e .
  fi
  step kernels 60 "$PY" -c 'import sys; from ltbench import ops; b = ops.backend_for("cuda"); print("ops backend on cuda:", b); sys.exit(b != "fused-cuda")'
fi
"$PY" - >> "$WORK/env.txt" 2> /dev/null << 'EOF' || true
import torch
from ltbench import ops
print(f"torch={torch.__version__}")
print(f"cuda={torch.version.cuda}")
print(f"ops_cpu={ops.backend_for('cpu')}")
print(f"ops_cuda={ops.backend_for('cuda')}")
print(f"cpu_isa={ops.cpu_isa()}")
EOF

# 2. the tests marked cuda (in the CPU mode: collected and skipped, so the marker selects them) --
if [[ "$MODE" == gpu ]]; then
  step cuda-tests 420 env LTBENCH_EXPECT_CUDA_BUILD=1 "$PY" -m pytest -m cuda -q -p no:cacheprovider -o addopts= -rfEs --junitxml="$WORK/cuda-tests.xml" tests
else
  step cuda-tests 300 "$PY" -m pytest -m cuda -q -p no:cacheprovider -o addopts= -rfEs --junitxml="$WORK/cuda-tests.xml" tests/test_ops_cuda.py tests/test_method_cuda.py tests/test_ops_fused.py tests/test_ops_extension.py
fi

# 3. a smoke Table 1 on the device ----------------------------------------------------------
SMOKE="$WORK/smoke-$DEV"
rm -rf "$SMOKE"
if [[ "$MODE" == gpu ]]; then
  step smoke-table1 420 "$PY" -m ltbench.reproduce table1 --preset smoke --device "$DEV" --out "$SMOKE" --quiet
else  # two rows: the whole pipeline (data, latents, the IL fit, CAMs, fusion, metrics, classifier)
  step smoke-table1 420 "$PY" -m ltbench.reproduce table1 --preset smoke --device "$DEV" --rows none,fsa-il@0 --out "$SMOKE" --quiet
fi

# 4. the op benchmarks against the measured copy bandwidth, and iterated learning ----------
KSEL="not c-compiled"
[[ "${GPU_CHECK_FULL:-0}" == "1" ]] && KSEL=""
BENCH_ENV=(LTBENCH_BENCH_DEVICE="$DEV")
IL_ENV=()
if [[ "$MODE" == cpu ]]; then
  BENCH_ENV+=(LTBENCH_BENCH_BATCHES=2 LTBENCH_BENCH_C=16 LTBENCH_BENCH_HW=16)
  IL_ENV+=(LTBENCH_BENCH_IL_ROWS=256)
fi
step ops-bench 420 env "${BENCH_ENV[@]}" "$PY" -m pytest benchmarks/test_bench_ops.py --benchmark-only -q -p no:cacheprovider -o addopts= -k "$KSEL" --benchmark-json="$DEST/ops-$SLUG.json"
step il-bench 420 env "${IL_ENV[@]+"${IL_ENV[@]}"}" "$PY" -m pytest benchmarks/test_bench_method.py --benchmark-only -q -p no:cacheprovider -o addopts= --benchmark-json="$DEST/il-generation-$SLUG.json"

# 5. the one-page summary --------------------------------------------------------------------
printf 'total\t%s\t%s\n' "$FAILED" "$((SECONDS - T0))" >> "$STEPS"
step summary 120 "$PY" benchmarks/gpu_summary.py --work "$WORK" --dest "$DEST" --slug "$SLUG" --mode "$MODE" --smoke "$SMOKE" --out "$DEST/gpu-check-$SLUG.md"
log "done in $((SECONDS - T0)) s: $DEST/gpu-check-$SLUG.md$([[ $FAILED -ne 0 ]] && echo " (some steps FAILED)")"
exit "$FAILED"
