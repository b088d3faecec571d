// CPU kernels of one instruction set: at::parallel_for splits the elements
// across threads; each thread runs an at::vec::Vectorized main loop and a scalar
// tail. Half types are widened to float for the math, float64 stays double.
//
// Compiled once per capability by setup.py with -DCPU_CAPABILITY=<cap> and the
// matching -m flags (see kernel_table.h); defines kernel_table_<cap>().
#include <algorithm>
#include <tuple>
#include <utility>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/SmallVector.h>

#include "../functors.h"
#include "kernel_table.h"

#ifndef CPU_CAPABILITY
#error "kernels.cpp is compiled once per CPU capability: define CPU_CAPABILITY"
#endif

namespace nytorch_ext {
namespace cpu {
inline namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Elements per parallel task: amortizes the thread hand-off, still balances
// many threads on a few-MB buffer.
constexpr int64_t kGrain = 32768;

template <typename scalar_t>
constexpr bool kReduced = at::vec::is_reduced_floating_point_v<scalar_t>;

// One vector's worth of opmath values: a Vectorized<scalar_t> for float and
// double, a (lo, hi) pair of Vectorized<float> for half types.
template <typename scalar_t>
inline auto load_opmath(const scalar_t* p) {
  if constexpr (kReduced<scalar_t>) {
    return at::vec::convert_to_float<scalar_t>(Vectorized<scalar_t>::loadu(p));
  } else {
    return Vectorized<scalar_t>::loadu(p);
  }
}

template <typename scalar_t, typename V>
inline void store_opmath(scalar_t* p, const V& v) {
  if constexpr (kReduced<scalar_t>) {
    at::vec::convert_from_float<scalar_t>(std::get<0>(v), std::get<1>(v)).store(p);
  } else {
    v.store(p);
  }
}

// Applies f lane-wise to opmath vectors: once, or to both halves of a pair.
template <typename F, typename... V>
inline auto map(const F& f, const V&... v) {
  if constexpr ((... && std::is_same_v<V, Vectorized<float>>) ||
                (... && std::is_same_v<V, Vectorized<double>>)) {
    return f(v...);
  } else {
    return std::make_tuple(f(std::get<0>(v)...), f(std::get<1>(v)...));
  }
}

// out[i] = op(x[i], y[i]) for i in [0, n)
template <typename scalar_t, typename Op>
void binary_range(scalar_t* out, const scalar_t* x, const scalar_t* y, int64_t n,
                  const Op& op) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t kStep = Vectorized<scalar_t>::size();
  int64_t i = 0;
  // Two vectors per iteration, as ATen's vectorized loops do: more loads in
  // flight per core on a memory-bound loop.
  for (; i + 2 * kStep <= n; i += 2 * kStep) {
    auto r0 = map(op, load_opmath(x + i), load_opmath(y + i));
    auto r1 = map(op, load_opmath(x + i + kStep), load_opmath(y + i + kStep));
    store_opmath(out + i, r0);
    store_opmath(out + i + kStep, r1);
  }
  for (; i + kStep <= n; i += kStep) store_opmath(out + i, map(op, load_opmath(x + i), load_opmath(y + i)));
  for (; i < n; ++i) {
    out[i] = static_cast<scalar_t>(op(static_cast<opmath_t>(x[i]), static_cast<opmath_t>(y[i])));
  }
}

// out[i] = sum_k c[k]*in[k][i] + bias for i in [begin, end)
template <typename scalar_t>
void lincomb_range(scalar_t* out, const scalar_t* const* in, const at::opmath_type<scalar_t>* c,
                   int64_t k, at::opmath_type<scalar_t> bias, int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Op = LincombOp<opmath_t>;
  constexpr int64_t kStep = Vectorized<scalar_t>::size();
  int64_t i = begin;
  for (; i + kStep <= end; i += kStep) {
    auto acc = map([&](const auto& x) { return Op::first(c[0], x); }, load_opmath(in[0] + i));
    for (int64_t j = 1; j < k; ++j) {
      acc = map([&](const auto& a, const auto& x) { return Op::next(a, c[j], x); }, acc,
                load_opmath(in[j] + i));
    }
    store_opmath(out + i, map([&](const auto& a) { return Op::finish(a, bias); }, acc));
  }
  for (; i < end; ++i) {
    opmath_t acc = Op::first(c[0], static_cast<opmath_t>(in[0][i]));
    for (int64_t j = 1; j < k; ++j) acc = Op::next(acc, c[j], static_cast<opmath_t>(in[j][i]));
    out[i] = static_cast<scalar_t>(Op::finish(acc, bias));
  }
}

// Runs fn(tensor_index, begin, end) over the concatenation of all tensors, so a
// list of many small tensors is one parallel region, not one per tensor.
template <typename Fn>
void parallel_over_list(const int64_t* sizes, int64_t count, const Fn& fn) {
  c10::SmallVector<int64_t, 128> starts(count + 1, 0);
  for (int64_t t = 0; t < count; ++t) starts[t + 1] = starts[t] + sizes[t];
  at::parallel_for(0, starts[count], kGrain, [&](int64_t begin, int64_t end) {
    // The last tensor starting at or before `begin` (this skips empty tensors).
    int64_t t = std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1;
    while (begin < end) {
      const int64_t stop = std::min(end, starts[t + 1]);
      if (stop > begin) fn(t, begin - starts[t], stop - starts[t]);
      begin = stop;
      ++t;
    }
  });
}

template <typename Fn>
void dispatch(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::Float32: return fn(float{});
    case DType::Float64: return fn(double{});
    case DType::Float16: return fn(c10::Half{});
    case DType::BFloat16: return fn(c10::BFloat16{});
  }
}

template <typename T>
constexpr auto opmath(double v) {
  return static_cast<at::opmath_type<T>>(v);
}

void axpby(DType dtype, void* out, const void* x, const void* y, int64_t n, double a,
           double b) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const AxpbyOp<at::opmath_type<T>> op{opmath<T>(a), opmath<T>(b)};
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      binary_range(static_cast<T*>(out) + begin, static_cast<const T*>(x) + begin,
                   static_cast<const T*>(y) + begin, end - begin, op);
    });
  });
}

void blend(DType dtype, void* out, const void* x, const void* y, int64_t n, double alpha) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const BlendOp<at::opmath_type<T>> op{opmath<T>(alpha)};
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      binary_range(static_cast<T*>(out) + begin, static_cast<const T*>(x) + begin,
                   static_cast<const T*>(y) + begin, end - begin, op);
    });
  });
}

void lincomb(DType dtype, void* out, const void* const* inputs, const double* coeffs,
             int64_t num_inputs, int64_t n, double bias) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    c10::SmallVector<at::opmath_type<T>, 16> c(coeffs, coeffs + num_inputs);
    const auto* const* in = reinterpret_cast<const T* const*>(inputs);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      lincomb_range<T>(static_cast<T*>(out), in, c.data(), num_inputs, opmath<T>(bias), begin,
                       end);
    });
  });
}

void multi_axpby(DType dtype, void* const* outs, const void* const* xs, const void* const* ys,
                 const int64_t* sizes, int64_t num_tensors, double a, double b) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const AxpbyOp<at::opmath_type<T>> op{opmath<T>(a), opmath<T>(b)};
    parallel_over_list(sizes, num_tensors, [&](int64_t t, int64_t begin, int64_t end) {
      binary_range(static_cast<T*>(outs[t]) + begin, static_cast<const T*>(xs[t]) + begin,
                   static_cast<const T*>(ys[t]) + begin, end - begin, op);
    });
  });
}

void multi_blend(DType dtype, void* const* targets, const void* const* sources,
                 int64_t num_sources, const double* alphas, int64_t num_alphas,
                 const int64_t* sizes, int64_t num_tensors) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_over_list(sizes, num_tensors, [&](int64_t t, int64_t begin, int64_t end) {
      const BlendOp<at::opmath_type<T>> op{opmath<T>(alphas[num_alphas == 1 ? 0 : t])};
      auto* target = static_cast<T*>(targets[t]) + begin;
      const auto* source = static_cast<const T*>(sources[num_sources == 1 ? 0 : t]) + begin;
      binary_range(target, target, source, end - begin, op);
    });
  });
}

#define NYT_STR_(x) #x
#define NYT_STR(x) NYT_STR_(x)

}  // namespace
}  // namespace CPU_CAPABILITY

const KernelTable& NYT_TABLE_FN(CPU_CAPABILITY)() {
  static const KernelTable table{NYT_STR(CPU_CAPABILITY), &axpby, &blend, &lincomb,
                                 &multi_axpby, &multi_blend};
  return table;
}

}  // namespace cpu
}  // namespace nytorch_ext
