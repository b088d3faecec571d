// Every op of nytorch_ext in one place: its schema, its argument validation,
// its kernel for each dispatch key (a ListCall for the CPU or CUDA backend),
// the device-generic functional forms and the Autograd wrapper. Adding an op
// adds its entry to for_each_mutating_op below, its functor (functors.h) and
// its kernels (cpu/kernels.cpp, cuda/kernels.cu).
#include <cstring>
#include <string>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/GradMode.h>
#include <c10/util/SmallVector.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include "backends.h"
#include "checks.h"
#include "list_call_builder.h"
#include "strides.h"

namespace nytorch_ext {

namespace {

// ----------------------------------------------------------------- validation

// The caller's name for the output of an `_out` op: the in-place forms pass an
// input as `out` (axpby_(a, x, b, y) is axpby_out(a, x, b, y, out=x)), and then
// the messages name that input, as the caller did.
ArgName out_name_of(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y) {
  if (same_memory(out, x)) return "x";
  if (same_memory(out, y)) return "y";
  return "out";
}

void validate_binary_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y) {
  check_floating(x, "x");
  check_same(y, "y", x, "x");
  check_same(out, "out", x, "x");
  check_contiguous(out, "out");
  check_contiguous(x, "x");
  check_contiguous(y, "y");
  const ArgName out_name = out_name_of(out, x, y);
  check_out_alias(out, out_name, x, "x");
  check_out_alias(out, out_name, y, "y");
}

void validate_axpby_out(const at::Tensor& out, double a, const at::Tensor& x, double b,
                        const at::Tensor& y) {
  validate_binary_out(out, x, y);
  check_scalar_range(a, "a", x.scalar_type());
  check_scalar_range(b, "b", x.scalar_type());
}

void validate_blend_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y,
                        double alpha) {
  validate_binary_out(out, x, y);
  check_scalar_range(alpha, "alpha", x.scalar_type());
}

void validate_lincomb_out(const at::Tensor& out, c10::ArrayRef<double> coeffs,
                          at::TensorList tensors, double bias) {
  TORCH_CHECK_VALUE(!coeffs.empty(), "coeffs must not be empty");
  TORCH_CHECK_VALUE(coeffs.size() == tensors.size(), "coeffs has ", coeffs.size(),
                    " entries but tensors has ", tensors.size());
  check_floating(tensors[0], ArgName("tensors", 0));
  const ArgName first("tensors", 0);
  for (int64_t k = 0; k < static_cast<int64_t>(tensors.size()); ++k) {
    check_same(tensors[k], ArgName("tensors", k), tensors[0], first);
    check_contiguous(tensors[k], ArgName("tensors", k));
  }
  check_same(out, "out", tensors[0], ArgName("tensors", 0));
  check_contiguous(out, "out");
  // lincomb_ writes tensors[0] (out=tensors[0]): name the output as the caller did
  const ArgName out_name = same_memory(out, tensors[0]) ? first : ArgName("out");
  for (int64_t k = 0; k < static_cast<int64_t>(tensors.size()); ++k) {
    check_out_alias(out, out_name, tensors[k], ArgName("tensors", k));
  }
  const auto dtype = tensors[0].scalar_type();
  for (int64_t k = 0; k < static_cast<int64_t>(coeffs.size()); ++k) {
    check_scalar_range(coeffs[k], ArgName("coeffs", k), dtype);
  }
  check_scalar_range(bias, "bias", dtype);
}

void validate_multi_axpby(at::TensorList outs, double a, at::TensorList xs, double b,
                          at::TensorList ys) {
  TORCH_CHECK_VALUE(xs.size() == outs.size(), "xs has ", xs.size(),
                    " tensors but outs has ", outs.size());
  TORCH_CHECK_VALUE(ys.size() == outs.size(), "ys has ", ys.size(),
                    " tensors but outs has ", outs.size());
  const NamedList inputs[] = {{xs, "xs"}, {ys, "ys"}};
  check_multi({outs, "outs"}, inputs);
  if (outs.empty()) return;
  check_scalar_range(a, "a", outs[0].scalar_type());
  check_scalar_range(b, "b", outs[0].scalar_type());
}

// `shared_source`: a one-entry `sources` is shared even by a single target (so it
// may not overlap it). `alphas_name` names the scalar list ("weights" for noise).
void validate_multi_blend(at::TensorList targets, at::TensorList sources,
                          c10::ArrayRef<double> alphas, bool shared_source,
                          const char* alphas_name = "alphas") {
  TORCH_CHECK_VALUE(!sources.empty() || targets.empty(), "sources must not be empty");
  TORCH_CHECK_VALUE(alphas.size() == 1 || alphas.size() == targets.size(), alphas_name,
                    " has ", alphas.size(), " entries but targets has ", targets.size(),
                    " (give one, or one per target)");
  const NamedList inputs[] = {{sources, "sources", shared_source}};
  check_multi({targets, "targets"}, inputs);
  if (targets.empty()) return;
  for (int64_t k = 0; k < static_cast<int64_t>(alphas.size()); ++k) {
    check_scalar_range(alphas[k], ArgName(alphas_name, k), targets[0].scalar_type());
  }
}

void validate_blend_noise(const at::Tensor& x, const at::Tensor& best, double weight,
                          double noise_scale) {
  check_finite(weight, "weight");
  check_finite(noise_scale, "noise_scale");
  check_floating(x, "x");
  check_same(best, "best", x, "x");
  check_contiguous(x, "x");
  check_contiguous(best, "best");
  check_out_alias(x, "x", best, "best");
  check_scalar_range(weight, "weight", x.scalar_type());
  check_scalar_range(noise_scale, "noise_scale", x.scalar_type());
}

void validate_multi_blend_noise(at::TensorList targets, at::TensorList sources,
                                c10::ArrayRef<double> weights, double noise_scale,
                                c10::ArrayRef<int64_t> streams, bool shared_source) {
  TORCH_CHECK_VALUE(streams.size() == targets.size(), "streams has ", streams.size(),
                    " entries but targets has ", targets.size(), " (give one per target)");
  for (int64_t k = 0; k < static_cast<int64_t>(weights.size()); ++k) {
    check_finite(weights[k], ArgName("weights", k));
  }
  check_finite(noise_scale, "noise_scale");
  validate_multi_blend(targets, sources, weights, shared_source, "weights");
  if (!targets.empty()) check_scalar_range(noise_scale, "noise_scale", targets[0].scalar_type());
}

// `scales`: one shared by every target, or one per target.
void validate_multi_scale(at::TensorList targets, c10::ArrayRef<double> scales) {
  TORCH_CHECK_VALUE(scales.size() == 1 || scales.size() == targets.size(), "scales has ",
                    scales.size(), " entries but targets has ", targets.size(),
                    " (give one, or one per target)");
  check_multi({targets, "targets"}, {});
  if (targets.empty()) return;
  for (int64_t k = 0; k < static_cast<int64_t>(scales.size()); ++k) {
    check_scalar_range(scales[k], ArgName("scales", k), targets[0].scalar_type());
  }
}

// ------------------------------------------------ the kernels, per backend

// Each mutating op validates its arguments (the same checks on every device, so
// both backends accept and reject exactly the same calls), then hands the
// backend `Device` one ListCall; a single-tensor op is a list of one.
struct CpuDevice {
  static void run(ListCallBuilder& call) { cpu::run(call.call()); }
};
#ifdef NYTORCH_EXT_WITH_CUDA
struct CudaDevice {
  static void run(ListCallBuilder& call) { cuda::run(call.call(), call.first_out()); }
};
#endif

template <class Device>
void axpby_out(double a, const at::Tensor& x, double b, const at::Tensor& y,
               const at::Tensor& out) {
  validate_axpby_out(out, a, x, b, y);
  const double scalars[] = {a, b};
  ListCallBuilder call(ElementOp::kAxpby, out, /*list_form=*/false);
  Device::run(call.input(x).input(y).scalars(scalars));
}

template <class Device>
void blend_out(const at::Tensor& x, const at::Tensor& y, double alpha, const at::Tensor& out) {
  validate_blend_out(out, x, y, alpha);
  ListCallBuilder call(ElementOp::kBlend, out, /*list_form=*/false);
  Device::run(call.input(x).input(y).weights(alpha));
}

template <class Device>
void lincomb_out(c10::ArrayRef<double> coeffs, at::TensorList tensors, double bias,
                 const at::Tensor& out) {
  validate_lincomb_out(out, coeffs, tensors, bias);
  c10::SmallVector<double, 17> scalars(coeffs.begin(), coeffs.end());
  scalars.push_back(bias);
  ListCallBuilder call(ElementOp::kLincomb, out, /*list_form=*/false);
  for (const auto& t : tensors) call.input(t);
  Device::run(call.scalars(scalars));
}

template <class Device>
void multi_axpby_(at::TensorList outs, double a, at::TensorList xs, double b,
                  at::TensorList ys) {
  validate_multi_axpby(outs, a, xs, b, ys);
  if (outs.empty()) return;
  const double scalars[] = {a, b};
  ListCallBuilder call(ElementOp::kAxpby, outs, /*list_form=*/true);
  Device::run(call.input(xs).input(ys).scalars(scalars));
}

template <class Device>
void multi_blend_(at::TensorList targets, at::TensorList sources, c10::ArrayRef<double> alphas,
                  bool shared_source) {
  validate_multi_blend(targets, sources, alphas, shared_source);
  if (targets.empty()) return;
  ListCallBuilder call(ElementOp::kBlend, targets, /*list_form=*/true);
  Device::run(call.input(targets).input(sources).weights(alphas));
}

template <class Device>
void blend_noise_(const at::Tensor& x, const at::Tensor& best, double weight,
                  double noise_scale, int64_t seed, int64_t stream) {
  validate_blend_noise(x, best, weight, noise_scale);
  ListCallBuilder call(ElementOp::kBlendNoise, x, /*list_form=*/false);
  Device::run(call.input(x).input(best).scalars(noise_scale).weights(weight).noise(seed, stream));
}

template <class Device>
void multi_blend_noise_(at::TensorList targets, at::TensorList sources,
                        c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                        c10::ArrayRef<int64_t> streams, bool shared_source) {
  validate_multi_blend_noise(targets, sources, weights, noise_scale, streams, shared_source);
  if (targets.empty()) return;
  ListCallBuilder call(ElementOp::kBlendNoise, targets, /*list_form=*/true);
  Device::run(call.input(targets).input(sources).scalars(noise_scale).weights(weights).noise(
      seed, streams));
}

template <class Device>
void multi_scale_(at::TensorList targets, c10::ArrayRef<double> scales) {
  validate_multi_scale(targets, scales);
  if (targets.empty()) return;
  ListCallBuilder call(ElementOp::kScale, targets, /*list_form=*/true);
  Device::run(call.input(targets).weights(scales));
}

// Every mutating op once: its schema and its kernel for `Device`. The schemas,
// the Autograd wrapper and each dispatch key's registration all come from here.
template <class Device, typename Fn>
void for_each_mutating_op(const Fn& fn) {
  fn("axpby_out(float a, Tensor x, float b, Tensor y, *, Tensor(a!) out) -> ()",
     &axpby_out<Device>);
  fn("blend_out(Tensor x, Tensor y, float alpha, *, Tensor(a!) out) -> ()", &blend_out<Device>);
  fn("lincomb_out(float[] coeffs, Tensor[] tensors, float bias, *, Tensor(a!) out) -> ()",
     &lincomb_out<Device>);
  fn("multi_axpby_(Tensor(a!)[] outs, float a, Tensor[] xs, float b, Tensor[] ys) -> ()",
     &multi_axpby_<Device>);
  // shared_source: `sources` is one tensor shared by every target, even by a single
  // one (which it may then not overlap); otherwise a one-entry list is shared only
  // by several targets.
  fn("multi_blend_(Tensor(a!)[] targets, Tensor[] sources, float[] alphas, "
     "bool shared_source=False) -> ()",
     &multi_blend_<Device>);
  // Blend plus Gaussian noise drawn in the pass (philox.h); seed and streams are
  // uint64 bit patterns carried as int64.
  fn("blend_noise_(Tensor(a!) x, Tensor best, float weight, float noise_scale, int seed, "
     "int stream) -> ()",
     &blend_noise_<Device>);
  fn("multi_blend_noise_(Tensor(a!)[] targets, Tensor[] sources, float[] weights, "
     "float noise_scale, int seed, int[] streams, bool shared_source=False) -> ()",
     &multi_blend_noise_<Device>);
  fn("multi_scale_(Tensor(a!)[] targets, float[] scales) -> ()", &multi_scale_<Device>);
}

// An op's name: its schema up to the argument list.
std::string name_of(const char* schema) { return std::string(schema, std::strchr(schema, '(')); }

// Registers every mutating op's kernel for `Device` with `m`.
template <class Device>
void register_kernels(torch::Library& m) {
  for_each_mutating_op<Device>(
      [&](const char* schema, auto kernel) { m.impl(name_of(schema).c_str(), kernel); });
}

// ----------------------------------------- functional forms, for every device

// The allocating forms accept non-contiguous inputs by copying them once; the
// result is always a new contiguous tensor written by the `_out` kernel.
at::Tensor axpby(double a, const at::Tensor& x, double b, const at::Tensor& y) {
  check_floating(x, "x");
  check_same(y, "y", x, "x");
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("nytorch_ext::axpby_out", "")
                       .typed<void(double, const at::Tensor&, double, const at::Tensor&,
                                   const at::Tensor&)>();
  op.call(a, x.contiguous(), b, y.contiguous(), out);
  return out;
}

at::Tensor blend(const at::Tensor& x, const at::Tensor& y, double alpha) {
  check_floating(x, "x");
  check_same(y, "y", x, "x");
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("nytorch_ext::blend_out", "")
                       .typed<void(const at::Tensor&, const at::Tensor&, double,
                                   const at::Tensor&)>();
  op.call(x.contiguous(), y.contiguous(), alpha, out);
  return out;
}

at::Tensor lincomb(c10::ArrayRef<double> coeffs, at::TensorList tensors, double bias) {
  TORCH_CHECK_VALUE(!coeffs.empty(), "coeffs must not be empty");
  TORCH_CHECK_VALUE(coeffs.size() == tensors.size(), "coeffs has ", coeffs.size(),
                    " entries but tensors has ", tensors.size());
  check_floating(tensors[0], ArgName("tensors", 0));
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  for (const auto& t : tensors) contiguous.push_back(t.contiguous());
  auto out = at::empty_like(tensors[0], at::MemoryFormat::Contiguous);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("nytorch_ext::lincomb_out", "")
                       .typed<void(c10::ArrayRef<double>, at::TensorList, double,
                                   const at::Tensor&)>();
  op.call(coeffs, contiguous, bias, out);
  return out;
}

// All parameter views of one flat buffer in one call: `offsets[i]` elements in,
// shaped by the next `ndims[i]` entries of `shapes`. Composite, so autograd and
// view tracking come from as_strided itself. One call instead of a narrow + view
// pair per parameter from Python, each a full trip through the dispatcher.
std::vector<at::Tensor> views(const at::Tensor& flat, c10::IntArrayRef offsets,
                              c10::IntArrayRef shapes, c10::IntArrayRef ndims) {
  TORCH_CHECK_VALUE(offsets.size() == ndims.size(), "offsets has ", offsets.size(),
                    " entries but ndims has ", ndims.size());
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous(), "flat must be a contiguous 1-D tensor");
  std::vector<at::Tensor> out;
  out.reserve(offsets.size());
  c10::SmallVector<int64_t, 8> strides;
  size_t at = 0;
  for (size_t i = 0; i < offsets.size(); ++i) {
    const auto n = static_cast<size_t>(ndims[i]);
    TORCH_CHECK_VALUE(at + n <= shapes.size(), "shapes is shorter than ndims says");
    const auto shape = shapes.slice(at, n);
    at += n;
    const int64_t numel = contiguous_strides(shape, strides);
    TORCH_CHECK_VALUE(offsets[i] >= 0 && offsets[i] + numel <= flat.numel(), "view ", i,
                      " (offset ", offsets[i], ", ", numel, " elements) is outside flat");
    out.push_back(flat.as_strided(shape, strides, flat.storage_offset() + offsets[i]));
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(nytorch_ext, m) {
  m.def("axpby(float a, Tensor x, float b, Tensor y) -> Tensor");
  m.def("blend(Tensor x, Tensor y, float alpha) -> Tensor");
  m.def("lincomb(float[] coeffs, Tensor[] tensors, float bias=0.) -> Tensor");
  for_each_mutating_op<CpuDevice>([&](const char* schema, auto) { m.def(schema); });
  m.def("_views(Tensor(a) flat, int[] offsets, int[] shapes, int[] ndims) -> Tensor(a)[]");
}

TORCH_LIBRARY_IMPL(nytorch_ext, CompositeExplicitAutograd, m) {
  m.impl("axpby", &axpby);
  m.impl("blend", &blend);
  m.impl("lincomb", &lincomb);
}

// Autograd for the mutating ops (the out=, in-place and list forms): they have
// no derivative, so while grad mode is on any tensor argument that requires grad
// is an error naming it, before anything is written (torch's own out= functions
// raise the same way; silently writing a result detached from the graph would
// drop its gradients). Otherwise run the kernel and bump the version counter of
// every tensor written, so autograd notices when a tensor saved for backward was
// overwritten. Arguments are checked in schema order, so the first one named is
// the caller's (axpby_(a, x, b, y) passes x before out=x).
void mutating_op_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                          torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const size_t first = stack->size() - args.size();
  const bool grad_mode = c10::GradMode::is_enabled();
  auto check = [&](const at::Tensor& t, size_t arg, int64_t index) {
    TORCH_CHECK(!t.defined() || !t.requires_grad(),
                ArgName(args[arg].name().c_str(), index), " requires grad, but ",
                op.schema().name(),
                " (an out=, in-place or list form) does not support automatic "
                "differentiation: call it under torch.no_grad(), or use the allocating "
                "form (axpby, blend, lincomb)");
  };
  c10::SmallVector<at::Tensor, 8> written;  // no heap allocation for the common case
  for (size_t i = 0; i < args.size(); ++i) {
    const c10::IValue& value = (*stack)[first + i];
    const auto* alias = args[i].alias_info();
    const bool writes = alias != nullptr && alias->isWrite();
    if (value.isTensor()) {
      if (grad_mode) check(value.toTensor(), i, -1);
      if (writes) written.push_back(value.toTensor());
    } else if (value.isTensorList()) {
      int64_t k = 0;
      for (const at::Tensor& t : value.toTensorList()) {
        if (grad_mode) check(t, i, k);
        if (writes) written.push_back(t);
        ++k;
      }
    }
  }
  op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  for (const auto& t : written) torch::autograd::impl::bump_version(t);
}

TORCH_LIBRARY_IMPL(nytorch_ext, CompositeImplicitAutograd, m) {
  m.impl("_views", &views);
}

TORCH_LIBRARY_IMPL(nytorch_ext, Autograd, m) {
  for_each_mutating_op<CpuDevice>([&](const char* schema, auto) {
    m.impl(name_of(schema).c_str(),
           torch::CppFunction::makeFromBoxedFunction<&mutating_op_autograd>());
  });
}

TORCH_LIBRARY_IMPL(nytorch_ext, CPU, m) { register_kernels<CpuDevice>(m); }

#ifdef NYTORCH_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(nytorch_ext, CUDA, m) { register_kernels<CudaDevice>(m); }
#endif

}  // namespace nytorch_ext
