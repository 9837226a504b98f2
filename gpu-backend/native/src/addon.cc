// The N-API face of NativeSession: argument checking, typed arrays in and out, and runs on the libuv
// thread pool (a step would otherwise block the JS thread for its whole duration).

#include <napi.h>

#include <memory>
#include <string>
#include <utility>

#include "native-session.h"

namespace {

ONNXTensorElementDataType ElementType(const std::string& type) {
  if (type == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (type == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  if (type == "int64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  if (type == "int32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
  if (type == "bool") return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
  throw std::runtime_error("unsupported feed type '" + type + "'");
}

std::vector<std::string> Strings(const Napi::Value& value) {
  std::vector<std::string> out;
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) out.push_back(array.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

Napi::Array StringArray(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) array.Set(i, Napi::String::New(env, values[i]));
  return array;
}

int64_t Integer(const Napi::Object& object, const char* key) { return object.Get(key).As<Napi::Number>().Int64Value(); }

// Runs `body`, turning a C++ exception (the session's, ONNX Runtime's) into a JS Error with its message;
// an N-API error passes through as it is.
template <typename Body>
auto AsJsError(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, error.what());
  }
}

class Session;

// One step on the thread pool. The request object (and so every typed array it names) stays
// referenced until the run is over.
class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, Session* owner, Napi::Object request, native::StepRequest step);
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;

 private:
  Session* owner_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference request_;
  Napi::ObjectReference session_;  // the session object must outlive its run
  native::StepRequest step_;
};

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeSession",
                       {InstanceMethod("allocateCache", &Session::AllocateCache), InstanceMethod("run", &Session::Run),
                        InstanceMethod("copyRow", &Session::CopyRow), InstanceMethod("discardRow", &Session::DiscardRow),
                        InstanceMethod("release", &Session::Release),
                        InstanceAccessor("inputNames", &Session::InputNames, nullptr),
                        InstanceAccessor("outputNames", &Session::OutputNames, nullptr),
                        InstanceAccessor("cacheBytes", &Session::CacheBytes, nullptr),
                        InstanceAccessor("residentCacheBytes", &Session::ResidentCacheBytes, nullptr),
                        InstanceAccessor("fixedWindows", &Session::FixedWindows, nullptr)});
  }

  explicit Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "NativeSession(model, options)");
    Napi::Object options = info[1].As<Napi::Object>();
    native::SessionConfig config;
    config.provider = options.Get("provider").As<Napi::String>().Utf8Value();
    config.intraOpThreads = static_cast<int>(Integer(options, "intraOpThreads"));
    config.deviceId = options.Has("deviceId") ? static_cast<int>(Integer(options, "deviceId")) : 0;
    config.cudaGraphs = options.Has("cudaGraphs") && options.Get("cudaGraphs").ToBoolean().Value();
    std::string path;
    std::vector<uint8_t> bytes;
    if (info[0].IsString()) {
      path = info[0].As<Napi::String>().Utf8Value();
    } else if (info[0].IsTypedArray()) {
      Napi::Uint8Array array = info[0].As<Napi::Uint8Array>();
      bytes.assign(array.Data(), array.Data() + array.ByteLength());
    } else {
      throw Napi::TypeError::New(env, "model must be a path or the model's bytes");
    }
    AsJsError(env, [&] { session_ = std::make_unique<native::NativeSession>(path, bytes, config); });
  }

  native::NativeSession& Native(Napi::Env env) {
    if (!session_) throw Napi::Error::New(env, "the native session was released");
    if (busy_) throw Napi::Error::New(env, "the native session is running a step");
    return *session_;
  }
  void Done() { busy_ = false; }
  native::NativeSession* Raw() { return session_.get(); }

 private:
  Napi::Value AllocateCache(const Napi::CallbackInfo& info) {
    Napi::Object spec = info[0].As<Napi::Object>();
    native::CacheSpec cache;
    cache.pastNames = Strings(spec.Get("pastNames"));
    cache.presentNames = Strings(spec.Get("presentNames"));
    cache.rows = Integer(spec, "rows");
    cache.keyValueHeads = Integer(spec, "keyValueHeads");
    cache.slots = Integer(spec, "slots");
    cache.headDim = Integer(spec, "headDim");
    if (!spec.Get("rowCopyModel").IsTypedArray()) throw Napi::TypeError::New(info.Env(), "rowCopyModel must be the row-copy graph's bytes");
    Napi::Uint8Array copyModel = spec.Get("rowCopyModel").As<Napi::Uint8Array>();
    cache.rowCopyModel.assign(copyModel.Data(), copyModel.Data() + copyModel.ByteLength());
    for (const char* key : {"uploadModel", "downloadModel"}) {
      if (!spec.Has(key) || spec.Get(key).IsUndefined()) continue;
      if (!spec.Get(key).IsTypedArray()) throw Napi::TypeError::New(info.Env(), std::string(key) + " must be a staging graph's bytes");
      Napi::Uint8Array model = spec.Get(key).As<Napi::Uint8Array>();
      (std::string(key) == "uploadModel" ? cache.uploadModel : cache.downloadModel).assign(model.Data(), model.Data() + model.ByteLength());
    }
    AsJsError(info.Env(), [&] {
      cache.elementType = ElementType(spec.Get("elementType").As<Napi::String>().Utf8Value());
      Native(info.Env()).AllocateCache(cache);
    });
    return info.Env().Undefined();
  }

  Napi::Value Run(const Napi::CallbackInfo& info);

  Napi::Value CopyRow(const Napi::CallbackInfo& info) {
    AsJsError(info.Env(), [&] {
      Native(info.Env()).CopyRow(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().Int64Value(),
                                 info[2].As<Napi::Number>().Int64Value());
    });
    return info.Env().Undefined();
  }

  Napi::Value DiscardRow(const Napi::CallbackInfo& info) {
    AsJsError(info.Env(), [&] { Native(info.Env()).DiscardRow(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().Int64Value()); });
    return info.Env().Undefined();
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    Native(info.Env());
    session_.reset();
    return info.Env().Undefined();
  }

  Napi::Value InputNames(const Napi::CallbackInfo& info) { return StringArray(info.Env(), Native(info.Env()).InputNames()); }
  Napi::Value OutputNames(const Napi::CallbackInfo& info) { return StringArray(info.Env(), Native(info.Env()).OutputNames()); }
  Napi::Value ResidentCacheBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(AsJsError(info.Env(), [&] { return Native(info.Env()).ResidentCacheBytes(); })));
  }

  Napi::Value CacheBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(Native(info.Env()).CacheBytes()));
  }

  Napi::Value FixedWindows(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(Native(info.Env()).FixedWindows()));
  }

  std::unique_ptr<native::NativeSession> session_;
  bool busy_ = false;
  friend class RunWorker;
};

native::HostFeed Feed(const Napi::Object& feed) {
  native::HostFeed out;
  out.name = feed.Get("name").As<Napi::String>().Utf8Value();
  out.type = ElementType(feed.Get("type").As<Napi::String>().Utf8Value());
  Napi::TypedArray data = feed.Get("data").As<Napi::TypedArray>();
  out.data = static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  out.byteLength = data.ByteLength();
  Napi::Array dims = feed.Get("dims").As<Napi::Array>();
  for (uint32_t i = 0; i < dims.Length(); i++) out.dims.push_back(dims.Get(i).As<Napi::Number>().Int64Value());
  out.host = feed.Has("host") && feed.Get("host").ToBoolean().Value();
  return out;
}

Napi::Value Session::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Native(env);
  Napi::Object request = info[0].As<Napi::Object>();
  native::StepRequest step;
  AsJsError(env, [&] {
    Napi::Array feeds = request.Get("feeds").As<Napi::Array>();
    for (uint32_t i = 0; i < feeds.Length(); i++) step.feeds.push_back(Feed(feeds.Get(i).As<Napi::Object>()));
  });
  step.logitsName = request.Get("logitsName").As<Napi::String>().Utf8Value();
  Napi::Float32Array logits = request.Get("logits").As<Napi::Float32Array>();
  step.logits = logits.Data();
  step.logitsCapacity = logits.ElementLength();
  step.logitsRows = Integer(request, "logitsRows");
  step.vocab = Integer(request, "vocab");
  step.firstRow = Integer(request, "firstRow");
  step.batch = Integer(request, "batch");
  step.fixed = request.Has("fixed") && request.Get("fixed").ToBoolean().Value();
  auto* worker = new RunWorker(env, this, request, std::move(step));
  Napi::Promise promise = worker->Promise();
  busy_ = true;
  worker->Queue();
  return promise;
}

RunWorker::RunWorker(Napi::Env env, Session* owner, Napi::Object request, native::StepRequest step)
    : Napi::AsyncWorker(env), owner_(owner), deferred_(Napi::Promise::Deferred::New(env)), step_(std::move(step)) {
  request_.Reset(request, 1);
  session_.Reset(owner->Value(), 1);
}

void RunWorker::Execute() {
  try {
    owner_->Raw()->Run(step_);
  } catch (const std::exception& error) {
    SetError(error.what());
  }
}

void RunWorker::OnOK() {
  owner_->Done();
  deferred_.Resolve(Env().Undefined());
}

void RunWorker::OnError(const Napi::Error& error) {
  owner_->Done();
  deferred_.Reject(error.Value());
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeSession", Session::Define(env));
  exports.Set("ortApiVersion", Napi::Number::New(env, ORT_API_VERSION));
  return exports;
}

NODE_API_MODULE(native_session, Init)
