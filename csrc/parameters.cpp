// parameter_views(flat, offsets, shapes, ndims, requires_grad) -> list[nn.Parameter]
//
// A new particle's operational parameters: nn.Parameter objects whose data are
// contiguous views of its flat buffer. The same objects as
// `Tensor._make_subclass(nn.Parameter, flat.narrow(...).view(shape), rg)` — not
// autograd views, leaves, sharing the buffer's version counter — made in one call.
// From Python that is two tensors (the view, then its detached alias) and two
// calls per parameter, which dominate `module()` on a model of many small tensors
// (benchmarks/fused_vs_eager.py, the p.module rows). Not a torch op: it makes
// Python objects, which the dispatcher cannot.
#include <Python.h>

#include <vector>

#include <torch/csrc/autograd/python_variable.h>

#include "python_functions.h"
#include "strides.h"

namespace nytorch_ext {
namespace {

bool int_list(PyObject* list, const char* name, std::vector<int64_t>& out) {
  if (!PyList_Check(list)) {
    PyErr_Format(PyExc_TypeError, "parameter_views: %s must be a list of ints", name);
    return false;
  }
  const Py_ssize_t n = PyList_GET_SIZE(list);
  out.resize(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    out[i] = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
    if (out[i] == -1 && PyErr_Occurred()) return false;
  }
  return true;
}

}  // namespace

PyObject* parameter_views(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5 || !THPVariable_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError,
                    "parameter_views(flat, offsets, shapes, ndims, requires_grad) takes a "
                    "tensor and four lists");
    return nullptr;
  }
  const at::Tensor& flat = THPVariable_Unpack(args[0]);
  std::vector<int64_t> offsets, shapes, ndims;
  if (!int_list(args[1], "offsets", offsets) || !int_list(args[2], "shapes", shapes) ||
      !int_list(args[3], "ndims", ndims)) {
    return nullptr;
  }
  PyObject* requires_grad = args[4];
  const Py_ssize_t n = static_cast<Py_ssize_t>(offsets.size());
  if (!PyList_Check(requires_grad) || PyList_GET_SIZE(requires_grad) != n ||
      static_cast<Py_ssize_t>(ndims.size()) != n) {
    PyErr_Format(PyExc_ValueError,
                 "parameter_views: offsets, ndims and requires_grad must be lists of one "
                 "length (%zd offsets)", n);
    return nullptr;
  }
  if (flat.dim() != 1 || !flat.is_contiguous() || flat.requires_grad()) {
    PyErr_SetString(PyExc_ValueError,
                    "parameter_views: flat must be a contiguous 1-D tensor that does not "
                    "require grad");
    return nullptr;
  }
  PyObject* out = PyList_New(n);
  if (!out) return nullptr;
  const c10::TensorImpl* base = flat.unsafeGetTensorImpl();
  std::vector<int64_t> strides;
  size_t at = 0;
  try {
    for (Py_ssize_t i = 0; i < n; ++i) {
      const auto nd = static_cast<size_t>(ndims[i]);
      if (ndims[i] < 0 || at + nd > shapes.size()) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "parameter_views: shapes is shorter than ndims says");
        return nullptr;
      }
      const c10::IntArrayRef shape(shapes.data() + at, nd);
      at += nd;
      const int64_t numel = contiguous_strides(shape, strides);
      if (offsets[i] < 0 || offsets[i] + numel > flat.numel()) {
        Py_DECREF(out);
        PyErr_Format(PyExc_ValueError, "parameter_views: view %zd (offset %lld, %lld elements) "
                     "is outside flat", i, static_cast<long long>(offsets[i]),
                     static_cast<long long>(numel));
        return nullptr;
      }
      // A detached alias of the buffer sharing its version counter (what detach()
      // gives), re-shaped in place; metadata changes allowed, as _make_subclass does,
      // so `param.data = ...` works on it.
      auto impl = base->shallow_copy_and_detach(base->version_counter(),
                                                /*allow_tensor_metadata_change=*/true);
      impl->set_sizes_and_strides(shape, strides, flat.storage_offset() + offsets[i]);
      at::Tensor param(std::move(impl));
      const int rg = PyObject_IsTrue(PyList_GET_ITEM(requires_grad, i));
      if (rg < 0) {
        Py_DECREF(out);
        return nullptr;
      }
      param.set_requires_grad(rg != 0);
      PyObject* wrapped = THPVariable_Wrap(param, reinterpret_cast<PyTypeObject*>(ParameterClass));
      if (!wrapped) {
        Py_DECREF(out);
        return nullptr;
      }
      PyList_SET_ITEM(out, i, wrapped);  // steals the reference
    }
  } catch (const std::exception& e) {
    Py_DECREF(out);
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  if (at != shapes.size()) {
    Py_DECREF(out);
    PyErr_SetString(PyExc_ValueError, "parameter_views: shapes is longer than ndims says");
    return nullptr;
  }
  return out;
}

}  // namespace nytorch_ext
