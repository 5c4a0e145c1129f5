// Library entry points (CreateEpFactories / ReleaseEpFactory) and the OrtEpFactory: offers the EP on CPU devices
// and creates one SparsecEp per session with that session's EP options.
#include <new>
#include <string>

#include "ep.h"
#include "ort_util.h"

namespace sparsec {
namespace {

struct SparsecEpFactory : OrtEpFactory {
  SparsecEpFactory() : OrtEpFactory{} {
    ort_version_supported = ORT_API_VERSION;
    GetName = [](const OrtEpFactory*) noexcept { return kEpName; };
    GetVendor = [](const OrtEpFactory*) noexcept { return "sparsec"; };
    GetVendorId = [](const OrtEpFactory*) noexcept -> uint32_t { return 0; };
    GetVersion = [](const OrtEpFactory*) noexcept { return "0.1.0"; };
    GetSupportedDevices = SupportedDevices;
    CreateEp = Create;
    ReleaseEp = [](OrtEpFactory*, OrtEp* ep) noexcept { delete static_cast<SparsecEp*>(ep); };
    // Models are EPContext models already; the EP never writes compiled models, so compatibility is moot.
    ValidateCompiledModelCompatibilityInfo = [](OrtEpFactory*, const OrtHardwareDevice* const*, size_t, const char*,
                                                OrtCompiledModelCompatibility* c) noexcept -> OrtStatus* {
      *c = OrtCompiledModelCompatibility_EP_NOT_APPLICABLE;
      return nullptr;
    };
    // Host memory only: ORT's default CPU allocator, no data transfer, no streams.
    CreateAllocator = [](OrtEpFactory*, const OrtMemoryInfo*, const OrtKeyValuePairs*,
                         OrtAllocator** a) noexcept -> OrtStatus* {
      *a = nullptr;
      return nullptr;
    };
    ReleaseAllocator = [](OrtEpFactory*, OrtAllocator*) noexcept {};
    CreateDataTransfer = [](OrtEpFactory*, OrtDataTransferImpl** dt) noexcept -> OrtStatus* {
      *dt = nullptr;
      return nullptr;
    };
    IsStreamAware = [](const OrtEpFactory*) noexcept { return false; };
    CreateSyncStreamForDevice = [](OrtEpFactory*, const OrtMemoryDevice*, const OrtKeyValuePairs*,
                                   OrtSyncStreamImpl** s) noexcept -> OrtStatus* {
      *s = nullptr;
      return nullptr;
    };
  }

  static OrtStatus* ORT_API_CALL SupportedDevices(OrtEpFactory* self, const OrtHardwareDevice* const* devices,
                                                  size_t num_devices, OrtEpDevice** out, size_t max_out,
                                                  size_t* num_out) noexcept {
    *num_out = 0;
    for (size_t i = 0; i < num_devices && *num_out < max_out; ++i) {
      if (g_api->HardwareDevice_Type(devices[i]) != OrtHardwareDeviceType_CPU) continue;
      OrtEpDevice* d = nullptr;
      SPARSEC_RETURN_IF_ERROR(g_ep_api->CreateEpDevice(self, devices[i], nullptr, nullptr, &d));
      out[(*num_out)++] = d;
    }
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL Create(OrtEpFactory*, const OrtHardwareDevice* const*, const OrtKeyValuePairs* const*,
                                        size_t, const OrtSessionOptions* session_options, const OrtLogger* logger,
                                        OrtEp** ep) noexcept {
    *ep = nullptr;
    EpOptions options;
    SPARSEC_RETURN_IF_ERROR(ReadEpOptions(session_options, &options));
    // kernel_library is checked when a sparsec node is compiled, not here: an artifact whose layers all stayed
    // dense has no kernel library, and its session must still open with the EP registered.
    SparsecEp* created = new (std::nothrow) SparsecEp(std::move(options), logger);
    if (!created) return MakeStatus(ORT_FAIL, "out of memory creating the EP");
    *ep = created;
    return nullptr;
  }
};

}  // namespace
}  // namespace sparsec

#define SPARSEC_EXPORT extern "C" __attribute__((visibility("default")))

SPARSEC_EXPORT OrtStatus* CreateEpFactories(const char* /*registered_name*/, const OrtApiBase* api_base,
                                            const OrtLogger* /*default_logger*/, OrtEpFactory** factories,
                                            size_t max_factories, size_t* num_factories) {
  // The headers' API version must be supported by the runtime (ORT is backward compatible, not forward).
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) return nullptr;  // cannot even create a status without an API table; ORT reports "no factories"
  sparsec::g_api = api;
  sparsec::g_ep_api = api->GetEpApi();
  *num_factories = 0;
  if (max_factories < 1) return sparsec::MakeStatus(ORT_INVALID_ARGUMENT, "no room for the EP factory");
  factories[0] = new (std::nothrow) sparsec::SparsecEpFactory();
  if (!factories[0]) return sparsec::MakeStatus(ORT_FAIL, "out of memory creating the EP factory");
  *num_factories = 1;
  return nullptr;
}

SPARSEC_EXPORT OrtStatus* ReleaseEpFactory(OrtEpFactory* factory) {
  delete static_cast<sparsec::SparsecEpFactory*>(factory);
  return nullptr;
}
