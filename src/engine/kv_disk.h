// The prefix cache's disk tier (serve --kv-cache-dir): full KV blocks written as files,
// found again by a later process, so that a restart does not recompute every system
// prompt and conversation. One file per block, named by its chain hash (which covers
// the model's identity and the KV type, the parent chain and the block's tokens):
//
//   header (64 bytes): magic "JVKVBLK1", salt, chain hash, check hash (a second,
//                      independent hash of the whole prefix), parent chain hash,
//                      payload bytes, tokens per block, FNV-1a of the payload
//   tokens            : kBlockTokens int32 (the block's own token ids)
//   payload           : the block's bytes, exactly as the pool lays them out
//
// A file is written to a temporary name in the directory and renamed into place when
// complete, so a reader never sees half a file. A file whose header, tokens, size or
// checksum disagree with what is looked up (truncated, bit-flipped, another model's,
// another KV type's) is skipped with a warning: never a crash, never a wrong answer.
// The directory's total size is held under a cap by deleting the least recently used
// files (a hit touches its file).
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_set>

#include "formats/gguf.h"

namespace jevons::engine {

struct KvDiskStats {
  int64_t files = 0, bytes = 0;     // in the directory now (this process's view)
  int64_t hits = 0, misses = 0, skipped = 0, saved = 0, evicted = 0;
  double load_s = 0, save_s = 0;    // time in reading / writing block files
  int64_t load_bytes = 0, save_bytes = 0;
};

class KvDiskCache {
 public:
  // Creates dir if needed (Error if it cannot, or is not a directory). max_bytes 0: no cap.
  // salt: the pool's (model identity and KV type); block_bytes: a block's payload size.
  KvDiskCache(std::string dir, uint64_t max_bytes, uint64_t salt, size_t block_bytes);

  // Whether a file for this chain hash exists (no read, no check).
  bool contains(uint64_t hash) const;
  // Writes one block unless present. False when the write failed (warned once).
  bool save(uint64_t hash, uint64_t check, uint64_t parent_hash, const int32_t* tokens, const uint8_t* payload);
  // Reads the block with this identity into payload (block_bytes). False when there is
  // no such file or it does not hold exactly this block (then skipped with a warning).
  bool load(uint64_t hash, uint64_t check, uint64_t parent_hash, const int32_t* tokens, uint8_t* payload);
  KvDiskStats stats() const;
  const std::string& dir() const { return dir_; }
  // Where warnings go (default: stderr with "[jevons] warning: ").
  void set_warn(std::function<void(const std::string&)> warn) { warn_ = std::move(warn); }

  // The second, independent hash of a prefix (the check hash): parent's check + tokens.
  static uint64_t check_hash(uint64_t parent_check, const int32_t* tokens);

 private:
  std::string path_of(uint64_t hash) const;
  void enforce_cap_locked();
  void warn(const std::string& msg);

  std::string dir_;
  uint64_t max_bytes_, salt_;
  size_t block_bytes_;
  mutable std::mutex mu_;
  std::unordered_set<uint64_t> present_;
  KvDiskStats stats_;
  std::function<void(const std::string&)> warn_;
  bool save_warned_ = false;
};

// A 64-bit identity of a model's weights: every tensor's name, type and shape, and
// bytes sampled at four places of its data (a fine-tune of the same shape differs).
uint64_t model_identity(const ModelSource& src);

}  // namespace jevons::engine
