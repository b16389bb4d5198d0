#!/usr/bin/env bash
# One-command GPU check: build dlkern with CUDA for this machine's GPU (sm_90 unless
# DLKERN_CUDA_ARCHITECTURES says otherwise), run the CUDA tests, then time the CUDA
# kernels beside PyTorch CUDA (when torch is importable). Everything it reports goes
# under OUTDIR: nvidia-smi.txt, build.log, tests.log, bench.md/.log, train.md/.log. Build files go to a
# scratch directory (DLKERN_GPU_BUILD_DIR to keep them). Sized for ~8 minutes.
#   usage: bench/gpu_check.sh OUTDIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
build=${DLKERN_GPU_BUILD_DIR:-$(mktemp -d)}
archs=${DLKERN_CUDA_ARCHITECTURES:-90}
py=${PYTHON:-python3}

{ nvidia-smi || echo "nvidia-smi failed"; } > "$out/nvidia-smi.txt" 2>&1

echo "== build (CUDA archs $archs) into $build"
start=$(date +%s)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
{
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDLKERN_CUDA=ON \
        -DDLKERN_CUDA_ARCHITECTURES="$archs" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)"
  cmake --build "$build" -j "$(nproc)" --target _C _C_cuda
} > "$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; echo "build failed: see $out/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s" | tee -a "$out/build.log"

# The package as it would be installed: the Python sources plus the two modules.
pkg="$build/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$root/python/dlkern" "$pkg/"
cp "$build"/_C.*.so "$build"/_C_cuda.*.so "$pkg/dlkern/"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}"
# An installed dlkern (an editable install's import hook, say) would shadow the staged one.
found=$("$py" -c "import dlkern._C_cuda as m; print(m.__file__)")
case "$found" in
  "$pkg"/*) ;;
  *) echo "import dlkern._C_cuda finds $found, not the build staged in $pkg:" \
          "run this where dlkern is not installed (or uninstall it)" >&2; exit 1 ;;
esac

echo "== CUDA tests"
status=0
# On a machine whose driver lists a GPU, a CUDA test that skips (module not built, no
# usable device) is a failure, not a pass: tests/conftest.py fails the session then.
require_cuda=0
nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && require_cuda=1
# Every CUDA kernel suite, and the device-parity suite (tensors, modules, optimizers,
# LeNet and GPT training on the GPU against the same work on the CPU).
# Time limits keep a hung kernel from eating the whole device budget; pytest dumps the
# stacks of any test still running after 60 s (faulthandler) before the limit kills it.
( cd "$root" && DLKERN_REQUIRE_CUDA=$require_cuda timeout "${DLKERN_GPU_TEST_LIMIT:-300}" "$py" -m pytest -q -rs -p no:cacheprovider \
    -o faulthandler_timeout=60 tests/test_cuda*.py tests/test_device*.py ) \
  > "$out/tests.log" 2>&1 || status=$?
tail -n 5 "$out/tests.log"

echo "== CUDA benchmarks"
# Rows are printed as they are measured (bench.log), so a run cut short still reports.
timeout "${DLKERN_GPU_BENCH_LIMIT:-150}" "$py" "$root/bench/cuda_bench.py" --out "$out/bench.md" 2>&1 \
  | tee "$out/bench.log" || status=$?
echo "== CUDA training steps/s (MLP, LeNet-5, tiny GPT)"
timeout "${DLKERN_GPU_BENCH_LIMIT:-150}" "$py" "$root/bench/cuda_train_bench.py" --out "$out/train.md" 2>&1 \
  | tee "$out/train.log" || status=$?
exit $status
