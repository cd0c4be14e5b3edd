// AttrReader (attributes.h): typed attribute reads that tell "absent" from "of another type".
#include "custom-ops/attributes.h"

namespace gdn {
namespace custom_ops {
namespace {

// The type the node's attribute `name` has, or nullptr when it is absent.
const char* attr_present_type(const OrtKernelInfo* info, const char* name) {
  int64_t i = 0;
  float f = 0.f;
  size_t n = 0;
  if (ok(g_ort->KernelInfoGetAttribute_int64(info, name, &i))) return attr_type_name(AttrType::kInt);
  if (ok(g_ort->KernelInfoGetAttribute_float(info, name, &f))) return attr_type_name(AttrType::kFloat);
  if (ok(g_ort->KernelInfoGetAttribute_string(info, name, nullptr, &n))) return attr_type_name(AttrType::kString);
  n = 0;
  if (ok(g_ort->KernelInfoGetAttributeArray_int64(info, name, nullptr, &n))) return "a list of ints";
  n = 0;
  if (ok(g_ort->KernelInfoGetAttributeArray_float(info, name, nullptr, &n))) return "a list of floats";
  return nullptr;
}

}  // namespace

bool AttrReader::wrong_type(const char* name, AttrType want) {
  if (!error.empty()) return true;
  const char* got = attr_present_type(info, name);
  if (got != nullptr)
    error = at_node(node, op, std::string("attribute ") + name + " must be " + attr_type_name(want) + ", got " + got);
  return got != nullptr;
}

void AttrReader::read(const char* name, float* v) {
  if (error.empty() && !ok(g_ort->KernelInfoGetAttribute_float(info, name, v))) wrong_type(name, AttrType::kFloat);
}

void AttrReader::read(const char* name, int64_t* v) {
  if (error.empty() && !ok(g_ort->KernelInfoGetAttribute_int64(info, name, v))) wrong_type(name, AttrType::kInt);
}

void AttrReader::read(const char* name, std::string* v) {
  if (!error.empty()) return;
  size_t size = 0;
  if (!ok(g_ort->KernelInfoGetAttribute_string(info, name, nullptr, &size))) {
    wrong_type(name, AttrType::kString);
    return;
  }
  std::string out(size, '\0');
  if (!ok(g_ort->KernelInfoGetAttribute_string(info, name, &out[0], &size))) return;
  while (!out.empty() && out.back() == '\0') out.pop_back();
  *v = out;
}

void AttrReader::check(const std::string& contract_error) {
  if (error.empty() && !contract_error.empty()) error = at_node(node, op, contract_error);
}

}  // namespace custom_ops
}  // namespace gdn
