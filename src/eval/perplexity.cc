#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/output_file.h"
#include "meter/estimate.h"

namespace jevons::eval {
namespace {

constexpr char kMagic[8] = {'J', 'V', 'K', 'L', 'B', 'A', 'S', '1'};
constexpr float kRange = 24.0f;  // nats below the most likely token kept in a base file
constexpr float kStep = kRange / 65535.0f;

// log-softmax pieces of one row: max logit, log-sum-exp, argmax.
struct RowStats {
  float max;
  double lse;
  int32_t argmax;
};

RowStats row_stats(const float* logits, int32_t n) {
  RowStats s{logits[0], 0, 0};
  for (int32_t i = 1; i < n; ++i)
    if (logits[i] > s.max) s.max = logits[i], s.argmax = i;
  double sum = 0;
  for (int32_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - s.max);
  s.lse = double(s.max) + std::log(sum);
  return s;
}

double percentile(std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double x = q * double(sorted.size() - 1);
  const size_t i = size_t(x);
  const double f = x - double(i);
  return i + 1 < sorted.size() ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

struct BaseHeader {
  int32_t n_vocab;
  int32_t n_ctx;
  int32_t n_chunks;
  int32_t first;
  uint64_t tokens_hash;
};

}  // namespace

uint64_t hash_tokens(const std::vector<int32_t>& tokens) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : tokens)
    for (int b = 0; b < 4; ++b) h = (h ^ ((uint32_t(t) >> (8 * b)) & 0xff)) * 1099511628211ull;
  return h;
}

int perplexity_chunks(int64_t n_tokens, const PerplexityOptions& o) {
  if (o.n_ctx < 2) return 0;
  int64_t n = n_tokens / o.n_ctx;
  if (o.max_chunks >= 0) n = std::min<int64_t>(n, o.max_chunks);
  return int(n);
}

// ---- the base file ----

struct KlBaseWriter::Impl {
  OutputFile out;
  std::string model_name;
  std::vector<uint16_t> q;
  explicit Impl(const std::string& path) : out(path) {}
};

KlBaseWriter::KlBaseWriter(const std::string& path, std::string model_name) : impl_(std::make_unique<Impl>(path)) {
  impl_->model_name = std::move(model_name);
}
KlBaseWriter::~KlBaseWriter() = default;

uint64_t KlBaseWriter::bytes(int32_t n_vocab, int64_t positions) {
  return sizeof kMagic + sizeof(BaseHeader) + 256 + uint64_t(positions) * (12 + 2 * uint64_t(n_vocab));
}

void KlBaseWriter::begin(int32_t n_vocab, int n_ctx, int n_chunks, int first, uint64_t tokens_hash) {
  const BaseHeader h{n_vocab, n_ctx, n_chunks, first, tokens_hash};
  impl_->out.write(kMagic, sizeof kMagic);
  impl_->out.write(&h, sizeof h);
  const uint32_t len = uint32_t(std::min<size_t>(impl_->model_name.size(), 4096));
  impl_->out.write(&len, sizeof len);
  impl_->out.write(impl_->model_name.data(), len);
  impl_->q.resize(size_t(n_vocab));
}

void KlBaseWriter::add(const float* logits, int32_t token) {
  const int32_t n = int32_t(impl_->q.size());
  const RowStats s = row_stats(logits, n);
  const float lp_max = float(double(s.max) - s.lse);
  const float lp_token = float(double(logits[token]) - s.lse);
  for (int32_t i = 0; i < n; ++i) {
    const float below = float(double(s.max) - double(logits[i]));  // >= 0
    impl_->q[size_t(i)] = uint16_t(std::lround(std::min(below, kRange) / kStep));
  }
  impl_->out.write(&lp_max, sizeof lp_max);
  impl_->out.write(&lp_token, sizeof lp_token);
  impl_->out.write(&s.argmax, sizeof s.argmax);
  impl_->out.write(impl_->q.data(), impl_->q.size() * sizeof(uint16_t));
}

void KlBaseWriter::commit() { impl_->out.commit(); }

struct KlBaseReader::Impl {
  std::string path;
  std::FILE* f = nullptr;
  BaseHeader h{};
  std::string model_name;
  std::vector<uint16_t> q;
  ~Impl() {
    if (f) std::fclose(f);
  }
  void read(void* p, size_t n) {
    if (std::fread(p, 1, n, f) != n) fail("{} ends early: not a whole KL base file (rewrite it with --kl-base-out)", path);
  }
};

KlBaseReader::KlBaseReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->f = std::fopen(path.c_str(), "rb");
  if (!impl_->f) fail("cannot read the KL base file {}", path);
  char magic[sizeof kMagic];
  impl_->read(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0)
    fail("{} is not a jevons KL base file (make one with `jevons eval perplexity --kl-base-out FILE` on the reference model)", path);
  impl_->read(&impl_->h, sizeof impl_->h);
  uint32_t len = 0;
  impl_->read(&len, sizeof len);
  if (len > 4096 || impl_->h.n_vocab <= 0 || impl_->h.n_vocab > (1 << 24) || impl_->h.n_ctx < 2 || impl_->h.n_chunks < 0 ||
      impl_->h.first < 0 || impl_->h.first >= impl_->h.n_ctx)
    fail("{}: corrupt KL base header", path);
  impl_->model_name.resize(len);
  impl_->read(impl_->model_name.data(), len);
  impl_->q.resize(size_t(impl_->h.n_vocab));
}
KlBaseReader::~KlBaseReader() = default;

const std::string& KlBaseReader::model_name() const { return impl_->model_name; }
int KlBaseReader::n_chunks() const { return impl_->h.n_chunks; }

void KlBaseReader::check(int32_t n_vocab, int n_ctx, int n_chunks, int first, uint64_t tokens_hash) const {
  const BaseHeader& h = impl_->h;
  if (h.n_vocab != n_vocab)
    fail("the KL base {} has a vocabulary of {} tokens, this model {}: the models must share a tokenizer", impl_->path, h.n_vocab,
         n_vocab);
  if (h.n_ctx != n_ctx) fail("the KL base {} was made with -c {}, this run has -c {}", impl_->path, h.n_ctx, n_ctx);
  if (h.n_chunks != n_chunks)
    fail("the KL base {} holds {} chunks, this run evaluates {} (give the same --chunks and text)", impl_->path, h.n_chunks, n_chunks);
  if (h.first != first || h.tokens_hash != tokens_hash)
    fail("the KL base {} was made from other tokens (another text, or a tokenizer that splits it differently)", impl_->path);
}

void KlBaseReader::next(float* log_probs, float* token_log_prob, int32_t* argmax) {
  float lp_max = 0;
  impl_->read(&lp_max, sizeof lp_max);
  impl_->read(token_log_prob, sizeof(float));
  impl_->read(argmax, sizeof(int32_t));
  impl_->read(impl_->q.data(), impl_->q.size() * sizeof(uint16_t));
  const int32_t n = impl_->h.n_vocab;
  if (*argmax < 0 || *argmax >= n) fail("{}: corrupt KL base record", impl_->path);
  // Renormalise what the quantization kept, so the reference is a distribution.
  double sum = 0;
  for (int32_t i = 0; i < n; ++i) {
    log_probs[i] = lp_max - float(impl_->q[size_t(i)]) * kStep;
    sum += std::exp(double(log_probs[i]));
  }
  const float shift = float(std::log(sum));
  for (int32_t i = 0; i < n; ++i) log_probs[i] -= shift;
}

// ---- the evaluation ----

PerplexityResult evaluate_perplexity(Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& o,
                                     meter::Meter& meter, KlBaseWriter* save, KlBaseReader* compare,
                                     const PerplexityCallback& progress) {
  const int32_t n_vocab = model.config().n_vocab;
  const int n_ctx = o.n_ctx;
  if (n_ctx < 2) fail("the context must be at least 2 tokens to score one (got -c {})", n_ctx);
  const int n_chunks = perplexity_chunks(int64_t(tokens.size()), o);
  if (n_chunks == 0)
    fail("the text is {} tokens: fewer than one chunk of -c {} (give a longer text or a smaller -c)", tokens.size(), n_ctx);
  const int first = n_ctx / 2;
  const int scored_per_chunk = n_ctx - 1 - first;
  const std::vector<int32_t> used(tokens.begin(), tokens.begin() + int64_t(n_chunks) * n_ctx);
  const uint64_t h = hash_tokens(used);
  if (save) save->begin(n_vocab, n_ctx, n_chunks, first, h);
  if (compare) compare->check(n_vocab, n_ctx, n_chunks, first, h);

  // Chunks go together into one pass while their tokens fit n_batch; a longer chunk
  // is fed in pieces of n_batch (its KV cache carries the earlier pieces).
  const int n_batch = std::max(1, o.n_batch);
  const int per_pass = std::max(1, n_batch / n_ctx);
  const int piece = std::min(n_ctx, n_batch);
  std::vector<float> logits(size_t(per_pass) * size_t(piece) * size_t(n_vocab));
  std::vector<float> base_lp(compare ? size_t(n_vocab) : 0);

  PerplexityResult r;
  r.text_tokens = int64_t(tokens.size());
  r.chunks = n_chunks;
  double nll = 0, nll2 = 0, base_nll = 0;
  std::vector<double> kld;
  int64_t top1_same = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const double j0 = meter.joules();

  for (int c0 = 0; c0 < n_chunks; c0 += per_pass) {
    const int group = std::min(per_pass, n_chunks - c0);
    std::vector<std::vector<int32_t>> chunk_tokens(static_cast<size_t>(group));
    std::vector<KvCache> caches;
    caches.reserve(size_t(group));
    std::vector<double> chunk_nll(static_cast<size_t>(group), 0.0);
    for (int g = 0; g < group; ++g) {
      const auto begin = tokens.begin() + int64_t(c0 + g) * n_ctx;
      chunk_tokens[size_t(g)].assign(begin, begin + n_ctx);
      if (o.add_bos && o.bos_id >= 0) chunk_tokens[size_t(g)][0] = o.bos_id;
      caches.push_back(model.new_cache(n_ctx, o.kv_type));
    }
    for (int a = 0; a < n_ctx; a += piece) {
      const int len = std::min(piece, n_ctx - a);
      const int scored_from = std::max(a, first);  // rows scored_from .. a+len-1 come back
      const int n_logits = std::max(0, a + len - scored_from);
      std::vector<Model::Chunk> pass;
      for (int g = 0; g < group; ++g)
        pass.push_back(Model::Chunk{&caches[size_t(g)], chunk_tokens[size_t(g)].data() + a, len, std::max(1, n_logits)});
      // The energy estimate charges memory traffic (meter/estimate.h), as the engine does.
      uint64_t traffic = model.weight_bytes_per_token();
      for (const Model::Chunk& c : pass)
        traffic += meter::forward_traffic_bytes(0, model.config().kv_bytes_per_token(o.kv_type), c.cache->n_past(), c.n);
      meter.add_memory_traffic(traffic);
      model.forward_batch(pass, logits.data());
      if (n_logits == 0) continue;
      for (int g = 0; g < group; ++g) {
        const float* rows = logits.data() + size_t(g) * size_t(n_logits) * size_t(n_vocab);
        for (int p = scored_from; p < a + len && p < n_ctx - 1; ++p) {
          const float* row = rows + size_t(p - scored_from) * size_t(n_vocab);
          const int32_t next = chunk_tokens[size_t(g)][size_t(p + 1)];
          const RowStats s = row_stats(row, n_vocab);
          const double v = s.lse - double(row[next]);
          chunk_nll[size_t(g)] += v;
          nll2 += v * v;
          if (save) save->add(row, next);
          if (compare) {
            float base_token_lp = 0;
            int32_t base_argmax = 0;
            compare->next(base_lp.data(), &base_token_lp, &base_argmax);
            base_nll -= double(base_token_lp);
            double d = 0;
            for (int32_t i = 0; i < n_vocab; ++i) {
              const double lp = double(base_lp[size_t(i)]);
              d += std::exp(lp) * (lp - (double(row[i]) - s.lse));
            }
            kld.push_back(std::max(0.0, d));
            top1_same += base_argmax == s.argmax;
          }
        }
      }
    }
    r.evaluated += int64_t(group) * n_ctx;
    for (int g = 0; g < group; ++g) {
      nll += chunk_nll[size_t(g)];
      r.scored += scored_per_chunk;
      r.chunk_perplexity.push_back(std::exp(nll / double(std::max<int64_t>(1, r.scored))));
    }
    if (progress) progress(PerplexityProgress{c0 + group, n_chunks, r.chunk_perplexity.back()});
  }

  const double n = double(r.scored);
  const double mean = nll / n;
  r.perplexity = std::exp(mean);
  const double var = nll2 / n - mean * mean;
  r.uncertainty = var > 0 && n > 1 ? std::sqrt(var / (n - 1)) * r.perplexity : 0;
  r.energy.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.energy.joules = meter.joules() - j0;
  r.energy.tokens = r.evaluated;
  if (compare) {
    KlStats k;
    double sum = 0, sum2 = 0;
    for (double d : kld) sum += d, sum2 += d * d;
    const double m = sum / double(kld.size());
    k.mean = m;
    const double kv = sum2 / double(kld.size()) - m * m;
    k.uncertainty = kv > 0 && kld.size() > 1 ? std::sqrt(kv / double(kld.size() - 1)) : 0;
    std::sort(kld.begin(), kld.end());
    k.median = percentile(kld, 0.5);
    k.p90 = percentile(kld, 0.9);
    k.p95 = percentile(kld, 0.95);
    k.p99 = percentile(kld, 0.99);
    k.p999 = percentile(kld, 0.999);
    k.max = kld.back();
    k.top1_agreement = double(top1_same) / double(kld.size());
    k.base_perplexity = std::exp(base_nll / n);
    k.base_model = compare->model_name();
    r.kl = k;
  }
  return r;
}

}  // namespace jevons::eval
