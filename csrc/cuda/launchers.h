// The boundary between the torch-side CUDA glue (ops_cuda.cpp, compiled by the
// host compiler against PyTorch headers) and the CUDA kernels (kernels.cu,
// compiled by nvcc with CUDA headers and our own only). Plain types only:
// raw pointers, 64-bit sizes, doubles, and the stream as an opaque pointer
// (a cudaStream_t). Every launcher returns nullptr on success or a static
// error string (cudaGetErrorString) when the launch failed.
#pragma once
#include <cstdint>

#include "../dtype.h"

namespace nytorch_ext {
namespace cuda_launch {

using DType = ::nytorch_ext::DType;

// out[i] = a*x[i] + b*y[i] for i < n. out may equal x or y exactly.
const char* axpby(DType dtype, void* out, const void* x, const void* y, int64_t n,
                  double a, double b, void* stream);

// out[i] = two-sided lerp(x[i], y[i], alpha). out may equal x or y exactly.
const char* blend(DType dtype, void* out, const void* x, const void* y, int64_t n,
                  double alpha, void* stream);

// out[i] = sum_{k<num_inputs} coeffs[k]*inputs[k][i] + bias, any num_inputs >= 1.
// `inputs` and `coeffs` are host arrays. out may equal any input exactly.
const char* lincomb(DType dtype, void* out, const void* const* inputs,
                    const double* coeffs, int64_t num_inputs, int64_t n, double bias,
                    void* stream);

// outs[t][i] = a*xs[t][i] + b*ys[t][i] for t < num_tensors, i < sizes[t].
// Host arrays of device pointers; one launch per pointer-table chunk.
const char* multi_axpby(DType dtype, void* const* outs, const void* const* xs,
                        const void* const* ys, const int64_t* sizes, int64_t num_tensors,
                        double a, double b, void* stream);

// targets[t][i] = lerp(targets[t][i], src_t[i], alpha_t) where
// src_t = sources[num_sources == 1 ? 0 : t] and alpha_t = alphas[num_alphas == 1 ? 0 : t].
const char* multi_blend(DType dtype, void* const* targets, const void* const* sources,
                        int64_t num_sources, const double* alphas, int64_t num_alphas,
                        const int64_t* sizes, int64_t num_tensors, void* stream);

// multi_blend plus noise_scale * z: z the standard normals of (seed, streams[t])
// for element i of targets[t] (philox.h), drawn in the kernel. `streams` is a
// host array with one entry per target. noise_scale == 0 runs multi_blend.
const char* multi_blend_noise(DType dtype, void* const* targets, const void* const* sources,
                              int64_t num_sources, const double* weights, int64_t num_weights,
                              const int64_t* sizes, int64_t num_tensors, double noise_scale,
                              uint64_t seed, const uint64_t* streams, void* stream);

// The CUDA runtime version the kernels were built against (e.g. 13000).
int runtime_version();

}  // namespace cuda_launch
}  // namespace nytorch_ext
