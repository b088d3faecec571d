// increment_versions(lists) -> None: bump the version counter of every tensor of
// every list. A write into a particle's flat buffers (or a swarm's [K, N] base)
// bypasses its Parameters' own counters; bumping them makes a pending backward that
// saved the old values refuse, as after an in-place write to a parameter. The same as
// torch.autograd.graph.increment_version over the tensors, which converts each one
// through pybind11 (several times the cost of the bump). Inference tensors have no
// counter and are skipped, as torch does. Not a torch op: it touches autograd
// metadata only.
#include <Python.h>

#include <torch/csrc/autograd/python_variable.h>

#include "python_functions.h"

namespace nytorch_ext {

PyObject* increment_versions(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1 || !PyList_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError, "increment_versions(lists) takes a list of lists of tensors");
    return nullptr;
  }
  PyObject* lists = args[0];
  const Py_ssize_t n = PyList_GET_SIZE(lists);
  // Every entry is checked before any counter moves: a bad entry bumps nothing.
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* list = PyList_GET_ITEM(lists, i);
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
      PyErr_Format(PyExc_TypeError, "increment_versions: lists[%zd] is not a list or tuple", i);
      return nullptr;
    }
    for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(list); ++j) {
      if (!THPVariable_Check(PySequence_Fast_GET_ITEM(list, j))) {
        PyErr_Format(PyExc_TypeError, "increment_versions: lists[%zd][%zd] is not a tensor", i, j);
        return nullptr;
      }
    }
  }
  try {
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* list = PyList_GET_ITEM(lists, i);
      for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(list); ++j) {
        const at::Tensor& t = THPVariable_Unpack(PySequence_Fast_GET_ITEM(list, j));
        if (!t.is_inference()) t.unsafeGetTensorImpl()->bump_version();
      }
    }
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

}  // namespace nytorch_ext
