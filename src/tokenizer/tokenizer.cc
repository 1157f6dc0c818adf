// Tokenizer core: validation of the vocabulary, special tokens, encode/decode.
// Loading from files is in tokenizer_load.cc.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <climits>
#include <queue>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace jevons {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }

// "<0xNN>" -> NN, or -1.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

// Token texts llama.cpp treats as end of turn / end of generation (llama-vocab.cpp).
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "<end_of_utterance>",
};
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~[",
};
// Fill-in-the-middle pad / repo / file-separator tokens, which llama.cpp also ends generation on.
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
constexpr std::string_view kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepTexts[] = {"<|file_sep|>"};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(VocabSpec spec) {
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(spec)));
}

Tokenizer::~Tokenizer() = default;

Tokenizer::Tokenizer(VocabSpec spec) : model_(spec.model), source_(spec.source) {
  const size_t n = spec.tokens.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", source_);
  if (n > size_t(INT32_MAX)) fail("{}: tokenizer.ggml.tokens has {} tokens, more than token ids can hold", source_, n);
  if (!spec.scores.empty() && spec.scores.size() < n)
    fail("{}: tokenizer.ggml.scores has {} entries but there are {} tokens", source_, spec.scores.size(), n);
  if (!spec.types.empty() && spec.types.size() < n)
    fail("{}: tokenizer.ggml.token_type has {} entries but there are {} tokens", source_, spec.types.size(), n);

  tokens_ = std::move(spec.tokens);
  scores_ = std::move(spec.scores);
  scores_.resize(n, 0.0f);
  types_ = std::move(spec.types);
  types_.resize(n, TokenType::Normal);
  ids_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    if (int32_t(types_[id]) < 0 || int32_t(types_[id]) > int32_t(TokenType::Byte)) types_[id] = TokenType::Undefined;
    if (tokens_[id].empty()) tokens_[id] = fmt::format("[EMPTY_{}]", id);  // as llama.cpp: keeps lookups unambiguous
    const auto [it, inserted] = ids_.emplace(tokens_[id], int32_t(id));
    if (!inserted)
      fail("{}: tokenizer.ggml.tokens has \"{}\" twice (ids {} and {}); the vocabulary is corrupt", source_, tokens_[id],
           it->second, id);
  }

  if (model_ == VocabSpec::Model::Bpe) {
    try {
      pre_ = std::make_unique<PreTokenizer>(spec.pre);
    } catch (const Error& e) {
      fail("{}: {}", source_, e.what());
    }
    merges_from_ranks_ = spec.merges_from_ranks;
    merges_.reserve(spec.merges.size());
    for (size_t k = 0; k < spec.merges.size(); ++k) {
      const std::string& m = spec.merges[k];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= m.size())
        fail("{}: tokenizer.ggml.merges[{}] = \"{}\" is not two tokens separated by a space", source_, k, m);
      const std::string_view left = std::string_view(m).substr(0, sp), right = std::string_view(m).substr(sp + 1);
      const int32_t l = find_token(left), r = find_token(right);
      for (const auto& [part, id] : {std::pair{left, l}, std::pair{right, r}})
        if (id < 0)
          fail("{}: tokenizer.ggml.merges[{}] = \"{}\" names \"{}\", which is not in tokenizer.ggml.tokens", source_, k,
               m, part);
      // Keep the first (best) rank if a pair repeats, as llama.cpp does.
      merges_.emplace(pair_key(l, r), Merge{int32_t(k), find_token(std::string(left) + std::string(right))});
    }
  } else {
    for (int b = 0; b < 256; ++b) {
      int32_t id = find_token(fmt::format("<0x{:02X}>", b));
      if (id < 0) id = find_token(std::string(1, char(b)));
      spm_byte_tokens_[size_t(b)] = id;
    }
  }

  auto check = [&](int32_t id, const char* key) {
    if (id < -1 || id >= int32_t(n))
      fail("{}: {} = {} is not a token id (the vocabulary has {} tokens)", source_, key, id, n);
    return id;
  };
  bos_ = check(spec.bos, "tokenizer.ggml.bos_token_id");
  eos_ = check(spec.eos, "tokenizer.ggml.eos_token_id");
  unk_ = check(spec.unk, "tokenizer.ggml.unknown_token_id");
  pad_ = check(spec.pad, "tokenizer.ggml.padding_token_id");
  eot_ = check(spec.eot, "tokenizer.ggml.eot_token_id");
  eom_ = check(spec.eom, "tokenizer.ggml.eom_token_id");
  check(spec.fim_pad, "tokenizer.ggml.fim_pad_token_id");
  check(spec.fim_rep, "tokenizer.ggml.fim_rep_token_id");
  check(spec.fim_sep, "tokenizer.ggml.fim_sep_token_id");

  const bool spm = model_ == VocabSpec::Model::Spm;
  add_bos_ = spec.add_bos.value_or(spm || pre_->add_bos_default());
  add_eos_ = spec.add_eos.value_or(false);
  add_space_prefix_ = spec.add_space_prefix.value_or(spm);
  if (add_bos_ && bos_ < 0)
    fail("{}: tokenizer.ggml.add_bos_token is true but there is no BOS token (tokenizer.ggml.bos_token_id)", source_);
  if (add_eos_ && eos_ < 0)
    fail("{}: tokenizer.ggml.add_eos_token is true but there is no EOS token (tokenizer.ggml.eos_token_id)", source_);

  init_special_tokens(spec);
}

void Tokenizer::init_special_tokens(const VocabSpec& spec) {
  const int32_t n = n_vocab();
  // Tokens llama.cpp recognises by text get the control type even if the converter left them
  // normal. Where several texts qualify for one role, the lowest id wins (deterministic; llama.cpp
  // takes whichever its hash map yields first).
  auto mark_control = [&](int32_t id) {
    if (id >= 0) types_[size_t(id)] = TokenType::Control;
    return id;
  };
  auto find_first = [&](auto const& texts) {
    int32_t best = -1;
    for (std::string_view t : texts)
      if (const int32_t id = find_token(t); id >= 0 && (best < 0 || id < best)) best = id;
    return mark_control(best);
  };
  if (eot_ < 0) eot_ = find_first(kEotTexts);
  if (eom_ < 0) eom_ = mark_control(find_token("<|eom_id|>"));
  const int32_t fim_pad = spec.fim_pad >= 0 ? spec.fim_pad : find_first(kFimPadTexts);
  const int32_t fim_rep = spec.fim_rep >= 0 ? spec.fim_rep : find_first(kFimRepTexts);
  const int32_t fim_sep = spec.fim_sep >= 0 ? spec.fim_sep : find_first(kFimSepTexts);

  eog_.assign(size_t(n), false);
  for (std::string_view t : kEogTexts)
    if (const int32_t id = mark_control(find_token(t)); id >= 0) eog_[size_t(id)] = true;
  for (int32_t id : {eos_, eot_, eom_, fim_pad, fim_rep, fim_sep})
    if (id >= 0 && id < n) eog_[size_t(id)] = true;
  // llama.cpp's workarounds: with gpt-oss (<|return|>, <|call|>) and solar-open (<|calls|>,
  // <|flush|>) vocabularies <|end|> ends a message, not the generation; gemma4 uses </s> as text.
  auto eog_text = [&](std::string_view t) {
    const int32_t id = find_token(t);
    return id >= 0 && eog_[size_t(id)];
  };
  if (eog_text("<|end|>") && ((eog_text("<|return|>") && eog_text("<|call|>")) || (eog_text("<|calls|>") && eog_text("<|flush|>")))) {
    const int32_t id = find_token("<|end|>");
    eog_[size_t(id)] = false;
    types_[size_t(id)] = TokenType::UserDefined;
  }
  if (eog_text("<|tool_response>") && eog_text("</s>")) {
    const int32_t id = find_token("</s>");
    eog_[size_t(id)] = false;
    types_[size_t(id)] = TokenType::Normal;
  }

  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = types_[size_t(id)];
    if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) specials_.push_back(id);
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](int32_t a, int32_t b) { return tokens_[size_t(a)].size() > tokens_[size_t(b)].size(); });
}

int32_t Tokenizer::find_token(std::string_view text) const {
  const auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("token id {} is out of range (the vocabulary has {} tokens)", id, n_vocab());
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(id);
  return tokens_[size_t(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return types_[size_t(id)];
}

bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && eog_[size_t(id)]; }

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && types_[size_t(id)] == TokenType::Control;
}

// Cuts special-token text out of `text`, longest token first, as llama.cpp's
// tokenizer_st_partition does. Without parse_special only user-defined tokens are cut.
std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags, next;
  if (!text.empty()) frags.push_back({-1, 0, text.size()});
  for (int32_t id : specials_) {
    if (!parse_special && types_[size_t(id)] != TokenType::UserDefined) continue;
    const std::string& s = tokens_[size_t(id)];
    if (text.find(s) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.offset;
      const size_t end = f.offset + f.length;
      while (pos < end) {
        const size_t hit = text.substr(0, end).find(s, pos);
        if (hit == std::string_view::npos) break;
        if (hit > pos) next.push_back({-1, pos, hit - pos});
        next.push_back({id, hit, s.size()});
        pos = hit + s.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos) {
    if (bos_ < 0) fail("{}: cannot add BOS: the vocabulary has no BOS token", source_);
    out.push_back(bos_);
  }
  bool after_special = true;  // SentencePiece adds its space prefix at the start and after each special token
  for (const Fragment& f : partition(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(f.offset, f.length);
    if (model_ == VocabSpec::Model::Spm) {
      encode_spm(raw, add_space_prefix_ && after_special, out);
    } else {
      for (const std::string& word : pre_->split(raw)) encode_bpe_word(word, out);
    }
    after_special = false;
  }
  return out;
}

// SentencePiece BPE: start from UTF-8 characters, repeatedly merge the adjacent
// pair whose concatenation is the token with the highest score (leftmost on
// ties), then emit each piece's token or, failing that, its bytes' <0xNN> tokens.
void Tokenizer::encode_spm(std::string_view raw, bool space_prefix, std::vector<int32_t>& out) const {
  std::string s;
  s.reserve(raw.size() + raw.size() / 2 + 3);
  if (space_prefix) s += kSpmSpace;
  for (char c : raw) {
    if (c == ' ')
      s += kSpmSpace;
    else
      s += c;
  }
  struct Sym {
    uint32_t start, len;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::min(unicode::utf8_len(uint8_t(s[i])), s.size() - i);
    syms.push_back({uint32_t(i), uint32_t(len), int32_t(syms.size()) - 1, int32_t(syms.size()) + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
  };
  auto lower_priority = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower_priority)> queue(lower_priority);
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t size = syms[size_t(l)].len + syms[size_t(r)].len;
    const int32_t id = find_token(std::string_view(s).substr(syms[size_t(l)].start, size));
    if (id >= 0) queue.push({scores_[size_t(id)], l, r, size});
  };
  for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Sym& left = syms[size_t(b.left)];
    Sym& right = syms[size_t(b.right)];
    if (left.len == 0 || right.len == 0 || left.len + right.len != b.size) continue;  // stale
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[size_t(right.next)].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }
  for (int32_t i = 0; i != -1; i = syms[size_t(i)].next) {
    const std::string_view piece = std::string_view(s).substr(syms[size_t(i)].start, syms[size_t(i)].len);
    if (const int32_t id = find_token(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t id = spm_byte_tokens_[uint8_t(c)];
      if (id >= 0)
        out.push_back(id);
      else if (unk_ >= 0)
        out.push_back(unk_);
    }
  }
}

std::optional<Tokenizer::Merge> Tokenizer::find_merge(int32_t left, int32_t right, std::string_view joined) const {
  if (merges_from_ranks_) {
    const int32_t id = find_token(joined);
    if (id < 0) return std::nullopt;
    return Merge{id, id};
  }
  const auto it = merges_.find(pair_key(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

// Byte-level BPE on one pre-tokenized word: start from its symbols (one per
// byte), repeatedly merge the adjacent pair with the lowest merge rank
// (leftmost on ties). A priority queue with lazy deletion keeps this
// O(n log n) in the word length.
void Tokenizer::encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (pre_->ignore_merges()) {
    if (const int32_t id = find_token(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  struct Sym {
    uint32_t start, len;
    int32_t id, prev, next;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < word.size();) {
    const size_t len = std::min(unicode::utf8_len(uint8_t(word[i])), word.size() - i);
    syms.push_back({uint32_t(i), uint32_t(len), find_token(word.substr(i, len)), int32_t(syms.size()) - 1,
                    int32_t(syms.size()) + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Pair {
    int32_t rank, left, right, left_id, right_id, result;
  };
  auto lower_priority = [](const Pair& a, const Pair& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(lower_priority)> queue(lower_priority);
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym& a = syms[size_t(l)];
    const Sym& b = syms[size_t(r)];
    if (a.id < 0 || b.id < 0) return;
    if (const auto m = find_merge(a.id, b.id, word.substr(a.start, a.len + b.len)))
      queue.push({m->rank, l, r, a.id, b.id, m->result});
  };
  for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));
  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Sym& left = syms[size_t(p.left)];
    Sym& right = syms[size_t(p.right)];
    // Stale if either side has merged since (a live symbol's id changes with every merge).
    if (left.len == 0 || right.len == 0 || left.id != p.left_id || right.id != p.right_id) continue;
    left.len += right.len;
    left.id = p.result;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[size_t(right.next)].prev = p.left;
    try_add(left.prev, p.left);
    try_add(p.left, left.next);
  }
  for (int32_t i = 0; i != -1; i = syms[size_t(i)].next) {
    const Sym& sym = syms[size_t(i)];
    if (sym.id >= 0) {
      out.push_back(sym.id);
      continue;
    }
    // No token for this piece: llama.cpp emits the tokens of its single bytes
    // that happen to be tokens and drops the rest.
    for (char c : word.substr(sym.start, sym.len))
      if (const int32_t id = find_token(std::string_view(&c, 1)); id >= 0) out.push_back(id);
  }
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  const std::string& text = tokens_[size_t(id)];
  switch (types_[size_t(id)]) {
    case TokenType::UserDefined:
      return text;
    case TokenType::Byte:
      if (const int b = parse_byte_token(text); b >= 0) return std::string(1, char(b));
      return text;
    case TokenType::Normal:
      break;
    default:  // control, unknown, unused, undefined: not part of the text
      return {};
  }
  std::string out;
  if (model_ == VocabSpec::Model::Spm) {
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
        out += ' ';
        i += kSpmSpace.size();
      } else {
        out += text[i++];
      }
    }
    return out;
  }
  for (uint32_t cp : unicode::decode_utf8_lenient(text)) {
    const int b = unicode::codepoint_to_byte(cp);
    if (b >= 0)
      out += char(b);
    else
      unicode::append_utf8(out, cp);  // not a byte symbol: keep the character itself
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  bool strip = add_space_prefix_ && !ids.empty() && bos_ >= 0 && ids[0] == bos_;
  for (int32_t id : ids) {
    std::string p = piece(id);
    if (strip && !p.empty()) {
      if (p[0] == ' ') p.erase(0, 1);
      strip = false;
    }
    out += p;
  }
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space)
    : tok_(tokenizer), strip_(strip_leading_space) {}

std::string StreamDecoder::push(int32_t id) {
  std::string p = tok_.piece(id);
  if (strip_ && !p.empty()) {
    if (tok_.add_space_prefix() && p[0] == ' ') p.erase(0, 1);
    strip_ = false;
  }
  pending_ += p;
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int r = unicode::utf8_scan(pending_, i);
    if (r == 0) break;  // incomplete character at the end: wait for more bytes
    if (r > 0) {
      out.append(pending_, i, size_t(r));
      i += size_t(r);
    } else {
      unicode::append_utf8(out, unicode::kReplacement);
      i += size_t(-r);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = unicode::sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace jevons
