// Reading a node's attributes at kernel creation. The C API reads an attribute as one given type and fails alike
// when it is absent and when it has another type; asking for every type tells the two apart, so that an
// attribute of the wrong type is an error instead of silently "absent, use the default". (No C API lists a
// node's attributes, so an unknown attribute name cannot be detected here.)
#pragma once
#include <string>

#include "custom-ops/ort_api.h"

namespace gdn {
namespace custom_ops {

// Reads attributes of one node; the first problem is kept in `error` (later reads are then skipped).
// An absent attribute leaves the caller's default in place.
struct AttrReader {
  const OrtKernelInfo* info;
  const char* op;
  std::string node;
  std::string error;

  void read(const char* name, float* v);
  void read(const char* name, int64_t* v);
  void read(const char* name, std::string* v);
  // The contract's value check, reported at this node.
  void check(const std::string& contract_error);

 private:
  // Absent: false. Present with another type than `want`: true and `error` set.
  bool wrong_type(const char* name, AttrType want);
};

}  // namespace custom_ops
}  // namespace gdn
