// tensor_groups(tensors) -> None | list[list[int]]
//
// The (device, dtype) groups of a list of tensors, for the list ops' Python layer
// (nytorch_ext.ops._grouped): None when the whole list is one group (the common
// case: the list goes to one fused op call as it is), else the indices of each
// group in order of first appearance. One pass in C++: deciding this in Python
// would cost a large share of a whole list op call on a short list
// (benchmarks/fused_vs_eager.py).
#include <Python.h>

#include <vector>

#include <torch/csrc/autograd/python_variable.h>

#include "python_functions.h"

namespace nytorch_ext {

PyObject* tensor_groups(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1 || !PyList_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError, "tensor_groups(tensors) takes a list of tensors");
    return nullptr;
  }
  PyObject* list = args[0];
  const Py_ssize_t n = PyList_GET_SIZE(list);
  struct Key {
    at::ScalarType dtype;
    c10::Device device;
    bool operator==(const Key& o) const { return dtype == o.dtype && device == o.device; }
  };
  auto key_of = [&](Py_ssize_t i, Key* key) {
    PyObject* item = PyList_GET_ITEM(list, i);
    if (!THPVariable_Check(item)) {
      PyErr_Format(PyExc_TypeError, "tensor_groups: entry %zd is not a tensor", i);
      return false;
    }
    const at::Tensor& t = THPVariable_Unpack(item);
    *key = Key{t.scalar_type(), t.device()};
    return true;
  };
  if (n == 0) Py_RETURN_NONE;
  Key first{at::kFloat, c10::Device(c10::kCPU)}, key = first;
  if (!key_of(0, &first)) return nullptr;
  Py_ssize_t i = 1;
  for (; i < n; ++i) {
    if (!key_of(i, &key)) return nullptr;
    if (!(key == first)) break;
  }
  if (i == n) Py_RETURN_NONE;

  std::vector<Key> keys{first};
  std::vector<std::vector<Py_ssize_t>> groups(1);
  for (Py_ssize_t j = 0; j < i; ++j) groups[0].push_back(j);
  for (; i < n; ++i) {
    if (!key_of(i, &key)) return nullptr;
    size_t g = 0;
    while (g < keys.size() && !(keys[g] == key)) ++g;
    if (g == keys.size()) {
      keys.push_back(key);
      groups.emplace_back();
    }
    groups[g].push_back(i);
  }
  PyObject* result = PyList_New(static_cast<Py_ssize_t>(groups.size()));
  if (!result) return nullptr;
  for (size_t g = 0; g < groups.size(); ++g) {
    PyObject* idx = PyList_New(static_cast<Py_ssize_t>(groups[g].size()));
    if (!idx) {
      Py_DECREF(result);
      return nullptr;
    }
    for (size_t k = 0; k < groups[g].size(); ++k) {
      PyObject* v = PyLong_FromSsize_t(groups[g][k]);
      if (!v) {
        Py_DECREF(idx);
        Py_DECREF(result);
        return nullptr;
      }
      PyList_SET_ITEM(idx, static_cast<Py_ssize_t>(k), v);
    }
    PyList_SET_ITEM(result, static_cast<Py_ssize_t>(g), idx);
  }
  return result;
}

}  // namespace nytorch_ext
