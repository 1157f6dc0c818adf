// The server's text-stream pieces: stop strings across token boundaries and the
// <think> splitter.
#include <gtest/gtest.h>

#include "engine/text_stream.h"

using jevons::engine::ReasoningSplitter;
using jevons::engine::StopMatcher;

namespace {

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out += m.push(p);
    if (m.matched()) break;
  }
  out += m.finish();
  return out;
}

}  // namespace

TEST(ServerText, StopStringAcrossPieces) {
  StopMatcher m({"END"});
  EXPECT_EQ(feed(m, {"Hello E", "N", "D world"}), "Hello ");
  EXPECT_TRUE(m.matched());
}

TEST(ServerText, StopPrefixIsHeldThenReleased) {
  StopMatcher m({"</s>"});
  EXPECT_EQ(m.push("a </"), "a ");  // "</" could start the stop string
  EXPECT_EQ(m.push("b>"), "</b>");
  EXPECT_EQ(m.push("<"), "");
  EXPECT_EQ(m.finish(), "<");
  EXPECT_FALSE(m.matched());
}

TEST(ServerText, EarliestOfSeveralStops) {
  StopMatcher m({"xyz", "b"});
  EXPECT_EQ(feed(m, {"axy", "b", "xyz"}), "axy");
}

TEST(ServerText, NoStops) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.finish(), "");
}

TEST(ServerText, SplitterSeparatesReasoning) {
  ReasoningSplitter s(false);
  std::string r, c;
  for (const char* piece : {"<th", "ink>I should ", "think</", "think>\n\nThe answer", " is 4."}) {
    auto o = s.push(piece);
    r += o.reasoning;
    c += o.content;
  }
  auto o = s.finish();
  r += o.reasoning;
  c += o.content;
  EXPECT_EQ(r, "I should think");
  EXPECT_EQ(c, "The answer is 4.");
}

TEST(ServerText, SplitterStartingInsideThought) {
  ReasoningSplitter s(true);
  auto a = s.push("step 1 </thi");
  EXPECT_EQ(a.reasoning, "step 1 ");
  EXPECT_TRUE(s.in_reasoning());
  auto b = s.push("nk>done");
  EXPECT_EQ(b.content, "done");
  EXPECT_FALSE(s.in_reasoning());
}

TEST(ServerText, SplitterNoThinkIsAllContent) {
  ReasoningSplitter s(false);
  auto a = s.push("Hello <think> is just text");
  auto b = s.finish();
  EXPECT_EQ(a.content + b.content, "Hello <think> is just text");
  EXPECT_EQ(a.reasoning + b.reasoning, "");
}
