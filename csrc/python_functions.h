// Plain functions of the Python module `_C` (not torch ops): metadata checks and
// object construction for the particle code, where the dispatcher has no role.
#pragma once
#include <Python.h>

namespace nytorch_ext {

// views_in_place(params, addresses, shapes) -> bool (placement.cpp).
PyObject* views_in_place(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// entries_are(dicts, names, values) -> bool (placement.cpp).
PyObject* entries_are(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// attributes_are(objects, name, values) -> bool (placement.cpp).
PyObject* attributes_are(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// increment_versions(lists) -> None (versions.cpp).
PyObject* increment_versions(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// draw_indices(n, k, replace, generator) -> list[int]: torch.randint / torch.randperm's
// draw (draws.cpp).
PyObject* draw_indices(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// parameter_views(flat, offsets, shapes, ndims, requires_grad) -> list (parameters.cpp).
PyObject* parameter_views(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// copy_module_tree(sources, ..., params, nyto_ids, kernel, cell) -> (modules, places)
// (module_tree.cpp).
PyObject* copy_module_tree(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
// tensor_groups(tensors) -> None | list[list[int]]: (device, dtype) groups (groups.cpp).
PyObject* tensor_groups(PyObject* self, PyObject* const* args, Py_ssize_t nargs);

}  // namespace nytorch_ext
