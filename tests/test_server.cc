// jevons serve: the continuous-batching scheduler (no HTTP) and the OpenAI-compatible
// HTTP server (in-process, ephemeral loopback port, real HTTP through cpp-httplib).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "meter/meter.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "server/http.h"
#include "engine/scheduler.h"
#include "test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {

using nlohmann::json;
using engine::GenParams;
using engine::Scheduler;
using engine::SchedulerOptions;

std::string qwen_path() { return test::shared_dir() + "/golden/qwen2/gguf/model-bf16.gguf"; }

// One loaded model for every test here (loading is the slow part).
struct Env {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<meter::Meter> meter;
  static Env& get() {
    static Env e = [] {
      Env x;
      x.file = GgufFile::open(qwen_path());
      x.model = load_model(*x.file);
      x.tok = Tokenizer::from_gguf(*x.file);
      x.pool = std::make_unique<ThreadPool>(2);
      x.model->set_thread_pool(x.pool.get());
      meter::Overrides o;
      o.values["energy_source"] = "estimate";
      x.meter = std::make_unique<meter::Meter>(meter::resolve_config(o));
      return x;
    }();
    return e;
  }
};

bool have_model() { return std::filesystem::exists(qwen_path()); }
#define REQUIRE_MODEL() \
  if (!have_model()) GTEST_SKIP() << "missing " << qwen_path()

// Unbatched greedy generation: one sequence, its own cache, the whole prompt at once.
std::vector<int32_t> greedy_reference(const std::vector<int32_t>& prompt, int max_tokens) {
  Env& e = Env::get();
  const int n_vocab = e.model->config().n_vocab;
  KvCache cache = e.model->new_cache(int(prompt.size()) + max_tokens + 1);
  std::vector<float> logits(static_cast<size_t>(n_vocab));
  e.model->forward(cache, prompt.data(), int64_t(prompt.size()), logits.data(), false);
  std::vector<int32_t> out;
  while (int(out.size()) < max_tokens) {
    int32_t id = argmax(logits.data(), n_vocab);
    if (e.tok->is_eog(id)) break;
    out.push_back(id);
    if (int(out.size()) == max_tokens) break;
    e.model->forward(cache, &id, 1, logits.data(), false);
  }
  return out;
}

std::string detok(const std::vector<int32_t>& ids) {
  StreamDecoder d(*Env::get().tok);
  std::string s;
  for (int32_t id : ids) s += d.push(id);
  return s + d.finish();
}

GenParams greedy(int max_tokens) {
  GenParams p;
  p.sampling.temperature = 0;
  p.max_tokens = max_tokens;
  p.split_reasoning = false;
  return p;
}

std::string drain(engine::Request& r, std::string* reasoning = nullptr) {
  std::string content;
  for (;;) {
    std::vector<engine::Delta> ds;
    const bool done = r.wait(ds, std::chrono::milliseconds(100));
    for (const auto& d : ds) {
      content += d.content;
      if (reasoning) *reasoning += d.reasoning;
    }
    if (done) return content;
  }
}

const char* kPrompts[] = {"Once upon a time", "The quick brown fox jumps over the lazy dog. Then",
                          "1, 2, 3, 4,", "Hello", "In a hole in the ground there lived a hobbit. Not a nasty, dirty, wet hole",
                          "def main():", "The capital of France is", "Q: what is two plus two?\nA:"};

// ---- Scheduler, no HTTP ----

TEST(SchedulerTest, BatchedGreedyMatchesUnbatched) {
  REQUIRE_MODEL();
  Env& e = Env::get();
  std::vector<std::vector<int32_t>> prompts, refs;
  const int max_tokens = 20;
  for (const char* p : kPrompts) {
    prompts.push_back(e.tok->encode(p, e.tok->add_bos_default()));
    refs.push_back(greedy_reference(prompts.back(), max_tokens));
  }
  SchedulerOptions o;
  o.engine.kv_type = TensorType::F32;  // the references run f32 caches
  o.engine.parallel = 4;  // more requests than slots: some join mid-flight
  o.engine.n_ctx = 256;
  o.engine.kv_budget_bytes = size_t(64) << 20;
  o.engine.prefill_chunk = 5;  // long prompts are prefilled over several steps
  Scheduler s(*e.model, *e.tok, *e.meter, o);
  std::vector<std::shared_ptr<engine::Request>> reqs;
  for (const auto& p : prompts) reqs.push_back(s.submit(p, greedy(max_tokens)));
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::string text = drain(*reqs[i]);
    const auto res = reqs[i]->results();
    ASSERT_EQ(res.size(), 1u);
    EXPECT_EQ(res[0].tokens, refs[i]) << "prompt " << i << ": " << kPrompts[i];
    EXPECT_EQ(text, detok(refs[i]));
    EXPECT_EQ(res[0].finish_reason, int(refs[i].size()) == max_tokens ? "length" : "stop");
    EXPECT_GT(res[0].prefill.joules + res[0].decode.joules, 0.0);
  }
  EXPECT_EQ(s.stats().kv.used_blocks, 0u);
}

TEST(SchedulerTest, CancelFreesBlocks) {
  REQUIRE_MODEL();
  Env& e = Env::get();
  SchedulerOptions o;
  o.engine.kv_type = TensorType::F32;  // the references run f32 caches
  o.engine.n_ctx = 512;
  o.engine.kv_budget_bytes = size_t(32) << 20;
  Scheduler s(*e.model, *e.tok, *e.meter, o);
  auto r = s.submit(e.tok->encode("Once upon a time", true), greedy(400));
  std::vector<engine::Delta> ds;
  while (ds.empty()) r->wait(ds, std::chrono::milliseconds(50));
  EXPECT_GT(s.stats().kv.used_blocks, 0u);
  r->cancel();
  drain(*r);
  EXPECT_EQ(r->results()[0].finish_reason, "cancelled");
  EXPECT_EQ(s.stats().kv.used_blocks, 0u);
}

TEST(SchedulerTest, RejectsWhatCannotFit) {
  REQUIRE_MODEL();
  Env& e = Env::get();
  SchedulerOptions o;
  o.engine.kv_type = TensorType::F32;  // the references run f32 caches
  o.engine.n_ctx = 64;
  o.engine.parallel = 1;
  o.max_queue = 1;
  o.engine.kv_budget_bytes = size_t(16) << 20;
  Scheduler s(*e.model, *e.tok, *e.meter, o);
  std::vector<int32_t> prompt = e.tok->encode("Once upon a time", true);
  try {
    s.submit(prompt, greedy(100));
    FAIL() << "expected a 400";
  } catch (const engine::RequestError& err) {
    EXPECT_EQ(err.kind, engine::RequestError::Kind::kInvalid);
    EXPECT_NE(std::string(err.what()).find("maximum context length is 64"), std::string::npos) << err.what();
  }
  EXPECT_THROW(s.submit({}, greedy(4)), engine::RequestError);
}

TEST(SchedulerTest, QueueBeyondBoundIs429) {
  REQUIRE_MODEL();
  Env& e = Env::get();
  SchedulerOptions o;
  o.engine.kv_type = TensorType::F32;  // the references run f32 caches
  o.engine.n_ctx = 256;
  o.engine.parallel = 1;
  o.max_queue = 2;
  // Room for one sequence only: the others wait for its blocks.
  o.engine.kv_budget_bytes = KvBlockPool::block_bytes(e.model->config().n_layer, e.model->config().cache_k_dim,
                                               e.model->config().cache_v_dim) * 16;
  Scheduler s(*e.model, *e.tok, *e.meter, o);
  std::vector<int32_t> prompt = e.tok->encode("Once upon a time", true);
  std::vector<std::shared_ptr<engine::Request>> ok;
  int rejected = 0;
  for (int i = 0; i < 6; ++i) {
    try {
      ok.push_back(s.submit(prompt, greedy(200)));
    } catch (const engine::RequestError& err) {
      EXPECT_EQ(err.kind, engine::RequestError::Kind::kBusy);
      ++rejected;
    }
  }
  EXPECT_GE(rejected, 3);
  for (auto& r : ok) r->cancel();
  for (auto& r : ok) drain(*r);
  EXPECT_EQ(s.stats().kv.used_blocks, 0u);
}

// ---- HTTP server ----

struct Sse {
  std::vector<json> chunks;
  bool done = false;
};

Sse parse_sse(const std::string& body) {
  Sse s;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    std::string data = ev.substr(6);
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    s.chunks.push_back(json::parse(data));
  }
  return s;
}

class ServerTest : public ::testing::Test {
 protected:
  static constexpr const char* kKey = "test-key";
  static std::string chatml() { return ChatTemplate::builtin("chatml"); }

  void start(const std::string& tmpl_source, SchedulerOptions so = {}, std::string api_key = kKey) {
    Env& e = Env::get();
    if (so.engine.n_ctx == 4096) so.engine.n_ctx = 512;
    if (so.engine.kv_budget_bytes == 0) so.engine.kv_budget_bytes = size_t(128) << 20;
    so.engine.kv_type = TensorType::F32;  // the references run f32 caches
    tmpl_ = std::make_unique<ChatTemplate>(tmpl_source);
    sched_ = std::make_unique<Scheduler>(*e.model, *e.tok, *e.meter, so);
    server::ServerOptions o;
    o.port = 0;
    o.api_key = api_key;
    o.model_name = "qwen-test";
    o.max_body_bytes = 1 << 20;
    key_ = api_key;
    http_ = std::make_unique<server::HttpServer>(o);
    port_ = http_->bind();
    http_->start();
    http_->attach(server::Backend{sched_.get(), tmpl_.get(), e.meter.get()});
  }
  void SetUp() override {
    if (!have_model()) GTEST_SKIP() << "missing " << qwen_path();
  }
  void TearDown() override {
    if (sched_) sched_->stop();
    if (http_) http_->stop();
    http_.reset();
    sched_.reset();
  }
  httplib::Headers auth() const { return key_.empty() ? httplib::Headers{} : httplib::Headers{{"Authorization", "Bearer " + key_}}; }

  httplib::Result post(const std::string& path, const std::string& body, httplib::Headers h) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    return c.Post(path, h, body, "application/json");
  }
  std::pair<int, json> post_json(const std::string& path, const json& body) {
    auto r = post(path, body.dump(), auth());
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  // A streaming request; stop_after_bytes > 0 hangs up after that much.
  std::pair<int, std::string> post_stream(const std::string& path, const json& body, size_t stop_after_bytes = 0) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.headers = auth();
    req.set_header("Content-Type", "application/json");
    req.body = body.dump();
    std::string got;
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      got.append(d, n);
      return stop_after_bytes == 0 || got.size() < stop_after_bytes;
    };
    httplib::Response res;
    httplib::Error err;
    if (!c.send(req, res, err) && stop_after_bytes == 0) ADD_FAILURE() << "request failed: " << httplib::to_string(err);
    return {res.status, got};
  }

  // A plain-socket HTTP/1.1 client for the load test (one connection each, no
  // library state shared between threads): returns the status and the de-chunked
  // body; hangs up after stop_after_bytes of body when that is > 0.
  std::pair<int, std::string> raw_stream(const std::string& path, const json& body, size_t stop_after_bytes) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return {-1, ""};
    }
    const std::string b = body.dump();
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n";
    if (!key_.empty()) req += "Authorization: Bearer " + key_ + "\r\n";
    req += "Content-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
    for (size_t off = 0; off < req.size();) {
      const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += size_t(n);
    }
    std::string raw;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      raw.append(buf, size_t(n));
      if (stop_after_bytes > 0 && raw.size() >= stop_after_bytes) break;
    }
    ::close(fd);
    const size_t hdr = raw.find("\r\n\r\n");
    if (raw.size() < 12 || hdr == std::string::npos) return {-1, raw};
    const int status = std::atoi(raw.c_str() + 9);
    std::string out;
    size_t pos = hdr + 4;
    while (pos < raw.size()) {  // chunked transfer encoding
      const size_t eol = raw.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const size_t len = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
      if (len == 0 || eol + 2 + len > raw.size()) break;
      out.append(raw, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    return {status, out};
  }

  std::unique_ptr<ChatTemplate> tmpl_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<server::HttpServer> http_;
  int port_ = 0;
  std::string key_;
};

TEST_F(ServerTest, HealthModelsMetricsAndPage) {
  start(chatml());
  httplib::Client c("127.0.0.1", port_);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models", auth());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  json j = json::parse(m->body);
  EXPECT_EQ(j["data"][0]["id"], "qwen-test");
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<title>jevons chat</title>"), std::string::npos);
  auto met = c.Get("/metrics", auth());
  ASSERT_TRUE(met);
  EXPECT_NE(met->body.find("jevons_kv_blocks_total"), std::string::npos);
  EXPECT_NE(met->body.find("# TYPE jevons_queue_depth gauge"), std::string::npos);
  // With a key, /metrics needs it too (only /health and the page do not).
  auto no_key = c.Get("/metrics");
  ASSERT_TRUE(no_key);
  EXPECT_EQ(no_key->status, 401);
  // A known route with another method: 405 and what it allows.
  auto wrong = c.Get("/v1/chat/completions", auth());
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST");
  EXPECT_NE(wrong->body.find("\"error\""), std::string::npos);
  auto unknown = c.Get("/v2/nothing", auth());
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

// --request-timeout: a stream running past it ends with an error event and [DONE].
TEST_F(ServerTest, RequestTimeoutCutsALongStream) {
  SchedulerOptions so;
  so.engine.n_ctx = 4096;
  so.engine.kv_budget_bytes = size_t(256) << 20;
  start(chatml(), so);
  http_->stop();
  server::ServerOptions o;
  o.port = 0;
  o.api_key = kKey;
  o.model_name = "qwen-test";
  o.request_timeout_s = 0.05;
  http_ = std::make_unique<server::HttpServer>(o);
  port_ = http_->bind();
  http_->start();
  http_->attach(server::Backend{sched_.get(), tmpl_.get(), Env::get().meter.get()});
  const json msgs = {{{"role", "user"}, {"content", "Tell me a long story."}}};
  const std::string text =
      post_stream("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"stream", true}, {"ignore_eos", true}}).second;
  EXPECT_NE(text.find("\"code\":\"request_timeout\""), std::string::npos) << text.substr(text.size() > 300 ? text.size() - 300 : 0);
  const size_t done = text.rfind("data: [DONE]");
  ASSERT_NE(done, std::string::npos);
  EXPECT_EQ(text.substr(done), "data: [DONE]\n\n");
  auto [s2, j2] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"ignore_eos", true}});
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(j2["error"]["code"], "request_timeout") << j2.dump().substr(0, 300);
}

TEST_F(ServerTest, CorsPreflightAllowsTheHeadersItAsksFor) {
  SchedulerOptions so;
  start(chatml(), so);
  http_->stop();
  server::ServerOptions o;
  o.port = 0;
  o.cors_origin = "*";
  o.model_name = "qwen-test";
  server::HttpServer cors(o);
  const int port = cors.bind();
  cors.start();
  httplib::Client c("127.0.0.1", port);
  auto pre = c.Options("/v1/chat/completions", httplib::Headers{{"Origin", "http://x"},
                                                                {"Access-Control-Request-Method", "POST"},
                                                                {"Access-Control-Request-Headers", "authorization, content-type, x-stainless-os"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "authorization, content-type, x-stainless-os");
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "*");
  cors.stop();
}

TEST_F(ServerTest, HealthIs503WhileLoading) {
  server::ServerOptions o;
  o.port = 0;
  server::HttpServer http(o);
  const int port = http.bind();
  http.start();
  httplib::Client c("127.0.0.1", port);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  auto r = c.Post("/v1/completions", R"({"prompt":"hi"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  http.stop();
}

TEST_F(ServerTest, AuthRequiredOnV1) {
  start(chatml());
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer wrong"}}, R"({"messages":[]})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(c.Get("/health")->status, 200);  // health needs no key
}

TEST_F(ServerTest, ChatNonStreamingUsageAndEnergy) {
  start(chatml());
  Env& e = Env::get();
  const json body = {{"model", "qwen-test"}, {"messages", {{{"role", "user"}, {"content", "Tell me a story."}}}},
                     {"temperature", 0}, {"max_tokens", 16}};
  auto [status, j] = post_json("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["object"], "chat.completion");
  const json& u = j["usage"];
  const std::string prompt_text = tmpl_->render({{"user", "Tell me a story.", ""}}, true);
  const std::vector<int32_t> prompt = e.tok->encode(prompt_text, e.tok->add_bos_default());
  const std::vector<int32_t> ref = greedy_reference(prompt, 16);
  EXPECT_EQ(u["prompt_tokens"], int(prompt.size()));
  EXPECT_EQ(u["completion_tokens"], int(ref.size()));
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
  EXPECT_EQ(u["completion_tokens_details"]["reasoning_tokens"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["content"], detok(ref));
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const json& en = u["energy"];
  EXPECT_GT(en["joules"].get<double>(), 0);
  EXPECT_EQ(en["source"], "estimated");
  EXPECT_NEAR(en["joules"].get<double>(), en["prefill_joules"].get<double>() + en["decode_joules"].get<double>(), 1e-9);
  EXPECT_NEAR(en["tokens_per_joule"].get<double>(), u["total_tokens"].get<double>() / en["joules"].get<double>(), 1e-6);
  EXPECT_GE(en["cost_usd"].get<double>(), 0);
  EXPECT_GE(en["co2_g"].get<double>(), 0);
}

TEST_F(ServerTest, ChatStreamingMatchesNonStreaming) {
  start(chatml());
  json body = {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi there"}}}},
               {"temperature", 0}, {"max_tokens", 12}};
  auto [status, whole] = post_json("/v1/chat/completions", body);
  ASSERT_EQ(status, 200);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto [sstatus, text] = post_stream("/v1/chat/completions", body);
  ASSERT_EQ(sstatus, 200);
  Sse s = parse_sse(text);
  EXPECT_TRUE(s.done);
  ASSERT_GE(s.chunks.size(), 3u);
  EXPECT_EQ(s.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  std::string finish;
  for (const json& c : s.chunks) {
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    for (const json& ch : c["choices"]) {
      if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
      EXPECT_FALSE(ch["delta"].contains("reasoning_content"));
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
  }
  EXPECT_EQ(content, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
  const json& last = s.chunks.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
  EXPECT_GT(last["usage"]["energy"]["joules"].get<double>(), 0);
}

// A conversation sent again (one more turn): the second request finds the first's
// prompt blocks in the prefix cache, says so in usage, and answers as a cold run would.
TEST_F(ServerTest, PrefixCacheHitReportedInUsage) {
  start(chatml());
  Env& e = Env::get();
  std::string system = "You are a storyteller.";
  for (int i = 0; i < 12; ++i) system += " Keep every story short, kind and simple, with a happy ending number " + std::to_string(i) + ".";
  json msgs = {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", "Tell me a story."}}};
  auto [s1, j1] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"max_tokens", 8}});
  ASSERT_EQ(s1, 200) << j1.dump();
  EXPECT_EQ(j1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  msgs.push_back({{"role", "assistant"}, {"content", j1["choices"][0]["message"]["content"]}});
  msgs.push_back({{"role", "user"}, {"content", "Another one."}});
  auto [s2, j2] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"max_tokens", 8}});
  ASSERT_EQ(s2, 200) << j2.dump();
  const int cached = j2["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  const int prompt_tokens = j2["usage"]["prompt_tokens"].get<int>();
  EXPECT_GE(cached, j1["usage"]["prompt_tokens"].get<int>() - 16) << "all but the first prompt's last partial block";
  EXPECT_LT(cached, prompt_tokens);
  EXPECT_GT(j2["usage"]["energy"]["cached_prompt_joules_saved"].get<double>(), 0);
  EXPECT_EQ(j2["usage"]["energy"]["cached_prompt_joules_saved_estimated"], true);
  std::vector<ChatMessage> history;
  for (const json& m : msgs) history.push_back({m["role"], m["content"], ""});
  const std::vector<int32_t> prompt = e.tok->encode(tmpl_->render(history, true), e.tok->add_bos_default(), true);
  EXPECT_EQ(prompt_tokens, int(prompt.size()));
  EXPECT_EQ(j2["choices"][0]["message"]["content"], detok(greedy_reference(prompt, 8)));
  httplib::Client c("127.0.0.1", port_);
  auto met = c.Get("/metrics", auth());
  ASSERT_TRUE(met);
  EXPECT_NE(met->body.find("jevons_prefix_cache_hit_rate"), std::string::npos);
  EXPECT_NE(met->body.find("jevons_kv_cached_bytes"), std::string::npos);
}

// Speculative decoding through the server: the same greedy answer, proposals reported
// in usage (OpenAI's prediction-token fields) and /metrics, and off for a request that
// says "speculative": false.
TEST_F(ServerTest, SpeculativeDecodingReportedInUsageAndOffPerRequest) {
  SchedulerOptions so;
  so.engine.spec.method = engine::SpecMethod::kPromptLookup;
  start(chatml(), so);
  // A prompt that repeats itself, so that lookup has something to propose.
  std::string text;
  for (int i = 0; i < 6; ++i) text += "one two three four five six seven eight nine ten. ";
  const json msgs = {{{"role", "user"}, {"content", text}}};
  auto [s1, j1] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"max_tokens", 24}});
  ASSERT_EQ(s1, 200) << j1.dump();
  const json& d1 = j1["usage"]["completion_tokens_details"];
  const int accepted = d1["accepted_prediction_tokens"].get<int>(), rejected = d1["rejected_prediction_tokens"].get<int>();
  EXPECT_GT(accepted + rejected, 0) << j1["usage"].dump();
  auto [s2, j2] = post_json("/v1/chat/completions",
                            json{{"messages", msgs}, {"temperature", 0}, {"max_tokens", 24}, {"speculative", false}});
  ASSERT_EQ(s2, 200) << j2.dump();
  EXPECT_EQ(j2["usage"]["completion_tokens_details"]["accepted_prediction_tokens"], 0);
  EXPECT_EQ(j2["usage"]["completion_tokens_details"]["rejected_prediction_tokens"], 0);
  EXPECT_EQ(j1["choices"][0]["message"]["content"], j2["choices"][0]["message"]["content"]);
  auto [s3, j3] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"speculative", "yes"}});
  EXPECT_EQ(s3, 400) << j3.dump();
  httplib::Client c("127.0.0.1", port_);
  auto met = c.Get("/metrics", auth());
  ASSERT_TRUE(met);
  EXPECT_NE(met->body.find("jevons_spec_drafted_tokens_total " + std::to_string(accepted + rejected)), std::string::npos) << met->body;
}

// SIGTERM's drain (HttpServer::drain): new requests get 503 at once, a request in flight
// may finish within the timeout; past it, an open stream ends with an error event and
// [DONE], and its work is cancelled.
TEST_F(ServerTest, DrainLetsRunningRequestsFinishThenCutsStreamsCleanly) {
  start(chatml());
  const json msgs = {{{"role", "user"}, {"content", "Tell me a long story."}}};
  // 1. A generous timeout: the running stream finishes normally, a new request is refused.
  std::string text1;
  std::thread t1([&] {
    text1 = post_stream("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"stream", true}, {"max_tokens", 200},
                                                   {"ignore_eos", true}}).second;
  });
  while (http_->in_flight() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int cut = -1;
  std::thread drainer([&] { cut = http_->drain(std::chrono::seconds(60)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto [s2, j2] = post_json("/v1/chat/completions", json{{"messages", msgs}, {"max_tokens", 4}});
  EXPECT_TRUE(s2 == 503 || s2 == -1) << s2 << " " << j2.dump();  // refused, or the listener is already gone
  t1.join();
  drainer.join();
  EXPECT_EQ(cut, 0);
  EXPECT_NE(text1.find("\"finish_reason\":\"length\""), std::string::npos) << text1.substr(0, 300);
  EXPECT_NE(text1.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(text1.find("server_shutdown"), std::string::npos);
}

TEST_F(ServerTest, DrainTimeoutEndsOpenStreamsWithAnErrorAndDone) {
  SchedulerOptions so;
  so.engine.n_ctx = 4096;  // long enough to be cut
  so.engine.kv_budget_bytes = size_t(256) << 20;
  start(chatml(), so);
  const json msgs = {{{"role", "user"}, {"content", "Tell me a long story."}}};
  std::string text;
  std::thread t([&] {
    text = post_stream("/v1/chat/completions", json{{"messages", msgs}, {"temperature", 0}, {"stream", true}, {"ignore_eos", true}}).second;
  });
  while (text.empty() && http_->in_flight() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(http_->drain(std::chrono::milliseconds(0)), 1);
  t.join();
  EXPECT_NE(text.find("\"code\":\"server_shutdown\""), std::string::npos) << text.substr(text.size() > 400 ? text.size() - 400 : 0);
  const size_t done = text.rfind("data: [DONE]");
  ASSERT_NE(done, std::string::npos);
  EXPECT_EQ(text.substr(done), "data: [DONE]\n\n");
  for (int i = 0; i < 200 && sched_->stats().kv.used_blocks > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(sched_->stats().kv.used_blocks, 0u) << "the cut request's blocks are freed";
}

// --max-queue 0 means "no queue": a request runs when a slot is free, else 429.
TEST_F(ServerTest, MaxQueueZeroMeansNoQueueNotNoService) {
  Env& e = Env::get();
  SchedulerOptions so;
  so.engine.parallel = 2;
  so.engine.n_ctx = 512;
  so.engine.kv_type = TensorType::F32;
  so.engine.kv_budget_bytes = size_t(128) << 20;
  so.max_queue = 0;
  Scheduler sched(*e.model, *e.tok, *e.meter, so);
  GenParams gp;
  gp.max_tokens = 400;
  gp.ignore_eos = true;
  const std::vector<int32_t> prompt = e.tok->encode("Once upon a time", false);
  auto r1 = sched.submit(prompt, gp);  // slots free: runs (before: refused, 1 > 0)
  auto r2 = sched.submit(prompt, gp);
  try {
    sched.submit(prompt, gp);
    ADD_FAILURE() << "a third request with two slots and no queue was accepted";
  } catch (const engine::RequestError& err) {
    EXPECT_EQ(err.kind, engine::RequestError::Kind::kBusy);
  }
  r1->cancel();
  r2->cancel();
  sched.stop();
}

// 32 requests with no max_tokens (each runs to the end of the context) on a KV pool of
// two contexts: nothing is refused for lack of KV, every answer equals its unbatched
// greedy run, and no block is held afterwards.
TEST_F(ServerTest, UnlimitedRequestsOnASmallPoolAllComplete) {
  Env& e = Env::get();
  const int n_ctx = 80;
  SchedulerOptions so;
  so.engine.parallel = 32;
  so.engine.n_ctx = n_ctx;
  so.max_queue = 64;
  const ModelConfig& c = e.model->config();
  so.engine.kv_budget_bytes = 2 * (n_ctx / KvBlockPool::kBlockTokens) * KvBlockPool::block_bytes(c.n_layer, c.cache_k_dim, c.cache_v_dim);
  start(chatml(), so);
  std::vector<std::string> prompts, expect;
  for (int i = 0; i < 32; ++i) {
    prompts.push_back(std::string(kPrompts[i % 8]) + " " + std::to_string(i));
    const std::vector<int32_t> ids = e.tok->encode(prompts.back(), e.tok->add_bos_default());
    expect.push_back(detok(greedy_reference(ids, n_ctx + 1 - int(ids.size()))));
  }
  std::vector<std::thread> threads;
  std::vector<int> status(32, 0);
  std::vector<std::string> got(32);
  for (int i = 0; i < 32; ++i)
    threads.emplace_back([&, i] {
      auto [st, text] = raw_stream("/v1/completions", json{{"prompt", prompts[size_t(i)]}, {"temperature", 0}}, 0);
      status[size_t(i)] = st;
      const json j = json::parse(text, nullptr, false);
      if (!j.is_discarded() && j.contains("choices")) got[size_t(i)] = j["choices"][0]["text"].get<std::string>();
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(status[size_t(i)], 200) << "request " << i;
    EXPECT_EQ(got[size_t(i)], expect[size_t(i)]) << "request " << i;
  }
  // (That some were preempted depends on when the 32 requests arrive; EngineTest's
  // PreemptionUnderAPoolFarSmallerThanTheWork checks it with all of them there at once.)
  for (int k = 0; k < 100 && sched_->stats().kv.used_blocks > 0; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(sched_->stats().kv.used_blocks, 0u);
}

// One generation loop: `jevons run`, `jevons chat` and the server give the same greedy
// tokens for the same prompt.
TEST_F(ServerTest, RunChatAndServeGiveTheSameGreedyText) {
  start(chatml());
  const std::string cli = std::string(JEVONS_CLI_PATH) + " ";
  const std::string prompt = "The quick brown fox";
  const test::ShellResult run = test::run_shell(cli + "run -m " + qwen_path() + " -p '" + prompt +
                                                "' -n 12 --temp 0 -t 2 --kv-type f32 -c 256");
  ASSERT_EQ(run.code, 0) << run.err;
  auto [st, j] = post_json("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(st, 200) << j.dump();
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(run.out, prompt + j["choices"][0]["text"].get<std::string>() + "\n");

  const test::ShellResult chat = test::run_shell("printf 'Hello there\\n' | " + cli + "chat -m " + qwen_path() +
                                                 " --chat-template chatml -n 12 --temp 0 -t 2 --kv-type f32 -c 256");
  ASSERT_EQ(chat.code, 0) << chat.err;
  auto [st2, j2] = post_json("/v1/chat/completions",
                             json{{"messages", {{{"role", "user"}, {"content", "Hello there"}}}}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(st2, 200) << j2.dump();
  EXPECT_GT(j2["usage"]["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(chat.out, j2["choices"][0]["message"]["content"].get<std::string>() + "\n");
}

// A second server on a port in use fails to bind, saying so, instead of sharing the
// port (cpp-httplib's default SO_REUSEPORT would let it).
TEST(HttpServerBind, APortInUseIsRefused) {
  server::ServerOptions o;
  o.port = 0;
  server::HttpServer first(o);
  const int port = first.bind();
  first.start();
  o.port = port;
  server::HttpServer second(o);
  try {
    second.bind();
    FAIL() << "a second server bound port " << port;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("cannot listen on 127.0.0.1:{} (in use)", port)), std::string::npos) << e.what();
  }
  first.stop();
}

TEST_F(ServerTest, CompletionsStopStringAcrossTokens) {
  start(chatml());
  Env& e = Env::get();
  const std::string prompt = "Once upon a time";
  const std::vector<int32_t> ref = greedy_reference(e.tok->encode(prompt, e.tok->add_bos_default()), 24);
  const std::string full = detok(ref);
  ASSERT_GT(full.size(), 12u);
  // A stop string that starts inside one token and ends inside a later one.
  std::string first = detok({ref[0]}), second = detok({ref[0], ref[1]});
  size_t start_at = first.size() > 1 ? first.size() - 1 : first.size();
  std::string stop = full.substr(start_at, std::min<size_t>(second.size() - start_at + 2, full.size() - start_at));
  const size_t expect_len = full.find(stop);
  auto [status, j] = post_json("/v1/completions", {{"prompt", prompt}, {"temperature", 0}, {"max_tokens", 24}, {"stop", {stop}}});
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["choices"][0]["text"], full.substr(0, expect_len)) << "stop='" << stop << "'";
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  // Streaming: the same text, and nothing of the stop string leaks.
  auto [ss, text] = post_stream("/v1/completions", {{"prompt", prompt}, {"temperature", 0}, {"max_tokens", 24}, {"stop", stop}, {"stream", true}});
  ASSERT_EQ(ss, 200);
  std::string streamed;
  for (const json& c : parse_sse(text).chunks)
    for (const json& ch : c["choices"]) streamed += ch["text"].get<std::string>();
  EXPECT_EQ(streamed, full.substr(0, expect_len));
}

TEST_F(ServerTest, SeedsReproduceAndNChoices) {
  start(chatml());
  json body = {{"prompt", "The little dog"}, {"temperature", 1.0}, {"top_k", 0}, {"top_p", 1.0}, {"min_p", 0}, {"seed", 1234},
               {"max_tokens", 16}};
  auto [s1, a] = post_json("/v1/completions", body);
  auto [s2, b] = post_json("/v1/completions", body);
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  body["n"] = 3;
  auto [s3, c] = post_json("/v1/completions", body);
  ASSERT_EQ(s3, 200);
  ASSERT_EQ(c["choices"].size(), 3u);
  EXPECT_EQ(c["choices"][0]["text"], a["choices"][0]["text"]);  // choice i uses seed + i
  int completion = 0;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c["choices"][i]["index"], i);
  completion = c["usage"]["completion_tokens"];
  EXPECT_GE(completion, 3);
}

TEST_F(ServerTest, ChatLogprobs) {
  start(chatml());
  auto [status, j] = post_json("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"temperature", 0},
                                                        {"max_tokens", 5}, {"logprobs", true}, {"top_logprobs", 3}});
  ASSERT_EQ(status, 200) << j.dump();
  const json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(int(lp.size()), j["usage"]["completion_tokens"].get<int>());
  for (const json& t : lp) {
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    // Greedy: the chosen token is the most likely one.
    EXPECT_NEAR(t["logprob"].get<double>(), t["top_logprobs"][0]["logprob"].get<double>(), 1e-5);
  }
}

TEST_F(ServerTest, ErrorsInOpenAiShape) {
  start(chatml(), SchedulerOptions{.engine = {.parallel = 2, .n_ctx = 128}});
  auto check = [&](const std::string& path, const std::string& body, int status, const std::string& param = "") {
    auto r = post(path, body, auth());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    if (!param.empty()) {
      EXPECT_EQ(j["error"]["param"], param);
    }
  };
  check("/v1/chat/completions", "{not json", 400);
  check("/v1/chat/completions", R"({"messages":"hi"})", 400, "messages");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"temperature":"hot"})", 400, "temperature");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":-3})", 400, "max_tokens");
  check("/v1/completions", R"({"prompt":"hi","model":"gpt-9"})", 404, "model");
  check("/v1/completions", R"({"prompt":"hi","max_tokens":1000})", 400, "max_tokens");
  check("/v1/completions", R"({"prompt":42})", 400, "prompt");
  check("/v1/nothing", "{}", 404);
  // Body beyond the limit.
  auto r = post("/v1/completions", std::string(2 << 20, ' '), auth());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

// Structured output and the parameters that used to be ignored with a 200.
TEST_F(ServerTest, StructuredOutputAndNothingSilentlyIgnored) {
  start(chatml(), SchedulerOptions{.engine = {.parallel = 4, .n_ctx = 256}});
  const json schema = json::parse(R"({"type":"object","properties":{"city":{"type":"string","maxLength":8},
    "temp":{"type":"integer","minimum":0,"maximum":40},"sunny":{"type":"boolean"}},"required":["city","temp","sunny"],
    "additionalProperties":false})");
  for (int seed = 1; seed <= 5; ++seed) {
    auto [status, j] = post_json("/v1/chat/completions",
                                 {{"messages", {{{"role", "user"}, {"content", "weather?"}}}},
                                  {"seed", seed},
                                  {"max_tokens", 80},
                                  {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "w"}, {"strict", true}, {"schema", schema}}}}}});
    ASSERT_EQ(status, 200) << j.dump();
    const json v = json::parse(j["choices"][0]["message"]["content"].get<std::string>(), nullptr, false);
    ASSERT_TRUE(v.is_object()) << j.dump();
    EXPECT_TRUE(v["city"].is_string() && v["temp"].is_number_integer() && v["sunny"].is_boolean()) << v.dump();
    EXPECT_EQ(v.size(), 3u);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  }
  {
    auto [status, j] = post_json("/v1/completions", {{"prompt", "x"}, {"max_tokens", 30}, {"response_format", {{"type", "json_object"}}}, {"seed", 3}});
    ASSERT_EQ(status, 200) << j.dump();
    EXPECT_TRUE(json::parse(j["choices"][0]["text"].get<std::string>(), nullptr, false).is_object()) << j.dump();
  }
  {
    // llama-server's GBNF field, streamed.
    auto [status, body] = post_stream("/v1/completions", {{"prompt", "x"}, {"max_tokens", 20}, {"stream", true}, {"grammar", R"(root ::= ("yes" | "no") "!")"}});
    ASSERT_EQ(status, 200);
    std::string text;
    for (size_t p = body.find("data: {"); p != std::string::npos; p = body.find("data: {", p + 1)) {
      const json c = json::parse(body.substr(p + 6, body.find('\n', p) - p - 6), nullptr, false);
      if (c.contains("choices") && !c["choices"].empty()) text += c["choices"][0].value("text", "");
    }
    EXPECT_TRUE(text == "yes!" || text == "no!") << text;
  }
  {
    // logit_bias: banning the greedy token changes it.
    auto [s1, a] = post_json("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}, {"temperature", 0}, {"logprobs", 1}});
    ASSERT_EQ(s1, 200) << a.dump();
    const std::string first = a["choices"][0]["text"];
    const int32_t id = sched_->tokenizer().encode(first, false, false).at(0);
    auto [s2, b] = post_json("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}, {"temperature", 0}, {"logit_bias", {{std::to_string(id), -100}}}});
    ASSERT_EQ(s2, 200) << b.dump();
    EXPECT_NE(b["choices"][0]["text"], first);
    // echo: the prompt first.
    auto [s3, c] = post_json("/v1/completions", {{"prompt", "echo me"}, {"max_tokens", 2}, {"echo", true}});
    ASSERT_EQ(s3, 200);
    EXPECT_EQ(c["choices"][0]["text"].get<std::string>().rfind("echo me", 0), 0u) << c.dump();
  }
  auto refused = [&](const std::string& path, json body, const std::string& param) {
    auto [status, j] = post_json(path, body);
    EXPECT_EQ(status, 400) << body.dump() << " -> " << j.dump();
    EXPECT_EQ(j["error"]["param"], param) << j.dump();
  };
  const json msgs = {{{"role", "user"}, {"content", "hi"}}};
  refused("/v1/chat/completions", {{"messages", msgs}, {"mirostat", 2}}, "mirostat");
  refused("/v1/chat/completions", {{"messages", msgs}, {"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", {{"type", "string"}, {"pattern", "abc"}}}}}}}}, "response_format");
  refused("/v1/chat/completions", {{"messages", msgs}, {"grammar", "root ::= root"}}, "grammar");
  refused("/v1/chat/completions", {{"messages", msgs}, {"logit_bias", {{"999999", 5}}}}, "logit_bias");
  refused("/v1/chat/completions", {{"messages", msgs}, {"logit_bias", {{"1", 500}}}}, "logit_bias");
  refused("/v1/chat/completions", {{"messages", msgs}, {"reasoning_effort", "max"}}, "reasoning_effort");
  refused("/v1/completions", {{"prompt", "x"}, {"suffix", "y"}}, "suffix");
  refused("/v1/completions", {{"prompt", "x"}, {"best_of", 3}}, "best_of");
  refused("/v1/completions", {{"prompt", "x"}, {"grammar", "root ::= \"a\""}, {"response_format", {{"type", "json_object"}}}}, "response_format");
  // Parameters that change nothing here are accepted.
  auto [ok, j] = post_json("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 2}, {"user", "u1"}, {"store", false}, {"chat_template_kwargs", {{"enable_thinking", false}}}});
  EXPECT_EQ(ok, 200) << j.dump();
}

// Tool calls with a random model: "required" and a named function give calls whose
// arguments validate, streamed or not; a whole round trip is accepted.
TEST_F(ServerTest, ToolCallsRequiredNamedAndRoundTrip) {
  start(chatml(), SchedulerOptions{.engine = {.parallel = 4, .n_ctx = 512}});
  const json tools = json::parse(R"([
    {"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"type":"object",
      "properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]}},"required":["city","unit"]}}},
    {"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"},
      "b":{"type":"integer"}},"required":["a","b"]}}}])");
  const json msgs = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
  auto check_call = [](const json& call, const std::string& want_name) {
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
    const std::string name = call["function"]["name"];
    if (!want_name.empty()) EXPECT_EQ(name, want_name);
    const json args = json::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
    ASSERT_TRUE(args.is_object()) << call.dump();
    if (name == "get_weather") {
      EXPECT_TRUE(args["city"].is_string() && (args["unit"] == "c" || args["unit"] == "f")) << args.dump();
    } else {
      EXPECT_EQ(name, "add");
      EXPECT_TRUE(args["a"].is_number_integer() && args["b"].is_number_integer()) << args.dump();
    }
  };
  for (int seed = 1; seed <= 3; ++seed) {
    auto [status, j] = post_json("/v1/chat/completions", {{"messages", msgs}, {"tools", tools}, {"tool_choice", "required"},
                                                          {"seed", seed}, {"max_tokens", 160}, {"parallel_tool_calls", false}});
    ASSERT_EQ(status, 200) << j.dump();
    const json& choice = j["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << j.dump();
    ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << j.dump();
    check_call(choice["message"]["tool_calls"][0], "");
  }
  {
    auto [status, j] = post_json("/v1/chat/completions", {{"messages", msgs}, {"tools", tools}, {"max_tokens", 160},
                                                          {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}}});
    ASSERT_EQ(status, 200) << j.dump();
    check_call(j["choices"][0]["message"]["tool_calls"][0], "add");
  }
  {
    // Streamed: no content leaks out of the call; the call comes as delta.tool_calls.
    auto [status, body] = post_stream("/v1/chat/completions", {{"messages", msgs}, {"tools", tools}, {"tool_choice", "required"},
                                                               {"max_tokens", 160}, {"stream", true}});
    ASSERT_EQ(status, 200);
    std::string content, finish;
    json calls = json::array();
    for (size_t p = body.find("data: {"); p != std::string::npos; p = body.find("data: {", p + 1)) {
      const json c = json::parse(body.substr(p + 6, body.find('\n', p) - p - 6), nullptr, false);
      if (!c.contains("choices") || c["choices"].empty()) continue;
      const json& ch = c["choices"][0];
      if (ch.contains("delta")) {
        content += ch["delta"].value("content", "");
        if (ch["delta"].contains("tool_calls"))
          for (const json& t : ch["delta"]["tool_calls"]) calls.push_back(t);
      }
      if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
    }
    EXPECT_EQ(content, "");
    EXPECT_EQ(finish, "tool_calls");
    ASSERT_GE(calls.size(), 1u) << body;
    EXPECT_EQ(calls[0]["index"], 0);
    check_call(calls[0], "");
  }
  {
    // The round trip: the assistant's call and the tool's result in the history.
    const json history = {{{"role", "user"}, {"content", "Weather in Paris?"}},
                          {{"role", "assistant"}, {"content", nullptr},
                           {"tool_calls", {{{"id", "call_1"}, {"type", "function"},
                                            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\",\"unit\":\"c\"}"}}}}}}},
                          {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18 C, sunny"}}};
    auto [status, j] = post_json("/v1/chat/completions", {{"messages", history}, {"tools", tools}, {"max_tokens", 8}});
    EXPECT_EQ(status, 200) << j.dump();
  }
  auto refused = [&](json body, const std::string& param) {
    auto [status, j] = post_json("/v1/chat/completions", body);
    EXPECT_EQ(status, 400) << body.dump() << " -> " << j.dump();
    EXPECT_EQ(j["error"]["param"], param) << j.dump();
  };
  refused({{"messages", msgs}, {"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}}, "tools");
  refused({{"messages", msgs}, {"tool_choice", "required"}}, "tool_choice");
  refused({{"messages", msgs}, {"tools", {{{"type", "function"}, {"function", {{"name", "bad name!"}}}}}}}, "tools[0].function.name");
  refused({{"messages", msgs}, {"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}, {"not", json::object()}}}}}}}},
           {"tool_choice", "required"}},
          "tools");
}

// A template whose generation prompt opens a thought: everything generated is
// reasoning until </think>, which a random model never writes, so the budget must.
const char* kThinkTemplate =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";

TEST_F(ServerTest, ThinkingBudgetClosesTheThought) {
  start(kThinkTemplate);
  Env& e = Env::get();
  const int budget = 6;
  const int n_close = int(e.tok->encode("\n</think>\n\n", false, true).size());
  json body = {{"messages", {{{"role", "user"}, {"content", "What is 2+2?"}}}}, {"temperature", 0}, {"max_tokens", 40},
               {"max_reasoning_tokens", budget}};
  auto [status, j] = post_json("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << j.dump();
  const json& msg = j["choices"][0]["message"];
  ASSERT_TRUE(msg["reasoning_content"].is_string()) << j.dump();
  EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(msg["reasoning_content"].get<std::string>().find("</think>"), std::string::npos);
  EXPECT_EQ(msg["content"].get<std::string>().find("think>"), std::string::npos);
  const json& u = j["usage"];
  EXPECT_EQ(u["completion_tokens_details"]["reasoning_tokens"], budget + n_close);
  EXPECT_GT(u["completion_tokens"].get<int>(), budget + n_close) << "the model answered after the thought";
  EXPECT_FALSE(msg["content"].get<std::string>().empty());

  // Without the budget it thinks until max_tokens, all of it reasoning.
  body.erase("max_reasoning_tokens");
  body["max_tokens"] = 20;
  auto [s2, j2] = post_json("/v1/chat/completions", body);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(j2["usage"]["completion_tokens_details"]["reasoning_tokens"], j2["usage"]["completion_tokens"]);
  EXPECT_EQ(j2["choices"][0]["message"]["content"], "");

  // Streaming: reasoning arrives in reasoning_content deltas, never in content.
  body["max_reasoning_tokens"] = budget;
  body["max_tokens"] = 40;
  body["stream"] = true;
  auto [s3, text] = post_stream("/v1/chat/completions", body);
  ASSERT_EQ(s3, 200);
  std::string reasoning, content;
  for (const json& c : parse_sse(text).chunks)
    for (const json& ch : c["choices"]) {
      if (ch["delta"].contains("reasoning_content")) reasoning += ch["delta"]["reasoning_content"].get<std::string>();
      if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
    }
  EXPECT_EQ(reasoning, msg["reasoning_content"]);
  EXPECT_EQ(content, msg["content"]);
}

TEST_F(ServerTest, ThinkingBudgetInJoules) {
  start(kThinkTemplate);
  json body = {{"messages", {{{"role", "user"}, {"content", "Think hard."}}}}, {"temperature", 0}, {"max_tokens", 60},
               {"max_reasoning_joules", 0.0}};
  auto [status, j] = post_json("/v1/chat/completions", body);
  ASSERT_EQ(status, 200) << j.dump();
  // A zero-joule budget closes the thought at once: only the closing tokens are reasoning.
  const int n_close = int(Env::get().tok->encode("\n</think>\n\n", false, true).size());
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], n_close);
  EXPECT_GT(j["usage"]["completion_tokens"].get<int>(), n_close);
}

// 32 concurrent streams plus 8 that hang up midway: every completed stream is whole
// and equals its unbatched greedy output; nothing fails; every KV block comes back.
TEST_F(ServerTest, LoadConcurrentStreamsWithDisconnects) {
  Env& e = Env::get();
  const int max_tokens = 24;
  std::vector<std::string> prompts;
  std::vector<std::string> expect;
  for (int i = 0; i < 32; ++i) {
    std::string p = std::string(kPrompts[i % 8]) + (i >= 8 ? " " + std::to_string(i) : "");
    prompts.push_back(p);
    expect.push_back(detok(greedy_reference(e.tok->encode(p, e.tok->add_bos_default()), max_tokens)));
  }
  SchedulerOptions so;
  so.engine.parallel = 16;
  so.engine.n_ctx = 256;
  so.max_queue = 64;
  so.engine.kv_budget_bytes = size_t(64) << 20;
  start(chatml(), so);
  std::vector<std::thread> threads;
  std::vector<std::string> got(32);
  std::vector<int> status(40, 0);
  std::atomic<int> finished_ok{0};
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      const bool quitter = i >= 32;
      json body = {{"prompt", quitter ? std::string("A long story begins") : prompts[size_t(i)]}, {"temperature", 0},
                   {"max_tokens", quitter ? 200 : max_tokens}, {"stream", true}};
      auto [st, text] = raw_stream("/v1/completions", body, quitter ? 600 : 0);
      status[size_t(i)] = st;
      if (quitter) return;
      Sse s = parse_sse(text);
      std::string t;
      for (const json& c : s.chunks)
        for (const json& ch : c["choices"]) t += ch["text"].get<std::string>();
      got[size_t(i)] = t;
      if (s.done) finished_ok.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(finished_ok.load(), 32);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(status[size_t(i)], 200) << "request " << i;
  for (int i = 0; i < 32; ++i) EXPECT_EQ(got[size_t(i)], expect[size_t(i)]) << "request " << i << ": " << prompts[size_t(i)];
  // The quitters' sequences are cancelled and their blocks freed promptly. The counts
  // catch up when the scheduler's step returns, which can be after a client saw its
  // last chunk: wait for all three.
  auto busy = [&] {
    const auto st = sched_->stats();
    return st.kv.used_blocks > 0 || st.running > 0 || st.queued > 0;
  };
  for (int k = 0; k < 100 && busy(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(sched_->stats().kv.used_blocks, 0u);
  EXPECT_EQ(sched_->stats().running, 0);
  EXPECT_EQ(sched_->stats().queued, 0);
}

}  // namespace
}  // namespace jevons
