// The jevons binary end to end: real processes, real exit codes. Bad input must
// give a clear message and exit code 1, never a crash or a hang.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "core/error.h"
#include "core/output_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace jevons {
namespace {

using Result = test::ShellResult;

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("jevons_cli_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Runs `jevons ARGS` under a 120 s timeout (a hang fails the test instead of CI).
Result jevons(const std::string& args) { return test::run_shell("timeout 120 " + std::string(JEVONS_CLI_PATH) + " " + args); }

std::string stories() { return test::shared_dir() + "/models/stories260K/stories260K-f32.gguf"; }

// Re-writes stories260K with an edit applied to its metadata and tensors.
std::string edited_stories(const std::string& name, const std::function<void(GgufWriter&, const GgufTensor&, bool&)>& edit_tensor,
                           const std::function<void(GgufWriter&)>& edit_meta = nullptr) {
  auto in = GgufFile::open(stories());
  GgufWriter w;
  for (const auto& [key, value] : in->metadata()) w.set_value(key, value);
  if (edit_meta) edit_meta(w);
  for (const GgufTensor& t : in->tensors()) {
    bool keep = true;
    edit_tensor(w, t, keep);
    if (keep) w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  const std::string path = tmp(name);
  w.write(path);
  return path;
}

void expect_error(const Result& r, const std::string& fragment) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(fragment), std::string::npos) << "stderr: " << r.err;
}

TEST(Cli, StoriesGreedyMatchesLlama2c) {
  // llama2.c ran 256 steps counting BOS and the 4 prompt tokens, and printed the
  // prompt pieces plus 256 - 5 + 1 = 252 sampled tokens; jevons' -n counts only
  // generated tokens, so the same output is -n 252.
  // The GGUF says its trained context is 128; llama2.c ran it to 256 positions.
  const Result r = jevons("run -m " + stories() + " -p \"Once upon a time\" -n 252 --temp 0 -t 1 -c 256");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, test::read_file(test::shared_dir() + "/models/stories260K/greedy-256-once-upon-a-time.txt"));
  EXPECT_NE(r.err.find("tok/s"), std::string::npos);
}

// Speculative decoding changes nothing in greedy output: prompt lookup, and the model as
// its own draft (every proposal accepted).
TEST(Cli, StoriesGreedyWithSpeculationMatchesLlama2c) {
  const std::string expected = test::read_file(test::shared_dir() + "/models/stories260K/greedy-256-once-upon-a-time.txt");
  const std::string base = "run -m " + stories() + " -p \"Once upon a time\" -n 252 --temp 0 -t 1 -c 256 ";
  const Result ngram = jevons(base + "--spec ngram");
  ASSERT_EQ(ngram.code, 0) << ngram.err;
  EXPECT_EQ(ngram.out, expected);
  EXPECT_NE(ngram.err.find("speculative (ngram"), std::string::npos) << ngram.err;
  const Result self = jevons(base + "--draft " + stories() + " --draft-max 6");
  ASSERT_EQ(self.code, 0) << self.err;
  EXPECT_EQ(self.out, expected);
  EXPECT_NE(self.err.find("(100%)"), std::string::npos) << "a model agrees with itself: " << self.err;
}

TEST(Cli, SpeculationOptionsAreChecked) {
  const std::string base = "run -m " + stories() + " -p hi -n 4 ";
  expect_error(jevons(base + "--spec draft"), "--spec draft needs a draft model");
  expect_error(jevons(base + "--spec ngram --draft " + stories()), "does not use one");
  expect_error(jevons(base + "--spec ngram --draft-max 0"), "--draft-max");
  expect_error(jevons(base + "--draft " + test::shared_dir() + "/golden/qwen2/gguf/model-q8_0.gguf"), "vocabulary");
}

// Multi-token-prediction layers in a file of an architecture that has none are refused,
// not run as trunk layers or ignored.
TEST(Cli, NextnTensorsOutsideDeepSeekAreRefused) {
  const std::string path = edited_stories("nextn.gguf", [](GgufWriter& w, const GgufTensor& t, bool&) {
    if (t.name == "output_norm.weight") w.add_tensor("blk.5.nextn.enorm.weight", t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  });
  expect_error(jevons("run -m " + path + " -p hi -n 2"), "multi-token-prediction (nextn) layers");
  std::filesystem::remove(path);
}

// Files are safe (issue 27): an output that is an input, or lies inside an input
// directory, is refused before anything is written, whatever path names it; an existing
// output is replaced only with --force; a finished write leaves no temporary file.
std::string file_bytes(const std::string& path) { return test::read_file(path); }

TEST(Cli, OutputsNeverDestroyInputs) {
  namespace fs = std::filesystem;
  const fs::path dir = tmp("safe");
  fs::remove_all(dir);
  fs::create_directories(dir / "hf");
  for (const auto& e : fs::directory_iterator(test::shared_dir() + "/golden/qwen2/hf")) fs::copy_file(e.path(), dir / "hf" / e.path().filename());
  const std::string hf = (dir / "hf").string(), model = (dir / "m.gguf").string();
  fs::copy_file(stories(), model);
  const std::string st_before = file_bytes(hf + "/model.safetensors"), cfg_before = file_bytes(hf + "/config.json");
  const std::string model_before = file_bytes(model);

  expect_error(jevons("convert " + hf + " " + hf + "/model.safetensors --force"), "inside the input directory");
  expect_error(jevons("convert " + hf + " " + hf + "/config.json --force"), "inside the input directory");
  expect_error(jevons("logits -m " + model + " --tokens 1,2 --out " + model + " --force"), "is the input");
  expect_error(jevons("logits -m " + model + " --tokens 1,2 --out " + dir.string() + "/./m.gguf --force"), "is the input");
  fs::create_symlink(model, dir / "link.gguf");
  expect_error(jevons("logits -m " + (dir / "link.gguf").string() + " --tokens 1,2 --out " + model + " --force"), "is the input");
  expect_error(jevons("synth --preset smollm2-135m --vocab " + model + " -o " + model + " --force"), "is the input");
  expect_error(jevons("run -m " + model + " -p hi -n 2 --energy-log " + model), "is the input");
  EXPECT_EQ(file_bytes(hf + "/model.safetensors"), st_before);
  EXPECT_EQ(file_bytes(hf + "/config.json"), cfg_before);
  EXPECT_EQ(file_bytes(model), model_before);

  // An existing output needs --force; then it is replaced whole, and no temporary file stays.
  const std::string out = (dir / "logits.f32").string();
  std::ofstream(out) << "keep me";
  expect_error(jevons("logits -m " + model + " --tokens 1,2 --out " + out), "exists: add --force");
  EXPECT_EQ(file_bytes(out), "keep me");
  const Result ok = jevons("logits -m " + model + " --tokens 1,2 --out " + out + " --force");
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(fs::file_size(out), 2u * 512u * 4u);
  const Result conv = jevons("convert " + hf + " " + (dir / "q.gguf").string());
  ASSERT_EQ(conv.code, 0) << conv.err;
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << "left behind: " << e.path();
  fs::remove_all(dir);
}

TEST(OutputFile, AnAbandonedWriteLeavesTheOldFileAndNoTemporary) {
  namespace fs = std::filesystem;
  const fs::path dir = tmp("atomic");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string p = (dir / "out.txt").string();
  std::ofstream(p) << "old";
  {
    OutputFile f(p);
    f.write("new, but never finished", 23);
  }  // an error would unwind here: no commit
  EXPECT_EQ(test::read_file(p), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  {
    OutputFile f(p);
    f.write("new", 3);
    f.commit();
  }
  EXPECT_EQ(test::read_file(p), "new");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_THROW(OutputFile((dir / "no" / "such" / "dir.txt").string()), Error);
  fs::remove_all(dir);
}

// SIGTERM drains and exits 0 (the drain itself: ServerTest.Drain*).
TEST(Cli, ServeExitsCleanlyOnSigterm) {
  const std::string log = tmp("serve_sigterm.txt");
  const Result r = test::run_shell("timeout 60 bash -c '" + std::string(JEVONS_CLI_PATH) + " serve -m " + stories() +
                                   " --port 0 -t 1 2>" + log + " & pid=$!; for i in $(seq 300); do grep -q \"serve: ready\" " + log +
                                   " && break; sleep 0.1; done; kill -TERM $pid; wait $pid; echo rc=$?'");
  const std::string err = test::read_file(log);
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out << err;
  EXPECT_NE(err.find("shutting down"), std::string::npos) << err;
  EXPECT_NE(err.find("serve: stopped"), std::string::npos) << err;
  std::remove(log.c_str());
}

// First-hour messages (issue 28): an unknown command is named, out-of-range sampling
// options are refused, -t beyond the hardware is warned about, parameters read as such.
TEST(Cli, FirstHourMessages) {
  expect_error(jevons("frobnicate"), "unknown command 'frobnicate'");
  expect_error(jevons("run --bogus"), "unknown option '--bogus'");  // not "--model is required"
  expect_error(jevons("eval perplexity -f x.txt --chunkz 3"), "unknown option '--chunkz'");
  expect_error(jevons("run -m " + stories() + " -p hi -n 2 --top-p 2"), "--top-p");
  expect_error(jevons("run -m " + stories() + " -p hi -n 2 --top-k -5"), "--top-k");
  expect_error(jevons("run -m " + stories() + " -p hi -n 2 --min-p 1.5"), "--min-p");
  const Result many = jevons("run -m " + stories() + " -p hi -n 1 -t 256");
  ASSERT_EQ(many.code, 0) << many.err;
  EXPECT_NE(many.err.find("more threads than this machine's"), std::string::npos) << many.err;
  const Result inspect = jevons("inspect " + stories());
  EXPECT_NE(inspect.out.find("parameters: 292800 (292.8 K)"), std::string::npos) << inspect.out;
}

TEST(Cli, SameSeedSameOutput) {
  const std::string args = "run -m " + stories() + " -p \"Once upon a time\" -n 40 --temp 1.0 --seed 42";
  const Result a = jevons(args), b = jevons(args), c = jevons(args + "1");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);  // another seed takes another path (40 tokens at temp 1)
}

TEST(Cli, LogitsWritesEveryPosition) {
  const std::string dir = test::shared_dir() + "/golden/qwen2";
  const std::string out = tmp("logits.f32");
  const Result r = jevons("logits -m " + dir + "/gguf/model-bf16.gguf --tokens 100,200,300,400 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::filesystem::file_size(out), 4u * 4096 * 4);
  std::filesystem::remove(out);
}

TEST(Cli, TokenizeAndDetokenize) {
  Result r = jevons("tokenize -m " + stories() + " \"Once upon a time\"");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1 403 407 261 378\n");
  r = jevons("tokenize --no-bos -m " + stories() + " \"Once upon a time\"");
  EXPECT_EQ(r.out, "403 407 261 378\n");
  r = jevons("detokenize -m " + stories() + " 403,407,261,378");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Once upon a time"), std::string::npos) << r.out;
}

TEST(Cli, InspectShowsTensorsAndKvBytes) {
  const Result r = jevons("inspect " + stories());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("blk.0.attn_q.weight"), std::string::npos);
  // stories260K: 5 layers x (4 kv heads x 8 dims) x (K + V) x 2 bytes (f16) = 640, 1280 in f32
  EXPECT_NE(r.out.find("KV cache: 640 bytes per token in f16 / bf16 (the default --kv-type f16), 1280 in f32"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("parameters:"), std::string::npos);
}

TEST(Cli, HelpForEverySubcommand) {
  for (const char* sub : {"run", "logits", "tokenize", "detokenize", "inspect"}) {
    const Result r = jevons(std::string(sub) + " --help");
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << ": " << r.out;
  }
  EXPECT_EQ(jevons("").code, 1);  // no subcommand
  EXPECT_EQ(jevons("run").code, 1);  // -m missing
}

TEST(Cli, F16AsBf16RoundsF16MatricesAndSaysSo) {
  // --f16-as-bf16 on an F16 model: bench counts the rounded matrices and compares
  // prefill with the BF16 kernels' peak; inspect reports the bytes; a model without
  // F16 matrices gets a warning that the flag did nothing.
  const std::string f16 = test::shared_dir() + "/golden/stories260K/gguf/stories260K-f16.gguf";
  const std::string env = "XDG_CACHE_HOME=" + tmp("bench_cache_f16") + " ";
  const Result r = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + f16 +
                                   " -p 16 -n 0 -r 1 -t 1 --json --f16-as-bf16");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["type"], "f16");
  std::filesystem::remove_all(tmp("bench_cache_f16"));
  if (!repacking_enabled()) {
    EXPECT_FALSE(j["f16_as_bf16"].get<bool>());
    EXPECT_NE(r.err.find("--f16-as-bf16: no matrix was rounded"), std::string::npos) << r.err;
    GTEST_SKIP() << "weights are not repacked on this CPU";
  }
  EXPECT_TRUE(j["f16_as_bf16"].get<bool>());
  EXPECT_TRUE(j["f16_rounded"].get<bool>());  // stories260K's F16 values have 11 significant bits
  EXPECT_GT(j["memory"]["f16_rounded_gib"].get<double>(), 0.0);
  const bool bf16_dot = std::string(kernel_target_name()).find("+BF16") != std::string::npos;
  EXPECT_NE(j["prefill"]["peak"].get<std::string>().find(bf16_dot ? "bf16 dot" : "f32 FMA"), std::string::npos) << j["prefill"];

  const Result plain = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + f16 +
                                       " -p 0 -n 2 -r 1 -t 1 --json");
  std::filesystem::remove_all(tmp("bench_cache_f16"));
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_FALSE(nlohmann::json::parse(plain.out)["f16_as_bf16"].get<bool>());

  const Result inspect = jevons("inspect " + f16 + " --f16-as-bf16");
  ASSERT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("F16 matrices run as BF16"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("--f16-as-bf16: every F16 matrix rounded"), std::string::npos) << inspect.out;
  EXPECT_EQ(inspect.out.find("0.00 B of them rounded"), std::string::npos) << inspect.out;

  // Without the BF16 dot product (here forced off) the flag only costs precision: said so.
  const Result no_dot = test::run_shell("JEVONS_NO_BF16_DOT=1 timeout 120 " + std::string(JEVONS_CLI_PATH) + " run -m " + f16 +
                                        " -p Once -n 2 --temp 0 -t 1 --f16-as-bf16");
  ASSERT_EQ(no_dot.code, 0) << no_dot.err;
  EXPECT_NE(no_dot.err.find("this CPU has no BF16 dot product"), std::string::npos) << no_dot.err;

  const Result f32 = jevons("run -m " + stories() + " -p Once -n 2 --temp 0 -t 1 --f16-as-bf16");
  ASSERT_EQ(f32.code, 0) << f32.err;
  EXPECT_NE(f32.err.find("--f16-as-bf16: no matrix was rounded (the model has no F16 matrix"), std::string::npos) << f32.err;
}

TEST(Cli, F16FileOfBf16ValuesRunsAsBf16ByDefault) {
  // An F16 GGUF converted from a BF16 checkpoint holds BF16 values only: by default it
  // runs the BF16 kernels where the CPU has the dot product, with nothing rounded, and
  // run says so; --no-f16-as-bf16 keeps it F16; the two flags exclude each other.
  const std::string gguf = tmp("llama_bpe_f16.gguf");
  const Result conv = jevons("convert " + test::shared_dir() + "/golden/llama-bpe/hf " + gguf + " --type f16 -t 2");
  ASSERT_EQ(conv.code, 0) << conv.err;
  const std::string env = "XDG_CACHE_HOME=" + tmp("bench_cache_bf16_values") + " ";
  auto bench = [&](const std::string& flags) {
    const Result r = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + gguf +
                                     " -p 16 -n 0 -r 1 -t 1 --json " + flags);
    std::filesystem::remove_all(tmp("bench_cache_bf16_values"));
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  };
  const bool as_bf16 = repacking_enabled() && matmul_uses_bf16_dot();
  const auto by_default = bench("");
  EXPECT_EQ(by_default.value("type", ""), "f16");
  EXPECT_EQ(by_default.value("f16_as_bf16", !as_bf16), as_bf16);
  EXPECT_FALSE(by_default.value("f16_rounded", true));
  if (as_bf16) {
    EXPECT_NE(by_default["prefill"]["peak"].get<std::string>().find("bf16 dot"), std::string::npos) << by_default["prefill"];
  }
  const auto kept = bench("--no-f16-as-bf16");
  EXPECT_FALSE(kept.value("f16_as_bf16", true));
  EXPECT_NE(kept["prefill"]["peak"].get<std::string>().find("f32 FMA"), std::string::npos) << kept["prefill"];
  const auto rounded = bench("--f16-as-bf16");
  EXPECT_EQ(rounded.value("f16_as_bf16", !repacking_enabled()), repacking_enabled());
  EXPECT_FALSE(rounded.value("f16_rounded", true));  // nothing to round

  const Result run = jevons("run -m " + gguf + " -p Hello -n 2 --temp 0 -t 1");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err.find("F16 matrices hold BF16 values only") != std::string::npos, as_bf16) << run.err;
  const Result both = jevons("run -m " + gguf + " -p Hello -n 2 --f16-as-bf16 --no-f16-as-bf16");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
  std::filesystem::remove(gguf);
}

TEST(Cli, WarnsOfMatricesWithoutASimdKernel) {
  // Q8_1 weights (a GGUF type, though files use it only for activations) have no fast
  // matmul: a model with Q8_1 matrices runs, and says why it is slow, naming the types
  // that have one.
  const std::string hf = test::shared_dir() + "/golden/llama-bpe/hf";
  const Result q81 = jevons("run -m " + hf + " --quant q8_1 -p Hello -n 2 --temp 0 -t 1");
  ASSERT_EQ(q81.code, 0) << q81.err;
  EXPECT_NE(q81.err.find("q8_1 matrices"), std::string::npos) << q81.err;
  EXPECT_NE(q81.err.find("run on the exact reference kernel"), std::string::npos) << q81.err;
  EXPECT_NE(q81.err.find("one: f32 f16 q4_0"), std::string::npos) << q81.err;
  EXPECT_NE(q81.err.find(" q2_K q3_K q4_K "), std::string::npos) << q81.err;
  const Result q2 = jevons("run -m " + hf + " --quant q2_k -p Hello -n 2 --temp 0 -t 1");
  ASSERT_EQ(q2.code, 0) << q2.err;
  EXPECT_EQ(q2.err.find("reference kernel"), std::string::npos) << q2.err;
}

TEST(Cli, BenchJsonReportsRatesRooflineAndPeak) {
  // A private cache directory: the first run measures the bandwidth and the compute peak
  // and caches them, the second (decode only) reads the cache.
  const std::string cache = tmp("bench_cache");
  std::filesystem::remove_all(cache);
  const std::string env = "XDG_CACHE_HOME=" + cache + " ";
  const Result r = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() +
                                   " -p 16 -n 8 -r 2 -t 1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["type"], "f32");
  EXPECT_EQ(j["threads"], 1);
  const auto& p = j["prefill"];
  EXPECT_EQ(p["tokens"], 16);
  EXPECT_GT(p["tokens_per_s"].get<double>(), 0.0);
  EXPECT_LE(p["tokens_per_s_min"].get<double>(), p["tokens_per_s"].get<double>());
  EXPECT_GE(p["tokens_per_s_max"].get<double>(), p["tokens_per_s"].get<double>());
  EXPECT_GT(p["gops"].get<double>(), 0.0);
  EXPECT_GT(p["peak_gops"].get<double>(), 0.0);
  EXPECT_NE(p["peak"].get<std::string>().find("f32 FMA"), std::string::npos) << p["peak"];
  EXPECT_NEAR(p["peak_pct"].get<double>(), 100.0 * p["gops"].get<double>() / p["peak_gops"].get<double>(), 1e-6);
  const auto& d = j["decode"];
  EXPECT_EQ(d["tokens"], 8);
  // stories260K in f32: every matrix is read once per token (~1 MB).
  EXPECT_GT(d["bytes_per_token"].get<double>(), 0.9e6);
  EXPECT_LT(d["bytes_per_token"].get<double>(), 1.2e6);
  EXPECT_GT(d["bandwidth_gbs"].get<double>(), 0.0);
  EXPECT_NEAR(d["roofline_pct"].get<double>(),
              100.0 * d["bytes_per_token"].get<double>() * d["tokens_per_s"].get<double>() / 1e9 / d["bandwidth_gbs"].get<double>(),
              1e-6);
  EXPECT_TRUE(j.contains("energy"));

  const auto probes = nlohmann::json::parse(test::read_file(cache + "/jevons/probes.json"));
  EXPECT_EQ(probes.size(), 2u) << probes.dump();
  // Keyed by the CPU's family and model too: a VM's model name may be only "AMD EPYC".
  if (test::read_file("/proc/cpuinfo").find("cpu family") != std::string::npos) {
    for (const auto& [key, value] : probes.items()) EXPECT_NE(key.find(" (family "), std::string::npos) << key;
  }
  // The cached bandwidth is what a decode-only run reports.
  const Result r2 = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() +
                                    " -p 0 -n 4 -r 3 -t 1 --json --live-bandwidth");
  ASSERT_EQ(r2.code, 0) << r2.err;
  const auto j2 = nlohmann::json::parse(r2.out);
  EXPECT_FALSE(j2.contains("prefill"));
  const auto& d2 = j2["decode"];
  EXPECT_EQ(d2["bandwidth_gbs"].get<double>(), d["bandwidth_gbs"].get<double>());
  // --live-bandwidth: a probe after each of the 3 runs, each run compared with its own probe.
  ASSERT_TRUE(d2.contains("live_bandwidth")) << d2.dump();
  const auto& live = d2["live_bandwidth"];
  EXPECT_GT(live["gbs_min"].get<double>(), 0.0);
  EXPECT_LE(live["gbs_min"].get<double>(), live["gbs"].get<double>());
  EXPECT_LE(live["gbs"].get<double>(), live["gbs_max"].get<double>());
  EXPECT_GE(live["probe_bytes"].get<double>(), 256.0 * 1024 * 1024);
  // Each run's percentage lies between its rate over the fastest and the slowest probe.
  const double bytes = d2["bytes_per_token"].get<double>();
  EXPECT_GE(live["roofline_pct_max"].get<double>(),
            100.0 * bytes * d2["tokens_per_s_min"].get<double>() / 1e9 / live["gbs_max"].get<double>() - 1e-9);
  EXPECT_LE(live["roofline_pct_min"].get<double>(),
            100.0 * bytes * d2["tokens_per_s_max"].get<double>() / 1e9 / live["gbs_min"].get<double>() + 1e-9);
  EXPECT_FALSE(j.contains("live_bandwidth") || d.contains("live_bandwidth"));  // only when asked for

  // A prefill faster than the cached peak (here a spoiled cache: 0.001 GOP/s) probes
  // the peak again and keeps the larger value.
  auto spoiled = nlohmann::json::parse(test::read_file(cache + "/jevons/probes.json"));
  std::string peak_key;
  for (auto& [key, value] : spoiled.items())
    if (key.find("GOP/s") != std::string::npos) peak_key = key, value = 0.001;
  ASSERT_FALSE(peak_key.empty()) << spoiled.dump();
  std::ofstream(cache + "/jevons/probes.json") << spoiled.dump();
  const Result again = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() +
                                       " -p 16 -n 0 -r 1 -t 1 --json");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("above the cached"), std::string::npos) << again.err;
  const double reprobed = nlohmann::json::parse(again.out)["prefill"]["peak_gops"].get<double>();
  EXPECT_GT(reprobed, 0.001);
  EXPECT_EQ(nlohmann::json::parse(test::read_file(cache + "/jevons/probes.json"))[peak_key].get<double>(), reprobed);

  // -d: decode after that many tokens of context; a token then also reads the cache up
  // to its position (on average depth + (n + 1) / 2 positions).
  EXPECT_EQ(d["depth"], 0);
  const Result deep = test::run_shell(env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() +
                                      " -p 0 -n 4 -d 100 -r 1 -t 1 --json");
  ASSERT_EQ(deep.code, 0) << deep.err;
  const auto dd = nlohmann::json::parse(deep.out)["decode"];
  EXPECT_EQ(dd["depth"], 100);
  EXPECT_EQ(dd["weight_bytes_per_token"], d["weight_bytes_per_token"]);
  EXPECT_EQ(dd["bytes_per_token"].get<uint64_t>(),
            dd["weight_bytes_per_token"].get<uint64_t>() + dd["kv_bytes_per_token"].get<uint64_t>());
  EXPECT_NEAR(dd["kv_bytes_per_token"].get<double>() / d["kv_bytes_per_token"].get<double>(), (100 + 2.5) / 4.5, 1e-3);
  expect_error(test::run_shell(env + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() + " -p 0 -n 8 -d 100000"),
               "exceeds the model's trained context");

  // Cached values are used as they are; an entry of an older probe revision (its key
  // ends before " | probe N") is measured again, not reused.
  const std::string cache_file = cache + "/jevons/probes.json";
  const std::string decode_only = env + "timeout 300 " + std::string(JEVONS_CLI_PATH) + " bench -m " + stories() +
                                  " -p 0 -n 2 -r 1 -t 1 --json";
  auto rewrite_cache = [&](bool strip_revision) {
    const nlohmann::json probes_now = nlohmann::json::parse(test::read_file(cache_file));
    nlohmann::json rewritten = nlohmann::json::object();
    for (const auto& [key, value] : probes_now.items()) {
      const size_t at = key.rfind(" | probe ");
      ASSERT_NE(at, std::string::npos) << key;
      rewritten[strip_revision ? key.substr(0, at) : key] = 7.0;
    }
    std::ofstream(cache_file) << rewritten.dump();
  };
  rewrite_cache(false);
  const Result cached = test::run_shell(decode_only);
  ASSERT_EQ(cached.code, 0) << cached.err;
  EXPECT_EQ(nlohmann::json::parse(cached.out)["decode"]["bandwidth_gbs"].get<double>(), 7.0);
  rewrite_cache(true);
  const Result old = test::run_shell(decode_only);
  ASSERT_EQ(old.code, 0) << old.err;
  EXPECT_NE(nlohmann::json::parse(old.out)["decode"]["bandwidth_gbs"].get<double>(), 7.0);
  std::filesystem::remove_all(cache);
}

TEST(Cli, MissingFile) { expect_error(jevons("run -m /nonexistent/model.gguf -p hi"), "cannot open /nonexistent/model.gguf"); }

TEST(Cli, TruncatedFile) {
  const std::string data = test::read_file(stories());
  for (size_t keep : {size_t(10), size_t(5000), data.size() - 1000}) {
    const std::string path = tmp("truncated.gguf");
    std::ofstream(path, std::ios::binary).write(data.data(), std::streamsize(keep));
    expect_error(jevons("run -m " + path + " -p hi -n 1"), "trunc");
    std::filesystem::remove(path);
  }
}

TEST(Cli, CorruptHeader) {
  std::string data = test::read_file(stories());
  data[1] = 'X';
  const std::string path = tmp("corrupt.gguf");
  std::ofstream(path, std::ios::binary).write(data.data(), std::streamsize(data.size()));
  expect_error(jevons("run -m " + path + " -p hi -n 1"), "not a GGUF file");
  std::filesystem::remove(path);
}

TEST(Cli, UnknownArchitecture) {
  const std::string path = edited_stories("arch.gguf", [](GgufWriter&, const GgufTensor&, bool&) {},
                                          [](GgufWriter& w) { w.set_string("general.architecture", "mamba"); });
  expect_error(jevons("run -m " + path + " -p hi -n 1"), "unknown architecture 'mamba'");
  std::filesystem::remove(path);
}

TEST(Cli, MissingTensor) {
  const std::string path = edited_stories("missing.gguf", [](GgufWriter&, const GgufTensor& t, bool& keep) {
    keep = t.name != "blk.3.attn_q.weight";
  });
  expect_error(jevons("run -m " + path + " -p hi -n 1"), "tensor blk.3.attn_q.weight is missing");
  std::filesystem::remove(path);
}

TEST(Cli, MisShapedTensor) {
  const std::string path = edited_stories("shape.gguf", [](GgufWriter& w, const GgufTensor& t, bool& keep) {
    if (t.name != "blk.2.ffn_up.weight") return;
    keep = false;  // 64x172 in the file; write it as 172x64 (same bytes, wrong shape)
    w.add_tensor(t.name, t.type, {t.dims[1], t.dims[0]}, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  });
  expect_error(jevons("run -m " + path + " -p hi -n 1"), "tensor blk.2.ffn_up.weight: expected 64x172, file has 172x64");
  std::filesystem::remove(path);
}

TEST(Cli, PromptLongerThanContext) {
  expect_error(jevons("run -m " + stories() + " -p \"Once upon a time there was a cat\" -c 4 -n 1"),
               "but the context is 4");
}

TEST(Cli, GenerationStopsAtFullContextWithANotice) {
  const Result r = jevons("run -m " + stories() + " -p \"Once upon a time\" -c 16 -n 100 --temp 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("context full"), std::string::npos) << r.err;
}

TEST(Cli, BadTokenIds) {
  expect_error(jevons("logits -m " + stories() + " --tokens 1,x,3 --out /dev/null"), "cannot parse token ids");
  expect_error(jevons("logits -m " + stories() + " --tokens 1,99999 --out /dev/null"), "outside the vocabulary");
}

}  // namespace
}  // namespace jevons
