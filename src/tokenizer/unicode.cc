#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace jevons::unicode {

namespace {

uint8_t lookup_ranges(uint32_t cp) {
  // The last range whose first codepoint is <= cp.
  const CategoryRange* end = kCategoryRanges + kCategoryRangeCount;
  const CategoryRange* it =
      std::upper_bound(kCategoryRanges, end, cp, [](uint32_t v, const CategoryRange& r) { return v < r.first; });
  return (it - 1)->flags;
}

// The Basic Multilingual Plane as a flat table (64 KiB), built once; the rest by binary search.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const std::array<uint8_t, 0x10000> table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (size_t k = 0; k < kCategoryRangeCount; ++k) {
      const uint32_t first = kCategoryRanges[k].first;
      if (first >= 0x10000) break;
      const uint32_t last = k + 1 < kCategoryRangeCount ? std::min<uint32_t>(kCategoryRanges[k + 1].first, 0x10000) : 0x10000;
      std::fill(t.begin() + first, t.begin() + last, kCategoryRanges[k].flags);
    }
    return t;
  }();
  return table;
}

struct ByteTables {
  std::array<uint32_t, 256> to_cp{};
  std::array<std::string, 256> to_symbol;
  std::array<int16_t, 324> from_cp{};  // every symbol codepoint is < 256 + 68
};

const ByteTables& byte_tables() {
  static const ByteTables t = [] {
    ByteTables b;
    b.from_cp.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the other 68 bytes take
    // codepoints 256, 257, ... in byte order (GPT-2's bytes_to_unicode).
    auto printable = [](int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
    uint32_t next = 256;
    for (int c = 0; c < 256; ++c) {
      const uint32_t cp = printable(c) ? uint32_t(c) : next++;
      b.to_cp[size_t(c)] = cp;
      append_utf8(b.to_symbol[size_t(c)], cp);
      b.from_cp[cp] = int16_t(c);
    }
    return b;
  }();
  return t;
}

}  // namespace

uint8_t flags(uint32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  if (cp > kMaxCodepoint) return kUndefined;
  return lookup_ranges(cp);
}

std::vector<uint32_t> decode_utf8_lenient(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  auto cont = [&](size_t k) { return k < s.size() && (uint8_t(s[k]) & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b0 = uint8_t(s[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && cont(i + 1)) {
      out.push_back((uint32_t(b0 & 0x1F) << 6) | (uint8_t(s[i + 1]) & 0x3F));
      i += 2;
    } else if ((b0 & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
      out.push_back((uint32_t(b0 & 0x0F) << 12) | (uint32_t(uint8_t(s[i + 1]) & 0x3F) << 6) | (uint8_t(s[i + 2]) & 0x3F));
      i += 3;
    } else if ((b0 & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      out.push_back((uint32_t(b0 & 0x07) << 18) | (uint32_t(uint8_t(s[i + 1]) & 0x3F) << 12) |
                    (uint32_t(uint8_t(s[i + 2]) & 0x3F) << 6) | (uint8_t(s[i + 3]) & 0x3F));
      i += 4;
    } else {
      out.push_back(kReplacement);
      i += 1;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp <= kMaxCodepoint) {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    append_utf8(out, kReplacement);
  }
}

int utf8_scan(std::string_view s, size_t i) {
  const uint8_t b0 = uint8_t(s[i]);
  if (b0 < 0x80) return 1;
  int n = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k < n; ++k) {
    if (i + size_t(k) >= s.size()) return 0;
    const uint8_t b = uint8_t(s[i + size_t(k)]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return -k;
  }
  return n;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const int r = utf8_scan(s, i);
    if (r > 0) {
      out.append(s.substr(i, size_t(r)));
      i += size_t(r);
    } else {
      append_utf8(out, kReplacement);
      if (r == 0) break;
      i += size_t(-r);
    }
  }
  return out;
}

uint32_t byte_to_codepoint(uint8_t b) { return byte_tables().to_cp[b]; }

const std::string& byte_to_symbol(uint8_t b) { return byte_tables().to_symbol[b]; }

int codepoint_to_byte(uint32_t cp) {
  const auto& t = byte_tables().from_cp;
  return cp < t.size() ? t[cp] : -1;
}

std::string bytes_to_symbols(std::string_view bytes) {
  const auto& t = byte_tables().to_symbol;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t[uint8_t(c)];
  return out;
}

}  // namespace jevons::unicode
