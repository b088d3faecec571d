// CUDA kernels and launchers for nytorch_ext; the interface is launchers.h.
//
// nvcc compiles this file against CUDA headers and our own only: PyTorch here is
// CPU-only and its CUDA headers do not compile, so the torch-side glue hands us
// raw pointers, 64-bit sizes, double scalars and a cudaStream_t.
//
// Sections: dtype helpers; element loops; single-tensor kernels and launchers;
// lincomb; multi-tensor tables, kernels and launchers (blend with noise last);
// dispatch on DType.
//
// All math goes through the functors in functors.h, applied to one opmath
// scalar at a time, so CPU and CUDA share one formula. The element loops and
// per-block bodies are __host__ __device__ (NYT_HD) so a host-only test can
// emulate a launch thread by thread on a machine without a GPU.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <limits>

#include "../functors.h"
#include "../philox.h"
#include "launchers.h"

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

// 16 bytes of T, moved by one 128-bit load or store.
template <typename T>
struct alignas(16) Vec {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};
static_assert(sizeof(Vec<float>) == 16 && Vec<float>::kSize == 4, "Vec<float>");
static_assert(sizeof(Vec<double>) == 16 && Vec<double>::kSize == 2, "Vec<double>");
static_assert(sizeof(Vec<__half>) == 16 && Vec<__half>::kSize == 8, "Vec<__half>");
static_assert(sizeof(Vec<__nv_bfloat16>) == 16 && Vec<__nv_bfloat16>::kSize == 8,
              "Vec<__nv_bfloat16>");

// `#pragma unroll` for the device compilation only: the host compiler also sees
// the NYT_HD loops and would warn about an unknown pragma.
#if defined(__CUDA_ARCH__)
#define NYT_UNROLL _Pragma("unroll")
#else
#define NYT_UNROLL
#endif

NYT_HD bool is_aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// ---------------------------------------------------------------------------
// Element loops
//
// Each runs the share of [0, n) that belongs to the thread starting at `first`
// and stepping by `stride` (grid-stride for single-tensor kernels, block-stride
// within a chunk for multi-tensor kernels). kVectorized requires every pointer
// to be 16-byte aligned: it covers n / kSize whole vectors, then a scalar tail of
// fewer than kSize elements. The output may equal an input exactly: every
// element is read before it is written, by the same thread, at the same index,
// hence no __restrict__.
// ---------------------------------------------------------------------------

// out[i] = op(x[i], y[i]), op applied in opmath.
template <bool kVectorized, typename T, typename Op>
NYT_HD void binary_loop(T* out, const T* x, const T* y, int64_t n, int64_t first,
                        int64_t stride, const Op& op) {
  int64_t tail_begin = 0;
  if constexpr (kVectorized) {
    using V = Vec<T>;
    const V* xv = reinterpret_cast<const V*>(x);
    const V* yv = reinterpret_cast<const V*>(y);
    V* ov = reinterpret_cast<V*>(out);
    const int64_t num_vecs = n / V::kSize;
    for (int64_t i = first; i < num_vecs; i += stride) {
      const V a = xv[i];
      const V b = yv[i];
      V r;
      NYT_UNROLL
      for (int e = 0; e < V::kSize; ++e) {
        r.v[e] = from_opmath<T>(op(to_opmath(a.v[e]), to_opmath(b.v[e])));
      }
      ov[i] = r;
    }
    tail_begin = num_vecs * V::kSize;
  }
  for (int64_t i = tail_begin + first; i < n; i += stride) {
    out[i] = from_opmath<T>(op(to_opmath(x[i]), to_opmath(y[i])));
  }
}

// ---------------------------------------------------------------------------
// Launch helpers
// ---------------------------------------------------------------------------

constexpr int kThreads = 256;      // single-tensor and lincomb kernels
constexpr int kBlocksPerSm = 8;    // 8 x 256 = 2048 threads, a full sm_80/sm_90 SM
constexpr int kMaxCachedDevices = 64;
// Kernel-argument structs stay under the classic 4 KB parameter limit.
constexpr size_t kMaxParamBytes = 4096;

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// nullptr on success; otherwise the error's text, with the thread's last-error
// state cleared so that a later, unrelated check does not report it again.
const char* to_result(cudaError_t err) {
  if (err == cudaSuccess) return nullptr;
  (void)cudaGetLastError();
  return cudaGetErrorString(err);
}

// Launches report configuration errors through cudaGetLastError (which also
// clears them).
const char* launch_result() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// Grid size for a grid-stride loop over `items` work items on the current
// device: one thread per item, capped at kBlocksPerSm blocks per SM (one full
// wave); beyond that the loop strides. SM counts are cached per device; racing
// threads store the same value.
cudaError_t grid_blocks(int64_t items, unsigned* blocks) {
  static std::atomic<int> sm_cache[kMaxCachedDevices];  // 0 = not yet queried
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const bool cacheable = device >= 0 && device < kMaxCachedDevices;
  int sms = cacheable ? sm_cache[device].load(std::memory_order_relaxed) : 0;
  if (sms <= 0) {
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    if (cacheable) sm_cache[device].store(sms, std::memory_order_relaxed);
  }
  const int64_t cap = static_cast<int64_t>(sms) * kBlocksPerSm;
  const int64_t wanted = ceil_div(items, kThreads);
  *blocks = static_cast<unsigned>(wanted < cap ? wanted : cap);
  return cudaSuccess;
}

const char* check_count(int64_t n) {
  return n < 0 ? "nytorch_ext: negative element count" : nullptr;
}

// ---------------------------------------------------------------------------
// Single-tensor kernels and launchers (axpby, blend)
// ---------------------------------------------------------------------------

template <bool kVectorized, typename T, typename Op>
__global__ void __launch_bounds__(kThreads)
    binary_kernel(T* out, const T* x, const T* y, int64_t n, Op op) {
  binary_loop<kVectorized>(out, x, y, n, global_thread(), grid_threads(), op);
}

// out[i] = op(x[i], y[i]) for i < n, on `stream`. Vectorized iff all three
// pointers are 16-byte aligned.
template <typename T, typename Op>
const char* launch_binary(T* out, const T* x, const T* y, int64_t n, const Op& op,
                          cudaStream_t stream) {
  if (const char* err = check_count(n)) return err;
  if (n == 0) return nullptr;
  const bool vectorized = is_aligned16(out) && is_aligned16(x) && is_aligned16(y);
  unsigned blocks = 0;
  // Vectorized: one item per vector; the < kSize tail rides on the same threads.
  const int64_t items = vectorized ? ceil_div(n, Vec<T>::kSize) : n;
  if (const char* err = to_result(grid_blocks(items, &blocks))) return err;
  if (vectorized) {
    binary_kernel<true><<<blocks, kThreads, 0, stream>>>(out, x, y, n, op);
  } else {
    binary_kernel<false><<<blocks, kThreads, 0, stream>>>(out, x, y, n, op);
  }
  return launch_result();
}

template <typename T>
const char* axpby_impl(T* out, const T* x, const T* y, int64_t n, double a, double b,
                       cudaStream_t stream) {
  using O = opmath_t<T>;
  const AxpbyOp<O> op{static_cast<O>(a), static_cast<O>(b)};
  return launch_binary(out, x, y, n, op, stream);
}

template <typename T>
const char* blend_impl(T* out, const T* x, const T* y, int64_t n, double alpha,
                       cudaStream_t stream) {
  using O = opmath_t<T>;
  const BlendOp<O> op{static_cast<O>(alpha)};
  return launch_binary(out, x, y, n, op, stream);
}

// ---------------------------------------------------------------------------
// lincomb: out = sum_k c[k]*in[k] + bias
//
// One launch takes up to kLincombMaxInputs pointers and coefficients by value,
// so K <= 16 inputs is a single pass over memory. Larger K runs in passes: the
// first writes the partial sum of inputs [0, 16) to out; each later pass reads
// out back as input 0 with coefficient 1 (exact) plus the next 15 inputs, and
// only the last pass adds the bias. The summation order is the CPU kernel's,
// so float/double results match a single pass bit for bit; half/bfloat16 round
// the partial sums to the storage type between passes.
// ---------------------------------------------------------------------------

constexpr int kLincombMaxInputs = 16;

template <typename T>
struct LincombArgs {
  const T* in[kLincombMaxInputs];
  opmath_t<T> coeff[kLincombMaxInputs];
  opmath_t<T> bias;
  int32_t num_inputs;  // 1 .. kLincombMaxInputs
  bool add_bias;       // last pass only: adding 0 is not the identity for -0
};
static_assert(sizeof(LincombArgs<float>) < kMaxParamBytes, "LincombArgs<float> too large");
static_assert(sizeof(LincombArgs<double>) < kMaxParamBytes, "LincombArgs<double> too large");

template <bool kVectorized, typename T>
NYT_HD void lincomb_loop(T* out, const LincombArgs<T>& args, int64_t n, int64_t first,
                         int64_t stride) {
  using O = opmath_t<T>;
  using Op = LincombOp<O>;
  int64_t tail_begin = 0;
  if constexpr (kVectorized) {
    using V = Vec<T>;
    const int64_t num_vecs = n / V::kSize;
    for (int64_t i = first; i < num_vecs; i += stride) {
      O acc[V::kSize];
      const V x0 = reinterpret_cast<const V*>(args.in[0])[i];
      NYT_UNROLL
      for (int e = 0; e < V::kSize; ++e) acc[e] = Op::first(args.coeff[0], to_opmath(x0.v[e]));
      NYT_UNROLL
      for (int k = 1; k < kLincombMaxInputs; ++k) {
        if (k < args.num_inputs) {
          const V xk = reinterpret_cast<const V*>(args.in[k])[i];
          NYT_UNROLL
          for (int e = 0; e < V::kSize; ++e) {
            acc[e] = Op::next(acc[e], args.coeff[k], to_opmath(xk.v[e]));
          }
        }
      }
      V r;
      NYT_UNROLL
      for (int e = 0; e < V::kSize; ++e) {
        r.v[e] = from_opmath<T>(args.add_bias ? Op::finish(acc[e], args.bias) : acc[e]);
      }
      reinterpret_cast<V*>(out)[i] = r;
    }
    tail_begin = num_vecs * V::kSize;
  }
  for (int64_t i = tail_begin + first; i < n; i += stride) {
    O acc = Op::first(args.coeff[0], to_opmath(args.in[0][i]));
    NYT_UNROLL
    for (int k = 1; k < kLincombMaxInputs; ++k) {
      if (k < args.num_inputs) acc = Op::next(acc, args.coeff[k], to_opmath(args.in[k][i]));
    }
    out[i] = from_opmath<T>(args.add_bias ? Op::finish(acc, args.bias) : acc);
  }
}

// __grid_constant__: read the arguments in place, never copied to local memory.
template <bool kVectorized, typename T>
__global__ void __launch_bounds__(kThreads)
    lincomb_kernel(T* out, const __grid_constant__ LincombArgs<T> args, int64_t n) {
  lincomb_loop<kVectorized>(out, args, n, global_thread(), grid_threads());
}

template <typename T>
const char* launch_lincomb_pass(T* out, const LincombArgs<T>& args, int64_t n,
                                cudaStream_t stream) {
  bool vectorized = is_aligned16(out);
  for (int k = 0; k < args.num_inputs; ++k) vectorized = vectorized && is_aligned16(args.in[k]);
  unsigned blocks = 0;
  const int64_t items = vectorized ? ceil_div(n, Vec<T>::kSize) : n;
  if (const char* err = to_result(grid_blocks(items, &blocks))) return err;
  if (vectorized) {
    lincomb_kernel<true><<<blocks, kThreads, 0, stream>>>(out, args, n);
  } else {
    lincomb_kernel<false><<<blocks, kThreads, 0, stream>>>(out, args, n);
  }
  return launch_result();
}

// Calls run_pass(args) for each pass, in order, stopping at the first error.
// An input past the first pass that is `out` itself is read from `saved_out`,
// a copy of out taken before the first pass (nullptr when there is none).
template <typename T, typename RunPass>
const char* for_each_lincomb_pass(T* out, const void* const* inputs, const double* coeffs,
                                  int64_t num_inputs, double bias, const T* saved_out,
                                  const RunPass& run_pass) {
  using O = opmath_t<T>;
  int64_t next = 0;  // first input not yet summed
  while (next < num_inputs) {
    LincombArgs<T> args{};
    int slot = 0;
    if (next > 0) {  // continue from the partial sum in out
      args.in[0] = out;
      args.coeff[0] = O(1);
      slot = 1;
    }
    for (; slot < kLincombMaxInputs && next < num_inputs; ++slot, ++next) {
      const T* in = static_cast<const T*>(inputs[next]);
      args.in[slot] = (next >= kLincombMaxInputs && in == out) ? saved_out : in;
      args.coeff[slot] = static_cast<O>(coeffs[next]);
    }
    args.num_inputs = slot;
    args.bias = static_cast<O>(bias);
    args.add_bias = next == num_inputs;
    if (const char* err = run_pass(args)) return err;
  }
  return nullptr;
}

// True when an input past the first pass is `out` itself.
bool lincomb_needs_saved_out(const void* out, const void* const* inputs,
                             int64_t num_inputs) {
  for (int64_t k = kLincombMaxInputs; k < num_inputs; ++k) {
    if (inputs[k] == out) return true;
  }
  return false;
}

template <typename T>
const char* lincomb_impl(T* out, const void* const* inputs, const double* coeffs,
                         int64_t num_inputs, int64_t n, double bias, cudaStream_t stream) {
  if (num_inputs < 1) return "nytorch_ext: lincomb needs at least one input";
  if (const char* err = check_count(n)) return err;
  if (n == 0) return nullptr;

  // A later pass cannot read `out` as an input once the first pass has
  // overwritten it: keep a stream-ordered copy for that rare case. (Inputs of
  // the first pass may be `out`: same-index read-then-write.)
  T* saved_out = nullptr;
  if (lincomb_needs_saved_out(out, inputs, num_inputs)) {
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
    cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&saved_out), bytes, stream);
    if (err != cudaSuccess) return to_result(err);
    err = cudaMemcpyAsync(saved_out, out, bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) {
      (void)cudaFreeAsync(saved_out, stream);
      return to_result(err);
    }
  }

  const char* result = for_each_lincomb_pass(
      out, inputs, coeffs, num_inputs, bias, saved_out,
      [&](const LincombArgs<T>& args) { return launch_lincomb_pass(out, args, n, stream); });

  if (saved_out != nullptr) {
    const cudaError_t err = cudaFreeAsync(saved_out, stream);
    if (result == nullptr) result = to_result(err);
  }
  return result;
}

// ---------------------------------------------------------------------------
// Multi-tensor apply (as apex's multi_tensor_apply)
//
// The host fills a table of up to kMultiMaxTensors tensors (pointers, sizes,
// per-tensor scalars) and a block map (block -> table slot, chunk index), and
// passes it by value as the kernel's only argument. Each block processes one
// kChunkSize-element chunk of one tensor, vectorized when that tensor's
// pointers are 16-byte aligned. When the table or the block map is full the
// host launches and starts over, carrying a partly covered tensor into slot 0,
// so any number of tensors works. Sizes and chunk offsets are 64-bit.
// ---------------------------------------------------------------------------

constexpr int kMultiThreads = 512;
// A multiple of every Vec size, so chunk starts keep their tensor's alignment.
constexpr int64_t kChunkSize = 65536;
// 48 tensors x 32 B + 448 blocks x 5 B keeps a table under 4 KB; 448 blocks of
// 512 threads are about one full wave on an A100 (108 SMs) or H100 (132 SMs).
constexpr int kMultiMaxTensors = 48;
constexpr int kMultiMaxBlocks = 448;

static_assert(kChunkSize % Vec<__half>::kSize == 0, "chunks must start on a Vec boundary");
static_assert(kMultiMaxTensors <= 256, "block map slots are uint8_t");

struct BlockMap {
  int32_t chunk[kMultiMaxBlocks];  // chunk index within the tensor
  uint8_t slot[kMultiMaxBlocks];   // tensor slot in the table
};

template <typename T>
struct AxpbyTable {
  static constexpr int kMaxTensors = kMultiMaxTensors;
  T* out[kMultiMaxTensors];
  const T* x[kMultiMaxTensors];
  const T* y[kMultiMaxTensors];
  int64_t size[kMultiMaxTensors];
  BlockMap blocks;
  AxpbyOp<opmath_t<T>> op;
};

template <typename T>
struct BlendTable {
  static constexpr int kMaxTensors = kMultiMaxTensors;
  T* target[kMultiMaxTensors];
  const T* source[kMultiMaxTensors];
  int64_t size[kMultiMaxTensors];
  opmath_t<T> alpha[kMultiMaxTensors];
  BlockMap blocks;
};

// Whether a kernel-argument table fits the parameter limit for every dtype.
template <template <typename> class Table>
constexpr bool fits_params() {
  return sizeof(Table<float>) < kMaxParamBytes && sizeof(Table<double>) < kMaxParamBytes &&
         sizeof(Table<__half>) < kMaxParamBytes && sizeof(Table<__nv_bfloat16>) < kMaxParamBytes;
}
static_assert(fits_params<AxpbyTable>(), "AxpbyTable too large");
static_assert(fits_params<BlendTable>(), "BlendTable too large");

// The chunk that block `block` of a launch processes: its table slot, its first
// element and its length (kChunkSize, or less for a tensor's last chunk).
struct Chunk {
  int slot;
  int64_t begin;
  int64_t size;
};

template <typename Table>
NYT_HD Chunk chunk_of(const Table& table, int block) {
  Chunk c;
  c.slot = table.blocks.slot[block];
  c.begin = static_cast<int64_t>(table.blocks.chunk[block]) * kChunkSize;
  const int64_t remaining = table.size[c.slot] - c.begin;
  c.size = remaining < kChunkSize ? remaining : kChunkSize;
  return c;
}

// Body of block `block`, run by thread `thread` of `threads`.
template <typename T>
NYT_HD void multi_axpby_block(const AxpbyTable<T>& table, int block, int64_t thread,
                              int64_t threads) {
  const Chunk c = chunk_of(table, block);
  T* out = table.out[c.slot] + c.begin;
  const T* x = table.x[c.slot] + c.begin;
  const T* y = table.y[c.slot] + c.begin;
  if (is_aligned16(out) && is_aligned16(x) && is_aligned16(y)) {
    binary_loop<true>(out, x, y, c.size, thread, threads, table.op);
  } else {
    binary_loop<false>(out, x, y, c.size, thread, threads, table.op);
  }
}

template <typename T>
NYT_HD void multi_blend_block(const BlendTable<T>& table, int block, int64_t thread,
                              int64_t threads) {
  const Chunk c = chunk_of(table, block);
  T* target = table.target[c.slot] + c.begin;
  const T* source = table.source[c.slot] + c.begin;
  const BlendOp<opmath_t<T>> op{table.alpha[c.slot]};
  if (is_aligned16(target) && is_aligned16(source)) {
    binary_loop<true>(target, target, source, c.size, thread, threads, op);
  } else {
    binary_loop<false>(target, target, source, c.size, thread, threads, op);
  }
}

// __grid_constant__: the table is indexed by a runtime slot; read it in place
// from parameter memory rather than copy ~4 KB to local memory per thread.
template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    multi_axpby_kernel(const __grid_constant__ AxpbyTable<T> table) {
  multi_axpby_block(table, static_cast<int>(blockIdx.x), threadIdx.x, blockDim.x);
}

template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    multi_blend_kernel(const __grid_constant__ BlendTable<T> table) {
  multi_blend_block(table, static_cast<int>(blockIdx.x), threadIdx.x, blockDim.x);
}

// Sizes must be >= 0 and have chunk indices that fit the int32_t block map
// (2^31 chunks of 2^16 elements: far beyond any device's memory).
const char* check_sizes(const int64_t* sizes, int64_t num_tensors) {
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max() * kChunkSize;
  for (int64_t t = 0; t < num_tensors; ++t) {
    if (sizes[t] < 0) return "nytorch_ext: negative tensor size";
    if (sizes[t] > kMaxSize) return "nytorch_ext: tensor too large for the multi-tensor block map";
  }
  return nullptr;
}

// Covers every chunk of every non-empty tensor with one block, in as few
// launches as the table (Table::kMaxTensors slots) allows. fill(table, slot, t) stores tensor t's pointers
// and scalars in `slot`; launch(table, num_blocks) launches one kernel.
template <typename Table, typename Fill, typename Launch>
const char* multi_tensor_apply(Table& table, const int64_t* sizes, int64_t num_tensors,
                               const Fill& fill, const Launch& launch) {
  int slots = 0;   // table slots in use
  int blocks = 0;  // block map entries in use
  for (int64_t t = 0; t < num_tensors; ++t) {
    const int64_t size = sizes[t];
    if (size == 0) continue;
    // Invariant: slots < Table::kMaxTensors here (a full table is flushed below
    // as soon as its last tensor is fully mapped).
    fill(table, slots, t);
    table.size[slots] = size;
    ++slots;
    const int64_t num_chunks = ceil_div(size, kChunkSize);
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
      table.blocks.slot[blocks] = static_cast<uint8_t>(slots - 1);
      table.blocks.chunk[blocks] = static_cast<int32_t>(chunk);
      ++blocks;
      const bool last_chunk = chunk == num_chunks - 1;
      if (blocks == kMultiMaxBlocks || (slots == Table::kMaxTensors && last_chunk)) {
        // The launch copies the table, so it can be refilled right away.
        if (const char* err = launch(table, blocks)) return err;
        blocks = 0;
        slots = 0;
        if (!last_chunk) {  // tensor t goes on in the next launch
          fill(table, 0, t);
          table.size[0] = size;
          slots = 1;
        }
      }
    }
  }
  return blocks > 0 ? launch(table, blocks) : nullptr;
}

template <typename T>
const char* multi_axpby_impl(void* const* outs, const void* const* xs, const void* const* ys,
                             const int64_t* sizes, int64_t num_tensors, double a, double b,
                             cudaStream_t stream) {
  using O = opmath_t<T>;
  if (num_tensors < 0) return "nytorch_ext: negative tensor count";
  if (const char* err = check_sizes(sizes, num_tensors)) return err;
  AxpbyTable<T> table{};
  table.op = AxpbyOp<O>{static_cast<O>(a), static_cast<O>(b)};
  const auto fill = [&](AxpbyTable<T>& tab, int slot, int64_t t) {
    tab.out[slot] = static_cast<T*>(outs[t]);
    tab.x[slot] = static_cast<const T*>(xs[t]);
    tab.y[slot] = static_cast<const T*>(ys[t]);
  };
  const auto launch = [&](const AxpbyTable<T>& tab, int num_blocks) {
    multi_axpby_kernel<T><<<num_blocks, kMultiThreads, 0, stream>>>(tab);
    return launch_result();
  };
  return multi_tensor_apply(table, sizes, num_tensors, fill, launch);
}

// The list arguments of the blend forms: one source and one weight, or one per target.
const char* check_blend_lists(int64_t num_sources, int64_t num_weights, const int64_t* sizes,
                              int64_t num_tensors) {
  if (num_tensors < 0) return "nytorch_ext: negative tensor count";
  if (num_sources != 1 && num_sources != num_tensors) {
    return "nytorch_ext: multi_blend needs one source or one per target";
  }
  if (num_weights != 1 && num_weights != num_tensors) {
    return "nytorch_ext: multi_blend needs one alpha or one per target";
  }
  return check_sizes(sizes, num_tensors);
}

template <typename T>
const char* multi_blend_impl(void* const* targets, const void* const* sources,
                             int64_t num_sources, const double* alphas, int64_t num_alphas,
                             const int64_t* sizes, int64_t num_tensors, cudaStream_t stream) {
  using O = opmath_t<T>;
  if (num_tensors == 0) return nullptr;
  if (const char* err = check_blend_lists(num_sources, num_alphas, sizes, num_tensors)) return err;
  BlendTable<T> table{};
  const auto fill = [&](BlendTable<T>& tab, int slot, int64_t t) {
    tab.target[slot] = static_cast<T*>(targets[t]);
    tab.source[slot] = static_cast<const T*>(sources[num_sources == 1 ? 0 : t]);
    tab.alpha[slot] = static_cast<O>(alphas[num_alphas == 1 ? 0 : t]);
  };
  const auto launch = [&](const BlendTable<T>& tab, int num_blocks) {
    multi_blend_kernel<T><<<num_blocks, kMultiThreads, 0, stream>>>(tab);
    return launch_result();
  };
  return multi_tensor_apply(table, sizes, num_tensors, fill, launch);
}

// ---------------------------------------------------------------------------
// Blend with noise: targets[t] = blend(targets[t], src_t, w_t) + s * z, z the
// standard normals of (seed, streams[t]) by element index (philox.h).
//
// The multi-tensor machinery above with a table of its own (fewer slots: the
// per-tensor stream and weight must fit the 4 KB too). Each thread takes one
// Philox block of 4 consecutive elements at a time, block-stride through its
// chunk: one Philox call gives that block's 4 normals. Chunks start on
// multiples of kChunkSize, so no Philox block is split between CUDA blocks.
// ---------------------------------------------------------------------------

constexpr int kNoiseMaxTensors = 40;
static_assert(kChunkSize % philox::kLanes == 0, "chunks start on a Philox block");
static_assert(kNoiseMaxTensors <= 256, "block map slots are uint8_t");

template <typename T>
struct BlendNoiseTable {
  static constexpr int kMaxTensors = kNoiseMaxTensors;
  T* target[kNoiseMaxTensors];
  const T* source[kNoiseMaxTensors];
  int64_t size[kNoiseMaxTensors];
  uint64_t stream[kNoiseMaxTensors];
  opmath_t<T> weight[kNoiseMaxTensors];
  BlockMap blocks;
  uint64_t seed;
  opmath_t<T> noise_scale;
};

static_assert(fits_params<BlendNoiseTable>(), "BlendNoiseTable too large");

// The 4 elements of one Philox block, moved by one aligned load or store.
template <typename T>
struct alignas(philox::kLanes * sizeof(T)) Block4 {
  T v[philox::kLanes];
};

// target[i] = op(target[i], source[i], z[i]) for i < n, where element i is
// element 4 * first_block + i of its tensor. kVectorized requires target and
// source aligned to a whole Block4.
template <bool kVectorized, typename T>
NYT_HD void blend_noise_loop(T* target, const T* source, int64_t n, int64_t first_block,
                             const BlendNoiseOp<opmath_t<T>>& op, uint64_t seed,
                             uint64_t stream, int64_t first, int64_t stride) {
  using O = opmath_t<T>;
  constexpr int kLanes = philox::kLanes;
  const int64_t num_blocks = (n + kLanes - 1) / kLanes;  // ceil_div is host-only
  for (int64_t b = first; b < num_blocks; b += stride) {
    O z[kLanes];
    philox::normals<O>(seed, stream, static_cast<uint64_t>(first_block + b), z);
    const int64_t i = b * kLanes;
    if (kVectorized && i + kLanes <= n) {
      const Block4<T> x = reinterpret_cast<const Block4<T>*>(target)[b];
      const Block4<T> y = reinterpret_cast<const Block4<T>*>(source)[b];
      Block4<T> r;
      NYT_UNROLL
      for (int e = 0; e < kLanes; ++e) {
        r.v[e] = from_opmath<T>(op(to_opmath(x.v[e]), to_opmath(y.v[e]), z[e]));
      }
      reinterpret_cast<Block4<T>*>(target)[b] = r;
    } else {
      NYT_UNROLL
      for (int e = 0; e < kLanes; ++e) {
        if (i + e < n) {
          target[i + e] = from_opmath<T>(op(to_opmath(target[i + e]), to_opmath(source[i + e]), z[e]));
        }
      }
    }
  }
}

template <typename T>
NYT_HD void multi_blend_noise_block(const BlendNoiseTable<T>& table, int block, int64_t thread,
                                    int64_t threads) {
  const Chunk c = chunk_of(table, block);
  T* target = table.target[c.slot] + c.begin;
  const T* source = table.source[c.slot] + c.begin;
  const BlendNoiseOp<opmath_t<T>> op{BlendOp<opmath_t<T>>{table.weight[c.slot]},
                                     table.noise_scale};
  const int64_t first_block = c.begin / philox::kLanes;
  const uint64_t stream = table.stream[c.slot];
  constexpr size_t kAlign = sizeof(Block4<T>);
  if (reinterpret_cast<std::uintptr_t>(target) % kAlign == 0 &&
      reinterpret_cast<std::uintptr_t>(source) % kAlign == 0) {
    blend_noise_loop<true>(target, source, c.size, first_block, op, table.seed, stream, thread,
                           threads);
  } else {
    blend_noise_loop<false>(target, source, c.size, first_block, op, table.seed, stream, thread,
                            threads);
  }
}

template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    multi_blend_noise_kernel(const __grid_constant__ BlendNoiseTable<T> table) {
  multi_blend_noise_block(table, static_cast<int>(blockIdx.x), threadIdx.x, blockDim.x);
}

template <typename T>
const char* multi_blend_noise_impl(void* const* targets, const void* const* sources,
                                   int64_t num_sources, const double* weights,
                                   int64_t num_weights, const int64_t* sizes,
                                   int64_t num_tensors, double noise_scale, uint64_t seed,
                                   const uint64_t* streams, cudaStream_t stream) {
  using O = opmath_t<T>;
  if (noise_scale == 0.0) {  // exactly the blend (a -0.0 stays -0.0); no normals to draw
    return multi_blend_impl<T>(targets, sources, num_sources, weights, num_weights, sizes,
                               num_tensors, stream);
  }
  if (num_tensors == 0) return nullptr;
  if (const char* err = check_blend_lists(num_sources, num_weights, sizes, num_tensors)) return err;
  BlendNoiseTable<T> table{};
  table.seed = seed;
  table.noise_scale = static_cast<O>(noise_scale);
  const auto fill = [&](BlendNoiseTable<T>& tab, int slot, int64_t t) {
    tab.target[slot] = static_cast<T*>(targets[t]);
    tab.source[slot] = static_cast<const T*>(sources[num_sources == 1 ? 0 : t]);
    tab.weight[slot] = static_cast<O>(weights[num_weights == 1 ? 0 : t]);
    tab.stream[slot] = streams[t];
  };
  const auto launch = [&](const BlendNoiseTable<T>& tab, int num_blocks) {
    multi_blend_noise_kernel<T><<<num_blocks, kMultiThreads, 0, stream>>>(tab);
    return launch_result();
  };
  return multi_tensor_apply(table, sizes, num_tensors, fill, launch);
}

// ---------------------------------------------------------------------------
// Dispatch on DType
// ---------------------------------------------------------------------------

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with the element type T of `dtype`.
template <typename Fn>
const char* dispatch(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::Float32:
      return fn(TypeTag<float>{});
    case DType::Float64:
      return fn(TypeTag<double>{});
    case DType::Float16:
      return fn(TypeTag<__half>{});
    case DType::BFloat16:
      return fn(TypeTag<__nv_bfloat16>{});
  }
  return "nytorch_ext: unsupported dtype";
}

}  // namespace

const char* axpby(DType dtype, void* out, const void* x, const void* y, int64_t n,
                  double a, double b, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return axpby_impl(static_cast<T*>(out), static_cast<const T*>(x),
                      static_cast<const T*>(y), n, a, b, static_cast<cudaStream_t>(stream));
  });
}

const char* blend(DType dtype, void* out, const void* x, const void* y, int64_t n,
                  double alpha, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return blend_impl(static_cast<T*>(out), static_cast<const T*>(x),
                      static_cast<const T*>(y), n, alpha, static_cast<cudaStream_t>(stream));
  });
}

const char* lincomb(DType dtype, void* out, const void* const* inputs,
                    const double* coeffs, int64_t num_inputs, int64_t n, double bias,
                    void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return lincomb_impl(static_cast<T*>(out), inputs, coeffs, num_inputs, n, bias,
                        static_cast<cudaStream_t>(stream));
  });
}

const char* multi_axpby(DType dtype, void* const* outs, const void* const* xs,
                        const void* const* ys, const int64_t* sizes, int64_t num_tensors,
                        double a, double b, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return multi_axpby_impl<T>(outs, xs, ys, sizes, num_tensors, a, b,
                               static_cast<cudaStream_t>(stream));
  });
}

const char* multi_blend(DType dtype, void* const* targets, const void* const* sources,
                        int64_t num_sources, const double* alphas, int64_t num_alphas,
                        const int64_t* sizes, int64_t num_tensors, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return multi_blend_impl<T>(targets, sources, num_sources, alphas, num_alphas, sizes,
                               num_tensors, static_cast<cudaStream_t>(stream));
  });
}

const char* multi_blend_noise(DType dtype, void* const* targets, const void* const* sources,
                              int64_t num_sources, const double* weights, int64_t num_weights,
                              const int64_t* sizes, int64_t num_tensors, double noise_scale,
                              uint64_t seed, const uint64_t* streams, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return multi_blend_noise_impl<T>(targets, sources, num_sources, weights, num_weights, sizes,
                                     num_tensors, noise_scale, seed, streams,
                                     static_cast<cudaStream_t>(stream));
  });
}

int runtime_version() {
  int version = 0;
  // Fall back to the headers' version if the runtime cannot be queried.
  return cudaRuntimeGetVersion(&version) == cudaSuccess ? version : CUDART_VERSION;
}

}  // namespace cuda_launch
}  // namespace nytorch_ext
