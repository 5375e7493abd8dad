#!/usr/bin/env bash
# Builds every Lambda function of infra/template.yaml the way `sam build` does (`cargo lambda
# build --release`, arm64 as deployed when the aarch64 target is installed, x86-64 otherwise),
# packs each into its deployment zip, and checks each zip: one executable `bootstrap` for the
# right architecture.
#
# LAMBDA_BUILD_PROFILE=release (the default) builds with the deployed profile, what `sam build`
# produces. LAMBDA_BUILD_PROFILE=ci (what the test command uses) switches the release profile's
# optimization off through Cargo's profile environment overrides (no LTO, opt-level 0, many
# codegen units): with fat LTO and one codegen unit every function's link re-optimizes the whole
# program, about 2.3 minutes per function on 2 cores, ~15 minutes for the eleven, and optimizing
# the dependency tree for the second target is most of what remains. The CI build compiles and
# links the same code, features and target and packs the same zips; only the machine code is
# unoptimized, which nothing here runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The functions `sam build` builds: the template's `BuildProperties: Binary:` names.
mapfile -t FUNCTIONS < <(awk '$1 == "Binary:" { print $2 }' infra/template.yaml)
[ "${#FUNCTIONS[@]}" -gt 0 ] || { echo "no Binary: entries in infra/template.yaml" >&2; exit 1; }

profile=${LAMBDA_BUILD_PROFILE:-release}
case $profile in release | ci) ;; *) echo "LAMBDA_BUILD_PROFILE must be release or ci, not $profile" >&2; exit 2 ;; esac

if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  arch_flag=--arm64 machine=aarch64
else
  echo "aarch64-unknown-linux-gnu cannot be installed here: building for x86-64" >&2
  arch_flag=--x86-64 machine=x86-64
fi

target_dir=target
if [ "$profile" = ci ]; then
  # Its own target directory, so the deployed profile's artifacts in target/lambda are never
  # replaced by these.
  target_dir=target/lambda-ci
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0
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
  # The names in the zip, whether `bootstrap` is executable, and its ELF machine (e_machine).
  found=$(python3 - "$zip" <<'PY'
import stat, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
mode, machine = 0, "none"
if "bootstrap" in names:
    mode = z.getinfo("bootstrap").external_attr >> 16
    head = z.open("bootstrap").read(20)
    if head[:4] == b"\x7fELF":
        e_machine = int.from_bytes(head[18:20], "little")
        machine = {0x3E: "x86-64", 0xB7: "aarch64"}.get(e_machine, hex(e_machine))
print(" ".join(names), "executable" if mode & stat.S_IXUSR else "not-executable", machine)
PY
  )
  if [ "$found" != "bootstrap executable $machine" ]; then
    echo "$zip: expected one executable bootstrap for $machine, found: $found" >&2
    status=1
  fi
  printf '%-16s %6.2f MB zipped\n' "$f" "$(awk -v b="$(stat -c %s "$zip")" 'BEGIN { print b / 1e6 }')"
done
exit $status
