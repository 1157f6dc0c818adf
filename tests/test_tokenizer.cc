// Tokenizer tests against llama.cpp's tokenizer test vectors ($SHARED/tokenizers/vocab),
// the golden models' prompts, and stories260K; plus decoding, streaming and bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace jevons {
namespace {

std::string vocab_dir() { return test::shared_dir() + "/tokenizers/vocab"; }
std::string tiktoken_path() { return test::shared_dir() + "/tokenizers/qwen2/qwen.tiktoken"; }

// Tokenizers are loaded once per process (the 100k-token vocabularies take a moment).
const Tokenizer& gguf_tokenizer(const std::string& path) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[path];
  if (!t) t = Tokenizer::from_gguf(*GgufFile::open(path));
  return *t;
}
const Tokenizer& vocab(const std::string& name) { return gguf_tokenizer(vocab_dir() + "/ggml-vocab-" + name + ".gguf"); }
const Tokenizer& tiktoken(const std::string& pre) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[pre];
  if (!t) t = Tokenizer::from_tiktoken(tiktoken_path(), pre);
  return *t;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// <name>.gguf.inp holds texts separated by "\n__ggml_vocab_test__\n" (the file ends with one);
// <name>.gguf.out has one line of space-separated ids per text, without BOS.
std::vector<Case> read_cases(const std::string& name) {
  const std::string base = vocab_dir() + "/ggml-vocab-" + name + ".gguf";
  const std::string inp = test::read_file(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    cases.push_back({inp.substr(pos, next - pos), {}});
    pos = next + sep.size();
  }
  std::ifstream out(base + ".out");
  std::string line;
  size_t k = 0;
  while (std::getline(out, line)) {
    if (k >= cases.size()) break;
    std::istringstream ss(line);
    int32_t id;
    while (ss >> id) cases[k].ids.push_back(id);
    ++k;
  }
  EXPECT_EQ(k, cases.size()) << base << ": .inp and .out disagree on the number of cases";
  return cases;
}

std::string ids_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Encodes every case as llama.cpp's test-tokenizer-0 does (no BOS, special text not parsed),
// reports each mismatch with the text and both id lists, and returns the number passing.
size_t check_vocab_cases(const Tokenizer& tok, const std::string& name) {
  const std::vector<Case> cases = read_cases(name);
  EXPECT_FALSE(cases.empty());
  size_t pass = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> got = tok.encode(c.text, false, false);
    if (got == c.ids) {
      ++pass;
    } else {
      ADD_FAILURE() << name << ": text \"" << c.text << "\"\n  expected: " << ids_string(c.ids)
                    << "\n  got:      " << ids_string(got);
    }
  }
  std::printf("[ vocab    ] %s: %zu/%zu cases pass\n", name.c_str(), pass, cases.size());
  return pass;
}

TEST(TokenizerVocab, LlamaSpm) { check_vocab_cases(vocab("llama-spm"), "llama-spm"); }
TEST(TokenizerVocab, Gpt2) { check_vocab_cases(vocab("gpt-2"), "gpt-2"); }
TEST(TokenizerVocab, DeepseekLlm) { check_vocab_cases(vocab("deepseek-llm"), "deepseek-llm"); }
TEST(TokenizerVocab, DeepseekCoder) { check_vocab_cases(vocab("deepseek-coder"), "deepseek-coder"); }
// The qwen2 and deepseek-r1-qwen vocab GGUFs are not available; their base vocabulary is the
// Qwen tiktoken rank file, which with the same pre-tokenizer gives the same ids.
TEST(TokenizerVocab, Qwen2Tiktoken) { check_vocab_cases(tiktoken("qwen2"), "qwen2"); }
TEST(TokenizerVocab, DeepseekR1QwenTiktoken) { check_vocab_cases(tiktoken("deepseek-r1-qwen"), "deepseek-r1-qwen"); }
// llama-bpe (llama3) is not covered against its vectors: its vocabulary GGUF is not available
// and the Qwen ranks are a different vocabulary (the ids differ, e.g. "Führer" is 37 51853 261
// for llama3 but 37 50753 261 for Qwen). The llama3 splitter is checked by hand below.

// Text -> ids -> text is lossless for byte-level BPE, and for SentencePiece once the
// space prefix is stripped (decode does that after BOS).
TEST(TokenizerVocab, RoundTrip) {
  const std::vector<Case> cases = read_cases("gpt-2");  // every .inp holds the same texts
  struct Named {
    const char* name;
    const Tokenizer* tok;
  };
  const Named bpe[] = {{"gpt-2", &vocab("gpt-2")},
                       {"deepseek-llm", &vocab("deepseek-llm")},
                       {"deepseek-coder", &vocab("deepseek-coder")},
                       {"qwen2", &tiktoken("qwen2")},
                       {"golden llama-bpe", &gguf_tokenizer(test::shared_dir() + "/golden/llama-bpe/gguf/model-bf16.gguf")}};
  for (const Named& n : bpe)
    for (const Case& c : cases)
      EXPECT_EQ(n.tok->decode(n.tok->encode(c.text, false, false)), c.text) << n.name;
  const Tokenizer& spm = vocab("llama-spm");
  for (const Case& c : cases) {
    EXPECT_EQ(spm.decode(spm.encode(c.text, true, false)), c.text);
    // Without BOS nothing marks the sequence start, so the prefix space stays.
    if (!c.text.empty()) {
      EXPECT_EQ(spm.decode(spm.encode(c.text, false, false)), " " + c.text);
    }
  }
}

TEST(Tokenizer, Stories260K) {
  const Tokenizer& tok = gguf_tokenizer(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf");
  EXPECT_EQ(tok.n_vocab(), 512);
  EXPECT_TRUE(tok.add_bos_default());
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  const std::vector<int32_t> ids = tok.encode("Once upon a time", true);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.decode(ids), "Once upon a time");
  EXPECT_EQ(tok.piece(403), " Once");
  EXPECT_EQ(tok.piece(1), "");  // control
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_FALSE(tok.is_eog(1));
  EXPECT_TRUE(tok.is_control(1));
  EXPECT_FALSE(tok.is_control(403));
  EXPECT_THROW(tok.piece(512), Error);
  EXPECT_THROW(tok.piece(-1), Error);
}

void check_golden_prompt(const std::string& model) {
  const std::string dir = test::shared_dir() + "/golden/" + model;
  const Tokenizer& tok = gguf_tokenizer(dir + "/gguf/model-bf16.gguf");
  const auto prompt = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"));
  EXPECT_EQ(tok.add_bos_default(), prompt["add_bos"].get<bool>());
  const auto expected = prompt["text_token_ids_full"].get<std::vector<int32_t>>();
  const auto got = tok.encode(prompt["text"].get<std::string>(), tok.add_bos_default());
  EXPECT_EQ(got, expected) << model << "\n  expected: " << ids_string(expected) << "\n  got:      " << ids_string(got);
  // llama.cpp's pieces (rendered with special tokens shown) match ours for the text tokens.
  const auto ids = prompt["token_ids"].get<std::vector<int32_t>>();
  const auto pieces = prompt["token_pieces"].get<std::vector<std::string>>();
  ASSERT_EQ(ids.size(), pieces.size());
  for (size_t k = 0; k < ids.size(); ++k)
    EXPECT_EQ(tok.is_control(ids[k]) ? tok.token_text(ids[k]) : tok.piece(ids[k]), pieces[k]) << model << " id " << ids[k];
  std::string text = prompt["text"].get<std::string>();
  EXPECT_EQ(tok.decode(got), text);
}

TEST(Tokenizer, GoldenLlamaBpePrompt) { check_golden_prompt("llama-bpe"); }
TEST(Tokenizer, GoldenQwen2Prompt) { check_golden_prompt("qwen2"); }

TEST(Tokenizer, SpecialTokensAndEndOfGeneration) {
  const Tokenizer& tok = gguf_tokenizer(test::shared_dir() + "/golden/llama-bpe/gguf/model-bf16.gguf");
  const std::string chat = "<|im_start|>user\nHi<|im_end|>";
  const std::vector<int32_t> parsed = tok.encode(chat, false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);  // <|im_start|>
  EXPECT_EQ(parsed.back(), 2);   // <|im_end|>
  const std::vector<int32_t> plain = tok.encode(chat, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok.decode(plain), chat);
  EXPECT_EQ(tok.decode(parsed), "user\nHi");  // control tokens contribute nothing
  // End of generation: EOS (<|im_end|>), <|endoftext|>, and <reponame> (llama.cpp's FIM repo token).
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_TRUE(tok.is_eog(0));
  EXPECT_TRUE(tok.is_eog(4));
  EXPECT_FALSE(tok.is_eog(1));
  EXPECT_FALSE(tok.is_eog(525));
  EXPECT_FALSE(tok.is_eog(-1));
  EXPECT_FALSE(tok.is_eog(tok.n_vocab()));
  // gpt-2: <|endoftext|> is both EOS and EOG; with parse_special it is one token.
  const Tokenizer& g = vocab("gpt-2");
  EXPECT_EQ(g.encode("a<|endoftext|>", false, true), (std::vector<int32_t>{64, 50256}));
  EXPECT_TRUE(g.is_eog(50256));
  // deepseek: user-defined tokens are cut out even without parse_special (llama.cpp does too).
  const Tokenizer& d = vocab("deepseek-coder");
  EXPECT_EQ(d.encode("ü", false, false), (std::vector<int32_t>{32009}));
  EXPECT_EQ(d.piece(32009), "ü");
}

// Hand-derived splits (the regexes' semantics) for pre-tokenizers without reference vectors here.
std::vector<std::string> split_utf8(const PreTokenizer& p, const std::string& text) {
  const auto cps = unicode::decode_utf8_lenient(text);
  std::vector<std::string> out;
  for (const auto& [b, e] : p.split_spans(cps)) {
    std::string w;
    for (uint32_t k = b; k < e; ++k) unicode::append_utf8(w, cps[k]);
    out.push_back(w);
  }
  return out;
}

using Words = std::vector<std::string>;

TEST(TokenizerPre, Llama3) {
  const PreTokenizer p("llama3");
  EXPECT_TRUE(p.ignore_merges());
  EXPECT_TRUE(p.add_bos_default());
  EXPECT_EQ(split_utf8(p, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(split_utf8(p, "3333333"), (Words{"333", "333", "3"}));  // \p{N}{1,3}
  EXPECT_EQ(split_utf8(p, "I'VE a'lL"), (Words{"I", "'VE", " a", "'lL"}));  // case-insensitive contractions
  EXPECT_EQ(split_utf8(p, "a  \n\n b"), (Words{"a", "  \n\n", " b"}));
  EXPECT_EQ(split_utf8(p, "x   y"), (Words{"x", "  ", " y"}));
  EXPECT_EQ(split_utf8(p, " ...!\n\nz"), (Words{" ...!\n\n", "z"}));
  EXPECT_EQ(split_utf8(p, "$x"), (Words{"$x"}));  // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_EQ(split_utf8(p, "end  "), (Words{"end", "  "}));
  // qwen2 is the same regex with single digits.
  EXPECT_EQ(split_utf8(PreTokenizer("qwen2"), "3333"), (Words{"3", "3", "3", "3"}));
}

TEST(TokenizerPre, DeepseekV3) {
  const PreTokenizer p("deepseek-v3");
  EXPECT_EQ(split_utf8(p, "12345 abc"), (Words{"123", "45", " abc"}));
  EXPECT_EQ(split_utf8(p, "我想在apple工作"), (Words{"我想在", "apple", "工作"}));
  EXPECT_EQ(split_utf8(p, ".Net and, stuff"), (Words{".Net", " and", ",", " stuff"}));
  // llama.cpp's collapsed \p{S} lacks '~': it is no symbol here, so it prefixes the word after it.
  EXPECT_EQ(split_utf8(p, "a ~b"), (Words{"a", " ", "~b"}));
  EXPECT_EQ(split_utf8(p, "a +b"), (Words{"a", " +", "b"}));
}

TEST(TokenizerPre, DefaultAndSmollm) {
  // default: [\p{P}\$\+<=>\^~\|]+ then GPT-2's regex, then \p{N}+, then [0-9][0-9][0-9].
  EXPECT_EQ(split_utf8(PreTokenizer("default"), "Hello, world! 12345"),
            (Words{"Hello", ",", " world", "!", " ", "123", "45"}));
  // smollm: every digit alone, then GPT-2's regex.
  EXPECT_EQ(split_utf8(PreTokenizer("smollm"), "abc 123x"), (Words{"abc", " ", "1", "2", "3", "x"}));
  // gpt-2: contractions are case-sensitive; "\s+(?!\S)" leaves the last space to the next word.
  EXPECT_EQ(split_utf8(PreTokenizer("gpt-2"), "I'VE it's  x\n\n"), (Words{"I", "'", "VE", " it", "'s", " ", " x", "\n\n"}));
}

TEST(TokenizerPre, UnknownNameListsSupported) {
  try {
    PreTokenizer p("no-such-pre");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no-such-pre"), std::string::npos) << msg;
    for (const char* n : {"default", "llama3", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "deepseek-v3",
                          "deepseek-r1-qwen", "gpt-2", "smollm"})
      EXPECT_NE(msg.find(n), std::string::npos) << n << " missing from: " << msg;
  }
}

TEST(TokenizerUnicode, Categories) {
  using namespace unicode;
  EXPECT_EQ(category('a'), kLetter);
  EXPECT_EQ(category('7'), kNumber);
  EXPECT_EQ(category('!'), kPunct);
  EXPECT_EQ(category('~'), kSymbol);
  EXPECT_EQ(category(0x00BD), kNumber);    // ½
  EXPECT_EQ(category(0x0301), kMark);      // combining acute
  EXPECT_EQ(category(0x6211), kLetter);    // 我
  EXPECT_EQ(category(0x1F680), kSymbol);   // 🚀
  EXPECT_EQ(category(0x10FFFF), kUndefined);
  EXPECT_EQ(category(0x110000), kUndefined);
  EXPECT_TRUE(is_whitespace(' '));
  EXPECT_TRUE(is_whitespace(0x3000));
  EXPECT_TRUE(is_whitespace(0x85));
  EXPECT_FALSE(is_whitespace(0x1C));  // White_Space, not Python's isspace
  EXPECT_FALSE(is_whitespace(0x200B));
  for (int b = 0; b < 256; ++b) EXPECT_EQ(codepoint_to_byte(byte_to_codepoint(uint8_t(b))), b);
  EXPECT_EQ(byte_to_symbol(' '), "\xC4\xA0");  // Ġ
  EXPECT_EQ(sanitize_utf8("a\xF0\x9F"), "a\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xC0\x80z\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Feeds ids one at a time; every chunk must be valid UTF-8 and together they must equal decode().
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool strip) {
  StreamDecoder dec(tok, strip);
  std::string all;
  bool held_back = false;
  for (int32_t id : ids) {
    const std::string chunk = dec.push(id);
    EXPECT_EQ(unicode::sanitize_utf8(chunk), chunk) << "broken UTF-8 emitted after id " << id;
    if (chunk.empty() && !tok.piece(id).empty()) held_back = true;
    all += chunk;
  }
  all += dec.finish();
  EXPECT_EQ(all, tok.decode(ids));
  EXPECT_TRUE(held_back) << "the test text should split a character across tokens";
}

TEST(TokenizerStream, SplitCharactersAreHeldBack) {
  // SentencePiece byte fallback: the llama emoji is not in the vocabulary, so it is four <0xNN> tokens.
  const Tokenizer& spm = vocab("llama-spm");
  const std::vector<int32_t> ids = spm.encode("I like 🦙s and ½!", true);
  EXPECT_GE(std::count_if(ids.begin(), ids.end(), [&](int32_t id) { return spm.token_type(id) == TokenType::Byte; }), 4);
  check_stream(spm, ids, true);
  // Byte-level BPE: rare characters are split across tokens.
  const Tokenizer& gpt2 = vocab("gpt-2");
  check_stream(gpt2, gpt2.encode("🚀 (normal) 😶‍🌫️ កាន់តែពិសេស", false), false);
  // stories260K: the whole sequence after BOS, as llama2.c prints it.
  const Tokenizer& stories = gguf_tokenizer(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf");
  const std::vector<int32_t> s = stories.encode("Once upon a time 🦙", true);
  check_stream(stories, s, true);
  StreamDecoder plain(stories);  // without strip_leading_space the first space stays
  std::string out;
  for (int32_t id : s) out += plain.push(id);
  out += plain.finish();
  EXPECT_EQ(out, " Once upon a time 🦙");
}

TEST(TokenizerStream, InvalidBytesBecomeReplacementCharacters) {
  const Tokenizer& spm = vocab("llama-spm");
  const int32_t f0 = spm.find_token("<0xF0>"), x9f = spm.find_token("<0x9F>"), x80 = spm.find_token("<0x80>");
  ASSERT_GE(f0, 0);
  StreamDecoder dec(spm);
  EXPECT_EQ(dec.push(x80), "\xEF\xBF\xBD");  // a lone continuation byte
  EXPECT_EQ(dec.push(f0), "");
  EXPECT_EQ(dec.push(x9f), "");
  EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");  // an unfinished character at the end
  EXPECT_EQ(dec.finish(), "");
}

TEST(TokenizerPerf, TiktokenLoadsFastAndLongWordsAreNotQuadratic) {
  auto t0 = std::chrono::steady_clock::now();
  const auto tok = Tokenizer::from_tiktoken(tiktoken_path(), "qwen2");
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(tok->n_vocab(), 151643);
  // One 200k-letter word: BPE must stay O(n log n).
  std::string word;
  uint32_t x = 12345;
  for (int k = 0; k < 200000; ++k) {
    x = x * 1103515245u + 12345u;
    word += char('a' + (x >> 16) % 26);
  }
  t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(word, false);
  const double encode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(tok->decode(ids), word);
  std::printf("[ perf     ] tiktoken load %.3f s, 200k-letter word %.3f s (%zu tokens)\n", load_s, encode_s, ids.size());
  // Generous bounds (Debug builds and loaded machines); Release is well under these.
  EXPECT_LT(load_s, 5.0);
  EXPECT_LT(encode_s, 5.0);
  // A long run of spaces before a letter (\s+$ in deepseek-llm scans it once).
  const std::string spaces = std::string(100000, ' ') + "x";
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(vocab("deepseek-llm").decode(vocab("deepseek-llm").encode(spaces, false)), spaces);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

// --- bad input ---

VocabSpec tiny_bpe() {
  VocabSpec s;
  s.model = VocabSpec::Model::Bpe;
  s.pre = "gpt-2";
  s.tokens = {"a", "b", "ab", "c"};
  s.merges = {"a b"};
  return s;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "\"" << frag << "\" not in: " << msg;
  }
}

TEST(TokenizerBadInput, PlainVocab) {
  auto ok = Tokenizer::from_vocab(tiny_bpe());
  EXPECT_EQ(ok->encode("abc", false), (std::vector<int32_t>{2, 3}));
  expect_error([] { auto s = tiny_bpe(); s.merges.push_back("ab x"); Tokenizer::from_vocab(s); },
               {"tokenizer.ggml.merges[1]", "\"x\"", "not in tokenizer.ggml.tokens"});
  expect_error([] { auto s = tiny_bpe(); s.merges.push_back("abc"); Tokenizer::from_vocab(s); },
               {"tokenizer.ggml.merges[1]", "separated by a space"});
  expect_error([] { auto s = tiny_bpe(); s.bos = 4; Tokenizer::from_vocab(s); }, {"tokenizer.ggml.bos_token_id", "4"});
  expect_error([] { auto s = tiny_bpe(); s.eos = -7; Tokenizer::from_vocab(s); }, {"tokenizer.ggml.eos_token_id"});
  expect_error([] { auto s = tiny_bpe(); s.tokens.push_back("a"); Tokenizer::from_vocab(s); }, {"twice", "\"a\""});
  expect_error([] { auto s = tiny_bpe(); s.pre = "nope"; Tokenizer::from_vocab(s); }, {"nope", "qwen2"});
  expect_error([] { auto s = tiny_bpe(); s.add_bos = true; Tokenizer::from_vocab(s); }, {"add_bos_token", "no BOS"});
  expect_error([] { auto s = tiny_bpe(); s.scores = {1.0f}; Tokenizer::from_vocab(s); }, {"tokenizer.ggml.scores"});
  expect_error([] { auto s = tiny_bpe(); s.tokens.clear(); s.merges.clear(); Tokenizer::from_vocab(s); }, {"empty"});
  expect_error([&] { ok->encode("a", true); }, {"BOS"});
  expect_error([&] { ok->piece(4); }, {"out of range"});
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("jevons_tok_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Writes a tiny gpt2-style vocabulary GGUF, lets `edit` break it, and loads it.
void load_tiny_gguf(const std::function<void(GgufWriter&)>& edit) {
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_strings("tokenizer.ggml.tokens", {"a", "b", "ab", "c"});
  w.set_strings("tokenizer.ggml.merges", {"a b"});
  w.set_u32("tokenizer.ggml.bos_token_id", 3);
  w.set_u32("tokenizer.ggml.eos_token_id", 3);
  edit(w);
  const std::string path = temp_path("vocab.gguf");
  w.write(path);
  struct Remove {
    std::string p;
    ~Remove() { std::filesystem::remove(p); }
  } cleanup{path};
  auto tok = Tokenizer::from_gguf(*GgufFile::open(path));
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{2}));
}

TEST(TokenizerBadInput, Gguf) {
  load_tiny_gguf([](GgufWriter&) {});  // the unbroken file loads
  load_tiny_gguf([](GgufWriter& w) { w.set_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu); });  // "none"
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_strings("tokenizer.ggml.merges", {"a b", "ab zz"}); }); },
               {"vocab.gguf", "tokenizer.ggml.merges[1]", "zz"});
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_u32("tokenizer.ggml.eos_token_id", 99); }); },
               {"vocab.gguf", "tokenizer.ggml.eos_token_id", "99"});
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_string("tokenizer.ggml.model", "t5"); }); },
               {"tokenizer.ggml.model", "t5", "gpt2"});
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_string("tokenizer.ggml.pre", "martian"); }); },
               {"martian", "llama3"});
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_i32s("tokenizer.ggml.token_type", {1, 1}); }); },
               {"tokenizer.ggml.token_type", "2 entries"});
  expect_error([] { load_tiny_gguf([](GgufWriter& w) { w.set_string("tokenizer.ggml.bos_token_id", "x"); }); },
               {"tokenizer.ggml.bos_token_id"});
}

TEST(TokenizerBadInput, Tiktoken) {
  const std::string path = temp_path("bad.tiktoken");
  auto write = [&](const std::string& s) { std::ofstream(path, std::ios::binary) << s; };
  write("YQ== 0\nYg== 1\n");
  EXPECT_EQ(Tokenizer::from_tiktoken(path, "qwen2")->n_vocab(), 2);
  write("YQ== 0\nYg== 5\n");
  expect_error([&] { Tokenizer::from_tiktoken(path, "qwen2"); }, {"rank 5"});
  write("YQ== 0\n!!! 1\n");
  expect_error([&] { Tokenizer::from_tiktoken(path, "qwen2"); }, {":2:", "base64"});
  write("YQ==\n");
  expect_error([&] { Tokenizer::from_tiktoken(path, "qwen2"); }, {":1:"});
  std::filesystem::remove(path);
  expect_error([&] { Tokenizer::from_tiktoken(path, "qwen2"); }, {"cannot open", path});
}

}  // namespace
}  // namespace jevons
