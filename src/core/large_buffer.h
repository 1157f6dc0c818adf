// Owned memory for large arrays that are streamed again and again: the weights repacked
// or copied at load, the KV cache, the bandwidth probe's buffer. It is aligned to 2 MiB and marked for transparent huge
// pages (madvise), so that streaming it misses the TLB once per 2 MiB instead of once
// per 4 KiB. In a VM every miss is a two-level page walk, and decode from 4 KiB pages
// ran about 10% slower here. JEVONS_HUGEPAGES=0 turns it off (for comparisons); where
// the kernel refuses, the memory is ordinary pages and nothing else changes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace jevons {

class LargeBuffer {
 public:
  LargeBuffer() = default;
  // Uninitialized memory of at least `bytes` (never touched here: the first writer
  // decides which NUMA node and which thread's cache it lands in). Throws Error with
  // `what` in the message when the allocation fails.
  LargeBuffer(size_t bytes, const char* what);
  ~LargeBuffer();
  LargeBuffer(LargeBuffer&& o) noexcept;
  LargeBuffer& operator=(LargeBuffer&& o) noexcept;
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whether LargeBuffer asks for huge pages in this process (JEVONS_HUGEPAGES not 0).
bool huge_pages_requested();

}  // namespace jevons
