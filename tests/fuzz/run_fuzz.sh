#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan, the whole core instrumented) and fuzzes
# it for a bounded time.
#
#   tests/fuzz/run_fuzz.sh [SECONDS] [extra libFuzzer flags...]   # decoder, default 120 s
#   tests/fuzz/run_fuzz.sh --roundtrip [SECONDS] [flags...]       # encode -> decode bit-exact
#   tests/fuzz/run_fuzz.sh --merge                                # minimise the decoder corpus
#                                                                 # into build/fuzz/merged/
# The decoder target (fuzz_decode.cpp) is seeded with valid chunks from make_seeds.py and the
# committed corpus tests/fuzz/corpus/. Work files live in build/fuzz/: corpus/ (inputs found),
# artifacts/ (crashes, timeouts). Found bugs go to tests/fuzz/regressions/ (see README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${TPDE_FUZZ_BUILD:-$ROOT/build/fuzz}
PYTHON=${PYTHON:-python3}

find_clang() {
  if [[ -n "${CXX:-}" ]] && "$CXX" --version 2>/dev/null | grep -q clang; then echo "$CXX"; return; fi
  for c in clang++ clang++-{20,19,18,17,16,15,14,13}; do
    if command -v "$c" >/dev/null; then echo "$c"; return; fi
  done
  echo "run_fuzz.sh: clang++ not found (apt-get install -y clang)" >&2
  exit 1
}

CXX_BIN=$(find_clang)
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S "$ROOT" -B "$BUILD" -DTPDE_FUZZ=ON -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="$SAN" >/dev/null
COMMON=(-timeout=10 -rss_limit_mb=2048 -max_len=4096)

if [[ "${1:-}" == "--roundtrip" ]]; then
  shift
  cmake --build "$BUILD" --target tpde_core -j "$JOBS" >/dev/null
  "$CXX_BIN" -std=c++17 -O2 $SAN -fsanitize=fuzzer -I"$ROOT/cpp/include" \
    "$ROOT/tests/fuzz/fuzz_roundtrip.cpp" "$BUILD/libtpde_core.a" -o "$BUILD/tpde_fuzz_roundtrip"
  mkdir -p "$BUILD/corpus_roundtrip" "$BUILD/artifacts"
  SECONDS_TO_RUN=${1:-120}
  shift || true
  exec "$BUILD/tpde_fuzz_roundtrip" "${COMMON[@]}" "-artifact_prefix=$BUILD/artifacts/" \
    -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 "$@" "$BUILD/corpus_roundtrip"
fi

cmake --build "$BUILD" --target tpde_fuzz_decode -j "$JOBS" >/dev/null
FUZZER="$BUILD/tpde_fuzz_decode"
mkdir -p "$BUILD/corpus" "$BUILD/artifacts" "$BUILD/seeds"
"$PYTHON" "$ROOT/tests/fuzz/make_seeds.py" "$BUILD/seeds"
COMMON+=("-artifact_prefix=$BUILD/artifacts/")

if [[ "${1:-}" == "--merge" ]]; then
  rm -rf "$BUILD/merged" && mkdir -p "$BUILD/merged"
  "$FUZZER" -merge=1 "${COMMON[@]}" "$BUILD/merged" "$ROOT/tests/fuzz/corpus" "$BUILD/seeds" "$BUILD/corpus"
  echo "merged corpus: $(ls "$BUILD/merged" | wc -l) files, $(du -sk "$BUILD/merged" | cut -f1) KiB in $BUILD/merged"
  exit 0
fi

SECONDS_TO_RUN=${1:-120}
shift || true
exec "$FUZZER" "${COMMON[@]}" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 "$@" \
  "$BUILD/corpus" "$ROOT/tests/fuzz/corpus" "$BUILD/seeds"
