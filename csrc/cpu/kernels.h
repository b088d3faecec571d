// CPU kernels. Callers have validated every argument (see checks.h): tensors are
// contiguous, of one floating dtype, with matching shapes, and outputs alias
// inputs only exactly. The kernels allocate no tensors.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace nytorch_ext {
namespace cpu {

void axpby(const at::Tensor& out, double a, const at::Tensor& x, double b,
           const at::Tensor& y);
void blend(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y, double alpha);
void lincomb(const at::Tensor& out, c10::ArrayRef<double> coeffs, at::TensorList inputs,
             double bias);
void multi_axpby(at::TensorList outs, double a, at::TensorList xs, double b,
                 at::TensorList ys);
// sources and alphas hold one entry shared by all targets, or one per target.
void multi_blend(at::TensorList targets, at::TensorList sources,
                 c10::ArrayRef<double> alphas);
// multi_blend plus noise_scale * standard normals drawn in the pass (philox.h):
// key `seed`, stream streams[t] for targets[t] (the int64 values as uint64 bits).
void multi_blend_noise(at::TensorList targets, at::TensorList sources,
                       c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                       c10::ArrayRef<int64_t> streams);

// Name of the SIMD instruction set the kernels were compiled for, e.g. "avx2".
const char* simd_name();

}  // namespace cpu
}  // namespace nytorch_ext
