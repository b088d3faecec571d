// CUDA kernels for nytorch_ext; the interface is launch.h.
//
// nvcc compiles this file against CUDA headers and our own only: PyTorch here is
// CPU-only and its CUDA headers do not compile, so the torch-side glue hands us
// a ListCall (raw pointers, 64-bit sizes, double scalars) and a cudaStream_t.
//
// The shape is apex's multi_tensor_apply: every op, single-tensor ones included
// (as lists of one), is one generic apply over a list of tensors. The host packs
// the tensors' pointers, sizes and per-tensor scalars into a TensorListMeta that
// travels by value in the kernel arguments; each CUDA block processes one chunk
// of one tensor, with whole aligned groups moved by single vector loads and
// stores and the rest bounds-checked element by element. One functor per op
// says what a group computes; all math goes through functors.h, in opmath, so
// CPU and CUDA share one formula. Sizes and offsets are 64-bit throughout.
//
// The block bodies are __host__ __device__ (NYT_HD): built with
// -DNYT_CUDA_HOST_EMULATION, every launch runs thread by thread on the host, so
// the kernels can be checked on a machine without a GPU.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "../functors.h"
#include "../list_call.h"
#include "../philox.h"
#include "launch.h"

namespace nytorch_ext {
namespace cuda_launch {
namespace {

// ---------------------------------------------------------------------------
// dtype helpers
// ---------------------------------------------------------------------------

// The type the math runs in: float for float/half/bfloat16, double for double
// (as at::opmath_type on the CPU side).
template <typename T>
struct OpMath {
  using type = T;
};
template <>
struct OpMath<__half> {
  using type = float;
};
template <>
struct OpMath<__nv_bfloat16> {
  using type = float;
};
template <typename T>
using opmath_t = typename OpMath<T>::type;

// Explicit conversions only: PyTorch builds with __CUDA_NO_HALF_CONVERSIONS__ and
// __CUDA_NO_BFLOAT16_CONVERSIONS__.
NYT_HD float to_opmath(float v) { return v; }
NYT_HD double to_opmath(double v) { return v; }
NYT_HD float to_opmath(__half v) { return __half2float(v); }
NYT_HD float to_opmath(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round to nearest even, as the CPU kernels' static_cast<scalar_t>(opmath).
template <typename T>
NYT_HD T from_opmath(opmath_t<T> v);
template <>
NYT_HD float from_opmath<float>(float v) { return v; }
template <>
NYT_HD double from_opmath<double>(double v) { return v; }
template <>
NYT_HD __half from_opmath<__half>(float v) { return __float2half_rn(v); }
template <>
NYT_HD __nv_bfloat16 from_opmath<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// `#pragma unroll` for the device compilation only: the host compiler also sees
// the NYT_HD loops and would warn about an unknown pragma.
#if defined(__CUDA_ARCH__)
#define NYT_UNROLL _Pragma("unroll")
#else
#define NYT_UNROLL
#endif

// ---------------------------------------------------------------------------
// Groups: W consecutive elements, moved by one aligned load or store
// ---------------------------------------------------------------------------

template <typename T, int W>
struct alignas(W * sizeof(T)) Group {
  T v[W];
};

// Elements in 16 bytes: one 128-bit load.
template <typename T>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(T));

static_assert(sizeof(Group<float, kVecWidth<float>>) == 16, "float groups are 16 bytes");
static_assert(sizeof(Group<__half, kVecWidth<__half>>) == 16, "half groups are 16 bytes");
static_assert(sizeof(Group<double, kVecWidth<double>>) == 16, "double groups are 16 bytes");

template <typename T, int W>
NYT_HD bool group_aligned(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % sizeof(Group<T, W>) == 0;
}

// v[e] = p[i + e] in opmath for the W elements of the group at i: one load when
// kWhole (the group is inside [0, n) and p aligned), else element by element,
// lanes past n left 0.
template <bool kWhole, int W, typename T>
NYT_HD void load(const T* p, int64_t i, int64_t n, opmath_t<T> (&v)[W]) {
  if constexpr (kWhole) {
    const Group<T, W> g = *reinterpret_cast<const Group<T, W>*>(p + i);
    NYT_UNROLL
    for (int e = 0; e < W; ++e) v[e] = to_opmath(g.v[e]);
  } else {
    NYT_UNROLL
    for (int e = 0; e < W; ++e) v[e] = i + e < n ? to_opmath(p[i + e]) : opmath_t<T>(0);
  }
}

// p[i + e] = v[e], rounded to T, for the lanes of the group at i inside [0, n).
template <bool kWhole, int W, typename T>
NYT_HD void store(T* p, int64_t i, int64_t n, const opmath_t<T> (&v)[W]) {
  if constexpr (kWhole) {
    Group<T, W> g;
    NYT_UNROLL
    for (int e = 0; e < W; ++e) g.v[e] = from_opmath<T>(v[e]);
    *reinterpret_cast<Group<T, W>*>(p + i) = g;
  } else {
    NYT_UNROLL
    for (int e = 0; e < W; ++e) {
      if (i + e < n) p[i + e] = from_opmath<T>(v[e]);
    }
  }
}

// ---------------------------------------------------------------------------
// The multi-tensor apply
// ---------------------------------------------------------------------------

constexpr int kThreads = 256;
// Chunk lengths are multiples of this many elements: of every group width (16
// bytes of any dtype, a Philox block of 4), so a chunk start keeps its tensor's
// alignment and never splits a Philox block; and of kThreads * 8, so every
// thread has whole groups to move.
constexpr int64_t kChunkAlign = 2048;
// Chunks are sized for about this many blocks per launch: one full wave of
// 256-thread blocks on an sm_80/sm_90 GPU (8 per SM on 108-132 SMs).
constexpr int64_t kTargetBlocks = 1024;
// Kernel-argument structs stay under the classic 4 KB parameter limit.
constexpr size_t kMaxParamBytes = 4096;

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct NoScalars {};

// The kernel argument of one launch: up to kCapacity tensors, each with its
// output, kInputs inputs, its size and per-tensor scalars, and the op's shared
// scalars. Tensor s is covered by blocks [block_end[s - 1], block_end[s]) (from
// 0 for s = 0), block b of them processing elements [b * chunk, (b + 1) * chunk).
template <typename T, int kInputs, typename Shared, typename PerTensor, int kCapacity>
struct TensorListMeta {
  T* out[kCapacity];
  const T* in[kInputs > 0 ? kInputs : 1][kCapacity];
  int64_t size[kCapacity];
  int64_t block_end[kCapacity];
  PerTensor per_tensor[kCapacity];
  Shared shared;
  int64_t chunk;
  int num_tensors;
};

template <typename F, int kCapacity>
using MetaOf = TensorListMeta<typename F::Elem, F::kInputs, typename F::Shared,
                              typename F::PerTensor, kCapacity>;

// The most tensors a launch of functor F takes within kMaxParamBytes.
template <typename F>
constexpr int list_capacity() {
  constexpr size_t per_tensor = sizeof(void*) * (1 + F::kInputs) + 2 * sizeof(int64_t) +
                                sizeof(typename F::PerTensor);
  constexpr size_t fixed = sizeof(typename F::Shared) + 64;  // chunk, count, padding
  return static_cast<int>((kMaxParamBytes - fixed) / per_tensor);
}

// Body of block `block` of a launch, run by thread `thread` of `threads`: find
// its tensor, then apply F to every group of its chunk in block-stride order.
template <typename F, typename Meta>
NYT_HD void run_block(const Meta& m, int64_t block, int64_t thread, int64_t threads) {
  int lo = 0, hi = m.num_tensors - 1;  // the first tensor whose blocks end after `block`
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (m.block_end[mid] > block) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int64_t first = lo == 0 ? 0 : m.block_end[lo - 1];
  const int64_t begin = (block - first) * m.chunk;
  const int64_t left = m.size[lo] - begin;
  const int64_t n = left < m.chunk ? left : m.chunk;
  const F f(m, lo, begin);
  constexpr int W = F::kWidth;
  const bool aligned = f.aligned();
  const int64_t groups = (n + W - 1) / W;
  for (int64_t g = thread; g < groups; g += threads) {
    const int64_t i = g * W;
    if (aligned && i + W <= n) {
      f.template group<true>(i, n);
    } else {
      f.template group<false>(i, n);
    }
  }
}

// __grid_constant__: the meta is indexed by a runtime slot; read it in place
// from parameter memory rather than copy up to 4 KB to local memory per thread.
template <typename F, typename Meta>
__global__ void __launch_bounds__(kThreads) apply_kernel(const __grid_constant__ Meta meta) {
  run_block<F>(meta, blockIdx.x, threadIdx.x, blockDim.x);
}

template <typename F, typename Meta>
const char* launch_blocks(const Meta& m, int64_t blocks, cudaStream_t stream) {
#ifdef NYT_CUDA_HOST_EMULATION
  (void)stream;
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t t = 0; t < kThreads; ++t) run_block<F>(m, b, t, kThreads);
  }
  return nullptr;
#else
  apply_kernel<F><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(m);
  // Launches report configuration errors through cudaGetLastError (which also
  // clears them).
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
#endif
}

// Chunk length for a call over `total` elements: about kTargetBlocks blocks.
int64_t chunk_for(int64_t total) {
  const int64_t chunk = ceil_div(ceil_div(total, kTargetBlocks), kChunkAlign) * kChunkAlign;
  return chunk > kChunkAlign ? chunk : kChunkAlign;
}

// Applies F to every non-empty tensor of `call`, in as few launches of up to
// kCapacity tensors as the list needs. fill(meta, slot, t) stores tensor t's
// inputs and per-tensor scalars in `slot`. The launch copies the meta, so it is
// refilled right away.
template <typename F, int kCapacity, typename Fill>
const char* apply(const ListCall& call, const typename F::Shared& shared, const Fill& fill,
                  cudaStream_t stream) {
  using T = typename F::Elem;
  using Meta = MetaOf<F, kCapacity>;
  static_assert(sizeof(Meta) <= kMaxParamBytes, "the kernel argument exceeds 4 KB");
  Meta m{};
  m.shared = shared;
  int64_t total = 0;
  for (int64_t t = 0; t < call.num_tensors; ++t) total += call.sizes[t];
  m.chunk = chunk_for(total);
  int slots = 0;
  int64_t blocks = 0;
  for (int64_t t = 0; t < call.num_tensors; ++t) {
    const int64_t size = call.sizes[t];
    if (size == 0) continue;
    m.out[slots] = static_cast<T*>(call.outs[t]);
    m.size[slots] = size;
    fill(m, slots, t);
    blocks += ceil_div(size, m.chunk);
    m.block_end[slots] = blocks;
    if (++slots == kCapacity) {
      m.num_tensors = slots;
      if (const char* err = launch_blocks<F>(m, blocks, stream)) return err;
      slots = 0;
      blocks = 0;
    }
  }
  if (slots == 0) return nullptr;
  m.num_tensors = slots;
  return launch_blocks<F>(m, blocks, stream);
}

// F over the call's tensors, input k of tensor t being call.input(k, t): a list
// of one in a small launch argument, longer lists in full ones.
template <typename F>
const char* apply_list(const ListCall& call, cudaStream_t stream) {
  using T = typename F::Elem;
  const auto fill = [&call](auto& m, int slot, int64_t t) {
    for (int k = 0; k < F::kInputs; ++k) m.in[k][slot] = static_cast<const T*>(call.input(k, t));
    m.per_tensor[slot] = F::per_tensor(call, t);
  };
  if (call.num_tensors == 1) return apply<F, 1>(call, F::shared(call), fill, stream);
  return apply<F, list_capacity<F>()>(call, F::shared(call), fill, stream);
}

// ---------------------------------------------------------------------------
// The functors: one per op. Each is built per block from the launch's meta
// (its tensor `s`, its chunk starting at element `begin`) and computes one
// group of kWidth elements at a time.
// ---------------------------------------------------------------------------

// out = op(x, y): the body axpby and blend share; they differ in where op comes from.
template <typename T, typename Op>
struct BinaryBody {
  using Elem = T;
  static constexpr int kInputs = 2;
  static constexpr int kWidth = kVecWidth<T>;
  T* out;
  const T* x;
  const T* y;
  Op op;

  NYT_HD bool aligned() const {
    return group_aligned<T, kWidth>(out) && group_aligned<T, kWidth>(x) &&
           group_aligned<T, kWidth>(y);
  }
  template <bool kWhole>
  NYT_HD void group(int64_t i, int64_t n) const {
    opmath_t<T> a[kWidth], b[kWidth];
    load<kWhole>(x, i, n, a);
    load<kWhole>(y, i, n, b);
    NYT_UNROLL
    for (int e = 0; e < kWidth; ++e) a[e] = op(a[e], b[e]);
    store<kWhole>(out, i, n, a);
  }
};

// out = a*x + b*y, one (a, b) for the whole list.
template <typename T>
struct AxpbyFunctor : BinaryBody<T, AxpbyOp<opmath_t<T>>> {
  using Shared = AxpbyOp<opmath_t<T>>;
  using PerTensor = NoScalars;
  static Shared shared(const ListCall& c) {
    return {static_cast<opmath_t<T>>(c.scalars[0]), static_cast<opmath_t<T>>(c.scalars[1])};
  }
  static PerTensor per_tensor(const ListCall&, int64_t) { return {}; }
  template <typename Meta>
  NYT_HD AxpbyFunctor(const Meta& m, int s, int64_t begin)
      : BinaryBody<T, Shared>{m.out[s] + begin, m.in[0][s] + begin, m.in[1][s] + begin,
                              m.shared} {}
};

// out = lerp(x, y, w), w per tensor (one shared weight is repeated).
template <typename T>
struct BlendFunctor : BinaryBody<T, BlendOp<opmath_t<T>>> {
  using Shared = NoScalars;
  using PerTensor = opmath_t<T>;
  static Shared shared(const ListCall&) { return {}; }
  static PerTensor per_tensor(const ListCall& c, int64_t t) {
    return static_cast<opmath_t<T>>(c.weight(t));
  }
  template <typename Meta>
  NYT_HD BlendFunctor(const Meta& m, int s, int64_t begin)
      : BinaryBody<T, BlendOp<opmath_t<T>>>{m.out[s] + begin, m.in[0][s] + begin,
                                            m.in[1][s] + begin,
                                            BlendOp<opmath_t<T>>{m.per_tensor[s]}} {}
};

// out = s*x, s per tensor (one shared scale is repeated).
template <typename T>
struct ScaleFunctor {
  using Elem = T;
  static constexpr int kInputs = 1;
  static constexpr int kWidth = kVecWidth<T>;
  using Shared = NoScalars;
  using PerTensor = opmath_t<T>;
  static Shared shared(const ListCall&) { return {}; }
  static PerTensor per_tensor(const ListCall& c, int64_t t) {
    return static_cast<opmath_t<T>>(c.weight(t));
  }

  T* out;
  const T* x;
  ScaleOp<opmath_t<T>> op;

  template <typename Meta>
  NYT_HD ScaleFunctor(const Meta& m, int s, int64_t begin)
      : out(m.out[s] + begin), x(m.in[0][s] + begin), op{m.per_tensor[s]} {}

  NYT_HD bool aligned() const { return group_aligned<T, kWidth>(out) && group_aligned<T, kWidth>(x); }
  template <bool kWhole>
  NYT_HD void group(int64_t i, int64_t n) const {
    opmath_t<T> a[kWidth];
    load<kWhole>(x, i, n, a);
    NYT_UNROLL
    for (int e = 0; e < kWidth; ++e) a[e] = op(a[e]);
    store<kWhole>(out, i, n, a);
  }
};

// out = lerp(x, y, w) + s*z, z the standard normals of (seed, stream) by element
// index (philox.h). A group is one Philox block of 4 elements: one Philox call
// gives its 4 normals. Chunks start on multiples of kChunkAlign, so no Philox
// block is split between CUDA blocks.
template <typename T>
struct BlendNoiseFunctor {
  using Elem = T;
  using O = opmath_t<T>;
  static constexpr int kInputs = 2;
  static constexpr int kWidth = philox::kLanes;
  struct Shared {
    uint64_t seed;
    O noise_scale;
  };
  struct PerTensor {
    uint64_t stream;
    O weight;
  };
  static Shared shared(const ListCall& c) { return {c.seed, static_cast<O>(c.scalars[0])}; }
  static PerTensor per_tensor(const ListCall& c, int64_t t) {
    return {c.streams[t], static_cast<O>(c.weight(t))};
  }

  T* out;
  const T* x;
  const T* y;
  BlendNoiseOp<O> op;
  uint64_t seed, stream;
  int64_t first_block;  // the Philox block of the chunk's first element

  template <typename Meta>
  NYT_HD BlendNoiseFunctor(const Meta& m, int s, int64_t begin)
      : out(m.out[s] + begin),
        x(m.in[0][s] + begin),
        y(m.in[1][s] + begin),
        op{BlendOp<O>{m.per_tensor[s].weight}, m.shared.noise_scale},
        seed(m.shared.seed),
        stream(m.per_tensor[s].stream),
        first_block(begin / philox::kLanes) {}

  NYT_HD bool aligned() const {
    return group_aligned<T, kWidth>(out) && group_aligned<T, kWidth>(x) &&
           group_aligned<T, kWidth>(y);
  }
  template <bool kWhole>
  NYT_HD void group(int64_t i, int64_t n) const {
    O z[kWidth], a[kWidth], b[kWidth];
    philox::normals<O>(seed, stream, static_cast<uint64_t>(first_block + i / kWidth), z);
    load<kWhole>(x, i, n, a);
    load<kWhole>(y, i, n, b);
    NYT_UNROLL
    for (int e = 0; e < kWidth; ++e) a[e] = op(a[e], b[e], z[e]);
    store<kWhole>(out, i, n, a);
  }
};

// out = sum_k c[k]*in[k] + bias over one pass of up to kLincombMaxInputs inputs.
//
// A launch takes the pass's input pointers and coefficients in its shared
// scalars, so K <= 16 inputs is a single pass over memory. Larger K runs in
// passes: the first writes the partial sum of inputs [0, 16) to out; each later
// pass reads out back as input 0 with coefficient 1 (exact) plus the next 15
// inputs, and only the last pass adds the bias. The summation order is the CPU
// kernel's, so float/double results match a single pass bit for bit;
// half/bfloat16 round the partial sums to the storage type between passes.
constexpr int kLincombMaxInputs = 16;

template <typename T>
struct LincombFunctor {
  using Elem = T;
  using O = opmath_t<T>;
  static constexpr int kInputs = 0;  // the pass's inputs are in Shared
  static constexpr int kWidth = kVecWidth<T>;
  struct Shared {
    const T* in[kLincombMaxInputs];
    O coeff[kLincombMaxInputs];
    O bias;
    int32_t num_inputs;  // 1 .. kLincombMaxInputs
    bool add_bias;       // last pass only: adding 0 is not the identity for -0
  };
  using PerTensor = NoScalars;

  T* out;
  const Shared& pass;  // in the launch's parameter memory
  int64_t begin;

  template <typename Meta>
  NYT_HD LincombFunctor(const Meta& m, int s, int64_t chunk_begin)
      : out(m.out[s] + chunk_begin), pass(m.shared), begin(chunk_begin) {}

  NYT_HD bool aligned() const {
    bool all = group_aligned<T, kWidth>(out);
    for (int k = 0; k < pass.num_inputs; ++k) all = all && group_aligned<T, kWidth>(pass.in[k] + begin);
    return all;
  }
  template <bool kWhole>
  NYT_HD void group(int64_t i, int64_t n) const {
    using Op = LincombOp<O>;
    O acc[kWidth], v[kWidth];
    load<kWhole>(pass.in[0] + begin, i, n, v);
    NYT_UNROLL
    for (int e = 0; e < kWidth; ++e) acc[e] = Op::first(pass.coeff[0], v[e]);
    NYT_UNROLL
    for (int k = 1; k < kLincombMaxInputs; ++k) {
      if (k < pass.num_inputs) {
        load<kWhole>(pass.in[k] + begin, i, n, v);
        NYT_UNROLL
        for (int e = 0; e < kWidth; ++e) acc[e] = Op::next(acc[e], pass.coeff[k], v[e]);
      }
    }
    if (pass.add_bias) {
      NYT_UNROLL
      for (int e = 0; e < kWidth; ++e) acc[e] = Op::finish(acc[e], pass.bias);
    }
    store<kWhole>(out, i, n, acc);
  }
};

// Whether an input read after the first pass is the output itself: the first
// pass overwrites it, so those passes read a copy taken before (call.scratch).
bool lincomb_reads_out_late(const ListCall& call) {
  for (int64_t k = kLincombMaxInputs; k < call.num_inputs; ++k) {
    if (call.input(k, 0) == call.outs[0]) return true;
  }
  return false;
}

template <typename T>
const char* lincomb(const ListCall& call, cudaStream_t stream) {
  using F = LincombFunctor<T>;
  using O = opmath_t<T>;
  const int64_t num_inputs = call.num_inputs;
  if (num_inputs < 1) return "nytorch_ext: lincomb needs at least one input";
  T* out = static_cast<T*>(call.outs[0]);
  const T* saved_out = static_cast<const T*>(call.scratch);
  if (lincomb_reads_out_late(call)) {
    if (saved_out == nullptr) return "nytorch_ext: lincomb needs scratch memory (scratch_bytes)";
    const size_t bytes = static_cast<size_t>(call.sizes[0]) * sizeof(T);
#ifdef NYT_CUDA_HOST_EMULATION
    std::memcpy(call.scratch, out, bytes);
#else
    const cudaError_t err =
        cudaMemcpyAsync(call.scratch, out, bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // clear it: a later, unrelated check must not report it
      return cudaGetErrorString(err);
    }
#endif
  }
  const auto no_fill = [](auto&, int, int64_t) {};
  int64_t next = 0;  // first input not yet summed
  while (next < num_inputs) {
    typename F::Shared pass{};
    int slot = 0;
    if (next > 0) {  // continue from the partial sum in out
      pass.in[0] = out;
      pass.coeff[0] = O(1);
      slot = 1;
    }
    for (; slot < kLincombMaxInputs && next < num_inputs; ++slot, ++next) {
      const T* in = static_cast<const T*>(call.input(next, 0));
      pass.in[slot] = (next >= kLincombMaxInputs && in == out) ? saved_out : in;
      pass.coeff[slot] = static_cast<O>(call.scalars[next]);
    }
    pass.num_inputs = slot;
    pass.bias = static_cast<O>(call.scalars[num_inputs]);
    pass.add_bias = next == num_inputs;
    if (const char* err = apply<F, 1>(call, pass, no_fill, stream)) return err;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Dispatch on DType and ElementOp
// ---------------------------------------------------------------------------

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with the element type T of `dtype`.
template <typename Fn>
const char* dispatch(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::Float32: return fn(TypeTag<float>{});
    case DType::Float64: return fn(TypeTag<double>{});
    case DType::Float16: return fn(TypeTag<__half>{});
    case DType::BFloat16: return fn(TypeTag<__nv_bfloat16>{});
  }
  return "nytorch_ext: unsupported dtype";
}

int64_t element_size(DType dtype) {
  return dtype == DType::Float64 ? 8 : dtype == DType::Float32 ? 4 : 2;
}

}  // namespace

int64_t scratch_bytes(const ListCall& call) {
  if (call.op != ElementOp::kLincomb || !lincomb_reads_out_late(call)) return 0;
  return call.sizes[0] * element_size(call.dtype);
}

const char* launch(const ListCall& call, void* stream_handle) {
  const auto stream = static_cast<cudaStream_t>(stream_handle);
  if (call.num_tensors < 0) return "nytorch_ext: negative tensor count";
  for (int64_t t = 0; t < call.num_tensors; ++t) {
    if (call.sizes[t] < 0) return "nytorch_ext: negative tensor size";
  }
  return dispatch(call.dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    switch (call.op) {
      case ElementOp::kAxpby: return apply_list<AxpbyFunctor<T>>(call, stream);
      case ElementOp::kBlend: return apply_list<BlendFunctor<T>>(call, stream);
      case ElementOp::kLincomb: return lincomb<T>(call, stream);
      case ElementOp::kBlendNoise:
        // noise_scale == 0 is exactly the blend (a -0.0 stays -0.0): no normals to draw
        if (call.scalars[0] == 0.0) return apply_list<BlendFunctor<T>>(call, stream);
        return apply_list<BlendNoiseFunctor<T>>(call, stream);
      case ElementOp::kScale: return apply_list<ScaleFunctor<T>>(call, stream);
    }
    return "nytorch_ext: unknown element op";
  });
}

int runtime_version() {
#ifdef NYT_CUDA_HOST_EMULATION
  return CUDART_VERSION;
#else
  int version = 0;
  // Fall back to the headers' version if the runtime cannot be queried.
  return cudaRuntimeGetVersion(&version) == cudaSuccess ? version : CUDART_VERSION;
#endif
}

}  // namespace cuda_launch
}  // namespace nytorch_ext
