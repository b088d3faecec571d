// CUDA registrations: validate (shared with CPU), make the tensors' device
// current, fetch PyTorch's current stream for it, and call the launchers in
// kernels.cu. Only device-generic c10 APIs are used here, so this file compiles
// against a CPU-only PyTorch and the whole CUDA-enabled extension links anywhere.
#include <vector>

#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include "../ops.h"
#include "launchers.h"

namespace nytorch_ext {

int cuda_runtime_version() { return cuda_launch::runtime_version(); }

namespace {

cuda_launch::DType launch_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda_launch::DType::Float32;
    case at::kDouble: return cuda_launch::DType::Float64;
    case at::kHalf: return cuda_launch::DType::Float16;
    case at::kBFloat16: return cuda_launch::DType::BFloat16;
    default: TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type());
  }
}

// PyTorch's current CUDA stream on `device`, as an opaque cudaStream_t.
void* current_stream(const c10::Device& device) {
  const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  return impl->getStream(device).native_handle();
}

void check_launch(const char* error, const char* op) {
  TORCH_CHECK(error == nullptr, "nytorch_ext::", op, ": CUDA launch failed: ", error);
}

void axpby_out_cuda(double a, const at::Tensor& x, double b, const at::Tensor& y,
                    const at::Tensor& out) {
  validate_axpby_out(out, a, x, b, y);
  c10::DeviceGuard guard(out.device());
  check_launch(cuda_launch::axpby(launch_dtype(out), out.data_ptr(), x.const_data_ptr(),
                                  y.const_data_ptr(), out.numel(), a, b,
                                  current_stream(out.device())),
               "axpby_out");
}

void blend_out_cuda(const at::Tensor& x, const at::Tensor& y, double alpha,
                    const at::Tensor& out) {
  validate_blend_out(out, x, y, alpha);
  c10::DeviceGuard guard(out.device());
  check_launch(cuda_launch::blend(launch_dtype(out), out.data_ptr(), x.const_data_ptr(),
                                  y.const_data_ptr(), out.numel(), alpha,
                                  current_stream(out.device())),
               "blend_out");
}

void lincomb_out_cuda(c10::ArrayRef<double> coeffs, at::TensorList tensors, double bias,
                      const at::Tensor& out) {
  validate_lincomb_out(out, coeffs, tensors, bias);
  c10::DeviceGuard guard(out.device());
  std::vector<const void*> inputs;
  inputs.reserve(tensors.size());
  for (const auto& t : tensors) inputs.push_back(t.const_data_ptr());
  check_launch(cuda_launch::lincomb(launch_dtype(out), out.data_ptr(), inputs.data(),
                                    coeffs.data(), static_cast<int64_t>(inputs.size()),
                                    out.numel(), bias, current_stream(out.device())),
               "lincomb_out");
}


void multi_axpby_cuda(at::TensorList outs, double a, at::TensorList xs, double b,
                      at::TensorList ys) {
  validate_multi_axpby(outs, a, xs, b, ys);
  if (outs.empty()) return;
  c10::DeviceGuard guard(outs[0].device());
  const size_t n = outs.size();
  std::vector<void*> out_ptrs(n);
  std::vector<const void*> x_ptrs(n), y_ptrs(n);
  std::vector<int64_t> sizes(n);
  for (size_t i = 0; i < n; ++i) {
    out_ptrs[i] = outs[i].data_ptr();
    x_ptrs[i] = xs[i].const_data_ptr();
    y_ptrs[i] = ys[i].const_data_ptr();
    sizes[i] = outs[i].numel();
  }
  check_launch(cuda_launch::multi_axpby(launch_dtype(outs[0]), out_ptrs.data(), x_ptrs.data(),
                                        y_ptrs.data(), sizes.data(), static_cast<int64_t>(n),
                                        a, b, current_stream(outs[0].device())),
               "multi_axpby_");
}

// Host tables of device pointers and sizes for the blend forms' launchers.
struct BlendLists {
  std::vector<void*> targets;
  std::vector<const void*> sources;
  std::vector<int64_t> sizes;
  BlendLists(at::TensorList target_list, at::TensorList source_list)
      : targets(target_list.size()), sources(source_list.size()), sizes(target_list.size()) {
    for (size_t i = 0; i < target_list.size(); ++i) {
      targets[i] = target_list[i].data_ptr();
      sizes[i] = target_list[i].numel();
    }
    for (size_t i = 0; i < source_list.size(); ++i) sources[i] = source_list[i].const_data_ptr();
  }
};

void multi_blend_cuda(at::TensorList targets, at::TensorList sources,
                      c10::ArrayRef<double> alphas, bool shared_source) {
  validate_multi_blend(targets, sources, alphas, shared_source);
  if (targets.empty()) return;
  c10::DeviceGuard guard(targets[0].device());
  const BlendLists l(targets, sources);
  check_launch(cuda_launch::multi_blend(launch_dtype(targets[0]), l.targets.data(),
                                        l.sources.data(), static_cast<int64_t>(l.sources.size()),
                                        alphas.data(), static_cast<int64_t>(alphas.size()),
                                        l.sizes.data(), static_cast<int64_t>(l.targets.size()),
                                        current_stream(targets[0].device())),
               "multi_blend_");
}

// Both noise forms, validated: one launcher call (the single form is a list of one).
void launch_blend_noise(at::TensorList targets, at::TensorList sources,
                        c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                        c10::ArrayRef<int64_t> streams, const char* op) {
  if (targets.empty()) return;
  c10::DeviceGuard guard(targets[0].device());
  const BlendLists l(targets, sources);
  check_launch(cuda_launch::multi_blend_noise(
                   launch_dtype(targets[0]), l.targets.data(), l.sources.data(),
                   static_cast<int64_t>(l.sources.size()), weights.data(),
                   static_cast<int64_t>(weights.size()), l.sizes.data(),
                   static_cast<int64_t>(l.targets.size()), noise_scale,
                   static_cast<uint64_t>(seed), reinterpret_cast<const uint64_t*>(streams.data()),
                   current_stream(targets[0].device())),
               op);
}

void blend_noise_cuda(const at::Tensor& x, const at::Tensor& best, double weight,
                      double noise_scale, int64_t seed, int64_t stream) {
  validate_blend_noise(x, best, weight, noise_scale);
  launch_blend_noise(x, best, weight, noise_scale, seed, stream, "blend_noise_");
}

void multi_blend_noise_cuda(at::TensorList targets, at::TensorList sources,
                            c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                            c10::ArrayRef<int64_t> streams, bool shared_source) {
  validate_multi_blend_noise(targets, sources, weights, noise_scale, streams, shared_source);
  launch_blend_noise(targets, sources, weights, noise_scale, seed, streams, "multi_blend_noise_");
}

}  // namespace

TORCH_LIBRARY_IMPL(nytorch_ext, CUDA, m) {
  m.impl("axpby_out", &axpby_out_cuda);
  m.impl("blend_out", &blend_out_cuda);
  m.impl("lincomb_out", &lincomb_out_cuda);
  m.impl("multi_axpby_", &multi_axpby_cuda);
  m.impl("multi_blend_", &multi_blend_cuda);
  m.impl("blend_noise_", &blend_noise_cuda);
  m.impl("multi_blend_noise_", &multi_blend_noise_cuda);
}

}  // namespace nytorch_ext
