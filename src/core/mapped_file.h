// A read-only memory map of a whole file. Model weights are used in place from
// the map: nothing is copied at load, and pages are read on first touch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace jevons {

class MappedFile {
 public:
  // Throws Error naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the whole pages within [p, p + n) from this process's memory (they are read
  // from the file again if touched): for ranges copied elsewhere, e.g. repacked
  // weights. Ignores ranges outside the map.
  void release(const uint8_t* p, size_t n) const;
  // Whether [p, p + n) lies within the map.
  bool contains(const uint8_t* p, size_t n) const {
    return p >= data_ && n <= size_ && size_t(p - data_) <= size_ - n;
  }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace jevons
