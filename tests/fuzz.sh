#!/usr/bin/env bash
# Fuzzes every parser that reads client input (fuzz/fuzz_targets/*.rs) with cargo fuzz (libFuzzer).
#
#   bash tests/fuzz.sh               # every target for FUZZ_SECONDS (default 15) each, as CI does
#   FUZZ_RELEASE=1 FUZZ_SECONDS=3600 bash tests/fuzz.sh manifest   # one target, optimized, an hour
#
# New inputs go to fuzz/target/corpus/<target> (not committed); the seeds in fuzz/corpus/<target>
# are read too. A crash stops the run with the input saved under fuzz/artifacts/<target>/: turn it
# into a regression test next to the parser, then fix the parser.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! command -v cargo-fuzz >/dev/null; then
  printf '\n==> installing cargo-fuzz (cargo install, about a minute)\n'
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only compiler flags; the one stable toolchain accepts them with this.
# It changes no code generation, only whether the flags are allowed.
export RUSTC_BOOTSTRAP=1
# Instrumented builds must not mix with the workspace's artifacts: keep them in fuzz/target.
unset CARGO_TARGET_DIR

seconds="${FUZZ_SECONDS:-15}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then mapfile -t targets < <(cargo fuzz list); fi

# Our code forbids `unsafe`, so AddressSanitizer would only watch dependencies; without it the
# build is several minutes shorter and each run executes far more inputs. The short run (CI)
# builds without optimization, which compiles the dependency tree several times faster;
# FUZZ_RELEASE=1 builds optimized for long runs.
mode=(--dev)
if [ "${FUZZ_RELEASE:-}" = 1 ]; then mode=(--release); fi
flags=(--sanitizer none "${mode[@]}")
cargo fuzz build "${flags[@]}"
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  printf '==> fuzzing %s for %s s\n' "$t" "$seconds"
  log="target/fuzz-$t.log"
  if ! cargo fuzz run "${flags[@]}" "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $t failed: the input is saved under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' '
  echo
done
