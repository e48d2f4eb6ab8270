// The emulator's test harness: cases registered by name, run one per process (`--run NAME`, so a
// crash or an abort belongs to one case) and reported as "PASS NAME" or "FAIL NAME: reason".
// Kernel files (*.cu) are compiled by g++ with -include emu/emu.h, exactly like native/cuda.
#pragma once

#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "emu/launch.h"

namespace emutest {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using CaseFn = void (*)();
int registerCase(const char* name, CaseFn fn);

#define EMU_CONCAT2(a, b) a##b
#define EMU_CONCAT(a, b) EMU_CONCAT2(a, b)
#define EMU_CASE_IMPL(name, fn)                                  \
  static void fn();                                              \
  static const int EMU_CONCAT(fn, _registered) = ::emutest::registerCase(name, &fn); \
  static void fn()
// EMU_CASE("behaviour the case pins") { ...body... }
#define EMU_CASE(name) EMU_CASE_IMPL(name, EMU_CONCAT(emuCase_, __LINE__))

#define EMU_EXPECT(cond, what)                                                                   \
  do {                                                                                           \
    if (!(cond)) throw ::emutest::Failure(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                          ": " + std::string(what) + " [" #cond "]");            \
  } while (0)

// Aborts the case when a CUDA call fails.
void check(cudaError_t err, const char* what);
#define EMU_CUDA(call) ::emutest::check((call), #call)

// Runs fn and returns the KernelFault message it must throw (fails the case if it throws none).
template <class F>
std::string expectFault(F&& fn) {
  try {
    fn();
  } catch (const moekit::emu::KernelFault& fault) {
    std::fprintf(stderr, "reported: %s\n", fault.what());
    return fault.what();
  }
  throw Failure("expected the emulator to report a kernel fault, but the launch completed");
}

void expectContains(const std::string& text, const std::vector<std::string>& parts);

// Runs fn in a child process (for faults that abort); returns (terminating signal or −1, what it
// wrote to stderr).
template <class F>
std::pair<int, std::string> inChild(F&& fn) {
  int pipeFds[2];
  if (pipe(pipeFds) != 0) throw Failure("pipe failed");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipeFds[1], STDERR_FILENO);
    close(pipeFds[0]);
    fn();
    _exit(0);
  }
  close(pipeFds[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = read(pipeFds[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
  close(pipeFds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFSIGNALED(status) ? WTERMSIG(status) : -1, err};
}

// A device allocation of n elements, freed at scope exit.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { check(cudaMalloc(&p_, n * sizeof(T)), "cudaMalloc"); }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    check(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    check(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return host;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

}  // namespace emutest
