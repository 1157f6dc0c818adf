// Grammars that constrain sampling: llama.cpp's GBNF, compiled to a pushdown
// automaton over Unicode code points, and the matcher that follows one output.
//
// GBNF (llama.cpp grammars/README.md): rules `name ::= alternatives`; an
// alternative is a sequence of "literals" (escapes \n \t \r \\ \" \xHH \uHHHH
// \UHHHHHHHH), [character classes] (ranges a-z, [^...] negated), `.` (any
// character), rule names, ( groups ), each optionally followed by *, +, ? or
// {m}, {m,}, {m,n}; `#` comments. The root rule is `root`.
//
// The automaton (as llama.cpp's): every alternative is a run of elements ending in
// kEnd; a *stack* holds the positions still to match, innermost on top; a state of the
// matcher is the set of stacks whose tops are characters to match (a rule reference
// on top is replaced by each of its alternatives). An empty stack means the output
// may end here. Repetitions become right-recursive helper rules, so stacks grow only
// with real nesting. Compile-time checks make every grammar safe to run: undefined
// rules, left recursion (which would expand forever), a language with no finite
// string, and size limits are errors.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jevons {

class Grammar {
 public:
  // Parses GBNF; `root` names the start rule. Throws Error with the line and column
  // of a syntax error, or the name of a rule that is undefined, left-recursive or
  // derives no finite string.
  static std::shared_ptr<const Grammar> parse(std::string_view gbnf, const std::string& root = "root");

  struct Element {
    enum Kind : uint8_t { kEnd, kChar, kRule } kind = kEnd;
    bool negated = false;                               // kChar: any code point *not* in ranges
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // kChar: inclusive code point ranges
    int32_t rule = -1;                                  // kRule
    bool matches(uint32_t cp) const;
    bool matches_any(uint32_t lo, uint32_t hi) const;  // some code point in [lo, hi]
  };
  const std::vector<Element>& elements() const { return elements_; }
  // Start positions of each rule's alternatives.
  const std::vector<std::vector<int32_t>>& rules() const { return rules_; }
  const std::string& rule_name(int32_t r) const { return names_[size_t(r)]; }
  int32_t root() const { return root_; }
  // The fewest code points that complete the run from position `pos` to its kEnd.
  int32_t min_rest(int32_t pos) const { return min_rest_[size_t(pos)]; }

 private:
  friend class GrammarBuilder;
  std::vector<Element> elements_;
  std::vector<std::vector<int32_t>> rules_;
  std::vector<std::string> names_;
  std::vector<int32_t> min_rest_;
  int32_t root_ = -1;
};

// Follows one output through a grammar, byte by byte (tokens may end inside a UTF-8
// character: the bytes wait until the character is whole).
class GrammarMatcher {
 public:
  static constexpr size_t kMaxStacks = 4096;  // beyond: the grammar is too ambiguous to follow

  explicit GrammarMatcher(std::shared_ptr<const Grammar> g);

  // Whether these bytes may come next (the state is unchanged).
  bool accepts(std::string_view bytes) const;
  // Consumes them; false (and the state unchanged) when they may not come next.
  bool advance(std::string_view bytes);
  // The output may end here (an empty stack is among the states).
  bool can_end() const;
  // Nothing may follow: the output is complete.
  bool must_end() const;
  // The fewest code points that would complete the output from here (0: it may end),
  // plus the bytes still missing from a character begun beyond its first: a bound on
  // the tokens needed when every token can bring it one step nearer.
  int32_t distance() const { return distance(state_); }

  // Candidates: whether each of `pieces` (indexed by token id; empty = never allowed)
  // may come next, found by walking a trie of them so that a shared prefix is
  // matched once. Tokens are visited only below prefixes the grammar allows.
  class TokenTrie;
  // max_distance >= 0: only tokens after which distance() is at most that (a budget
  // running out: with max_distance = the tokens left after this one, and each
  // remaining token able to bring the end nearer, the output completes in time).
  void allowed_tokens(const TokenTrie& trie, std::vector<bool>* allowed, int32_t max_distance = -1) const;
  // distance() after these bytes, or -1 when they may not come next.
  int32_t distance_after(std::string_view bytes) const;

  using Stack = std::vector<int32_t>;
  struct State {
    std::vector<Stack> stacks;
    uint32_t partial = 0;  // a UTF-8 character begun but not ended
    int partial_left = 0;  // its continuation bytes still to come
    int partial_len = 0;   // its length in bytes (to refuse overlong encodings)
  };

 private:
  bool step_byte(State& s, uint8_t b) const;
  void expand(Stack st, std::vector<Stack>& out) const;
  std::vector<Stack> step_code_point(const std::vector<Stack>& stacks, uint32_t cp) const;
  void walk(const TokenTrie& trie, int32_t node, const State& s, std::vector<bool>* allowed, int32_t below) const;
  int32_t distance(const State& s) const;

  std::shared_ptr<const Grammar> g_;
  State state_;
};

// The vocabulary as a byte trie, built once per tokenizer.
class GrammarMatcher::TokenTrie {
 public:
  explicit TokenTrie(const std::vector<std::string>& pieces);
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    std::vector<int32_t> tokens;                        // tokens whose bytes end here
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  size_t n_tokens() const { return n_tokens_; }

 private:
  std::vector<Node> nodes_;
  size_t n_tokens_ = 0;
};

}  // namespace jevons
