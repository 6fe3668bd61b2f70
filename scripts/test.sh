#!/usr/bin/env bash
# The whole test suite, with the quality gates: clang-format, a -Dwerror=true build, every
# test once plain and once under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# integration tests once more with the daemon under valgrind.
# Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/deps.sh || { echo "deps: cannot install the build dependencies" >&2; exit 1; }

passed=0
failed=0
# Tests at a time. The integration tests mostly wait (on fakes, back-offs, timeouts), so the
# plain and sanitizer passes run more of them than there are cores (measured on 2 cores: the
# plain pass from 6.4 to 2.0 min at 6). The valgrind pass is CPU-bound (valgrind itself):
# beyond 3 it only stretches the timing of every test, so it stays near the core count.
jobs=${YTBRIDGE_TEST_JOBS:-6}
valgrind_jobs=${YTBRIDGE_VALGRIND_JOBS:-3}

mark=$SECONDS
took() { # took NAME: prints the time since the last call, for the per-pass timings
  echo "== $1: $((SECONDS - mark)) s"
  mark=$SECONDS
}

count() { # count BUILD_DIR: adds the results of the last `meson test` run there
  local log="$1/meson-logs/testlog.json" p f
  if [ ! -s "$log" ]; then
    echo "no test results in $1" >&2
    failed=$((failed + 1))
    return
  fi
  p=$(grep -c '"result": "OK"' "$log" || true)
  f=$(grep -vc '"result": "OK"' "$log" || true)
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== clang-format"
mapfile -t sources < <(find bridge tests -name '*.[ch]' | sort)
if clang-format --dry-run --Werror "${sources[@]}"; then
  passed=$((passed + 1))
else
  echo "clang-format: the files above differ from .clang-format (run clang-format -i)" >&2
  failed=$((failed + 1))
fi
took clang-format

run_suite() { # run_suite NAME BUILD_DIR MESON_OPTIONS...
  local name="$1" dir="$2"
  shift 2
  echo "== $name build"
  rm -rf "$dir"
  if ! meson setup "$dir" "$@" >"$dir.build.log" 2>&1 || ! ninja -C "$dir" >>"$dir.build.log" 2>&1; then
    cat "$dir.build.log" >&2
    echo "$name: build failed" >&2
    failed=$((failed + 1))
    return
  fi
  took "$name build"
  echo "== $name tests"
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" || true
  count "$dir"
  took "$name tests"
}

run_suite plain "$top/build-test" -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=none
if [ -f "$top/build-test/build.ninja" ]; then
  echo "== valgrind (integration tests)"
  YTBRIDGE_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
  YTBRIDGE_TIME_SCALE=10 \
    meson test -C "$top/build-test" --suite integration --print-errorlogs \
      --num-processes "$valgrind_jobs" \
      --timeout-multiplier 3 || true
  count "$top/build-test"
  took "valgrind tests"
fi

run_suite sanitizers "$top/build-asan" -Dwerror=true -Dbuildtype=debug \
  -Db_sanitize=address,undefined -Db_lundef=false

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
