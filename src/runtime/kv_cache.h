// The KV cache, paged: keys and values live in fixed-size blocks of
// kBlockTokens positions taken from a pool (vLLM's PagedAttention layout), so many
// sequences share one memory budget and a finished sequence frees its blocks at once.
// A KvCache is one sequence's block table. Standalone caches own a private pool.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/large_buffer.h"

namespace jevons {

class KvBlockPool {
 public:
  static constexpr int kBlockTokens = 16;

  // n_heads: the KV heads a position's k_dim (and v_dim) floats split into.
  KvBlockPool(int n_layer, int k_dim, int v_dim, size_t n_blocks, int n_heads = 1);
  static size_t block_bytes(int n_layer, int k_dim, int v_dim) {
    return size_t(kBlockTokens) * size_t(n_layer) * size_t(k_dim + v_dim) * sizeof(float);
  }

  // -1 when the pool is exhausted. Thread-safe.
  int allocate();
  void release(int block);
  size_t total_blocks() const { return n_blocks_; }
  size_t free_blocks() const;
  size_t used_blocks() const { return n_blocks_ - free_blocks(); }
  size_t bytes() const { return n_blocks_ * block_floats_ * sizeof(float); }

  // Layout of a block: K for [layer][head][slot][k_dim / n_heads], then V the same way.
  // Head-major: attention reads one head's rows of a block, and they lie next to each
  // other (4-8 KiB streamed, not 256-512 bytes out of every k_dim floats). k() and v()
  // point at head 0 of a slot; head h is k_head_stride() (v_head_stride()) floats on.
  float* k(int block, int layer, int slot) {
    return storage_ + size_t(block) * block_floats_ + size_t(layer) * kBlockTokens * size_t(k_dim_) +
           size_t(slot) * size_t(k_dim_ / n_heads_);
  }
  float* v(int block, int layer, int slot) {
    return storage_ + size_t(block) * block_floats_ + size_t(n_layer_) * kBlockTokens * size_t(k_dim_) +
           size_t(layer) * kBlockTokens * size_t(v_dim_) + size_t(slot) * size_t(v_dim_ / n_heads_);
  }
  int64_t k_head_stride() const { return int64_t(kBlockTokens) * (k_dim_ / n_heads_); }
  int64_t v_head_stride() const { return int64_t(kBlockTokens) * (v_dim_ / n_heads_); }
  int n_layer() const { return n_layer_; }
  int k_dim() const { return k_dim_; }
  int v_dim() const { return v_dim_; }
  int n_heads() const { return n_heads_; }

 private:
  int n_layer_, k_dim_, v_dim_, n_heads_;
  size_t n_blocks_, block_floats_;
  // Untouched until written: memory grows with the positions used, not the pool's size
  // (a cache is always written before it is read). Huge pages, as attention streams it.
  LargeBuffer buffer_;
  float* storage_;
  mutable std::mutex mu_;
  std::vector<int> free_;
};

class KvCache {
 public:
  // A standalone cache for up to n_ctx positions (its own pool, fully reserved).
  KvCache(int n_layer, int n_ctx, int k_dim, int v_dim, int n_heads = 1);
  // A sequence drawing blocks from a shared pool as it grows, up to n_ctx positions.
  KvCache(std::shared_ptr<KvBlockPool> pool, int n_ctx);
  ~KvCache();
  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) = delete;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int n_ctx() const { return n_ctx_; }
  int n_layer() const { return pool_->n_layer(); }
  int k_dim() const { return pool_->k_dim(); }
  int v_dim() const { return pool_->v_dim(); }
  // Positions already filled (the next token goes at n_past()).
  int n_past() const { return n_past_; }
  void set_n_past(int n) { n_past_ = n; }
  // Forgets the sequence and gives its blocks back to a shared pool.
  void clear();
  // Makes room for positions [0, n_positions); false if the pool ran out of blocks
  // (nothing is taken then) or n_positions exceeds n_ctx.
  bool reserve(int n_positions);
  size_t blocks_held() const { return table_.size(); }

  // Head 0 of a position's keys (values); head h is k_head_stride() (v_head_stride()) on.
  float* k(int layer, int pos) { return pool_->k(table_[size_t(pos / KvBlockPool::kBlockTokens)], layer, pos % KvBlockPool::kBlockTokens); }
  float* v(int layer, int pos) { return pool_->v(table_[size_t(pos / KvBlockPool::kBlockTokens)], layer, pos % KvBlockPool::kBlockTokens); }
  int n_heads() const { return pool_->n_heads(); }
  int64_t k_head_stride() const { return pool_->k_head_stride(); }
  int64_t v_head_stride() const { return pool_->v_head_stride(); }
  // Writes a position's keys and values, each [n_heads][dim / n_heads] as the model
  // computes them, into the head-major block.
  void store(int layer, int pos, const float* keys, const float* values);
  size_t bytes() const { return table_.size() * KvBlockPool::block_bytes(pool_->n_layer(), k_dim(), v_dim()); }

 private:
  void release_all();
  std::shared_ptr<KvBlockPool> pool_;
  int n_ctx_;
  int n_past_ = 0;
  bool standalone_;
  std::vector<int> table_;
};

}  // namespace jevons
