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
//
// The pushdown automaton is followed as a DFA built lazily (NOTES.md, "Constrained
// decoding cost"): stacks are interned as nodes (a position on top of a parent stack),
// a state (a set of stacks and a character begun) is interned once, and each (state,
// byte) transition is computed once and then looked up. A token mask is then a walk of
// the vocabulary's byte trie with one table lookup per trie node, and masks of a state
// already seen are reused.
class GrammarMatcher {
 public:
  static constexpr size_t kMaxStacks = 4096;  // beyond: the grammar is too ambiguous to follow

  explicit GrammarMatcher(std::shared_ptr<const Grammar> g);
  ~GrammarMatcher();
  GrammarMatcher(GrammarMatcher&&) noexcept;
  GrammarMatcher& operator=(GrammarMatcher&&) noexcept;

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
  int32_t distance() const;

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

 private:
  class Automaton;  // the interned stacks and states, and the transitions found so far
  int32_t follow(std::string_view bytes) const;  // the state after these bytes, or -1
  void walk(const TokenTrie& trie, int32_t node, int32_t state, std::vector<bool>* allowed, int32_t below,
            int32_t* max_distance) const;

  std::unique_ptr<Automaton> a_;  // grows as the output is followed (caches: logically const)
  int32_t state_ = 0;
};

// The vocabulary as a byte trie, built once per tokenizer; flat arrays, a node's
// children numbered consecutively.
class GrammarMatcher::TokenTrie {
 public:
  explicit TokenTrie(const std::vector<std::string>& pieces);
  struct Node {
    int32_t first_child = 0, n_children = 0;  // nodes first_child .. first_child + n_children - 1
    int32_t first_token = 0, n_tokens = 0;    // tokens()[first_token ..]: tokens whose bytes end here
    uint8_t byte = 0;                         // the byte that leads here from the parent
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  size_t n_tokens() const { return n_tokens_; }

 private:
  std::vector<Node> nodes_;
  std::vector<int32_t> tokens_;
  size_t n_tokens_ = 0;
};

}  // namespace jevons
