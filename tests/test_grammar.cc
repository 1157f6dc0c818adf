// GBNF grammars: parsing, errors a user can act on, matching, token masks.
#include <gtest/gtest.h>

#include "core/error.h"
#include "runtime/grammar.h"

namespace jevons {
namespace {

bool matches(const std::string& gbnf, const std::string& text) {
  GrammarMatcher m(Grammar::parse(gbnf));
  return m.advance(text) && m.can_end();
}

std::string error_of(const std::string& gbnf) {
  try {
    Grammar::parse(gbnf);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Grammar, MatchesWhatItDescribes) {
  const std::string date = R"(root ::= year "-" month "-" day
year ::= [0-9]{4}
month ::= "0" [1-9] | "1" [0-2]
day ::= [0-2] [0-9] | "3" [01])";
  EXPECT_TRUE(matches(date, "2026-12-05"));
  EXPECT_FALSE(matches(date, "2026-13-05"));
  EXPECT_FALSE(matches(date, "2026-12-5"));
  EXPECT_FALSE(matches(date, "2026-12-05x"));
  const std::string words = "root ::= word (\" \" word){2}  # three words\nword ::= [a-z]+";
  EXPECT_TRUE(matches(words, "red green blue"));
  EXPECT_FALSE(matches(words, "red green"));
  EXPECT_FALSE(matches(words, "red green blue violet"));
  // Alternatives across lines, groups, ?, *, ., negated classes, escapes, {m,}.
  const std::string g = R"(root ::= "a"
  | "b" item*
item ::= ( "x" | [^a-z\n] )? "."
)";
  EXPECT_TRUE(matches(g, "a"));
  EXPECT_TRUE(matches(g, "b"));
  EXPECT_TRUE(matches(g, "bx..Q."));
  EXPECT_FALSE(matches(g, "bq."));
  EXPECT_TRUE(matches(R"(root ::= "\x41\u00e9\n" . [\]] "z"{2,})", "A\xc3\xa9\n\xe2\x82\xac]zzz"));
  EXPECT_FALSE(matches(R"(root ::= "z"{2,})", "z"));
}

TEST(Grammar, EndStatesAndDistance) {
  GrammarMatcher m(Grammar::parse("root ::= \"{\" [a-z]* \"}\""));
  EXPECT_FALSE(m.can_end());
  EXPECT_EQ(m.distance(), 2);
  EXPECT_TRUE(m.advance("{ab"));
  EXPECT_EQ(m.distance(), 1);
  EXPECT_FALSE(m.accepts("{"));
  EXPECT_FALSE(m.advance("1"));  // refused, state unchanged
  EXPECT_TRUE(m.advance("}"));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.must_end());
  EXPECT_EQ(m.distance(), 0);
}

TEST(Grammar, Utf8SplitAcrossTokens) {
  GrammarMatcher m(Grammar::parse("root ::= \"\xc3\xa9\" \"!\""));  // é!
  EXPECT_TRUE(m.accepts("\xc3"));      // a character's first byte: may become é
  EXPECT_FALSE(m.accepts("\xc3\xa8"));  // è
  // A 3-byte character begun with one byte: two more bytes may take two tokens.
  GrammarMatcher euro(Grammar::parse("root ::= [\u20ac] \"!\""));
  EXPECT_EQ(euro.distance(), 2);
  EXPECT_EQ(euro.distance_after("\xe2"), 3);
  EXPECT_EQ(euro.distance_after("\xe2\x82"), 2);
  EXPECT_EQ(euro.distance_after("\xe2\x82\xac"), 1);
  EXPECT_TRUE(m.advance("\xc3"));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.advance("\xa9!"));
  EXPECT_TRUE(m.must_end());
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= [a-z]")).accepts("\xff"));
  // Overlong encodings and surrogates are not UTF-8 (a JSON parser refuses them).
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= \" \"")).accepts("\xc0\xa0"));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= .")).accepts("\xe0\x80\xa0"));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= .")).accepts("\xed\xa0\x80"));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= .")).accepts("\xed\xa0"));  // a surrogate is all that could follow
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= .")).accepts("\xf4\x90\x80\x80"));
  // A first byte no allowed character begins with is refused at once (no dead end later).
  EXPECT_FALSE(GrammarMatcher(Grammar::parse("root ::= [a-z]")).accepts("\xc3"));
  EXPECT_TRUE(GrammarMatcher(Grammar::parse("root ::= [^a-z]")).accepts("\xc3"));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse(R"(root ::= [\u00e0-\u00ff])")).accepts("\xe2\x82"));
  EXPECT_TRUE(GrammarMatcher(Grammar::parse(R"(root ::= [\u20ac])")).accepts("\xe2\x82"));
  EXPECT_FALSE(GrammarMatcher(Grammar::parse(R"(root ::= [^\x00-\U0010FFFF]?)")).accepts("\xc3"));
}

TEST(Grammar, TokenMaskEqualsTokenByTokenChecks) {
  const std::vector<std::string> pieces = {"", "{", "}", "{\"", "\"", "a", "ab", "abc\"", "\xc3", "\xa9", " ", "1", "\"}", "b"};
  const GrammarMatcher::TokenTrie trie(pieces);
  GrammarMatcher m(Grammar::parse(R"(root ::= "{" "\"" [a-z\u00e9]* "\"" "}")"));
  for (const std::string& step : std::vector<std::string>{"", "{", "\"ab", "\xc3"}) {
    ASSERT_TRUE(step.empty() || m.advance(step)) << step;
    std::vector<bool> allowed;
    m.allowed_tokens(trie, &allowed);
    for (size_t t = 0; t < pieces.size(); ++t) EXPECT_EQ(allowed[t], m.accepts(pieces[t])) << "after '" << step << "' token " << t;
  }
  // Closing: only tokens that bring the end nearer.
  GrammarMatcher c(Grammar::parse(R"(root ::= "{" "\"" [a-z]* "\"" "}")"));
  ASSERT_TRUE(c.advance("{\"a"));
  std::vector<bool> allowed;
  c.allowed_tokens(trie, &allowed, /*max_distance=*/c.distance() - 1);
  EXPECT_FALSE(allowed[5]);   // "a": no nearer
  EXPECT_TRUE(allowed[4]);    // "\""
  EXPECT_TRUE(allowed[12]);   // "\"}"
  EXPECT_TRUE(allowed[7]);    // "abc\"": the quote is nearer
}

// Masks are kept per state and reused: a kept mask must equal a fresh walk, under any
// budget, at every step of an output that revisits states.
TEST(Grammar, KeptMasksEqualFreshOnes) {
  const std::vector<std::string> pieces = {"[", "]", ",", "\"", "a", "ab", "a\"", "\",", "\"]", "1", "12", " ", "\xc3", "\xa9", "b\xc3"};
  const GrammarMatcher::TokenTrie trie(pieces);
  const auto g = Grammar::parse(R"(root ::= "[" item ("," item)* "]"
item ::= "\"" [ab\u00e9]{2,} "\"" | [0-9]+)");
  GrammarMatcher kept(g);
  std::string out;
  for (const std::string& step : {"[", "\"", "ab", "a", "\",", "1", "2", ",", "\"", "b\xc3", "\xa9", "a", "\"", ",", "12"}) {
    ASSERT_TRUE(kept.advance(step)) << out << " + " << step;
    out += step;
    GrammarMatcher fresh(g);
    ASSERT_TRUE(fresh.advance(out));
    for (int32_t budget : {-1, 40, kept.distance(), kept.distance() - 1 + 1, 1, 0}) {
      std::vector<bool> a, b;
      kept.allowed_tokens(trie, &a, budget);
      kept.allowed_tokens(trie, &a, budget);  // the second from the kept mask where it applies
      fresh.allowed_tokens(trie, &b, budget);
      EXPECT_EQ(a, b) << "after '" << out << "' with budget " << budget;
      for (size_t t = 0; t < pieces.size(); ++t) {
        const int32_t d = fresh.distance_after(pieces[t]);
        EXPECT_EQ(b[t], d >= 0 && (budget < 0 || d <= budget)) << "after '" << out << "' token '" << pieces[t] << "'";
      }
    }
  }
}

// A long output visits more states than the matcher keeps; it forgets them and goes on
// from where it is.
TEST(Grammar, LongOutputsOutgrowTheCaches) {
  GrammarMatcher m(Grammar::parse("root ::= [a-z]{10000} [a-z]{10000} \"!\""));
  for (int i = 0; i < 20000; ++i) {
    ASSERT_EQ(m.distance(), 20001 - i);
    ASSERT_FALSE(m.accepts("!"));
    ASSERT_TRUE(m.advance("q")) << i;
  }
  EXPECT_FALSE(m.advance("q"));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.advance("!"));
  EXPECT_TRUE(m.must_end());
}

TEST(Grammar, ErrorsNameTheProblem) {
  EXPECT_NE(error_of("root ::= \"a").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\n  ) ").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("root ::= item").find("'item'"), std::string::npos);
  EXPECT_NE(error_of("start ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("left-recursive at rule 'root'"), std::string::npos);
  EXPECT_NE(error_of("root ::= x\nx ::= \"a\"? x \"b\" | y\ny ::= x | \"c\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" root").find("accepts no output"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{99999}").find("repetition count"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"{1000}){1000}{1000}").find("too large"), std::string::npos);
  EXPECT_NE(error_of("root ::= [z-a]").find("backwards"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
  EXPECT_NE(error_of("root ::= " + std::string(300, '(') + "\"a\"" + std::string(300, ')')).find("nested too deeply"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" ::= \"b\"").find("grammar line 1"), std::string::npos);
  // Right recursion is fine (it is how repetition works).
  EXPECT_TRUE(matches("root ::= \"a\" root | \"b\"", "aaab"));
}

}  // namespace
}  // namespace jevons
