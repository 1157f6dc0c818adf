#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/float16.h"

namespace jevons {

void KvBlockPool::check_type(TensorType type, int head_dim_k, int head_dim_v) {
  switch (type) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16: return;
    case TensorType::Q8_0:
      if (head_dim_k % 32 != 0 || head_dim_v % 32 != 0)
        fail("--kv-type q8_0 needs key and value rows (per KV head) of a multiple of 32 elements; this model's are {} and {} "
             "(use f16)", head_dim_k, head_dim_v);
      return;
    default: fail("the KV cache holds f32, f16, bf16 or q8_0 elements, not {}", type_name(type));
  }
}

static int checked_heads(int n_heads, int k_dim, int v_dim, TensorType type) {
  if (n_heads <= 0 || k_dim % n_heads != 0 || v_dim % n_heads != 0)
    fail("KV cache: {} heads do not divide the key width {} and value width {}", n_heads, k_dim, v_dim);
  KvBlockPool::check_type(type, k_dim / n_heads, v_dim / n_heads);
  return n_heads;
}

KvBlockPool::KvBlockPool(int n_layer, int k_dim, int v_dim, size_t n_blocks, int n_heads, uint64_t salt, TensorType type)
    : n_layer_(n_layer), k_dim_(k_dim), v_dim_(v_dim), n_heads_(checked_heads(n_heads, k_dim, v_dim, type)), type_(type),
      n_blocks_(n_blocks), block_bytes_(block_bytes(n_layer, k_dim, v_dim, type)), salt_(salt),
      buffer_(n_blocks * block_bytes_, "KV cache"), storage_(buffer_.data()), info_(n_blocks) {
  free_.reserve(n_blocks);
  for (size_t b = n_blocks; b-- > 0;) free_.push_back(int(b));  // hand out low blocks first
}

void KvBlockPool::unpublish_locked(int block) {
  BlockInfo& in = info_[size_t(block)];
  if (!in.published) return;
  auto [lo, hi] = index_.equal_range(in.hash);
  for (auto it = lo; it != hi; ++it)
    if (it->second == block) {
      index_.erase(it);
      break;
    }
  in.published = false;
  in.tokens.clear();
  in.parent = -1;
}

int KvBlockPool::allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  int b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {  // evict the least recently used cached block
    b = lru_.front();
    lru_.pop_front();
    unpublish_locked(b);
    ++evictions_;
  } else {
    return -1;
  }
  BlockInfo& in = info_[size_t(b)];
  in.refs = 1;
  ++in.generation;  // new contents: chains that named the old ones no longer match
  return b;
}

void KvBlockPool::retain(int block) {
  std::lock_guard<std::mutex> lock(mu_);
  BlockInfo& in = info_[size_t(block)];
  if (in.refs == 0) lru_.erase(in.lru);  // a cached block back in use
  ++in.refs;
}

void KvBlockPool::release(int block) {
  std::lock_guard<std::mutex> lock(mu_);
  BlockInfo& in = info_[size_t(block)];
  if (in.refs <= 0) fail("internal: KV block {} released more often than held", block);
  if (--in.refs > 0) return;
  if (in.published) {
    in.lru = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

int KvBlockPool::ref_count(int block) const {
  std::lock_guard<std::mutex> lock(mu_);
  return info_[size_t(block)].refs;
}

bool KvBlockPool::published(int block) const {
  std::lock_guard<std::mutex> lock(mu_);
  return info_[size_t(block)].published;
}

bool KvBlockPool::writable(int block) const {
  std::lock_guard<std::mutex> lock(mu_);
  const BlockInfo& in = info_[size_t(block)];
  return in.refs == 1 && !in.published;
}

uint64_t KvBlockPool::block_hash(uint64_t parent_hash, const int32_t* tokens) const {
  // FNV-1a over the parent's hash, the salt and the token ids, then a 64-bit finalizer
  // (splitmix64) so that the low bits mix too.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent_hash);
  mix(salt_);
  for (int i = 0; i < kBlockTokens; ++i) mix(uint64_t(uint32_t(tokens[i])));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h & hash_mask_;
}

bool KvBlockPool::matches_locked(int block, uint64_t hash, int parent_block, const int32_t* tokens) const {
  const BlockInfo& in = info_[size_t(block)];
  if (!in.published || in.hash != hash || in.parent != parent_block) return false;
  if (parent_block >= 0 && in.parent_generation != info_[size_t(parent_block)].generation) return false;
  return std::equal(in.tokens.begin(), in.tokens.end(), tokens);
}

int KvBlockPool::lookup(uint64_t hash, int parent_block, const int32_t* tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  ++lookups_;
  auto [lo, hi] = index_.equal_range(hash);
  for (auto it = lo; it != hi; ++it) {
    const int b = it->second;
    if (!matches_locked(b, hash, parent_block, tokens)) continue;  // a collision
    BlockInfo& in = info_[size_t(b)];
    if (in.refs == 0) lru_.erase(in.lru);
    ++in.refs;
    ++hits_;
    return b;
  }
  return -1;
}

bool KvBlockPool::publish(int block, uint64_t hash, int parent_block, const int32_t* tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  BlockInfo& in = info_[size_t(block)];
  if (in.published) return true;
  auto [lo, hi] = index_.equal_range(hash);
  for (auto it = lo; it != hi; ++it)
    if (matches_locked(it->second, hash, parent_block, tokens)) return false;  // an equal block stands for it
  in.published = true;
  in.hash = hash;
  in.parent = parent_block;
  in.parent_generation = parent_block >= 0 ? info_[size_t(parent_block)].generation : 0;
  in.tokens.assign(tokens, tokens + kBlockTokens);
  index_.emplace(hash, block);
  return true;
}

size_t KvBlockPool::available_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size() + lru_.size();
}

KvPoolStats KvBlockPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  KvPoolStats s;
  s.total_blocks = n_blocks_;
  s.free_blocks = free_.size();
  s.cached_blocks = lru_.size();
  s.used_blocks = n_blocks_ - free_.size() - lru_.size();
  s.lookups = lookups_;
  s.hits = hits_;
  s.evictions = evictions_;
  return s;
}

static size_t blocks_for(int n_positions) {
  return size_t((n_positions + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens);
}

KvCache::KvCache(int n_layer, int n_ctx, int k_dim, int v_dim, int n_heads, TensorType type)
    : pool_(std::make_shared<KvBlockPool>(n_layer, k_dim, v_dim, blocks_for(n_ctx), n_heads, 0, type)), n_ctx_(n_ctx),
      standalone_(true) {
  if (n_ctx <= 0) fail("context length must be positive, got {}", n_ctx);
  if (!reserve(n_ctx)) fail("internal: a standalone KV cache could not reserve its own blocks");
}

KvCache::KvCache(std::shared_ptr<KvBlockPool> pool, int n_ctx) : pool_(std::move(pool)), n_ctx_(n_ctx), standalone_(false) {}

KvCache::KvCache(KvCache&& o) noexcept
    : pool_(std::move(o.pool_)), n_ctx_(o.n_ctx_), n_past_(o.n_past_), standalone_(o.standalone_), table_(std::move(o.table_)) {
  o.table_.clear();
}

KvCache::~KvCache() { release_all(); }

void KvCache::release_all() {
  if (!pool_) return;
  for (int b : table_) pool_->release(b);
  table_.clear();
}

void KvCache::clear() {
  n_past_ = 0;
  if (!standalone_) release_all();  // a standalone cache keeps its private blocks
}

void KvCache::truncate(int n) {
  if (n < 0 || n > n_past_) fail("internal: truncate to {} positions of {}", n, n_past_);
  n_past_ = n;
  if (standalone_) return;
  const size_t keep = blocks_for(n);
  while (table_.size() > keep) {
    pool_->release(table_.back());
    table_.pop_back();
  }
  if (n % KvBlockPool::kBlockTokens == 0 || table_.empty()) return;
  const int tail = table_.back();
  if (pool_->writable(tail)) return;
  // The next positions go into this block: copy it first (copy on write).
  const int copy = pool_->allocate();
  if (copy < 0) fail("the KV cache pool is full: no free block to copy a shared block into");
  std::memcpy(pool_->block_data(copy), pool_->block_data(tail), pool_->bytes_per_block());
  pool_->release(tail);
  table_.back() = copy;
}

bool KvCache::reserve(int n_positions) {
  if (n_positions > n_ctx_) return false;
  const size_t need = blocks_for(n_positions);
  std::vector<int> got;
  while (table_.size() + got.size() < need) {
    const int b = pool_->allocate();
    if (b < 0) {
      for (int x : got) pool_->release(x);
      return false;
    }
    got.push_back(b);
  }
  table_.insert(table_.end(), got.begin(), got.end());
  return true;
}

void KvCache::adopt(int block) {
  if (n_past_ != int(table_.size()) * KvBlockPool::kBlockTokens)
    fail("internal: a cached block adopted after {} positions in {} blocks", n_past_, table_.size());
  if (n_past_ + KvBlockPool::kBlockTokens > n_ctx_) fail("internal: a cached block adopted past the context");
  table_.push_back(block);
  n_past_ += KvBlockPool::kBlockTokens;
}

void KvCache::replace_block(size_t index, int block) {
  pool_->release(table_.at(index));
  table_[index] = block;
}

// n floats into n elements of type at dst.
static void put_row(TensorType type, const float* src, int64_t n, uint8_t* dst) {
  switch (type) {
    case TensorType::F32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = float_to_fp16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = float_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default: type_traits(type).from_float(src, dst, n); return;  // Q8_0: ggml's reference rounding
  }
}

void KvCache::store(int layer, int pos, const float* keys, const float* values) {
  const int h_k = k_dim() / n_heads(), h_v = v_dim() / n_heads();
  uint8_t* k0 = k(layer, pos);
  for (int h = 0; h < n_heads(); ++h) put_row(type(), keys + h * h_k, h_k, k0 + pool_->bytes_of(h * k_head_stride()));
  if (h_v == 0) return;
  uint8_t* v0 = v(layer, pos);
  for (int h = 0; h < n_heads(); ++h) put_row(type(), values + h * h_v, h_v, v0 + pool_->bytes_of(h * v_head_stride()));
}

}  // namespace jevons
