// cuBLAS GEMM of the soft-label similarity ops; see cublas_gemm.h.
#include "cc/cublas_gemm.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <limits.h>

#include <map>
#include <mutex>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace metrix {
namespace cuda {
namespace {

// The cuBLAS v2 ABI (stable since CUDA 6; the same in cuBLAS 12 and 13).
using Handle = void*;
using Status = int;  // cublasStatus_t, CUBLAS_STATUS_SUCCESS = 0
constexpr int kOpN = 0;              // CUBLAS_OP_N
constexpr int kOpT = 1;              // CUBLAS_OP_T
constexpr int kDefaultMath = 0;      // CUBLAS_DEFAULT_MATH
constexpr int kTf32TensorOpMath = 3; // CUBLAS_TF32_TENSOR_OP_MATH

struct Api {
  Status (*create)(Handle*) = nullptr;
  Status (*set_stream)(Handle, cudaStream_t) = nullptr;
  Status (*set_math_mode)(Handle, int) = nullptr;
  Status (*sgemm)(Handle, int, int, int, int, int, const float*, const float*,
                  int, const float*, int, const float*, float*, int) = nullptr;
  Status (*dgemm)(Handle, int, int, int, int, int, const double*,
                  const double*, int, const double*, int, const double*,
                  double*, int) = nullptr;
  std::string path;
  std::string error;
  std::mutex mutex;                // guards handles and each handle's use
  std::map<int, Handle> handles;   // per device; kept for the process' life
};

std::string NextToThisLibrary(const char* relative) {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&CublasLoadError), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "";
  }
  std::string path = info.dli_fname;  // .../site-packages/metrix_tf/ops/x.so
  for (int up = 0; up < 3; ++up) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return "";
    path.resize(slash);
  }
  return path + "/" + relative;
}

void* OpenCublas(std::string* path, std::string* tried) {
  const char* names[] = {"libcublas.so.12", "libcublas.so.13", "libcublas.so"};
  if (const char* env = getenv("METRIX_TF_CUBLAS")) {
    if (*env) {
      *tried = std::string("$METRIX_TF_CUBLAS=") + env;
      void* h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
      if (h) *path = env;
      return h;
    }
  }
  for (const char* name : names) {  // TensorFlow's, if it loaded one
    if (void* h = dlopen(name, RTLD_NOW | RTLD_NOLOAD)) {
      *path = name;
      return h;
    }
  }
  std::string candidates[] = {names[0], names[1], names[2],
                              NextToThisLibrary("nvidia/cublas/lib/libcublas.so.12")};
  for (const std::string& name : candidates) {
    if (name.empty()) continue;
    *tried += (tried->empty() ? "" : ", ") + name;
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      *path = name;
      return h;
    }
  }
  return nullptr;
}

Api& GetApi() {
  static Api* api = [] {
    Api* a = new Api;  // never destroyed: handles must outlive every stream
    std::string tried;
    void* lib = OpenCublas(&a->path, &tried);
    if (lib == nullptr) {
      a->error = "metrix_tf: cuBLAS not found (tried " + tried +
                 "); install TensorFlow's CUDA libraries (pip install "
                 "'tensorflow[and-cuda]', which brings nvidia-cublas-cu12) "
                 "or set METRIX_TF_CUBLAS to the path of libcublas.so";
      return a;
    }
    auto load = [&](auto* fn, const char* symbol) {
      *fn = reinterpret_cast<std::remove_reference_t<decltype(*fn)>>(
          dlsym(lib, symbol));
      if (*fn == nullptr && a->error.empty()) {
        a->error = std::string("metrix_tf: ") + a->path + " has no " + symbol;
      }
    };
    load(&a->create, "cublasCreate_v2");
    load(&a->set_stream, "cublasSetStream_v2");
    load(&a->set_math_mode, "cublasSetMathMode");
    load(&a->sgemm, "cublasSgemm_v2");
    load(&a->dgemm, "cublasDgemm_v2");
    if (!a->error.empty()) a->path.clear();
    return a;
  }();
  return *api;
}

bool FitsInt(int64_t v) { return v >= 0 && v <= INT_MAX; }

Status Call(Api& api, Handle h, int ta, int tb, int m, int n, int k,
            const float* alpha, const float* a, int lda, const float* b,
            int ldb, const float* beta, float* c, int ldc) {
  return api.sgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
Status Call(Api& api, Handle h, int ta, int tb, int m, int n, int k,
            const double* alpha, const double* a, int lda, const double* b,
            int ldb, const double* beta, double* c, int ldc) {
  return api.dgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

const char* CublasLoadError() { return GetApi().error.c_str(); }
const char* CublasPath() { return GetApi().path.c_str(); }

template <typename T>
int RowMajorGemm(void* stream, bool allow_tf32, bool trans_a, bool trans_b,
                 int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T beta, T* c,
                 int64_t ldc) {
  Api& api = GetApi();
  if (!api.error.empty()) return kCublasNotFound;
  for (int64_t v : {m, n, k, lda, ldb, ldc}) {
    if (!FitsInt(v)) return kGemmTooLarge;
  }
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device)) return static_cast<int>(e);
  std::lock_guard<std::mutex> lock(api.mutex);
  Handle& handle = api.handles[device];
  if (handle == nullptr) {
    if (Status s = api.create(&handle)) {
      handle = nullptr;
      return kCublasErrorBase - s;
    }
  }
  // cuBLAS is column-major: row-major C = op(A) op(B) is column-major
  // C^T = op(B)^T op(A)^T, i.e. the same call with A and B swapped.
  Status s = api.set_stream(handle, static_cast<cudaStream_t>(stream));
  if (s == 0) {
    s = api.set_math_mode(handle, allow_tf32 && sizeof(T) == 4
                                      ? kTf32TensorOpMath
                                      : kDefaultMath);
  }
  if (s == 0) {
    s = Call(api, handle, trans_b ? kOpT : kOpN, trans_a ? kOpT : kOpN,
             static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
             &alpha, b, static_cast<int>(ldb), a, static_cast<int>(lda), &beta,
             c, static_cast<int>(ldc));
  }
  return s == 0 ? 0 : kCublasErrorBase - s;
}

template int RowMajorGemm<float>(void*, bool, bool, bool, int64_t, int64_t,
                                 int64_t, float, const float*, int64_t,
                                 const float*, int64_t, float, float*, int64_t);
template int RowMajorGemm<double>(void*, bool, bool, bool, int64_t, int64_t,
                                  int64_t, double, const double*, int64_t,
                                  const double*, int64_t, double, double*,
                                  int64_t);

}  // namespace cuda
}  // namespace metrix
