// CUDA twin of the window family; semantics in csrc/window.h.
//
// Two launches: window_tables builds the per-axis resampling tables on the device with the same
// resample_weights() as the CPU kernel (integer overlaps and one IEEE division: identical
// weights); window_kernel then computes one output pixel per thread for all channels, reading the
// source taps directly (the row cache of the CPU kernel is not needed on a GPU), and accumulates
// in the CPU kernel's order (vertical sums, then horizontal taps) with per-operation rounding, so
// the results are bitwise equal.
#include <cuda_runtime.h>

#include "check.h"
#include "window.h"

namespace isl {

namespace {

constexpr int kBlockX = 32, kBlockY = 8, kMaxGridZ = 65535;

__global__ void window_tables(int n, int s, int taps, int* first, float* weights) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o < s) first[o] = resample_weights(o, n, s, taps, weights + static_cast<size_t>(o) * taps);
}

template <typename Out>
__global__ void window_kernel(const int16_t* __restrict__ hu, int64_t slice0, int h, int w, WindowParams params, int s,
                              const int* __restrict__ fy, const float* __restrict__ wy, int ty,
                              const int* __restrict__ fx, const float* __restrict__ wx, int tx,
                              Out* __restrict__ out) {
  const int ox = blockIdx.x * blockDim.x + threadIdx.x;
  const int oy = blockIdx.y * blockDim.y + threadIdx.y;
  const int64_t slice = slice0 + blockIdx.z;
  if (ox >= s || oy >= s) return;
  const int channels = params.count;
  const float top = sizeof(Out) == 1 ? 255.0f : 1.0f;
  float acc[kMaxWindows];
  for (int c = 0; c < channels; ++c) acc[c] = 0.0f;
  // Vertical sums first (ky inner), then the horizontal taps: the CPU kernel's order.
  const float* wxo = wx + static_cast<size_t>(ox) * tx;
  const float* wyo = wy + static_cast<size_t>(oy) * ty;
  for (int kx = 0; kx < tx; ++kx) {
    const float wxk = wxo[kx];
    const int16_t* col = hu + (slice * h + fy[oy]) * static_cast<int64_t>(w) + fx[ox] + kx;
    float vsum[kMaxWindows];
    for (int c = 0; c < channels; ++c) vsum[c] = 0.0f;
    for (int ky = 0; ky < ty; ++ky) {
      const float wyk = wyo[ky];
      if (wyk == 0.0f) continue;  // padded tap (skipped on the CPU too)
      const float v = static_cast<float>(col[static_cast<int64_t>(ky) * w]);
      for (int c = 0; c < channels; ++c)
        vsum[c] = fadd(vsum[c], fmul(wyk, window_value(v, params.lo[c], params.width[c], top)));
    }
    for (int c = 0; c < channels; ++c) acc[c] = fadd(acc[c], fmul(wxk, vsum[c]));
  }
  const size_t plane = static_cast<size_t>(s) * s;
  Out* o = out + static_cast<size_t>(slice) * channels * plane + static_cast<size_t>(oy) * s + ox;
  for (int c = 0; c < channels; ++c) {
    if constexpr (sizeof(Out) == 1) {
      o[c * plane] = to_u8(acc[c]);
    } else {
      o[c * plane] = acc[c];
    }
  }
}

}  // namespace

void window_cuda(const int16_t* hu, int64_t n, int h, int w, const WindowParams& params, int s,
                 float* out_f32, uint8_t* out_u8, cudaStream_t stream) {
  if (n <= 0) return;
  const int ty = resample_taps(h, s), tx = resample_taps(w, s);
  const size_t first_bytes = align256(sizeof(int) * s);
  const size_t wy_bytes = align256(sizeof(float) * s * ty), wx_bytes = align256(sizeof(float) * s * tx);
  DeviceScratch scratch(2 * first_bytes + wy_bytes + wx_bytes, stream);
  int* fy = scratch.as<int>(0);
  int* fx = scratch.as<int>(first_bytes);
  float* wy = scratch.as<float>(2 * first_bytes);
  float* wx = scratch.as<float>(2 * first_bytes + wy_bytes);
  const int tb = 128, tg = (s + tb - 1) / tb;
  window_tables<<<tg, tb, 0, stream>>>(h, s, ty, fy, wy);
  window_tables<<<tg, tb, 0, stream>>>(w, s, tx, fx, wx);
  cuda_check_launch("window_tables");
  const dim3 block(kBlockX, kBlockY);
  for (int64_t slice0 = 0; slice0 < n; slice0 += kMaxGridZ) {
    const int64_t count = n - slice0 < kMaxGridZ ? n - slice0 : kMaxGridZ;
    const dim3 grid((s + kBlockX - 1) / kBlockX, (s + kBlockY - 1) / kBlockY, static_cast<unsigned>(count));
    if (out_f32 != nullptr) {
      window_kernel<float><<<grid, block, 0, stream>>>(hu, slice0, h, w, params, s, fy, wy, ty, fx, wx, tx, out_f32);
    } else {
      window_kernel<uint8_t><<<grid, block, 0, stream>>>(hu, slice0, h, w, params, s, fy, wy, ty, fx, wx, tx, out_u8);
    }
    cuda_check_launch("window_kernel");
  }
}

}  // namespace isl
