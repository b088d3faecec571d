// Op schemas (declared once), the shared argument validation, the CPU
// registrations, the device-generic functional forms, and the Python module
// `nytorch_ext._C`, whose import registers all of it with the dispatcher.
#include <Python.h>

#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty_like.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <c10/util/SmallVector.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/kernels.h"
#include "ops.h"
#include "python_functions.h"
#include "strides.h"

namespace nytorch_ext {

// ----------------------------------------------------------------- validation

namespace {

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

}  // namespace

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

void validate_multi_blend(at::TensorList targets, at::TensorList sources,
                          c10::ArrayRef<double> alphas, bool shared_source,
                          const char* alphas_name) {
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

// ------------------------------------------------------------ CPU registrations

namespace {

void axpby_out_cpu(double a, const at::Tensor& x, double b, const at::Tensor& y,
                   const at::Tensor& out) {
  validate_axpby_out(out, a, x, b, y);
  cpu::axpby(out, a, x, b, y);
}

void blend_out_cpu(const at::Tensor& x, const at::Tensor& y, double alpha,
                   const at::Tensor& out) {
  validate_blend_out(out, x, y, alpha);
  cpu::blend(out, x, y, alpha);
}

void lincomb_out_cpu(c10::ArrayRef<double> coeffs, at::TensorList tensors, double bias,
                     const at::Tensor& out) {
  validate_lincomb_out(out, coeffs, tensors, bias);
  cpu::lincomb(out, coeffs, tensors, bias);
}

void multi_axpby_cpu(at::TensorList outs, double a, at::TensorList xs, double b,
                     at::TensorList ys) {
  validate_multi_axpby(outs, a, xs, b, ys);
  cpu::multi_axpby(outs, a, xs, b, ys);
}

void multi_blend_cpu(at::TensorList targets, at::TensorList sources,
                     c10::ArrayRef<double> alphas, bool shared_source) {
  validate_multi_blend(targets, sources, alphas, shared_source);
  cpu::multi_blend(targets, sources, alphas);
}

void blend_noise_cpu(const at::Tensor& x, const at::Tensor& best, double weight,
                     double noise_scale, int64_t seed, int64_t stream) {
  validate_blend_noise(x, best, weight, noise_scale);
  cpu::multi_blend_noise(x, best, weight, noise_scale, seed, stream);
}

void multi_blend_noise_cpu(at::TensorList targets, at::TensorList sources,
                           c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                           c10::ArrayRef<int64_t> streams, bool shared_source) {
  validate_multi_blend_noise(targets, sources, weights, noise_scale, streams, shared_source);
  cpu::multi_blend_noise(targets, sources, weights, noise_scale, seed, streams);
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
// pair per parameter from Python (~3 us each).
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
  m.def("axpby_out(float a, Tensor x, float b, Tensor y, *, Tensor(a!) out) -> ()");
  m.def("blend(Tensor x, Tensor y, float alpha) -> Tensor");
  m.def("blend_out(Tensor x, Tensor y, float alpha, *, Tensor(a!) out) -> ()");
  m.def("lincomb(float[] coeffs, Tensor[] tensors, float bias=0.) -> Tensor");
  m.def("lincomb_out(float[] coeffs, Tensor[] tensors, float bias, *, Tensor(a!) out) -> ()");
  m.def("multi_axpby_(Tensor(a!)[] outs, float a, Tensor[] xs, float b, Tensor[] ys) -> ()");
  // shared_source: `sources` is one tensor shared by every target, even by a single
  // one (which it may then not overlap); otherwise a one-entry list is shared only
  // by several targets.
  m.def("multi_blend_(Tensor(a!)[] targets, Tensor[] sources, float[] alphas, "
        "bool shared_source=False) -> ()");
  // Blend plus Gaussian noise drawn in the pass (philox.h); seed and streams are
  // uint64 bit patterns carried as int64.
  m.def("blend_noise_(Tensor(a!) x, Tensor best, float weight, float noise_scale, int seed, "
        "int stream) -> ()");
  m.def("multi_blend_noise_(Tensor(a!)[] targets, Tensor[] sources, float[] weights, "
        "float noise_scale, int seed, int[] streams, bool shared_source=False) -> ()");
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
  for (const char* name : {"axpby_out", "blend_out", "lincomb_out", "multi_axpby_", "multi_blend_",
                           "blend_noise_", "multi_blend_noise_"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&mutating_op_autograd>());
  }
}

TORCH_LIBRARY_IMPL(nytorch_ext, CPU, m) {
  m.impl("axpby_out", &axpby_out_cpu);
  m.impl("blend_out", &blend_out_cpu);
  m.impl("lincomb_out", &lincomb_out_cpu);
  m.impl("multi_axpby_", &multi_axpby_cpu);
  m.impl("multi_blend_", &multi_blend_cpu);
  m.impl("blend_noise_", &blend_noise_cpu);
  m.impl("multi_blend_noise_", &multi_blend_noise_cpu);
}

#ifdef NYTORCH_EXT_WITH_CUDA
int cuda_runtime_version();  // cuda/ops_cuda.cpp
#endif

}  // namespace nytorch_ext

// ---------------------------------------------------------- the Python module

namespace {

// build_info() -> dict: what this binary was compiled with.
PyObject* build_info(PyObject*, PyObject*) {
  PyObject* info = PyDict_New();
  if (!info) return nullptr;
  auto set = [&](const char* key, PyObject* value) {
    if (value) {
      PyDict_SetItemString(info, key, value);
      Py_DECREF(value);
    }
  };
  set("cpu", PyUnicode_FromString(nytorch_ext::cpu::simd_name()));
#ifdef NYTORCH_EXT_WITH_CUDA
  set("cuda", Py_NewRef(Py_True));
  set("cuda_runtime_version", PyLong_FromLong(nytorch_ext::cuda_runtime_version()));
#else
  set("cuda", Py_NewRef(Py_False));
#endif
  return info;
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this binary was compiled with."},
    {"views_in_place", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                           &nytorch_ext::views_in_place)),
     METH_FASTCALL, "Whether each parameter is the contiguous view its layout says."},
    {"entries_are", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                        &nytorch_ext::entries_are)),
     METH_FASTCALL, "Whether dicts[i].get(names[i]) is values[i] for every i."},
    {"parameter_views", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                            &nytorch_ext::parameter_views)),
     METH_FASTCALL, "nn.Parameter objects that are contiguous views of a flat buffer."},
    {"copy_module_tree", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                             &nytorch_ext::copy_module_tree)),
     METH_FASTCALL, "Shallow copies of a particle's modules with their own tables."},
    {"tensor_groups", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                          &nytorch_ext::tensor_groups)),
     METH_FASTCALL, "None if the tensors share one (device, dtype), else each group's indices."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C",
                      "nytorch_ext compiled kernels; importing registers torch.ops.nytorch_ext.",
                      -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
