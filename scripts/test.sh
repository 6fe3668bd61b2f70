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
  echo "== $name tests"
  meson test -C "$dir" --print-errorlogs --num-processes 2 || true
  count "$dir"
}

run_suite plain "$top/build-test" -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=none
if [ -f "$top/build-test/build.ninja" ]; then
  echo "== valgrind (integration tests)"
  YTBRIDGE_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
  YTBRIDGE_TIME_SCALE=10 \
    meson test -C "$top/build-test" --suite integration --print-errorlogs --num-processes 2 \
      --timeout-multiplier 3 || true
  count "$top/build-test"
fi

run_suite sanitizers "$top/build-asan" -Dwerror=true -Dbuildtype=debug \
  -Db_sanitize=address,undefined -Db_lundef=false

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
