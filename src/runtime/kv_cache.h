// The KV cache, paged: keys and values live in fixed-size blocks of
// kBlockTokens positions taken from a pool (vLLM's PagedAttention layout), so many
// sequences share one memory budget and a finished sequence frees its blocks at once.
// A KvCache is one sequence's block table. Standalone caches own a private pool.
//
// Blocks are shared objects (vLLM v1's prefix caching): each has a reference count,
// and a full block whose tokens are known can be published under a content hash
// (the parent block's hash + the block's token ids + the pool's salt, which names the
// model and KV layout). A new sequence adopts the longest chain of published blocks
// that matches its tokens and computes only the rest. A published block whose count
// drops to zero stays cached until the pool needs it (least recently used first).
// The hash only indexes: a match also compares the block's tokens and its parent
// (block id and generation), so a hash collision can never hand out another
// sequence's keys and values. A block is never written while it is shared or
// published (prepare_batch checks it): full blocks are not written again, and
// truncate() copies a shared tail block before it can be.
//
// Element types (kv_type): F32 (what the golden tests match llama.cpp with), F16 (the
// default, as llama.cpp's), BF16, and Q8_0 (blocks of 32 int8 with an f16 scale, 8.5
// bits an element; a head's row must be a whole number of blocks). Keys and values are
// rounded once, when stored; attention reads the stored type directly, chunk by chunk
// (kernels/matmul.h). Offsets and strides below count elements; bytes come from
// row_bytes() of the type (quant/types.h).
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/large_buffer.h"
#include "quant/types.h"

namespace jevons {

struct KvPoolStats {
  size_t total_blocks = 0;
  size_t used_blocks = 0;    // held by at least one sequence
  size_t cached_blocks = 0;  // published, held by none, kept until evicted
  size_t free_blocks = 0;    // neither (cached blocks can be taken too: free + cached is what is available)
  int64_t lookups = 0, hits = 0;  // prefix block lookups, and those that found a block
  int64_t evictions = 0;
};

class KvBlockPool {
 public:
  static constexpr int kBlockTokens = 16;

  // n_heads: the KV heads a position's k_dim (and v_dim) elements split into.
  // salt: what makes equal tokens give different keys and values (the model, the KV
  // type); part of every block's hash. type: F32, F16 or BF16 elements.
  KvBlockPool(int n_layer, int k_dim, int v_dim, size_t n_blocks, int n_heads = 1, uint64_t salt = 0,
              TensorType type = TensorType::F32);
  static size_t block_bytes(int n_layer, int k_dim, int v_dim, TensorType type = TensorType::F32) {
    return row_bytes(type, int64_t(kBlockTokens) * n_layer * (k_dim + v_dim));
  }
  // Error unless the cache can hold this type with rows of these head dims (the
  // elements of one head at one position).
  static void check_type(TensorType type, int head_dim_k, int head_dim_v);

  // A block held once by the caller (count 1): a free one, else the least recently
  // used cached one (evicted: unpublished). -1 when every block is held. Thread-safe.
  int allocate();
  void retain(int block);
  // Drops one hold. At zero a published block stays cached; any other is free.
  void release(int block);
  int ref_count(int block) const;
  bool published(int block) const;
  // Whether a sequence may write the block: held by exactly one sequence, unpublished.
  bool writable(int block) const;

  // Hash of a full block: its parent's hash (0 for the first block), its
  // kBlockTokens token ids and the salt.
  uint64_t block_hash(uint64_t parent_hash, const int32_t* tokens) const;
  // The published block with this hash whose tokens and parent match, retained for
  // the caller (count + 1); -1 if none. parent_block: the block before it in the
  // caller's chain (-1 for the first).
  int lookup(uint64_t hash, int parent_block, const int32_t* tokens);
  // Makes a full block that the caller holds findable by lookup(). A block that an
  // equal published block already stands for stays unpublished (false).
  bool publish(int block, uint64_t hash, int parent_block, const int32_t* tokens);
  // Tests only: keep this many low bits of every hash, so that collisions happen.
  void set_hash_bits_for_testing(int bits) { hash_mask_ = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1; }

  size_t total_blocks() const { return n_blocks_; }
  // Blocks not held by any sequence (free or cached: either can be allocated).
  size_t available_blocks() const;
  size_t free_blocks() const { return available_blocks(); }
  size_t used_blocks() const { return n_blocks_ - available_blocks(); }
  KvPoolStats stats() const;
  size_t bytes() const { return n_blocks_ * block_bytes_; }
  size_t bytes_per_block() const { return block_bytes_; }
  TensorType type() const { return type_; }

  // Layout of a block: K for [layer][head][slot][k_dim / n_heads], then V the same way.
  // Head-major: attention reads one head's rows of a block, and they lie next to each
  // other (4-8 KiB streamed, not 256-512 bytes out of every k_dim elements). k() and v()
  // point at head 0 of a slot; head h is k_head_stride() (v_head_stride()) elements on.
  uint8_t* k(int block, int layer, int slot) {
    return storage_ + size_t(block) * block_bytes_ +
           bytes_of(int64_t(layer) * kBlockTokens * k_dim_ + int64_t(slot) * (k_dim_ / n_heads_));
  }
  uint8_t* v(int block, int layer, int slot) {
    return storage_ + size_t(block) * block_bytes_ +
           bytes_of(int64_t(n_layer_) * kBlockTokens * k_dim_ + int64_t(layer) * kBlockTokens * v_dim_ +
                    int64_t(slot) * (v_dim_ / n_heads_));
  }
  // Bytes of n elements of the pool's type (n: a whole number of its blocks).
  size_t bytes_of(int64_t n) const { return type_ == TensorType::F32 ? size_t(n) * 4 : row_bytes(type_, n); }
  uint8_t* block_data(int block) { return storage_ + size_t(block) * block_bytes_; }
  int64_t k_head_stride() const { return int64_t(kBlockTokens) * (k_dim_ / n_heads_); }
  int64_t v_head_stride() const { return int64_t(kBlockTokens) * (v_dim_ / n_heads_); }
  int n_layer() const { return n_layer_; }
  int k_dim() const { return k_dim_; }
  int v_dim() const { return v_dim_; }
  int n_heads() const { return n_heads_; }
  uint64_t salt() const { return salt_; }

 private:
  struct BlockInfo {
    int refs = 0;
    bool published = false;
    uint64_t hash = 0;
    int parent = -1;               // the block before it in its chain when published
    uint64_t parent_generation = 0;
    uint64_t generation = 0;       // bumped whenever the block's contents are replaced
    std::vector<int32_t> tokens;   // published blocks: their token ids
    std::list<int>::iterator lru;  // cached blocks: place in lru_
  };
  void unpublish_locked(int block);
  bool matches_locked(int block, uint64_t hash, int parent_block, const int32_t* tokens) const;

  int n_layer_, k_dim_, v_dim_, n_heads_;
  TensorType type_;
  size_t n_blocks_, block_bytes_;
  uint64_t salt_;
  uint64_t hash_mask_ = ~uint64_t(0);
  // Untouched until written: memory grows with the positions used, not the pool's size
  // (a cache is always written before it is read). Huge pages, as attention streams it.
  LargeBuffer buffer_;
  uint8_t* storage_;
  mutable std::mutex mu_;
  std::vector<int> free_;
  std::vector<BlockInfo> info_;
  std::list<int> lru_;  // cached blocks, least recently used first
  std::unordered_multimap<uint64_t, int> index_;
  int64_t lookups_ = 0, hits_ = 0, evictions_ = 0;
};

class KvCache {
 public:
  // A standalone cache for up to n_ctx positions (its own pool, fully reserved).
  KvCache(int n_layer, int n_ctx, int k_dim, int v_dim, int n_heads = 1, TensorType type = TensorType::F32);
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
  // Forgets positions n and beyond (n <= n_past()): whole blocks past them go back to
  // the pool, and a kept tail block that is shared or published is first copied, so
  // that the positions written next never land in someone else's block.
  void truncate(int n);
  // Makes room for positions [0, n_positions); false if the pool ran out of blocks
  // (nothing is taken then) or n_positions exceeds n_ctx.
  bool reserve(int n_positions);
  // Appends a block the caller retained for this cache (a prefix-cache hit); the
  // cache now holds it and n_past() moves to its end. Only while n_past() is a
  // multiple of kBlockTokens and equals the blocks held.
  void adopt(int block);
  // Holds `block` (retained by the caller, with the same contents) in place of the
  // index-th block, which is released.
  void replace_block(size_t index, int block);
  size_t blocks_held() const { return table_.size(); }
  const std::vector<int>& block_table() const { return table_; }
  KvBlockPool& pool() { return *pool_; }
  const std::shared_ptr<KvBlockPool>& shared_pool() const { return pool_; }

  // Head 0 of a position's keys (values), elements of type(); head h is k_head_stride()
  // (v_head_stride()) elements on.
  uint8_t* k(int layer, int pos) { return pool_->k(table_[size_t(pos / KvBlockPool::kBlockTokens)], layer, pos % KvBlockPool::kBlockTokens); }
  uint8_t* v(int layer, int pos) { return pool_->v(table_[size_t(pos / KvBlockPool::kBlockTokens)], layer, pos % KvBlockPool::kBlockTokens); }
  TensorType type() const { return pool_->type(); }
  int n_heads() const { return pool_->n_heads(); }
  int64_t k_head_stride() const { return pool_->k_head_stride(); }
  int64_t v_head_stride() const { return pool_->v_head_stride(); }
  // Writes a position's keys and values, each [n_heads][dim / n_heads] as the model
  // computes them, into the head-major block, rounded to type(). values may be null
  // when v_dim() is 0 (MLA's latent rows serve as both).
  void store(int layer, int pos, const float* keys, const float* values);
  size_t bytes() const { return table_.size() * pool_->bytes_per_block(); }

 private:
  void release_all();
  std::shared_ptr<KvBlockPool> pool_;
  int n_ctx_;
  int n_past_ = 0;
  bool standalone_;
  std::vector<int> table_;
};

}  // namespace jevons
