// draw_indices(n, k, replace, generator) -> list[int]: the APSO subset draw,
//   replace=True:  torch.randint(n, (k,), generator=generator).tolist()
//   replace=False: torch.randperm(n, generator=generator).tolist()[:k]
// with the same numbers and the same generator state afterwards, drawn here with the
// algorithms of torch's CPU kernels (randint: random() % n per entry, in order;
// randperm: the Fisher-Yates pass torch uses for n < 2^32 / 20) on the generator's own
// engine, under its lock. A swarm draws a handful of indices per step, where two tensor
// ops' dispatch and tolist() cost many times the draw. The Python side checks once, at
// import, that these numbers are torch's (nytorch_ext/swarm/apso.py) and otherwise
// calls torch. Not a torch op: it returns Python ints.
#include <Python.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <torch/csrc/Generator.h>

#include <limits>
#include <mutex>
#include <numeric>
#include <vector>

#include "python_functions.h"

namespace nytorch_ext {

PyObject* draw_indices(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "draw_indices(n, k, replace, generator) takes 4 arguments");
    return nullptr;
  }
  const long n = PyLong_AsLong(args[0]);
  if (n == -1 && PyErr_Occurred()) return nullptr;
  const long k = PyLong_AsLong(args[1]);
  if (k == -1 && PyErr_Occurred()) return nullptr;
  const int replace = PyObject_IsTrue(args[2]);
  if (replace < 0) return nullptr;
  // torch's randperm takes this path for n < 2^32 / 20, randint one 32-bit draw per
  // entry for n < 2^32: far above any swarm
  if (n < 1 || n >= static_cast<long>(std::numeric_limits<uint32_t>::max() / 20) || k < 0 ||
      (!replace && k > n)) {
    PyErr_Format(PyExc_ValueError, "draw_indices: need 1 <= n < %ld and 0 <= k (<= n without replacement), got n=%ld, k=%ld",
                 static_cast<long>(std::numeric_limits<uint32_t>::max() / 20), n, k);
    return nullptr;
  }
  PyObject* generator = args[3];
  std::vector<int64_t> drawn;
  try {
    at::Generator gen;
    if (generator == Py_None) {
      gen = at::detail::getDefaultCPUGenerator();
    } else {
      const int is_generator = THPGenerator_Check(generator);
      if (is_generator < 0) return nullptr;
      if (!is_generator) {
        PyErr_Format(PyExc_TypeError, "draw_indices: generator must be a torch.Generator or None, got %s",
                     Py_TYPE(generator)->tp_name);
        return nullptr;
      }
      gen = THPGenerator_Unwrap(generator);
      if (gen.device().type() != at::kCPU) {
        PyErr_SetString(PyExc_ValueError, "draw_indices: generator must be a CPU torch.Generator");
        return nullptr;
      }
    }
    auto* engine = at::check_generator<at::CPUGeneratorImpl>(gen);
    std::lock_guard<std::mutex> lock(gen.mutex());
    if (replace) {
      drawn.resize(static_cast<size_t>(k));
      for (auto& d : drawn) d = static_cast<int64_t>(engine->random() % static_cast<uint64_t>(n));
    } else {
      drawn.resize(static_cast<size_t>(n));
      std::iota(drawn.begin(), drawn.end(), int64_t{0});
      for (int64_t i = 0; i < n - 1; ++i) {
        const int64_t z = engine->random() % (n - i);
        std::swap(drawn[i], drawn[z + i]);
      }
      drawn.resize(static_cast<size_t>(k));
    }
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  PyObject* out = PyList_New(static_cast<Py_ssize_t>(drawn.size()));
  if (!out) return nullptr;
  for (size_t i = 0; i < drawn.size(); ++i) {
    PyObject* v = PyLong_FromLongLong(drawn[i]);
    if (!v) {
      Py_DECREF(out);
      return nullptr;
    }
    PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), v);
  }
  return out;
}

}  // namespace nytorch_ext
