// Error checking and stream-ordered scratch memory for the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace isl {

// Throws std::runtime_error (a RuntimeError in Python) naming the failed call and CUDA's reason.
inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

// Checks the launch configuration of the kernels just queued (not their completion).
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

// Device memory from the stream-ordered allocator, released on the same stream when it goes out
// of scope (after the kernels queued before the release, without a host synchronisation).
class DeviceScratch {
 public:
  DeviceScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) cuda_check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync");
  }
  ~DeviceScratch() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Round a byte count up to 256 so that sub-buffers of one scratch allocation stay aligned.
inline size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace isl
