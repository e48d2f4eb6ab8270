// The emulator test program: `--list` prints the case names, `--run NAME` runs one case and prints
// "PASS NAME" or "FAIL NAME: reason" (exit 0 / 1). A case that hangs is ended by an alarm and
// reported as a failure, so no case can stall the suite.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>

#include "harness.h"

namespace emutest {
namespace {

std::map<std::string, CaseFn>& cases() {
  static std::map<std::string, CaseFn> all;
  return all;
}

const char* runningCase = "";
constexpr unsigned kCaseSeconds = 30;

void onAlarm(int) {
  char line[512];
  std::snprintf(line, sizeof line, "FAIL %s: still running after %u s (a hang)\n", runningCase, kCaseSeconds);
  const ssize_t ignored = write(STDOUT_FILENO, line, std::strlen(line));
  (void)ignored;
  _exit(1);
}

}  // namespace

int registerCase(const char* name, CaseFn fn) {
  cases()[name] = fn;
  return 0;
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw Failure(std::string(what) + " failed: " + cudaGetErrorString(err));
}

void expectContains(const std::string& text, const std::vector<std::string>& parts) {
  for (const std::string& part : parts) {
    if (text.find(part) == std::string::npos) throw Failure("expected \"" + part + "\" in: " + text);
  }
}

}  // namespace emutest

int main(int argc, char** argv) {
  using namespace emutest;
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& [name, fn] : cases()) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc != 3 || std::strcmp(argv[1], "--run") != 0) {
    std::fprintf(stderr, "usage: %s --list | --run NAME\n", argv[0]);
    return 2;
  }
  const auto it = cases().find(argv[2]);
  if (it == cases().end()) {
    std::printf("FAIL %s: no such case\n", argv[2]);
    return 1;
  }
  runningCase = argv[2];
  signal(SIGALRM, onAlarm);
  alarm(kCaseSeconds);
  try {
    it->second();
  } catch (const std::exception& e) {
    std::printf("FAIL %s: %s\n", argv[2], e.what());
    return 1;
  }
  std::printf("PASS %s\n", argv[2]);
  return 0;
}
