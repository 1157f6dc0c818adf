#include "engine/text_stream.h"

#include <algorithm>

namespace jevons::engine {

size_t partial_suffix(const std::string& text, const std::string& pattern) {
  const size_t max = std::min(text.size(), pattern.empty() ? size_t(0) : pattern.size() - 1);
  for (size_t n = max; n > 0; --n)
    if (text.compare(text.size() - n, n, pattern, 0, n) == 0) return n;
  return 0;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::push(const std::string& text) {
  if (matched_) return {};
  held_ += text;
  size_t best = std::string::npos;
  for (const std::string& s : stops_) best = std::min(best, held_.find(s));
  if (best != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  size_t keep = 0;
  for (const std::string& s : stops_) keep = std::max(keep, partial_suffix(held_, s));
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::finish() {
  std::string out;
  out.swap(held_);
  return matched_ ? std::string() : out;
}

ReasoningSplitter::ReasoningSplitter(bool start_in_reasoning, std::string open_tag, std::string close_tag)
    : open_(std::move(open_tag)), close_(std::move(close_tag)), in_reasoning_(start_in_reasoning) {}

void ReasoningSplitter::emit(Out& out, const std::string& s) {
  if (s.empty()) return;
  if (in_reasoning_) {
    out.reasoning += s;
    return;
  }
  size_t from = 0;
  if (trim_content_) {
    while (from < s.size() && (s[from] == ' ' || s[from] == '\n' || s[from] == '\r' || s[from] == '\t')) ++from;
    if (from == s.size()) return;
    trim_content_ = false;
  }
  out.content.append(s, from, std::string::npos);
  seen_content_ = true;
}

ReasoningSplitter::Out ReasoningSplitter::push(const std::string& text) {
  Out out;
  held_ += text;
  for (;;) {
    if (in_reasoning_) {
      const size_t at = held_.find(close_);
      if (at != std::string::npos) {
        emit(out, held_.substr(0, at));
        held_.erase(0, at + close_.size());
        in_reasoning_ = false;
        trim_content_ = true;
        continue;
      }
      const size_t keep = partial_suffix(held_, close_);
      emit(out, held_.substr(0, held_.size() - keep));
      held_.erase(0, held_.size() - keep);
      return out;
    }
    if (!seen_content_) {
      // Only leading whitespace may precede an opening tag.
      const size_t at = held_.find(open_);
      const size_t first = held_.find_first_not_of(" \n\r\t");
      if (at != std::string::npos && at == first) {
        held_.erase(0, at + open_.size());
        in_reasoning_ = true;
        continue;
      }
      if (first != std::string::npos && held_.compare(first, std::string::npos, open_, 0, held_.size() - first) == 0 &&
          held_.size() - first < open_.size())
        return out;  // could still become <think>
      if (first == std::string::npos) return out;  // only whitespace so far
    }
    emit(out, held_);
    held_.clear();
    return out;
  }
}

ReasoningSplitter::Out ReasoningSplitter::finish() {
  Out out;
  std::string rest;
  rest.swap(held_);
  emit(out, rest);
  return out;
}

}  // namespace jevons::engine
