#!/usr/bin/env bash
# Sanitizer run (issue #9): builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option MOEKIT_SANITIZE: gcc, CPU only, in build-asan/) and runs jest suites against that
# binary (MOEKIT_ADDON_PATH, see lib/native.ts) with libasan preloaded into node. The first
# sanitizer report aborts the process (halt_on_error, -fno-sanitize-recover), which fails the suite.
#
#   bash scripts/sanitize.sh [jest test paths…]     default: the golden suite, the API fuzzer and
#                                                    the DESIGN §4 suites (re-entrant arguments,
#                                                    worker shutdown, non-finite input, state dicts,
#                                                    safetensors, tensors)
#
# Writes reports/sanitize-build.log and reports/jest-sanitize.json; exits non-zero when the build or
# a test fails. Leak detection is off: node itself keeps allocations alive until exit.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p reports

tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(test/golden-layer.test.ts test/fuzz-api.test.ts test/reentrancy.test.ts test/worker-shutdown.test.ts
  test/non-finite-input.test.ts test/layer-errors.test.ts test/checkpoint.test.ts test/safetensors.test.ts test/tensor.test.ts)

if ! npx cmake-js compile --out build-asan --CDMOEKIT_SANITIZE=ON > reports/sanitize-build.log 2>&1; then
  tail -n 40 reports/sanitize-build.log
  echo "sanitize: the ASan/UBSan build failed (reports/sanitize-build.log)"
  exit 2
fi

libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
  echo "sanitize: libasan.so not found (gcc -print-file-name=libasan.so gave $libasan)"
  exit 2
fi

# --runInBand: one process under ASan is enough (and halves the memory); child processes the
# suites spawn inherit the environment, so the fuzzer's child runs sanitized too.
MOEKIT_ADDON_PATH="$PWD/build-asan/Release/moekit.node" \
LD_PRELOAD="$libasan" \
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86" \
  npx jest --runInBand --selectProjects cpu --json --outputFile=reports/jest-sanitize.json -- "${tests[@]}"
