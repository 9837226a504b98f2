// One ONNX Runtime session with its KV cache bound in place: the cache tensors are allocated once (on
// CUDA from the session's own allocator; on the CPU as reserved pages, host-pages.h) and bound as
// both past and present of GroupQueryAttention (shared-buffer mode), so a step moves only its small
// inputs up and the logits rows down. No N-API here: addon.cc wraps it.
#pragma once

#include <onnxruntime_cxx_api.h>

#include "host-pages.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace native {

struct SessionConfig {
  std::string provider;  // "cpu" or "cuda"
  int intraOpThreads = 1;
  int deviceId = 0;
  // CUDA only: fixed runs are captured as CUDA graphs (enable_cuda_graph), one graph per window of rows.
  bool cudaGraphs = false;
};

struct CacheSpec {
  std::vector<std::string> pastNames;     // graph inputs, one per cache tensor
  std::vector<std::string> presentNames;  // graph outputs bound to the same tensors
  int64_t rows = 0;
  int64_t keyValueHeads = 0;
  int64_t slots = 0;
  int64_t headDim = 0;
  ONNXTensorElementDataType elementType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  // ONNX bytes of the row-copy graph: keyValueHeads Identity nodes src_h -> dst_h, each [n, headDim] of
  // elementType. It runs on the session's provider, so a copy between rows of a device cache stays there.
  std::vector<uint8_t> rowCopyModel;
  // ONNX bytes of the staging graphs of fixed runs, on the session's provider: upload (Identity i64 -> o64
  // and i32 -> o32, 1-D) and download (Identity f32 -> of32, 1-D). Empty: the session has no fixed runs.
  std::vector<uint8_t> uploadModel;
  std::vector<uint8_t> downloadModel;
};

// A host array handed in for one run; it must stay alive until Run returns.
struct HostFeed {
  std::string name;
  ONNXTensorElementDataType type;
  void* data;
  size_t byteLength;
  std::vector<int64_t> dims;
  // Fixed runs: an input the graph reads from host memory (GroupQueryAttention's total_sequence_length).
  bool host = false;
};

// Throws unless the feed's bytes are exactly its dims of its type.
void CheckFeedBytes(const HostFeed& feed);

struct StepRequest {
  std::vector<HostFeed> feeds;
  std::string logitsName;
  float* logits;  // [logitsRows, vocab], host
  size_t logitsCapacity;  // floats available at `logits`
  int64_t logitsRows = 0;
  int64_t vocab = 0;
  int64_t firstRow = 0;  // the batch is cache rows [firstRow, firstRow + batch)
  int64_t batch = 0;
  // A fixed run: the batch is cache rows [firstRow, firstRow + batch) (a window), and every input and output
  // stays at the address it got on the window's first run, which is what a CUDA graph replays. The feeds are copied
  // into those buffers on the provider, and the logits rows copied out.
  bool fixed = false;
};

class NativeSession {
 public:
  // `model` is a path when `modelBytes` is empty.
  NativeSession(const std::string& model, const std::vector<uint8_t>& modelBytes, const SessionConfig& config);

  void AllocateCache(const CacheSpec& spec);
  void Run(const StepRequest& request);
  // Windows that have had a fixed run, one binding each (each a CUDA graph when cudaGraphs).
  size_t FixedWindows() const { return fixed_.size(); }
  // Copies the first `slots` slots of every cache tensor's row `from` into row `to`, on the provider.
  void CopyRow(int64_t from, int64_t to, int64_t slots);
  // Row `row` holds only its first `keepSlots` slots now: a host cache gives the pages of the rest back
  // (they read as zeros again); a device cache keeps them.
  void DiscardRow(int64_t row, int64_t keepSlots);

  std::vector<std::string> InputNames() const;
  std::vector<std::string> OutputNames() const;
  bool CacheOnHost() const;
  size_t CacheBytes() const;
  // Host caches: the bytes backed by memory now; device caches: all of them.
  size_t ResidentCacheBytes() const;

 private:
  size_t RowBytes() const;
  Ort::Value RowsView(size_t tensor, int64_t firstRow, int64_t batch) const;
  // The first `slots` slots of one head of one row: contiguous, [slots, headDim].
  Ort::Value HeadView(size_t tensor, int64_t row, int64_t head, int64_t slots) const;
  void RunFixed(const StepRequest& request);

  // One window's fixed binding: device blocks for the int64 and int32 feeds (each feed a view into its
  // block, in feed order), host copies of the host feeds, the window's cache rows and the logits.
  struct FixedRun {
    std::vector<std::string> names;
    std::vector<size_t> byteLengths;
    Ort::Value int64Block{nullptr};
    Ort::Value int32Block{nullptr};
    std::vector<int64_t> int64Staging;
    std::vector<int32_t> int32Staging;
    std::vector<std::vector<uint8_t>> hostCopies;
    Ort::Value logits{nullptr};  // [batch, vocab] float, on the provider
    std::vector<Ort::Value> views;  // every bound value, alive as long as the binding
    std::unique_ptr<Ort::IoBinding> binding;
    Ort::RunOptions runOptions;
  };
  FixedRun& FixedRunFor(const StepRequest& request);

  Ort::Env env_;
  SessionConfig config_;
  std::string provider_;
  int deviceId_;
  std::unique_ptr<Ort::Session> session_;
  std::unique_ptr<Ort::Session> copySession_;
  std::unique_ptr<Ort::IoBinding> copyBinding_;
  // Declared before the cache, which lives in them (host: pages) or frees its memory through it (device),
  // so both outlive the tensors.
  std::unique_ptr<Ort::Allocator> allocator_;
  std::vector<HostPages> hostPages_;  // one per cache tensor on the CPU provider
  std::vector<Ort::Value> cache_;  // each [rows, keyValueHeads, slots, headDim]
  CacheSpec spec_;
  std::unique_ptr<Ort::IoBinding> binding_;
  Ort::RunOptions runOptions_;
  std::unique_ptr<Ort::Session> uploadSession_;
  std::unique_ptr<Ort::Session> downloadSession_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<FixedRun>> fixed_;  // by (firstRow, batch)
};

}  // namespace native
