// Metadata checks for the particle code, exposed on the Python module `_C`.
#pragma once
#include <Python.h>

namespace nytorch_ext {

// views_in_place(params, addresses, shapes) -> bool (placement.cpp).
PyObject* views_in_place(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// entries_are(dicts, names, values) -> bool (placement.cpp).
PyObject* entries_are(PyObject* self, PyObject* const* args, Py_ssize_t nargs);

}  // namespace nytorch_ext
