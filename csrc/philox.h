// Counter-based Gaussian noise shared by the CPU and CUDA kernels: Philox4x32-10
// (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
// Random123 constants and round function) and the Box-Muller transform.
//
// Element i of a tensor draws from one Philox call:
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32)
//   block   = i / 4, lane = i % 4
// and the four 32-bit outputs x0..x3 of that call become four normals:
//   u = (x + 0.5) * 2^-32 in opmath           (never 0; in float it may round to 1)
//   z0 = sqrt(-2 ln u0) cos(2 pi u1),  z1 = sqrt(-2 ln u0) sin(2 pi u1)
//   z2, z3 likewise from (u2, u3).
// So the noise of an element depends only on (seed, stream, i), not on how the
// work is split across threads, vector lanes or CUDA blocks.
// nytorch_ext/ops/philox.py is the plain-torch reference of exactly this.
//
// Like functors.h, this header stays free of PyTorch includes (nvcc compiles it).
#pragma once
#include <math.h>

#include <cstdint>

#include "functors.h"  // NYT_HD

namespace nytorch_ext {
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u;  // round multipliers
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // key schedule (Weyl) increments
constexpr uint32_t kW1 = 0xBB67AE85u;
constexpr int kRounds = 10;
constexpr int kLanes = 4;  // normals per Philox call (one per element of a block)

// One Philox4x32 round on the counter words (c0, c1, c2, c3) with key (k0, k1).
// Plain 32x32->64-bit products, so a loop over independent blocks vectorizes.
NYT_HD void round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                  uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
  const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
  const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c0 = n0;
  c1 = static_cast<uint32_t>(p1);
  c2 = n2;
  c3 = static_cast<uint32_t>(p0);
}

// The counter words of `block` in `stream`.
struct Counter {
  uint32_t c0, c1, c2, c3;
};
NYT_HD Counter counter(uint64_t block, uint64_t stream) {
  return {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
          static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
}

// Philox4x32-10 of N independent counters, in place: word k of counter j is
// ck[j]. Ten rounds, the key bumped between them; the loop over j vectorizes.
template <int N>
NYT_HD void philox4x32_10(uint32_t* c0, uint32_t* c1, uint32_t* c2, uint32_t* c3,
                          uint32_t k0, uint32_t k1) {
  for (int r = 0; r < kRounds; ++r) {
    for (int j = 0; j < N; ++j) round(c0[j], c1[j], c2[j], c3[j], k0, k1);
    k0 += kW0;
    k1 += kW1;
  }
}

NYT_HD uint32_t key0(uint64_t seed) { return static_cast<uint32_t>(seed); }
NYT_HD uint32_t key1(uint64_t seed) { return static_cast<uint32_t>(seed >> 32); }

// A 32-bit output as a uniform in (0, 1]: (x + 0.5) * 2^-32 in T. Exact in double;
// in float x rounds to 24 bits first, so x >= 2^32 - 128 gives 1 (and a zero normal).
template <typename T>
NYT_HD T to_unit(uint32_t x) {
  return (static_cast<T>(x) + T(0.5)) * T(2.3283064365386962890625e-10);  // 2^-32
}

// Scalar math for box_muller: the C functions, which nvcc provides on the device.
template <typename T>
struct ScalarMath {
  using scalar = T;
  static NYT_HD T log(T x) { return ::log(x); }
  static NYT_HD T sqrt(T x) { return ::sqrt(x); }
  static NYT_HD T sin(T x) { return ::sin(x); }
  static NYT_HD T cos(T x) { return ::cos(x); }
};
template <>
struct ScalarMath<float> {
  using scalar = float;
  static NYT_HD float log(float x) { return ::logf(x); }
  static NYT_HD float sqrt(float x) { return ::sqrtf(x); }
  static NYT_HD float sin(float x) { return ::sinf(x); }
  static NYT_HD float cos(float x) { return ::cosf(x); }
};

// Box-Muller on uniforms (u0, u1) in (0, 1]: two independent standard normals.
// Math supplies log/sqrt/sin/cos for V (ScalarMath<T> for a scalar, the CPU
// kernels a Vectorized one) and `scalar`, the opmath type.
template <typename Math, typename V>
NYT_HD void box_muller(const V& u0, const V& u1, V& z0, V& z1) {
  using T = typename Math::scalar;
  const V r = Math::sqrt(Math::log(u0) * V(T(-2)));
  const V theta = u1 * V(T(6.283185307179586476925286766559));  // 2 pi, rounded to T
  z0 = r * Math::cos(theta);
  z1 = r * Math::sin(theta);
}

// The four normals of `block` in `stream`, in opmath T (the CUDA kernels' path;
// the CPU kernels batch the same steps across blocks).
template <typename T>
NYT_HD void normals(uint64_t seed, uint64_t stream, uint64_t block, T z[kLanes]) {
  Counter c = counter(block, stream);
  philox4x32_10<1>(&c.c0, &c.c1, &c.c2, &c.c3, key0(seed), key1(seed));
  box_muller<ScalarMath<T>>(to_unit<T>(c.c0), to_unit<T>(c.c1), z[0], z[1]);
  box_muller<ScalarMath<T>>(to_unit<T>(c.c2), to_unit<T>(c.c3), z[2], z[3]);
}

}  // namespace philox
}  // namespace nytorch_ext
