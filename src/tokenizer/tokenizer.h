// Tokenizers as llama.cpp implements them (its test vectors are our reference):
//   - "llama": SentencePiece-style BPE. Spaces become U+2581, the text gets a
//     leading space (add_space_prefix), adjacent pieces merge best score first,
//     and characters with no token fall back to <0xNN> byte tokens.
//   - "gpt2": byte-level BPE. A pre-tokenizer (tokenizer.ggml.pre, see
//     pretokenizer.h) splits the text into words; each word's bytes map to
//     GPT-2's printable symbols and merge by tokenizer.ggml.merges rank.
//   - tiktoken rank files: byte-level BPE whose merge order is the rank of the
//     merged token, as tiktoken itself does it.
// Before either, text that equals a special token (control, user-defined or
// unknown type) is cut out and becomes that token; see encode().
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace jevons {

class GgufFile;
class ModelSource;  // formats/gguf.h: GGUF metadata (GgufFile is one)
class PreTokenizer;

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Everything a tokenizer is made from, as plain data: what from_gguf and
// from_tiktoken read, and what tests build by hand. Field comments name the GGUF
// keys, which error messages also use.
struct VocabSpec {
  enum class Model { Spm, Bpe };
  Model model = Model::Bpe;               // tokenizer.ggml.model: "llama" = Spm, "gpt2" = Bpe
  std::string pre = "default";            // tokenizer.ggml.pre (Bpe only)
  std::vector<std::string> tokens;        // tokenizer.ggml.tokens; Bpe: in GPT-2 byte-level symbols
  std::vector<float> scores;              // tokenizer.ggml.scores (Spm merge priority); empty: all 0
  std::vector<TokenType> types;           // tokenizer.ggml.token_type; empty: all Normal
  std::vector<std::string> merges;        // tokenizer.ggml.merges: "left right", best first (Bpe)
  bool merges_from_ranks = false;         // tiktoken: no merge list; a pair's rank is the merged token's id
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1, eom = -1;  // -1: none
  int32_t fim_pad = -1, fim_rep = -1, fim_sep = -1;  // end generation too; -1: found by text
  std::optional<bool> add_bos, add_eos;   // unset: llama.cpp's default for the model and pre-tokenizer
  std::optional<bool> add_space_prefix;   // unset: true for Spm, false for Bpe
  std::string source = "vocabulary";      // names the file in error messages
};

class Tokenizer {
 public:
  // From GGUF metadata (tokenizer.ggml.*), e.g. a GgufFile. Throws Error naming
  // the file and key on missing or bad data: unsupported model or pre-tokenizer,
  // merges naming unknown tokens, token ids out of range, duplicate tokens, short arrays.
  static std::unique_ptr<Tokenizer> from_gguf(const ModelSource& file);
  // An OpenAI .tiktoken rank file ("<base64 token> <rank>" per line, ranks
  // 0..n-1) with a named pre-tokenizer (e.g. "qwen2"). No special tokens.
  static std::unique_ptr<Tokenizer> from_tiktoken(const std::string& path, std::string_view pre);
  // From plain data (validated like from_gguf).
  static std::unique_ptr<Tokenizer> from_vocab(VocabSpec spec);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`, with BOS first if add_bos (Error if there is no BOS
  // token). parse_special: text equal to a control or unknown token's text
  // (e.g. "<|im_start|>") becomes that token; user-defined tokens are always
  // cut out, as llama.cpp does. EOS is never appended (see add_eos_default()).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const;

  bool add_bos_default() const { return add_bos_; }
  bool add_eos_default() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  int32_t n_vocab() const { return int32_t(tokens_.size()); }
  int32_t bos_id() const { return bos_; }  // -1 if none
  int32_t eos_id() const { return eos_; }  // -1 if none
  int32_t eot_id() const { return eot_; }  // -1 if none
  int32_t unk_id() const { return unk_; }  // -1 if none
  int32_t pad_id() const { return pad_; }  // -1 if none
  // End of generation: eos, eot, eom and tokens llama.cpp recognises by text
  // (<|im_end|>, <|endoftext|>, <|eot_id|>, <end_of_turn>, ...).
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  TokenType token_type(int32_t id) const;
  // The raw vocabulary string (Spm: with U+2581; Bpe: byte-level symbols).
  const std::string& token_text(int32_t id) const;
  // The token's id, or -1 if `text` (in vocabulary form) is not a token.
  int32_t find_token(std::string_view text) const;

  // The bytes this token contributes to output text: Spm turns U+2581 into
  // spaces and <0xNN> into the byte; Bpe undoes the byte-level mapping;
  // user-defined tokens give their text; control, unknown and unused tokens
  // give nothing. May be a fragment of a UTF-8 character. Throws Error on an
  // out-of-range id.
  std::string piece(int32_t id) const;
  // The pieces joined (raw bytes, not UTF-8-checked). If the sequence starts
  // with BOS and the vocabulary adds a space prefix (SentencePiece), the
  // first non-empty piece after BOS loses one leading space, as in llama2.c:
  // decode(encode(x, true)) == x. Without BOS the prefix space stays. Unlike
  // llama.cpp's detokenize, no clean_up_tokenization_spaces pass (" ," -> ",")
  // is applied, so byte-level vocabularies round-trip exactly.
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;  // -1 if the merged text is not a token
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Fragment {
    int32_t token;  // >= 0: a special token; -1: text[offset, offset + length)
    size_t offset, length;
  };

  explicit Tokenizer(VocabSpec spec);
  void init_special_tokens(const VocabSpec& spec);
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view raw, bool space_prefix, std::vector<int32_t>& out) const;
  void encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  std::optional<Merge> find_merge(int32_t left, int32_t right, std::string_view joined) const;
  void check_id(int32_t id) const;

  VocabSpec::Model model_;
  std::string source_;
  std::unique_ptr<PreTokenizer> pre_;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool merges_from_ranks_ = false;
  std::array<int32_t, 256> spm_byte_tokens_{};  // <0xNN> token per byte (-1: none)
  std::vector<int32_t> specials_;               // control / user-defined / unknown, longest text first
  std::vector<bool> eog_;
  int32_t bos_ = -1, eos_ = -1, unk_ = -1, pad_ = -1, eot_ = -1, eom_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
};

// Token-by-token detokenization that never emits broken UTF-8: an incomplete
// multi-byte tail is held back until later tokens complete it, and ill-formed
// bytes become U+FFFD. finish() flushes what is held back (an incomplete tail
// becomes U+FFFD). For valid UTF-8 output, the concatenation of push() and
// finish() results equals Tokenizer::decode() of the same ids when
// strip_leading_space matches decode's rule (set it when streaming a whole
// sequence that starts with BOS).
//
// strip_leading_space: if the vocabulary adds a space prefix (SentencePiece),
// the first non-empty piece loses one leading space. Leave it off when
// streaming a continuation after a prompt (its first space is real).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space = false);
  std::string push(int32_t id);
  std::string finish();

 private:
  const Tokenizer& tok_;
  bool strip_;
  std::string pending_;
};

}  // namespace jevons
