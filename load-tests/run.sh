#!/usr/bin/env bash
# AirGate load tests: the mock directly vs nginx vs AirGate, in one run, then the cost of
# AirGate's features against its own core path (access control, telemetry, semantic cache).
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
SECTIONS=${LT_SECTIONS:-access,telemetry,cache,reload,openapi} # feature sections to run (comma-separated; "" for none)
CACHE_CONNECTIONS=${LT_CACHE_CONNECTIONS:-8}    # semantic cache: concurrent connections
CACHE_SEQUENTIAL=${LT_CACHE_SEQUENTIAL:-200}    # semantic cache: sequential requests per prompt set
ROUNDS=${LT_ROUNDS:-3}                          # access/telemetry/openapi: rounds per variant, order rotated
ROUND_SECONDS=${LT_ROUND_SECONDS:-5}            # access/telemetry: seconds of each round
OPENAPI_PAIRS=${LT_OPENAPI_PAIRS:-2000}         # openapi: paired sequential requests per round and pair

MOCK=127.0.0.1:18000
SLOW_MOCK=127.0.0.1:18001
NGINX=127.0.0.1:18081
NGINX_SLOW=127.0.0.1:18082
GATEWAY=127.0.0.1:18080
ADMIN=127.0.0.1:19090
# feature sections: one AirGate process per variant (public, admin)
ACCESS_CORE=127.0.0.1:18088 ACCESS_CORE_ADMIN=127.0.0.1:19096
ACCESS_MEM=127.0.0.1:18083 ACCESS_MEM_ADMIN=127.0.0.1:19091
ACCESS_REDIS=127.0.0.1:18084 ACCESS_REDIS_ADMIN=127.0.0.1:19092
TEL_OFF=127.0.0.1:18085 TEL_OFF_ADMIN=127.0.0.1:19093
TEL_FULL=127.0.0.1:18086 TEL_FULL_ADMIN=127.0.0.1:19094
CACHE_GW=127.0.0.1:18087 CACHE_ADMIN=127.0.0.1:19095
CACHE_CORE=127.0.0.1:18089 CACHE_CORE_ADMIN=127.0.0.1:19097
RELOAD_GW=127.0.0.1:18092 RELOAD_ADMIN=127.0.0.1:19100
RELOAD_STEADY=127.0.0.1:18093 RELOAD_STEADY_ADMIN=127.0.0.1:19101
OPENAPI_NONE=127.0.0.1:18094 OPENAPI_NONE_ADMIN=127.0.0.1:19102
OPENAPI_ENFORCE=127.0.0.1:18095 OPENAPI_ENFORCE_ADMIN=127.0.0.1:19103
OPENAPI_TWIN=127.0.0.1:18096 OPENAPI_TWIN_ADMIN=127.0.0.1:19104
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

section() { [[ ,$SECTIONS, == *,$1,* ]]; }

for addr in $MOCK $SLOW_MOCK $NGINX $NGINX_SLOW $GATEWAY $ADMIN $ACCESS_CORE $ACCESS_CORE_ADMIN $ACCESS_MEM $ACCESS_MEM_ADMIN $ACCESS_REDIS \
    $ACCESS_REDIS_ADMIN $TEL_OFF $TEL_OFF_ADMIN $TEL_FULL $TEL_FULL_ADMIN $CACHE_GW $CACHE_ADMIN $CACHE_CORE $CACHE_CORE_ADMIN \
    $RELOAD_GW $RELOAD_ADMIN $RELOAD_STEADY $RELOAD_STEADY_ADMIN $OPENAPI_NONE $OPENAPI_NONE_ADMIN \
    $OPENAPI_ENFORCE $OPENAPI_ENFORCE_ADMIN $OPENAPI_TWIN $OPENAPI_TWIN_ADMIN; do
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
if ! "$PY" -c 'import httpx, jwt' 2>/dev/null; then
    log "creating $HERE/.venv with httpx and PyJWT"
    [[ -x $PY ]] || python3 -m venv "$HERE/.venv"
    "$HERE/.venv/bin/pip" install -q httpx PyJWT
fi

REDIS_OK=0
if section access; then
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
        log "installing redis-server (for the Redis variant of the access section)"
        { DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >/dev/null 2>&1; }; } || true
    fi
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; then
        REDIS_OK=1
    else
        log "redis-server unavailable: the Redis variant of the access section is skipped"
    fi
fi

# ---- build ----
if [[ $BUILD == 1 ]]; then
    log "cargo build --release"
    cargo build --release --bins
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOCK_BIN=$TARGET_DIR/release/airgate-mock
GATEWAY_BIN=$TARGET_DIR/release/airgate
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

# ---- feature sections: each variant is its own AirGate process, compared with the core path ----
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL; forget it.
stop_pid() {
    local pid=$1 p keep=()
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# meta SECTION KEY VALUE: facts the report prints next to the numbers
meta() { printf '%s %s\n' "$2" "$3" >>"$WORK/meta-$1.txt"; }

# start_gateway NAME LISTEN ADMIN CONFIG [serve args...]: sets SCEN_PID; fails when not ready.
# Readiness: the admin /healthz answers and a plain request gets any HTTP answer.
start_gateway() {
    local name=$1 listen=$2 admin=$3 config=$4 i code
    shift 4
    "$GATEWAY_BIN" serve --config "$config" --listen "$listen" --admin-listen "$admin" "$@" \
        >"$WORK/airgate-$name.log" 2>&1 &
    SCEN_PID=$!
    PIDS+=("$SCEN_PID")
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SCEN_PID" 2>/dev/null || break
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 -H 'content-type: application/json' -d "$BODY" \
            "http://$listen/v1/chat/completions" || true)
        if [[ $code != 000 ]] && curl -sf -o /dev/null -m 2 "http://$admin/healthz"; then
            log "$name: AirGate started (pid $SCEN_PID)"
            return 0
        fi
        sleep 0.1
    done
    log "$name: AirGate did not start (log tail below)"
    tail -20 "$WORK/airgate-$name.log" >&2 || true
    stop_pid "$SCEN_PID"
    return 1
}

# oha_rate OUT ADDR [oha args]: latency at the fixed rate; oha_max OUT ADDR CONNECTIONS [oha args]
# Each POSTs REQ_BODY to REQ_PATH (a chat completion unless a section says otherwise).
REQ_BODY=$BODY
REQ_PATH=/v1/chat/completions
oha_rate() {
    local out=$1 addr=$2
    shift 2
    timeout $((${OHA_SECONDS:-$DURATION} + 60)) "$OHA" --no-tui --output-format json -w -q "$RATE" \
        -z "${OHA_SECONDS:-$DURATION}s" -c "$RATE_CONNECTIONS" --latency-correction -m POST \
        -H 'content-type: application/json' "$@" \
        -d "$REQ_BODY" "http://$addr$REQ_PATH" >"$WORK/$out.json"
}
oha_max() {
    local out=$1 addr=$2 conns=$3
    shift 3
    timeout $((${OHA_SECONDS:-$DURATION} + 60)) "$OHA" --no-tui --output-format json -w \
        -z "${OHA_SECONDS:-$DURATION}s" -c "$conns" -m POST -H 'content-type: application/json' "$@" \
        -d "$REQ_BODY" "http://$addr$REQ_PATH" >"$WORK/$out.json"
}
oha_warmup() { # ADDR [oha args]
    local addr=$1
    shift
    timeout 60 "$OHA" --no-tui -n "$WARMUP_REQUESTS" -c 8 -m POST -H 'content-type: application/json' "$@" \
        -d "$REQ_BODY" "http://$addr$REQ_PATH" >/dev/null
}
# metric ADMIN REGEX: sum of the Prometheus samples whose line matches REGEX (awk ERE)
metric() {
    { curl -sf -m 5 "http://$1/metrics" || true; } | awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%d\n", s}'
}
# redis_calls [REGEX]: commands Redis has executed so far (INFO commandstats; it also counts
# the commands run inside Lua scripts), or only those whose name matches REGEX
redis_calls() {
    { timeout 5 redis-cli -p "$REDIS_PORT" info commandstats || true; } | tr -d '\r' |
        awk -F'[_:=,]' -v re="${1:-.}" '/^cmdstat_/ && $2 ~ re {s += $4} END {print s + 0}'
}
http_code() { # URL [curl args]
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' -m 5 -H 'content-type: application/json' "$@" -d "$REQ_BODY" "$url" || true
}

FEATURES_NOTE=""
if [[ -n $SECTIONS && ( $GATEWAY_OK != 1 || $LOADGEN != oha ) ]]; then
    FEATURES_NOTE="the feature sections need AirGate and oha; skipped"
    log "$FEATURES_NOTE"
    SECTIONS=""
fi

# run_rounds KIND PREFIX VARIANT...: ROUNDS rounds of ROUND_SECONDS each; the order of the
# variants rotates every round so that drift on the machine hits every variant alike.
# Per variant V: ${ADDR_V} is its address, ${ARGS_V[@]} its extra oha arguments (via eval).
run_rounds() {
    local kind=$1 prefix=$2 r j n v addr
    shift 2
    local variants=("$@")
    n=${#variants[@]}
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((j = 0; j < n; j++)); do
            v=${variants[$(((j + r - 1) % n))]}
            eval "addr=\$ADDR_$v; local -a extra=(\"\${ARGS_$v[@]}\")"
            log "$prefix $v: round $r/$ROUNDS, $([[ $kind == rate ]] && echo "$RATE req/s" || echo "max, $CONNECTIONS connections"), ${ROUND_SECONDS}s"
            if [[ $kind == rate ]]; then
                OHA_SECONDS=$ROUND_SECONDS oha_rate "rate-$prefix-$v.r$r" "$addr" "${extra[@]}" || log "$prefix $v: round $r failed"
            else
                OHA_SECONDS=$ROUND_SECONDS oha_max "max-$prefix-$v.r$r" "$addr" "$CONNECTIONS" "${extra[@]}" || log "$prefix $v: round $r failed"
            fi
        done
    done
}

# ---- 1. access cost: JWT + rate limits, in memory and through Redis ----
if section access; then
    mkdir -p "$WORK/secrets/bench-jwt"
    "$PY" -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(20))' >"$WORK/secrets/bench-jwt/secret" # 40 bytes
    TOKEN=$("$PY" - "$WORK/secrets/bench-jwt/secret" <<'PYEOF'
import sys, time
import jwt
secret = open(sys.argv[1], "rb").read()
now = int(time.time())
claims = {"sub": "bench-user", "iss": "bench", "aud": "airgate", "iat": now, "exp": now + 10 * 365 * 86400}
print(jwt.encode(claims, secret, algorithm="HS256"))
PYEOF
    )
    AUTH=(-H "Authorization: Bearer $TOKEN")
    meta access secret_bytes "$(stat -c %s "$WORK/secrets/bench-jwt/secret")"
    # every variant gets the same request, token included (the core path ignores it)
    ADDR_core=$ACCESS_CORE ADDR_mem=$ACCESS_MEM ADDR_redis=$ACCESS_REDIS
    ARGS_core=("${AUTH[@]}") ARGS_mem=("${AUTH[@]}") ARGS_redis=("${AUTH[@]}")
    ACC=() ACC_PIDS=() REDIS_PID=""

    # a fresh core-path gateway, so the three variants differ only in their config
    if start_gateway access-core $ACCESS_CORE $ACCESS_CORE_ADMIN "$HERE/airgate-bench.yaml" \
        --secrets-dir "$WORK/secrets"; then
        ACC+=(core) ACC_PIDS+=("$SCEN_PID")
    fi
    if start_gateway access-mem $ACCESS_MEM $ACCESS_MEM_ADMIN "$HERE/scenarios/access.yaml" \
        --secrets-dir "$WORK/secrets"; then
        ACC+=(mem) ACC_PIDS+=("$SCEN_PID")
        meta access mem_status_no_token "$(http_code "http://$ACCESS_MEM/v1/chat/completions")"
        meta access mem_status_token "$(http_code "http://$ACCESS_MEM/v1/chat/completions" "${AUTH[@]}")"
    fi
    if [[ $REDIS_OK == 1 ]]; then
        REDIS_PORT=$(free_port)
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
            >"$WORK/redis.log" 2>&1 &
        REDIS_PID=$!
        PIDS+=("$REDIS_PID")
        for _ in $(seq 50); do
            if timeout 2 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then break; fi
            sleep 0.1
        done
        meta access redis_version "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
        if start_gateway access-redis $ACCESS_REDIS $ACCESS_REDIS_ADMIN "$HERE/scenarios/access.yaml" \
            --secrets-dir "$WORK/secrets" --redis-url "redis://127.0.0.1:$REDIS_PORT"; then
            ACC+=(redis) ACC_PIDS+=("$SCEN_PID")
            meta access redis_status_token "$(http_code "http://$ACCESS_REDIS/v1/chat/completions" "${AUTH[@]}")"
        fi
    fi

    if ((${#ACC[@]} > 0)); then
        for v in "${ACC[@]}"; do
            eval "oha_warmup \"\$ADDR_$v\" \"\${ARGS_$v[@]}\"" || true
        done
        [[ -n $REDIS_PID ]] && calls_before=$(redis_calls) evals_before=$(redis_calls '^(eval|evalsha|evalsha_ro|eval_ro|fcall)$')
        run_rounds rate access "${ACC[@]}"
        if [[ -n $REDIS_PID ]]; then
            calls_after=$(redis_calls)
            evals_after=$(redis_calls '^(eval|evalsha|evalsha_ro|eval_ro|fcall)$')
            meta access redis_calls "$((calls_after - calls_before))"
            meta access redis_evals "$((evals_after - evals_before))"
            timeout 5 redis-cli -p "$REDIS_PORT" info commandstats | grep '^cmdstat' | tr -d '\r' \
                >"$WORK/redis-commandstats.txt" || true
        fi
        meta access mem_rate_limit_hits "$(metric $ACCESS_MEM_ADMIN '^airgate_rate_limited_total')"
        meta access redis_store_errors "$(metric $ACCESS_REDIS_ADMIN '^airgate_rate_limit_store_errors_total')"
    fi
    for pid in "${ACC_PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $REDIS_PID ]]; then
        log "access: Redis round-trip sample (redis-benchmark -t ping -n 20000 -c 1)"
        timeout 60 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t ping -n 20000 -c 1 --csv \
            >"$WORK/redis-rtt.csv" 2>/dev/null || log "access: redis-benchmark failed"
        stop_pid "$REDIS_PID"
    fi
fi

# ---- 2. telemetry cost: everything off vs metrics + access log + audit log + 10 % tracing ----
if section telemetry; then
    TEL=() TEL_OFF_PID="" TEL_FULL_PID="" SINK_PID=""
    REQ_BODY=$BODY
    ADDR_off=$TEL_OFF ADDR_full=$TEL_FULL
    ARGS_off=() ARGS_full=()
    if start_gateway telemetry-off $TEL_OFF $TEL_OFF_ADMIN "$HERE/scenarios/telemetry-off.yaml" \
        --audit-log off --access-log off; then
        TEL+=(off) TEL_OFF_PID=$SCEN_PID
    fi
    SINK_PORT=$(free_port)
    python3 "$HERE/otlp_sink.py" "$SINK_PORT" >"$WORK/otlp-sink.log" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_http "http://127.0.0.1:$SINK_PORT/stats" || log "telemetry: the OTLP sink did not start"
    mkdir -p "$WORK/telemetry"
    if start_gateway telemetry-full $TEL_FULL $TEL_FULL_ADMIN "$HERE/scenarios/telemetry-full.yaml" \
        --access-log "$WORK/telemetry/access.log" --audit-log "$WORK/telemetry/audit.log" \
        --otlp-endpoint "http://127.0.0.1:$SINK_PORT/v1/traces"; then
        TEL+=(full) TEL_FULL_PID=$SCEN_PID
    fi
    if ((${#TEL[@]} > 0)); then
        for v in "${TEL[@]}"; do eval "oha_warmup \"\$ADDR_$v\"" || true; done
        run_rounds rate tel "${TEL[@]}"
        run_rounds max tel "${TEL[@]}"
    fi
    if [[ -n $TEL_FULL_PID ]]; then
        meta telemetry metrics_lines "$(curl -sf -m 5 "http://$TEL_FULL_ADMIN/metrics" | grep -vc '^#' || true)"
        stop_pid "$TEL_FULL_PID" # flushes the queued spans
        meta telemetry access_log_lines "$(wc -l <"$WORK/telemetry/access.log" 2>/dev/null || echo 0)"
        meta telemetry audit_log_lines "$(wc -l <"$WORK/telemetry/audit.log" 2>/dev/null || echo 0)"
        stats=$(curl -sf -m 5 "http://127.0.0.1:$SINK_PORT/stats" || echo '{}')
        meta telemetry otlp_posts "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("posts", 0))' "$stats")"
        meta telemetry otlp_bytes "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("bytes", 0))' "$stats")"
    fi
    if [[ -n $TEL_OFF_PID ]]; then stop_pid "$TEL_OFF_PID"; fi
    stop_pid "$SINK_PID"
fi

# ---- 3. semantic cache hit path ----
if section cache; then
    MODEL_DIR=$ROOT/models/all-MiniLM-L6-v2
    if ! bash "$ROOT/models/fetch.sh" >"$WORK/fetch-model.log" 2>&1; then
        log "cache: models/fetch.sh failed (log tail below); the section is skipped"
        tail -5 "$WORK/fetch-model.log" >&2 || true
        meta cache note "models/fetch.sh failed; section skipped"
    elif start_gateway cache $CACHE_GW $CACHE_ADMIN "$HERE/scenarios/semantic-cache.yaml" --model-dir "$MODEL_DIR"; then
        CACHE_PID=$SCEN_PID
        log "cache: prime, then $CACHE_SEQUENTIAL sequential exact-prompt hits"
        timeout 120 "$PY" "$HERE/cache_client.py" --url "http://$CACHE_GW" --set exact --prime \
            --sequential "$CACHE_SEQUENTIAL" --duration 0 >"$WORK/cache-exact.json" || log "cache: exact-prompt client failed"
        REQ_BODY=$("$PY" "$HERE/cache_client.py" --url x --print-prompts)
        hits_before=$(metric $CACHE_ADMIN '^airgate_cache_requests_total[{].*result="hit"')
        all_before=$(metric $CACHE_ADMIN '^airgate_cache_requests_total[{]')
        log "cache: exact-prompt hits, $CACHE_CONNECTIONS connections, ${DURATION}s (oha)"
        oha_max max-cache-exact $CACHE_GW "$CACHE_CONNECTIONS" || log "cache: oha exact-prompt test failed"
        meta cache oha_hits "$(($(metric $CACHE_ADMIN '^airgate_cache_requests_total[{].*result="hit"') - hits_before))"
        meta cache oha_lookups "$(($(metric $CACHE_ADMIN '^airgate_cache_requests_total[{]') - all_before))"
        if start_gateway cache-core $CACHE_CORE $CACHE_CORE_ADMIN "$HERE/airgate-bench.yaml"; then
            log "cache: core path (fresh process) for comparison, $CACHE_CONNECTIONS connections, ${DURATION}s"
            REQ_BODY=$("$PY" "$HERE/cache_client.py" --url x --print-prompts) # the same request, uncached
            oha_warmup $CACHE_CORE || true
            oha_max max-cache-core $CACHE_CORE "$CACHE_CONNECTIONS" || log "cache: core test failed"
            stop_pid "$SCEN_PID"
        fi
        REQ_BODY=$BODY
        log "cache: paraphrase pool, $CACHE_SEQUENTIAL sequential + $CACHE_CONNECTIONS connections for ${DURATION}s"
        timeout $((DURATION + 120)) "$PY" "$HERE/cache_client.py" --url "http://$CACHE_GW" --set paraphrase \
            --sequential "$CACHE_SEQUENTIAL" --concurrency "$CACHE_CONNECTIONS" --duration "$DURATION" \
            >"$WORK/cache-para.json" || log "cache: paraphrase client failed"
        meta cache entries "$(metric $CACHE_ADMIN '^airgate_cache_entries')"
        stop_pid "$CACHE_PID"
    else
        meta cache note "the semantic-cache gateway did not start"
    fi
fi

# ---- 4. live configuration: req/s while the configuration is reloaded every second ----
if section reload; then
    REQ_BODY=$BODY
    RELOAD=() RELOAD_PID="" STEADY_PID="" WRITER_PID=""
    mkdir -p "$WORK/reload"
    cp "$HERE/airgate-bench.yaml" "$WORK/reload/gateway.yaml"
    if start_gateway reload-steady $RELOAD_STEADY $RELOAD_STEADY_ADMIN "$HERE/airgate-bench.yaml"; then
        RELOAD+=(steady) STEADY_PID=$SCEN_PID
    fi
    if start_gateway reloading $RELOAD_GW $RELOAD_ADMIN "$WORK/reload/gateway.yaml"; then
        RELOAD+=(reloading) RELOAD_PID=$SCEN_PID
    fi
    ADDR_steady=$RELOAD_STEADY ADDR_reloading=$RELOAD_GW
    ARGS_steady=() ARGS_reloading=()
    if ((${#RELOAD[@]} == 2)); then
        # new bytes every second, written aside and renamed over the file as editors and
        # GitOps syncs do: each one is a full reload (read, compile, swap)
        (
            i=0
            while :; do
                i=$((i + 1))
                { cat "$HERE/airgate-bench.yaml"; echo "# reload $i"; } >"$WORK/reload/.gateway.yaml.tmp"
                mv "$WORK/reload/.gateway.yaml.tmp" "$WORK/reload/gateway.yaml"
                sleep 1
            done
        ) &
        WRITER_PID=$!
        PIDS+=("$WRITER_PID")
        for v in "${RELOAD[@]}"; do eval "oha_warmup \"\$ADDR_$v\"" || true; done
        reloads_before=$(metric $RELOAD_ADMIN '^airgate_config_reloads_total[{]result="success"')
        run_rounds max reload "${RELOAD[@]}"
        meta reload reloads "$(($(metric $RELOAD_ADMIN '^airgate_config_reloads_total[{]result="success"') - reloads_before))"
        meta reload refused "$(metric $RELOAD_ADMIN '^airgate_config_reloads_total[{]result="failure"')"
        stop_pid "$WRITER_PID"
    fi
    if [[ -n $RELOAD_PID ]]; then stop_pid "$RELOAD_PID"; fi
    if [[ -n $STEADY_PID ]]; then stop_pid "$STEADY_PID"; fi
fi

# ---- 5. OpenAPI enforcement: the same API with and without its spec enforced ----
# Every round starts fresh processes (in rotated order): two identical gateway processes can
# differ by tens of µs per request for as long as they live (where their threads and
# connections land on this machine's two CPUs), which no number of requests to the same pair
# averages out. An identical twin of *none* measures that floor in the same rounds.
if section openapi; then
    REQ_PATH=/pay/v3/charges
    REQ_BODY=$(cat "$HERE/scenarios/specs/payment-body.json")
    ADDR_none=$OPENAPI_NONE ADDR_enforce=$OPENAPI_ENFORCE ADDR_twin=$OPENAPI_TWIN
    meta openapi body_bytes "$(printf '%s' "$REQ_BODY" | wc -c)"
    oas_start() { # VARIANT
        case $1 in
        none) start_gateway openapi-none $OPENAPI_NONE $OPENAPI_NONE_ADMIN "$HERE/scenarios/openapi-none.yaml" ;;
        twin) start_gateway openapi-twin $OPENAPI_TWIN $OPENAPI_TWIN_ADMIN "$HERE/scenarios/openapi-none.yaml" ;;
        enforce) start_gateway openapi-enforce $OPENAPI_ENFORCE $OPENAPI_ENFORCE_ADMIN "$HERE/scenarios/openapi-enforce.yaml" ;;
        esac
    }
    oas_paired() { # B OUT: paired.py none vs B
        timeout 300 python3 "$HERE/paired.py" --a "$OPENAPI_NONE" --b "$1" --path "$REQ_PATH" \
            --body-file "$HERE/scenarios/specs/payment-body.json" --pairs "$OPENAPI_PAIRS" >"$WORK/$2" ||
            { log "openapi: paired.py failed"; rm -f "$WORK/$2"; }
    }
    variants=(none enforce twin)
    violations=0
    for ((r = 1; r <= ROUNDS; r++)); do
        OAS_PIDS=() started=()
        for ((j = 0; j < 3; j++)); do
            v=${variants[$(((j + r - 1) % 3))]}
            if oas_start "$v"; then OAS_PIDS+=("$SCEN_PID") started+=("$v"); fi
        done
        if ((${#started[@]} == 3)); then
            if ((r == 1)); then
                # enforcement is on: the valid body passes, a wrong type and an undeclared path do not
                meta openapi status_valid "$(http_code "http://$OPENAPI_ENFORCE$REQ_PATH")"
                meta openapi status_invalid "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H 'content-type: application/json' \
                    -d '{"amount": "12999"}' "http://$OPENAPI_ENFORCE$REQ_PATH" || true)"
                meta openapi status_undeclared "$(http_code "http://$OPENAPI_ENFORCE/pay/v3/undeclared")"
            fi
            for v in none enforce; do eval "oha_warmup \"\$ADDR_$v\"" || true; done
            before=$(metric $OPENAPI_ENFORCE_ADMIN '^airgate_openapi_violations_total[{]')
            log "openapi: round $r/$ROUNDS, $OPENAPI_PAIRS paired sequential requests against enforce and against twin"
            oas_paired "$OPENAPI_ENFORCE" "paired-openapi.r$r.json"
            oas_paired "$OPENAPI_TWIN" "paired-twin.r$r.json"
            for v in none enforce; do
                log "openapi $v: round $r/$ROUNDS, $RATE req/s and max, ${ROUND_SECONDS}s each"
                OHA_SECONDS=$ROUND_SECONDS oha_rate "rate-openapi-$v.r$r" "$(eval echo "\$ADDR_$v")" || log "openapi $v: round $r failed"
                OHA_SECONDS=$ROUND_SECONDS oha_max "max-openapi-$v.r$r" "$(eval echo "\$ADDR_$v")" "$CONNECTIONS" || log "openapi $v: round $r failed"
            done
            violations=$((violations + $(metric $OPENAPI_ENFORCE_ADMIN '^airgate_openapi_violations_total[{]') - before))
        else
            log "openapi: round $r skipped, ${#started[@]} of 3 gateways started"
        fi
        for pid in "${OAS_PIDS[@]}"; do stop_pid "$pid"; done
    done
    meta openapi violations "$violations"
    REQ_PATH=/v1/chat/completions
    REQ_BODY=$BODY
fi

# ---- report ----
export LT_DURATION=$DURATION LT_RATE=$RATE LT_RATE_CONNECTIONS=$RATE_CONNECTIONS LT_CONNECTIONS=$CONNECTIONS \
    LT_TTFT_REQUESTS=$TTFT_REQUESTS LT_STREAMS=$STREAMS LT_STREAM_DELAY_MS=$STREAM_DELAY_MS \
    LT_STREAM_TOKENS=$STREAM_TOKENS LT_LOADGEN=$LOADGEN LT_GATEWAY_NOTE=$GATEWAY_NOTE \
    LT_CACHE_CONNECTIONS=$CACHE_CONNECTIONS LT_CACHE_SEQUENTIAL=$CACHE_SEQUENTIAL LT_FEATURES_NOTE=$FEATURES_NOTE \
    LT_ROUNDS=$ROUNDS LT_ROUND_SECONDS=$ROUND_SECONDS
LT_LOADGEN_VERSION=$([[ $LOADGEN == oha ]] && "$OHA" --version 2>/dev/null | head -1 || echo wrk)
LT_NGINX_VERSION=$([[ -n $NGINX_BIN ]] && "$NGINX_BIN" -v 2>&1 | head -1 || echo none)
export LT_LOADGEN_VERSION LT_NGINX_VERSION
status=0
python3 "$HERE/report.py" "$WORK" "$RESULTS" || status=$?
log "wrote $RESULTS"
cat "$RESULTS"
if [[ $status == 2 && $ENFORCE != 1 ]]; then status=0; fi
exit "$status"
