// views_in_place(params, addresses, shapes) -> bool: is every parameter still the
// contiguous view of the flat buffer that the particle's layout says it is?
// entries_are(dicts, names, values) -> bool: is every dicts[i][names[i]] values[i]
// (each parameter still where the particle's last scan found it)?
// attributes_are(objects, name, values) -> bool: is getattr(objects[i], name)
// values[i] for every i (each swarm member still holds the storage it was checked with)?
//
// The particle code asks this before every operation (`.to()`, `.half()`,
// `param.data = ...` replace a parameter's storage behind its back). In Python it
// takes three calls per parameter (data_ptr, shape, is_contiguous); here it is
// one call for the whole list. Not a torch op: it reads tensor metadata
// only, so it has no place in the dispatcher (no fake, no autograd, no device).
#include <Python.h>

#include <climits>
#include <cstdint>

#include <torch/csrc/autograd/python_variable.h>

#include "python_functions.h"

namespace nytorch_ext {
namespace {

// An int as a 64-bit integer. CPython 3.11's PyLong_AsLongLong converts an int of
// more than one 30-bit digit (every address) through a byte array; PyLong_AsLong
// reads the digits directly, and a long is 64 bits wherever longs are.
inline long long as_int64(PyObject* value) {
#if LONG_MAX == LLONG_MAX
  return PyLong_AsLong(value);
#else
  return PyLong_AsLongLong(value);
#endif
}

bool same_shape(const at::Tensor& t, PyObject* shape) {
  // `shape` is a torch.Size (a tuple subclass) of Python ints.
  const auto sizes = t.sizes();
  const Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
  if (ndim != static_cast<Py_ssize_t>(sizes.size())) return false;
  for (Py_ssize_t d = 0; d < ndim; ++d) {
    if (as_int64(PyTuple_GET_ITEM(shape, d)) != sizes[d]) return false;
  }
  return true;
}

}  // namespace

PyObject* views_in_place(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError,
                    "views_in_place(params, addresses, shapes) takes three lists");
    return nullptr;
  }
  PyObject *params = args[0], *addresses = args[1], *shapes = args[2];
  const Py_ssize_t n = PyList_GET_SIZE(params);
  if (PyList_GET_SIZE(addresses) != n || PyList_GET_SIZE(shapes) != n) {
    PyErr_Format(PyExc_ValueError,
                 "views_in_place: %zd params but %zd addresses and %zd shapes", n,
                 PyList_GET_SIZE(addresses), PyList_GET_SIZE(shapes));
    return nullptr;
  }
  try {
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* p = PyList_GET_ITEM(params, i);
      PyObject* shape = PyList_GET_ITEM(shapes, i);
      if (!THPVariable_Check(p) || !PyTuple_Check(shape)) {
        PyErr_Format(PyExc_TypeError, "views_in_place: params[%zd] is not a tensor or "
                     "shapes[%zd] is not a torch.Size", i, i);
        return nullptr;
      }
      const at::Tensor& t = THPVariable_Unpack(p);
      const long long expected = as_int64(PyList_GET_ITEM(addresses, i));
      if (expected == -1 && PyErr_Occurred()) return nullptr;
      const bool shaped = same_shape(t, shape);
      if (PyErr_Occurred()) return nullptr;  // a shape entry that was not an int
      // An empty view holds no data: where it points does not matter (torch reports 0).
      if (!shaped || !t.is_contiguous() ||
          (t.numel() != 0 && reinterpret_cast<std::intptr_t>(t.const_data_ptr()) != expected)) {
        Py_RETURN_FALSE;
      }
    }
  } catch (const std::exception& e) {  // e.g. a tensor without storage: no C++ exception may
    PyErr_SetString(PyExc_RuntimeError, e.what());  // cross into the interpreter
    return nullptr;
  }
  Py_RETURN_TRUE;
}

PyObject* entries_are(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError, "entries_are(dicts, names, values) takes three lists");
    return nullptr;
  }
  PyObject *dicts = args[0], *names = args[1], *values = args[2];
  const Py_ssize_t n = PyList_GET_SIZE(dicts);
  if (PyList_GET_SIZE(names) != n || PyList_GET_SIZE(values) != n) {
    PyErr_Format(PyExc_ValueError, "entries_are: %zd dicts but %zd names and %zd values", n,
                 PyList_GET_SIZE(names), PyList_GET_SIZE(values));
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* d = PyList_GET_ITEM(dicts, i);
    if (!PyDict_Check(d)) {
      PyErr_Format(PyExc_TypeError, "entries_are: dicts[%zd] is not a dict", i);
      return nullptr;
    }
    PyObject* value = PyDict_GetItemWithError(d, PyList_GET_ITEM(names, i));  // borrowed
    if (value == nullptr && PyErr_Occurred()) return nullptr;
    if (value == nullptr) value = Py_None;  // as dict.get
    if (value != PyList_GET_ITEM(values, i)) Py_RETURN_FALSE;
  }
  Py_RETURN_TRUE;
}

PyObject* attributes_are(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyList_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyList_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError, "attributes_are(objects, name, values) takes a list, a str and a list");
    return nullptr;
  }
  PyObject *objects = args[0], *name = args[1], *values = args[2];
  const Py_ssize_t n = PyList_GET_SIZE(objects);
  if (PyList_GET_SIZE(values) != n) {
    PyErr_Format(PyExc_ValueError, "attributes_are: %zd objects but %zd values", n,
                 PyList_GET_SIZE(values));
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* value = PyObject_GetAttr(PyList_GET_ITEM(objects, i), name);  // new reference
    if (value == nullptr) return nullptr;                                    // as getattr: raises
    const bool same = value == PyList_GET_ITEM(values, i);
    Py_DECREF(value);
    if (!same) Py_RETURN_FALSE;
  }
  Py_RETURN_TRUE;
}

}  // namespace nytorch_ext
