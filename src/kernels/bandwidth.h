// Memory read bandwidth probe: a multi-threaded streaming sum over a buffer much
// larger than the last-level cache. It is the ceiling decode can reach (decode reads
// every weight once per token), so `jevons bench` and the kernel benchmarks report
// matvec throughput as a fraction of it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/large_buffer.h"

namespace jevons {

class ThreadPool;

// Best-of-`repetitions` read bandwidth in GB/s (1e9 bytes per second) with n_threads
// threads streaming disjoint contiguous parts of a buffer of buffer_bytes (0: 1 GiB,
// which dwarfs any LLC; each thread's part is first touched by that thread).
double measure_read_bandwidth_gbs(int n_threads, size_t buffer_bytes = 0, int repetitions = 5);

// The same probe in pieces, for benchmarks that time passes themselves.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(size_t buffer_bytes, ThreadPool* pool);  // allocates and touches
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // One pass over the whole buffer with the pool's threads; returns a checksum.
  uint64_t pass(ThreadPool* pool) const;
  // The fastest of `passes` timed passes, in GB/s.
  double best_gbs(ThreadPool* pool, int passes) const;
  size_t bytes() const { return bytes_; }

 private:
  LargeBuffer buffer_;  // huge pages, as the repacked weights decode streams
  uint64_t* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace jevons
