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

void validate_binary_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& y) {
  check_floating(x, "x");
  check_same(y, "y", x, "x");
  check_same(out, "out", x, "x");
  check_contiguous(out, "out");
  check_contiguous(x, "x");
  check_contiguous(y, "y");
  check_out_alias(out, x, "x");
  check_out_alias(out, y, "y");
}

void validate_lincomb_out(const at::Tensor& out, c10::ArrayRef<double> coeffs,
                          at::TensorList tensors) {
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
  for (int64_t k = 0; k < static_cast<int64_t>(tensors.size()); ++k) {
    check_out_alias(out, tensors[k], ArgName("tensors", k));
  }
}

void validate_multi_axpby(at::TensorList outs, at::TensorList xs, at::TensorList ys) {
  TORCH_CHECK_VALUE(xs.size() == outs.size(), "xs has ", xs.size(),
                    " tensors but outs has ", outs.size());
  TORCH_CHECK_VALUE(ys.size() == outs.size(), "ys has ", ys.size(),
                    " tensors but outs has ", outs.size());
  const NamedList inputs[] = {{xs, "xs"}, {ys, "ys"}};
  check_multi({outs, "outs"}, inputs);
}

void validate_multi_blend(at::TensorList targets, at::TensorList sources,
                          c10::ArrayRef<double> alphas, const char* alphas_name) {
  TORCH_CHECK_VALUE(!sources.empty() || targets.empty(), "sources must not be empty");
  TORCH_CHECK_VALUE(alphas.size() == 1 || alphas.size() == targets.size(), alphas_name,
                    " has ", alphas.size(), " entries but targets has ", targets.size(),
                    " (give one, or one per target)");
  const NamedList inputs[] = {{sources, "sources"}};
  check_multi({targets, "targets"}, inputs);
}

void validate_blend_noise(const at::Tensor& self, const at::Tensor& best, double weight,
                          double noise_scale) {
  check_finite(weight, "weight");
  check_finite(noise_scale, "noise_scale");
  check_floating(self, "self");
  check_same(best, "best", self, "self");
  check_contiguous(self, "self");
  check_contiguous(best, "best");
  check_out_alias(self, best, "best");
}

void validate_multi_blend_noise(at::TensorList targets, at::TensorList sources,
                                c10::ArrayRef<double> weights, double noise_scale,
                                c10::ArrayRef<int64_t> streams) {
  TORCH_CHECK_VALUE(streams.size() == targets.size(), "streams has ", streams.size(),
                    " entries but targets has ", targets.size(), " (give one per target)");
  for (int64_t k = 0; k < static_cast<int64_t>(weights.size()); ++k) {
    check_finite(weights[k], ArgName("weights", k));
  }
  check_finite(noise_scale, "noise_scale");
  validate_multi_blend(targets, sources, weights, "weights");
}

// ------------------------------------------------------------ CPU registrations

namespace {

void axpby_out_cpu(double a, const at::Tensor& x, double b, const at::Tensor& y,
                   const at::Tensor& out) {
  validate_binary_out(out, x, y);
  cpu::axpby(out, a, x, b, y);
}

void blend_out_cpu(const at::Tensor& x, const at::Tensor& y, double alpha,
                   const at::Tensor& out) {
  validate_binary_out(out, x, y);
  cpu::blend(out, x, y, alpha);
}

void lincomb_out_cpu(c10::ArrayRef<double> coeffs, at::TensorList tensors, double bias,
                     const at::Tensor& out) {
  validate_lincomb_out(out, coeffs, tensors);
  cpu::lincomb(out, coeffs, tensors, bias);
}

void multi_axpby_cpu(at::TensorList outs, double a, at::TensorList xs, double b,
                     at::TensorList ys) {
  validate_multi_axpby(outs, xs, ys);
  cpu::multi_axpby(outs, a, xs, b, ys);
}

void multi_blend_cpu(at::TensorList targets, at::TensorList sources,
                     c10::ArrayRef<double> alphas) {
  validate_multi_blend(targets, sources, alphas);
  cpu::multi_blend(targets, sources, alphas);
}

void blend_noise_cpu(const at::Tensor& self, const at::Tensor& best, double weight,
                     double noise_scale, int64_t seed, int64_t stream) {
  validate_blend_noise(self, best, weight, noise_scale);
  cpu::multi_blend_noise(self, best, weight, noise_scale, seed, stream);
}

void multi_blend_noise_cpu(at::TensorList targets, at::TensorList sources,
                           c10::ArrayRef<double> weights, double noise_scale, int64_t seed,
                           c10::ArrayRef<int64_t> streams) {
  validate_multi_blend_noise(targets, sources, weights, noise_scale, streams);
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
  m.def("multi_blend_(Tensor(a!)[] targets, Tensor[] sources, float[] alphas) -> ()");
  // Blend plus Gaussian noise drawn in the pass (philox.h); seed and streams are
  // uint64 bit patterns carried as int64.
  m.def("blend_noise_(Tensor(a!) self, Tensor best, float weight, float noise_scale, int seed, "
        "int stream) -> ()");
  m.def("multi_blend_noise_(Tensor(a!)[] targets, Tensor[] sources, float[] weights, "
        "float noise_scale, int seed, int[] streams) -> ()");
  m.def("_views(Tensor(a) flat, int[] offsets, int[] shapes, int[] ndims) -> Tensor(a)[]");
}

TORCH_LIBRARY_IMPL(nytorch_ext, CompositeExplicitAutograd, m) {
  m.impl("axpby", &axpby);
  m.impl("blend", &blend);
  m.impl("lincomb", &lincomb);
}

// Autograd for the mutating ops: they have no derivative, so writing a tensor
// that requires grad while grad mode is on is an error (as it is for a leaf in
// torch); otherwise run the kernel and bump the version counter of every tensor
// written, so autograd notices when a tensor saved for backward was overwritten.
void mutating_op_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                          torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const size_t first = stack->size() - args.size();
  struct Written {
    at::Tensor tensor;
    size_t arg;     // schema argument
    int64_t index;  // position in a tensor list, -1 for a single tensor
  };
  c10::SmallVector<Written, 8> written;  // no heap allocation for the common case
  for (size_t i = 0; i < args.size(); ++i) {
    const auto* alias = args[i].alias_info();
    if (alias == nullptr || !alias->isWrite()) continue;
    const c10::IValue& value = (*stack)[first + i];
    if (value.isTensor()) {
      written.push_back({value.toTensor(), i, -1});
    } else if (value.isTensorList()) {
      int64_t k = 0;
      for (const at::Tensor& t : value.toTensorList()) written.push_back({t, i, k++});
    }
  }
  if (c10::GradMode::is_enabled()) {
    for (const auto& w : written) {
      TORCH_CHECK(!w.tensor.requires_grad(), op.schema().name(), " writes ",
                  ArgName(args[w.arg].name().c_str(), w.index),
                  ", which requires grad; these in-place ops are not differentiable: "
                  "call them under torch.no_grad()");
    }
  }
  op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  for (const auto& w : written) torch::autograd::impl::bump_version(w.tensor);
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
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C",
                      "nytorch_ext compiled kernels; importing registers torch.ops.nytorch_ext.",
                      -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
