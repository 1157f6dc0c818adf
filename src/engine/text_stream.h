// Text-stream pieces of generation, testable without a model: a stop-string
// matcher that never emits text that could still turn into a stop string, and a
// splitter that routes text between <think> and </think> to reasoning_content.
#pragma once
#include <string>
#include <vector>

namespace jevons::engine {

// Feed generated text piece by piece; push() returns what can be emitted now.
// Text that is a prefix of some stop string is held back until later text decides
// it; on a match, push() returns the text before it and matched() turns true (the
// stop string and everything after it are never emitted). Works across token
// boundaries since it only sees text.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(const std::string& text);
  // What is held back, at the end of generation (no match happened).
  std::string finish();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

// Splits text into reasoning and content at <think> ... </think>. The tags are
// dropped, as is whitespace right after </think>. A tag split across pieces is
// held back until it is decided.
class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(bool start_in_reasoning, std::string open_tag = "<think>", std::string close_tag = "</think>");
  struct Out {
    std::string reasoning, content;
  };
  Out push(const std::string& text);
  Out finish();
  bool in_reasoning() const { return in_reasoning_; }

 private:
  void emit(Out& out, const std::string& s);
  std::string open_, close_;
  bool in_reasoning_;
  bool trim_content_ = false;  // drop leading whitespace of content (right after </think>)
  bool seen_content_ = false;  // <think> only opens a thought before any content
  std::string held_;
};

// Length of the longest suffix of text that is a proper prefix of pattern.
size_t partial_suffix(const std::string& text, const std::string& pattern);

}  // namespace jevons::engine
