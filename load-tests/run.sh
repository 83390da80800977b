#!/usr/bin/env bash
# AirGate load tests: the mock directly vs nginx vs AirGate, in one run.
# Binds only 127.0.0.1, is bounded in time and requests, and stops by itself.
# Writes load-tests/results.md. See load-tests/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"

# ---- parameters (environment) ----
DURATION=${LT_DURATION:-10}                 # seconds of each oha measurement
RATE=${LT_RATE:-1000}                       # fixed-rate latency test, requests/s
RATE_CONNECTIONS=${LT_RATE_CONNECTIONS:-16} # connections used by the fixed-rate test
CONNECTIONS=${LT_CONNECTIONS:-32}           # max-throughput test
WARMUP_REQUESTS=${LT_WARMUP_REQUESTS:-500}
TTFT_REQUESTS=${LT_TTFT_REQUESTS:-200}      # sequential streaming requests per target
STREAMS=${LT_STREAMS:-1000}                 # concurrent open streams for the memory test
STREAM_DELAY_MS=${LT_STREAM_DELAY_MS:-200}  # slow mock: delay between tokens
STREAM_TOKENS=${LT_STREAM_TOKENS:-100}      # slow mock: tokens per stream
BUILD=${LT_BUILD:-1}                        # 0: use the binaries already in target/release
ENFORCE=${LT_ENFORCE:-0}                    # 1: exit 1 when a target is missed
RESULTS=${LT_RESULTS:-$HERE/results.md}

MOCK=127.0.0.1:18000
SLOW_MOCK=127.0.0.1:18001
NGINX=127.0.0.1:18081
NGINX_SLOW=127.0.0.1:18082
GATEWAY=127.0.0.1:18080
ADMIN=127.0.0.1:19090
BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'

log() { printf '[load-tests %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

WORK=$(mktemp -d /tmp/airgate-load.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "work files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# wait_http URL [POST-body] [tries of 0.1 s]
wait_http() {
    local url=$1 body=${2:-} tries=${3:-100} i
    for ((i = 0; i < tries; i++)); do
        if [[ -n $body ]]; then
            curl -sf -o /dev/null -m 2 -H 'content-type: application/json' -d "$body" "$url" && return 0
        else
            curl -sf -o /dev/null -m 2 "$url" && return 0
        fi
        sleep 0.1
    done
    return 1
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for addr in $MOCK $SLOW_MOCK $NGINX $NGINX_SLOW $GATEWAY $ADMIN; do
    if port_busy "$addr"; then
        log "port $addr is already in use; stop whatever listens there first"
        exit 1
    fi
done

# ---- tools ----
LOADGEN=""
OHA=$(command -v oha || true)
[[ -z $OHA && -x $HOME/.cargo/bin/oha ]] && OHA=$HOME/.cargo/bin/oha
if [[ -z $OHA ]]; then
    log "oha not found: cargo install oha --locked (takes a few minutes the first time)"
    if cargo install oha --locked >"$WORK/oha-install.log" 2>&1; then
        OHA=$HOME/.cargo/bin/oha
    else
        log "cargo install oha failed (see below); falling back to wrk"
        tail -5 "$WORK/oha-install.log" >&2 || true
    fi
fi
if [[ -n $OHA ]]; then
    LOADGEN=oha
else
    command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; } || true; }
    if command -v wrk >/dev/null; then
        LOADGEN=wrk
        log "using wrk: it cannot hold a fixed rate, so the fixed-rate latency rows will be n/a"
        cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '$BODY'
EOF
    else
        log "neither oha nor wrk is available"
        exit 1
    fi
fi

NGINX_BIN=$(command -v nginx || true)
[[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
if [[ -z $NGINX_BIN ]]; then
    log "installing nginx-light"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1; }; } || true
    NGINX_BIN=$(command -v nginx || true)
    [[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
    [[ -z $NGINX_BIN ]] && log "nginx unavailable: the nginx column will be skipped"
fi

PY=$HERE/.venv/bin/python
if ! "$PY" -c 'import httpx' 2>/dev/null; then
    log "creating $HERE/.venv with httpx"
    python3 -m venv "$HERE/.venv"
    "$HERE/.venv/bin/pip" install -q httpx
fi

# ---- build ----
if [[ $BUILD == 1 ]]; then
    log "cargo build --release"
    cargo build --release --bins
fi
MOCK_BIN=$ROOT/target/release/airgate-mock
GATEWAY_BIN=$ROOT/target/release/airgate
[[ -x $MOCK_BIN ]] || { log "$MOCK_BIN is missing"; exit 1; }

# ---- mocks ----
"$MOCK_BIN" --listen $MOCK --name bench --models bench-model --tokens 16 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
"$MOCK_BIN" --listen $SLOW_MOCK --name bench-slow --models bench-slow-model \
    --tokens "$STREAM_TOKENS" --inter-token-ms "$STREAM_DELAY_MS" >"$WORK/mock-slow.log" 2>&1 &
PIDS+=($!)
wait_http "http://$MOCK/health" && wait_http "http://$SLOW_MOCK/health" || { log "the mocks did not start"; cat "$WORK"/mock*.log >&2; exit 1; }

# ---- nginx ----
NGINX_OK=0
if [[ -n $NGINX_BIN ]]; then
    mkdir -p "$WORK/nginx"
    user_line=""
    [[ $EUID == 0 ]] && user_line="user root;"
    cat >"$WORK/nginx/nginx.conf" <<EOF
$user_line
worker_processes auto;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream mock { server $MOCK; keepalive 128; }
    upstream mock_slow { server $SLOW_MOCK; keepalive 128; }
    server {
        listen $NGINX;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen $NGINX_SLOW;
        location / {
            proxy_pass http://mock_slow;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
EOF
    "$NGINX_BIN" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/stdout.log" 2>&1 &
    PIDS+=($!)
    NGINX_PID=$!
    if wait_http "http://$NGINX/v1/chat/completions" "$BODY"; then
        NGINX_OK=1
        log "nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///') started"
    else
        log "nginx did not start; skipping it"
        cat "$WORK/nginx/error.log" "$WORK/nginx/stdout.log" >&2 2>/dev/null || true
    fi
fi

# ---- AirGate ----
GATEWAY_OK=0
GATEWAY_NOTE=""
if [[ -x $GATEWAY_BIN ]]; then
    "$GATEWAY_BIN" serve --config "$HERE/airgate-bench.yaml" --listen $GATEWAY --admin-listen $ADMIN \
        >"$WORK/airgate.log" 2>&1 &
    PIDS+=($!)
    GATEWAY_PID=$!
    if wait_http "http://$GATEWAY/v1/chat/completions" "$BODY" 300; then
        GATEWAY_OK=1
        log "AirGate started (pid $GATEWAY_PID)"
    else
        GATEWAY_NOTE="AirGate did not answer through $GATEWAY within 30 s (log tail below)"
        log "$GATEWAY_NOTE"
        tail -20 "$WORK/airgate.log" >&2 || true
    fi
else
    GATEWAY_NOTE="$GATEWAY_BIN is missing: the AirGate column is skipped (build the gateway first)"
    log "$GATEWAY_NOTE"
fi

# ---- measurements ----
TARGETS=("direct $MOCK")
[[ $NGINX_OK == 1 ]] && TARGETS+=("nginx $NGINX")
[[ $GATEWAY_OK == 1 ]] && TARGETS+=("airgate $GATEWAY")

loadgen_fixed_rate() { # name addr
    if [[ $LOADGEN == oha ]]; then
        timeout $((DURATION + 60)) "$OHA" --no-tui --output-format json -w -q "$RATE" -z "${DURATION}s" \
            -c "$RATE_CONNECTIONS" --latency-correction -m POST -H 'content-type: application/json' \
            -d "$BODY" "http://$2/v1/chat/completions" >"$WORK/rate-$1.json"
    fi
}

loadgen_max() { # name addr
    if [[ $LOADGEN == oha ]]; then
        timeout $((DURATION + 60)) "$OHA" --no-tui --output-format json -w -z "${DURATION}s" \
            -c "$CONNECTIONS" -m POST -H 'content-type: application/json' \
            -d "$BODY" "http://$2/v1/chat/completions" >"$WORK/max-$1.json"
    else
        timeout $((DURATION + 60)) wrk -t 2 -c "$CONNECTIONS" -d "${DURATION}s" --latency \
            -s "$WORK/post.lua" "http://$2/v1/chat/completions" >"$WORK/max-$1.wrk"
    fi
}

warmup() { # addr
    if [[ $LOADGEN == oha ]]; then
        timeout 60 "$OHA" --no-tui -n "$WARMUP_REQUESTS" -c 8 -m POST -H 'content-type: application/json' \
            -d "$BODY" "http://$1/v1/chat/completions" >/dev/null
    else
        timeout 60 wrk -t 1 -c 8 -d 1s -s "$WORK/post.lua" "http://$1/v1/chat/completions" >/dev/null
    fi
}

for t in "${TARGETS[@]}"; do
    read -r name addr <<<"$t"
    log "$name: warm-up"
    warmup "$addr" || log "$name: warm-up failed"
    if [[ $LOADGEN == oha ]]; then
        log "$name: latency at a fixed $RATE req/s for ${DURATION}s"
        loadgen_fixed_rate "$name" "$addr" || log "$name: fixed-rate test failed"
    fi
    log "$name: max throughput, $CONNECTIONS connections, ${DURATION}s"
    loadgen_max "$name" "$addr" || log "$name: max-throughput test failed"
    log "$name: streaming time to first token, $TTFT_REQUESTS sequential requests"
    timeout 120 "$PY" "$HERE/ttft.py" --url "http://$addr" -n "$TTFT_REQUESTS" >"$WORK/ttft-$name.json" ||
        log "$name: TTFT test failed"
done

if [[ $NGINX_OK == 1 ]]; then
    log "nginx: resident memory with $STREAMS open streams"
    timeout 180 "$PY" "$HERE/streams.py" --url "http://$NGINX_SLOW" --pid "$NGINX_PID" --children \
        --streams "$STREAMS" --timeout 60 >"$WORK/rss-nginx.json" || log "nginx memory test failed"
fi
if [[ $GATEWAY_OK == 1 ]]; then
    log "airgate: resident memory with $STREAMS open streams"
    timeout 180 "$PY" "$HERE/streams.py" --url "http://$GATEWAY" --pid "$GATEWAY_PID" \
        --streams "$STREAMS" --timeout 60 >"$WORK/rss-airgate.json" || log "airgate memory test failed"
fi

# ---- report ----
export LT_DURATION=$DURATION LT_RATE=$RATE LT_RATE_CONNECTIONS=$RATE_CONNECTIONS LT_CONNECTIONS=$CONNECTIONS \
    LT_TTFT_REQUESTS=$TTFT_REQUESTS LT_STREAMS=$STREAMS LT_STREAM_DELAY_MS=$STREAM_DELAY_MS \
    LT_STREAM_TOKENS=$STREAM_TOKENS LT_LOADGEN=$LOADGEN LT_GATEWAY_NOTE=$GATEWAY_NOTE
LT_LOADGEN_VERSION=$([[ $LOADGEN == oha ]] && "$OHA" --version 2>/dev/null | head -1 || echo wrk)
LT_NGINX_VERSION=$([[ -n $NGINX_BIN ]] && "$NGINX_BIN" -v 2>&1 | head -1 || echo none)
export LT_LOADGEN_VERSION LT_NGINX_VERSION
status=0
python3 "$HERE/report.py" "$WORK" "$RESULTS" || status=$?
log "wrote $RESULTS"
cat "$RESULTS"
if [[ $status == 2 && $ENFORCE != 1 ]]; then status=0; fi
exit "$status"
