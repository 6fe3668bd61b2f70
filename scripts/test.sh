#!/usr/bin/env bash
# The whole test suite, with the quality gates: clang-format, a -Dwerror=true build, every
# test once on the optimised build (the integration tests with the daemon under valgrind) and
# once more under AddressSanitizer + UndefinedBehaviorSanitizer. README.md ("Tests") lists what
# each pass covers. Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/deps.sh || { echo "deps: cannot install the build dependencies" >&2; exit 1; }

passed=0
failed=0
# Tests at a time. The integration tests mostly wait (on fakes, back-offs, timeouts), so they
# run more of them than there are cores (measured on 2 cores: the plain pass from 6.4 to 2.0 min
# at 6; the valgrind pass from 6.1 to 4.3 min at 6, with other work on the machine).
jobs=${YTBRIDGE_TEST_JOBS:-6}
valgrind_jobs=${YTBRIDGE_VALGRIND_JOBS:-6}
valgrind="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"

mark=$SECONDS
took() { # took NAME: prints the time since the last call, for the per-pass timings
  echo "== $1: $((SECONDS - mark)) s"
  mark=$SECONDS
}

count() { # count BUILD_DIR: adds the results of the last `meson test` run there
  # (testlog.json, or testlog-WRAPPER.json for a run with --wrap: the newest one)
  local log p f
  log=$(ls -t "$1"/meson-logs/testlog*.json 2>/dev/null | head -n 1)
  if [ -z "$log" ] || [ ! -s "$log" ]; then
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

build() { # build NAME BUILD_DIR MESON_OPTIONS...: 0 when built
  local name="$1" dir="$2"
  shift 2
  echo "== $name build"
  rm -rf "$dir"
  if ! meson setup "$dir" "$@" >"$dir.build.log" 2>&1 || ! ninja -C "$dir" >>"$dir.build.log" 2>&1; then
    cat "$dir.build.log" >&2
    echo "$name: build failed" >&2
    failed=$((failed + 1))
    return 1
  fi
  took "$name build"
}

tests() { # tests NAME BUILD_DIR MESON_TEST_OPTIONS...
  local name="$1" dir="$2"
  shift 2
  echo "== $name tests"
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "$@" || true
  count "$dir"
  took "$name tests"
}

# The optimised build: unit, fuzz-corpus, contrib and fake self-tests as they are, then the
# fuzz corpora and the integration tests under valgrind (memcheck: uninitialised reads, which
# the sanitizer pass cannot see, leaks and heap errors in the -O2 binary). One-shot polls
# (--once) run without valgrind: they are 355 of the suite's 504 daemon starts and valgrind
# costs 2.2 s of CPU on each (measured: 1.3 s of it is valgrind's own start-up), 13 of the pass's
# 19.5 CPU minutes; their code (configuration, state, poll, diff, commit, render) runs under
# valgrind in the long-running daemons of the same tests and in the fuzz corpora.
if build plain "$top/build-test" -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=none; then
  tests plain "$top/build-test" --no-suite integration
  jobs=$valgrind_jobs tests "valgrind fuzz corpora" "$top/build-test" --suite fuzz --wrap "$valgrind" \
    --timeout-multiplier 3
  YTBRIDGE_WRAPPER="$valgrind" YTBRIDGE_WRAPPER_ONCE="" YTBRIDGE_TIME_SCALE=10 \
    jobs=$valgrind_jobs tests "valgrind integration" "$top/build-test" --suite integration \
    --timeout-multiplier 3
fi

if build sanitizers "$top/build-asan" -Dwerror=true -Dbuildtype=debug \
  -Db_sanitize=address,undefined -Db_lundef=false; then
  tests sanitizers "$top/build-asan"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
