#include "worker.h"

namespace gdn {

const char* OrtErrorCodeName(OrtErrorCode code) {
  switch (code) {
    case ORT_OK: return "ORT_OK";
    case ORT_FAIL: return "ORT_FAIL";
    case ORT_INVALID_ARGUMENT: return "ORT_INVALID_ARGUMENT";
    case ORT_NO_SUCHFILE: return "ORT_NO_SUCHFILE";
    case ORT_NO_MODEL: return "ORT_NO_MODEL";
    case ORT_ENGINE_ERROR: return "ORT_ENGINE_ERROR";
    case ORT_RUNTIME_EXCEPTION: return "ORT_RUNTIME_EXCEPTION";
    case ORT_INVALID_PROTOBUF: return "ORT_INVALID_PROTOBUF";
    case ORT_MODEL_LOADED: return "ORT_MODEL_LOADED";
    case ORT_NOT_IMPLEMENTED: return "ORT_NOT_IMPLEMENTED";
    case ORT_INVALID_GRAPH: return "ORT_INVALID_GRAPH";
    case ORT_EP_FAIL: return "ORT_EP_FAIL";
    default: return "ORT_FAIL";
  }
}

void PromiseWorker::Execute() {
  try {
    Work();
  } catch (const Ort::Exception& e) {
    failed_ = true;
    message_ = e.what();
    ort_code_ = OrtErrorCodeName(e.GetOrtErrorCode());
  } catch (const std::exception& e) {
    failed_ = true;
    message_ = e.what();
  } catch (...) {
    failed_ = true;
    message_ = "unknown native error";
  }
}

// OnOK and OnError run on the JS thread, also while a worker_thread's environment is being torn down (Node
// completes in-flight work before freeing the environment, but JS can no longer run: every napi call that would
// run JS fails). Nothing may escape them: node-addon-api would rethrow into JS, fail again, and abort the process.
// When the environment is going away the result is dropped; the work itself has finished, so nothing is in use.
void PromiseWorker::OnOK() {
  try {
    Settle(Env());
  } catch (...) {
    DropResult();
  }
}

void PromiseWorker::OnError(const Napi::Error&) {
  // Execute() never calls SetError, so this only runs if node-addon-api reports a failure of its own.
  failed_ = true;
  if (message_.empty()) message_ = "the native run failed";
  OnOK();
}

void PromiseWorker::Settle(Napi::Env env) {
  Napi::HandleScope scope(env);
  if (!failed_) {
    try {
      deferred_.Resolve(Result(env));
      return;
    } catch (const Napi::Error& e) {
      message_ = e.Message();  // during teardown the Reject below fails too, and OnOK drops the result
    } catch (const Ort::Exception& e) {
      message_ = e.what();
      ort_code_ = OrtErrorCodeName(e.GetOrtErrorCode());
    } catch (const std::exception& e) {
      message_ = e.what();
    }
  }
  Napi::Error err = Napi::Error::New(env, message_);
  if (ort_code_ != nullptr) err.Set("ortErrorCode", Napi::String::New(env, ort_code_));
  deferred_.Reject(err.Value());
}

void PromiseWorker::DropResult() {
  // A live environment with a pending exception from a failed settle: clear it so it cannot surface elsewhere.
  napi_value ignored;
  bool pending = false;
  if (napi_is_exception_pending(Env(), &pending) == napi_ok && pending) napi_get_and_clear_last_exception(Env(), &ignored);
}

}  // namespace gdn
