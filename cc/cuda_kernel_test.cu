// Standalone check of the CUDA kernels against the CPU functions (no
// TensorFlow needed). Build and run on a machine with a GPU:
//
//   make -C cc cuda_kernel_test && cc/cuda_kernel_test
//
// For float and double, int32 and int64 labels, with and without
// exclude_self and the miner, it compares every launcher of
// soft_label_similarity_kernels.cu (cuBLAS GEMMs + our epilogue and
// reduction kernels; fused reductions with one strip and with strips of 7
// rows) with a host computation built from the same
// soft_label_similarity_math.h / _rows.h functions (naive dot products), and
// exits non-zero on any mismatch. cuBLAS is found as the op finds it
// (cc/cublas_gemm.h): set METRIX_TF_CUBLAS=/path/to/libcublas.so.N if it is
// not on the library path.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cc/cublas_gemm.h"
#include "cc/cuda_check.h"
#include "cc/soft_label_similarity_kernels.h"
#include "cc/soft_label_similarity_math.h"
#include "cc/soft_label_similarity_rows.h"

namespace {

int failures = 0;

template <typename T>
struct Device {
  T* ptr = nullptr;
  size_t size = 0;
  explicit Device(const std::vector<T>& host) : size(host.size()) {
    CHECK_CUDA(cudaMalloc(&ptr, sizeof(T) * (size > 0 ? size : 1)));
    if (size > 0) {
      CHECK_CUDA(cudaMemcpy(ptr, host.data(), sizeof(T) * size,
                            cudaMemcpyHostToDevice));
    }
  }
  explicit Device(size_t n) : size(n) {
    CHECK_CUDA(cudaMalloc(&ptr, sizeof(T) * (n > 0 ? n : 1)));
  }
  ~Device() { cudaFree(ptr); }
  std::vector<T> Host() const {
    std::vector<T> host(size);
    if (size > 0) {
      CHECK_CUDA(cudaMemcpy(host.data(), ptr, sizeof(T) * size,
                            cudaMemcpyDeviceToHost));
    }
    return host;
  }
};

template <typename T>
void Compare(const char* what, const std::vector<T>& got,
             const std::vector<T>& want, double tolerance) {
  for (size_t k = 0; k < want.size(); ++k) {
    const double g = got[k], w = want[k];
    if (std::isinf(w) && g == w) continue;
    if (!(std::fabs(g - w) <= tolerance * (1.0 + std::fabs(w)))) {
      std::fprintf(stderr, "MISMATCH %s[%zu]: gpu %.9g cpu %.9g\n", what, k, g,
                   w);
      ++failures;
      return;
    }
  }
}

template <typename T, typename L>
void RunCase(int64_t m, int64_t n, int64_t d, bool exclude_self, bool mine,
             unsigned seed, int64_t strip_rows) {
  const metrix::cuda::GpuContext gpu{nullptr, false};  // default stream, no TF32
  Device<T> strip_data(strip_rows * n);
  const metrix::cuda::StripWorkspace<T> strip{strip_data.ptr, strip_rows};
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> label(0, 3);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<T> a(m * d), c(n * d), lam(n);
  std::vector<L> al(m), la(n), lb(n);
  auto normalised = [&](std::vector<T>& x, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      double norm = 0;
      for (int64_t k = 0; k < d; ++k) {
        x[r * d + k] = static_cast<T>(normal(rng));
        norm += double(x[r * d + k]) * x[r * d + k];
      }
      for (int64_t k = 0; k < d; ++k) x[r * d + k] /= T(std::sqrt(norm) + 1e-12);
    }
  };
  normalised(a, m);
  normalised(c, n);
  for (auto& v : al) v = label(rng);
  for (int64_t j = 0; j < n; ++j) {
    la[j] = label(rng);
    lb[j] = (j % 3 == 0) ? label(rng) : la[j];
    lam[j] = (j % 4 == 0) ? T(1) : T(uniform(rng));
  }
  Device<T> da(a), dc(c), dlam(lam);
  Device<L> dal(al), dla(la), dlb(lb);
  metrix::PairInputs<T, L> host{a.data(), al.data(), c.data(), la.data(),
                                lb.data(), lam.data(), m, n, d, exclude_self};
  metrix::PairInputs<T, L> dev{da.ptr, dal.ptr, dc.ptr, dla.ptr,
                               dlb.ptr, dlam.ptr, m, n, d, exclude_self};
  const double tol = sizeof(T) == 4 ? 2e-4 : 1e-10;

  // Host similarity (naive dot products) and soft labels.
  std::vector<T> s(m * n), y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      T dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += a[i * d + k] * c[j * d + k];
      s[i * n + j] = dot;
      y[i * n + j] = metrix::PairSoftLabel(host, i, j);
    }

  Device<T> ds(m * n), dy(m * n);
  CHECK_CUDA(static_cast<cudaError_t>(
      metrix::cuda::LaunchSoftLabelSimilarity<T, L>(gpu, dev, ds.ptr, dy.ptr)));
  CHECK_CUDA(cudaDeviceSynchronize());
  Compare("similarity", ds.Host(), s, tol);
  Compare("soft_labels", dy.Host(), y, 0.0);

  // "exp" kind.
  metrix::ExpParams<T> ep{T(2), T(0.5), T(5), T(0.25), T(0.1), mine};
  std::vector<T> lse_pos(m), lse_neg(m), min_pos(m), max_neg(m), pc(m), nc(m);
  metrix::ExpOutputs<T> host_out{lse_pos.data(), lse_neg.data(), min_pos.data(),
                                 max_neg.data(), pc.data(), nc.data()};
  for (int64_t i = 0; i < m; ++i) metrix::ExpRow(host, i, s.data() + i * n, ep, host_out);
  Device<T> o0(m), o1(m), o2(m), o3(m), o4(m), o5(m);
  metrix::ExpOutputs<T> dev_out{o0.ptr, o1.ptr, o2.ptr, o3.ptr, o4.ptr, o5.ptr};
  CHECK_CUDA(static_cast<cudaError_t>(
      metrix::cuda::LaunchExpReductions<T, L>(gpu, dev, ep, dev_out, strip)));
  CHECK_CUDA(cudaDeviceSynchronize());
  Compare("lse_pos", o0.Host(), lse_pos, tol);
  Compare("lse_neg", o1.Host(), lse_neg, tol);
  Compare("min_pos", o2.Host(), min_pos, tol);
  Compare("max_neg", o3.Host(), max_neg, tol);
  Compare("pos_count", o4.Host(), pc, 0.0);
  Compare("neg_count", o5.Host(), nc, 0.0);

  // "exp" backward with arbitrary upstream gradients.
  std::vector<T> g_pos(m), g_neg(m);
  for (int64_t i = 0; i < m; ++i) {
    g_pos[i] = T(normal(rng));
    g_neg[i] = T(normal(rng));
  }
  Device<T> dgp(g_pos), dgn(g_neg);
  metrix::ExpGradInputs<T> host_grad{lse_pos.data(), lse_neg.data(), min_pos.data(),
                                     max_neg.data(), g_pos.data(), g_neg.data()};
  metrix::ExpGradInputs<T> dev_grad{o0.ptr, o1.ptr, o2.ptr, o3.ptr, dgp.ptr, dgn.ptr};
  std::vector<T> ga(m * d, T(0)), gc(n * d, T(0));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const T p = metrix::ExpPartial(host, ep, host_grad, i, j, s[i * n + j]);
      for (int64_t k = 0; k < d; ++k) {
        ga[i * d + k] += p * c[j * d + k];
        gc[j * d + k] += p * a[i * d + k];
      }
    }
  Device<T> dga(m * d), dgc(n * d);
  CHECK_CUDA(static_cast<cudaError_t>(metrix::cuda::LaunchExpReductionsGrad<T, L>(
      gpu, dev, ep, dev_grad, dga.ptr, dgc.ptr, strip)));
  CHECK_CUDA(cudaDeviceSynchronize());
  Compare("exp grad_anchors", dga.Host(), ga, tol * 10);
  Compare("exp grad_candidates", dgc.Host(), gc, tol * 10);

  // Contrastive kind and its backward.
  metrix::ContrastiveParams<T> cp{T(0.2), T(0.9)};
  std::vector<T> ps(m), pcnt(m), ns(m), ncnt(m);
  metrix::ContrastiveOutputs<T> host_c{ps.data(), pcnt.data(), ns.data(), ncnt.data()};
  for (int64_t i = 0; i < m; ++i)
    metrix::ContrastiveRow(host, i, s.data() + i * n, cp, host_c);
  Device<T> c0(m), c1(m), c2(m), c3(m);
  metrix::ContrastiveOutputs<T> dev_c{c0.ptr, c1.ptr, c2.ptr, c3.ptr};
  CHECK_CUDA(static_cast<cudaError_t>(
      metrix::cuda::LaunchContrastiveReductions<T, L>(gpu, dev, cp, dev_c, strip)));
  CHECK_CUDA(cudaDeviceSynchronize());
  Compare("pos_sum", c0.Host(), ps, tol);
  Compare("pos_count", c1.Host(), pcnt, 0.0);
  Compare("neg_sum", c2.Host(), ns, tol);
  Compare("neg_count", c3.Host(), ncnt, 0.0);
  metrix::ContrastiveGradInputs<T> host_cg{g_pos.data(), g_neg.data()};
  metrix::ContrastiveGradInputs<T> dev_cg{dgp.ptr, dgn.ptr};
  std::fill(ga.begin(), ga.end(), T(0));
  std::fill(gc.begin(), gc.end(), T(0));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const T p = metrix::ContrastivePartial(host, cp, host_cg, i, j, s[i * n + j]);
      for (int64_t k = 0; k < d; ++k) {
        ga[i * d + k] += p * c[j * d + k];
        gc[j * d + k] += p * a[i * d + k];
      }
    }
  CHECK_CUDA(static_cast<cudaError_t>(metrix::cuda::LaunchContrastiveReductionsGrad<T, L>(
      gpu, dev, cp, dev_cg, dga.ptr, dgc.ptr, strip)));
  CHECK_CUDA(cudaDeviceSynchronize());
  Compare("contrastive grad_anchors", dga.Host(), ga, tol * 10);
  Compare("contrastive grad_candidates", dgc.Host(), gc, tol * 10);
  std::printf("%-6s %-7s m=%-4ld n=%-4ld d=%-4ld exclude_self=%d mine=%d strip=%-4ld: %s\n",
              sizeof(T) == 4 ? "float" : "double", sizeof(L) == 4 ? "int32" : "int64",
              static_cast<long>(m), static_cast<long>(n), static_cast<long>(d),
              exclude_self, mine, static_cast<long>(strip_rows),
              failures ? "FAILURES SO FAR" : "ok");
}

template <typename T, typename L>
void RunAll() {
  struct Shape {
    int64_t m, n, d;
    bool exclude_self, mine;
  };
  const Shape shapes[] = {{67, 67, 33, true, true},   {130, 70, 1, false, false},
                          {64, 200, 128, false, true}, {300, 257, 64, true, true},
                          {0, 5, 8, false, false},     {5, 0, 8, false, true},
                          {3, 4, 0, true, false}};
  unsigned seed = 1;
  for (const Shape& s : shapes) {
    // One strip (the op's choice at these sizes) and strips of 7 rows.
    for (int64_t rows : {metrix::cuda::FusedStripRows(s.m, s.n), int64_t{7}}) {
      RunCase<T, L>(s.m, s.n, s.d, s.exclude_self, s.mine, seed, rows);
    }
    ++seed;
  }
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device: nothing to test\n");
    return 77;  // "skipped"
  }
  RunAll<float, int32_t>();
  RunAll<float, int64_t>();
  RunAll<double, int32_t>();
  RunAll<double, int64_t>();
  std::printf("cuBLAS: %s\n", metrix::cuda::CublasPath());
  if (failures) {
    std::fprintf(stderr, "%d mismatches\n", failures);
    return 1;
  }
  std::printf("all CUDA kernels match the CPU functions\n");
  return 0;
}
