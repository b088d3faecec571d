// CPU kernels of one instruction set: at::parallel_for splits the elements
// across threads; each thread runs an at::vec::Vectorized main loop and a scalar
// tail. Half types are widened to float for the math, float64 stays double.
//
// Compiled once per capability by setup.py with -DCPU_CAPABILITY=<cap> and the
// matching -m flags (see kernel_table.h); defines kernel_table_<cap>().
#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/SmallVector.h>

#include "../functors.h"
#include "../philox.h"
#include "../list_call.h"
#include "kernel_table.h"

#ifndef CPU_CAPABILITY
#error "kernels.cpp is compiled once per CPU capability: define CPU_CAPABILITY"
#endif

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#define NYTORCH_EXT_STREAM_STORES 1
#else
#define NYTORCH_EXT_STREAM_STORES 0
#endif

namespace nytorch_ext {
namespace cpu {
inline namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Elements per parallel task for the single-tensor kernels: ATen's GRAIN_SIZE, so
// they use as many threads as torch's own elementwise ops at every size.
constexpr int64_t kGrain = 32768;
// The list kernels fuse many small tensors into one parallel region, where torch
// would run each on one thread. A larger grain than ATen's: a list the size of
// an APSO step over a few small models runs faster on one thread than split
// across two, while larger lists still gain from more threads (see
// benchmarks/fused_vs_eager.py).
constexpr int64_t kListGrain = 131072;
// The noise kernel is compute-bound (Philox and Box-Muller per element): it pays
// for a second thread much sooner.
constexpr int64_t kNoiseGrain = 32768;

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

// Out-of-place results of at least this size are written with non-temporal
// (streaming) stores: the output lines are not read into cache first, so
// `out = f(x, y)` moves 3 buffers' worth of memory instead of 4. Below it the
// output is likely still in cache when it is next used, and a plain store wins
// (benchmarks/fused_vs_eager.py measures both sides of the threshold).
constexpr int64_t kStreamBytes = int64_t{4} << 20;

template <typename scalar_t>
constexpr bool kStreamable = NYTORCH_EXT_STREAM_STORES &&
                             (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>);

// Stores one vector of results: plainly, or non-temporally to a vector-aligned p.
template <bool kStream, typename scalar_t, typename V>
inline void store_out(scalar_t* p, const V& v) {
  if constexpr (kStream) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<scalar_t, float>) _mm512_stream_ps(p, v);
    else _mm512_stream_pd(p, v);
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<scalar_t, float>) _mm256_stream_ps(p, v);
    else _mm256_stream_pd(p, v);
#endif
  } else {
    store_opmath(p, v);
  }
}

// Streaming stores are weakly ordered: fence them before the parallel region ends.
inline void stream_fence() {
#if NYTORCH_EXT_STREAM_STORES
  _mm_sfence();
#endif
}

// The first index in [i, end) at which out + index is vector-aligned (or end).
template <typename scalar_t>
inline int64_t first_aligned(const scalar_t* out, int64_t i, int64_t end) {
  constexpr auto kBytes = static_cast<uintptr_t>(sizeof(Vectorized<scalar_t>));
  const auto addr = reinterpret_cast<uintptr_t>(out + i);
  const auto skip = static_cast<int64_t>(((kBytes - addr % kBytes) % kBytes) / sizeof(scalar_t));
  return std::min(end, i + skip);
}

// fn(std::true_type) when streaming stores apply to T and `stream` holds, else
// fn(std::false_type): instantiates the streaming loops only where they exist.
template <typename T, typename Fn>
inline void with_stream(bool stream, const Fn& fn) {
  if constexpr (kStreamable<T>) {
    if (stream) return fn(std::true_type{});
  }
  fn(std::false_type{});
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

// One vector's worth of opmath values from `p`: of scalar_t, or already opmath
// (noise), which for half types takes two float vectors.
template <typename scalar_t, typename U>
inline auto load_as(const U* p) {
  if constexpr (std::is_same_v<U, scalar_t>) {
    return load_opmath(p);
  } else {
    static_assert(kReduced<scalar_t> && std::is_same_v<U, float>, "opmath input");
    return std::make_tuple(Vectorized<float>::loadu(p),
                           Vectorized<float>::loadu(p + Vectorized<float>::size()));
  }
}

// out[i] = op(in[i]...) for i in [0, n); each input of scalar_t or opmath.
// kStream: non-temporal stores (float/double; out must not be an input).
template <bool kStream = false, typename scalar_t, typename Op, typename... In>
void elementwise_range(scalar_t* out, int64_t n, const Op& op, const In*... in) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t kStep = Vectorized<scalar_t>::size();
  int64_t i = 0;
  if constexpr (kStream) {  // scalar head up to the first aligned vector
    for (const int64_t head = first_aligned(out, 0, n); i < head; ++i)
      out[i] = static_cast<scalar_t>(op(static_cast<opmath_t>(in[i])...));
  }
  // Two vectors per iteration, as ATen's vectorized loops do: more loads in
  // flight per core on a memory-bound loop.
  for (; i + 2 * kStep <= n; i += 2 * kStep) {
    auto r0 = map(op, load_as<scalar_t>(in + i)...);
    auto r1 = map(op, load_as<scalar_t>(in + i + kStep)...);
    store_out<kStream>(out + i, r0);
    store_out<kStream>(out + i + kStep, r1);
  }
  for (; i + kStep <= n; i += kStep) store_out<kStream>(out + i, map(op, load_as<scalar_t>(in + i)...));
  for (; i < n; ++i) out[i] = static_cast<scalar_t>(op(static_cast<opmath_t>(in[i])...));
  if constexpr (kStream) stream_fence();
}

// out[i] = op(x[i], y[i]) for i in [0, n)
template <bool kStream = false, typename scalar_t, typename Op>
void binary_range(scalar_t* out, const scalar_t* x, const scalar_t* y, int64_t n,
                  const Op& op) {
  elementwise_range<kStream>(out, n, op, x, y);
}

// out[i] = sum_k c[k]*in[k][i] + bias for i in [begin, end)
template <bool kStream, typename scalar_t>
void lincomb_range(scalar_t* out, const scalar_t* const* in, const at::opmath_type<scalar_t>* c,
                   int64_t k, at::opmath_type<scalar_t> bias, int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Op = LincombOp<opmath_t>;
  constexpr int64_t kStep = Vectorized<scalar_t>::size();
  auto scalar = [&](int64_t i) {
    opmath_t acc = Op::first(c[0], static_cast<opmath_t>(in[0][i]));
    for (int64_t j = 1; j < k; ++j) acc = Op::next(acc, c[j], static_cast<opmath_t>(in[j][i]));
    out[i] = static_cast<scalar_t>(Op::finish(acc, bias));
  };
  int64_t i = begin;
  if constexpr (kStream) {
    for (const int64_t head = first_aligned(out, begin, end); i < head; ++i) scalar(i);
  }
  for (; i + kStep <= end; i += kStep) {
    auto acc = map([&](const auto& x) { return Op::first(c[0], x); }, load_opmath(in[0] + i));
    for (int64_t j = 1; j < k; ++j) {
      acc = map([&](const auto& a, const auto& x) { return Op::next(a, c[j], x); }, acc,
                load_opmath(in[j] + i));
    }
    store_out<kStream>(out + i, map([&](const auto& a) { return Op::finish(a, bias); }, acc));
  }
  for (; i < end; ++i) scalar(i);
  if constexpr (kStream) stream_fence();
}

// Runs fn(tensor_index, begin, end) over the concatenation of all tensors, so a
// list of many small tensors is one parallel region, not one per tensor.
template <typename Fn>
void parallel_over_list(const int64_t* sizes, int64_t count, const Fn& fn,
                        int64_t grain = kListGrain) {
  c10::SmallVector<int64_t, 128> starts(count + 1, 0);
  for (int64_t t = 0; t < count; ++t) starts[t + 1] = starts[t] + sizes[t];
  at::parallel_for(0, starts[count], grain, [&](int64_t begin, int64_t end) {
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

// Whether an n-element result of T goes out with streaming stores: large, and
// not written over one of its inputs (in place, the lines are read anyway).
template <typename T>
bool streams(const void* out, const void* const* inputs, int64_t num_inputs, int64_t n) {
  return n * int64_t{sizeof(T)} >= kStreamBytes &&
         std::find(inputs, inputs + num_inputs, out) == inputs + num_inputs;
}

// out = op(x, y) over n elements of T, in parallel.
template <typename T, typename Op>
void binary(void* out, const void* x, const void* y, int64_t n, const Op& op) {
  const void* inputs[] = {x, y};
  with_stream<T>(streams<T>(out, inputs, 2, n), [&](auto stream) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      binary_range<decltype(stream)::value>(static_cast<T*>(out) + begin,
                                            static_cast<const T*>(x) + begin,
                                            static_cast<const T*>(y) + begin, end - begin, op);
    });
  });
}

// out[t] = op_of(t)(in0[t], in1[t]) for every tensor of the call.
template <typename T, typename OpOf>
void binary_call(const ListCall& call, const OpOf& op_of) {
  const auto* out = reinterpret_cast<T* const*>(call.outs);
  if (!call.list_form) {
    binary<T>(out[0], call.input(0, 0), call.input(1, 0), call.sizes[0], op_of(0));
    return;
  }
  parallel_over_list(call.sizes, call.num_tensors, [&](int64_t t, int64_t begin, int64_t end) {
    binary_range(out[t] + begin, static_cast<const T*>(call.input(0, t)) + begin,
                 static_cast<const T*>(call.input(1, t)) + begin, end - begin, op_of(t));
  });
}

template <typename T>
void axpby_call(const ListCall& call) {
  const AxpbyOp<at::opmath_type<T>> op{opmath<T>(call.scalars[0]), opmath<T>(call.scalars[1])};
  binary_call<T>(call, [&](int64_t) { return op; });
}

template <typename T>
void blend_call(const ListCall& call) {
  binary_call<T>(call, [&](int64_t t) { return BlendOp<at::opmath_type<T>>{opmath<T>(call.weight(t))}; });
}

template <typename T>
void lincomb_call(const ListCall& call) {
  const int64_t num_inputs = call.num_inputs, n = call.sizes[0];
  void* out = call.outs[0];
  c10::SmallVector<at::opmath_type<T>, 16> c(call.scalars, call.scalars + num_inputs);
  const auto bias = opmath<T>(call.scalars[num_inputs]);
  const auto* const* in = reinterpret_cast<const T* const*>(call.inputs);
  with_stream<T>(streams<T>(out, call.inputs, num_inputs, n), [&](auto stream) {
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      lincomb_range<decltype(stream)::value, T>(static_cast<T*>(out), in, c.data(), num_inputs,
                                                bias, begin, end);
    });
  });
}

// ------------------------------------------------------------- blend + noise

// Philox blocks per batch: the normals of kNoiseBatch elements go to a stack
// buffer, then the element loop above applies them.
constexpr int kNoiseBlocks = 32;
constexpr int64_t kNoiseBatch = philox::kLanes * kNoiseBlocks;

// philox::box_muller's math on a whole vector (at::vec: Sleef on AVX2/AVX512).
template <typename T>
struct VecMath {
  using scalar = T;
  using V = Vectorized<T>;
  static V log(const V& x) { return x.log(); }
  static V sqrt(const V& x) { return x.sqrt(); }
  static V sin(const V& x) { return x.sin(); }
  static V cos(const V& x) { return x.cos(); }
};

// z[k] = the normal of element philox::kLanes * first_block + k of (seed, stream),
// for k < kNoiseBatch. Every step is lane-wise, so the value of an element does
// not depend on where a batch starts.
template <typename T>
void philox_normals(T* z, uint64_t seed, uint64_t stream, int64_t first_block) {
  constexpr int N = kNoiseBlocks;
  uint32_t c0[N], c1[N], c2[N], c3[N];
  for (int j = 0; j < N; ++j) {
    const philox::Counter c = philox::counter(static_cast<uint64_t>(first_block + j), stream);
    c0[j] = c.c0, c1[j] = c.c1, c2[j] = c.c2, c3[j] = c.c3;
  }
  philox::philox4x32_10<N>(c0, c1, c2, c3, philox::key0(seed), philox::key1(seed));
  // Box-Muller pair p < N: lanes (0, 1) of block p; pair N + p: lanes (2, 3).
  alignas(64) T a[2 * N], b[2 * N];
  for (int j = 0; j < N; ++j) {
    a[j] = philox::to_unit<T>(c0[j]), b[j] = philox::to_unit<T>(c1[j]);
    a[N + j] = philox::to_unit<T>(c2[j]), b[N + j] = philox::to_unit<T>(c3[j]);
  }
  using V = Vectorized<T>;
  static_assert((2 * N) % V::size() == 0, "whole vectors of pairs");
  for (int p = 0; p < 2 * N; p += V::size()) {
    V z0, z1;
    philox::box_muller<VecMath<T>>(V::loadu(a + p), V::loadu(b + p), z0, z1);
    z0.store(a + p);
    z1.store(b + p);
  }
  for (int j = 0; j < N; ++j) {
    z[4 * j] = a[j], z[4 * j + 1] = b[j], z[4 * j + 2] = a[N + j], z[4 * j + 3] = b[N + j];
  }
}

// target[i] = op(target[i], source[i], z[i]) for the elements of Philox blocks
// [first_block, end_block) of a tensor of n elements.
template <typename scalar_t>
void blend_noise_range(scalar_t* target, const scalar_t* source, int64_t n,
                       int64_t first_block, int64_t end_block,
                       const BlendNoiseOp<at::opmath_type<scalar_t>>& op, uint64_t seed,
                       uint64_t stream) {
  alignas(64) at::opmath_type<scalar_t> z[kNoiseBatch];
  static_assert(kNoiseBatch % (2 * Vectorized<scalar_t>::size()) == 0, "whole vectors");
  for (int64_t block = first_block; block < end_block; block += kNoiseBlocks) {
    const int64_t begin = block * philox::kLanes;
    const int64_t end = std::min(std::min(block + kNoiseBlocks, end_block) * philox::kLanes, n);
    philox_normals(z, seed, stream, block);
    elementwise_range(target + begin, end - begin, op, target + begin, source + begin,
                      static_cast<const at::opmath_type<scalar_t>*>(z));
  }
}

template <typename T>
void blend_noise_call(const ListCall& call) {
  const int64_t num_tensors = call.num_tensors;
  const double noise_scale = call.scalars[0];
  if (noise_scale == 0.0) {  // exactly the blend (a -0.0 stays -0.0); no normals to draw
    ListCall blend = call;
    blend.list_form = true;
    return blend_call<T>(blend);
  }
  // Threads split whole Philox blocks, so no block is shared by two of them.
  c10::SmallVector<int64_t, 128> blocks(num_tensors);
  for (int64_t t = 0; t < num_tensors; ++t) {
    blocks[t] = (call.sizes[t] + philox::kLanes - 1) / philox::kLanes;
  }
  using O = at::opmath_type<T>;
  parallel_over_list(
      blocks.data(), num_tensors,
      [&](int64_t t, int64_t begin, int64_t end) {
        const BlendNoiseOp<O> op{BlendOp<O>{opmath<T>(call.weight(t))}, opmath<T>(noise_scale)};
        blend_noise_range(static_cast<T*>(call.outs[t]), static_cast<const T*>(call.input(1, t)),
                          call.sizes[t], begin, end, op, call.seed, call.streams[t]);
      },
      kNoiseGrain / philox::kLanes);
}

// targets[t] = scale(t)*targets[t], the list threaded as one region.
template <typename T>
void scale_call(const ListCall& call) {
  const auto* out = reinterpret_cast<T* const*>(call.outs);
  parallel_over_list(call.sizes, call.num_tensors, [&](int64_t t, int64_t begin, int64_t end) {
    const ScaleOp<at::opmath_type<T>> op{opmath<T>(call.weight(t))};
    elementwise_range(out[t] + begin, end - begin, op, static_cast<const T*>(call.input(0, t)) + begin);
  });
}

// The one switch from a call's ElementOp to its kernel.
void run(const ListCall& call) {
  dispatch(call.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (call.op) {
      case ElementOp::kAxpby: return axpby_call<T>(call);
      case ElementOp::kBlend: return blend_call<T>(call);
      case ElementOp::kLincomb: return lincomb_call<T>(call);
      case ElementOp::kBlendNoise: return blend_noise_call<T>(call);
      case ElementOp::kScale: return scale_call<T>(call);
    }
  });
}

#define NYT_STR_(x) #x
#define NYT_STR(x) NYT_STR_(x)

}  // namespace
}  // namespace CPU_CAPABILITY

const KernelTable& NYT_TABLE_FN(CPU_CAPABILITY)() {
  static const KernelTable table{NYT_STR(CPU_CAPABILITY), &run};
  return table;
}

}  // namespace cpu
}  // namespace nytorch_ext
