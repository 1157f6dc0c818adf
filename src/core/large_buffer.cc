#include "core/large_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace jevons {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kCacheLine = 64;
}  // namespace

bool huge_pages_requested() {
  static const bool requested = [] {
    const char* env = std::getenv("JEVONS_HUGEPAGES");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return requested;
}

LargeBuffer::LargeBuffer(size_t bytes, const char* what) {
  // Below one huge page the rounding would waste more than it saves.
  const bool huge = huge_pages_requested() && bytes >= kHugePage;
  const size_t align = huge ? kHugePage : kCacheLine;
  if (bytes > SIZE_MAX - align) fail("{}: cannot allocate {} bytes", what, bytes);
  const size_t size = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
  data_ = static_cast<uint8_t*>(std::aligned_alloc(align, size));
  if (!data_) fail("{}: out of memory for {} bytes", what, bytes);
  size_ = size;
#ifdef MADV_HUGEPAGE
  if (huge) ::madvise(data_, size_, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
#endif
}

LargeBuffer::~LargeBuffer() { std::free(data_); }

LargeBuffer::LargeBuffer(LargeBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

LargeBuffer& LargeBuffer::operator=(LargeBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace jevons
