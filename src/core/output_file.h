// Writing a user's file without ever destroying one. The bytes go to a temporary file in
// the destination's directory and are renamed over the destination only when complete:
// a crash, a full disk or an error leaves the old file (or none), never half of one.
// Before anything is written, check_output refuses an output that is one of the
// command's inputs (the same file, whatever the path says, or a path inside an input
// directory) and an existing file the user did not ask to replace (--force).
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace jevons {

// Throws Error when `out` is an input, lies inside an input directory, or exists and
// `force` is false. The messages name the files and the way out.
void check_output(const std::string& out, const std::vector<std::string>& inputs, bool force);

class OutputFile {
 public:
  // Creates the temporary file beside `path` (Error if the directory is not writable).
  explicit OutputFile(std::string path);
  ~OutputFile();  // removes the temporary file unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  std::FILE* file() { return f_; }
  // Appends n bytes; Error naming the destination on a short write (disk full).
  void write(const void* data, size_t n);
  // Flushes, syncs and closes the temporary file and renames it over the destination.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace jevons
