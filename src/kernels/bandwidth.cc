// The streaming sum behind the bandwidth probe, compiled per SIMD target (Highway).
#include "kernels/bandwidth.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bandwidth.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace jevons {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of n 64-bit words (n a multiple of 4 vectors), four independent accumulators.
HWY_NOINLINE uint64_t StreamSum(const uint64_t* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<uint64_t> d;
  const size_t L = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 = hn::Add(a0, hn::Load(d, p + i));
    a1 = hn::Add(a1, hn::Load(d, p + i + L));
    a2 = hn::Add(a2, hn::Load(d, p + i + 2 * L));
    a3 = hn::Add(a3, hn::Load(d, p + i + 3 * L));
  }
  // Lanes summed in scalar unsigned arithmetic: the checksum wraps, and Highway's
  // SumOfLanes on AVX-512 is a signed reduction (undefined on overflow).
  HWY_ALIGN uint64_t lanes[hn::MaxLanes(d)];
  hn::Store(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), d, lanes);
  uint64_t s = 0;
  for (size_t l = 0; l < L; ++l) s += lanes[l];
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace HWY_NAMESPACE
}  // namespace jevons
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>

#include "core/thread_pool.h"

namespace jevons {

HWY_EXPORT(StreamSum);

namespace {
constexpr size_t kAlign = 4096;
}

ReadBandwidthProbe::ReadBandwidthProbe(size_t buffer_bytes, ThreadPool* pool) {
  bytes_ = std::max<size_t>(buffer_bytes / kAlign * kAlign, kAlign);
  buffer_ = LargeBuffer(bytes_, "bandwidth probe");
  data_ = reinterpret_cast<uint64_t*>(buffer_.data());
  const int64_t words = int64_t(bytes_ / 8);
  uint64_t* data = data_;
  auto touch = [data](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) data[i] = uint64_t(i) * 0x9E3779B97F4A7C15ull;
  };
  if (pool) pool->parallel_for(words, touch);
  else touch(0, words);
}

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

uint64_t ReadBandwidthProbe::pass(ThreadPool* pool) const {
  const int parts = pool ? pool->size() : 1;
  // Parts aligned to 64 words (512 bytes) so every load is aligned.
  const int64_t units = int64_t(bytes_ / 512);
  std::atomic<uint64_t> total{0};
  const uint64_t* data = data_;
  auto body = [&](int64_t b, int64_t e) {
    total += HWY_DYNAMIC_DISPATCH(StreamSum)(data + b * 64, size_t(e - b) * 64);
  };
  if (pool && parts > 1) pool->parallel_for(units, body);
  else body(0, units);
  return total.load();
}

double ReadBandwidthProbe::best_gbs(ThreadPool* pool, int passes) const {
  double best = 0.0;
  for (int r = 0; r < std::max(1, passes); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile uint64_t sink = pass(pool);
    (void)sink;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(bytes_) / s / 1e9);
  }
  return best;
}

double measure_read_bandwidth_gbs(int n_threads, size_t buffer_bytes, int repetitions) {
  if (buffer_bytes == 0) buffer_bytes = size_t(1) << 30;
  ThreadPool pool(std::max(1, n_threads));
  ReadBandwidthProbe probe(buffer_bytes, &pool);
  probe.pass(&pool);  // warm-up: page tables, frequency
  return probe.best_gbs(&pool, repetitions);
}

}  // namespace jevons
#endif  // HWY_ONCE
