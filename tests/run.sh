#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently: anything already present is
# skipped), then runs formatting, lints and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's line says how long the step before it took, and the last line the whole run.
run_start=$SECONDS
step_start=$SECONDS
step_name=""
took() { [ -z "$step_name" ] || printf '    (%s: %d s)\n' "$step_name" "$((SECONDS - step_start))"; }
step() { took; step_name="$*"; step_start=$SECONDS; printf '\n==> %s\n' "$*"; }
finish() { took; printf '\n==> all steps done in %d s\n' "$((SECONDS - run_start))"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Real registry clients from Debian (see ../shared/TESTING.md).
apt_missing=()
command -v skopeo >/dev/null || apt_missing+=(skopeo)
command -v podman >/dev/null || apt_missing+=(podman)
command -v umoci >/dev/null || apt_missing+=(umoci)
command -v curl >/dev/null || apt_missing+=(curl)
# Headless Chromium for the public catalog's browser test (driven by npm playwright-core).
[ -x /usr/bin/chromium ] || apt_missing+=(chromium fonts-dejavu-core)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  step "installing ${apt_missing[*]} (apt)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" uidmap fuse-overlayfs
fi

# oras-py: artifacts with a subject, and chunked uploads.
if ! python3 -c 'import oras' 2>/dev/null; then
  step "installing oras (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'oras>=0.2.25,<0.3'
fi

# S3- and DynamoDB-compatible servers for the cloud backends (see ../shared/TESTING.md).
if ! command -v s3s-fs >/dev/null; then
  step "installing s3s-fs (cargo install, about 2 minutes)"
  env -u AWS_CA_BUNDLE cargo install s3s-fs@0.14.1 --features binary --locked
fi
if ! { command -v moto_server >/dev/null && python3 -c 'import moto.server' 2>/dev/null; }; then
  step "installing moto server (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi

# Lambda tooling (see ../shared/TESTING.md): cargo-lambda runs the functions under the runtime
# emulator; the template is linted offline by cfn-lint and by the SAM CLI.
if ! command -v cfn-lint >/dev/null; then
  step "installing cfn-lint (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'cfn-lint>=1,<2'
fi
if ! command -v cargo-lambda >/dev/null; then
  step "installing cargo-lambda (pip): the Lambda runtime emulator for the end-to-end test"
  python3 -m pip install --quiet --disable-pip-version-check 'cargo-lambda>=1.9,<2'
fi
if ! command -v sam >/dev/null; then
  step "installing aws-sam-cli (pip, about a minute)"
  python3 -m pip install --quiet --disable-pip-version-check 'aws-sam-cli>=1.100,<2'
fi

# oidc-provider (npm): the real OpenID provider `wharf login` is tested against. Needs Node.js
# 20.19+; the test installs it the same way on first use if this step was skipped.
if [ ! -d tests/fixtures/oidc-provider/node_modules ]; then
  step "installing oidc-provider (npm ci)"
  npm ci --prefix tests/fixtures/oidc-provider --no-audit --no-fund
fi

# playwright-core (npm): drives Debian's Chromium through the catalog; the test installs it the
# same way on first use if this step was skipped.
if [ ! -d tests/fixtures/catalog-browser/node_modules ]; then
  step "installing playwright-core (npm ci)"
  npm ci --prefix tests/fixtures/catalog-browser --no-audit --no-fund
fi
step "linting infra/template.yaml (cfn-lint, sam validate --lint; offline, dummy credentials)"
cfn-lint infra/template.yaml
env SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=dummy \
  AWS_SECRET_ACCESS_KEY=dummy sam validate --lint --template infra/template.yaml

# A one-off build gains nothing from incremental compilation, which only costs disk and time.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "building wharf"
cargo build -p wharf-server

step "cargo test"
cargo test --workspace

step "building every Lambda function (cargo lambda build --release, zips checked)"
LAMBDA_BUILD_PROFILE=ci bash tests/lambda_build.sh

step "fuzzing every input parser (cargo fuzz, 15 s per target)"
bash tests/fuzz.sh

finish
