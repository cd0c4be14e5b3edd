// gdn-fuse op contract: element-type helpers shared by every backend (pure C++17).
// float16 / bfloat16 <-> float32 conversion (round to nearest even), and row load / store by dtype.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/gdn_contract.h"

namespace gdn {

// A float32's bits and back (std::bit_cast before C++20).
inline uint32_t float_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline float bits_float(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
    bits = sign | (exp << 23) | (mant << 13);
  }
  return bits_float(bits);
}

inline uint16_t float_to_half(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);  // nan / inf
  if (ax >= 0x477ff000u) return sign | 0x7c00u;                                   // overflow -> inf
  if (ax < 0x38800000u) {                                                          // subnormal or zero
    if (ax < 0x33000000u) return sign;                                             // < 2^-25 rounds to 0
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t r = ax - 0x38000000u;  // rebias exponent (127 -> 15)
  r += 0xfffu + ((r >> 13) & 1u);  // round to nearest even
  return sign | static_cast<uint16_t>(r >> 13);
}

inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: return 4;
    case DType::kFloat16: return 2;
    case DType::kBFloat16: return 2;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    default: return 0;
  }
}

// dst[i] = float(src[offset + i]) for i < n; src element type t (float32 / float16 / bfloat16).
inline void load_row(DType t, const void* src, size_t offset, size_t n, float* dst) {
  switch (t) {
    case DType::kFloat32: {
      const float* s = static_cast<const float*>(src) + offset;
      for (size_t i = 0; i < n; ++i) dst[i] = s[i];
      break;
    }
    case DType::kFloat16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (size_t i = 0; i < n; ++i) dst[i] = half_to_float(s[i]);
      break;
    }
    case DType::kBFloat16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      break;
    }
    default:
      for (size_t i = 0; i < n; ++i) dst[i] = 0.f;
  }
}

// dst[offset + i] = cast(src[i]) for i < n.
inline void store_row(DType t, void* dst, size_t offset, size_t n, const float* src) {
  switch (t) {
    case DType::kFloat32: {
      float* d = static_cast<float*>(dst) + offset;
      for (size_t i = 0; i < n; ++i) d[i] = src[i];
      break;
    }
    case DType::kFloat16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      for (size_t i = 0; i < n; ++i) d[i] = float_to_half(src[i]);
      break;
    }
    case DType::kBFloat16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      for (size_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
      break;
    }
    default:
      break;
  }
}

inline float load_one(DType t, const void* src, size_t i) {
  float f;
  load_row(t, src, i, 1, &f);
  return f;
}

}  // namespace gdn
