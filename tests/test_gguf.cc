// GGUF reader: round trips through the writer, and every way an untrusted file
// can lie must end in a jevons::Error naming the problem, never a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace jevons {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("jevons_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

GgufWriter sample_writer() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_i32("some.int", -7);
  w.set_u64("some.u64", 1ull << 40);
  w.set_f32("some.float", 0.25f);
  w.set_bool("some.bool", true);
  w.set_strings("tokenizer.ggml.tokens", {"a", "b", "hello"});
  w.set_f32s("tokenizer.ggml.scores", {0.5f, -1.0f, 2.0f});
  w.set_i32s("tokenizer.ggml.token_type", {1, 3, 6});
  std::vector<float> v(64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f;
  w.add_tensor_f32("a.weight", TensorType::F32, {32, 2}, v);
  w.add_tensor_f32("b.weight", TensorType::F32, {8}, std::vector<float>(8, 1.0f));  // ends the file exactly
  return w;
}

// Writes bytes to a file and returns the Error message that opening it produced.
std::string open_error(const std::vector<uint8_t>& b, const std::string& name = "bad.gguf") {
  const std::string path = temp_path(name);
  write_bytes(path, b);
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    std::filesystem::remove(path);
    return e.what();
  }
  std::filesystem::remove(path);
  return "";
}

TEST(Gguf, RoundTripAllValueTypes) {
  const std::string path = temp_path("rt.gguf");
  sample_writer().write(path);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_uint("llama.block_count"), 2u);
  EXPECT_EQ(f->find("some.int")->i, -7);
  EXPECT_EQ(f->get_uint("some.u64"), 1ull << 40);
  EXPECT_FLOAT_EQ(float(f->get_float("some.float")), 0.25f);
  EXPECT_TRUE(f->get_bool("some.bool"));
  const GgufValue& toks = f->get_array("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.size(), 3u);
  EXPECT_EQ(toks.string_at(2), "hello");
  const GgufValue& scores = f->get_array("tokenizer.ggml.scores");
  EXPECT_DOUBLE_EQ(scores.number_at(1), -1.0);
  EXPECT_EQ(f->get_array("tokenizer.ggml.token_type").int_at(2), 6);
  ASSERT_EQ(f->tensors().size(), 2u);
  const GgufTensor* a = f->find_tensor("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape_string(), "32x2");
  EXPECT_EQ(a->nbytes, 64u * 4);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data) % 32, 0u);
  float x;
  std::memcpy(&x, a->data + 4 * 5, 4);
  EXPECT_EQ(x, 2.5f);
  EXPECT_EQ(f->find_tensor("b.weight")->shape_string(), "8");
  // Missing and mistyped keys name the key.
  EXPECT_THROW(f->get_uint("nope"), Error);
  try {
    f->get_uint("general.architecture");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos);
  }
  EXPECT_EQ(f->get_uint_or("nope", 9), 9u);
  std::filesystem::remove(path);
}

TEST(Gguf, Version2AndCustomAlignment) {
  std::vector<uint8_t> b = sample_writer().bytes(64);
  b[4] = 2;  // v2 has the same layout as v3 (v3 only added big-endian files)
  const std::string path = temp_path("v2.gguf");
  write_bytes(path, b);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->find_tensor("b.weight")->data) % 64, 0u);
  std::filesystem::remove(path);
}

TEST(Gguf, NestedArrays) {
  // Hand-encoded: no tensors, one key holding an array of two arrays of u16.
  std::vector<uint8_t> out;
  auto put = [&](auto v) { const size_t n = out.size(); out.resize(n + sizeof(v)); std::memcpy(out.data() + n, &v, sizeof(v)); };
  out.insert(out.end(), {'G', 'G', 'U', 'F'});
  put(uint32_t(3));
  put(uint64_t(0));  // tensors
  put(uint64_t(1));  // metadata entries
  const std::string key = "nested";
  put(uint64_t(key.size()));
  out.insert(out.end(), key.begin(), key.end());
  put(uint32_t(GgufType::ARRAY));
  put(uint32_t(GgufType::ARRAY));
  put(uint64_t(2));
  for (int k = 0; k < 2; ++k) {
    put(uint32_t(GgufType::UINT16));
    put(uint64_t(3));
    for (int j = 0; j < 3; ++j) put(uint16_t(10 * k + j));
  }
  const std::string path = temp_path("nested.gguf");
  write_bytes(path, out);
  auto f = GgufFile::open(path);
  const GgufValue& v = f->get_array("nested");
  ASSERT_EQ(v.items.size(), 2u);
  EXPECT_EQ(v.items[1].int_at(2), 12);
  EXPECT_EQ(v.to_string(), "[2 x array: [3 x uint16: 0, 1, 2], [3 x uint16: 10, 11, 12]]");
  std::filesystem::remove(path);
}

TEST(Gguf, MissingEmptyAndDirectory) {
  EXPECT_THROW(GgufFile::open("/nonexistent/model.gguf"), Error);
  EXPECT_NE(open_error({}).find("empty"), std::string::npos);
  EXPECT_THROW(GgufFile::open(std::filesystem::temp_directory_path().string()), Error);
}

TEST(Gguf, EveryTruncationIsAnError) {
  const std::vector<uint8_t> b = sample_writer().bytes();
  const std::string path = temp_path("trunc.gguf");
  for (size_t n = 1; n < b.size(); ++n) {
    write_bytes(path, std::vector<uint8_t>(b.begin(), b.begin() + long(n)));
    EXPECT_THROW(GgufFile::open(path), Error) << "truncated to " << n << " of " << b.size() << " bytes";
  }
  std::filesystem::remove(path);
}

TEST(Gguf, RandomCorruptionNeverCrashes) {
  const std::vector<uint8_t> good = sample_writer().bytes();
  std::mt19937 rng(1234);
  const std::string path = temp_path("fuzz.gguf");
  int errors = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::vector<uint8_t> b = good;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= uint8_t(1u << (rng() % 8));
    write_bytes(path, b);
    try {
      auto f = GgufFile::open(path);
      for (const GgufTensor& t : f->tensors()) {  // whatever loaded must be inside the file
        ASSERT_GE(t.data, reinterpret_cast<const uint8_t*>(0));
        ASSERT_LE(t.offset + f->data_offset() + t.nbytes, f->file_size());
      }
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);  // most single-bit flips in the header are detected
  std::filesystem::remove(path);
}

// Offsets within sample_writer().bytes() found by searching for known content.
size_t find_bytes(const std::vector<uint8_t>& b, const std::string& s) {
  for (size_t i = 0; i + s.size() <= b.size(); ++i)
    if (std::memcmp(b.data() + i, s.data(), s.size()) == 0) return i;
  ADD_FAILURE() << "pattern not found: " << s;
  return 0;
}

TEST(Gguf, SpecificLiesAreNamed) {
  const std::vector<uint8_t> good = sample_writer().bytes();
  {
    auto b = good;
    b[0] = 'X';
    EXPECT_NE(open_error(b).find("not a GGUF file"), std::string::npos);
  }
  {
    auto b = good;
    b[4] = 1;
    EXPECT_NE(open_error(b).find("version 1"), std::string::npos);
    b[4] = 9;
    EXPECT_NE(open_error(b).find("unsupported GGUF version 9"), std::string::npos);
  }
  {
    auto b = good;
    const uint64_t huge = 1ull << 60;
    std::memcpy(b.data() + 8, &huge, 8);  // tensor count
    EXPECT_NE(open_error(b).find("tensor count"), std::string::npos);
  }
  {
    auto b = good;  // string length of the first key made enormous
    const uint64_t huge = 1ull << 50;
    std::memcpy(b.data() + 24, &huge, 8);
    EXPECT_NE(open_error(b).find("string length"), std::string::npos);
  }
  {
    auto b = good;  // array count of the tokens array
    const size_t at = find_bytes(b, "tokenizer.ggml.tokens") + 21 + 4 + 4;
    const uint64_t huge = 1ull << 40;
    std::memcpy(b.data() + at, &huge, 8);
    const std::string err = open_error(b);
    EXPECT_NE(err.find("tokenizer.ggml.tokens"), std::string::npos) << err;
    EXPECT_NE(err.find("does not fit"), std::string::npos) << err;
  }
  {
    auto b = good;  // a bool that is 7
    const size_t at = find_bytes(b, "some.bool") + 9 + 4;
    b[at] = 7;
    EXPECT_NE(open_error(b).find("some.bool"), std::string::npos);
  }
  {
    auto b = good;  // a value type that does not exist
    const size_t at = find_bytes(b, "some.float") + 10;
    b[at] = 77;
    EXPECT_NE(open_error(b).find("unknown value type 77"), std::string::npos);
  }
  // Tensor info of a.weight: name, n_dims(4), dims(8 each), type(4), offset(8).
  const size_t a_info = find_bytes(good, "a.weight") + 8;
  {
    auto b = good;
    const uint32_t dims = 5;
    std::memcpy(b.data() + a_info, &dims, 4);
    EXPECT_NE(open_error(b).find("a.weight: 5 dimensions"), std::string::npos);
  }
  {
    auto b = good;
    const uint64_t zero = 0;
    std::memcpy(b.data() + a_info + 4, &zero, 8);
    EXPECT_NE(open_error(b).find("a.weight: dimension 0 is 0"), std::string::npos);
  }
  {
    auto b = good;
    const uint64_t big = 1ull << 40;
    std::memcpy(b.data() + a_info + 4, &big, 8);
    std::memcpy(b.data() + a_info + 12, &big, 8);
    EXPECT_NE(open_error(b).find("element count overflows"), std::string::npos);
  }
  {
    auto b = good;
    const uint32_t type = 99;
    std::memcpy(b.data() + a_info + 20, &type, 4);
    EXPECT_NE(open_error(b).find("a.weight: unsupported tensor type id 99"), std::string::npos);
  }
  {
    auto b = good;
    const uint32_t q4_0 = 2;  // row length 32 is fine for Q4_0, but b.weight (8) is not
    const size_t b_info = find_bytes(good, "b.weight") + 8;
    std::memcpy(b.data() + b_info + 12, &q4_0, 4);
    EXPECT_NE(open_error(b).find("b.weight: row length 8 is not a multiple"), std::string::npos);
  }
  {
    auto b = good;
    const uint64_t off = 8;  // not a multiple of 32
    std::memcpy(b.data() + a_info + 24, &off, 8);
    EXPECT_NE(open_error(b).find("not aligned"), std::string::npos);
  }
  {
    auto b = good;
    const uint64_t off = 1ull << 20;
    std::memcpy(b.data() + a_info + 24, &off, 8);
    EXPECT_NE(open_error(b).find("a.weight: data"), std::string::npos);
    EXPECT_NE(open_error(b).find("beyond the end"), std::string::npos);
  }
  {
    auto b = good;  // b.weight moved onto a.weight
    const size_t b_info = find_bytes(good, "b.weight") + 8;
    const uint64_t off = 32;
    std::memcpy(b.data() + b_info + 16, &off, 8);
    EXPECT_NE(open_error(b).find("overlap"), std::string::npos);
  }
  {
    GgufWriter w = sample_writer();
    w.add_tensor_f32("a.weight", TensorType::F32, {4}, {1, 2, 3, 4});
    EXPECT_NE(open_error(w.bytes()).find("a.weight: name appears twice"), std::string::npos);
  }
  {
    auto b = good;  // rename some.int to some.u64: duplicate key
    const size_t at = find_bytes(b, "some.int");
    std::memcpy(b.data() + at, "some.u64", 8);
    EXPECT_NE(open_error(b).find("appears twice"), std::string::npos);
  }
}

TEST(Gguf, BadAlignmentValue) {
  GgufWriter w = sample_writer();
  w.set_u32("general.alignment", 48);
  EXPECT_NE(open_error(w.bytes()).find("general.alignment"), std::string::npos);
}

TEST(Gguf, LoadsSharedModelsWithoutCopying) {
  const std::string path = test::shared_dir() + "/golden/llama-bpe/gguf/model-q4_k_m.gguf";
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  const GgufTensor* t = f->find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  // Tensor data points into the file's mapping (data section + offset), not into a copy.
  EXPECT_EQ(size_t(t->data - (f->tensors()[0].data - f->tensors()[0].offset)), t->offset);
  EXPECT_GT(f->tensors().size(), 30u);
}

}  // namespace
}  // namespace jevons

namespace jevons {
namespace {

TEST(Gguf, WriterCopiesAnyValue) {
  // Copy every key of a real vocab file through set_value; the copy must read back equal.
  const std::string src = test::shared_dir() + "/tokenizers/vocab/ggml-vocab-gpt-2.gguf";
  auto in = GgufFile::open(src);
  GgufWriter w;
  for (const auto& [key, value] : in->metadata()) w.set_value(key, value);
  const std::string path = temp_path("copy.gguf");
  w.write(path);
  auto out = GgufFile::open(path);
  ASSERT_EQ(out->metadata().size(), in->metadata().size());
  for (const auto& [key, value] : in->metadata()) {
    const GgufValue* v = out->find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->to_string(1000000), value.to_string(1000000)) << key;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace jevons
