// NativeSession: session creation on the CPU or CUDA provider, the KV cache allocated once from the
// session's allocator, and one IoBinding per step that binds each cache tensor as past and present.

#include "native-session.h"
#include "tensor-bytes.h"

#include <algorithm>
#include <unordered_map>
#include <stdexcept>

namespace native {

namespace {

// `graphs`: the model session of a config with cudaGraphs; never the small copy sessions beside it.
Ort::SessionOptions MakeOptions(const SessionConfig& config, bool graphs) {
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(config.intraOpThreads);
  options.SetInterOpNumThreads(1);
  options.SetExecutionMode(ORT_SEQUENTIAL);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  if (config.provider == "cuda") {
    // The provider library loads here; without it (or without CUDA) this is where the session fails.
    try {
      Ort::CUDAProviderOptions cuda;
      std::unordered_map<std::string, std::string> values{{"device_id", std::to_string(config.deviceId)}};
      if (graphs) values["enable_cuda_graph"] = "1";
      cuda.Update(values);
      options.AppendExecutionProvider_CUDA_V2(*cuda);
    } catch (const Ort::Exception& error) {
      throw std::runtime_error(std::string("the CUDA execution provider is unavailable: ") + error.what());
    }
  } else if (config.provider != "cpu") {
    throw std::runtime_error("unknown execution provider '" + config.provider + "' (cpu or cuda)");
  }
  return options;
}

}  // namespace

void CheckFeedBytes(const HostFeed& feed) {
  if (ElementCount(feed.dims) * ElementBytes(feed.type) != feed.byteLength) {
    throw std::runtime_error("feed " + feed.name + " does not match its dims");
  }
}

NativeSession::NativeSession(const std::string& model, const std::vector<uint8_t>& modelBytes, const SessionConfig& config)
    : env_(ORT_LOGGING_LEVEL_ERROR, "native-session"), config_(config), provider_(config.provider), deviceId_(config.deviceId) {
  if (config.cudaGraphs && config.provider != "cuda") throw std::runtime_error("CUDA graphs need the cuda provider");
  Ort::SessionOptions options = MakeOptions(config, config.cudaGraphs);
  // Runs that are not fixed must not be captured: with graphs on, ONNX Runtime captures id 0 by default.
  if (config.cudaGraphs) runOptions_.AddConfigEntry("gpu_graph_id", "-1");
  try {
    session_ = modelBytes.empty() ? std::make_unique<Ort::Session>(env_, model.c_str(), options)
                                  : std::make_unique<Ort::Session>(env_, modelBytes.data(), modelBytes.size(), options);
  } catch (const Ort::Exception& error) {
    if (provider_ == "cuda") throw std::runtime_error(std::string("the CUDA execution provider is unavailable: ") + error.what());
    throw;
  }
  binding_ = std::make_unique<Ort::IoBinding>(*session_);
}

void NativeSession::AllocateCache(const CacheSpec& spec) {
  if (!cache_.empty()) throw std::runtime_error("the KV cache is allocated once per session");
  if (spec.pastNames.size() != spec.presentNames.size() || spec.pastNames.empty()) {
    throw std::runtime_error("the cache needs one present name per past name");
  }
  Ort::MemoryInfo info = provider_ == "cuda" ? Ort::MemoryInfo("Cuda", OrtArenaAllocator, deviceId_, OrtMemTypeDefault)
                                             : Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  if (spec.rowCopyModel.empty()) throw std::runtime_error("the cache needs its row-copy graph");
  Ort::SessionOptions copyOptions = MakeOptions(config_, false);
  copyOptions.SetIntraOpNumThreads(1);
  copySession_ = std::make_unique<Ort::Session>(env_, spec.rowCopyModel.data(), spec.rowCopyModel.size(), copyOptions);
  if (spec.uploadModel.empty() != spec.downloadModel.empty()) throw std::runtime_error("fixed runs need both staging graphs");
  if (!spec.uploadModel.empty()) {
    uploadSession_ = std::make_unique<Ort::Session>(env_, spec.uploadModel.data(), spec.uploadModel.size(), copyOptions);
    downloadSession_ = std::make_unique<Ort::Session>(env_, spec.downloadModel.data(), spec.downloadModel.size(), copyOptions);
  }
  copyBinding_ = std::make_unique<Ort::IoBinding>(*copySession_);
  allocator_ = std::make_unique<Ort::Allocator>(*session_, info);
  spec_ = spec;
  const int64_t shape[4] = {spec.rows, spec.keyValueHeads, spec.slots, spec.headDim};
  const size_t tensorBytes = RowBytes() * static_cast<size_t>(spec.rows);
  const Ort::MemoryInfo hostInfo = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  for (size_t i = 0; i < spec.pastNames.size(); i++) {
    if (!CacheOnHost()) {
      // Device memory is left as allocated: the attention op reads only slots below each row's length.
      cache_.push_back(Ort::Value::CreateTensor(*allocator_, shape, 4, spec.elementType));
      continue;
    }
    // Host caches read as zeros until written, so an unread slot never holds garbage, and cost resident
    // memory only where tokens are (host-pages.h).
    hostPages_.emplace_back(tensorBytes);
    cache_.push_back(Ort::Value::CreateTensor(hostInfo, hostPages_.back().data(), tensorBytes, shape, 4, spec.elementType));
  }
}

void NativeSession::DiscardRow(int64_t row, int64_t keepSlots) {
  if (row < 0 || row >= spec_.rows || keepSlots < 0 || keepSlots > spec_.slots) throw std::runtime_error("discard outside the KV cache");
  const size_t slotBytes = static_cast<size_t>(spec_.headDim) * ElementBytes(spec_.elementType);
  const size_t headBytes = slotBytes * static_cast<size_t>(spec_.slots);
  const size_t rowStart = RowBytes() * static_cast<size_t>(row);
  for (const HostPages& pages : hostPages_) {
    if (keepSlots == 0) {
      pages.Discard(rowStart, RowBytes());
      continue;
    }
    // Each head's slots are contiguous: its tail past keepSlots is one range.
    for (int64_t head = 0; head < spec_.keyValueHeads; head++) {
      pages.Discard(rowStart + headBytes * static_cast<size_t>(head) + slotBytes * static_cast<size_t>(keepSlots),
                    slotBytes * static_cast<size_t>(spec_.slots - keepSlots));
    }
  }
}

size_t NativeSession::RowBytes() const {
  return static_cast<size_t>(spec_.keyValueHeads * spec_.slots * spec_.headDim) * ElementBytes(spec_.elementType);
}

bool NativeSession::CacheOnHost() const { return provider_ == "cpu"; }

size_t NativeSession::CacheBytes() const { return cache_.size() * RowBytes() * static_cast<size_t>(spec_.rows); }

size_t NativeSession::ResidentCacheBytes() const {
  if (!CacheOnHost()) return CacheBytes();
  size_t bytes = 0;
  for (const HostPages& pages : hostPages_) bytes += pages.ResidentBytes();
  return bytes;
}

Ort::Value NativeSession::RowsView(size_t tensor, int64_t firstRow, int64_t batch) const {
  const Ort::Value& whole = cache_[tensor];
  auto* base = static_cast<uint8_t*>(const_cast<void*>(whole.GetTensorRawData()));
  const int64_t shape[4] = {batch, spec_.keyValueHeads, spec_.slots, spec_.headDim};
  return Ort::Value::CreateTensor(whole.GetTensorMemoryInfo(), base + RowBytes() * static_cast<size_t>(firstRow),
                                  RowBytes() * static_cast<size_t>(batch), shape, 4, spec_.elementType);
}

Ort::Value NativeSession::HeadView(size_t tensor, int64_t row, int64_t head, int64_t slots) const {
  const Ort::Value& whole = cache_[tensor];
  auto* base = static_cast<uint8_t*>(const_cast<void*>(whole.GetTensorRawData()));
  const size_t slotBytes = static_cast<size_t>(spec_.headDim) * ElementBytes(spec_.elementType);
  const size_t offset = RowBytes() * static_cast<size_t>(row) + slotBytes * static_cast<size_t>(spec_.slots * head);
  const int64_t shape[2] = {slots, spec_.headDim};
  return Ort::Value::CreateTensor(whole.GetTensorMemoryInfo(), base + offset, slotBytes * static_cast<size_t>(slots), shape, 2,
                                  spec_.elementType);
}

void NativeSession::Run(const StepRequest& request) {
  if (cache_.empty()) throw std::runtime_error("run before the KV cache was allocated");
  if (request.fixed) return RunFixed(request);
  if (request.batch <= 0 || request.firstRow < 0 || request.firstRow + request.batch > spec_.rows) {
    throw std::runtime_error("batch rows are outside the KV cache");
  }
  const size_t logitsCount = static_cast<size_t>(request.logitsRows * request.vocab);
  if (logitsCount > request.logitsCapacity) throw std::runtime_error("the logits buffer is too small for this run");
  Ort::MemoryInfo host = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> values;  // alive until the run ends
  values.reserve(request.feeds.size() + cache_.size() + 1);
  binding_->ClearBoundInputs();
  binding_->ClearBoundOutputs();
  for (const HostFeed& feed : request.feeds) {
    CheckFeedBytes(feed);
    values.push_back(Ort::Value::CreateTensor(host, feed.data, feed.byteLength, feed.dims.data(), feed.dims.size(), feed.type));
    binding_->BindInput(feed.name.c_str(), values.back());
  }
  for (size_t i = 0; i < cache_.size(); i++) {
    values.push_back(RowsView(i, request.firstRow, request.batch));
    binding_->BindInput(spec_.pastNames[i].c_str(), values.back());
    binding_->BindOutput(spec_.presentNames[i].c_str(), values.back());
  }
  const int64_t logitsShape[2] = {request.logitsRows, request.vocab};
  values.push_back(Ort::Value::CreateTensor<float>(host, request.logits, logitsCount, logitsShape, 2));
  binding_->BindOutput(request.logitsName.c_str(), values.back());
  session_->Run(runOptions_, *binding_);
  binding_->ClearBoundInputs();
  binding_->ClearBoundOutputs();
}

void NativeSession::CopyRow(int64_t from, int64_t to, int64_t slots) {
  if (cache_.empty()) throw std::runtime_error("row copy before the KV cache was allocated");
  if (from < 0 || to < 0 || from >= spec_.rows || to >= spec_.rows || slots < 0 || slots > spec_.slots) {
    throw std::runtime_error("row copy outside the KV cache");
  }
  if (from == to || slots == 0) return;
  // One run per cache tensor, one Identity per head: each head's valid slots are one contiguous block.
  for (size_t tensor = 0; tensor < cache_.size(); tensor++) {
    std::vector<Ort::Value> views;  // alive until the run ends
    views.reserve(2 * static_cast<size_t>(spec_.keyValueHeads));
    copyBinding_->ClearBoundInputs();
    copyBinding_->ClearBoundOutputs();
    for (int64_t head = 0; head < spec_.keyValueHeads; head++) {
      const std::string index = std::to_string(head);
      views.push_back(HeadView(tensor, from, head, slots));
      copyBinding_->BindInput(("src_" + index).c_str(), views.back());
      views.push_back(HeadView(tensor, to, head, slots));
      copyBinding_->BindOutput(("dst_" + index).c_str(), views.back());
    }
    copySession_->Run(runOptions_, *copyBinding_);
  }
  copyBinding_->ClearBoundInputs();
  copyBinding_->ClearBoundOutputs();
}

std::vector<std::string> NativeSession::InputNames() const {
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<std::string> names;
  for (size_t i = 0; i < session_->GetInputCount(); i++) names.emplace_back(session_->GetInputNameAllocated(i, allocator).get());
  return names;
}

std::vector<std::string> NativeSession::OutputNames() const {
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<std::string> names;
  for (size_t i = 0; i < session_->GetOutputCount(); i++) names.emplace_back(session_->GetOutputNameAllocated(i, allocator).get());
  return names;
}

}  // namespace native
