// Standalone timing of the CUDA path against the bare cuBLAS GEMM of the
// same shape (no TensorFlow needed). Build and run on a machine with a GPU:
//
//   make -C cc bench                   # M = N = 2048, 8192, 32768; D = 512
//   cc/cuda_kernel_bench 4096 512      # one size: M = N = 4096, D = 512
//
// The goal of the CUDA path (issue 12) is to cost little more than the bare
// matmul: for each size it times, with CUDA events (median of 10 runs after
// 3 warm-ups, float, TF32 allowed as TensorFlow allows it by default):
//   gemm        S = A C^T                        (tf.matmul forward)
//   gemm+grad   S, then G C and G^T A            (tf.matmul forward + backward)
//   labels      S and the soft labels Y          (the materialised op)
//   exp         fused multi-similarity / proxy-anchor row reductions
//   exp+grad    the same forward, then its fused backward
//   contr       fused contrastive row reductions
//   contr+grad  the same forward, then its fused backward
// at the op's strip height and (where it is below M) 4 times taller,
// and prints each time with its ratio to the bare GEMM of the same pass
// (forward to `gemm`, forward + backward to `gemm+grad`). The fused
// reductions never hold the M x N matrices (strips of at most 2^26 entries);
// the bare GEMMs do, which at M = N = 32768 is 4 GiB per matrix.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "cc/cublas_gemm.h"
#include "cc/cuda_check.h"
#include "cc/soft_label_similarity_kernels.h"

namespace {

template <typename T>
T* Upload(const std::vector<T>& host) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, sizeof(T) * std::max<size_t>(host.size(), 1)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), sizeof(T) * host.size(),
                        cudaMemcpyHostToDevice));
  return ptr;
}

template <typename T>
T* Allocate(size_t n) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, sizeof(T) * std::max<size_t>(n, 1)));
  return ptr;
}

// Median milliseconds of `runs` calls after `warmup` calls.
double TimeMs(const std::function<void()>& body, int warmup = 3, int runs = 10) {
  for (int r = 0; r < warmup; ++r) body();
  CHECK_CUDA(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    CHECK_CUDA(cudaEventRecord(start));
    body();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Breakdown {
  int64_t m, strip_rows;
  double strip_fwd, exp_kernels, contr_kernels, strip_bwd, exp_bwd_kernels,
      contr_bwd_kernels;
};
std::vector<Breakdown> breakdown;

void RunSize(int64_t m, int64_t d, int64_t strip_multiplier) {
  using T = float;
  using L = int32_t;
  const int64_t n = m;
  const metrix::cuda::GpuContext gpu{nullptr, /*allow_tf32=*/true};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> label(0, static_cast<int>(m / 4));
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<T> a(m * d), c(n * d), lam(n), grad_rows(m);
  std::vector<L> al(m), la(n), lb(n);
  auto normalised = [&](std::vector<T>& x, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      double norm = 0;
      for (int64_t k = 0; k < d; ++k) {
        x[r * d + k] = normal(rng);
        norm += double(x[r * d + k]) * x[r * d + k];
      }
      for (int64_t k = 0; k < d; ++k) x[r * d + k] /= T(std::sqrt(norm) + 1e-12);
    }
  };
  normalised(a, m);
  normalised(c, n);
  for (int64_t i = 0; i < m; ++i) {
    al[i] = label(rng);
    grad_rows[i] = normal(rng);
  }
  for (int64_t j = 0; j < n; ++j) {  // half the candidates are mixes
    la[j] = label(rng);
    lb[j] = (j % 2 == 0) ? label(rng) : la[j];
    lam[j] = (j % 2 == 0) ? uniform(rng) : T(1);
  }
  T* da = Upload(a);
  T* dc = Upload(c);
  T* dlam = Upload(lam);
  T* dg = Upload(grad_rows);
  L* dal = Upload(al);
  L* dla = Upload(la);
  L* dlb = Upload(lb);
  const metrix::PairInputs<T, L> in{da, dal, dc, dla, dlb, dlam, m, n, d, false};

  // Bare GEMMs (and the materialised op) hold the M x N matrices.
  T* s = Allocate<T>(m * n);
  T* y = Allocate<T>(m * n);  // the soft labels; dL/dS for gemm+grad
  CHECK_CUDA(cudaMemset(y, 0, sizeof(T) * m * n));
  T* ga = Allocate<T>(m * d);
  T* gc = Allocate<T>(n * d);
  const int64_t strip_rows =
      std::min(m, metrix::cuda::FusedStripRows(m, n) * strip_multiplier);
  T* strip_data = Allocate<T>(strip_rows * n);
  const metrix::cuda::StripWorkspace<T> strip{strip_data, strip_rows};
  std::vector<T*> rows;
  for (int r = 0; r < 6; ++r) rows.push_back(Allocate<T>(m));

  auto gemm = [&] {
    CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, false, true, m, n, d,
                                             T(1), da, d, dc, d, T(0), s, n));
  };
  auto gemm_grad = [&] {
    gemm();
    CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, false, false, m, d, n,
                                             T(1), y, n, dc, d, T(0), ga, d));
    CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, true, false, n, d, m,
                                             T(1), y, n, da, d, T(0), gc, d));
  };
  auto labels = [&] {
    CHECK_CUDA((metrix::cuda::LaunchSoftLabelSimilarity<T, L>(gpu, in, s, y)));
  };
  const metrix::ExpParams<T> ep{T(2), T(0.5), T(50), T(0.5), T(0.1), true};
  const metrix::ExpOutputs<T> eo{rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]};
  const metrix::ExpGradInputs<T> eg{rows[0], rows[1], rows[2], rows[3], dg, dg};
  auto exp_fwd = [&] {
    CHECK_CUDA((metrix::cuda::LaunchExpReductions<T, L>(gpu, in, ep, eo, strip)));
  };
  auto exp_grad = [&] {
    exp_fwd();
    CHECK_CUDA((metrix::cuda::LaunchExpReductionsGrad<T, L>(gpu, in, ep, eg, ga, gc,
                                                            strip)));
  };
  const metrix::ContrastiveParams<T> cp{T(0), T(0.5)};
  const metrix::ContrastiveOutputs<T> co{rows[0], rows[1], rows[2], rows[3]};
  const metrix::ContrastiveGradInputs<T> cg{dg, dg};
  auto contr_fwd = [&] {
    CHECK_CUDA((metrix::cuda::LaunchContrastiveReductions<T, L>(gpu, in, cp, co, strip)));
  };
  auto contr_grad = [&] {
    contr_fwd();
    CHECK_CUDA((metrix::cuda::LaunchContrastiveReductionsGrad<T, L>(gpu, in, cp, cg, ga,
                                                                    gc, strip)));
  };

  const double t_gemm = TimeMs(gemm);
  const double t_gemm_grad = TimeMs(gemm_grad);
  const double t_labels = TimeMs(labels);
  const double t_exp = TimeMs(exp_fwd);
  const double t_exp_grad = TimeMs(exp_grad);
  const double t_contr = TimeMs(contr_fwd);
  const double t_contr_grad = TimeMs(contr_grad);
  // The cuBLAS share of the fused passes: the same strip GEMMs alone.
  auto strip_gemms = [&](bool backward) {
    for (int64_t r0 = 0; r0 < m; r0 += strip_rows) {
      const int64_t rows = std::min(strip_rows, m - r0);
      CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, false, true, rows, n, d,
                                               T(1), da + r0 * d, d, dc, d, T(0),
                                               strip_data, n));
      if (!backward) continue;
      CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, false, false, rows, d, n,
                                               T(1), strip_data, n, dc, d, T(0),
                                               ga + r0 * d, d));
      CHECK_CUDA(metrix::cuda::RowMajorGemm<T>(nullptr, true, true, false, n, d, rows,
                                               T(1), strip_data, n, da + r0 * d, d,
                                               r0 > 0 ? T(1) : T(0), gc, d));
    }
  };
  const double t_strip_fwd = TimeMs([&] { strip_gemms(false); });
  const double t_strip_bwd = TimeMs([&] { strip_gemms(true); });
  breakdown.push_back({m, strip_rows, t_strip_fwd, t_exp - t_strip_fwd,
                       t_contr - t_strip_fwd, t_strip_bwd,
                       t_exp_grad - t_exp - t_strip_bwd,
                       t_contr_grad - t_contr - t_strip_bwd});
  const double tflops = 2.0 * m * n * d / (t_gemm * 1e-3) / 1e12;
  std::printf(
      "| %6ld | %4ld | %5ld | %7.3f (%5.0f TFLOP/s) | %7.3f | %7.3f (%.2fx) | %7.3f (%.2fx) "
      "| %7.3f (%.2fx) | %7.3f (%.2fx) | %7.3f (%.2fx) |\n",
      static_cast<long>(m), static_cast<long>(d), static_cast<long>(strip_rows), t_gemm,
      tflops, t_gemm_grad,
      t_labels, t_labels / t_gemm, t_exp, t_exp / t_gemm, t_exp_grad,
      t_exp_grad / t_gemm_grad, t_contr, t_contr / t_gemm, t_contr_grad,
      t_contr_grad / t_gemm_grad);
  std::fflush(stdout);

  for (void* p : {static_cast<void*>(da), static_cast<void*>(dc),
                  static_cast<void*>(dlam), static_cast<void*>(dg),
                  static_cast<void*>(dal), static_cast<void*>(dla),
                  static_cast<void*>(dlb), static_cast<void*>(s),
                  static_cast<void*>(y), static_cast<void*>(ga),
                  static_cast<void*>(gc), static_cast<void*>(strip_data)}) {
    cudaFree(p);
  }
  for (T* p : rows) cudaFree(p);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device: nothing to time\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::vector<int64_t> sizes = {2048, 8192, 32768};
  int64_t d = 512;
  if (argc >= 2) sizes = {std::atoll(argv[1])};
  if (argc >= 3) d = std::atoll(argv[2]);
  std::printf("%s, float, TF32 allowed; ms, median of 10; ratio to the bare GEMM "
              "of the same pass\n\n",
              prop.name);
  std::printf("| M = N | D | strip rows | gemm | gemm+grad | labels | exp | exp+grad | "
              "contr | contr+grad |\n|---|---|---|---|---|---|---|---|---|---|\n");
  // The op's strips (2^26 entries), then strips 4 times as tall.
  for (int64_t m : sizes) {
    RunSize(m, d, 1);
    if (metrix::cuda::FusedStripRows(m, m) < m) RunSize(m, d, 4);
  }
  std::printf("\nWhere the fused passes' time goes (ms): the strip GEMMs alone "
              "(cuBLAS), and the rest (our kernels)\n\n"
              "| M = N | strip rows | fwd GEMMs | exp fwd kernels | contr fwd kernels "
              "| bwd GEMMs (3 per strip) | exp bwd kernels | contr bwd kernels |\n"
              "|---|---|---|---|---|---|---|---|\n");
  for (const Breakdown& b : breakdown) {
    std::printf("| %6ld | %5ld | %7.3f | %7.3f | %7.3f | %7.3f | %7.3f | %7.3f |\n",
                static_cast<long>(b.m), static_cast<long>(b.strip_rows), b.strip_fwd,
                b.exp_kernels, b.contr_kernels, b.strip_bwd, b.exp_bwd_kernels,
                b.contr_bwd_kernels);
  }
  std::printf("\ncuBLAS: %s\n", metrix::cuda::CublasPath());
  return 0;
}
