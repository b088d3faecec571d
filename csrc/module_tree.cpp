// copy_module_tree(sources, param_names, param_index, child_names, child_index,
//                  params, nyto_ids, kernel, cell) -> (modules, (dicts, names, params))
//
// The module objects of a new particle: for each source module (pre-order), a
// new object of its class sharing its attributes (hooks, buffers, plain values:
// a shallow copy, as nytorch makes), with its own `_parameters`, `_buffers` and
// `_modules` dictionaries, in which the named parameters are `params[index]` and
// the named children the new copies `modules[index]`. NytoModules (nyto_ids[i]
// not None) get `_particle_kernel`, `_module_id` and `_nyto_cell`.
// `places` is three lists - parameter dicts, names, Parameters - with one entry
// per placement (parallel lists, not tuples: fewer objects for the cycle collector).
//
// Exactly what the Python loop of the particle code does (it remains the
// fallback); in C it saves a per-module share of `module()` that matters on
// models of many small layers (benchmarks/fused_vs_eager.py). Not a torch op: it
// makes Python objects.
#include <Python.h>

#include <initializer_list>

#include "python_functions.h"

namespace nytorch_ext {
namespace {

// A new reference to `source.__dict__[name]`, which must be a dict.
PyObject* table_copy(PyObject* source_dict, PyObject* name) {
  PyObject* table = PyDict_GetItemWithError(source_dict, name);  // borrowed
  if (table == nullptr) {
    if (!PyErr_Occurred()) {
      PyErr_Format(PyExc_TypeError, "copy_module_tree: a source module has no %U", name);
    }
    return nullptr;
  }
  if (!PyDict_Check(table)) {
    PyErr_Format(PyExc_TypeError, "copy_module_tree: a source module's %U is not a dict", name);
    return nullptr;
  }
  return PyDict_Copy(table);
}

// table[names[k]] = values[index[k]] for each k; with `places`, also append
// table, name and value to places[0], [1] and [2].
bool fill(PyObject* table, PyObject* names, PyObject* index, PyObject* values,
          PyObject* const* places) {
  if (!PyTuple_Check(names) || !PyTuple_Check(index) ||
      PyTuple_GET_SIZE(names) != PyTuple_GET_SIZE(index)) {
    PyErr_SetString(PyExc_TypeError,
                    "copy_module_tree: names and indices must be tuples of one length");
    return false;
  }
  const Py_ssize_t count = PyList_GET_SIZE(values);
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names); ++k) {
    const Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(index, k));
    if (i == -1 && PyErr_Occurred()) return false;
    if (i < 0 || i >= count) {
      PyErr_Format(PyExc_IndexError, "copy_module_tree: index %zd out of range (%zd)", i, count);
      return false;
    }
    PyObject* name = PyTuple_GET_ITEM(names, k);
    PyObject* value = PyList_GET_ITEM(values, i);
    if (PyDict_SetItem(table, name, value) < 0) return false;
    if (places != nullptr && (PyList_Append(places[0], table) < 0 ||
                              PyList_Append(places[1], name) < 0 ||
                              PyList_Append(places[2], value) < 0)) {
      return false;
    }
  }
  return true;
}

struct Names {
  PyObject *parameters, *buffers, *modules, *kernel, *module_id, *cell;
};

bool intern_names(Names& n) {
  n.parameters = PyUnicode_InternFromString("_parameters");
  n.buffers = PyUnicode_InternFromString("_buffers");
  n.modules = PyUnicode_InternFromString("_modules");
  n.kernel = PyUnicode_InternFromString("_particle_kernel");
  n.module_id = PyUnicode_InternFromString("_module_id");
  n.cell = PyUnicode_InternFromString("_nyto_cell");
  return n.parameters && n.buffers && n.modules && n.kernel && n.module_id && n.cell;
}

}  // namespace

PyObject* copy_module_tree(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  static Names names{};
  static bool interned = intern_names(names);
  if (!interned) return nullptr;
  if (nargs != 9) {
    PyErr_SetString(PyExc_TypeError,
                    "copy_module_tree(sources, param_names, param_index, child_names, "
                    "child_index, params, nyto_ids, kernel, cell) takes 9 arguments");
    return nullptr;
  }
  PyObject *sources = args[0], *param_names = args[1], *param_index = args[2];
  PyObject *child_names = args[3], *child_index = args[4], *params = args[5];
  PyObject *nyto_ids = args[6], *kernel = args[7], *cell = args[8];
  for (int k : {0, 1, 2, 3, 4, 5, 6}) {
    if (!PyList_Check(args[k])) {
      PyErr_Format(PyExc_TypeError, "copy_module_tree: argument %d must be a list", k);
      return nullptr;
    }
  }
  const Py_ssize_t n = PyList_GET_SIZE(sources);
  for (PyObject* list : {param_names, param_index, child_names, child_index, nyto_ids}) {
    if (PyList_GET_SIZE(list) != n) {
      PyErr_SetString(PyExc_ValueError, "copy_module_tree: one plan entry per source module");
      return nullptr;
    }
  }
  PyObject* empty = PyTuple_New(0);
  PyObject* modules = PyList_New(n);
  PyObject* places[3] = {PyList_New(0), PyList_New(0), PyList_New(0)};
  if (!empty || !modules || !places[0] || !places[1] || !places[2]) goto fail;
  // Every object first: a module's children are later in pre-order.
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* source = PyList_GET_ITEM(sources, i);
    PyObject* copy = PyBaseObject_Type.tp_new(Py_TYPE(source), empty, nullptr);  // object.__new__
    if (copy == nullptr) goto fail;
    PyList_SET_ITEM(modules, i, copy);
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* source = PyList_GET_ITEM(sources, i);
    PyObject* copy = PyList_GET_ITEM(modules, i);
    PyObject* source_dict = PyObject_GenericGetDict(source, nullptr);
    // A copy of the source's dict set as the new object's: cloning a dict is a
    // copy of its table, where inserting the entries one by one resizes it twice.
    PyObject* dict = source_dict ? PyDict_Copy(source_dict) : nullptr;
    PyObject *p_table = nullptr, *m_table = nullptr, *b_table = nullptr;
    bool ok = dict && PyObject_GenericSetDict(copy, dict, nullptr) == 0;
    ok = ok && (p_table = table_copy(source_dict, names.parameters)) &&
         (m_table = table_copy(source_dict, names.modules)) &&
         (b_table = table_copy(source_dict, names.buffers));
    ok = ok && fill(p_table, PyList_GET_ITEM(param_names, i), PyList_GET_ITEM(param_index, i),
                    params, places) &&
         fill(m_table, PyList_GET_ITEM(child_names, i), PyList_GET_ITEM(child_index, i), modules,
              nullptr);
    ok = ok && PyDict_SetItem(dict, names.parameters, p_table) == 0 &&
         PyDict_SetItem(dict, names.modules, m_table) == 0 &&
         PyDict_SetItem(dict, names.buffers, b_table) == 0;
    PyObject* id = PyList_GET_ITEM(nyto_ids, i);
    if (ok && id != Py_None) {
      ok = PyDict_SetItem(dict, names.kernel, kernel) == 0 &&
           PyDict_SetItem(dict, names.module_id, id) == 0 &&
           PyDict_SetItem(dict, names.cell, cell) == 0;
    }
    Py_XDECREF(source_dict);
    Py_XDECREF(dict);
    Py_XDECREF(p_table);
    Py_XDECREF(m_table);
    Py_XDECREF(b_table);
    if (!ok) goto fail;
  }
  Py_DECREF(empty);
  return Py_BuildValue("(N(NNN))", modules, places[0], places[1], places[2]);  // steals them

fail:
  Py_XDECREF(empty);
  Py_XDECREF(modules);
  for (PyObject* list : places) Py_XDECREF(list);
  return nullptr;
}

}  // namespace nytorch_ext
