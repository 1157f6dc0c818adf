// Matchers for the pre-tokenizer regexes. Each one implements, at a single
// position, what the regex engine llama.cpp uses would match there: ordered
// alternation (the first alternative that matches wins, not the longest),
// greedy quantifiers with backtracking, lookahead. The splitting loop
// (split_step) then does what std::regex_iterator does: find the leftmost
// match, keep the unmatched text before it as a piece, go on after the match.
//
// Character classes. llama.cpp runs most of these regexes through std::regex
// on a "collapsed" copy of the text where every non-ASCII codepoint becomes one
// byte naming its category; \p{L} \p{N} \p{P} \p{M} then mean exactly the
// Unicode categories, and \s means Unicode White_Space. One quirk survives and
// is kept here: its ASCII set for \p{S} lacks '~', so in deepseek-v3 '~' is not
// a symbol. Regexes with literal non-ASCII ranges run on the codepoints, with
// non-ASCII whitespace replaced by U+000B first, so e.g. U+3000 (ideographic
// space) never matches a literal range that contains it; ranged() does that.
#include "tokenizer/pretokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace jevons {

namespace {

using unicode::Category;

Category cat(uint32_t c) { return unicode::category(c); }
bool ws(uint32_t c) { return unicode::is_whitespace(c); }
bool letter(uint32_t c) { return cat(c) == unicode::kLetter; }
bool number(uint32_t c) { return cat(c) == unicode::kNumber; }
bool punct(uint32_t c) { return cat(c) == unicode::kPunct; }
bool mark(uint32_t c) { return cat(c) == unicode::kMark; }
bool symbol_collapsed(uint32_t c) { return cat(c) == unicode::kSymbol && c != '~'; }
bool crlf(uint32_t c) { return c == '\r' || c == '\n'; }
bool ascii_alpha(uint32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
// [^\s\p{L}\p{N}]
bool other(uint32_t c) { return !ws(c) && !letter(c) && !number(c); }

struct Range {
  uint32_t lo, hi;
};

// Membership in a literal class of a regex that llama.cpp matches with std::wregex.
template <size_t N>
bool ranged(const Range (&ranges)[N], uint32_t c) {
  if (c > 0x7F && ws(c)) c = 0x0B;
  for (const Range& r : ranges)
    if (c >= r.lo && c <= r.hi) return true;
  return false;
}

// Length of the run of codepoints satisfying pred, from pos.
template <typename Pred>
size_t run(const uint32_t* cps, size_t pos, size_t end, Pred pred) {
  size_t p = pos;
  while (p < end && pred(cps[p])) ++p;
  return p - pos;
}

// \s*[\r\n]+|\s+(?!\S)|\s+  (the tail the GPT-4-style regexes share; GPT-2's lacks \s*[\r\n]+)
size_t whitespace_tail(const uint32_t* cps, size_t pos, size_t end, bool crlf_first = true) {
  size_t n = 0, after_last_crlf = 0;
  while (pos + n < end && ws(cps[pos + n])) {
    if (crlf(cps[pos + n])) after_last_crlf = n + 1;
    ++n;
  }
  if (crlf_first && after_last_crlf) return after_last_crlf;  // \s*[\r\n]+
  if (n > 1 && pos + n < end) return n - 1;  // \s+(?!\S): leave the last space to the next word
  return n;                                  // \s+
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally ASCII case-insensitive.
size_t contraction(const uint32_t* cps, size_t pos, size_t end, bool any_case) {
  if (cps[pos] != '\'' || pos + 1 >= end) return 0;
  auto low = [&](size_t k) { return any_case ? ascii_lower(cps[k]) : cps[k]; };
  const uint32_t a = low(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 < end) {
    const uint32_t b = low(pos + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const uint32_t* cps, size_t, size_t pos, size_t end) {
  if (size_t n = contraction(cps, pos, end, false)) return n;
  const size_t sp = (cps[pos] == ' ' && pos + 1 < end) ? 1 : 0;  // optional leading space
  const uint32_t c = cps[pos + sp];
  if (letter(c)) return sp + run(cps, pos + sp, end, letter);
  if (number(c)) return sp + run(cps, pos + sp, end, number);
  if (other(c)) return sp + run(cps, pos + sp, end, other);
  return whitespace_tail(cps, pos, end, false);
}

// llama3 (\p{N}{1,3}) and qwen2 (\p{N}):
// (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
template <size_t kMaxDigits>
size_t match_gpt4_style(const uint32_t* cps, size_t, size_t pos, size_t end) {
  if (size_t n = contraction(cps, pos, end, true)) return n;
  const uint32_t c = cps[pos];
  if (letter(c)) return run(cps, pos, end, letter);
  if (!crlf(c) && !number(c) && pos + 1 < end && letter(cps[pos + 1])) return 1 + run(cps, pos + 1, end, letter);
  if (number(c)) return std::min(kMaxDigits, run(cps, pos, end, number));
  const size_t sp = (c == ' ' && pos + 1 < end && other(cps[pos + 1])) ? 1 : 0;
  if (other(cps[pos + sp])) {
    size_t n = sp + run(cps, pos + sp, end, other);
    return n + run(cps, pos + n, end, crlf);
  }
  return whitespace_tail(cps, pos, end);
}

// \p{N}
size_t match_one_number(const uint32_t* cps, size_t, size_t pos, size_t) { return number(cps[pos]) ? 1 : 0; }
// \p{N}+
size_t match_numbers(const uint32_t* cps, size_t, size_t pos, size_t end) { return run(cps, pos, end, number); }
// \p{N}{1,3}
size_t match_numbers_1_3(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return std::min<size_t>(3, run(cps, pos, end, number));
}
// [\p{P}\$\+<=>\^~\|]+
size_t match_default_punct(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return run(cps, pos, end, [](uint32_t c) {
    return punct(c) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|';
  });
}
// [0-9][0-9][0-9]
size_t match_three_digits(const uint32_t* cps, size_t, size_t pos, size_t end) {
  auto d = [](uint32_t c) { return c >= '0' && c <= '9'; };
  return (pos + 2 < end && d(cps[pos]) && d(cps[pos + 1]) && d(cps[pos + 2])) ? 3 : 0;
}
// [\r\n]
size_t match_crlf(const uint32_t* cps, size_t, size_t pos, size_t) { return crlf(cps[pos]) ? 1 : 0; }
// \s+$
size_t match_trailing_space(const uint32_t* cps, size_t begin, size_t pos, size_t end) {
  // Inside a run of spaces that started earlier in the piece: that start did not match, so neither
  // does this one (checking saves quadratic time on long runs).
  if (pos > begin && ws(cps[pos - 1])) return 0;
  const size_t n = run(cps, pos, end, ws);
  return (n > 0 && pos + n == end) ? n : 0;
}
// \s?X+
template <typename Pred>
size_t space_then_run(const uint32_t* cps, size_t pos, size_t end, Pred pred) {
  if (ws(cps[pos]) && pos + 1 < end && pred(cps[pos + 1])) return 1 + run(cps, pos + 1, end, pred);
  return run(cps, pos, end, pred);
}

// deepseek-llm's letter class, transcribed range by range from the regex in llama.cpp (it lists
// the cased letters). Six of its endpoints are codepoints that NFC would replace (U+1F7D, U+1FBE,
// U+1FD3, U+1FDB, U+2126 OHM SIGN, U+212A KELVIN SIGN): the regex means those, not their NFC forms,
// as the ranges' ascending order shows.
constexpr Range kDeepseekLetters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},
    {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},
    {0x376, 0x377},     {0x37B, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},
    {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},   {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},   {0x2107, 0x2107},
    {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},
    {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},
    {0xA771, 0xA787},   {0xA78B, 0xA78E},   {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},
    {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
// [!-/:-~！-／：-～‘-‟　-。]
constexpr Range kDeepseekPunct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
};
// [一-龥ࠀ-一가-퟿]
constexpr Range kDeepseekCjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};
// [一-龥぀-ゟ゠-ヿ]
constexpr Range kDeepseek3Cjk[] = {{0x4E00, 0x9FA5}, {0x3040, 0x309F}, {0x30A0, 0x30FF}};

// \s?[<cased letters>]+
size_t match_ds_llm_letters(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return space_then_run(cps, pos, end, [](uint32_t c) { return ranged(kDeepseekLetters, c); });
}
// \s?[!-/:-~！-／：-～‘-‟　-。]+
size_t match_ds_llm_punct(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return space_then_run(cps, pos, end, [](uint32_t c) { return ranged(kDeepseekPunct, c); });
}
// [一-龥ࠀ-一가-퟿]+
size_t match_ds_cjk(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return run(cps, pos, end, [](uint32_t c) { return ranged(kDeepseekCjk, c); });
}
// \s?\p{L}+
size_t match_ds_coder_letters(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return space_then_run(cps, pos, end, letter);
}
// \s?\p{P}+
size_t match_ds_coder_punct(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return space_then_run(cps, pos, end, punct);
}
// [一-龥぀-ゟ゠-ヿ]+
size_t match_ds3_cjk(const uint32_t* cps, size_t, size_t pos, size_t end) {
  return run(cps, pos, end, [](uint32_t c) { return ranged(kDeepseek3Cjk, c); });
}
// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
//  ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_ds3_main(const uint32_t* cps, size_t, size_t pos, size_t end) {
  auto ascii_ps = [](uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  };
  auto lm = [](uint32_t c) { return letter(c) || mark(c); };
  auto ps = [](uint32_t c) { return punct(c) || symbol_collapsed(c); };
  const uint32_t c = cps[pos];
  const bool has_next = pos + 1 < end;
  if (ascii_ps(c) && has_next && ascii_alpha(cps[pos + 1])) return 1 + run(cps, pos + 1, end, ascii_alpha);
  const bool prefix = !crlf(c) && !letter(c) && !punct(c) && !symbol_collapsed(c);
  if (prefix && has_next && lm(cps[pos + 1])) return 1 + run(cps, pos + 1, end, lm);
  if (lm(c)) return run(cps, pos, end, lm);
  const size_t sp = (c == ' ' && has_next && ps(cps[pos + 1])) ? 1 : 0;
  if (ps(cps[pos + sp])) {
    size_t n = sp + run(cps, pos + sp, end, ps);
    return n + run(cps, pos + n, end, crlf);
  }
  return whitespace_tail(cps, pos, end);
}

using Span = std::pair<uint32_t, uint32_t>;

// One regex split over every piece: matches and the unmatched text between them become pieces.
void split_step(const std::vector<uint32_t>& cps, PreTokenizer::Matcher match, const std::vector<Span>& in,
                std::vector<Span>& out) {
  out.clear();
  for (const auto& [b, e] : in) {
    size_t gap = b, pos = b;
    while (pos < e) {
      const size_t n = match(cps.data(), b, pos, e);
      if (n == 0) {
        ++pos;
        continue;
      }
      if (pos > gap) out.emplace_back(uint32_t(gap), uint32_t(pos));
      out.emplace_back(uint32_t(pos), uint32_t(pos + n));
      pos += n;
      gap = pos;
    }
    if (gap < e) out.emplace_back(uint32_t(gap), e);
  }
}

struct Definition {
  std::vector<const char*> names;  // tokenizer.ggml.pre values
  std::vector<PreTokenizer::Matcher> steps;
  bool ignore_merges = false;
  bool add_bos = false;
};

// The regex lists of llama.cpp's llm_tokenizer_bpe for these pre-tokenizer types.
const std::vector<Definition>& definitions() {
  static const std::vector<Definition> defs = {
      {{"default"}, {match_default_punct, match_gpt2, match_numbers, match_three_digits}},
      {{"gpt-2", "phi-2", "mpt", "olmo", "jais"}, {match_gpt2}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {match_gpt4_style<3>}, true, true},
      {{"dbrx", "smaug-bpe"}, {match_gpt4_style<3>}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"}, {match_gpt4_style<1>}},
      {{"deepseek-llm"},
       {match_crlf, match_ds_llm_letters, match_ds_llm_punct, match_trailing_space, match_ds_cjk, match_numbers}},
      {{"deepseek-coder"}, {match_crlf, match_ds_coder_letters, match_ds_coder_punct, match_ds_cjk, match_one_number}},
      {{"deepseek-v3"}, {match_numbers_1_3, match_ds3_cjk, match_ds3_main}},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {match_one_number, match_gpt2}},
  };
  return defs;
}

}  // namespace

PreTokenizer::PreTokenizer(std::string_view name) : name_(name) {
  for (const Definition& d : definitions()) {
    for (const char* n : d.names) {
      if (name == n) {
        steps_ = d.steps;
        ignore_merges_ = d.ignore_merges;
        add_bos_ = d.add_bos;
        return;
      }
    }
  }
  fail("unknown pre-tokenizer \"{}\" (tokenizer.ggml.pre); supported: {}", name, supported_names());
}

std::string PreTokenizer::supported_names() {
  std::string s;
  for (const Definition& d : definitions())
    for (const char* n : d.names) {
      if (!s.empty()) s += ", ";
      s += n;
    }
  return s;
}

std::vector<Span> PreTokenizer::split_spans(const std::vector<uint32_t>& cps) const {
  std::vector<Span> cur, next;
  if (!cps.empty()) cur.emplace_back(0, uint32_t(cps.size()));
  for (Matcher m : steps_) {
    split_step(cps, m, cur, next);
    cur.swap(next);
  }
  return cur;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  const std::vector<uint32_t> cps = unicode::decode_utf8_lenient(text);
  std::vector<std::string> words;
  std::string utf8;
  for (const auto& [b, e] : split_spans(cps)) {
    utf8.clear();
    for (uint32_t k = b; k < e; ++k) unicode::append_utf8(utf8, cps[k]);
    words.push_back(unicode::bytes_to_symbols(utf8));
  }
  return words;
}

}  // namespace jevons
