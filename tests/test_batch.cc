// The bookkeeping of a batched forward pass (runtime/batch.h).
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "runtime/batch.h"

namespace jevons {
namespace {

TEST(Batch, CausalBlocksStayInOneSequenceAtConsecutivePositions) {
  // Two sequences: the first continues at position 10 for 5 tokens, the second starts at 0
  // with 2 tokens; a block ends at max_tokens, at a new sequence, and at a gap in positions
  // (not made by prepare_batch, but the blocks must not assume it away).
  Batch b;
  b.pos = {10, 11, 12, 13, 14, 0, 1, 7};
  b.chunk_of = {0, 0, 0, 0, 0, 1, 1, 1};
  b.token.assign(b.pos.size(), 0);
  using Blocks = std::vector<std::pair<int64_t, int>>;
  EXPECT_EQ(b.causal_blocks(3), (Blocks{{0, 3}, {3, 2}, {5, 2}, {7, 1}}));
  EXPECT_EQ(b.causal_blocks(8), (Blocks{{0, 5}, {5, 2}, {7, 1}}));
  EXPECT_EQ(b.causal_blocks(1).size(), b.pos.size());
}

}  // namespace
}  // namespace jevons
