// The Python module `nytorch_ext._C`. Importing it loads this library, whose
// static initializers register the ops with the dispatcher (ops.cpp); the module
// itself holds build_info and the plain helper functions (python_functions.h).
#include <Python.h>

#include "backends.h"
#include "python_functions.h"

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
  set("cuda_runtime_version", PyLong_FromLong(nytorch_ext::cuda::runtime_version()));
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
    {"attributes_are", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                           &nytorch_ext::attributes_are)),
     METH_FASTCALL, "Whether getattr(objects[i], name) is values[i] for every i."},
    {"increment_versions", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                               &nytorch_ext::increment_versions)),
     METH_FASTCALL, "Bump the version counter of every tensor of every list."},
    {"draw_indices", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                         &nytorch_ext::draw_indices)),
     METH_FASTCALL, "torch.randint / torch.randperm's draw of k of n indices, as a list."},
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
