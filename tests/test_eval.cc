// jevons eval: perplexity tied to llama.cpp's logits, KL divergence, answer grading,
// majority votes, resumable results, the Pareto front.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/frontier.h"
#include "eval/grading.h"
#include "eval/perplexity.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "formats/gguf.h"
#include "kernels/matmul.h"
#include "meter/config.h"
#include "model/model.h"
#include "test_util.h"

namespace jevons::eval {
namespace {

namespace fs = std::filesystem;

std::string golden(const std::string& model) { return test::shared_dir() + "/golden/" + model; }

meter::MeterConfig estimate_only() {
  meter::MeterConfig c;
  c.energy_source = "estimate";
  return c;
}

// llama-perplexity's sum over one chunk, from saved logits: positions first..n-2
// against the tokens that follow.
double golden_nll(const std::vector<float>& logits, const std::vector<int32_t>& tokens, int n_vocab, int64_t* count) {
  const int n = int(tokens.size()), first = n / 2;
  double nll = 0;
  for (int p = first; p < n - 1; ++p) {
    const float* row = &logits[size_t(p) * size_t(n_vocab)];
    const float mx = *std::max_element(row, row + n_vocab);
    double z = 0;
    for (int v = 0; v < n_vocab; ++v) z += std::exp(double(row[v]) - mx);
    nll += mx + std::log(z) - double(row[tokens[size_t(p + 1)]]);
    ++*count;
  }
  return nll;
}

struct PplCase {
  std::string model, file;
};

class GoldenPerplexity : public ::testing::TestWithParam<PplCase> {};

// Perplexity as eval computes it equals the perplexity implied by llama.cpp's own
// logits of the same weights (exact f32 arithmetic), over the golden prompt.
TEST_P(GoldenPerplexity, EqualsWhatLlamaCppLogitsImply) {
  const ScopedKernelMode reference_kernels(KernelMode::kReference);
  const PplCase& c = GetParam();
  const std::string dir = golden(c.model);
  const auto prompt = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"));
  const std::vector<int32_t> tokens = prompt["token_ids"].get<std::vector<int32_t>>();
  auto file = GgufFile::open(c.file.empty() ? dir + "/gguf/model-bf16.gguf" : c.file);
  auto model = load_model(*file);
  const int n_vocab = model->config().n_vocab;
  int64_t count = 0;
  const double want = std::exp(golden_nll(test::read_f32(dir + "/ref/logits-f32.f32"), tokens, n_vocab, &count) / double(count));

  PerplexityOptions o;
  o.n_ctx = int(tokens.size());
  o.add_bos = prompt["add_bos"].get<bool>();
  o.bos_id = o.add_bos ? prompt["bos_token_id"].get<int32_t>() : -1;
  o.kv_type = TensorType::F32;
  meter::Meter meter(estimate_only());
  const PerplexityResult r = evaluate_perplexity(*model, tokens, o, meter);
  EXPECT_EQ(r.chunks, 1);
  EXPECT_EQ(r.scored, count);
  EXPECT_NEAR(r.perplexity / want, 1.0, 1e-4) << "eval " << r.perplexity << ", llama.cpp's logits " << want;
  EXPECT_GT(r.energy.joules, 0);
}

INSTANTIATE_TEST_SUITE_P(Shared, GoldenPerplexity,
                         ::testing::Values(PplCase{"llama-bpe", ""}, PplCase{"qwen2", ""}, PplCase{"qwen3", ""},
                                           PplCase{"deepseek-v2-lite", ""}, PplCase{"deepseek-v3", ""},
                                           PplCase{"stories260K", test::shared_dir() + "/models/stories260K/stories260K-f32.gguf"}),
                         [](const ::testing::TestParamInfo<PplCase>& info) {
                           std::string s = info.param.model;
                           for (char& ch : s)
                             if (!std::isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

// Chunks: BOS replaces each chunk's first token; --chunks caps them; a text shorter
// than one chunk is an error.
TEST(Perplexity, ChunksAndTheirLimits) {
  const ScopedKernelMode reference_kernels(KernelMode::kReference);
  auto file = GgufFile::open(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf");
  auto model = load_model(*file);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 100; ++i) tokens.push_back(int32_t(3 + (i * 37) % 500));
  meter::Meter meter(estimate_only());
  PerplexityOptions o;
  o.n_ctx = 32;
  o.bos_id = 1;
  o.kv_type = TensorType::F32;
  EXPECT_EQ(perplexity_chunks(100, o), 3);
  const PerplexityResult all = evaluate_perplexity(*model, tokens, o, meter);
  EXPECT_EQ(all.chunks, 3);
  EXPECT_EQ(all.scored, 3 * (32 - 1 - 16));
  EXPECT_EQ(all.chunk_perplexity.size(), 3u);
  o.max_chunks = 1;
  const PerplexityResult one = evaluate_perplexity(*model, tokens, o, meter);
  EXPECT_EQ(one.chunks, 1);
  EXPECT_DOUBLE_EQ(one.perplexity, all.chunk_perplexity[0]);
  // Passes of several chunks and pieces of one chunk give the same figures.
  o.max_chunks = -1;
  o.n_batch = 8;
  const PerplexityResult pieces = evaluate_perplexity(*model, tokens, o, meter);
  EXPECT_NEAR(pieces.perplexity / all.perplexity, 1.0, 1e-5);
  o.n_ctx = 101;
  EXPECT_THROW(evaluate_perplexity(*model, tokens, o, meter), jevons::Error);
}

// KL divergence: a model against itself is 0 with full top-1 agreement; Q8_0 against
// the exact weights equals the KL that llama.cpp's golden logits give.
TEST(Perplexity, KlDivergenceAgainstASavedBase) {
  const ScopedKernelMode reference_kernels(KernelMode::kReference);
  const std::string dir = golden("llama-bpe");
  const auto prompt = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"));
  const std::vector<int32_t> tokens = prompt["token_ids"].get<std::vector<int32_t>>();
  auto bf16_file = GgufFile::open(dir + "/gguf/model-bf16.gguf");
  auto q8_file = GgufFile::open(dir + "/gguf/model-q8_0.gguf");
  auto bf16 = load_model(*bf16_file);
  auto q8 = load_model(*q8_file);
  const int n_vocab = bf16->config().n_vocab;
  PerplexityOptions o;
  o.n_ctx = int(tokens.size());
  o.bos_id = prompt["bos_token_id"].get<int32_t>();
  o.kv_type = TensorType::F32;
  meter::Meter meter(estimate_only());
  const std::string base = (fs::temp_directory_path() / ("jevons_kl_" + std::to_string(::getpid()) + ".bin")).string();
  {
    KlBaseWriter w(base, "bf16");
    evaluate_perplexity(*bf16, tokens, o, meter, &w);
    w.commit();
  }
  {
    KlBaseReader self(base);
    const PerplexityResult r = evaluate_perplexity(*bf16, tokens, o, meter, nullptr, &self);
    ASSERT_TRUE(r.kl.has_value());
    EXPECT_LT(r.kl->mean, 1e-6);
    EXPECT_LT(r.kl->max, 1e-5);
    EXPECT_DOUBLE_EQ(r.kl->top1_agreement, 1.0);
    EXPECT_NEAR(r.kl->base_perplexity / r.perplexity, 1.0, 1e-6);
    EXPECT_EQ(r.kl->base_model, "bf16");
  }
  {
    // What the golden logits give: KL(f32 || q8_0-dequant) over the scored positions.
    const std::vector<float> p = test::read_f32(dir + "/ref/logits-f32.f32");
    const std::vector<float> q = test::read_f32(dir + "/ref/logits-q8_0-dequant.f32");
    const int n = int(tokens.size()), first = n / 2;
    double want = 0;
    for (int pos = first; pos < n - 1; ++pos) {
      auto log_softmax = [&](const std::vector<float>& l) {
        const float* row = &l[size_t(pos) * size_t(n_vocab)];
        const float mx = *std::max_element(row, row + n_vocab);
        double z = 0;
        for (int v = 0; v < n_vocab; ++v) z += std::exp(double(row[v]) - mx);
        std::vector<double> out(static_cast<size_t>(n_vocab));
        for (int v = 0; v < n_vocab; ++v) out[size_t(v)] = double(row[v]) - mx - std::log(z);
        return out;
      };
      const auto lp = log_softmax(p), lq = log_softmax(q);
      for (int v = 0; v < n_vocab; ++v) want += std::exp(lp[size_t(v)]) * (lp[size_t(v)] - lq[size_t(v)]);
    }
    want /= double(n - 1 - first);
    KlBaseReader reader(base);
    const PerplexityResult r = evaluate_perplexity(*q8, tokens, o, meter, nullptr, &reader);
    ASSERT_TRUE(r.kl.has_value());
    EXPECT_GT(want, 1e-5);
    EXPECT_NEAR(r.kl->mean / want, 1.0, 0.02) << "eval " << r.kl->mean << ", golden logits " << want;
  }
  // A base made from other tokens, or another context, is refused.
  {
    KlBaseReader reader(base);
    std::vector<int32_t> other = tokens;
    other[5] ^= 1;
    EXPECT_THROW(evaluate_perplexity(*bf16, other, o, meter, nullptr, &reader), jevons::Error);
  }
  fs::remove(base);
  EXPECT_THROW(KlBaseReader(dir + "/ref/prompt.json"), jevons::Error);
}

// ---- grading ----

TEST(Grading, Gsm8kNumbers) {
  EXPECT_EQ(gsm8k_reference("She makes 9 * 2 = $<<9*2=18>>18\n#### 18").value(), "18");
  EXPECT_EQ(gsm8k_reference("#### 1,234").value(), "1234");
  EXPECT_FALSE(gsm8k_reference("no marker").has_value());
  EXPECT_EQ(extract_final_number("16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is $18.").value(), "18");
  EXPECT_EQ(extract_final_number("So she has \\boxed{1,250} left, not 7").value(), "1250");
  EXPECT_EQ(extract_final_number("first 3 then 4\n#### 7\nextra 99").value(), "7");
  EXPECT_EQ(extract_final_number("Answer: -5 degrees, since 10 - 15").value(), "-5");
  EXPECT_EQ(extract_final_number("costs 3.50 dollars.").value(), "3.50");
  EXPECT_FALSE(extract_final_number("no digits here").has_value());
  EXPECT_TRUE(numbers_equal("18", "18.00"));
  EXPECT_TRUE(numbers_equal("$1,000", "1000"));
  EXPECT_TRUE(numbers_equal("3/4", "0.75"));
  EXPECT_FALSE(numbers_equal("18", "19"));
  EXPECT_FALSE(numbers_equal("abc", "abc"));  // not numbers: not equal as numbers
  EXPECT_EQ(extract_final_number("x .5 and -3 but a-2").value(), "2");
  EXPECT_EQ(extract_final_number("it is -.5").value(), "-0.5");
  // Degenerate outputs (a model stuck on one character) are graded, not a crash.
  const std::string digits(200000, '7'), spaces = "answer is" + std::string(100000, ' ') + "(B)";
  EXPECT_EQ(extract_final_number(digits + " so 5").value(), "5");
  EXPECT_FALSE(math_answers_equal(digits, "7"));
  EXPECT_EQ(extract_choice_label(spaces, {"A", "B"}).value(), "B");  // the lone (B)
  EXPECT_FALSE(extract_choice_label(std::string(100000, '('), {"A", "B"}).has_value());
}

TEST(Grading, MathBoxedAndNormalised) {
  EXPECT_EQ(extract_boxed("so $\\boxed{\\frac{1}{2}}$.").value(), "\\frac{1}{2}");
  EXPECT_EQ(extract_boxed("\\boxed{2} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}").value(), "\\left( 3, \\frac{\\pi}{2} \\right)");
  EXPECT_EQ(extract_boxed("\\boxed 5$").value(), "5");
  EXPECT_FALSE(extract_boxed("\\boxed{unclosed").has_value());
  EXPECT_FALSE(extract_boxed("none").has_value());
  // Equivalent forms.
  EXPECT_TRUE(math_answers_equal("\\dfrac{1}{2}", "\\frac12"));
  EXPECT_TRUE(math_answers_equal("0.5", "\\frac{1}{2}"));
  EXPECT_TRUE(math_answers_equal("1/2", "\\frac{1}{2}"));
  EXPECT_TRUE(math_answers_equal("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"));
  EXPECT_TRUE(math_answers_equal("90^\\circ", "90"));
  EXPECT_TRUE(math_answers_equal("10\\%", "10"));
  EXPECT_TRUE(math_answers_equal("5 \\text{ cm}", "5"));
  EXPECT_TRUE(math_answers_equal("x = 3", "3"));
  EXPECT_TRUE(math_answers_equal("\\sqrt3", "\\sqrt{3}"));
  EXPECT_TRUE(math_answers_equal("\\text{(C)}", "(C)"));
  EXPECT_TRUE(math_answers_equal("-\\frac{3}{4}", "\\frac{-3}{4}"));
  EXPECT_TRUE(math_answers_equal("2, 1", "1,2"));
  EXPECT_TRUE(math_answers_equal("1,000", "1000"));
  EXPECT_TRUE(math_answers_equal("3.0", "3"));
  // Different answers stay different.
  EXPECT_FALSE(math_answers_equal("\\frac{1}{3}", "\\frac{1}{2}"));
  EXPECT_FALSE(math_answers_equal("(3, 2)", "(2, 3)"));
  EXPECT_FALSE(math_answers_equal("[1, 2)", "(1, 2)"));
  EXPECT_FALSE(math_answers_equal("", "0"));
  EXPECT_FALSE(math_answers_equal("a+b=c", "c"));
}

TEST(Grading, ChoiceLabels) {
  const std::vector<std::string> abcd = {"A", "B", "C", "D"};
  EXPECT_EQ(extract_choice_label("Let me think. The answer is (B).", abcd).value(), "B");
  EXPECT_EQ(extract_choice_label("Answer: C", abcd).value(), "C");
  EXPECT_EQ(extract_choice_label("D. because plants", abcd).value(), "D");
  EXPECT_EQ(extract_choice_label("I first thought answer is A, but the answer is **C**", abcd).value(), "C");
  EXPECT_EQ(extract_choice_label("maybe (A) or not", abcd).value(), "A");
  EXPECT_FALSE(extract_choice_label("A lot of reasons, none certain", abcd).has_value());
  EXPECT_FALSE(extract_choice_label("The answer is E", abcd).has_value());
  EXPECT_EQ(extract_choice_label("The answer is 3", {"1", "2", "3", "4"}).value(), "3");
}

TEST(Grading, MajorityVote) {
  EXPECT_EQ(majority_vote({"3", "4", "4", ""}), "4");
  EXPECT_EQ(majority_vote({"3", "4"}), "3");            // a tie: the first given
  EXPECT_EQ(majority_vote({"", "4", "3", "3", "4"}), "4");  // a tie: the first given
  EXPECT_EQ(majority_vote({"", ""}), "");
  EXPECT_EQ(majority_vote({"18", "18.0", "17"}, [](const std::string& a, const std::string& b) { return numbers_equal(a, b); }), "18");
  const TaskItem item{"x", "q", "\\frac{1}{2}", {}};
  EXPECT_TRUE(answer_correct(Task::kMath500, item, "0.5"));
  EXPECT_FALSE(answer_correct(Task::kMath500, item, ""));
}

TEST(Tasks, LoadSelectAndPrompt) {
  const std::string dir = test::shared_dir() + "/eval";
  const auto gsm = load_task(Task::kGsm8k, dir + "/gsm8k/test.jsonl");
  EXPECT_EQ(gsm.size(), 1319u);
  EXPECT_EQ(gsm[0].reference, "18");
  const auto math = load_task(Task::kMath500, dir + "/math500/test.jsonl");
  EXPECT_EQ(math.size(), 500u);
  EXPECT_EQ(math[0].reference, "\\left( 3, \\frac{\\pi}{2} \\right)");
  const auto arc = load_task(Task::kArcEasy, dir + "/arc_easy/ARC-Easy-Test.jsonl");
  EXPECT_EQ(arc.size(), 2376u);
  EXPECT_EQ(arc[0].id, "Mercury_417466");
  EXPECT_EQ(arc[0].choices.size(), 4u);
  EXPECT_NE(task_question(Task::kArcEasy, arc[0]).find("B. Most ecosystems"), std::string::npos);
  EXPECT_EQ(select_items(10, 3, -1, 0), (std::vector<size_t>{0, 1, 2}));
  const auto s1 = select_items(100, -1, 5, 42), s2 = select_items(100, -1, 5, 42), s3 = select_items(100, -1, 5, 43);
  EXPECT_EQ(s1, s2);
  EXPECT_NE(s1, s3);
  EXPECT_EQ(s1.size(), 5u);
  EXPECT_TRUE(std::is_sorted(s1.begin(), s1.end()));
  EXPECT_THROW(load_task(Task::kGsm8k, dir + "/math500/test.jsonl"), jevons::Error);
  EXPECT_THROW(parse_task("mmlu"), jevons::Error);
}

// ---- the frontier ----

TEST(Frontier, ParetoAndPlot) {
  std::vector<FrontierPoint> pts = {{"cheap", 1, 0.3}, {"dominated", 2, 0.25}, {"best", 10, 0.8}, {"middle", 5, 0.5}, {"tie", 5, 0.5}};
  mark_pareto(pts);
  EXPECT_TRUE(pts[0].pareto);
  EXPECT_FALSE(pts[1].pareto);
  EXPECT_TRUE(pts[2].pareto);
  EXPECT_TRUE(pts[3].pareto);  // equal points do not dominate each other
  EXPECT_TRUE(pts[4].pareto);
  const std::string svg = frontier_svg(pts, "gsm8k & <test>");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  size_t circles = 0;
  for (size_t p = svg.find("<circle"); p != std::string::npos; p = svg.find("<circle", p + 1)) ++circles;
  EXPECT_EQ(circles, pts.size());
  EXPECT_NE(svg.find("gsm8k &amp; &lt;test&gt;"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
}

// ---- the CLI: a run resumed after an interruption totals what one run does ----

test::ShellResult jevons(const std::string& args) {
  return test::run_shell("JEVONS_ENERGY_SOURCE=estimate timeout 300 " + std::string(JEVONS_CLI_PATH) + " " + args);
}

TEST(EvalCli, ResumedRunTotalsEqualOneRun) {
  const fs::path dir = fs::temp_directory_path() / ("jevons_eval_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Short questions, so that stories260K's 128-token context holds them.
  {
    std::ofstream f(dir / "mini.jsonl");
    for (int i = 0; i < 6; ++i)
      f << nlohmann::json{{"question", "Tom had " + std::to_string(i + 2) + " cats."}, {"answer", "#### " + std::to_string(i + 2)}}.dump()
        << "\n";
  }
  const std::string model = test::shared_dir() + "/models/stories260K/stories260K-f32.gguf";
  const std::string common = "eval gsm8k -m " + model + " --file " + (dir / "mini.jsonl").string() + " -n 24 -t 1 --json";
  const auto once = jevons(common + " --limit 6 --results " + (dir / "once.jsonl").string());
  ASSERT_EQ(once.code, 0) << once.err;
  const auto first = jevons(common + " --limit 3 --results " + (dir / "twice.jsonl").string());
  ASSERT_EQ(first.code, 0) << first.err;
  // A crash mid-write leaves a torn line: it is cut, and that question runs again.
  {
    std::ofstream f(dir / "twice.jsonl", std::ios::app);
    f << "{\"id\": \"4\", \"corr";
  }
  const auto second = jevons(common + " --limit 6 --results " + (dir / "twice.jsonl").string());
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_NE(second.err.find("3 already done"), std::string::npos) << second.err;
  const auto a = nlohmann::json::parse(once.out), b = nlohmann::json::parse(second.out);
  EXPECT_EQ(a["items"], 6);
  for (const char* k : {"items", "correct", "completion_tokens", "prompt_tokens", "errors"}) EXPECT_EQ(a[k], b[k]) << k;
  EXPECT_GT(a["joules"].get<double>(), 0);
  EXPECT_GT(a["j_per_item"].get<double>(), 0);
  EXPECT_TRUE(a["energy"]["estimated"].get<bool>());
  // Another configuration may not append to these results.
  const auto other = jevons(common + " --limit 6 --temp 0.7 --results " + (dir / "twice.jsonl").string());
  EXPECT_EQ(other.code, 1);
  EXPECT_NE(other.err.find("another configuration"), std::string::npos) << other.err;
  fs::remove_all(dir);
}

TEST(EvalCli, PerplexityJsonAndLoglik) {
  const std::string model = test::shared_dir() + "/models/stories260K/stories260K-f32.gguf";
  const auto p = jevons("eval perplexity -m " + model + " -f " + test::shared_dir() + "/eval/wikitext2/wiki.test.raw -c 64 --chunks 4 -t 1 --json");
  ASSERT_EQ(p.code, 0) << p.err;
  const auto j = nlohmann::json::parse(p.out);
  EXPECT_EQ(j["chunks"], 4);
  EXPECT_EQ(j["tokens"], 4 * (64 - 1 - 32));
  EXPECT_GT(j["perplexity"].get<double>(), 1.0);
  EXPECT_TRUE(j["energy"].contains("tokens_per_j"));
  const fs::path dir = fs::temp_directory_path() / ("jevons_arc_" + std::to_string(::getpid()));
  const auto arc = jevons("eval arc-easy --loglik -m " + model + " --limit 8 -t 1 --json --results " + (dir / "arc.jsonl").string());
  ASSERT_EQ(arc.code, 0) << arc.err;
  const auto a = nlohmann::json::parse(arc.out);
  EXPECT_EQ(a["items"], 8);
  EXPECT_EQ(a["mode"], "loglik");
  EXPECT_GE(a["correct"].get<int>(), 0);
  // A sweep: one row per configuration, the table, the plot and the JSON written.
  const std::string q8 = test::shared_dir() + "/golden/stories260K/gguf/stories260K-q8_0.gguf";
  const auto sweep = jevons("eval sweep --task arc-easy --loglik --models " + model + "," + q8 + " --limit 4 -t 1 --out-dir " +
                            (dir / "sweep").string());
  ASSERT_EQ(sweep.code, 0) << sweep.err;
  const auto rows = nlohmann::json::parse(test::read_file((dir / "sweep" / "frontier.json").string()));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["items"], 4);
  EXPECT_TRUE(rows[0]["pareto"].get<bool>() || rows[1]["pareto"].get<bool>());
  EXPECT_NE(test::read_file((dir / "sweep" / "frontier.svg").string()).find("<svg"), std::string::npos);
  EXPECT_NE(sweep.out.find("| stories260K-q8_0 |"), std::string::npos) << sweep.out;
  fs::remove_all(dir);
  const auto bad = jevons("eval gsm8k -m " + model + " --loglik");  // an option only arc-easy has
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("error:"), std::string::npos);
}

}  // namespace
}  // namespace jevons::eval
