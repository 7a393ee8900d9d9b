#!/usr/bin/env bash
# The GPU checks of issue 12, in one go (GPU time is short and comes rarely).
#
#   bash benchmarks/gpu_checks.sh [OUTPUT_DIR]      # default: $OUT or ./gpu_checks
#
# Needs a machine with an NVIDIA GPU and driver and nvcc. Steps 1-2 need
# nothing else (no TensorFlow): they build the CUDA kernels standalone. Steps
# 3-7 need a Python whose TensorFlow 2.21 sees the GPU (pip install
# "tensorflow[and-cuda]==2.21.0" plus this package's test extra; PYTHON=...
# picks the interpreter) and are skipped, saying so, where it has none.
# Nothing here downloads. Each step runs under its own time limit, logs to
# OUTPUT_DIR, and a failed step does not stop the others; summary.txt lists
# every step's exit status and the script exits non-zero if any failed.
#
#  1. make -C cc test: the standalone CUDA test (cuBLAS GEMMs + our kernels vs
#     the CPU functions);
#  2. make -C cc bench: the CUDA path vs the bare cuBLAS GEMM of the same
#     shape, M = N = 2048 / 8192 / 32768, D = 512 (cc/cuda_kernel_bench.cu);
#  3. build the op with METRIX_TF_CUDA=1 (setup.py build_ext --inplace) and
#     check that it loads with its CUDA kernels;
#  4. the op and loss tests with the GPU visible (the op runs on the GPU);
#  5. bench_op.py: op vs bare tf.matmul vs pure TF at M = N = 2048 / 8192 /
#     32768, D = 512, forward + backward;
#  6. one ResNet-50 training step per level and precision (bench_levels.py,
#     128 x 128 and 224 x 224, 8 classes x 4);
#  7. bench_vs_pytorch.py if PyTorch with CUDA is installed.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_checks}}"
mkdir -p "$OUT_DIR"
PYTHON="${PYTHON:-python3}"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
failed=0

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$SUMMARY"
  local start=$SECONDS
  timeout --kill-after=20 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - start)) s" | tee -a "$SUMMARY"
  tail -n 25 "$OUT_DIR/$name.log"
  [ "$rc" -eq 0 ] || failed=1
  return 0
}

{
  date -u
  nvidia-smi || true
  command -v nvcc && nvcc --version
  "$PYTHON" -c "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices('GPU'))"
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"

export TF_CPP_MIN_LOG_LEVEL=2
# The machine's GPU only: build for its compute capability (faster build).
ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
export METRIX_TF_CUDA_ARCHS="${METRIX_TF_CUDA_ARCHS:-${ARCH:-90}}"

# cuBLAS for the standalone programs: the op's own search (cc/cublas_gemm.h),
# helped by the CUDA toolkit's copy when the loader does not know it.
if [ -z "${METRIX_TF_CUBLAS:-}" ] && ! ldconfig -p 2>/dev/null | grep -q "libcublas.so.1[23] "; then
  found="$(find /usr/local/cuda*/ /opt "$("$PYTHON" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" \
    -name 'libcublas.so.1[23]' 2>/dev/null | head -n1)"
  [ -n "$found" ] && export METRIX_TF_CUBLAS="$found"
fi
echo "cuBLAS: ${METRIX_TF_CUBLAS:-found by the loader}" | tee -a "$SUMMARY"
CUDA_ARCH_FLAGS="-gencode arch=compute_${METRIX_TF_CUDA_ARCHS%%,*},code=sm_${METRIX_TF_CUDA_ARCHS%%,*}"
step cuda_kernel_test 300 make -C cc test CUDA_ARCH="$CUDA_ARCH_FLAGS"
step cuda_kernel_bench 300 make -C cc bench CUDA_ARCH="$CUDA_ARCH_FLAGS"

if ! "$PYTHON" -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" \
    > /dev/null 2>&1; then
  echo "== steps 3-7 skipped: $PYTHON has no TensorFlow that sees the GPU" | tee -a "$SUMMARY"
else
  step build 600 env METRIX_TF_CUDA=1 "$PYTHON" setup.py build_ext --inplace --force
  step load 120 "$PYTHON" -c "
import metrix_tf.ops as o, tensorflow as tf
info = o.library_info(); print(o.backend(), info)
assert o.backend() == 'compiled' and info.get('cuda'), info
assert tf.config.list_physical_devices('GPU'), 'TensorFlow sees no GPU'
"
  step op_and_loss_tests 600 "$PYTHON" -m pytest -q -x tests/test_ops.py tests/test_ops_fused.py \
    tests/test_losses_oracle.py tests/test_losses_fused.py tests/test_losses_api.py
  step bench_op 600 "$PYTHON" benchmarks/bench_op.py --sizes 2048,8192,32768 --skip-memory
  for precision in float32 mixed_float16 mixed_bfloat16; do
    for size in 128 224; do
      step "bench_levels_${precision}_${size}" 300 "$PYTHON" benchmarks/bench_levels.py \
        --image-size "$size" --classes 8 --per-class 4 --precision "$precision" --rounds 3 \
        --strategy positive_negative
    done
  done
  if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    step bench_vs_pytorch 600 "$PYTHON" benchmarks/bench_vs_pytorch.py --device gpu --rounds 5
  else
    echo "== bench_vs_pytorch: skipped (no PyTorch with CUDA)" | tee -a "$SUMMARY"
  fi
fi

echo "summary:"
cat "$SUMMARY"
exit "$failed"
