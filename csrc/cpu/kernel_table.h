// The CPU kernels of one instruction set, as a table of plain functions.
//
// csrc/cpu/kernels.cpp is compiled once per CPU capability (DEFAULT, and on x86
// AVX2 and AVX512), each copy with its own -m flags and CPU_CAPABILITY, as ATen
// compiles its own kernels; dispatch.cpp picks the best table the running CPU
// supports. The tables take raw pointers so that the capability-specific objects
// contain our loops and at::vec, not copies of PyTorch's tensor code.
#pragma once
#include <cstdint>

#include "../dtype.h"

namespace nytorch_ext {
namespace cpu {

struct KernelTable {
  const char* name;
  // out[i] = a*x[i] + b*y[i]
  void (*axpby)(DType, void* out, const void* x, const void* y, int64_t n, double a, double b);
  // out[i] = lerp(x[i], y[i], alpha)
  void (*blend)(DType, void* out, const void* x, const void* y, int64_t n, double alpha);
  // out[i] = sum_k coeffs[k]*inputs[k][i] + bias
  void (*lincomb)(DType, void* out, const void* const* inputs, const double* coeffs,
                  int64_t num_inputs, int64_t n, double bias);
  // outs[t] = a*xs[t] + b*ys[t] over a list, as one parallel region
  void (*multi_axpby)(DType, void* const* outs, const void* const* xs, const void* const* ys,
                      const int64_t* sizes, int64_t num_tensors, double a, double b);
  // targets[t] = lerp(targets[t], sources[t or 0], alphas[t or 0])
  void (*multi_blend)(DType, void* const* targets, const void* const* sources,
                      int64_t num_sources, const double* alphas, int64_t num_alphas,
                      const int64_t* sizes, int64_t num_tensors);
  // targets[t] = lerp(targets[t], sources[t or 0], weights[t or 0])
  //              + noise_scale * (standard normals of (seed, streams[t]), philox.h)
  void (*multi_blend_noise)(DType, void* const* targets, const void* const* sources,
                            int64_t num_sources, const double* weights, int64_t num_weights,
                            const int64_t* sizes, int64_t num_tensors, double noise_scale,
                            uint64_t seed, const uint64_t* streams);
};

#define NYT_TABLE_FN_(cap) kernel_table_##cap
#define NYT_TABLE_FN(cap) NYT_TABLE_FN_(cap)

const KernelTable& kernel_table_DEFAULT();
#if defined(__x86_64__) || defined(_M_X64)
#define NYT_CPU_X86 1
const KernelTable& kernel_table_AVX2();
const KernelTable& kernel_table_AVX512();
#endif

}  // namespace cpu
}  // namespace nytorch_ext
