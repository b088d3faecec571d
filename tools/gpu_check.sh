#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA GPU, in one call of a few minutes.
#
#   bash tools/gpu_check.sh              # on the GPU machine (one H200, sm_90): build, test, sanitize, measure
#   bash tools/gpu_check.sh --dry-run    # here, without a GPU: the same steps, the GPU ones skipped
#   bash tools/gpu_check.sh --dry-run --no-build   # the shell logic alone (what its test runs)
#
# Steps, each under its own time limit (seconds; the whole run stays under 8 minutes):
#   env        nvidia-smi, nvcc, torch and the build switches                              15
#   build      NYTORCH_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=<cores>, in place       180
#              (the dry run builds into a temporary folder instead: the checkout's _C stays)
#   tests      pytest -m cuda (the CUDA tests, CPU<->CUDA parity included)                   90
#   memcheck   compute-sanitizer --tool memcheck on a short CUDA smoke run                   60
#   racecheck  compute-sanitizer --tool racecheck on the same                                45
#   bench      fused_vs_eager.py --device cuda: blend_/axpby_ at 64 MB and 400 MB (%copy),  60
#              APSO on the ConvNet and 10 x Linear(1000, 1000) swarms
#   apso12     Swarm.apso_step moving 11 of 12 members in one launch per group, against     30
#              one torch._foreach_lerp_ call per member
# Results go to $OUT (default ./gpu_check_out), at most 8 files: summary.txt (one line per
# step, then the targets), env.txt, build.log, tests.log, sanitizer.log, bench.log,
# bench.json, apso12.log. Record them in docs/benchmarks.md ("The GPU check").
# nytorch (pure Python) can travel as a wheel: .whl/nytorch-1.1.0-*.whl is installed if present.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg (use --dry-run, --no-build)" >&2; exit 2 ;;
  esac
done

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
START=$(date +%s)
TOTAL=${GPU_CHECK_SECONDS:-470}   # the whole run's limit, under 8 minutes
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME BUDGET LOG COMMAND...: run COMMAND under `timeout BUDGET`, output to LOG
# (appended); skipped when less than BUDGET is left of the whole run.
step() {
  local name=$1 budget=$2 log=$3; shift 3
  local left=$((TOTAL - ($(date +%s) - START)))
  if [ "$left" -lt "$budget" ]; then
    note "$name: skipped (${left}s left of ${TOTAL}s, the step needs up to ${budget}s)"
    return 0
  fi
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*" >>"$log"
  timeout --kill-after=5 "$budget" "$@" >>"$log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    note "$name: ok (${took}s of ${budget}s)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note "$name: TIMED OUT after ${budget}s (see $(basename "$log"))"; FAILED=1
  else
    note "$name: FAILED, exit $rc (${took}s; see $(basename "$log"))"; FAILED=1
  fi
}

skip_gpu() {  # skip_gpu NAME COMMAND...: a GPU step in a dry run: say what would run
  local name=$1; shift
  note "$name: skipped (dry run): would run: $*"
}

note "gpu_check $( [ $DRY = 1 ] && echo '(dry run) ')started $(date -u +%FT%TZ) in $PWD"

# ------------------------------------------------------------------- nytorch wheel
if ls .whl/nytorch-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .whl/nytorch-*.whl \
    && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi

# ------------------------------------------------------------------- env
env_info() {
  nvidia-smi || echo "nvidia-smi: not available"
  nvcc --version || echo "nvcc: not available"
  command -v compute-sanitizer || echo "compute-sanitizer: not available"
  "$PY" -c 'import torch, sys; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
  echo "cores: $(nproc)"
}
export PY
export -f env_info
step env 15 "$OUT/env.txt" bash -c env_info

# ------------------------------------------------------------------- build
JOBS=$(nproc)
if [ $BUILD = 0 ]; then
  note "build: skipped (--no-build)"
elif [ $DRY = 1 ]; then
  TOTAL=$((TOTAL + 900))  # the dry run's build on a small CPU machine is not held to the GPU run's limit
  TMP_BUILD=$(mktemp -d)
  trap 'rm -rf "$TMP_BUILD"' EXIT
  step build 900 "$OUT/build.log" env NYTORCH_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$JOBS" \
    "$PY" setup.py -q build --build-base "$TMP_BUILD"
else
  step build 180 "$OUT/build.log" env NYTORCH_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$JOBS" \
    "$PY" setup.py -q build_ext --inplace
  step loaded 15 "$OUT/build.log" "$PY" -c 'from nytorch_ext import ops; info = ops.backend_info(); print(info)
assert info["cuda"] == "compiled", info'
fi

# ------------------------------------------------------------------- tests
TESTS=(-m "pytest" -q -m cuda -p no:cacheprovider tests/ops tests/swarm tests/train)
if [ $DRY = 1 ]; then
  # the selection must not be empty: collect it (every test skips without a GPU)
  step tests-collect 90 "$OUT/tests.log" "$PY" "${TESTS[@]}" --collect-only
  skip_gpu tests "$PY ${TESTS[*]}"
else
  step tests 90 "$OUT/tests.log" env NYTORCH_EXT_REQUIRE_COMPILED=1 "$PY" "${TESTS[@]}"
fi

# ------------------------------------------------------------------- sanitizer
# Every op once on CUDA: aligned and unaligned, a tail, a list that needs several launches,
# lincomb past 16 inputs (scratch), the noise ops, half types. Each checked against the CPU.
SMOKE=$(cat <<'PY'
import torch
from nytorch_ext import ops
assert torch.cuda.is_available(), "no CUDA device"
def pair(n, dtype, off=0):
    g = torch.Generator().manual_seed(n + off)
    return [torch.randn(n + off, generator=g).to(dtype)[off:].cuda() for _ in range(2)]
for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
    for n, off in ((1, 0), (1000, 0), (4099, 1), (1 << 20, 3)):
        x, y = pair(n, dtype, off)
        for got, want in ((ops.blend(x, y, 0.3), torch.lerp(x.cpu(), y.cpu(), 0.3)),
                          (ops.axpby(0.9, x, 0.1, y), (0.9 * x.double() + 0.1 * y.double()).to(dtype).cpu()),
                          (ops.lincomb([0.5] * 20, [x, y] * 10), (5.0 * (x.double() + y.double())).to(dtype).cpu())):
            torch.testing.assert_close(got.cpu(), want, rtol=2e-2, atol=2e-2)
        ops.blend_(x, y, 0.7); ops.axpby_(1.0, x, 0.1, y)
        ops.blend_noise_(x, y, 0.5, 0.1, seed=3, stream=1)
    ts = [torch.randn(s, device="cuda").to(dtype) for s in [7, 1000, 65537] * 40]
    ops.multi_blend_(ts, [t.clone() for t in ts], [0.25] * len(ts))
    ops.multi_axpby_(ts, 1.0, ts, 0.5, [t.clone() for t in ts])
    ops.multi_scale_(ts, 0.5)
    ops.multi_blend_noise_(ts, [t.clone() for t in ts], [0.3] * len(ts), 0.1, seed=5, streams=list(range(len(ts))))
torch.cuda.synchronize()
print("smoke: every op ran on CUDA and agreed with the CPU")
PY
)
SAN=(compute-sanitizer --error-exitcode 9 --print-limit 20)
if [ $DRY = 1 ]; then
  skip_gpu memcheck "PYTORCH_NO_CUDA_MEMORY_CACHING=1 ${SAN[*]} --tool memcheck $PY -c <smoke>"
  skip_gpu racecheck "PYTORCH_NO_CUDA_MEMORY_CACHING=1 ${SAN[*]} --tool racecheck $PY -c <smoke>"
else
  step memcheck 60 "$OUT/sanitizer.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${SAN[@]}" --tool memcheck \
    "$PY" -c "$SMOKE"
  step racecheck 45 "$OUT/sanitizer.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${SAN[@]}" --tool racecheck \
    "$PY" -c "$SMOKE"
fi

# ------------------------------------------------------------------- benchmark
# 1.6e7 float32 elements are 64 MB per operand; 1e8 are 400 MB.
BENCH=(benchmarks/fused_vs_eager.py --device cuda --workloads blend_,axpby_,apso --shapes flat,convnet,mlp10x1000
       --sizes 1.6e7,1e8 --rounds 25 --budget 0.5 --json "$OUT/bench.json")
step bench 60 "$OUT/bench.log" "$PY" "${BENCH[@]}"

APSO12=$(cat <<'PY'
import statistics, sys, torch
from torch import nn
import nytorch_ext as nyto
if not torch.cuda.is_available():
    print("apso12: skipped, no CUDA device"); sys.exit(0)
def convnet():
    return nn.Sequential(nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 3), nn.Flatten(), nn.Linear(2000, 10))
class Wrap(nyto.NytoModule):
    def __init__(self, make):
        super().__init__(); self.body = make()
def timed(fn, n=50):
    for _ in range(5): fn()
    times = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize(); times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)
for name, make in (("convnet", convnet), ("10 x Linear(1000, 1000)", lambda: nn.Sequential(*[nn.Linear(1000, 1000) for _ in range(10)]))):
    torch.manual_seed(0)
    swarm = nyto.Swarm.spawn(nyto.ParticleModule(Wrap(make).cuda()), 12, init="randn")
    losses = list(range(12)); losses[0] = -1.0
    params = [list(m.parameters()) for m in swarm]
    with torch.no_grad():
        ours = timed(lambda: swarm.apso_step(losses, 0.3, 12, replace=False, generator=torch.Generator().manual_seed(0)))
        theirs = timed(lambda: [torch._foreach_lerp_(params[i], params[0], 0.3) for i in range(1, 12)])
    print(f"apso12 {name}: Swarm.apso_step {ours:.1f} us, 11 x _foreach_lerp_ {theirs:.1f} us: {theirs / ours:.2f}x "
          f"(target >= 3x)")
PY
)
if [ $DRY = 1 ]; then
  skip_gpu apso12 "$PY -c <apso12>"
else
  step apso12 30 "$OUT/apso12.log" "$PY" -c "$APSO12"
fi

# ------------------------------------------------------------------- targets
targets() {
  "$PY" - "$OUT/bench.json" <<'PY'
import json, sys
try:
    run = json.load(open(sys.argv[1]))
except (OSError, ValueError) as exc:
    print(f"targets: no benchmark results ({exc})"); sys.exit(0)
rows = [r for r in run["rows"] if r["device"] == "cuda" and r["skipped"] is None]
if not rows:
    print("targets: no CUDA rows (" + "; ".join(r["skipped"] for r in run["rows"] if r["skipped"])[:200] + ")")
for r in rows:
    if r["family"] == "ext-ops" and r["workload"] in ("blend_", "axpby_") and r["elements"] * 4 >= 64e6:
        ok = r["copy_fraction"] >= 0.9
        print(f"{'PASS' if ok else 'FAIL'} {r['impl']} {r['shape']}: {100 * r['copy_fraction']:.0f}% of a copy's "
              f"bandwidth ({r['gbps']:.0f} GB/s; target >= 90%)")
for line in run.get("verdict", {}).get("lines", []):
    print("verdict:", line)
PY
}
targets | tee -a "$SUMMARY"
[ -f "$OUT/apso12.log" ] && grep '^apso12' "$OUT/apso12.log" | tee -a "$SUMMARY"
note "gpu_check finished in $(($(date +%s) - START))s$( [ $FAILED = 1 ] && echo ', with failures')"
exit $FAILED
