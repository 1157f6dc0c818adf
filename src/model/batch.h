// The bookkeeping of one batched forward pass: which sequence and position each
// token belongs to, where each sequence's KV rows are, which rows need logits.
// Shared by every architecture's forward_batch.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "model/model.h"

namespace jevons {

// Per sequence, pointers to its cached K and V rows of one layer, positions 0..end.
// Per chunk (sequence): each position's key and value row (head 0), the element type
// they are stored in, and how far on head h's lies (h * stride elements; the cache's
// blocks are head-major).
struct KvRows {
  std::vector<std::vector<const void*>> k, v;
  std::vector<TensorType> type;
  std::vector<int64_t> k_head_stride, v_head_stride;
};

struct Batch {
  const std::vector<Model::Chunk>* chunks = nullptr;
  std::vector<int32_t> token;     // per token
  std::vector<int> pos;           // per token: its position in its sequence
  std::vector<size_t> chunk_of;   // per token: index of its chunk

  int64_t n_tokens() const { return int64_t(token.size()); }
  KvCache* cache_of(int64_t t) const { return (*chunks)[chunk_of[size_t(t)]].cache; }
  // K/V row pointers of every chunk for `layer`, through the end of this batch.
  KvRows kv_rows(int layer) const;
  // The token rows whose logits are wanted, in output order.
  std::vector<int64_t> logit_rows() const;
  // Causal blocks for attention: runs of at most max_tokens consecutive tokens of one
  // sequence at consecutive positions, as (first token, tokens).
  std::vector<std::pair<int64_t, int>> causal_blocks(int max_tokens) const;
  // Advances every chunk's cache past its tokens (after a successful forward).
  void advance() const;
};

// Index i of n blocks taken first, last, second, second to last, ...: contiguous ranges of
// that order (what ThreadPool::parallel_for hands each thread) get equal causal work.
inline int64_t ends_inward(int64_t i, int64_t n) { return i % 2 == 0 ? i / 2 : n - 1 - i / 2; }

// Validates the chunks (ids in range, room in each cache, reserving KV blocks) and
// lays out the batch. Throws Error with an actionable message.
Batch prepare_batch(const std::vector<Model::Chunk>& chunks, int n_vocab);

}  // namespace jevons
