// The slice of the CANN C API that gdn-fuse uses, declared here so that nothing needs CANN's headers to
// build. Values and signatures follow the public CANN documentation (acl/acl_base.h, acl/acl_rt.h,
// aclnn/acl_meta.h and the aclnn op pages of hicann/ops-transformer and ops-nn). Both the device layer
// (which resolves these symbols with dlsym) and the simulator (which exports them) include this file.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

typedef int aclError;       // ACL_SUCCESS or an ACL_ERROR_* code
typedef int32_t aclnnStatus;  // 0 or an ACLNN_ERR_* code
typedef void* aclrtStream;
typedef void* aclrtEvent;
struct aclTensor;
struct aclIntArray;
struct aclScalar;
struct aclOpExecutor;

// aclDataType (acl/acl_base.h)
enum aclDataType {
  ACL_DT_UNDEFINED = -1,
  ACL_FLOAT = 0,
  ACL_FLOAT16 = 1,
  ACL_INT8 = 2,
  ACL_INT32 = 3,
  ACL_UINT8 = 4,
  ACL_INT16 = 6,
  ACL_UINT16 = 7,
  ACL_UINT32 = 8,
  ACL_INT64 = 9,
  ACL_UINT64 = 10,
  ACL_DOUBLE = 11,
  ACL_BOOL = 12,
  ACL_BF16 = 27,
};

// aclFormat (acl/acl_base.h); the ops used here take ND, except aclnnConvolution (NCL for 1-D).
enum aclFormat {
  ACL_FORMAT_UNDEFINED = -1,
  ACL_FORMAT_NCHW = 0,
  ACL_FORMAT_NHWC = 1,
  ACL_FORMAT_ND = 2,
  ACL_FORMAT_NCL = 47,
};

// aclrtMemcpyKind (acl/acl_rt.h)
enum aclrtMemcpyKind {
  ACL_MEMCPY_HOST_TO_HOST = 0,
  ACL_MEMCPY_HOST_TO_DEVICE = 1,
  ACL_MEMCPY_DEVICE_TO_HOST = 2,
  ACL_MEMCPY_DEVICE_TO_DEVICE = 3,
};

// aclrtMemMallocPolicy (acl/acl_rt.h)
enum aclrtMemMallocPolicy { ACL_MEM_MALLOC_HUGE_FIRST = 0, ACL_MEM_MALLOC_HUGE_ONLY = 1, ACL_MEM_MALLOC_NORMAL_ONLY = 2 };

}  // extern "C"

namespace cann {

constexpr aclError kAclSuccess = 0;
constexpr aclError kAclErrorInvalidParam = 100000;     // ACL_ERROR_INVALID_PARAM
constexpr aclError kAclErrorRepeatInitialize = 100002; // ACL_ERROR_REPEAT_INITIALIZE: aclInit called twice (harmless)
constexpr aclError kAclErrorRtParamInvalid = 107000;   // ACL_ERROR_RT_PARAM_INVALID
constexpr aclError kAclErrorRtMemoryAllocation = 207001;  // ACL_ERROR_RT_MEMORY_ALLOCATION
constexpr aclError kAclErrorRtAicoreException = 507015;   // ACL_ERROR_RT_AICORE_EXCEPTION (fault while a task ran)

constexpr aclnnStatus kAclnnSuccess = 0;
constexpr aclnnStatus kAclnnErrParamNullptr = 161001;   // ACLNN_ERR_PARAM_NULLPTR
constexpr aclnnStatus kAclnnErrParamInvalid = 161002;   // ACLNN_ERR_PARAM_INVALID
constexpr aclnnStatus kAclnnErrInnerTiling = 561002;    // ACLNN_ERR_INNER_TILING_ERROR (shape mismatch, chunk op)

// aclnnRecurrentGatedDeltaRule's documented limit: tokens of one sequence in one call.
constexpr int64_t kRecurrentMaxTokens = 8;

}  // namespace cann

// Function pointer types of every CANN function the device layer resolves. X(name, return, params...)
// lists them once; the device table (cann_device.h) and the simulator's exports are generated from it.
#define GDN_CANN_RUNTIME_FUNCTIONS(X)                                                                        \
  X(aclInit, aclError, (const char* configPath))                                                            \
  X(aclrtSetDevice, aclError, (int32_t deviceId))                                                           \
  X(aclrtMalloc, aclError, (void** devPtr, size_t size, aclrtMemMallocPolicy policy))                       \
  X(aclrtFree, aclError, (void* devPtr))                                                                    \
  X(aclrtMemset, aclError, (void* devPtr, size_t maxCount, int32_t value, size_t count))                    \
  X(aclrtMemcpy, aclError, (void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind)) \
  X(aclrtMemcpyAsync, aclError,                                                                             \
    (void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind, aclrtStream stream))   \
  X(aclrtCreateStream, aclError, (aclrtStream * stream))                                                    \
  X(aclrtDestroyStream, aclError, (aclrtStream stream))                                                     \
  X(aclrtSynchronizeStream, aclError, (aclrtStream stream))                                                 \
  X(aclrtCreateEvent, aclError, (aclrtEvent * event))                                                       \
  X(aclrtDestroyEvent, aclError, (aclrtEvent event))                                                        \
  X(aclrtRecordEvent, aclError, (aclrtEvent event, aclrtStream stream))                                     \
  X(aclrtStreamWaitEvent, aclError, (aclrtStream stream, aclrtEvent event))                                 \
  X(aclrtSynchronizeEvent, aclError, (aclrtEvent event))                                                    \
  X(aclGetRecentErrMsg, const char*, ())

#define GDN_CANN_NNOPBASE_FUNCTIONS(X)                                                                      \
  X(aclCreateTensor, aclTensor*,                                                                            \
    (const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t* stride,           \
     int64_t offset, aclFormat format, const int64_t* storageDims, uint64_t storageDimsNum, void* tensorData)) \
  X(aclDestroyTensor, aclnnStatus, (const aclTensor* tensor))                                               \
  X(aclCreateIntArray, aclIntArray*, (const int64_t* value, uint64_t size))                                 \
  X(aclDestroyIntArray, aclnnStatus, (const aclIntArray* array))                                           \
  X(aclCreateScalar, aclScalar*, (void* value, aclDataType dataType))                                       \
  X(aclDestroyScalar, aclnnStatus, (const aclScalar* scalar))

// Every aclnn op has two phases: <op>GetWorkspaceSize(<its arguments>, workspaceSize, executor) checks the
// arguments and plans the work, <op>(workspace, workspaceSize, executor, stream) queues it on the stream.
// GDN_CANN_ACLNN_OPS lists each op once, as OP(X, name, (its arguments)); GDN_CANN_OPAPI_FUNCTIONS(X) makes the
// two X(name, return, params) entries of each (the simulator generates its launch functions from the same list).
#define GDN_CANN_ACLNN_OPS(OP, X)                                                                          \
  OP(X, aclnnCast, (const aclTensor* self, aclDataType dtype, aclTensor* out))                             \
  OP(X, aclnnPermute, (const aclTensor* self, const aclIntArray* dims, aclTensor* out))                    \
  OP(X, aclnnRmsNorm,                                                                                      \
     (const aclTensor* x, const aclTensor* gamma, double epsilon, const aclTensor* yOut,                   \
      const aclTensor* rstdOut))                                                                           \
  OP(X, aclnnChunkGatedDeltaRule,                                                                          \
     (const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* beta,         \
      const aclTensor* initialState, const aclTensor* actualSeqLengths, const aclTensor* gOptional,        \
      float scaleValue, const aclTensor* out, const aclTensor* finalState))                                \
  OP(X, aclnnRecurrentGatedDeltaRule,                                                                      \
     (const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* beta,         \
      aclTensor* stateRef, const aclTensor* actualSeqLengths, const aclTensor* ssmStateIndices,            \
      const aclTensor* g, const aclTensor* gk, const aclTensor* numAcceptedTokens, float scaleValue,       \
      aclTensor* out))                                                                                     \
  /* the layer's primitives (ops-nn / ops-math op pages) */                                                \
  OP(X, aclnnSilu, (const aclTensor* self, aclTensor* out))                                                \
  OP(X, aclnnSigmoid, (const aclTensor* self, aclTensor* out))                                             \
  OP(X, aclnnExp, (const aclTensor* self, aclTensor* out))                                                 \
  OP(X, aclnnNeg, (const aclTensor* self, aclTensor* out))                                                 \
  OP(X, aclnnSoftplus,                                                                                     \
     (const aclTensor* self, const aclScalar* beta, const aclScalar* threshold, aclTensor* out))           \
  OP(X, aclnnMul, (const aclTensor* self, const aclTensor* other, aclTensor* out))                         \
  OP(X, aclnnAdd, (const aclTensor* self, const aclTensor* other, const aclScalar* alpha, aclTensor* out)) \
  OP(X, aclnnMatmul, (const aclTensor* self, const aclTensor* mat2, aclTensor* out, int8_t cubeMathType))  \
  OP(X, aclnnIndexSelect, (const aclTensor* self, int64_t dim, const aclTensor* index, aclTensor* out))    \
  OP(X, aclnnConvolution,                                                                                  \
     (const aclTensor* input, const aclTensor* weight, const aclTensor* bias, const aclIntArray* stride,   \
      const aclIntArray* padding, const aclIntArray* dilation, bool transposed,                            \
      const aclIntArray* outputPadding, const int64_t groups, aclTensor* output, int8_t cubeMathType))

#define GDN_CANN_WITH_EXECUTOR(...) (__VA_ARGS__, uint64_t* workspaceSize, aclOpExecutor** executor)
#define GDN_CANN_OP_PHASES(X, name, params)                                 \
  X(name##GetWorkspaceSize, aclnnStatus, GDN_CANN_WITH_EXECUTOR params)     \
  X(name, aclnnStatus, (void* workspace, uint64_t workspaceSize, aclOpExecutor* executor, aclrtStream stream))
#define GDN_CANN_OPAPI_FUNCTIONS(X) GDN_CANN_ACLNN_OPS(GDN_CANN_OP_PHASES, X)
