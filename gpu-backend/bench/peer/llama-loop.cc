// bench:peer's llama.cpp row without any JS in the loop: the prebuilt llama.cpp library that
// @node-llama-cpp/linux-x64 ships, driven by llama_decode from C++. It measures what peer-runner.ts
// measures (the same prompts, greedy ids, batches and context sizes) and prints one line
// `RESULT <json>` on stdout, so bench-peer.ts treats it as a third engine; with --verify K it times
// speculative verification steps instead (verify-cost.ts). Built by llama-loop-build.ts against the
// llama.h of the same release (from node-llama-cpp's source bundle), never committed.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

struct Options {
  std::string gguf;
  std::string backends;
  std::string format = "fp32";
  int threads = 2;
  int decodeTokens = 64;
  int longContext = 2000;
  std::vector<int> batches = {4, 8};
  /** > 0: measure only speculative verification steps of 1 + k tokens, k = 0..verify (verify-cost.ts's row). */
  int verify = 0;
};

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "llama-loop: %s\n", message.c_str());
  std::exit(2);
}

int PositiveInt(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value <= 0 || value > 1 << 20) Fail(flag + ": expected a positive integer, got \"" + text + "\"");
  return static_cast<int>(value);
}

Options Parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; i++) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) Fail(flag + ": missing value");
    const std::string value = argv[++i];
    if (flag == "--gguf") options.gguf = value;
    else if (flag == "--backends") options.backends = value;
    else if (flag == "--format") options.format = value;
    else if (flag == "--threads") options.threads = PositiveInt(flag, value);
    else if (flag == "--decode-tokens") options.decodeTokens = PositiveInt(flag, value);
    else if (flag == "--long-context") options.longContext = PositiveInt(flag, value);
    else if (flag == "--verify") options.verify = PositiveInt(flag, value);
    else if (flag == "--batches") {
      options.batches.clear();
      std::stringstream parts(value);
      for (std::string part; std::getline(parts, part, ',');) options.batches.push_back(PositiveInt(flag, part));
    } else Fail("unknown flag " + flag);
  }
  if (options.gguf.empty()) Fail("--gguf is required");
  return options;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/** The same prompt as peer-runner.ts's promptOf, so both engines see the same ids. */
std::vector<llama_token> PromptOf(int length, int salt) {
  std::vector<llama_token> ids(length);
  for (int i = 0; i < length; i++) ids[i] = static_cast<llama_token>(3 + ((int64_t{i} * 7919 + int64_t{salt} * 104729) % 31000));
  return ids;
}

double ResidentMiB() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * 4096 / (1 << 20);
}

/** One context of `slots` sequences, each of `contextLength` cells: the KV capacity our engine gets. */
class Loop {
 public:
  Loop(llama_model* model, llama_context* context, int slots)
      : context_(context),
        vocab_(llama_vocab_n_tokens(llama_model_get_vocab(model))),
        batchLimit_(static_cast<int>(llama_n_batch(context))),
        lengths_(slots, 0),
        batch_(llama_batch_init(std::max(batchLimit_, slots), 0, 1)) {}
  ~Loop() { llama_batch_free(batch_); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /** Feeds `prompt` to the empty sequence `slot` in chunks of the context's batch size; the greedy next id. */
  llama_token Prefill(int slot, const std::vector<llama_token>& prompt) {
    for (size_t from = 0; from < prompt.size(); from += batchLimit_) {
      const size_t to = std::min(prompt.size(), from + batchLimit_);
      batch_.n_tokens = 0;
      for (size_t i = from; i < to; i++) Add(prompt[i], slot, i + 1 == prompt.size());
      Decode();
    }
    return Argmax(batch_.n_tokens - 1);
  }

  /** One id per slot in one llama_decode; each slot's greedy next id. */
  std::vector<llama_token> Step(const std::vector<int>& slots, const std::vector<llama_token>& ids) {
    batch_.n_tokens = 0;
    for (size_t i = 0; i < slots.size(); i++) Add(ids[i], slots[i], true);
    Decode();
    std::vector<llama_token> next(slots.size());
    for (size_t i = 0; i < slots.size(); i++) next[i] = Argmax(static_cast<int>(i));
    return next;
  }

  /** `ids` appended to `slot` in one llama_decode with logits for every row, as a verification step needs them. */
  void Verify(int slot, const std::vector<llama_token>& ids) {
    batch_.n_tokens = 0;
    for (llama_token id : ids) Add(id, slot, true);
    Decode();
  }

  int Length(int slot) const { return lengths_[slot]; }

  /** Drops `slot`'s cells from `length` on: a rejected draft rolled back. */
  void Truncate(int slot, int length) {
    if (!llama_memory_seq_rm(llama_get_memory(context_), slot, length, -1)) Fail("cannot truncate sequence " + std::to_string(slot));
    lengths_[slot] = length;
  }

  void Clear(int slot) {
    llama_memory_seq_rm(llama_get_memory(context_), slot, -1, -1);
    lengths_[slot] = 0;
  }

 private:
  void Add(llama_token id, int slot, bool wantLogits) {
    const int i = batch_.n_tokens++;
    batch_.token[i] = id;
    batch_.pos[i] = lengths_[slot]++;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = slot;
    batch_.logits[i] = wantLogits;
  }

  void Decode() {
    const int32_t status = llama_decode(context_, batch_);
    if (status != 0) Fail("llama_decode returned " + std::to_string(status));
  }

  llama_token Argmax(int batchIndex) {
    const float* logits = llama_get_logits_ith(context_, batchIndex);
    if (logits == nullptr) Fail("no logits for batch row " + std::to_string(batchIndex));
    return static_cast<llama_token>(std::max_element(logits, logits + vocab_) - logits);
  }

  llama_context* context_;
  const int vocab_;
  const int batchLimit_;
  std::vector<llama_pos> lengths_;
  llama_batch batch_;
};

struct Measured {
  double rate = 0;
  double prefillRate = 0;
  std::vector<llama_token> firstSlotIds;
};

/** As peer-runner.ts: prefill each slot (the first timed), then `decodeTokens` batched steps, then clear. */
Measured Measure(Loop& loop, int context, int slotCount, int decodeTokens) {
  Measured measured;
  std::vector<int> slots;
  std::vector<llama_token> current;
  for (int slot = 0; slot < slotCount; slot++) {
    const auto start = std::chrono::steady_clock::now();
    current.push_back(loop.Prefill(slot, PromptOf(context, slot)));
    if (slot == 0) measured.prefillRate = context / SecondsSince(start);
    slots.push_back(slot);
  }
  measured.firstSlotIds.push_back(current[0]);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < decodeTokens; i++) {
    current = loop.Step(slots, current);
    measured.firstSlotIds.push_back(current[0]);
  }
  measured.rate = static_cast<double>(decodeTokens) * slotCount / SecondsSince(start);
  for (int slot : slots) loop.Clear(slot);
  return measured;
}

/**
 * As verify-cost.ts measures ours: a 128-token prompt, then for each k = 0..maxDraft a warm-up and `steps`
 * steps of 1 + k tokens, each rolled back to one kept token after it; the median milliseconds per k.
 */
std::vector<double> VerifyMillis(Loop& loop, int maxDraft, int steps) {
  std::vector<double> medians;
  loop.Prefill(0, PromptOf(128, 0));
  for (int k = 0; k <= maxDraft; k++) {
    std::vector<double> samples;
    for (int i = 0; i <= steps; i++) {
      std::vector<llama_token> ids(1 + k);
      for (int t = 0; t <= k; t++) ids[t] = static_cast<llama_token>(3 + (i * 31 + t * 17) % 31000);
      const int length = loop.Length(0);
      const auto start = std::chrono::steady_clock::now();
      loop.Verify(0, ids);
      if (i > 0) samples.push_back(SecondsSince(start) * 1000);
      loop.Truncate(0, length + 1);
    }
    std::sort(samples.begin(), samples.end());
    const size_t n = samples.size();
    medians.push_back(n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2);
  }
  loop.Clear(0);
  return medians;
}

void Quiet(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

std::string Json(const std::map<std::string, double>& numbers, const std::vector<llama_token>& ids, const Options& options) {
  std::ostringstream out;
  out.precision(10);
  out << "{\"engine\":\"loop\",\"format\":\"" << options.format << "\",\"threads\":" << options.threads;
  for (const auto& [key, value] : numbers) out << ",\"" << key << "\":" << value;
  out << ",\"greedyTokenIds\":[";
  for (size_t i = 0; i < ids.size(); i++) out << (i ? "," : "") << ids[i];
  out << "]}";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  const int slots = std::max(1, *std::max_element(options.batches.begin(), options.batches.end()));
  const int contextLength = (std::max(128, options.longContext) + options.decodeTokens + 16 + 63) / 64 * 64;

  llama_log_set(Quiet, nullptr);
  const auto loadStart = std::chrono::steady_clock::now();
  // The library's CPU code sits in per-microarchitecture backends (libggml-cpu-*.so) beside it.
  if (!options.backends.empty()) ggml_backend_load_all_from_path(options.backends.c_str());
  llama_backend_init();
  llama_model_params modelParams = llama_model_default_params();
  modelParams.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(options.gguf.c_str(), modelParams);
  if (model == nullptr) Fail("cannot load " + options.gguf);
  // llama.cpp's own defaults (flash attention auto, split KV per sequence) but for the sizes
  // peer-runner.ts gives node-llama-cpp: n_batch = n_ubatch = 512, explicit threads.
  llama_context_params contextParams = llama_context_default_params();
  contextParams.n_ctx = static_cast<uint32_t>(slots * contextLength);
  contextParams.n_seq_max = static_cast<uint32_t>(slots);
  contextParams.n_batch = 512;
  contextParams.n_ubatch = 512;
  contextParams.n_threads = options.threads;
  contextParams.n_threads_batch = options.threads;
  contextParams.no_perf = true;
  llama_context* context = llama_init_from_model(model, contextParams);
  if (context == nullptr) Fail("cannot create a context of " + std::to_string(slots * contextLength) + " cells");
  std::map<std::string, double> numbers;
  numbers["loadSeconds"] = SecondsSince(loadStart);
  numbers["rssAfterLoadMiB"] = ResidentMiB();
  std::vector<llama_token> greedy;
  {
    Loop loop(model, context, slots);
    loop.Prefill(0, PromptOf(16, 99));  // warm-up, as peer-runner.ts does
    loop.Clear(0);
    if (options.verify > 0) {
      const std::vector<double> millis = VerifyMillis(loop, options.verify, options.decodeTokens);
      for (size_t k = 0; k < millis.size(); k++) numbers["verifyMs" + std::to_string(k)] = millis[k];
    } else {
      const Measured brief = Measure(loop, 128, 1, options.decodeTokens);
      numbers["prefill128"] = brief.prefillRate;
      numbers["decode128"] = brief.rate;
      greedy = brief.firstSlotIds;
      const Measured wide = Measure(loop, options.longContext, 1, options.decodeTokens);
      numbers["prefillLong"] = wide.prefillRate;
      numbers["decodeLong"] = wide.rate;
      for (int batch : options.batches) numbers["aggregate" + std::to_string(batch)] = Measure(loop, 128, batch, options.decodeTokens).rate;
    }
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  numbers["peakRssMiB"] = static_cast<double>(usage.ru_maxrss) / 1024;
  numbers["cpuSeconds"] = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  llama_free(context);
  llama_model_free(model);
  llama_backend_free();
  std::printf("RESULT %s\n", Json(numbers, greedy, options).c_str());
  return 0;
}
