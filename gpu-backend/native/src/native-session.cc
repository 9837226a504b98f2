// NativeSession: session creation on the CPU or CUDA provider, the KV cache allocated once from the
// session's allocator, and one IoBinding per step that binds each cache tensor as past and present.

#include "native-session.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <stdexcept>

namespace native {

namespace {

size_t ElementBytes(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return 8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return 1;
    default:
      throw std::runtime_error("unsupported tensor element type");
  }
}

size_t ElementCount(const std::vector<int64_t>& dims) {
  size_t count = 1;
  for (int64_t dim : dims) count *= static_cast<size_t>(dim);
  return count;
}

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
  for (size_t i = 0; i < spec.pastNames.size(); i++) {
    cache_.push_back(Ort::Value::CreateTensor(*allocator_, shape, 4, spec.elementType));
    // Host caches start zeroed so an unread slot never holds garbage; device memory is left as
    // allocated (the attention op reads only slots below each row's length).
    if (CacheOnHost()) std::memset(cache_.back().GetTensorMutableRawData(), 0, RowBytes() * static_cast<size_t>(spec.rows));
  }
}

size_t NativeSession::RowBytes() const {
  return static_cast<size_t>(spec_.keyValueHeads * spec_.slots * spec_.headDim) * ElementBytes(spec_.elementType);
}

bool NativeSession::CacheOnHost() const { return provider_ == "cpu"; }

size_t NativeSession::CacheBytes() const { return cache_.size() * RowBytes() * static_cast<size_t>(spec_.rows); }

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
    if (ElementCount(feed.dims) * ElementBytes(feed.type) != feed.byteLength) {
      throw std::runtime_error("feed " + feed.name + " does not match its dims");
    }
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

NativeSession::FixedRun& NativeSession::FixedRunFor(const StepRequest& request) {
  const std::pair<int64_t, int64_t> window{request.firstRow, request.batch};
  auto found = fixed_.find(window);
  if (found != fixed_.end()) {
    FixedRun& run = *found->second;
    bool same = run.names.size() == request.feeds.size();
    for (size_t i = 0; same && i < request.feeds.size(); i++) {
      same = run.names[i] == request.feeds[i].name && run.byteLengths[i] == request.feeds[i].byteLength;
    }
    if (!same) throw std::runtime_error("a fixed run must feed the same inputs, of the same sizes, as its bucket's first run");
    return run;
  }
  auto run = std::make_unique<FixedRun>();
  size_t int64Count = 0;
  size_t int32Count = 0;
  for (const HostFeed& feed : request.feeds) {
    if (ElementCount(feed.dims) * ElementBytes(feed.type) != feed.byteLength) {
      throw std::runtime_error("feed " + feed.name + " does not match its dims");
    }
    run->names.push_back(feed.name);
    run->byteLengths.push_back(feed.byteLength);
    if (feed.host) continue;
    if (feed.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
      int64Count += ElementCount(feed.dims);
    } else if (feed.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) {
      int32Count += ElementCount(feed.dims);
    } else {
      throw std::runtime_error("a fixed run feeds int64 or int32 inputs only (" + feed.name + ")");
    }
  }
  // At least one element each: the upload graph always takes both blocks.
  const int64_t int64Shape[1] = {static_cast<int64_t>(std::max<size_t>(int64Count, 1))};
  const int64_t int32Shape[1] = {static_cast<int64_t>(std::max<size_t>(int32Count, 1))};
  run->int64Block = Ort::Value::CreateTensor(*allocator_, int64Shape, 1, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  run->int32Block = Ort::Value::CreateTensor(*allocator_, int32Shape, 1, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32);
  run->int64Staging.assign(static_cast<size_t>(int64Shape[0]), 0);
  run->int32Staging.assign(static_cast<size_t>(int32Shape[0]), 0);
  const int64_t logitsShape[2] = {request.batch, request.vocab};
  run->logits = Ort::Value::CreateTensor(*allocator_, logitsShape, 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  run->binding = std::make_unique<Ort::IoBinding>(*session_);
  run->views.reserve(request.feeds.size() + cache_.size());
  Ort::MemoryInfo host = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  auto* int64Base = static_cast<uint8_t*>(run->int64Block.GetTensorMutableRawData());
  auto* int32Base = static_cast<uint8_t*>(run->int32Block.GetTensorMutableRawData());
  const Ort::ConstMemoryInfo device = run->int64Block.GetTensorMemoryInfo();
  for (const HostFeed& feed : request.feeds) {
    if (feed.host) {
      run->hostCopies.emplace_back(feed.byteLength);
      run->views.push_back(Ort::Value::CreateTensor(host, run->hostCopies.back().data(), feed.byteLength, feed.dims.data(),
                                                    feed.dims.size(), feed.type));
    } else {
      uint8_t*& base = feed.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 ? int64Base : int32Base;
      run->views.push_back(Ort::Value::CreateTensor(device, base, feed.byteLength, feed.dims.data(), feed.dims.size(), feed.type));
      base += feed.byteLength;
    }
    run->binding->BindInput(feed.name.c_str(), run->views.back());
  }
  for (size_t i = 0; i < cache_.size(); i++) {
    run->views.push_back(RowsView(i, request.firstRow, request.batch));
    run->binding->BindInput(spec_.pastNames[i].c_str(), run->views.back());
    run->binding->BindOutput(spec_.presentNames[i].c_str(), run->views.back());
  }
  run->binding->BindOutput(request.logitsName.c_str(), run->logits);
  // One graph per window, numbered from 1 in order of first use (ONNX Runtime's default id is 0).
  if (config_.cudaGraphs) run->runOptions.AddConfigEntry("gpu_graph_id", std::to_string(fixed_.size() + 1).c_str());
  return *fixed_.emplace(window, std::move(run)).first->second;
}

void NativeSession::RunFixed(const StepRequest& request) {
  if (!uploadSession_) throw std::runtime_error("a fixed run needs the staging graphs (allocateCache uploadModel, downloadModel)");
  if (request.batch <= 0 || request.firstRow < 0 || request.firstRow + request.batch > spec_.rows) {
    throw std::runtime_error("a fixed run's rows are outside the KV cache");
  }
  if (request.logitsRows > request.batch) throw std::runtime_error("a fixed run returns at most one logits row per cache row");
  const size_t logitsCount = static_cast<size_t>(request.logitsRows * request.vocab);
  if (logitsCount > request.logitsCapacity) throw std::runtime_error("the logits buffer is too small for this run");
  FixedRun& run = FixedRunFor(request);
  // Gather the feeds into the staging blocks in the binding's order, and the host feeds into their copies.
  size_t int64At = 0;
  size_t int32At = 0;
  size_t hostAt = 0;
  for (const HostFeed& feed : request.feeds) {
    if (feed.host) {
      std::memcpy(run.hostCopies[hostAt++].data(), feed.data, feed.byteLength);
    } else if (feed.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
      std::memcpy(run.int64Staging.data() + int64At, feed.data, feed.byteLength);
      int64At += feed.byteLength / sizeof(int64_t);
    } else {
      std::memcpy(run.int32Staging.data() + int32At, feed.data, feed.byteLength);
      int32At += feed.byteLength / sizeof(int32_t);
    }
  }
  Ort::MemoryInfo host = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  const int64_t int64Shape[1] = {static_cast<int64_t>(run.int64Staging.size())};
  const int64_t int32Shape[1] = {static_cast<int64_t>(run.int32Staging.size())};
  Ort::Value int64Host = Ort::Value::CreateTensor<int64_t>(host, run.int64Staging.data(), run.int64Staging.size(), int64Shape, 1);
  Ort::Value int32Host = Ort::Value::CreateTensor<int32_t>(host, run.int32Staging.data(), run.int32Staging.size(), int32Shape, 1);
  Ort::IoBinding upload(*uploadSession_);
  upload.BindInput("i64", int64Host);
  upload.BindInput("i32", int32Host);
  upload.BindOutput("o64", run.int64Block);
  upload.BindOutput("o32", run.int32Block);
  uploadSession_->Run(runOptions_, upload);

  session_->Run(run.runOptions, *run.binding);

  if (logitsCount == 0) return;
  const int64_t flat[1] = {static_cast<int64_t>(logitsCount)};
  auto* logitsBase = static_cast<float*>(run.logits.GetTensorMutableRawData());
  Ort::Value rows = Ort::Value::CreateTensor(run.logits.GetTensorMemoryInfo(), logitsBase, logitsCount * sizeof(float), flat, 1,
                                             ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  Ort::Value out = Ort::Value::CreateTensor<float>(host, request.logits, logitsCount, flat, 1);
  Ort::IoBinding download(*downloadSession_);
  download.BindInput("f32", rows);
  download.BindOutput("of32", out);
  downloadSession_->Run(runOptions_, download);
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
