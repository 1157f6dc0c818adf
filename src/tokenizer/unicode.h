// Unicode helpers for the tokenizers: codepoint categories (from the generated
// table in unicode_tables.cc), UTF-8 decoding/encoding, and GPT-2's byte-level
// mapping of the 256 byte values onto printable codepoints.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jevons::unicode {

// General category, reduced to its first letter (Cn is kUndefined; Cc/Cf/Cs/Co kControl).
enum Category : uint8_t {
  kUndefined = 0, kLetter = 1, kNumber = 2, kPunct = 3, kSymbol = 4, kMark = 5, kSeparator = 6, kControl = 7,
};
constexpr uint8_t kCategoryMask = 7;
constexpr uint8_t kWhitespaceBit = 8;  // Unicode White_Space property

struct CategoryRange {
  uint32_t first;
  uint8_t flags;  // Category | kWhitespaceBit
};
// Generated (tools/gen_unicode_tables.py): sorted, first entry starts at 0.
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;
extern const char* const kUnicodeVersion;

constexpr uint32_t kReplacement = 0xFFFD;
constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Category | kWhitespaceBit of a codepoint; codepoints past U+10FFFF are kUndefined.
uint8_t flags(uint32_t cp);
inline Category category(uint32_t cp) { return Category(flags(cp) & kCategoryMask); }
inline bool is_whitespace(uint32_t cp) { return (flags(cp) & kWhitespaceBit) != 0; }
inline bool is_letter(uint32_t cp) { return category(cp) == kLetter; }
inline bool is_number(uint32_t cp) { return category(cp) == kNumber; }

// Length of the UTF-8 sequence a lead byte announces, by its high nibble (1 for
// continuation bytes), as llama.cpp splits text into characters; no validation.
inline size_t utf8_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes UTF-8 leniently, as llama.cpp does before pre-tokenizing: a lead byte
// with the right number of continuation bytes is accepted (overlong forms and
// surrogates included); anything else yields U+FFFD and skips one byte.
std::vector<uint32_t> decode_utf8_lenient(std::string_view s);

void append_utf8(std::string& out, uint32_t cp);

// Strict UTF-8 (RFC 3629) scan of the sequence starting at s[i]:
//   > 0: a complete, valid sequence of that many bytes;
//   0:   a valid but incomplete prefix that runs to the end of s (more bytes may complete it);
//   < 0: invalid; -n bytes form the maximal ill-formed subpart to replace with one U+FFFD.
int utf8_scan(std::string_view s, size_t i);

// Replaces every ill-formed subpart of s with U+FFFD (an incomplete tail included).
std::string sanitize_utf8(std::string_view s);

// GPT-2 byte-level encoding: byte b <-> a printable codepoint.
uint32_t byte_to_codepoint(uint8_t b);
// The UTF-8 text of byte_to_codepoint(b).
const std::string& byte_to_symbol(uint8_t b);
// The byte a codepoint stands for, or -1 if it is not one of the 256 symbols.
int codepoint_to_byte(uint32_t cp);
// Byte-level encoding of a byte string (each byte becomes its symbol).
std::string bytes_to_symbols(std::string_view bytes);

}  // namespace jevons::unicode
