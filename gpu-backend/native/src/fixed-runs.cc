// NativeSession's fixed runs: one binding per window of cache rows whose every input and output keeps its
// address, the feeds copied in and the logits copied out by small Identity sessions on the same provider,
// so that on CUDA each window's run can be captured once as a CUDA graph and replayed.

#include <algorithm>
#include <cstring>

#include "native-session.h"
#include "tensor-bytes.h"

namespace native {

NativeSession::FixedRun& NativeSession::FixedRunFor(const StepRequest& request) {
  const std::pair<int64_t, int64_t> window{request.firstRow, request.batch};
  auto found = fixed_.find(window);
  if (found != fixed_.end()) {
    FixedRun& run = *found->second;
    bool same = run.names.size() == request.feeds.size();
    for (size_t i = 0; same && i < request.feeds.size(); i++) {
      same = run.names[i] == request.feeds[i].name && run.byteLengths[i] == request.feeds[i].byteLength;
    }
    if (!same) throw std::runtime_error("a fixed run must feed the same inputs, of the same sizes, as its window's first run");
    return run;
  }
  auto run = std::make_unique<FixedRun>();
  size_t int64Count = 0;
  size_t int32Count = 0;
  for (const HostFeed& feed : request.feeds) {
    CheckFeedBytes(feed);
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

}  // namespace native
