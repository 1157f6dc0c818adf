#include "runtime/grammar.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.h"

namespace jevons {

bool Grammar::Element::matches(uint32_t cp) const {
  bool in = false;
  for (const auto& [lo, hi] : ranges)
    if (cp >= lo && cp <= hi) {
      in = true;
      break;
    }
  return in != negated;
}

bool Grammar::Element::matches_any(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const auto& [a, b] : ranges)
      if (a <= hi && b >= lo) return true;
    return false;
  }
  // Negated: some code point of [lo, hi] lies outside every range.
  std::vector<std::pair<uint32_t, uint32_t>> sorted = ranges;
  std::sort(sorted.begin(), sorted.end());
  uint32_t next = lo;  // the lowest code point not yet known to be excluded
  for (const auto& [a, b] : sorted) {
    if (a > next) break;
    if (b >= next) {
      if (b >= hi) return false;
      next = b + 1;
    }
  }
  return next <= hi;
}

// ---- parsing ----

namespace {

constexpr size_t kMaxElements = 200000;  // after expanding repetitions
constexpr int kMaxRepeat = 10000;          // m and n of {m,n}

using Element = Grammar::Element;
using Sequence = std::vector<Element>;
using Alternatives = std::vector<Sequence>;

Element char_element(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated = false) {
  Element e;
  e.kind = Element::kChar;
  e.ranges = std::move(ranges);
  e.negated = negated;
  return e;
}

Element rule_element(int32_t r) {
  Element e;
  e.kind = Element::kRule;
  e.rule = r;
  return e;
}

bool is_word_char(char c) { return std::isalnum((unsigned char)c) || c == '-' || c == '_'; }

}  // namespace

class GrammarBuilder {
 public:
  explicit GrammarBuilder(std::string_view src) : src_(src) {}

  std::shared_ptr<const Grammar> build(const std::string& root) {
    skip_space();
    if (pos_ >= src_.size()) fail("the grammar is empty: it needs at least the rule `{} ::= ...`", root);
    while (pos_ < src_.size()) {
      const std::string name = parse_name();
      skip_space();
      if (src_.substr(pos_, 3) != "::=") error("expected ::= after the rule name '" + name + "'");
      pos_ += 3;
      const int32_t r = rule_id(name);
      if (defined_[size_t(r)]) error("the rule '" + name + "' is defined twice");
      defined_[size_t(r)] = true;
      bodies_[size_t(r)] = parse_alternates(name, false);
      skip_space();
    }
    for (size_t r = 0; r < names_.size(); ++r)
      if (!defined_[r]) fail("the grammar uses the rule '{}' but does not define it", names_[r]);
    const auto it = ids_.find(root);
    if (it == ids_.end()) fail("the grammar has no '{}' rule to start from", root);
    check(it->second);
    return flatten(it->second);
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < src_.size(); ++i) {
      if (src_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    fail("grammar line {} column {}: {}", line, col, what);
  }

  int32_t rule_id(const std::string& name) {
    const auto [it, added] = ids_.emplace(name, int32_t(names_.size()));
    if (added) {
      names_.push_back(name);
      bodies_.emplace_back();
      defined_.push_back(false);
    }
    return it->second;
  }

  int32_t new_rule(const std::string& base, Alternatives body) {
    const int32_t r = rule_id(base + "-" + std::to_string(names_.size()));
    defined_[size_t(r)] = true;
    bodies_[size_t(r)] = std::move(body);
    return r;
  }

  void skip_space() {
    while (pos_ < src_.size()) {
      const char c = src_[pos_];
      if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (pos_ < src_.size() && is_word_char(src_[pos_])) ++pos_;
    if (pos_ == start) error("expected a rule name");
    return std::string(src_.substr(start, pos_ - start));
  }

  // At a rule name followed by ::= (the next rule begins: the sequence ends).
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < src_.size() && is_word_char(src_[p])) ++p;
    if (p == pos_) return false;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r')) ++p;
    return src_.substr(p, 3) == "::=";
  }

  uint32_t decode_utf8() {
    const auto b = uint8_t(src_[pos_]);
    int len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || pos_ + size_t(len) > src_.size()) error("invalid UTF-8");
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (int i = 1; i < len; ++i) {
      const auto c = uint8_t(src_[pos_ + size_t(i)]);
      if ((c & 0xC0) != 0x80) error("invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += size_t(len);
    return cp;
  }

  uint32_t parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i, ++pos_) {
      if (pos_ >= src_.size() || !std::isxdigit((unsigned char)src_[pos_])) error("expected a hex digit in an escape");
      const char c = src_[pos_];
      v = v * 16 + uint32_t(std::isdigit((unsigned char)c) ? c - '0' : std::tolower((unsigned char)c) - 'a' + 10);
    }
    if (v > 0x10FFFF) error("escape beyond Unicode");
    return v;
  }

  // One character of a literal or class, escapes decoded.
  uint32_t parse_char() {
    if (pos_ >= src_.size()) error("unexpected end of the grammar");
    if (src_[pos_] != '\\') return decode_utf8();
    if (++pos_ >= src_.size()) error("unexpected end after '\\'");
    const char c = src_[pos_++];
    switch (c) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'x': return parse_hex(2);
      case 'u': return parse_hex(4);
      case 'U': return parse_hex(8);
      default: return uint8_t(c);  // \\ \" \[ \] \- \^ ...: the character itself
    }
  }

  Alternatives parse_alternates(const std::string& rule, bool nested) {
    Alternatives alts;
    alts.push_back(parse_sequence(rule, nested));
    skip_space();
    while (pos_ < src_.size() && src_[pos_] == '|') {
      ++pos_;
      alts.push_back(parse_sequence(rule, nested));
      skip_space();
    }
    return alts;
  }

  Sequence parse_sequence(const std::string& rule, bool nested) {
    Sequence seq;
    size_t last_start = 0;  // where the last symbol (the one a postfix applies to) starts
    for (;;) {
      skip_space();
      if (pos_ >= src_.size()) break;
      const char c = src_[pos_];
      if (c == '|' || c == ')') break;
      if (!nested && at_rule_start()) break;
      if (c == '"') {
        ++pos_;
        last_start = seq.size();
        while (pos_ < src_.size() && src_[pos_] != '"') {
          const uint32_t cp = parse_char();
          seq.push_back(char_element({{cp, cp}}));
        }
        if (pos_ >= src_.size()) error("unterminated string literal");
        ++pos_;
      } else if (c == '[') {
        ++pos_;
        bool negated = false;
        if (pos_ < src_.size() && src_[pos_] == '^') negated = true, ++pos_;
        std::vector<std::pair<uint32_t, uint32_t>> ranges;
        while (pos_ < src_.size() && src_[pos_] != ']') {
          const uint32_t lo = parse_char();
          uint32_t hi = lo;
          if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
            ++pos_;
            hi = parse_char();
            if (hi < lo) error("a character range runs backwards");
          }
          ranges.emplace_back(lo, hi);
        }
        if (pos_ >= src_.size()) error("unterminated character class");
        ++pos_;
        last_start = seq.size();
        seq.push_back(char_element(std::move(ranges), negated));
      } else if (c == '.') {
        ++pos_;
        last_start = seq.size();
        seq.push_back(char_element({}, true));  // any code point
      } else if (c == '(') {
        ++pos_;
        if (++depth_ > 256) error("groups nested too deeply");
        Alternatives body = parse_alternates(rule, true);
        --depth_;
        skip_space();
        if (pos_ >= src_.size() || src_[pos_] != ')') error("expected ')'");
        ++pos_;
        last_start = seq.size();
        seq.push_back(rule_element(new_rule(rule, std::move(body))));
      } else if (is_word_char(c)) {
        last_start = seq.size();
        seq.push_back(rule_element(rule_id(parse_name())));
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (seq.empty()) error(std::string("'") + c + "' follows nothing");
        apply_postfix(rule, seq, last_start);
      } else {
        error(std::string("unexpected character '") + c + "'");
      }
      if (++n_elements_ > kMaxElements) error("the grammar is too large");
    }
    return seq;
  }

  // X* X+ X? X{m} X{m,} X{m,n} for the symbol X = seq[last_start..].
  void apply_postfix(const std::string& rule, Sequence& seq, size_t last_start) {
    const Sequence x(seq.begin() + int64_t(last_start), seq.end());
    seq.resize(last_start);
    int min = 0, max = -1;  // -1: unbounded
    const char c = src_[pos_++];
    if (c == '*') {
      min = 0, max = -1;
    } else if (c == '+') {
      min = 1, max = -1;
    } else if (c == '?') {
      min = 0, max = 1;
    } else {  // {m}, {m,}, {m,n}
      auto number = [&] {
        skip_space();
        const size_t start = pos_;
        int v = 0;
        while (pos_ < src_.size() && std::isdigit((unsigned char)src_[pos_])) {
          v = v * 10 + (src_[pos_++] - '0');
          if (v > kMaxRepeat) error(fmt::format("a repetition count above {}", kMaxRepeat));
        }
        if (pos_ == start) error("expected a number in {m,n}");
        return v;
      };
      min = number();
      skip_space();
      if (pos_ < src_.size() && src_[pos_] == ',') {
        ++pos_;
        skip_space();
        max = pos_ < src_.size() && src_[pos_] == '}' ? -1 : number();
      } else {
        max = min;
      }
      skip_space();
      if (pos_ >= src_.size() || src_[pos_] != '}') error("expected '}'");
      ++pos_;
      if (max >= 0 && max < min) error("{m,n} with n < m");
    }
    n_elements_ += x.size() * size_t(std::max(min, max < 0 ? 1 : max));
    if (n_elements_ > kMaxElements) error("the grammar is too large once its repetitions are expanded");
    for (int i = 0; i < min; ++i) seq.insert(seq.end(), x.begin(), x.end());
    if (max < 0) {
      // R ::= X R | (empty): right recursion, so the stack does not grow.
      const int32_t r = rule_id(rule + "-" + std::to_string(names_.size()));
      defined_[size_t(r)] = true;
      Sequence again = x;
      again.push_back(rule_element(r));
      bodies_[size_t(r)] = {again, {}};
      seq.push_back(rule_element(r));
    } else if (max > min) {
      // (X (X ...)?)?: n - m nested optionals.
      int32_t inner = -1;
      for (int i = 0; i < max - min; ++i) {
        Sequence body = x;
        if (inner >= 0) body.push_back(rule_element(inner));
        inner = new_rule(rule, {body, {}});
      }
      seq.push_back(rule_element(inner));
    }
  }

  // Nullable and productive rules, then left recursion: errors name the rule.
  void check(int32_t root) {
    const size_t n = names_.size();
    std::vector<bool> nullable(n), productive(n);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r)
        for (const Sequence& alt : bodies_[r]) {
          bool null = true, prod = true;
          for (const Element& e : alt) {
            if (e.kind == Element::kChar) null = false;
            if (e.kind == Element::kRule) null = null && nullable[size_t(e.rule)], prod = prod && productive[size_t(e.rule)];
          }
          if (null && !nullable[r]) nullable[r] = changed = true;
          if (prod && !productive[r]) productive[r] = changed = true;
        }
    }
    if (!productive[size_t(root)])
      fail("the grammar accepts no output at all: rule '{}' never ends (every alternative recurses forever)", names_[size_t(root)]);
    // Edges r -> s where s may be expanded at r's left edge without consuming a character.
    std::vector<std::vector<int32_t>> left(n);
    for (size_t r = 0; r < n; ++r)
      for (const Sequence& alt : bodies_[r])
        for (const Element& e : alt) {
          if (e.kind != Element::kRule) break;
          left[r].push_back(e.rule);
          if (!nullable[size_t(e.rule)]) break;
        }
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<int32_t, size_t>> path;
    for (size_t s = 0; s < n; ++s) {
      if (color[s]) continue;
      path.emplace_back(int32_t(s), 0);
      color[s] = 1;
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i < left[size_t(r)].size()) {
          const int32_t next = left[size_t(r)][i++];
          if (color[size_t(next)] == 1)
            fail("the grammar is left-recursive at rule '{}' (a rule that can begin with itself would expand forever; "
                 "rewrite it with repetition, e.g. x ::= y (\",\" y)*)",
                 display_name(next));
          if (color[size_t(next)] == 0) color[size_t(next)] = 1, path.emplace_back(next, 0);
        } else {
          color[size_t(r)] = 2;
          path.pop_back();
        }
      }
    }
  }

  std::string display_name(int32_t r) const {
    // Generated rules are "<rule>-<n>": name the rule the user wrote.
    const std::string& s = names_[size_t(r)];
    const size_t dash = s.rfind('-');
    if (dash != std::string::npos && dash + 1 < s.size() &&
        std::all_of(s.begin() + int64_t(dash) + 1, s.end(), [](char c) { return std::isdigit((unsigned char)c); }) &&
        ids_.count(s.substr(0, dash)))
      return s.substr(0, dash);
    return s;
  }

  std::shared_ptr<const Grammar> flatten(int32_t root) {
    auto g = std::make_shared<Grammar>();
    g->names_ = names_;
    g->root_ = root;
    g->rules_.resize(names_.size());
    for (size_t r = 0; r < names_.size(); ++r)
      for (const Sequence& alt : bodies_[r]) {
        g->rules_[r].push_back(int32_t(g->elements_.size()));
        g->elements_.insert(g->elements_.end(), alt.begin(), alt.end());
        g->elements_.emplace_back();  // kEnd
      }
    // Shortest completions, by fixpoint (every rule reachable here is productive or
    // unused; an unused unproductive one keeps the cap).
    constexpr int32_t kFar = 1 << 28;
    std::vector<int32_t> rule_min(names_.size(), kFar);
    g->min_rest_.assign(g->elements_.size(), kFar);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = g->elements_.size(); i-- > 0;) {
        const Element& e = g->elements_[i];
        const int32_t v = e.kind == Element::kEnd    ? 0
                          : e.kind == Element::kChar ? std::min(kFar, 1 + g->min_rest_[i + 1])
                                                     : std::min(kFar, rule_min[size_t(e.rule)] + g->min_rest_[i + 1]);
        if (v < g->min_rest_[i]) g->min_rest_[i] = v, changed = true;
      }
      for (size_t r = 0; r < names_.size(); ++r)
        for (int32_t start : g->rules_[r])
          if (g->min_rest_[size_t(start)] < rule_min[r]) rule_min[r] = g->min_rest_[size_t(start)], changed = true;
    }
    return g;
  }

  std::string_view src_;
  size_t pos_ = 0;
  int depth_ = 0;
  size_t n_elements_ = 0;
  std::map<std::string, int32_t> ids_;
  std::vector<std::string> names_;
  std::vector<Alternatives> bodies_;
  std::vector<bool> defined_;
};

std::shared_ptr<const Grammar> Grammar::parse(std::string_view gbnf, const std::string& root) {
  return GrammarBuilder(gbnf).build(root);
}

// ---- matching ----

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  for (int32_t start : g_->rules()[size_t(g_->root())]) {
    Stack st;
    if (g_->elements()[size_t(start)].kind != Grammar::Element::kEnd) st.push_back(start);
    expand(std::move(st), state_.stacks);
  }
  std::sort(state_.stacks.begin(), state_.stacks.end());
  state_.stacks.erase(std::unique(state_.stacks.begin(), state_.stacks.end()), state_.stacks.end());
}

void GrammarMatcher::expand(Stack st, std::vector<Stack>& out) const {
  const auto& el = g_->elements();
  for (;;) {
    if (st.empty()) {
      out.push_back(std::move(st));
      return;
    }
    const int32_t top = st.back();
    const Grammar::Element& e = el[size_t(top)];
    if (e.kind == Grammar::Element::kChar) {
      out.push_back(std::move(st));
      return;
    }
    // A rule on top: what follows it stays, and each alternative goes on top.
    st.pop_back();
    if (el[size_t(top) + 1].kind != Grammar::Element::kEnd) st.push_back(top + 1);
    const std::vector<int32_t>& alts = g_->rules()[size_t(e.rule)];
    for (size_t i = 0; i + 1 < alts.size(); ++i) {
      Stack alt = st;
      if (el[size_t(alts[i])].kind != Grammar::Element::kEnd) alt.push_back(alts[i]);
      expand(std::move(alt), out);
      if (out.size() > kMaxStacks) fail("the grammar is too ambiguous to follow (more than {} parses at once)", kMaxStacks);
    }
    if (el[size_t(alts.back())].kind != Grammar::Element::kEnd) st.push_back(alts.back());
  }
}

std::vector<GrammarMatcher::Stack> GrammarMatcher::step_code_point(const std::vector<Stack>& stacks, uint32_t cp) const {
  const auto& el = g_->elements();
  std::vector<Stack> out;
  for (const Stack& st : stacks) {
    if (st.empty() || !el[size_t(st.back())].matches(cp)) continue;
    Stack next = st;
    const int32_t top = next.back();
    next.pop_back();
    if (el[size_t(top) + 1].kind != Grammar::Element::kEnd) next.push_back(top + 1);
    expand(std::move(next), out);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > kMaxStacks) fail("the grammar is too ambiguous to follow (more than {} parses at once)", kMaxStacks);
  return out;
}

bool GrammarMatcher::step_byte(State& s, uint8_t b) const {
  // A character begun: some parse must accept a character that starts so.
  auto some_parse_wants = [&](const State& st) {
    const int shift = 6 * st.partial_left;
    static constexpr uint32_t kMinOfLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    const uint32_t lo = std::max(st.partial << shift, kMinOfLength[st.partial_len]);
    const uint32_t hi = std::min((st.partial << shift) | ((1u << shift) - 1), 0x10FFFFu);
    if (lo > hi) return false;  // an overlong or out-of-range encoding
    if (lo >= 0xD800 && hi <= 0xDFFF) return false;  // only surrogates can follow
    for (const Stack& k : st.stacks)
      if (!k.empty() && g_->elements()[size_t(k.back())].matches_any(lo, hi)) return true;
    return false;
  };
  if (s.partial_left > 0) {
    if ((b & 0xC0) != 0x80) return false;
    s.partial = (s.partial << 6) | (b & 0x3F);
    if (--s.partial_left > 0) return some_parse_wants(s);
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (s.partial < kMin[s.partial_len] || s.partial > 0x10FFFF || (s.partial >= 0xD800 && s.partial <= 0xDFFF))
      return false;  // overlong, beyond Unicode, or a surrogate: not UTF-8
    s.stacks = step_code_point(s.stacks, s.partial);
    return !s.stacks.empty();
  }
  if (b < 0x80) {
    s.stacks = step_code_point(s.stacks, b);
    return !s.stacks.empty();
  }
  if ((b & 0xE0) == 0xC0) s.partial = b & 0x1F, s.partial_left = 1;
  else if ((b & 0xF0) == 0xE0) s.partial = b & 0x0F, s.partial_left = 2;
  else if ((b & 0xF8) == 0xF0) s.partial = b & 0x07, s.partial_left = 3;
  else return false;  // not a UTF-8 lead byte
  s.partial_len = s.partial_left + 1;
  return some_parse_wants(s);
}

bool GrammarMatcher::accepts(std::string_view bytes) const {
  if (bytes.empty()) return false;
  State s = state_;
  for (char c : bytes)
    if (!step_byte(s, uint8_t(c))) return false;
  return true;
}

bool GrammarMatcher::advance(std::string_view bytes) {
  if (bytes.empty()) return false;
  State s = state_;
  for (char c : bytes)
    if (!step_byte(s, uint8_t(c))) return false;
  state_ = std::move(s);
  return true;
}

bool GrammarMatcher::can_end() const {
  if (state_.partial_left > 0) return false;
  for (const Stack& st : state_.stacks)
    if (st.empty()) return true;
  return false;
}

bool GrammarMatcher::must_end() const {
  if (state_.partial_left > 0) return false;
  for (const Stack& st : state_.stacks)
    if (!st.empty()) return false;
  return true;
}

int32_t GrammarMatcher::distance(const State& s) const {
  int32_t best = 1 << 30;
  uint32_t lo = 0, hi = 0;
  if (s.partial_left > 0) {  // only the parses that can take the character begun count
    const int shift = 6 * s.partial_left;
    lo = s.partial << shift, hi = lo | ((1u << shift) - 1);
  }
  for (const Stack& st : s.stacks) {
    if (s.partial_left > 0 && (st.empty() || !g_->elements()[size_t(st.back())].matches_any(lo, hi))) continue;
    int64_t d = 0;
    for (int32_t pos : st) d += g_->min_rest(pos);
    best = int32_t(std::min<int64_t>(best, d));
  }
  // The character begun counts once above, but its missing bytes may take a token
  // each (every vocabulary has single-byte tokens; not every one has the pairs).
  if (s.partial_left > 1 && best < (1 << 30)) best += s.partial_left - 1;
  return best;
}

void GrammarMatcher::walk(const TokenTrie& trie, int32_t node, const State& s, std::vector<bool>* allowed, int32_t below) const {
  const TokenTrie::Node& n = trie.nodes()[size_t(node)];
  if (!n.tokens.empty() && (below < 0 || distance(s) <= below))
    for (int32_t t : n.tokens) (*allowed)[size_t(t)] = true;
  for (const auto& [byte, child] : n.children) {
    State next = s;
    if (step_byte(next, byte)) walk(trie, child, next, allowed, below);
  }
}

int32_t GrammarMatcher::distance_after(std::string_view bytes) const {
  if (bytes.empty()) return -1;
  State s = state_;
  for (char c : bytes)
    if (!step_byte(s, uint8_t(c))) return -1;
  return distance(s);
}

void GrammarMatcher::allowed_tokens(const TokenTrie& trie, std::vector<bool>* allowed, int32_t max_distance) const {
  allowed->assign(trie.n_tokens(), false);
  const int32_t below = max_distance;
  // The root holds no token (empty pieces are never allowed).
  const TokenTrie::Node& root = trie.nodes()[0];
  for (const auto& [byte, child] : root.children) {
    State next = state_;
    if (step_byte(next, byte)) walk(trie, child, next, allowed, below);
  }
}

GrammarMatcher::TokenTrie::TokenTrie(const std::vector<std::string>& pieces) : n_tokens_(pieces.size()) {
  std::vector<int32_t> order;
  for (size_t i = 0; i < pieces.size(); ++i)
    if (!pieces[i].empty()) order.push_back(int32_t(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return pieces[size_t(a)] < pieces[size_t(b)]; });
  nodes_.emplace_back();
  // Sorted pieces: a node's tokens are a run, then one run per next byte. Iterative,
  // with an explicit stack: (node, depth, range).
  struct Work {
    int32_t node;
    size_t depth, lo, hi;
  };
  std::vector<Work> work{{0, 0, 0, order.size()}};
  while (!work.empty()) {
    const Work w = work.back();
    work.pop_back();
    size_t i = w.lo;
    while (i < w.hi && pieces[size_t(order[i])].size() == w.depth) nodes_[size_t(w.node)].tokens.push_back(order[i++]);
    while (i < w.hi) {
      const uint8_t b = uint8_t(pieces[size_t(order[i])][w.depth]);
      size_t j = i;
      while (j < w.hi && uint8_t(pieces[size_t(order[j])][w.depth]) == b) ++j;
      const int32_t child = int32_t(nodes_.size());
      nodes_.emplace_back();
      nodes_[size_t(w.node)].children.emplace_back(b, child);
      work.push_back({child, w.depth + 1, i, j});
      i = j;
    }
  }
}

}  // namespace jevons
