#!/usr/bin/env bash
# Builds every fuzz target and runs each for DURATION (docs/fuzzing.md):
#   fuzz/run.sh 20s            # the CI smoke run
#   fuzz/run.sh 30m            # a longer local run (30 minutes a target)
#   fuzz/run.sh 2h edge path   # only some targets
# Stable with RUSTC_BOOTSTRAP=1, else (or with NIDAN_FUZZ_TOOLCHAIN=nightly) rustup's nightly. A target that does not
# build, or that finds a crash, makes the script fail (after the others ran); crash inputs
# land in fuzz/artifacts/<target>/.
# Environment: NIDAN_FUZZ_TARGET_DIR (the build, default fuzz/target), NIDAN_FUZZ_CORPUS
# (libFuzzer's growing corpus, default fuzz/corpus), NIDAN_FUZZ_JOBS (parallel runs of one
# target, default 1), NIDAN_FUZZ_TOOLCHAIN=nightly (build with rustup's nightly).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD/fuzz

usage="usage: fuzz/run.sh DURATION [TARGET...]   (DURATION: 20s, 30m, 2h)"
dur=${1:?$usage}
shift
case "$dur" in
  *[0-9]s) secs=${dur%s} ;;
  *[0-9]m) secs=$(( ${dur%m} * 60 )) ;;
  *[0-9]h) secs=$(( ${dur%h} * 3600 )) ;;
  *[0-9]) secs=$dur ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install --locked cargo-fuzz)" >&2
  exit 1
fi
# The stable toolchain with RUSTC_BOOTSTRAP=1 first (libFuzzer's instrumentation needs
# unstable flags; this is the build measured in docs/fuzzing.md, and rustup's nightly, where
# there is one, may be older than stable); nightly where it is asked for, or where stable
# cannot build the targets.
toolchain="${NIDAN_FUZZ_TOOLCHAIN:-stable}"
use_toolchain() {
  if [ "$1" = nightly ]; then
    unset RUSTC_BOOTSTRAP
    fuzz=(cargo +nightly fuzz)
  else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
  fi
}
use_toolchain "$toolchain"
export CARGO_TARGET_DIR="${NIDAN_FUZZ_TARGET_DIR:-$here/target}"
corpus="${NIDAN_FUZZ_CORPUS:-$here/corpus}"
jobs="${NIDAN_FUZZ_JOBS:-1}"
# nidan forbids unsafe code: AddressSanitizer would only slow the runs; coverage
# instrumentation and debug assertions (overflow checks) stay on.
opts=(--fuzz-dir fuzz --sanitizer none --debug-assertions)
parallel=()
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
fi

start=$(date +%s)
if ! "${fuzz[@]}" build "${opts[@]}"; then
  if [ "$toolchain" != nightly ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz/run.sh: the fuzz targets do not build on stable; trying nightly" >&2
    use_toolchain nightly
    toolchain=nightly
  fi
  if [ "$toolchain" != nightly ] || ! "${fuzz[@]}" build "${opts[@]}"; then
    echo "fuzz/run.sh: the fuzz targets do not build (see above)" >&2
    exit 1
  fi
fi
echo "fuzz/run.sh: built ${#targets[@]} targets in $(( $(date +%s) - start )) s"

failed=()
for t in "${targets[@]}"; do
  art="$here/artifacts/$t"
  mkdir -p "$corpus/$t" "$art"
  seeds=()
  [ -d "$here/seeds/$t" ] && seeds=("$here/seeds/$t")
  t0=$(date +%s)
  if "${fuzz[@]}" run "${opts[@]}" "$t" "$corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -dict="$here/http.dict" -max_len=8192 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "${parallel[@]}" \
      2>"$art/log"; then
    echo "fuzz/run.sh: $t: ok, $(( $(date +%s) - t0 )) s, $(grep -c . <(ls "$corpus/$t")) inputs in its corpus"
  else
    echo "fuzz/run.sh: $t: FAILED (fuzz/artifacts/$t/log):" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|Base64' "$art/log" | head -n 20 >&2 || true
    failed+=("$t")
  fi
done
echo "fuzz/run.sh: ${#targets[@]} targets, $(( $(date +%s) - start )) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
