// Loading libnccl.so.2 with dlopen and resolving the functions of nccl_abi.h. The handle is
// kept for the life of the process (NCCL must not be unloaded under a live communicator).
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "nccl_abi.h"

namespace moekit::comm::nccl {

namespace {

constexpr const char* kLibrary = "libnccl.so.2";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// pip's nvidia-nccl-cu* wheels under the usual Python prefixes, in order.
std::vector<std::string> wheelCandidates() {
  std::vector<std::string> prefixes = {env("VIRTUAL_ENV"), env("CONDA_PREFIX")};
  if (!env("HOME").empty()) prefixes.push_back(env("HOME") + "/.local");
  prefixes.push_back("/usr/local");
  prefixes.push_back("/usr");
  std::vector<std::string> found;
  for (const std::string& prefix : prefixes) {
    if (prefix.empty()) continue;
    for (const char* packages : {"site-packages", "dist-packages"}) {
      const std::string pattern = prefix + "/lib/python3*/" + packages + "/nvidia/nccl/lib/" + kLibrary;
      glob_t matches;
      if (glob(pattern.c_str(), 0, nullptr, &matches) == 0) {
        for (size_t i = 0; i < matches.gl_pathc; ++i) found.push_back(matches.gl_pathv[i]);
      }
      globfree(&matches);
    }
  }
  return found;
}

// dlopen of the first candidate that loads; `tried` collects each failure for the message.
void* open(std::string* path, std::string* tried) {
  std::vector<std::string> candidates;
  const std::string configured = env("MOEKIT_NCCL_PATH");
  if (!configured.empty()) {
    struct stat info;
    const bool isFolder = stat(configured.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
    candidates.push_back(isFolder ? configured + "/" + kLibrary : configured);
  }
  candidates.push_back(kLibrary);
  for (const std::string& wheel : wheelCandidates()) candidates.push_back(wheel);
  for (const std::string& candidate : candidates) {
    dlerror();
    if (void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      *path = candidate;
      return handle;
    }
    const char* why = dlerror();
    *tried += "\n  " + candidate + ": " + (why ? why : "not loadable");
  }
  return nullptr;
}

template <class Fn>
void resolve(void* handle, const std::string& path, const char* name, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) {
    throw Error(ErrorKind::Comm, std::string("backend 'nccl': ") + path + " has no " + name +
                                     " (moekit needs NCCL 2.10 or newer)");
  }
}

std::unique_ptr<Library> load() {
  auto lib = std::make_unique<Library>();
  std::string tried;
  void* handle = open(&lib->path, &tried);
  if (handle == nullptr) {
    throw Error(ErrorKind::Comm, std::string("backend 'nccl': ") + kLibrary + " could not be loaded; tried (MOEKIT_NCCL_PATH, the "
                                 "default loader path, pip's nvidia/nccl/lib):" + tried +
                                 "\nInstall NCCL 2.10 or newer (e.g. pip install nvidia-nccl-cu12) or set "
                                 "MOEKIT_NCCL_PATH to libnccl.so.2 or its folder");
  }
  const std::string& path = lib->path;
  resolve(handle, path, "ncclGetVersion", &lib->getVersion);
  resolve(handle, path, "ncclGetUniqueId", &lib->getUniqueId);
  resolve(handle, path, "ncclCommInitRank", &lib->commInitRank);
  resolve(handle, path, "ncclAllReduce", &lib->allReduce);
  resolve(handle, path, "ncclAllGather", &lib->allGather);
  resolve(handle, path, "ncclReduceScatter", &lib->reduceScatter);
  resolve(handle, path, "ncclBroadcast", &lib->broadcast);
  resolve(handle, path, "ncclSend", &lib->send);
  resolve(handle, path, "ncclRecv", &lib->recv);
  resolve(handle, path, "ncclGroupStart", &lib->groupStart);
  resolve(handle, path, "ncclGroupEnd", &lib->groupEnd);
  resolve(handle, path, "ncclCommDestroy", &lib->commDestroy);
  resolve(handle, path, "ncclCommAbort", &lib->commAbort);
  resolve(handle, path, "ncclCommGetAsyncError", &lib->commGetAsyncError);
  resolve(handle, path, "ncclGetErrorString", &lib->getErrorString);
  lib->commSplit = reinterpret_cast<decltype(lib->commSplit)>(dlsym(handle, "ncclCommSplit"));
  if (lib->getVersion(&lib->version) != Success || lib->version < kMinVersion) {
    throw Error(ErrorKind::Comm, "backend 'nccl': " + path + " reports version code " + std::to_string(lib->version) +
                                     "; moekit needs NCCL 2.10 or newer (code ≥ " + std::to_string(kMinVersion) + ")");
  }
  return lib;
}

}  // namespace

const Library& library() {
  static std::mutex mutex;
  static std::unique_ptr<Library> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (!loaded) loaded = load();
  return *loaded;
}

std::string describe(const Library& lib, Result result) {
  static constexpr const char* kNames[] = {"ncclSuccess",         "ncclUnhandledCudaError", "ncclSystemError",
                                           "ncclInternalError",   "ncclInvalidArgument",    "ncclInvalidUsage",
                                           "ncclRemoteError",     "ncclInProgress"};
  const std::string name = result >= 0 && result <= InProgress ? kNames[result] : "ncclResult " + std::to_string(int(result));
  const char* text = lib.getErrorString ? lib.getErrorString(result) : nullptr;
  return text ? name + ": " + text : name;
}

}  // namespace moekit::comm::nccl
