#!/usr/bin/env bash
# Wharf side by side with CNCF distribution (Debian `docker-registry`) and nginx serving the same
# bytes as static files: same machine, same data, same clients, one run, one table.
#
#   bash tests/bench/run.sh            # the full run (10 s per load row, 1 GiB layer, 10,000 repos)
#   QUICK=1 bash tests/bench/run.sh    # a smoke run: short rows, a 256 MiB layer, 1,000 repos
#
# Knobs (environment): DURATION (oha run length, e.g. 10s), CONNS ("1 8 64"), REPS (repetitions
# of each push/GET/PUT row; the median is reported), STARTS (starts for the start-up rows),
# BIG_MIB (size of the big layer), SCALE_N (repositories for the scaling row: a power of ten),
# BENCH_DIR (fixtures are kept there between runs; each run's servers get a fresh directory),
# FN_BIN (a native Lambda function binary for the function start row), WHARF_BIN (a wharf
# binary to measure instead of building the release one, e.g. a profiling build).
#
# Installs what it needs if missing: docker-registry and nginx (apt), skopeo and curl (apt),
# oha (cargo install). Everything listens on 127.0.0.1, on free ports, and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HELPER="python3 $ROOT/tests/bench/bench.py"

if [ "${QUICK:-}" = 1 ]; then
  : "${DURATION:=2s}" "${REPS:=1}" "${STARTS:=3}" "${BIG_MIB:=256}" "${SCALE_N:=1000}"
fi
: "${DURATION:=10s}" "${CONNS:=1 8 64}" "${REPS:=3}" "${STARTS:=10}" "${BIG_MIB:=1024}" "${SCALE_N:=10000}"
: "${BENCH_DIR:=${TMPDIR:-/tmp}/wharf-bench}"
SCALE_DIGITS=$(( ${#SCALE_N} - 1 ))
[ "$SCALE_N" = "1$(printf '%0*d' "$SCALE_DIGITS" 0)" ] || { echo "SCALE_N must be a power of ten" >&2; exit 2; }
if [ "$BIG_MIB" -ge 1024 ] && [ $((BIG_MIB % 1024)) = 0 ]; then BIG="$((BIG_MIB / 1024)) GiB"; else BIG="$BIG_MIB MiB"; fi

# Test servers choke on this machine's CA bundle variable, and none of them needs it.
unset AWS_CA_BUNDLE
step() { printf '\n==> %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ---- what the benchmark needs ----------------------------------------------------------------
apt_missing=()
command -v docker-registry >/dev/null || apt_missing+=(docker-registry)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx)
command -v skopeo >/dev/null || apt_missing+=(skopeo)
command -v curl >/dev/null || apt_missing+=(curl)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  step "installing ${apt_missing[*]} (apt)"
  $SUDO apt-get update -qq
  # policy-rc.d keeps Debian's nginx package from starting a system-wide server on port 80.
  $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
  step "installing oha (cargo install, a few minutes)"
  cargo install oha --locked
fi

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ -z "${WHARF_BIN:-}" ]; then
  # The `base` function too, natively, for the function start row (under the emulator).
  step "building wharf and the base function (release: fat LTO, slow to link)"
  nice -n 10 cargo build --release -p wharf-server -p wharf-fn-base
  WHARF_BIN="$TARGET_DIR/release/wharf"
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-run.XXXXXX")
# A copy, so that another build into the shared target directory cannot swap the binary mid-run.
cp "$WHARF_BIN" "$RUN/wharf"
WHARF="$RUN/wharf"
RESULTS="$RUN/results.tsv"
: >"$RESULTS"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN/wharf-data" "$RUN/distribution-data" "$RUN/static"
}
trap cleanup EXIT
result() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" | tee -a "$RESULTS" >&2; }

step "fixtures: an OCI layout in $BENCH_DIR (a $BIG layer, a small image, a 200-layer image)"
LAYOUT="$BENCH_DIR/layout-$BIG_MIB"
$HELPER layout "$LAYOUT" "$BIG_MIB"
read -r BIG_DIGEST BIG_SIZE < <(python3 - "$LAYOUT" <<'PY'
import json, sys
root = sys.argv[1]
idx = json.load(open(f"{root}/index.json"))
big = next(m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "big")
layer = json.load(open(f"{root}/blobs/sha256/{big['digest'][7:]}"))["layers"][0]
print(layer["digest"], layer["size"])
PY
)
BIG_BLOB="$LAYOUT/blobs/sha256/${BIG_DIGEST#sha256:}"

# ---- the three servers -----------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v2/")" = 200 ] && return 0
    sleep 0.1
  done
  echo "the server on port $1 never answered /v2/" >&2
  exit 1
}

write_distribution_config() { # PORT DIR
  cat <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $2
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$1
EOF
}

write_nginx_config() { # PORT DIR ROOT
  local user=""
  # Workers would drop to `nobody`, who cannot enter a 0700 temporary directory.
  if [ "$(id -u)" = 0 ]; then user="user root root;"; fi
  cat <<EOF
$user
worker_processes auto;
daemon off;
pid $2/nginx.pid;
error_log $2/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $2/client_body;
  proxy_temp_path $2/proxy;
  fastcgi_temp_path $2/fastcgi;
  uwsgi_temp_path $2/uwsgi;
  scgi_temp_path $2/scgi;
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$1;
    root $3;
    location = /v2/ { return 200 '{}'; }
    location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
  }
}
EOF
}

# Starts a registry on a fresh data directory; sets STARTED_PORT and STARTED_PID.
start_registry() { # SERVER NAME
  local port dir="$RUN/$2-data"
  port=$(free_port)
  case $1 in
    wharf)
      "$WHARF" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$RUN/$2.log" 2>&1 & ;;
    distribution)
      write_distribution_config "$port" "$dir" >"$RUN/$2.yml"
      docker-registry serve "$RUN/$2.yml" >"$RUN/$2.log" 2>&1 & ;;
  esac
  STARTED_PID=$!; STARTED_PORT=$port; PIDS+=("$STARTED_PID")
  wait_ready "$port"
}
stop() { # PID
  kill "$1"; wait "$1" 2>/dev/null || true
}

# Resident memory in MiB of a server: the process and its children (nginx's workers).
mem_mib() { # PID FIELD(VmRSS|VmHWM)
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status")))
  done
  awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
REGISTRIES=(wharf distribution)
SERVERS=(wharf distribution nginx)

# ---- pushes ----------------------------------------------------------------------------------
# Each repetition pushes to a registry started for it on a fresh directory and port: skopeo
# remembers where it pushed a blob before and mounts it from there instead of uploading, which
# a new host:port rules out. The peak RSS is the process's whole life: start and both pushes.
skopeo_push() { # PORT REF REPO
  skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:$2" "docker://127.0.0.1:$1/$3:v1" >/dev/null
}
step "pushes with skopeo, $REPS each (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
for s in "${REGISTRIES[@]}"; do
  big=() many=() peak=()
  for i in $(seq 1 "$REPS"); do
    start_registry "$s" "$s-push-$i"
    t=$(now); skopeo_push "$STARTED_PORT" big bench/big; big+=("$(elapsed "$t")")
    peak+=("$(mem_mib "$STARTED_PID" VmHWM)")
    t=$(now); skopeo_push "$STARTED_PORT" many bench/many; many+=("$(elapsed "$t")")
    stop "$STARTED_PID"
    rm -rf "$RUN/$s-push-$i-data"
  done
  result "skopeo push $BIG image s" "$s" "$(printf '%s\n' "${big[@]}" | median)"
  result "skopeo push 200 layers s" "$s" "$(printf '%s\n' "${many[@]}" | median)"
  result "peak RSS, $BIG push MiB" "$s" "$(printf '%s\n' "${peak[@]}" | sort -g | tail -1)"
done

step "starting wharf, distribution and nginx for the rest"
start_registry wharf wharf; WPORT=$STARTED_PORT; WPID=$STARTED_PID
start_registry distribution distribution; DPORT=$STARTED_PORT; DPID=$STARTED_PID
NPORT=$(free_port)
mkdir -p "$RUN/nginx" "$RUN/static/v2"
write_nginx_config "$NPORT" "$RUN/nginx" "$RUN/static" >"$RUN/nginx/nginx.conf"
"$NGINX" -e "$RUN/nginx/error.log" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" &
NPID=$!; PIDS+=("$NPID")
wait_ready "$NPORT"
declare -A PORT=([wharf]=$WPORT [distribution]=$DPORT [nginx]=$NPORT)
declare -A PID=([wharf]=$WPID [distribution]=$DPID [nginx]=$NPID)
sleep 1
for s in "${SERVERS[@]}"; do result "idle RSS MiB (after start)" "$s" "$(mem_mib "${PID[$s]}" VmRSS)"; done
for s in "${REGISTRIES[@]}"; do skopeo_push "${PORT[$s]}" small bench/small; done

step "monolithic curl PUT of the $BIG layer ($REPS each)"
for s in "${REGISTRIES[@]}"; do
  speeds=()
  for i in $(seq 1 "$REPS"); do
    base="http://127.0.0.1:${PORT[$s]}"
    loc=$(curl -s -D - -o /dev/null -X POST "$base/v2/bench/ingest-$i/blobs/uploads/" |
      tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    case "$loc" in /*) loc="$base$loc" ;; esac
    case "$loc" in *\?*) url="$loc&digest=$BIG_DIGEST" ;; *) url="$loc?digest=$BIG_DIGEST" ;; esac
    read -r code secs < <(curl -s -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' \
      -T "$BIG_BLOB" -w '%{http_code} %{time_total}\n' "$url")
    [ "$code" = 201 ] || { echo "$s: curl PUT answered $code" >&2; exit 1; }
    speeds+=("$(awk -v b="$BIG_SIZE" -v t="$secs" 'BEGIN { printf "%.0f", b / t / 1e6 }')")
  done
  result "curl PUT $BIG MB/s" "$s" "$(printf '%s\n' "${speeds[@]}" | median)"
done

# ---- the same bytes as static files for nginx ------------------------------------------------
SMALL_DIGEST=$(curl -s -D - -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$WPORT/v2/bench/small/manifests/v1" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')
mkdir -p "$RUN/static/v2/bench/small/manifests" "$RUN/static/v2/bench/ingest-1/blobs"
curl -s -o "$RUN/static/v2/bench/small/manifests/v1" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$WPORT/v2/bench/small/manifests/v1"
ln "$BIG_BLOB" "$RUN/static/v2/bench/ingest-1/blobs/$BIG_DIGEST" 2>/dev/null ||
  cp "$BIG_BLOB" "$RUN/static/v2/bench/ingest-1/blobs/$BIG_DIGEST"
for s in "${SERVERS[@]}"; do
  got=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:${PORT[$s]}/v2/bench/small/manifests/v1" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$SMALL_DIGEST" ] || { echo "$s serves other manifest bytes" >&2; exit 1; }
done

step "blob GET of the $BIG layer ($REPS each, after one warm-up)"
for s in "${SERVERS[@]}"; do
  url="http://127.0.0.1:${PORT[$s]}/v2/bench/ingest-1/blobs/$BIG_DIGEST"
  curl -sf -o /dev/null "$url"
  speeds=()
  for _ in $(seq 1 "$REPS"); do
    read -r code size speed < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' "$url")
    [ "$code" = 200 ] && [ "$size" = "$BIG_SIZE" ] || { echo "$s: blob GET $code, $size bytes" >&2; exit 1; }
    speeds+=("$(awk -v v="$speed" 'BEGIN { printf "%.0f", v / 1e6 }')")
  done
  result "blob GET $BIG MB/s" "$s" "$(printf '%s\n' "${speeds[@]}" | median)"
done

# ---- manifest requests under load ------------------------------------------------------------
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
load() { # SERVER ROW METHOD CONNS URL [oha options...]
  local s=$1 row=$2 method=$3 c=$4 url=$5
  shift 5
  oha --no-tui --output-format json -w -z "$DURATION" -c "$c" -m "$method" -H "$ACCEPT" "$@" "$url" >"$RUN/oha.json"
  $HELPER oha "$s" "$row" "$RUN/oha.json" | tee -a "$RESULTS" >&2
}
step "manifest HEAD and GET by tag, $DURATION per row (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
for c in $CONNS; do
  for method in HEAD GET; do
    for s in "${SERVERS[@]}"; do
      load "$s" "manifest $method c=$c" "$method" "$c" "http://127.0.0.1:${PORT[$s]}/v2/bench/small/manifests/v1"
    done
  done
done

sleep 2
for s in "${SERVERS[@]}"; do result "idle RSS MiB (after the load)" "$s" "$(mem_mib "${PID[$s]}" VmRSS)"; done

# ---- how cost grows with the store -----------------------------------------------------------
# Repositories fill/r00000… each hold one tag on a distinct manifest; the load spreads over all
# of them (oha draws each URL from a regex).
scale_row() { # N
  local n=$1 digits=${#1} width=5 regex
  digits=$((digits - 1))
  regex="r$(printf '%0*d' $((width - digits)) 0)"
  [ "$digits" -gt 0 ] && regex="$regex[0-9]{$digits}"
  for s in "${SERVERS[@]}"; do
    load "$s" "manifest GET c=64, $n repos" GET 64 \
      "http://127.0.0.1:${PORT[$s]}/v2/fill/$regex/manifests/v1" --rand-regex-url
  done
}
step "scaling: 10 repositories"
for s in "${REGISTRIES[@]}"; do $HELPER fill "http://127.0.0.1:${PORT[$s]}" 0 10; done
$HELPER fill-static "$RUN/static" 0 10
scale_row 10
step "scaling: $SCALE_N repositories (filled through each registry's API, 8 requests in flight)"
for s in "${REGISTRIES[@]}"; do
  t=$(now); $HELPER fill "http://127.0.0.1:${PORT[$s]}" 10 "$SCALE_N"
  result "fill to $SCALE_N repos s (2 mounts + 1 manifest PUT each)" "$s" "$(elapsed "$t")"
done
$HELPER fill-static "$RUN/static" 10 "$SCALE_N"
scale_row "$SCALE_N"

for s in "${SERVERS[@]}"; do kill "${PID[$s]}"; done
wait 2>/dev/null || true
PIDS=()

# ---- start-up --------------------------------------------------------------------------------
step "start to first answer (median of $STARTS starts; a restart on existing data, then a first start)"
write_distribution_config '{port}' '{dir}/data' >"$RUN/distribution.tmpl"
write_nginx_config '{port}' '{dir}' "$RUN/static" >"$RUN/nginx.tmpl"
for mode in reuse fresh; do
  if [ $mode = reuse ]; then row="start to first answer ms"; opt=--reuse; else row="first start, empty data dir, ms"; opt=; fi
  result "$row" wharf "$($HELPER start-time "$STARTS" $opt -- \
    "$WHARF" serve --listen '127.0.0.1:{port}' --data-dir '{dir}/data')"
  result "$row" distribution "$($HELPER start-time "$STARTS" $opt --render "$RUN/distribution.tmpl" -- \
    docker-registry serve '{dir}/conf')"
  result "$row" nginx "$($HELPER start-time "$STARTS" $opt --render "$RUN/nginx.tmpl" -- \
    "$NGINX" -e '{dir}/error.log' -p '{dir}' -c '{dir}/conf')"
done

# A native build of one function (`base`), run under the Lambda runtime emulator. The deployment
# zips are not built here (`bash tests/lambda_build.sh` makes them, about 15 minutes on 2 cores):
# the zip row reports the largest one present.
if [ -z "${FN_BIN:-}" ]; then
  for f in "$TARGET_DIR/release/base" "$TARGET_DIR/lambda/base/bootstrap"; do
    if [ -x "$f" ] && file -b "$f" 2>/dev/null | grep -q "$(uname -m | tr _ -)"; then FN_BIN=$f; break; fi
  done
fi
if [ -n "${FN_BIN:-}" ] && command -v cargo-lambda >/dev/null; then
  step "function start: $FN_BIN under cargo lambda watch (median of $STARTS)"
  API=$(free_port)
  cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$API" >"$RUN/watch.log" 2>&1 &
  PIDS+=("$!")
  # Ready when its port accepts a connection (an HTTP request to `/` would hang: the emulator
  # holds it for a function that never comes).
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$API") 2>/dev/null && break; sleep 0.1; done
  result "function start to first answer ms" wharf "$($HELPER fn-start "$STARTS" "$API" "$FN_BIN")"
else
  result "function start to first answer ms" wharf "n/a (not built)"
fi
zips=$(ls "$TARGET_DIR"/lambda/*/bootstrap.zip 2>/dev/null || true)
if [ -n "$zips" ]; then
  largest=$(stat -c '%s %n' $zips | sort -n | tail -1)
  result "function zip MB (largest of $(echo "$zips" | wc -l))" wharf "$(awk -v b="${largest%% *}" 'BEGIN { printf "%.1f", b / 1e6 }')"
else
  result "function zip MB" wharf "n/a (not built)"
fi

# ---- the table -------------------------------------------------------------------------------
{
  echo
  echo "Wharf $(git -C "$ROOT" rev-parse --short HEAD), distribution $(docker-registry --version 2>&1 | awk '{print $3}'), $("$NGINX" -v 2>&1 | cut -d' ' -f3), $(oha --version)"
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); DURATION=$DURATION REPS=$REPS STARTS=$STARTS BIG_MIB=$BIG_MIB SCALE_N=$SCALE_N"
  echo
  $HELPER table "$RESULTS"
} | tee "$RUN/table.md"
echo >&2
echo "raw results and logs: $RUN" >&2
