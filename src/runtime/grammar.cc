#include "runtime/grammar.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <unordered_map>

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

class GrammarMatcher::Automaton {
 public:
  static constexpr int32_t kUnknown = -2, kDead = -1;
  static constexpr int32_t kFar = 1 << 29;  // distance of a stack that cannot be emptied

  explicit Automaton(std::shared_ptr<const Grammar> g) : g_(std::move(g)) { reset(); }

  // The start state: the root rule's alternatives, expanded.
  int32_t start() {
    std::vector<int32_t> stacks;
    for (int32_t alt : g_->rules()[size_t(g_->root())])
      expand(g_->elements()[size_t(alt)].kind != Element::kEnd ? push(kEmptyStack, alt) : kEmptyStack, stacks);
    sort_unique(stacks);
    return intern(std::move(stacks), 0, 0, 0);
  }

  // The state after byte b, or kDead.
  int32_t next(int32_t state, uint8_t b) {
    const int32_t known = next_[size_t(state) * 256 + b];
    if (known != kUnknown) return known;
    const int32_t to = compute_next(state, b);
    next_[size_t(state) * 256 + b] = to;
    return to;
  }

  struct State {
    std::vector<int32_t> stacks;  // interned stacks, sorted
    uint32_t partial = 0;         // a UTF-8 character begun but not ended
    int8_t partial_left = 0;      // its continuation bytes still to come
    int8_t partial_len = 0;       // its length in bytes (to refuse overlong encodings)
    int32_t distance = kFar;      // GrammarMatcher::distance()
    bool can_end = false, must_end = false;
  };
  const State& state(int32_t id) const { return states_[size_t(id)]; }

  // Masks already computed, for states whose every allowed token ends within the
  // budget asked for (most of them: a budget matters only near its end).
  struct Mask {
    const TokenTrie* trie = nullptr;
    std::vector<bool> allowed;
    int32_t max_distance = 0;  // the largest distance() after an allowed token
  };
  const Mask* mask(int32_t state, const TokenTrie& trie) const {
    auto it = masks_.find(state);
    return it == masks_.end() || it->second.trie != &trie ? nullptr : &it->second;
  }
  void keep_mask(int32_t state, Mask m) {
    if (masks_.size() >= kMaxMasks) masks_.clear();
    masks_.insert_or_assign(state, std::move(m));
  }

  // Growth is bounded: beyond these sizes everything is forgotten except the state
  // `keep`, whose new id is returned (ids held elsewhere become invalid).
  int32_t compact_if_large(int32_t keep) {
    if (nodes_.size() < kMaxNodes && states_.size() < kMaxStates) return keep;
    std::vector<std::vector<int32_t>> stacks;  // bottom to top, as positions
    for (int32_t id : states_[size_t(keep)].stacks) {
      std::vector<int32_t> st;
      for (int32_t n = id; n != kEmptyStack; n = nodes_[size_t(n)].parent) st.push_back(nodes_[size_t(n)].pos);
      std::reverse(st.begin(), st.end());
      stacks.push_back(std::move(st));
    }
    const State old = states_[size_t(keep)];
    reset();
    std::vector<int32_t> ids;
    for (const auto& st : stacks) {
      int32_t id = kEmptyStack;
      for (int32_t pos : st) id = push(id, pos);
      ids.push_back(id);
    }
    sort_unique(ids);
    return intern(std::move(ids), old.partial, old.partial_left, old.partial_len);
  }

 private:
  using Element = Grammar::Element;
  static constexpr int32_t kEmptyStack = 0;
  static constexpr size_t kMaxNodes = size_t(1) << 20, kMaxStates = size_t(1) << 13, kMaxMasks = 64;

  struct Node {
    int32_t pos = -1, parent = -1;  // the position on top, and the stack below it
    int32_t distance = 0;           // code points to empty the stack, at least
    int32_t succ_begin = -1, succ_end = -1;  // successors_[..]: the stacks after its top character
  };

  void reset() {
    nodes_.assign(1, Node{});  // the empty stack
    node_of_.clear();
    successors_.clear();
    states_.clear();
    state_of_.clear();
    next_.clear();
    masks_.clear();
  }

  int32_t push(int32_t parent, int32_t pos) {
    const uint64_t key = (uint64_t(uint32_t(pos)) << 32) | uint32_t(parent);
    auto [it, fresh] = node_of_.try_emplace(key, int32_t(nodes_.size()));
    if (fresh) {
      Node n;
      n.pos = pos, n.parent = parent;
      n.distance = std::min<int64_t>(kFar, int64_t(g_->min_rest(pos)) + nodes_[size_t(parent)].distance);
      nodes_.push_back(n);
    }
    return it->second;
  }

  // A rule on top is replaced by each of its alternatives, until characters are on top.
  void expand(int32_t st, std::vector<int32_t>& out) {
    const auto& el = g_->elements();
    for (;;) {
      if (st == kEmptyStack) break;
      const int32_t top = nodes_[size_t(st)].pos;
      const Element& e = el[size_t(top)];
      if (e.kind == Element::kChar) break;
      // What follows the rule stays, and each alternative goes on top.
      st = nodes_[size_t(st)].parent;
      if (el[size_t(top) + 1].kind != Element::kEnd) st = push(st, top + 1);
      const std::vector<int32_t>& alts = g_->rules()[size_t(e.rule)];
      for (size_t i = 0; i + 1 < alts.size(); ++i) {
        expand(el[size_t(alts[i])].kind != Element::kEnd ? push(st, alts[i]) : st, out);
        if (out.size() > kMaxStacks) fail("the grammar is too ambiguous to follow (more than {} parses at once)", kMaxStacks);
      }
      if (el[size_t(alts.back())].kind != Element::kEnd) st = push(st, alts.back());
    }
    out.push_back(st);
  }

  // The stacks after the character on top of `st` is matched (whatever the character).
  std::pair<int32_t, int32_t> successors(int32_t st) {
    if (nodes_[size_t(st)].succ_begin < 0) {
      const int32_t top = nodes_[size_t(st)].pos;
      int32_t rest = nodes_[size_t(st)].parent;
      if (g_->elements()[size_t(top) + 1].kind != Element::kEnd) rest = push(rest, top + 1);
      std::vector<int32_t> out;
      expand(rest, out);
      sort_unique(out);
      nodes_[size_t(st)].succ_begin = int32_t(successors_.size());
      successors_.insert(successors_.end(), out.begin(), out.end());
      nodes_[size_t(st)].succ_end = int32_t(successors_.size());
    }
    return {nodes_[size_t(st)].succ_begin, nodes_[size_t(st)].succ_end};
  }

  static void sort_unique(std::vector<int32_t>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  }

  std::vector<int32_t> step_code_point(const std::vector<int32_t>& stacks, uint32_t cp) {
    std::vector<int32_t> out;
    for (int32_t st : stacks) {
      if (st == kEmptyStack || !g_->elements()[size_t(nodes_[size_t(st)].pos)].matches(cp)) continue;
      const auto [b, e] = successors(st);
      out.insert(out.end(), successors_.begin() + b, successors_.begin() + e);
    }
    sort_unique(out);
    if (out.size() > kMaxStacks) fail("the grammar is too ambiguous to follow (more than {} parses at once)", kMaxStacks);
    return out;
  }

  // Some parse accepts a character that starts with the bytes begun.
  bool some_parse_wants(const std::vector<int32_t>& stacks, uint32_t partial, int left, int len) const {
    static constexpr uint32_t kMinOfLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    const int shift = 6 * left;
    const uint32_t lo = std::max(partial << shift, kMinOfLength[len]);
    const uint32_t hi = std::min((partial << shift) | ((1u << shift) - 1), 0x10FFFFu);
    if (lo > hi) return false;                       // an overlong or out-of-range encoding
    if (lo >= 0xD800 && hi <= 0xDFFF) return false;  // only surrogates can follow
    for (int32_t st : stacks)
      if (st != kEmptyStack && g_->elements()[size_t(nodes_[size_t(st)].pos)].matches_any(lo, hi)) return true;
    return false;
  }

  int32_t compute_next(int32_t state, uint8_t b) {
    const State s = states_[size_t(state)];  // a copy: interning may move states_
    if (s.partial_left > 0) {
      if ((b & 0xC0) != 0x80) return kDead;
      const uint32_t partial = (s.partial << 6) | (b & 0x3F);
      const int left = s.partial_left - 1;
      if (left > 0)
        return some_parse_wants(s.stacks, partial, left, s.partial_len) ? intern(s.stacks, partial, left, s.partial_len)
                                                                          : kDead;
      static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
      if (partial < kMin[s.partial_len] || partial > 0x10FFFF || (partial >= 0xD800 && partial <= 0xDFFF))
        return kDead;  // overlong, beyond Unicode, or a surrogate: not UTF-8
      std::vector<int32_t> stacks = step_code_point(s.stacks, partial);
      return stacks.empty() ? kDead : intern(std::move(stacks), 0, 0, 0);
    }
    if (b < 0x80) {
      std::vector<int32_t> stacks = step_code_point(s.stacks, b);
      return stacks.empty() ? kDead : intern(std::move(stacks), 0, 0, 0);
    }
    uint32_t partial;
    int left;
    if ((b & 0xE0) == 0xC0) partial = b & 0x1F, left = 1;
    else if ((b & 0xF0) == 0xE0) partial = b & 0x0F, left = 2;
    else if ((b & 0xF8) == 0xF0) partial = b & 0x07, left = 3;
    else return kDead;  // not a UTF-8 lead byte
    return some_parse_wants(s.stacks, partial, left, left + 1) ? intern(s.stacks, partial, left, left + 1) : kDead;
  }

  int32_t intern(std::vector<int32_t> stacks, uint32_t partial, int left, int len) {
    std::string key(stacks.size() * sizeof(int32_t) + 8, '\0');
    std::memcpy(key.data(), stacks.data(), stacks.size() * sizeof(int32_t));
    const uint32_t tail[2] = {partial, uint32_t(left) | uint32_t(len) << 8};
    std::memcpy(key.data() + stacks.size() * sizeof(int32_t), tail, 8);
    auto [it, fresh] = state_of_.try_emplace(std::move(key), int32_t(states_.size()));
    if (!fresh) return it->second;
    State s;
    s.stacks = std::move(stacks);
    s.partial = partial, s.partial_left = int8_t(left), s.partial_len = int8_t(len);
    // distance(): only the parses that can take the character begun count; its missing
    // bytes beyond the first may take a token each (every vocabulary has single-byte
    // tokens; not every one has the pairs).
    uint32_t lo = 0, hi = 0;
    if (left > 0) lo = partial << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
    for (int32_t st : s.stacks) {
      if (left > 0 && (st == kEmptyStack || !g_->elements()[size_t(nodes_[size_t(st)].pos)].matches_any(lo, hi))) continue;
      s.distance = std::min(s.distance, nodes_[size_t(st)].distance);
    }
    if (left > 1 && s.distance < kFar) s.distance += left - 1;
    s.can_end = left == 0 && std::find(s.stacks.begin(), s.stacks.end(), kEmptyStack) != s.stacks.end();
    s.must_end = left == 0 && std::all_of(s.stacks.begin(), s.stacks.end(), [](int32_t st) { return st == kEmptyStack; });
    states_.push_back(std::move(s));
    next_.resize(states_.size() * 256, kUnknown);
    return it->second;
  }

  std::shared_ptr<const Grammar> g_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> node_of_;  // (pos, parent) -> node
  std::vector<int32_t> successors_;
  std::vector<State> states_;
  std::unordered_map<std::string, int32_t> state_of_;  // stacks and character begun -> state
  std::vector<int32_t> next_;                          // [state * 256 + byte]: a state, kDead or kUnknown
  std::unordered_map<int32_t, Mask> masks_;
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> g) : a_(std::make_unique<Automaton>(std::move(g))) {
  state_ = a_->start();
}
GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(GrammarMatcher&&) noexcept = default;
GrammarMatcher& GrammarMatcher::operator=(GrammarMatcher&&) noexcept = default;

int32_t GrammarMatcher::follow(std::string_view bytes) const {
  if (bytes.empty()) return -1;
  int32_t s = state_;
  for (char c : bytes)
    if ((s = a_->next(s, uint8_t(c))) < 0) return -1;
  return s;
}

bool GrammarMatcher::accepts(std::string_view bytes) const { return follow(bytes) >= 0; }

bool GrammarMatcher::advance(std::string_view bytes) {
  state_ = a_->compact_if_large(state_);
  const int32_t s = follow(bytes);
  if (s < 0) return false;
  state_ = s;
  return true;
}

bool GrammarMatcher::can_end() const { return a_->state(state_).can_end; }
bool GrammarMatcher::must_end() const { return a_->state(state_).must_end; }
int32_t GrammarMatcher::distance() const { return a_->state(state_).distance; }

int32_t GrammarMatcher::distance_after(std::string_view bytes) const {
  const int32_t s = follow(bytes);
  return s < 0 ? -1 : a_->state(s).distance;
}

void GrammarMatcher::walk(const TokenTrie& trie, int32_t node, int32_t state, std::vector<bool>* allowed, int32_t below,
                          int32_t* max_distance) const {
  const TokenTrie::Node& n = trie.nodes()[size_t(node)];
  if (n.n_tokens > 0) {
    const int32_t d = a_->state(state).distance;
    if (below < 0 || d <= below)
      for (int32_t i = n.first_token; i < n.first_token + n.n_tokens; ++i) (*allowed)[size_t(trie.tokens()[size_t(i)])] = true;
    *max_distance = std::max(*max_distance, d);
  }
  for (int32_t c = n.first_child; c < n.first_child + n.n_children; ++c) {
    const int32_t next = a_->next(state, trie.nodes()[size_t(c)].byte);
    if (next >= 0) walk(trie, c, next, allowed, below, max_distance);
  }
}

void GrammarMatcher::allowed_tokens(const TokenTrie& trie, std::vector<bool>* allowed, int32_t max_distance) const {
  // A mask kept for this state serves any budget that all its tokens meet.
  if (const Automaton::Mask* m = a_->mask(state_, trie); m && (max_distance < 0 || m->max_distance <= max_distance)) {
    *allowed = m->allowed;
    return;
  }
  allowed->assign(trie.n_tokens(), false);
  int32_t worst = 0;
  walk(trie, 0, state_, allowed, max_distance, &worst);  // the root holds no token (empty pieces never count)
  if (max_distance < 0 || worst <= max_distance) a_->keep_mask(state_, Automaton::Mask{&trie, *allowed, worst});
}

GrammarMatcher::TokenTrie::TokenTrie(const std::vector<std::string>& pieces) : n_tokens_(pieces.size()) {
  std::vector<int32_t> order;
  for (size_t i = 0; i < pieces.size(); ++i)
    if (!pieces[i].empty()) order.push_back(int32_t(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return pieces[size_t(a)] < pieces[size_t(b)]; });
  nodes_.emplace_back();
  // Sorted pieces: a node's tokens are a run, then one run per next byte. Breadth
  // first, so that a node's children are created together and numbered consecutively.
  struct Work {
    int32_t node;
    size_t depth, lo, hi;
  };
  std::vector<Work> work{{0, 0, 0, order.size()}};
  for (size_t w_at = 0; w_at < work.size(); ++w_at) {
    const Work w = work[w_at];
    size_t i = w.lo;
    nodes_[size_t(w.node)].first_token = int32_t(tokens_.size());
    while (i < w.hi && pieces[size_t(order[i])].size() == w.depth) tokens_.push_back(order[i++]);
    nodes_[size_t(w.node)].n_tokens = int32_t(tokens_.size()) - nodes_[size_t(w.node)].first_token;
    nodes_[size_t(w.node)].first_child = int32_t(nodes_.size());
    while (i < w.hi) {
      const uint8_t b = uint8_t(pieces[size_t(order[i])][w.depth]);
      size_t j = i;
      while (j < w.hi && uint8_t(pieces[size_t(order[j])][w.depth]) == b) ++j;
      const int32_t child = int32_t(nodes_.size());
      nodes_.emplace_back();
      nodes_.back().byte = b;
      ++nodes_[size_t(w.node)].n_children;
      work.push_back({child, w.depth + 1, i, j});
      i = j;
    }
  }
}

}  // namespace jevons
