// Reading vocabularies: GGUF metadata (tokenizer.ggml.*) and tiktoken rank files.
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace jevons {

namespace {

// A token id key: absent -> def (if in range, else none); -1 / 0xFFFFFFFF (how
// converters write "none") -> -1; anything else must be an integer (range is
// checked against the vocabulary later).
int32_t read_id(const ModelSource& f, std::string_view key, int32_t def, size_t n_tokens) {
  const GgufValue* v = f.find(key);
  if (!v) return (def >= 0 && size_t(def) < n_tokens) ? def : -1;
  if (!v->is_integer())
    fail("{}: metadata key {} is a {}, expected an integer token id", f.path(), key, gguf_type_name(v->type));
  const bool is_signed = v->type == GgufType::INT8 || v->type == GgufType::INT16 || v->type == GgufType::INT32 ||
                         v->type == GgufType::INT64;
  if (is_signed ? v->i == -1 : (v->u == 0xFFFFFFFFull || v->u == ~0ull)) return -1;
  if ((is_signed && v->i < 0) || (!is_signed && v->u >= uint64_t(INT32_MAX)) || (is_signed && v->i >= INT32_MAX))
    fail("{}: metadata key {} = {} is not a token id (the vocabulary has {} tokens)", f.path(), key,
         is_signed ? std::to_string(v->i) : std::to_string(v->u), n_tokens);
  return int32_t(v->i);
}

std::optional<bool> read_flag(const ModelSource& f, std::string_view key) {
  if (!f.find(key)) return std::nullopt;
  return f.get_bool(key);
}

const GgufValue& read_array(const ModelSource& f, std::string_view key, size_t min_size) {
  const GgufValue& a = f.get_array(key);
  if (a.size() < min_size)
    fail("{}: metadata key {} has {} entries but there are {} tokens", f.path(), key, a.size(), min_size);
  return a;
}

void require_elem(const ModelSource& f, std::string_view key, const GgufValue& a, bool ok, const char* expected) {
  if (!ok)
    fail("{}: metadata key {} is an array of {}, expected {}", f.path(), key, gguf_type_name(a.elem_type), expected);
}

bool is_numeric(GgufType t) { return t != GgufType::STRING && t != GgufType::ARRAY && t != GgufType::BOOL; }

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with optional '=' padding; false on a bad character.
bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (size_t k = 0; k < in.size(); ++k) {
    const char c = in[k];
    if (c == '=') {
      for (size_t j = k; j < in.size(); ++j)
        if (in[j] != '=') return false;
      break;
    }
    const int v = base64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xFF);
    }
  }
  return true;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const ModelSource& f) {
  VocabSpec spec;
  spec.source = f.path();
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model == "llama") {
    spec.model = VocabSpec::Model::Spm;
  } else if (model == "gpt2") {
    spec.model = VocabSpec::Model::Bpe;
  } else {
    fail("{}: tokenizer.ggml.model is \"{}\"; supported: \"llama\" (SentencePiece BPE), \"gpt2\" (byte-level BPE)",
         f.path(), model);
  }

  const GgufValue& tokens = f.get_array("tokenizer.ggml.tokens");
  require_elem(f, "tokenizer.ggml.tokens", tokens, tokens.elem_type == GgufType::STRING, "strings");
  const size_t n = tokens.size();
  spec.tokens.reserve(n);
  for (size_t k = 0; k < n; ++k) spec.tokens.emplace_back(tokens.string_at(k));

  if (f.find("tokenizer.ggml.scores")) {
    const GgufValue& a = read_array(f, "tokenizer.ggml.scores", n);
    require_elem(f, "tokenizer.ggml.scores", a, is_numeric(a.elem_type), "numbers");
    spec.scores.resize(n);
    for (size_t k = 0; k < n; ++k) spec.scores[k] = float(a.number_at(k));
  }
  if (f.find("tokenizer.ggml.token_type")) {
    const GgufValue& a = read_array(f, "tokenizer.ggml.token_type", n);
    const bool integers = is_numeric(a.elem_type) && a.elem_type != GgufType::FLOAT32 && a.elem_type != GgufType::FLOAT64;
    require_elem(f, "tokenizer.ggml.token_type", a, integers, "integers");
    spec.types.resize(n);
    for (size_t k = 0; k < n; ++k) {
      const int64_t t = a.int_at(k);
      spec.types[k] = (t >= 0 && t <= int64_t(TokenType::Byte)) ? TokenType(t) : TokenType::Undefined;
    }
  }

  if (spec.model == VocabSpec::Model::Bpe) {
    const GgufValue& m = f.get_array("tokenizer.ggml.merges");
    require_elem(f, "tokenizer.ggml.merges", m, m.elem_type == GgufType::STRING, "strings");
    spec.merges.reserve(m.size());
    for (size_t k = 0; k < m.size(); ++k) spec.merges.emplace_back(m.string_at(k));
    spec.pre = f.get_string_or("tokenizer.ggml.pre", "default");
  }

  // llama.cpp's defaults where a key is absent: SentencePiece <unk> <s> </s> = 0 1 2;
  // its BPE default of 11 for BOS and EOS is kept too, so ids match llama.cpp's.
  const bool spm = spec.model == VocabSpec::Model::Spm;
  spec.bos = read_id(f, "tokenizer.ggml.bos_token_id", spm ? 1 : 11, n);
  spec.eos = read_id(f, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, n);
  spec.unk = read_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n);
  spec.pad = read_id(f, "tokenizer.ggml.padding_token_id", -1, n);
  spec.eot = read_id(f, "tokenizer.ggml.eot_token_id", -1, n);
  spec.eom = read_id(f, "tokenizer.ggml.eom_token_id", -1, n);
  spec.fim_pad = read_id(f, "tokenizer.ggml.fim_pad_token_id", -1, n);
  spec.fim_rep = read_id(f, "tokenizer.ggml.fim_rep_token_id", -1, n);
  spec.fim_sep = read_id(f, "tokenizer.ggml.fim_sep_token_id", -1, n);
  spec.add_bos = read_flag(f, "tokenizer.ggml.add_bos_token");
  spec.add_eos = read_flag(f, "tokenizer.ggml.add_eos_token");
  spec.add_space_prefix = read_flag(f, "tokenizer.ggml.add_space_prefix");
  return from_vocab(std::move(spec));
}

std::unique_ptr<Tokenizer> Tokenizer::from_tiktoken(const std::string& path, std::string_view pre) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open tiktoken file {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();

  std::vector<std::pair<int64_t, std::string>> entries;  // rank, bytes
  std::string bytes;
  size_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) eol = data.size();
    std::string_view line(data.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    int64_t rank = -1;
    const std::string_view rank_text = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    const auto [end, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (sp == std::string_view::npos || ec != std::errc() || end != rank_text.data() + rank_text.size() || rank < 0)
      fail("{}:{}: expected \"<base64 token> <rank>\", got \"{}\"", path, line_no, line.substr(0, 80));
    if (!base64_decode(line.substr(0, sp), bytes) || bytes.empty())
      fail("{}:{}: \"{}\" is not a base64 token", path, line_no, line.substr(0, sp).substr(0, 80));
    entries.emplace_back(rank, bytes);
  }
  if (entries.empty()) fail("{}: no tokens in tiktoken file", path);

  VocabSpec spec;
  spec.source = path;
  spec.model = VocabSpec::Model::Bpe;
  spec.pre = std::string(pre);
  spec.merges_from_ranks = true;
  spec.add_bos = false;  // a bare rank file has no special tokens
  spec.add_eos = false;
  spec.tokens.resize(entries.size());
  std::vector<bool> seen(entries.size(), false);
  for (auto& [rank, tok] : entries) {
    if (rank >= int64_t(entries.size()) || seen[size_t(rank)])
      fail("{}: rank {} is repeated or out of range; ranks must be 0..{} (one per line)", path, rank,
           entries.size() - 1);
    seen[size_t(rank)] = true;
    spec.tokens[size_t(rank)] = unicode::bytes_to_symbols(tok);
  }
  return from_vocab(std::move(spec));
}

}  // namespace jevons
