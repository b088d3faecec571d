// Validation entry points for each op, shared by the CPU and CUDA registrations
// so both backends accept and reject exactly the same calls. Tensors are checked
// first, then the scalars against the tensors' dtype (check_scalar_range).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace nytorch_ext {

void validate_axpby_out(const at::Tensor& out, double a, const at::Tensor& x, double b,
                        const at::Tensor& y);
void validate_blend_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y,
                        double alpha);
void validate_lincomb_out(const at::Tensor& out, c10::ArrayRef<double> coeffs,
                          at::TensorList tensors, double bias);
void validate_multi_axpby(at::TensorList outs, double a, at::TensorList xs, double b,
                          at::TensorList ys);
// `shared_source`: a one-entry `sources` is shared even by a single target (so it
// may not overlap it). `alphas_name` names the scalar list ("weights" for noise).
void validate_multi_blend(at::TensorList targets, at::TensorList sources,
                          c10::ArrayRef<double> alphas, bool shared_source,
                          const char* alphas_name = "alphas");
void validate_blend_noise(const at::Tensor& x, const at::Tensor& best, double weight,
                          double noise_scale);
void validate_multi_blend_noise(at::TensorList targets, at::TensorList sources,
                                c10::ArrayRef<double> weights, double noise_scale,
                                c10::ArrayRef<int64_t> streams, bool shared_source);

}  // namespace nytorch_ext
