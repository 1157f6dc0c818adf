// Perplexity and KL divergence of a model over a token stream, by llama-perplexity's
// method so that the figures compare number for number:
//   - the tokens (BOS first where the model adds one) are cut into chunks of n_ctx;
//     the first token of each chunk is replaced by BOS where the model adds one;
//   - each chunk is evaluated from an empty context, and only its second half is
//     scored: the logits at positions first = n_ctx/2 .. n_ctx-2 against the tokens
//     that follow them (n_ctx - 1 - first tokens per chunk);
//   - PPL = exp(mean NLL), with the standard error of the mean NLL times PPL.
// The one difference: llama-perplexity wants at least 2 chunks; one is enough here.
//
// KL divergence (KlBase): a first run saves the reference model's log-probabilities at
// every scored position; a run of another model over the same tokens then reports
// KL(reference || model) per position (mean, percentiles), top-1 agreement and both
// perplexities. The base file stores per scored position the exact log-probability of
// the actual token and the argmax, and the distribution quantized to 16 bits over
// [max - 24, max] nats (error below 2e-4 nats; mass below e^-24 is dropped), as
// llama.cpp's base files do, so a 150k vocabulary costs 300 KB per position.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "meter/accounting.h"
#include "meter/meter.h"
#include "model/model.h"
#include "quant/types.h"

namespace jevons::eval {

struct PerplexityOptions {
  int n_ctx = 512;        // tokens per chunk
  int max_chunks = -1;    // -1: every whole chunk the text holds
  int n_batch = 512;      // tokens per forward pass at most (bounds the logits' memory)
  bool add_bos = true;    // replace each chunk's first token with bos_id
  int32_t bos_id = -1;
  TensorType kv_type = TensorType::F16;
};

// Where the figures stand after each chunk (for a progress line).
struct PerplexityProgress {
  int chunks_done = 0, chunks = 0;
  double perplexity = 0;
};
using PerplexityCallback = std::function<void(const PerplexityProgress&)>;

struct KlStats {
  double mean = 0, uncertainty = 0;  // mean KLD over scored positions, and its standard error
  double median = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0;
  double top1_agreement = 0;   // fraction of positions where both argmaxes agree
  double base_perplexity = 0;  // of the reference model (from the base file)
  std::string base_model;      // as the base file names it
};

struct PerplexityResult {
  double perplexity = 0, uncertainty = 0;
  int64_t scored = 0;     // tokens scored
  int64_t evaluated = 0;  // tokens evaluated (every token of every chunk)
  int64_t text_tokens = 0;
  int chunks = 0;
  std::vector<double> chunk_perplexity;  // running PPL after each chunk (llama-perplexity's [i] figures)
  meter::PhaseEnergy energy;             // joules and seconds of the whole evaluation
  std::optional<KlStats> kl;
};

// The reference side of a KL divergence: written by one run, read by the next.
class KlBaseWriter;
class KlBaseReader;

// Scores tokens with the model. save: write a KL base file; compare: read one (the
// same tokens, context and vocabulary, or Error). Throws Error when the tokens hold
// no whole chunk.
PerplexityResult evaluate_perplexity(Model& model, const std::vector<int32_t>& tokens, const PerplexityOptions& options,
                                     meter::Meter& meter, KlBaseWriter* save = nullptr, KlBaseReader* compare = nullptr,
                                     const PerplexityCallback& progress = {});

// Chunks a text of n tokens holds at this context (after --chunks).
int perplexity_chunks(int64_t n_tokens, const PerplexityOptions& options);

class KlBaseWriter {
 public:
  // Opens path for writing (temporary file, renamed at commit()).
  KlBaseWriter(const std::string& path, std::string model_name);
  ~KlBaseWriter();
  void begin(int32_t n_vocab, int n_ctx, int n_chunks, int first, uint64_t tokens_hash);
  void add(const float* logits, int32_t token);  // one scored position
  void commit();
  // Bytes a base file of this size takes (to say so before writing it).
  static uint64_t bytes(int32_t n_vocab, int64_t positions);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class KlBaseReader {
 public:
  explicit KlBaseReader(const std::string& path);  // Error when missing or not a base file
  ~KlBaseReader();
  // Error naming what differs when the run does not match the base.
  void check(int32_t n_vocab, int n_ctx, int n_chunks, int first, uint64_t tokens_hash) const;
  // The next scored position's reference: log-probabilities (n_vocab), log-prob of
  // the actual token, argmax.
  void next(float* log_probs, float* token_log_prob, int32_t* argmax);
  const std::string& model_name() const;
  int n_chunks() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// FNV-1a of the token ids (ties a base file to its text and tokenizer).
uint64_t hash_tokens(const std::vector<int32_t>& tokens);

}  // namespace jevons::eval
