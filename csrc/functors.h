// Per-element math for every nytorch_ext kernel, written once and shared by the
// CPU (at::vec::Vectorized and scalar tail) and CUDA (scalar opmath) code.
//
// Each functor is templated on the value type V it is applied to, so the same
// expression serves a scalar `float`/`double` and an `at::vec::Vectorized<float>`:
// both support `V(scalar)`, `+`, `-` and `*`. Coefficients are stored in the
// "opmath" type T (float for float/half/bfloat16 tensors, double for double).
//
// This header must stay free of PyTorch includes: nvcc compiles it on machines
// whose PyTorch is CPU-only.
#pragma once

#if defined(__CUDACC__)
#define NYT_HD __host__ __device__ __forceinline__
#else
#define NYT_HD inline
#endif

namespace nytorch_ext {

// out = a*x + b*y. Multiplying by exactly 1 is an identity in IEEE arithmetic
// (NaN and Inf included), so a == 1 (W + b*V, the common update) skips it: same
// bits, one multiply fewer. The branch is on a scalar, uniform across the call.
template <typename T>
struct AxpbyOp {
  T a, b;
  template <typename V>
  NYT_HD V operator()(const V& x, const V& y) const {
    return (a == T(1)) ? x + V(b) * y : V(a) * x + V(b) * y;
  }
};

// out = (1-w)*x + w*y, as the two-sided lerp PyTorch uses (ATen/native/Lerp.h):
// |w| < 0.5 ? x + w*(y-x) : y - (y-x)*(1-w). Exact at w == 0 (returns x) and at
// w == 1 (returns y); for any other w (negative, > 1, Inf, NaN) it takes the same
// branch as torch.lerp, so NaN and Inf come out where torch.lerp's do
// (lerp(0, inf, -0.5) is NaN). The branch is on the scalar weight, so it is
// uniform across a vector and a warp.
template <typename T>
struct BlendOp {
  T w;
  template <typename V>
  NYT_HD V operator()(const V& x, const V& y) const {
    const V diff = y - x;
    return (w < T(0.5) && w > T(-0.5)) ? x + V(w) * diff : y - diff * V(T(1) - w);
  }
};

// out = lerp(x, y) + s*z, z a standard normal in opmath (philox.h): the APSO
// update with noise. Unfused: the lerp rounds to opmath, then s*z, then the sum.
template <typename T>
struct BlendNoiseOp {
  BlendOp<T> lerp;
  T scale;
  template <typename V>
  NYT_HD V operator()(const V& x, const V& y, const V& z) const {
    return lerp(x, y) + V(scale) * z;
  }
};

// out = s*x (a gradient clipped per member, a decayed state). A plain product: s == 0
// gives NaN for an Inf or NaN x and -0.0 for a negative x, as torch.mul does.
template <typename T>
struct ScaleOp {
  T s;
  template <typename V>
  NYT_HD V operator()(const V& x) const { return V(s) * x; }
};

// out = sum_k c[k]*x[k] + bias, accumulated left to right in opmath.
template <typename T>
struct LincombOp {
  template <typename V>
  NYT_HD static V first(T c, const V& x) { return V(c) * x; }
  template <typename V>
  NYT_HD static V next(const V& acc, T c, const V& x) { return acc + V(c) * x; }
  template <typename V>
  NYT_HD static V finish(const V& acc, T bias) { return acc + V(bias); }
};

}  // namespace nytorch_ext
