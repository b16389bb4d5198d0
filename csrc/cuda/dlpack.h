// The DLPack C ABI (https://dmlc.github.io/dlpack/latest/c_api.html), unversioned
// form: the structs a "dltensor" PyCapsule carries between array libraries. Written
// from the public specification; only the members and enumerators dlkern uses are
// named, but the struct layouts are the specification's, member for member.
#pragma once
#include <cstdint>

extern "C" {

typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLCUDAManaged = 13,
} DLDeviceType;

typedef struct {
  int32_t device_type;  // a DLDeviceType (an enum in the spec, int32-sized in practice)
  int32_t device_id;
} DLDevice;

typedef enum {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLBfloat = 4,
  kDLBool = 6,
} DLDataTypeCode;

typedef struct {
  uint8_t code;   // a DLDataTypeCode
  uint8_t bits;   // 32 for float32
  uint16_t lanes; // 1 for scalars
} DLDataType;

typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL means compact row-major
  uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

}  // extern "C"
