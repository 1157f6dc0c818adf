// A Jinja subset interpreter for chat templates, matching jinja2 as Hugging Face
// transformers configures it (ImmutableSandboxedEnvironment, trim_blocks=True,
// lstrip_blocks=True, loopcontrols, its own tojson and raise_exception/strftime_now).
#include "tokenizer/jinja_template.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <set>

#include <fmt/format.h>

#include "core/error.h"

namespace jevons::jinja {
namespace {

constexpr int kMaxDepth = 128;                  // expression and block nesting
constexpr int kMaxNodes = 1000;                 // parts of one tag's expression (bounds evaluation depth)
constexpr size_t kMaxOutput = size_t(1) << 28;  // 256 MiB of rendered text
constexpr int64_t kMaxRange = 10'000'000;

// An error at a source offset; parse()/render() turn it into Error with line:column.
struct Fail {
  size_t off;
  std::string msg;
};
[[noreturn]] void failat(size_t off, std::string msg) { throw Fail{off, std::move(msg)}; }

// ---------------------------------------------------------------- values

const char* kind_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Namespace: return "Namespace";
    case Value::Kind::Function: return "function";
  }
  return "?";
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string py_repr_string(const std::string& s) {
  const char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + q;
}

std::string to_str(const Value& v, bool repr = false);

std::string to_str(const Value& v, bool repr) {
  switch (v.kind) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.b ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.i);
    case Value::Kind::Float: return float_repr(v.f);
    case Value::Kind::String: return repr ? py_repr_string(v.s) : v.s;
    case Value::Kind::List: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + to_str((*v.list)[k], true);
      return out + "]";
    }
    case Value::Kind::Dict: {
      std::string out = "{";
      for (size_t k = 0; k < v.dict->size(); ++k)
        out += (k ? ", " : "") + py_repr_string((*v.dict)[k].first) + ": " + to_str((*v.dict)[k].second, true);
      return out + "}";
    }
    case Value::Kind::Namespace: return "<Namespace>";
    case Value::Kind::Function: return "<function>";
  }
  return "";
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  out += '"';
}

// Python json.dumps(v, ensure_ascii=False, indent=indent), as HF's tojson does it.
void to_json(const Value& v, int indent, int level, std::string& out, int depth = 0) {
  if (depth > kMaxDepth) failat(0, "tojson: value nested too deeply");
  auto newline = [&](int lv) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent) * size_t(lv), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.b ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.i); return;
    case Value::Kind::Float:
      out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : float_repr(v.f);
      return;
    case Value::Kind::String: json_string(v.s, out); return;
    case Value::Kind::List:
      if (v.list->empty()) { out += "[]"; return; }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += item_sep;
        newline(level + 1);
        to_json((*v.list)[k], indent, level + 1, out, depth + 1);
      }
      newline(level);
      out += ']';
      return;
    case Value::Kind::Dict:
    case Value::Kind::Namespace:
      if (v.dict->empty()) { out += "{}"; return; }
      out += '{';
      for (size_t k = 0; k < v.dict->size(); ++k) {
        if (k) out += item_sep;
        newline(level + 1);
        json_string((*v.dict)[k].first, out);
        out += ": ";
        to_json((*v.dict)[k].second, indent, level + 1, out, depth + 1);
      }
      newline(level);
      out += '}';
      return;
    case Value::Kind::Function: failat(0, "tojson: a function is not JSON serializable");
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) {
      auto d = [](const Value& x) { return x.kind == Value::Kind::Float ? x.f : x.kind == Value::Kind::Bool ? double(x.b) : double(x.i); };
      return d(a) == d(b);
    }
    auto n = [](const Value& x) { return x.kind == Value::Kind::Bool ? int64_t(x.b) : x.i; };
    return n(a) == n(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.s == b.s;
    case Value::Kind::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Kind::Dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [key, val] : *a.dict) {
        const Value* o = b.find(key);
        if (!o || !equal(val, *o)) return false;
      }
      return true;
    default: return a.dict == b.dict && a.fn == b.fn;
  }
}

double as_double(const Value& v) {
  return v.kind == Value::Kind::Float ? v.f : v.kind == Value::Kind::Bool ? double(v.b) : double(v.i);
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t k = 0; k < s.size();) {
    size_t len = 1;
    while (k + len < s.size() && (static_cast<unsigned char>(s[k + len]) & 0xC0) == 0x80) ++len;
    out.push_back(s.substr(k, len));
    k += len;
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string strip(const std::string& s, bool left, bool right, const Value* chars = nullptr) {
  auto in_set = [&](char c) {
    if (chars && chars->kind == Value::Kind::String) return chars->s.find(c) != std::string::npos;
    return is_space(c);
  };
  size_t b = 0, e = s.size();
  if (left) while (b < e && in_set(s[b])) ++b;
  if (right) while (e > b && in_set(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->kind == Value::Kind::None || sep->is_undefined()) {
    size_t k = 0;
    while (true) {
      while (k < s.size() && is_space(s[k])) ++k;
      if (k >= s.size()) break;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        out.push_back(strip(s.substr(k), false, true));
        break;
      }
      size_t e = k;
      while (e < s.size() && !is_space(s[e])) ++e;
      out.push_back(s.substr(k, e - k));
      k = e;
    }
    return out;
  }
  if (sep->kind != Value::Kind::String) failat(0, "split(): separator must be a string");
  if (sep->s.empty()) failat(0, "split(): empty separator");
  size_t k = 0;
  while (true) {
    const size_t e = s.find(sep->s, k);
    if (e == std::string::npos || (maxsplit >= 0 && int64_t(out.size()) == maxsplit)) {
      out.push_back(s.substr(k));
      break;
    }
    out.push_back(s.substr(k, e - k));
    k = e + sep->s.size();
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count = -1) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` between characters
    int64_t n = 0;
    for (const std::string& ch : utf8_chars(s)) {
      if (count < 0 || n < count) out += to, ++n;
      out += ch;
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  size_t k = 0;
  int64_t n = 0;
  while (true) {
    const size_t e = s.find(from, k);
    if (e == std::string::npos || (count >= 0 && n >= count)) break;
    out.append(s, k, e - k);
    out += to;
    k = e + from.size();
    ++n;
  }
  out.append(s, k, std::string::npos);
  return out;
}

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string capitalize(const std::string& s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = char(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = char(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    start = !alpha;
  }
  return out;
}

// Items a for loop or filter walks: list elements, dict keys, string characters.
List iterate(const Value& v, size_t off) {
  switch (v.kind) {
    case Value::Kind::List: return *v.list;
    case Value::Kind::Dict: {
      List out;
      for (const auto& kv : *v.dict) out.push_back(Value::string(kv.first));
      return out;
    }
    case Value::Kind::String: {
      List out;
      for (std::string& c : utf8_chars(v.s)) out.push_back(Value::string(std::move(c)));
      return out;
    }
    case Value::Kind::Undefined: return {};  // jinja2's Undefined iterates as empty
    default: failat(off, fmt::format("'{}' object is not iterable", kind_name(v)));
  }
}

// ---------------------------------------------------------------- lexing

struct Token {
  enum Type { Name, String, Int, Float, Op, End } type = End;
  std::string text;
  size_t off = 0;
};

struct Segment {
  enum Type { Text, Expr, Stmt } type;
  std::string text;     // Text: the text; Expr/Stmt: the tag content
  size_t off;           // where the content starts in the source
  size_t tag_off;       // where the tag starts
};

size_t find_tag_end(const std::string& src, size_t from, char kind, size_t tag_off) {
  const std::string end = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
  if (kind == '#') {
    const size_t e = src.find(end, from);
    if (e == std::string::npos) failat(tag_off, "unterminated comment: missing '#}'");
    return e;
  }
  char quote = 0;
  for (size_t k = from; k < src.size(); ++k) {
    const char c = src[k];
    if (quote) {
      if (c == '\\') ++k;
      else if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (src.compare(k, 2, end) == 0) {
      return k;
    }
  }
  failat(tag_off, fmt::format("unterminated tag: missing '{}'", end));
}

std::vector<Segment> split_segments(const std::string& src) {
  std::vector<Segment> out;
  size_t pos = 0;
  bool strip_all = false, trim_nl = false;
  while (pos <= src.size()) {
    size_t start = pos;
    while (true) {
      start = src.find('{', start);
      if (start == std::string::npos || start + 1 >= src.size()) { start = std::string::npos; break; }
      const char c = src[start + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++start;
    }
    size_t text_begin = pos;
    const size_t text_end = start == std::string::npos ? src.size() : start;
    if (strip_all) {
      while (text_begin < text_end && is_space(src[text_begin])) ++text_begin;
    } else if (trim_nl && text_begin < text_end && src[text_begin] == '\n') {
      ++text_begin;
    } else if (trim_nl && text_begin + 1 < text_end && src[text_begin] == '\r' && src[text_begin + 1] == '\n') {
      text_begin += 2;
    }
    std::string text = src.substr(text_begin, text_end - text_begin);
    if (start == std::string::npos) {
      if (!text.empty()) out.push_back({Segment::Text, text, text_begin, text_begin});
      break;
    }
    const char kind = src[start + 1];
    const char lctl = start + 2 < src.size() ? src[start + 2] : 0;
    const bool block_like = kind == '%' || kind == '#';
    if (lctl == '-') {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (block_like && lctl != '+') {  // lstrip_blocks
      const size_t nl = text.rfind('\n');
      const size_t line_begin = nl == std::string::npos ? 0 : nl + 1;
      const bool line_start = nl != std::string::npos || text_begin == 0 || src[text_begin - 1] == '\n';
      if (line_start && text.find_first_not_of(" \t", line_begin) == std::string::npos) text.resize(line_begin);
    }
    if (!text.empty()) out.push_back({Segment::Text, text, text_begin, text_begin});

    const size_t content_begin = start + 2 + ((lctl == '-' || lctl == '+') ? 1 : 0);
    const size_t end = find_tag_end(src, content_begin, kind, start);
    size_t content_end = end;
    char rctl = 0;
    if (end > content_begin && (src[end - 1] == '-' || src[end - 1] == '+')) {
      rctl = src[end - 1];
      content_end = end - 1;
    }
    strip_all = rctl == '-';
    trim_nl = block_like && rctl == 0;
    pos = end + 2;
    const std::string content = src.substr(content_begin, content_end - content_begin);
    if (kind == '#') continue;
    if (kind == '{') {
      out.push_back({Segment::Expr, content, content_begin, start});
      continue;
    }
    if (strip(content, true, true) == "raw") {
      // Everything up to {% endraw %} is text.
      size_t k = pos;
      while (true) {
        const size_t t = src.find("{%", k);
        if (t == std::string::npos) failat(start, "unterminated {% raw %}: missing {% endraw %}");
        size_t c = t + 2;
        const bool lminus = c < src.size() && src[c] == '-';
        if (c < src.size() && (src[c] == '-' || src[c] == '+')) ++c;
        while (c < src.size() && is_space(src[c])) ++c;
        if (src.compare(c, 6, "endraw") != 0) { k = t + 2; continue; }
        c += 6;
        while (c < src.size() && is_space(src[c])) ++c;
        char r = 0;
        if (c < src.size() && (src[c] == '-' || src[c] == '+')) r = src[c++];
        if (src.compare(c, 2, "%}") != 0) { k = t + 2; continue; }
        size_t rb = pos;
        if (strip_all) while (rb < t && is_space(src[rb])) ++rb;
        else if (trim_nl && rb < t && src[rb] == '\n') ++rb;
        std::string raw = src.substr(rb, t - rb);
        if (lminus) while (!raw.empty() && is_space(raw.back())) raw.pop_back();
        if (!raw.empty()) out.push_back({Segment::Text, raw, rb, rb});
        strip_all = r == '-';
        trim_nl = r == 0;
        pos = c + 2;
        break;
      }
      continue;
    }
    out.push_back({Segment::Stmt, content, content_begin, start});
  }
  return out;
}

std::vector<Token> tokenize(const std::string& s, size_t base) {
  std::vector<Token> out;
  size_t k = 0;
  while (k < s.size()) {
    const char c = s[k];
    if (is_space(c)) { ++k; continue; }
    const size_t off = base + k;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = k;
      while (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || s[e] == '_')) ++e;
      out.push_back({Token::Name, s.substr(k, e - k), off});
      k = e;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t e = k;
      bool is_float = false;
      while (e < s.size() && (std::isdigit(static_cast<unsigned char>(s[e])) || s[e] == '_')) ++e;
      if (e + 1 < s.size() && s[e] == '.' && std::isdigit(static_cast<unsigned char>(s[e + 1]))) {
        is_float = true;
        ++e;
        while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      }
      if (e < s.size() && (s[e] == 'e' || s[e] == 'E')) {
        size_t x = e + 1;
        if (x < s.size() && (s[x] == '+' || s[x] == '-')) ++x;
        if (x < s.size() && std::isdigit(static_cast<unsigned char>(s[x]))) {
          is_float = true;
          e = x;
          while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
        }
      }
      std::string num = s.substr(k, e - k);
      num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
      out.push_back({is_float ? Token::Float : Token::Int, num, off});
      k = e;
    } else if (c == '\'' || c == '"') {
      std::string val;
      size_t e = k + 1;
      while (true) {
        if (e >= s.size()) failat(off, "unterminated string literal");
        const char d = s[e];
        if (d == c) break;
        if (d == '\\' && e + 1 < s.size()) {
          const char x = s[++e];
          switch (x) {
            case 'n': val += '\n'; break;
            case 't': val += '\t'; break;
            case 'r': val += '\r'; break;
            case 'b': val += '\b'; break;
            case 'f': val += '\f'; break;
            case '0': val += '\0'; break;
            case '\\': val += '\\'; break;
            case '\'': val += '\''; break;
            case '"': val += '"'; break;
            case '\n': break;
            case 'u':
            case 'x': {
              const size_t len = x == 'u' ? 4 : 2;
              uint32_t cp = 0;
              for (size_t h = 1; h <= len; ++h) {
                const char hc = e + h < s.size() ? s[e + h] : 'g';
                if (!std::isxdigit(static_cast<unsigned char>(hc))) failat(base + e, "bad escape in string literal");
                cp = cp * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(hc)) ? hc - '0' : (std::tolower(hc) - 'a' + 10));
              }
              e += len;
              if (cp < 0x80) val += char(cp);
              else if (cp < 0x800) val += char(0xC0 | (cp >> 6)), val += char(0x80 | (cp & 0x3F));
              else val += char(0xE0 | (cp >> 12)), val += char(0x80 | ((cp >> 6) & 0x3F)), val += char(0x80 | (cp & 0x3F));
              break;
            }
            default: val += '\\', val += x;  // Python keeps unknown escapes
          }
          ++e;
          continue;
        }
        val += d;
        ++e;
      }
      out.push_back({Token::String, val, off});
      k = e + 1;
    } else {
      static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                  "(", ")", "[", "]", "{", "}", ".", ",", ":", "|"};
      bool found = false;
      for (const char* op : ops) {
        const size_t len = std::char_traits<char>::length(op);
        if (s.compare(k, len, op) == 0) {
          out.push_back({Token::Op, op, off});
          k += len;
          found = true;
          break;
        }
      }
      if (!found) failat(off, fmt::format("unexpected character '{}'", c));
    }
  }
  out.push_back({Token::End, "", base + s.size()});
  return out;
}

// ---------------------------------------------------------------- AST

struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum Kind { Literal, Name, Attr, Item, Slice, Call, Filter, Test, Unary, Binary, Cond, ListLit, DictLit } kind;
  size_t off = 0;
  Value value;                    // Literal
  std::string name;               // Name, Attr, Filter, Test, Unary/Binary operator
  std::vector<ExprP> args;        // operands / call args (positional first)
  std::vector<std::string> kw;    // Call/Filter/Test: keyword names of the trailing args
  bool negate = false;            // Test: "is not"
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;
struct Node {
  enum Kind { Text, Output, If, For, Set, SetBlock, Break, Continue } kind;
  size_t off = 0;
  std::string text;                                 // Text
  ExprP expr;                                       // Output, Set value, For iterable
  std::vector<std::pair<ExprP, Body>> branches;     // If (cond, body)
  Body body, else_body;                             // For, If (else), SetBlock
  std::vector<std::string> targets;                 // For loop variables, Set name(s)
  std::string attr;                                 // Set ns.attr
  ExprP cond;                                       // For ... if cond
};

const std::set<std::string>& known_filters() {
  static const std::set<std::string> s = {
      "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat",
      "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join", "last", "length", "list",
      "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr", "replace", "reverse", "round", "safe",
      "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim", "truncate",
      "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"};
  return s;
}
const std::set<std::string>& known_tests() {
  static const std::set<std::string> s = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter", "float",
      "ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none",
      "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", "=="};
  return s;
}

class Parser {
 public:
  Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  const Token& peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  bool at_op(const char* op) const { return peek().type == Token::Op && peek().text == op; }
  bool at_name(const char* n) const { return peek().type == Token::Name && peek().text == n; }
  bool at_end() const { return peek().type == Token::End; }
  Token next() { return t_[std::min(p_++, t_.size() - 1)]; }
  void expect_op(const char* op) {
    if (!at_op(op)) failat(peek().off, fmt::format("expected '{}' but found {}", op, describe(peek())));
    ++p_;
  }
  std::string expect_name() {
    if (peek().type != Token::Name) failat(peek().off, fmt::format("expected a name but found {}", describe(peek())));
    return next().text;
  }
  void expect_end() {
    if (!at_end()) failat(peek().off, fmt::format("unexpected {}", describe(peek())));
  }
  static std::string describe(const Token& t) {
    if (t.type == Token::End) return "end of tag";
    if (t.type == Token::String) return "string literal";
    return "'" + t.text + "'";
  }

  ExprP expression() {
    Depth d(this);
    ExprP e = or_expr();
    if (at_name("if")) {
      auto c = make(Expr::Cond, peek().off);
      next();
      c->args.push_back(or_expr());  // condition
      c->args.push_back(std::move(e));
      if (at_name("else")) {
        next();
        c->args.push_back(expression());
      }
      return c;
    }
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (at_name("or")) e = binary("or", std::move(e), [&] { return and_expr(); });
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (at_name("and")) e = binary("and", std::move(e), [&] { return not_expr(); });
    return e;
  }
  ExprP not_expr() {
    if (at_name("not")) {
      Depth d(this);
      auto u = make(Expr::Unary, next().off);
      u->name = "not";
      u->args.push_back(not_expr());
      return u;
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = math1();
    while (true) {
      static const char* cmp[] = {"==", "!=", "<", ">", "<=", ">="};
      std::string op;
      if (peek().type == Token::Op)
        for (const char* c : cmp)
          if (peek().text == c) op = c;
      if (op.empty() && at_name("in")) op = "in";
      if (op.empty() && at_name("not") && peek(1).type == Token::Name && peek(1).text == "in") {
        next();
        op = "not in";
      }
      if (op.empty()) return e;
      e = binary(op, std::move(e), [&] { return math1(); });
    }
  }
  ExprP math1() {
    ExprP e = concat();
    while (at_op("+") || at_op("-")) e = binary(peek().text, std::move(e), [&] { return concat(); });
    return e;
  }
  ExprP concat() {
    ExprP e = math2();
    while (at_op("~")) e = binary("~", std::move(e), [&] { return math2(); });
    return e;
  }
  ExprP math2() {
    ExprP e = pow_expr();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) e = binary(peek().text, std::move(e), [&] { return pow_expr(); });
    return e;
  }
  ExprP pow_expr() {
    ExprP e = unary();
    while (at_op("**")) e = binary("**", std::move(e), [&] { return unary(); });
    return e;
  }
  ExprP unary() {
    Depth d(this);
    if (at_op("-") || at_op("+")) {
      auto u = make(Expr::Unary, peek().off);
      u->name = next().text;
      u->args.push_back(unary());
      return u;
    }
    ExprP e = postfix(primary());
    return filters(std::move(e));
  }
  ExprP filters(ExprP e) {
    while (true) {
      if (at_op("|")) {
        next();
        auto f = make(Expr::Filter, peek().off);
        f->name = expect_name();
        if (!known_filters().count(f->name) && f->name != "split")
          failat(f->off, fmt::format("unknown filter '{}'", f->name));
        f->args.push_back(std::move(e));
        if (at_op("(")) call_args(*f);
        e = std::move(f);
      } else if (at_name("is")) {
        next();
        auto t = make(Expr::Test, peek().off);
        if (at_name("not")) {
          next();
          t->negate = true;
        }
        if (at_name("none") || at_name("true") || at_name("false")) t->name = next().text;
        else if (at_op("==")) t->name = next().text;
        else t->name = expect_name();
        if (!known_tests().count(t->name)) failat(t->off, fmt::format("unknown test '{}'", t->name));
        t->args.push_back(std::move(e));
        if (at_op("(")) {
          call_args(*t);
        } else if (peek().type == Token::String || peek().type == Token::Int || peek().type == Token::Float ||
                   (peek().type == Token::Name && !is_keyword(peek().text))) {
          t->args.push_back(postfix(primary()));
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  static bool is_keyword(const std::string& s) {
    return s == "and" || s == "or" || s == "not" || s == "in" || s == "is" || s == "if" || s == "else";
  }
  void call_args(Expr& call) {
    expect_op("(");
    while (!at_op(")")) {
      if (peek().type == Token::Name && peek(1).type == Token::Op && peek(1).text == "=") {
        call.kw.push_back(next().text);
        next();
        call.args.push_back(expression());
      } else {
        if (!call.kw.empty()) failat(peek().off, "positional argument after keyword argument");
        call.args.push_back(expression());
      }
      if (!at_op(",")) break;
      next();
    }
    expect_op(")");
  }
  ExprP postfix(ExprP e) {
    while (true) {
      if (at_op(".")) {
        next();
        auto a = make(Expr::Attr, peek().off);
        if (peek().type == Token::Int) a->name = next().text;
        else a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (at_op("[")) {
        const size_t off = next().off;
        ExprP lo, hi, step;
        bool slice = false;
        if (!at_op(":")) lo = expression();
        if (at_op(":")) {
          slice = true;
          next();
          if (!at_op("]") && !at_op(":")) hi = expression();
          if (at_op(":")) {
            next();
            if (!at_op("]")) step = expression();
          }
        }
        expect_op("]");
        auto s = make(slice ? Expr::Slice : Expr::Item, off);
        s->args.push_back(std::move(e));
        if (slice) {
          s->args.push_back(std::move(lo));
          s->args.push_back(std::move(hi));
          s->args.push_back(std::move(step));
        } else {
          if (!lo) failat(off, "empty subscript");
          s->args.push_back(std::move(lo));
        }
        e = std::move(s);
      } else if (at_op("(")) {
        auto c = make(Expr::Call, peek().off);
        c->args.push_back(std::move(e));
        call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprP primary() {
    Depth d(this);
    const Token t = next();
    switch (t.type) {
      case Token::String: {
        std::string s = t.text;
        while (peek().type == Token::String) s += next().text;  // adjacent literals concatenate
        return literal(Value::string(std::move(s)), t.off);
      }
      case Token::Int: return literal(Value::integer(std::stoll(t.text)), t.off);
      case Token::Float: return literal(Value::real(std::stod(t.text)), t.off);
      case Token::Name:
        if (t.text == "true" || t.text == "True") return literal(Value::boolean(true), t.off);
        if (t.text == "false" || t.text == "False") return literal(Value::boolean(false), t.off);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), t.off);
        if (is_keyword(t.text)) failat(t.off, fmt::format("unexpected '{}'", t.text));
        {
          auto n = make(Expr::Name, t.off);
          n->name = t.text;
          return n;
        }
      case Token::Op:
        if (t.text == "(") {
          if (at_op(")")) {
            next();
            return make(Expr::ListLit, t.off);  // empty tuple
          }
          ExprP e = expression();
          if (at_op(",")) {  // tuple: treated as a list
            auto l = make(Expr::ListLit, t.off);
            l->args.push_back(std::move(e));
            while (at_op(",")) {
              next();
              if (at_op(")")) break;
              l->args.push_back(expression());
            }
            e = std::move(l);
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto l = make(Expr::ListLit, t.off);
          while (!at_op("]")) {
            l->args.push_back(expression());
            if (!at_op(",")) break;
            next();
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") {
          auto l = make(Expr::DictLit, t.off);
          while (!at_op("}")) {
            l->args.push_back(expression());
            expect_op(":");
            l->args.push_back(expression());
            if (!at_op(",")) break;
            next();
          }
          expect_op("}");
          return l;
        }
        failat(t.off, fmt::format("unexpected '{}'", t.text));
      case Token::End: failat(t.off, "expected an expression");
    }
    failat(t.off, "expected an expression");
  }

  size_t pos() const { return p_; }

 private:
  struct Depth {
    Parser* p;
    explicit Depth(Parser* p_) : p(p_) {
      if (++p->depth_ > kMaxDepth) failat(p->peek().off, "expression nested too deeply");
    }
    ~Depth() { --p->depth_; }
  };
  ExprP make(Expr::Kind k, size_t off) {
    if (++nodes_ > kMaxNodes) failat(off, "expression nested too deeply (too many parts in one tag)");
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->off = off;
    return e;
  }
  ExprP literal(Value v, size_t off) {
    auto e = make(Expr::Literal, off);
    e->value = std::move(v);
    return e;
  }
  template <typename F>
  ExprP binary(const std::string& op, ExprP lhs, F rhs) {
    Depth d(this);
    auto b = make(Expr::Binary, peek().off);
    next();
    b->name = op;
    b->args.push_back(std::move(lhs));
    b->args.push_back(rhs());
    return b;
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int nodes_ = 0;
};

}  // namespace

class Program {
 public:
  Body body;
  std::string source;
};

namespace {

// Builds the statement tree from the segments.
class BlockParser {
 public:
  BlockParser(const std::vector<Segment>& segs) : segs_(segs) {}

  // Parses until one of `ends` (a stmt whose first word is in ends); returns that word.
  std::string block(Body& out, const std::set<std::string>& ends, size_t open_off, int depth) {
    if (depth > kMaxDepth) failat(open_off, "blocks nested too deeply");
    while (i_ < segs_.size()) {
      const Segment& s = segs_[i_++];
      if (s.type == Segment::Text) {
        auto n = node(Node::Text, s.off);
        n->text = s.text;
        out.push_back(std::move(n));
        continue;
      }
      Parser p(tokenize(s.text, s.off));
      if (s.type == Segment::Expr) {
        auto n = node(Node::Output, s.off);
        n->expr = p.expression();
        p.expect_end();
        out.push_back(std::move(n));
        continue;
      }
      if (p.at_end()) failat(s.off, "empty statement tag");
      const Token kw = p.next();
      if (kw.type != Token::Name) failat(kw.off, "expected a statement name");
      last_kw_ = std::make_unique<Parser>(std::move(p));
      if (ends.count(kw.text)) return kw.text;
      statement(kw, *last_kw_, out, depth);
    }
    if (!ends.empty()) {
      std::string names;
      for (const auto& e : ends) names += (names.empty() ? "" : " or ") + ("{% " + e + " %}");
      failat(open_off, fmt::format("unclosed block: expected {}", names));
    }
    return "";
  }

  std::unique_ptr<Parser> last_kw_;  // the parser positioned after the keyword of the tag that ended a block

 private:
  static std::unique_ptr<Node> node(Node::Kind k, size_t off) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->off = off;
    return n;
  }

  void statement(const Token& kw, Parser& p, Body& out, int depth) {
    const std::string& w = kw.text;
    if (w == "if") {
      auto n = node(Node::If, kw.off);
      ExprP cond = p.expression();
      p.expect_end();
      while (true) {
        Body body;
        const std::string end = block(body, {"elif", "else", "endif"}, kw.off, depth + 1);
        n->branches.emplace_back(std::move(cond), std::move(body));
        Parser& q = *last_kw_;
        if (end == "elif") {
          cond = q.expression();
          q.expect_end();
          continue;
        }
        q.expect_end();
        if (end == "else") {
          block(n->else_body, {"endif"}, kw.off, depth + 1);
          last_kw_->expect_end();
        }
        break;
      }
      out.push_back(std::move(n));
    } else if (w == "for") {
      auto n = node(Node::For, kw.off);
      n->targets.push_back(p.expect_name());
      while (p.at_op(",")) {
        p.next();
        n->targets.push_back(p.expect_name());
      }
      if (!p.at_name("in")) failat(p.peek().off, "expected 'in' in for loop");
      p.next();
      n->expr = p.or_expr();
      // A filter or ternary is part of the iterable in jinja2 only without 'if'.
      if (p.at_name("if")) {
        p.next();
        n->cond = p.expression();
      }
      if (p.at_name("recursive")) failat(p.peek().off, "recursive for loops are not supported");
      p.expect_end();
      const std::string end = block(n->body, {"else", "endfor"}, kw.off, depth + 1);
      last_kw_->expect_end();
      if (end == "else") {
        block(n->else_body, {"endfor"}, kw.off, depth + 1);
        last_kw_->expect_end();
      }
      out.push_back(std::move(n));
    } else if (w == "set") {
      const std::string name = p.expect_name();
      if (p.at_op(".")) {
        p.next();
        auto n = node(Node::Set, kw.off);
        n->targets.push_back(name);
        n->attr = p.expect_name();
        p.expect_op("=");
        n->expr = p.expression();
        p.expect_end();
        out.push_back(std::move(n));
      } else if (p.at_end()) {
        auto n = node(Node::SetBlock, kw.off);
        n->targets.push_back(name);
        block(n->body, {"endset"}, kw.off, depth + 1);
        last_kw_->expect_end();
        out.push_back(std::move(n));
      } else {
        auto n = node(Node::Set, kw.off);
        n->targets.push_back(name);
        while (p.at_op(",")) {
          p.next();
          n->targets.push_back(p.expect_name());
        }
        p.expect_op("=");
        n->expr = p.expression();
        if (p.at_op(",")) {  // a, b = x, y
          auto l = std::make_unique<Expr>();
          l->kind = Expr::ListLit;
          l->off = n->expr->off;
          l->args.push_back(std::move(n->expr));
          while (p.at_op(",")) {
            p.next();
            l->args.push_back(p.expression());
          }
          n->expr = std::move(l);
        }
        p.expect_end();
        out.push_back(std::move(n));
      }
    } else if (w == "break" || w == "continue") {
      p.expect_end();
      out.push_back(node(w == "break" ? Node::Break : Node::Continue, kw.off));
    } else {
      failat(kw.off, fmt::format("unsupported or unexpected statement '{}'", w));
    }
  }

  const std::vector<Segment>& segs_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------- evaluation

struct LoopSignal {
  bool is_break;
};

class Renderer {
 public:
  explicit Renderer(const std::map<std::string, Value>& globals) {
    scopes_.emplace_back(globals.begin(), globals.end());
    scopes_.emplace_back();
  }

  void run(const Body& body, std::string& out) {
    for (const auto& n : body) exec(*n, out);
  }

 private:
  using Scope = std::map<std::string, Value>;

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    if (name == "namespace" || name == "raise_exception" || name == "range" || name == "strftime_now" || name == "dict")
      return builtin_function(name);
    return Value::undefined(name);
  }

  void exec(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::Text: append(out, n.text, n.off); return;
      case Node::Output: {
        const Value v = eval(*n.expr);
        if (v.kind == Value::Kind::Function) failat(n.off, "cannot print a function (missing parentheses?)");
        append(out, to_str(v), n.off);
        return;
      }
      case Node::If:
        for (const auto& [cond, body] : n.branches)
          if (eval(*cond).truthy()) {
            run(body, out);
            return;
          }
        run(n.else_body, out);
        return;
      case Node::For: exec_for(n, out); return;
      case Node::Set: {
        Value v = eval(*n.expr);
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (ns.kind != Value::Kind::Namespace)
            failat(n.off, fmt::format("can only set attributes on a namespace, '{}' is {}", n.targets[0], kind_name(ns)));
          if (v.nest + 1 > kMaxDepth) failat(n.off, "value nested too deeply");
          for (auto& kv : *ns.dict)
            if (kv.first == n.attr) {
              kv.second = std::move(v);
              return;
            }
          ns.dict->emplace_back(n.attr, std::move(v));
          return;
        }
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = std::move(v);
          return;
        }
        const List items = iterate(v, n.off);
        if (items.size() != n.targets.size())
          failat(n.off, fmt::format("cannot unpack {} values into {} names", items.size(), n.targets.size()));
        for (size_t k = 0; k < items.size(); ++k) scopes_.back()[n.targets[k]] = items[k];
        return;
      }
      case Node::SetBlock: {
        std::string captured;
        run(n.body, captured);
        scopes_.back()[n.targets[0]] = Value::string(std::move(captured));
        return;
      }
      case Node::Break:
      case Node::Continue:
        if (loop_depth_ == 0) failat(n.off, "'break' or 'continue' outside a loop");
        throw LoopSignal{n.kind == Node::Break};
    }
  }

  void append(std::string& out, const std::string& s, size_t off) {
    if (out.size() + s.size() > kMaxOutput) failat(off, "rendered text too large");
    out += s;
  }

  void exec_for(const Node& n, std::string& out) {
    const Value seq = eval(*n.expr);
    List items = iterate(seq, n.expr->off);
    if (n.cond) {
      List kept;
      scopes_.emplace_back();
      for (Value& it : items) {
        bind_targets(n, it);
        if (eval(*n.cond).truthy()) kept.push_back(std::move(it));
      }
      scopes_.pop_back();
      items = std::move(kept);
    }
    if (items.empty()) {
      run(n.else_body, out);
      return;
    }
    const int64_t len = int64_t(items.size());
    ++loop_depth_;
    for (int64_t k = 0; k < len; ++k) {
      scopes_.emplace_back();
      bind_targets(n, items[size_t(k)]);
      Dict loop;
      loop.emplace_back("index0", Value::integer(k));
      loop.emplace_back("index", Value::integer(k + 1));
      loop.emplace_back("revindex0", Value::integer(len - k - 1));
      loop.emplace_back("revindex", Value::integer(len - k));
      loop.emplace_back("first", Value::boolean(k == 0));
      loop.emplace_back("last", Value::boolean(k == len - 1));
      loop.emplace_back("length", Value::integer(len));
      loop.emplace_back("previtem", k > 0 ? items[size_t(k - 1)] : Value::undefined("previtem"));
      loop.emplace_back("nextitem", k + 1 < len ? items[size_t(k + 1)] : Value::undefined("nextitem"));
      loop.emplace_back("depth", Value::integer(1));
      loop.emplace_back("depth0", Value::integer(0));
      loop.emplace_back("cycle", Value::function([k](Args& a, KwArgs&) {
                          if (a.empty()) failat(0, "loop.cycle() needs arguments");
                          return a[size_t(k) % a.size()];
                        }));
      scopes_.back()["loop"] = Value::make_dict(std::move(loop));
      bool stop = false;
      try {
        run(n.body, out);
      } catch (const LoopSignal& sig) {
        stop = sig.is_break;
      }
      scopes_.pop_back();
      if (stop) break;
    }
    --loop_depth_;
  }

  void bind_targets(const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = item;
      return;
    }
    const List parts = iterate(item, n.off);
    if (parts.size() != n.targets.size())
      failat(n.off, fmt::format("cannot unpack {} values into {} loop variables", parts.size(), n.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) scopes_.back()[n.targets[k]] = parts[k];
  }

  static const Value* kwarg(KwArgs& kw, const char* name) {
    for (auto& [k, v] : kw)
      if (k == name) return &v;
    return nullptr;
  }
  // Positional argument i or keyword `name`, or null.
  static const Value* arg(Args& a, KwArgs& kw, size_t i, const char* name) {
    if (i < a.size()) return &a[i];
    return kwarg(kw, name);
  }

  static Value builtin_function(const std::string& name) {
    if (name == "raise_exception")
      return Value::function([](Args& a, KwArgs&) -> Value {
        throw Error("chat template raised an exception: " + (a.empty() ? std::string() : to_str(a[0])));
      });
    if (name == "namespace" || name == "dict")
      return Value::function([name](Args& a, KwArgs& kw) {
        Value v = Value::make_dict();
        if (name == "namespace") v.kind = Value::Kind::Namespace;
        for (const Value& x : a)
          if (x.kind == Value::Kind::Dict) *v.dict = *x.dict;
        for (auto& [k, val] : kw) v.dict->emplace_back(k, val);
        for (const auto& kv : *v.dict) v.nest = std::max(v.nest, kv.second.nest + 1);
        return v;
      });
    if (name == "range")
      return Value::function([](Args& a, KwArgs&) {
        int64_t start = 0, stop = 0, step = 1;
        for (const Value& x : a)
          if (x.kind != Value::Kind::Int) failat(0, "range() takes integers");
        if (a.size() == 1) stop = a[0].i;
        else if (a.size() >= 2) start = a[0].i, stop = a[1].i;
        if (a.size() >= 3) step = a[2].i;
        if (a.empty() || a.size() > 3 || step == 0) failat(0, "range() takes 1 to 3 arguments and a non-zero step");
        List out;
        for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
          if (int64_t(out.size()) >= kMaxRange) failat(0, "range() too long");
          out.push_back(Value::integer(k));
        }
        return Value::make_list(std::move(out));
      });
    // strftime_now(format): the local time, as transformers provides it.
    return Value::function([](Args& a, KwArgs&) {
      if (a.empty() || a[0].kind != Value::Kind::String) failat(0, "strftime_now() takes a format string");
      const std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, a[0].s.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }

  // Attribute access (x.name): jinja2 tries the Python attribute first (so
  // dict.items is the method), then the item.
  Value get_attr(const Value& obj, const std::string& name, size_t off) {
    switch (obj.kind) {
      case Value::Kind::Undefined:
        failat(off, fmt::format("'{}' is undefined (reading its attribute '{}')", obj.s.empty() ? "value" : obj.s, name));
      case Value::Kind::Dict: {
        if (Value m = method(obj, name); m.kind == Value::Kind::Function) return m;
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      }
      case Value::Kind::Namespace:
        if (const Value* v = obj.find(name)) return *v;
        return Value::undefined(name);
      case Value::Kind::String: return method(obj, name);
      case Value::Kind::List: return method(obj, name);
      default: return Value::undefined(name);
    }
  }

  Value get_item(const Value& obj, const Value& key, size_t off) {
    switch (obj.kind) {
      case Value::Kind::Undefined:
        failat(off, fmt::format("'{}' is undefined (reading an item)", obj.s.empty() ? "value" : obj.s));
      case Value::Kind::Dict:
      case Value::Kind::Namespace:
        if (key.kind == Value::Kind::String) {
          if (const Value* v = obj.find(key.s)) return *v;
          if (obj.kind == Value::Kind::Dict) return method(obj, key.s);
          return Value::undefined(key.s);
        }
        return Value::undefined();
      case Value::Kind::List:
      case Value::Kind::String: {
        if (key.kind == Value::Kind::String) return method(obj, key.s);
        if (key.kind != Value::Kind::Int && key.kind != Value::Kind::Bool) return Value::undefined();
        const int64_t idx0 = key.kind == Value::Kind::Bool ? int64_t(key.b) : key.i;
        if (obj.kind == Value::Kind::List) {
          const int64_t n = int64_t(obj.list->size());
          const int64_t idx = idx0 < 0 ? idx0 + n : idx0;
          if (idx < 0 || idx >= n) return Value::undefined("item");
          return (*obj.list)[size_t(idx)];
        }
        const std::vector<std::string> chars = utf8_chars(obj.s);
        const int64_t n = int64_t(chars.size());
        const int64_t idx = idx0 < 0 ? idx0 + n : idx0;
        if (idx < 0 || idx >= n) return Value::undefined("item");
        return Value::string(chars[size_t(idx)]);
      }
      default: return Value::undefined();
    }
  }

  Value method(const Value& obj, const std::string& name) {
    Value self = obj;
    auto fn = [](Callable c) { return Value::function(std::move(c)); };
    if (obj.kind == Value::Kind::String) {
      const std::string& s = obj.s;
      if (name == "startswith" || name == "endswith") {
        const bool starts = name == "startswith";
        return fn([s, starts](Args& a, KwArgs&) {
          if (a.empty()) failat(0, "startswith/endswith need an argument");
          List opts = a[0].kind == Value::Kind::List ? *a[0].list : List{a[0]};
          for (const Value& o : opts) {
            if (o.kind != Value::Kind::String) failat(0, "startswith/endswith take strings");
            if (o.s.size() <= s.size() && (starts ? s.compare(0, o.s.size(), o.s) == 0 : s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0))
              return Value::boolean(true);
          }
          return Value::boolean(false);
        });
      }
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const bool l = name != "rstrip", r = name != "lstrip";
        return fn([s, l, r](Args& a, KwArgs&) { return Value::string(strip(s, l, r, a.empty() ? nullptr : &a[0])); });
      }
      if (name == "split" || name == "rsplit")  // rsplit only differs with maxsplit; treated as split
        return fn([s](Args& a, KwArgs& kw) {
          const Value* sep = arg(a, kw, 0, "sep");
          const Value* mx = arg(a, kw, 1, "maxsplit");
          List out;
          for (std::string& p : py_split(s, sep, mx && mx->kind == Value::Kind::Int ? mx->i : -1)) out.push_back(Value::string(std::move(p)));
          return Value::make_list(std::move(out));
        });
      if (name == "replace")
        return fn([s](Args& a, KwArgs&) {
          if (a.size() < 2 || a[0].kind != Value::Kind::String || a[1].kind != Value::Kind::String) failat(0, "replace() takes two strings");
          return Value::string(replace_all(s, a[0].s, a[1].s, a.size() > 2 && a[2].kind == Value::Kind::Int ? a[2].i : -1));
        });
      if (name == "upper") return fn([s](Args&, KwArgs&) { return Value::string(upper(s)); });
      if (name == "lower") return fn([s](Args&, KwArgs&) { return Value::string(lower(s)); });
      if (name == "title") return fn([s](Args&, KwArgs&) { return Value::string(title(s)); });
      if (name == "capitalize") return fn([s](Args&, KwArgs&) { return Value::string(capitalize(s)); });
      if (name == "find")
        return fn([s](Args& a, KwArgs&) {
          if (a.empty() || a[0].kind != Value::Kind::String) failat(0, "find() takes a string");
          const size_t p = s.find(a[0].s);
          return Value::integer(p == std::string::npos ? -1 : int64_t(utf8_length(s.substr(0, p))));
        });
      if (name == "count")
        return fn([s](Args& a, KwArgs&) {
          if (a.empty() || a[0].kind != Value::Kind::String || a[0].s.empty()) failat(0, "count() takes a non-empty string");
          int64_t n = 0;
          for (size_t p = s.find(a[0].s); p != std::string::npos; p = s.find(a[0].s, p + a[0].s.size())) ++n;
          return Value::integer(n);
        });
      if (name == "join")
        return fn([s](Args& a, KwArgs&) {
          if (a.empty()) failat(0, "join() takes a list");
          std::string out;
          const List items = iterate(a[0], 0);
          for (size_t k = 0; k < items.size(); ++k) out += (k ? s : "") + to_str(items[k]);
          return Value::string(std::move(out));
        });
      return Value::undefined(name);
    }
    if (obj.kind == Value::Kind::Dict) {
      if (name == "items")
        return fn([self](Args&, KwArgs&) {
          List out;
          for (const auto& [k, v] : *self.dict) out.push_back(Value::make_list({Value::string(k), v}));
          return Value::make_list(std::move(out));
        });
      if (name == "keys")
        return fn([self](Args&, KwArgs&) {
          List out;
          for (const auto& kv : *self.dict) out.push_back(Value::string(kv.first));
          return Value::make_list(std::move(out));
        });
      if (name == "values")
        return fn([self](Args&, KwArgs&) {
          List out;
          for (const auto& kv : *self.dict) out.push_back(kv.second);
          return Value::make_list(std::move(out));
        });
      if (name == "get")
        return fn([self](Args& a, KwArgs&) {
          if (a.empty()) failat(0, "get() takes a key");
          if (a[0].kind == Value::Kind::String)
            if (const Value* v = self.find(a[0].s)) return *v;
          return a.size() > 1 ? a[1] : Value::none();
        });
      return Value::undefined(name);
    }
    if (obj.kind == Value::Kind::List) {
      if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove" || name == "clear")
        return fn([name](Args&, KwArgs&) -> Value {
          failat(0, fmt::format("lists are immutable in chat templates (called '{}')", name));
        });
      return Value::undefined(name);
    }
    return Value::undefined(name);
  }

  Value eval(const Expr& e) {
    try {
      Value v = eval_inner(e);
      if (v.nest > kMaxDepth) failat(e.off, "value nested too deeply");
      return v;
    } catch (Fail& f) {
      if (f.off == 0) f.off = e.off;  // helpers without a position take the expression's
      throw;
    }
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case Expr::Literal: return e.value;
      case Expr::Name: return lookup(e.name);
      case Expr::Attr: return get_attr(eval(*e.args[0]), e.name, e.off);
      case Expr::Item: return get_item(eval(*e.args[0]), eval(*e.args[1]), e.off);
      case Expr::Slice: return slice(e);
      case Expr::Call: {
        const Value callee = eval(*e.args[0]);
        if (callee.kind != Value::Kind::Function) {
          std::string what = e.args[0]->kind == Expr::Name || e.args[0]->kind == Expr::Attr ? "'" + e.args[0]->name + "'" : "value";
          failat(e.off, fmt::format("{} is not callable ({})", what, callee.is_undefined() ? "undefined" : kind_name(callee)));
        }
        Args a;
        KwArgs kw;
        collect_args(e, 1, a, kw);
        return (*callee.fn)(a, kw);
      }
      case Expr::Filter: {
        Value v = eval(*e.args[0]);
        Args a;
        KwArgs kw;
        collect_args(e, 1, a, kw);
        return apply_filter(e.name, v, a, kw, e.off);
      }
      case Expr::Test: {
        Value v = eval(*e.args[0]);
        Args a;
        KwArgs kw;
        collect_args(e, 1, a, kw);
        const bool r = apply_test(e.name, v, a, e.off);
        return Value::boolean(e.negate ? !r : r);
      }
      case Expr::Unary: {
        const Value v = eval(*e.args[0]);
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (v.kind == Value::Kind::Int) return Value::integer(e.name == "-" ? -v.i : v.i);
        if (v.kind == Value::Kind::Float) return Value::real(e.name == "-" ? -v.f : v.f);
        if (v.kind == Value::Kind::Bool) return Value::integer(e.name == "-" ? -int64_t(v.b) : int64_t(v.b));
        failat(e.off, fmt::format("bad operand type for unary {}: '{}'", e.name, kind_name(v)));
      }
      case Expr::Binary: return binary(e);
      case Expr::Cond: {
        if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
        if (e.args.size() > 2) return eval(*e.args[2]);
        return Value::undefined();
      }
      case Expr::ListLit: {
        List out;
        for (const auto& x : e.args) out.push_back(eval(*x));
        return Value::make_list(std::move(out));
      }
      case Expr::DictLit: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k]);
          if (key.kind != Value::Kind::String) failat(e.args[k]->off, "dict keys must be strings");
          Value val = eval(*e.args[k + 1]);
          bool set = false;
          for (auto& kv : *d.dict)
            if (kv.first == key.s) kv.second = val, set = true;
          if (!set) d.dict->emplace_back(key.s, std::move(val));
        }
        return d;
      }
    }
    failat(e.off, "bad expression");
  }

  void collect_args(const Expr& e, size_t first, Args& a, KwArgs& kw) {
    const size_t n_pos = e.args.size() - e.kw.size();
    for (size_t k = first; k < n_pos; ++k) a.push_back(eval(*e.args[k]));
    for (size_t k = 0; k < e.kw.size(); ++k) kw.emplace_back(e.kw[k], eval(*e.args[n_pos + k]));
  }

  Value slice(const Expr& e) {
    const Value obj = eval(*e.args[0]);
    auto bound = [&](size_t i, bool& given) -> int64_t {
      given = false;
      if (!e.args[i]) return 0;
      const Value v = eval(*e.args[i]);
      if (v.kind == Value::Kind::None) return 0;
      if (v.kind != Value::Kind::Int) failat(e.args[i]->off, "slice indices must be integers");
      given = true;
      return v.i;
    };
    bool has_lo, has_hi, has_step;
    int64_t lo = bound(1, has_lo), hi = bound(2, has_hi), step = bound(3, has_step);
    if (!has_step) step = 1;
    if (step == 0) failat(e.off, "slice step cannot be zero");
    List items;
    std::vector<std::string> chars;
    int64_t n;
    if (obj.kind == Value::Kind::List) n = int64_t(obj.list->size());
    else if (obj.kind == Value::Kind::String) chars = utf8_chars(obj.s), n = int64_t(chars.size());
    else if (obj.is_undefined()) failat(e.off, fmt::format("'{}' is undefined (slicing it)", obj.s.empty() ? "value" : obj.s));
    else failat(e.off, fmt::format("'{}' object cannot be sliced", kind_name(obj)));
    auto norm = [&](int64_t x, bool given, int64_t def) {
      if (!given) return def;
      if (x < 0) x += n;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    lo = norm(lo, has_lo, step > 0 ? 0 : n - 1);
    hi = norm(hi, has_hi, step > 0 ? n : -1);
    std::string s;
    List l;
    for (int64_t k = lo; step > 0 ? k < hi : k > hi; k += step) {
      if (obj.kind == Value::Kind::List) l.push_back((*obj.list)[size_t(k)]);
      else s += chars[size_t(k)];
    }
    return obj.kind == Value::Kind::List ? Value::make_list(std::move(l)) : Value::string(std::move(s));
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    if (op == "or") {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    const Value a = eval(*e.args[0]);
    const Value b = eval(*e.args[1]);
    if (op == "~") return Value::string(to_str(a) + to_str(b));
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "not in") {
      const bool r = contains(b, a, e.off);
      return Value::boolean(op == "in" ? r : !r);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.is_number() && b.is_number()) {
        const double x = as_double(a), y = as_double(b);
        c = x < y ? -1 : x > y ? 1 : 0;
      } else if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) {
        c = a.s.compare(b.s) < 0 ? -1 : a.s == b.s ? 0 : 1;
      } else {
        failat(e.off, fmt::format("'{}' not supported between '{}' and '{}'", op, kind_name(a), kind_name(b)));
      }
      return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (a.is_undefined() || b.is_undefined()) {
      const Value& u = a.is_undefined() ? a : b;
      failat(e.off, fmt::format("'{}' is undefined (used with '{}')", u.s.empty() ? "value" : u.s, op));
    }
    if (op == "+") {
      if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) return Value::string(a.s + b.s);
      if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    }
    if (op == "*" && ((a.kind == Value::Kind::String && b.kind == Value::Kind::Int) || (a.kind == Value::Kind::Int && b.kind == Value::Kind::String))) {
      const std::string& s = a.kind == Value::Kind::String ? a.s : b.s;
      const int64_t n = a.kind == Value::Kind::Int ? a.i : b.i;
      if (n > 0 && s.size() * size_t(n) > kMaxOutput) failat(e.off, "string repetition too large");
      std::string out;
      for (int64_t k = 0; k < n; ++k) out += s;
      return Value::string(std::move(out));
    }
    if (!a.is_number() || !b.is_number())
      failat(e.off, fmt::format("unsupported operand types for {}: '{}' and '{}'", op, kind_name(a), kind_name(b)));
    const bool ints = a.kind != Value::Kind::Float && b.kind != Value::Kind::Float;
    const int64_t x = a.kind == Value::Kind::Bool ? a.b : a.i, y = b.kind == Value::Kind::Bool ? b.b : b.i;
    const double dx = as_double(a), dy = as_double(b);
    if (op == "+") return ints ? Value::integer(x + y) : Value::real(dx + dy);
    if (op == "-") return ints ? Value::integer(x - y) : Value::real(dx - dy);
    if (op == "*") return ints ? Value::integer(x * y) : Value::real(dx * dy);
    if (op == "/") {
      if (dy == 0) failat(e.off, "division by zero");
      return Value::real(dx / dy);
    }
    if (op == "//" || op == "%") {
      if (dy == 0) failat(e.off, "division by zero");
      if (ints) {
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) --q, r += y;
        return Value::integer(op == "//" ? q : r);
      }
      const double q = std::floor(dx / dy);
      return Value::real(op == "//" ? q : dx - q * dy);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < y && k < 64; ++k) r *= x;
        return Value::integer(r);
      }
      return Value::real(std::pow(dx, dy));
    }
    failat(e.off, fmt::format("unknown operator '{}'", op));
  }

  static bool contains(const Value& container, const Value& item, size_t off) {
    switch (container.kind) {
      case Value::Kind::String:
        if (item.kind != Value::Kind::String) failat(off, "'in <string>' requires a string on the left");
        return container.s.find(item.s) != std::string::npos;
      case Value::Kind::List:
        for (const Value& v : *container.list)
          if (equal(v, item)) return true;
        return false;
      case Value::Kind::Dict:
      case Value::Kind::Namespace: return item.kind == Value::Kind::String && container.find(item.s) != nullptr;
      case Value::Kind::Undefined: return false;  // iterates as empty
      default: failat(off, fmt::format("argument of type '{}' is not iterable", kind_name(container)));
    }
  }

  bool apply_test(const std::string& name, const Value& v, Args& a, size_t off) {
    using K = Value::Kind;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.kind == K::None;
    if (name == "string") return v.kind == K::String;
    if (name == "number") return v.kind == K::Int || v.kind == K::Float;
    if (name == "integer") return v.kind == K::Int;
    if (name == "float") return v.kind == K::Float;
    if (name == "boolean") return v.kind == K::Bool;
    if (name == "true") return v.kind == K::Bool && v.b;
    if (name == "false") return v.kind == K::Bool && !v.b;
    if (name == "mapping") return v.kind == K::Dict;
    if (name == "iterable") return v.kind == K::List || v.kind == K::Dict || v.kind == K::String;
    if (name == "sequence") return v.kind == K::List || v.kind == K::Dict || v.kind == K::String;
    if (name == "callable") return v.kind == K::Function;
    if (name == "lower") return v.kind == K::String && lower(v.s) == v.s;
    if (name == "upper") return v.kind == K::String && upper(v.s) == v.s;
    if (name == "odd" || name == "even") {
      if (v.kind != K::Int) failat(off, fmt::format("test '{}' needs an integer", name));
      return (((v.i % 2) + 2) % 2 == 1) == (name == "odd");
    }
    if (a.empty()) failat(off, fmt::format("test '{}' needs an argument", name));
    const Value& b = a[0];
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, b);
    if (name == "ne") return !equal(v, b);
    if (name == "sameas") return v.kind == b.kind && (v.kind == K::None || v.kind == K::Undefined || (v.kind == K::Bool && v.b == b.b) || equal(v, b));
    if (name == "in") return contains(b, v, off);
    if (name == "divisibleby") {
      if (v.kind != K::Int || b.kind != K::Int || b.i == 0) failat(off, "divisibleby needs non-zero integers");
      return v.i % b.i == 0;
    }
    if (name == "lt" || name == "lessthan" || name == "gt" || name == "greaterthan" || name == "le" || name == "ge") {
      if (!v.is_number() || !b.is_number()) failat(off, fmt::format("test '{}' needs numbers", name));
      const double x = as_double(v), y = as_double(b);
      if (name == "lt" || name == "lessthan") return x < y;
      if (name == "gt" || name == "greaterthan") return x > y;
      return name == "le" ? x <= y : x >= y;
    }
    failat(off, fmt::format("test '{}' is not supported", name));
  }

  Value apply_filter(const std::string& name, const Value& v, Args& a, KwArgs& kw, size_t off) {
    using K = Value::Kind;
    auto need_string = [&]() -> const std::string& {
      if (v.kind != K::String) failat(off, fmt::format("filter '{}' needs a string, got {}", name, v.is_undefined() ? "undefined" : kind_name(v)));
      return v.s;
    };
    if (name == "default" || name == "d") {
      const Value* boolean = arg(a, kw, 1, "boolean");
      const bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
      if (!use_default) return v;
      const Value* def = arg(a, kw, 0, "default_value");
      return def ? *def : Value::string("");
    }
    if (name == "trim") return Value::string(strip(to_str(v), true, true, arg(a, kw, 0, "chars")));
    if (name == "length" || name == "count") {
      switch (v.kind) {
        case K::String: return Value::integer(int64_t(utf8_length(v.s)));
        case K::List: return Value::integer(int64_t(v.list->size()));
        case K::Dict:
        case K::Namespace: return Value::integer(int64_t(v.dict->size()));
        case K::Undefined: return Value::integer(0);
        default: failat(off, fmt::format("object of type '{}' has no length", kind_name(v)));
      }
    }
    if (name == "tojson") {
      const Value* ind = arg(a, kw, 0, "indent");
      std::string out;
      to_json(v, ind && ind->kind == K::Int ? int(ind->i) : -1, 0, out);
      return Value::string(std::move(out));
    }
    if (name == "string") return Value::string(to_str(v));
    if (name == "safe") return v;
    if (name == "escape" || name == "e" || name == "forceescape") {
      std::string out;
      for (char c : to_str(v)) {
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '"') out += "&#34;";
        else if (c == '\'') out += "&#39;";
        else out += c;
      }
      return Value::string(std::move(out));
    }
    if (name == "upper") return Value::string(upper(to_str(v)));
    if (name == "lower") return Value::string(lower(to_str(v)));
    if (name == "capitalize") return Value::string(capitalize(to_str(v)));
    if (name == "title") return Value::string(title(to_str(v)));
    if (name == "first" || name == "last") {
      List items = iterate(v, off);
      if (items.empty()) return Value::undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Value* sep = arg(a, kw, 0, "d");
      const Value* attr = arg(a, kw, 1, "attribute");
      std::string out;
      const List items = iterate(v, off);
      for (size_t k = 0; k < items.size(); ++k) {
        if (k && sep) out += to_str(*sep);
        out += to_str(attr ? get_attr(items[k], to_str(*attr), off) : items[k]);
      }
      return Value::string(std::move(out));
    }
    if (name == "replace") {
      if (a.size() < 2) failat(off, "replace needs two arguments");
      return Value::string(replace_all(to_str(v), to_str(a[0]), to_str(a[1]), a.size() > 2 && a[2].kind == K::Int ? a[2].i : -1));
    }
    if (name == "split") {
      List out;
      for (std::string& p : py_split(need_string(), a.empty() ? nullptr : &a[0], -1)) out.push_back(Value::string(std::move(p)));
      return Value::make_list(std::move(out));
    }
    if (name == "list") return v.is_undefined() ? Value::make_list() : Value::make_list(iterate(v, off));
    if (name == "items") {
      if (v.kind != K::Dict) failat(off, "filter 'items' needs a mapping");
      List out;
      for (const auto& [k, x] : *v.dict) out.push_back(Value::make_list({Value::string(k), x}));
      return Value::make_list(std::move(out));
    }
    if (name == "reverse") {
      if (v.kind == K::String) {
        std::vector<std::string> chars = utf8_chars(v.s);
        std::string out;
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
        return Value::string(std::move(out));
      }
      List items = iterate(v, off);
      std::reverse(items.begin(), items.end());
      return Value::make_list(std::move(items));
    }
    if (name == "int") {
      if (v.kind == K::Int) return v;
      if (v.kind == K::Float) return Value::integer(int64_t(v.f));
      if (v.kind == K::Bool) return Value::integer(v.b);
      if (v.kind == K::String) {
        try {
          return Value::integer(std::stoll(strip(v.s, true, true)));
        } catch (...) {
        }
      }
      const Value* def = arg(a, kw, 0, "default");
      return def ? *def : Value::integer(0);
    }
    if (name == "float") {
      if (v.is_number()) return Value::real(as_double(v));
      if (v.kind == K::String) {
        try {
          return Value::real(std::stod(strip(v.s, true, true)));
        } catch (...) {
        }
      }
      return Value::real(0);
    }
    if (name == "abs") {
      if (v.kind == K::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
      if (v.kind == K::Float) return Value::real(std::fabs(v.f));
      failat(off, "filter 'abs' needs a number");
    }
    if (name == "round") {
      if (!v.is_number()) failat(off, "filter 'round' needs a number");
      const Value* prec = arg(a, kw, 0, "precision");
      const double p = std::pow(10.0, prec && prec->kind == K::Int ? double(prec->i) : 0.0);
      return Value::real(std::nearbyint(as_double(v) * p) / p);
    }
    if (name == "map" || name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const List items = iterate(v, off);
      List out;
      if (name == "map") {
        const Value* attr = kwarg(kw, "attribute");
        for (const Value& it : items) {
          if (attr) {
            out.push_back(get_attr(it, to_str(*attr), off));
          } else {
            if (a.empty()) failat(off, "map needs a filter name or attribute=");
            Args rest(a.begin() + 1, a.end());
            KwArgs none;
            out.push_back(apply_filter(to_str(a[0]), it, rest, none, off));
          }
        }
        return Value::make_list(std::move(out));
      }
      const bool by_attr = name == "selectattr" || name == "rejectattr";
      const bool keep_if = name == "select" || name == "selectattr";
      size_t first_test_arg = by_attr ? 1 : 0;
      if (by_attr && a.empty()) failat(off, fmt::format("{} needs an attribute name", name));
      for (const Value& it : items) {
        const Value subject = by_attr ? get_attr(it, to_str(a[0]), off) : it;
        bool r;
        if (a.size() <= first_test_arg) {
          r = subject.truthy();
        } else {
          const std::string test = to_str(a[first_test_arg]);
          if (!known_tests().count(test)) failat(off, fmt::format("unknown test '{}'", test));
          Args rest(a.begin() + long(first_test_arg) + 1, a.end());
          r = apply_test(test, subject, rest, off);
        }
        if (r == keep_if) out.push_back(it);
      }
      return Value::make_list(std::move(out));
    }
    if (name == "unique") {
      List out;
      for (const Value& it : iterate(v, off)) {
        bool seen = false;
        for (const Value& o : out) seen = seen || equal(o, it);
        if (!seen) out.push_back(it);
      }
      return Value::make_list(std::move(out));
    }
    if (name == "indent") {
      const Value* w = arg(a, kw, 0, "width");
      const Value* first = arg(a, kw, 1, "first");
      const Value* blank = arg(a, kw, 2, "blank");
      const std::string pad = w && w->kind == K::String ? w->s : std::string(size_t(w && w->kind == K::Int ? std::max<int64_t>(w->i, 0) : 4), ' ');
      const std::string s = to_str(v);
      std::string out;
      size_t start = 0;
      bool first_line = true;
      while (start <= s.size()) {
        size_t nl = s.find('\n', start);
        const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        const bool do_pad = first_line ? (first && first->truthy()) : (!line.empty() || (blank && blank->truthy()));
        if (do_pad) out += pad;
        out += line;
        if (nl == std::string::npos) break;
        out += '\n';
        start = nl + 1;
        first_line = false;
      }
      return Value::string(std::move(out));
    }
    failat(off, fmt::format("filter '{}' is not supported", name));
  }

  std::vector<Scope> scopes_;
  int loop_depth_ = 0;
};

std::pair<int, int> line_col(const std::string& src, size_t off) {
  off = std::min(off, src.size());
  int line = 1, col = 1;
  for (size_t k = 0; k < off; ++k) {
    if (src[k] == '\n') ++line, col = 1;
    else if ((static_cast<unsigned char>(src[k]) & 0xC0) != 0x80) ++col;
  }
  return {line, col};
}

}  // namespace

Value Value::from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_float: return real(j.get<double>());
    case nlohmann::json::value_t::string: return string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List l;
      for (const auto& x : j) l.push_back(from_json(x));
      return make_list(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
      return make_dict(std::move(d));
    }
    default: return undefined();
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b;
    case Kind::Int: return i != 0;
    case Kind::Float: return f != 0;
    case Kind::String: return !s.empty();
    case Kind::List: return !list->empty();
    case Kind::Dict: return !dict->empty();
    case Kind::Namespace:
    case Kind::Function: return true;
  }
  return false;
}

const Value* Value::find(const std::string& key) const {
  if ((kind != Kind::Dict && kind != Kind::Namespace) || !dict) return nullptr;
  for (const auto& kv : *dict)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

std::shared_ptr<const Program> parse(const std::string& raw_source) {
  // jinja2 turns \r\n and \r into \n and (keep_trailing_newline=False) drops one
  // trailing newline before lexing.
  std::string source;
  source.reserve(raw_source.size());
  for (size_t k = 0; k < raw_source.size(); ++k) {
    if (raw_source[k] == '\r') {
      source += '\n';
      if (k + 1 < raw_source.size() && raw_source[k + 1] == '\n') ++k;
    } else {
      source += raw_source[k];
    }
  }
  if (!source.empty() && source.back() == '\n') source.pop_back();
  try {
    auto prog = std::make_shared<Program>();
    prog->source = source;
    const std::vector<Segment> segs = split_segments(source);
    BlockParser bp(segs);
    bp.block(prog->body, {}, 0, 0);
    return prog;
  } catch (const Fail& f) {
    const auto [line, col] = line_col(source, f.off);
    throw Error(fmt::format("chat template line {}, column {}: {}", line, col, f.msg));
  }
}

std::string render(const Program& program, const std::map<std::string, Value>& globals) {
  try {
    Renderer r(globals);
    std::string out;
    r.run(program.body, out);
    return out;
  } catch (const Fail& f) {
    const auto [line, col] = line_col(program.source, f.off);
    throw Error(fmt::format("chat template line {}, column {}: {}", line, col, f.msg));
  } catch (const LoopSignal&) {
    throw Error("chat template: 'break' or 'continue' outside a loop");
  }
}

}  // namespace jevons::jinja
