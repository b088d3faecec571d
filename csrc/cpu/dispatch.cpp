// Tensor-level CPU entry points: pick the kernel table for the best instruction
// set this CPU supports (the same choice, and the same ATEN_CPU_CAPABILITY
// override, as PyTorch's own kernels), and pass it raw pointers.
#include <string>

#include <ATen/Version.h>
#include <c10/util/SmallVector.h>

#include "kernel_table.h"
#include "kernels.h"

namespace nytorch_ext {
namespace cpu {
namespace {

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type());
  }
}

const KernelTable& table() {
  static const KernelTable& chosen = [&]() -> const KernelTable& {
#ifdef NYT_CPU_X86
    // "AVX512", "AVX2" or "DEFAULT": what PyTorch runs its own kernels with.
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") return kernel_table_AVX512();
    if (capability == "AVX2") return kernel_table_AVX2();
#endif
    return kernel_table_DEFAULT();
  }();
  return chosen;
}

}  // namespace

void axpby(const at::Tensor& out, double a, const at::Tensor& x, double b,
           const at::Tensor& y) {
  table().axpby(dtype_of(out), out.data_ptr(), x.const_data_ptr(), y.const_data_ptr(),
                out.numel(), a, b);
}

void blend(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y, double alpha) {
  table().blend(dtype_of(out), out.data_ptr(), x.const_data_ptr(), y.const_data_ptr(),
                out.numel(), alpha);
}

void lincomb(const at::Tensor& out, c10::ArrayRef<double> coeffs, at::TensorList inputs,
             double bias) {
  c10::SmallVector<const void*, 16> ptrs;
  for (const auto& t : inputs) ptrs.push_back(t.const_data_ptr());
  table().lincomb(dtype_of(out), out.data_ptr(), ptrs.data(), coeffs.data(),
                  static_cast<int64_t>(ptrs.size()), out.numel(), bias);
}

namespace {
// Pointer and size tables of a tensor list, on the stack for lists up to 64.
// Inputs are read through const_data_ptr: a mutable pointer would materialize a
// copy-on-write input (a lazy product's snapshot of a particle), copying it.
struct ListView {
  c10::SmallVector<void*, 64> ptrs;
  c10::SmallVector<int64_t, 64> sizes;
  ListView(at::TensorList tensors, bool written) {
    for (const auto& t : tensors) {
      ptrs.push_back(written ? t.data_ptr() : const_cast<void*>(t.const_data_ptr()));
      sizes.push_back(t.numel());
    }
  }
};
}  // namespace

void multi_axpby(at::TensorList outs, double a, at::TensorList xs, double b,
                 at::TensorList ys) {
  if (outs.empty()) return;
  ListView o(outs, true), x(xs, false), y(ys, false);
  table().multi_axpby(dtype_of(outs[0]), o.ptrs.data(), x.ptrs.data(), y.ptrs.data(),
                      o.sizes.data(), static_cast<int64_t>(outs.size()), a, b);
}

void multi_blend(at::TensorList targets, at::TensorList sources,
                 c10::ArrayRef<double> alphas) {
  if (targets.empty()) return;
  ListView t(targets, true), s(sources, false);
  table().multi_blend(dtype_of(targets[0]), t.ptrs.data(), s.ptrs.data(),
                      static_cast<int64_t>(sources.size()), alphas.data(),
                      static_cast<int64_t>(alphas.size()), t.sizes.data(),
                      static_cast<int64_t>(targets.size()));
}

void multi_blend_noise(at::TensorList targets, at::TensorList sources,
                       c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                       c10::ArrayRef<int64_t> streams) {
  if (targets.empty()) return;
  ListView t(targets, true), s(sources, false);
  table().multi_blend_noise(dtype_of(targets[0]), t.ptrs.data(), s.ptrs.data(),
                            static_cast<int64_t>(sources.size()), weights.data(),
                            static_cast<int64_t>(weights.size()), t.sizes.data(),
                            static_cast<int64_t>(targets.size()), noise_scale,
                            static_cast<uint64_t>(seed),
                            reinterpret_cast<const uint64_t*>(streams.data()));
}

const char* simd_name() { return table().name; }

}  // namespace cpu
}  // namespace nytorch_ext
