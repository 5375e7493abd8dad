#!/usr/bin/env bash
# Builds every Lambda function the way `sam build` does (`cargo lambda build --release`, arm64 as
# deployed when the aarch64 target is installed, x86-64 otherwise), packs each into its
# deployment zip, and checks each zip: one executable `bootstrap` for the right architecture.
#
# In CI the release profile's link-time optimization is switched off through Cargo's profile
# environment overrides (LAMBDA_BUILD_PROFILE=ci, the default when CI=true): with fat LTO and one
# codegen unit every function's link re-optimizes the whole program, about 2.3 minutes per
# function on 2 cores, ~20 minutes for the eleven. Without LTO the same code, features and
# target are compiled and linked; only the final whole-program optimization differs. Run with
# LAMBDA_BUILD_PROFILE=release for the deployed profile (what `sam build` produces).
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=(base token manifests-pull manifests-push blobs-pull blobs-delete uploads tags referrers
  gc catalog)

profile=${LAMBDA_BUILD_PROFILE:-}
if [ -z "$profile" ]; then
  if [ "${CI:-}" = "true" ]; then profile=ci; else profile=release; fi
fi

if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  arch_flag=--arm64 elf_machine=AArch64
else
  echo "aarch64-unknown-linux-gnu cannot be installed here: building for x86-64" >&2
  arch_flag=--x86-64 elf_machine=X86-64
fi

target_dir=target
if [ "$profile" = ci ]; then
  # Its own target directory, so the deployed profile's artifacts in target/lambda are never
  # replaced by these.
  target_dir=target/lambda-ci
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi

bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$f"); done
start=$(date +%s)
CARGO_TARGET_DIR="$target_dir" cargo lambda build --release "$arch_flag" --output-format zip "${bins[@]}"
echo "built ${#FUNCTIONS[@]} functions ($profile profile, $arch_flag) in $(($(date +%s) - start)) s"

status=0
for f in "${FUNCTIONS[@]}"; do
  zip="$target_dir/lambda/$f/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    echo "missing $zip" >&2
    status=1
    continue
  fi
  listing=$(python3 - "$zip" <<'PY'
import stat, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
info = z.getinfo("bootstrap") if "bootstrap" in names else None
mode = (info.external_attr >> 16) if info else 0
print(" ".join(names), "executable" if mode & stat.S_IXUSR else "not-executable")
PY
  )
  tmp=$(mktemp -d)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' \
    "$zip" "$tmp" 2>/dev/null || true
  machine=$(readelf -h "$tmp/bootstrap" 2>/dev/null | awk -F: '/Machine/ { gsub(/ /, "", $2); print $2 }')
  rm -rf "$tmp"
  if [ "$listing" != "bootstrap executable" ] || [ "$machine" != "$elf_machine" ]; then
    echo "$zip: expected one executable bootstrap for $elf_machine, found: $listing ($machine)" >&2
    status=1
  fi
  printf '%-16s %6.2f MB zipped\n' "$f" "$(awk -v b="$(stat -c %s "$zip")" 'BEGIN { print b / 1e6 }')"
done
exit $status
