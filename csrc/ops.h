// Validation entry points for each op, shared by the CPU and CUDA registrations
// so both backends accept and reject exactly the same calls.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace nytorch_ext {

void validate_binary_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y);
void validate_lincomb_out(const at::Tensor& out, c10::ArrayRef<double> coeffs,
                          at::TensorList tensors);
void validate_multi_axpby(at::TensorList outs, at::TensorList xs, at::TensorList ys);
// `alphas_name` names the scalar list in messages ("weights" for the noise form).
void validate_multi_blend(at::TensorList targets, at::TensorList sources,
                          c10::ArrayRef<double> alphas, const char* alphas_name = "alphas");
void validate_blend_noise(const at::Tensor& self, const at::Tensor& best, double weight,
                          double noise_scale);
void validate_multi_blend_noise(at::TensorList targets, at::TensorList sources,
                                c10::ArrayRef<double> weights, double noise_scale,
                                c10::ArrayRef<int64_t> streams);

}  // namespace nytorch_ext
