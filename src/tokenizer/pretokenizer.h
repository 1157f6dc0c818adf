// Pre-tokenizers for byte-level BPE (tokenizer.ggml.pre): split text into the
// words BPE merges within, as llama.cpp does. Each pre-tokenizer is a sequence
// of regex splits applied in turn, each one splitting every piece the previous
// one produced; text a regex does not match stays as a piece of its own. The
// regexes (the ones in llama.cpp's llama-vocab.cpp, quoted beside each matcher
// in pretokenizer.cc) are implemented as hand-written matchers over codepoints
// with the categories of unicode_tables.cc.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jevons {

class PreTokenizer {
 public:
  // The length of the match at cps[pos] (0: none) within the piece [begin, end):
  // reads nothing outside it.
  using Matcher = size_t (*)(const uint32_t* cps, size_t begin, size_t pos, size_t end);

  // Throws Error listing the supported names when `name` is unknown.
  explicit PreTokenizer(std::string_view name);

  const std::string& name() const { return name_; }
  // llama3 family: a word that is itself a token is emitted without BPE.
  bool ignore_merges() const { return ignore_merges_; }
  // llama.cpp's default for tokenizer.ggml.add_bos_token with this pre-tokenizer.
  bool add_bos_default() const { return add_bos_; }

  // Word boundaries: [begin, end) index pairs into cps.
  std::vector<std::pair<uint32_t, uint32_t>> split_spans(const std::vector<uint32_t>& cps) const;
  // The words of `text` (decoded leniently: invalid UTF-8 becomes U+FFFD), each
  // in GPT-2 byte-level symbols, ready for BPE.
  std::vector<std::string> split(std::string_view text) const;

  // "default, gpt-2, ..." for error messages.
  static std::string supported_names();

 private:
  std::string name_;
  std::vector<Matcher> steps_;
  bool ignore_merges_ = false;
  bool add_bos_ = false;
};

}  // namespace jevons
