#!/usr/bin/env bash
# Measures the orchestrator on large subscriptions: time and peak memory for
# 1,000,000 share links (about 100 MB), and tag de-duplication with 40,000
# servers of one name. Not a test (wall time on a shared machine is noisy):
# run it by hand and copy the figures into the README.
#
# usage: scripts/orchestrator-scale.sh [LINKS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
links=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --example orchestrator --quiet
bin=target/release/examples/orchestrator

python3 - "$links" "$work/big.txt" "$work/same.txt" <<'PY'
import base64, json, sys
n, big, same = int(sys.argv[1]), sys.argv[2], sys.argv[3]
uuid = "6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f"
pbk = base64.urlsafe_b64encode(bytes([7] * 32)).decode().rstrip("=")
with open(big, "w") as f:
    for i in range(n):
        host = f"203.0.{(i >> 8) & 255}.{i & 255}"
        k = i % 4
        if k == 0:
            f.write(f"vless://{uuid}@{host}:443?security=reality&sni=www.example.com&pbk={pbk}&sid=0a{i % 100:02d}&fp=chrome&flow=xtls-rprx-vision#node-{i}\n")
        elif k == 1:
            f.write(f"trojan://secret-{i}@{host}:443?sni=t{i}.example.com&type=ws&path=%2Fws%3Fed%3D2048#node-{i}\n")
        elif k == 2:
            user = base64.urlsafe_b64encode(f"aes-256-gcm:pw{i}".encode()).decode().rstrip("=")
            f.write(f"ss://{user}@{host}:8388#node-{i}\n")
        else:
            vm = {"v": "2", "ps": f"node-{i}", "add": host, "port": 8443, "id": uuid, "aid": 0, "net": "grpc", "path": "svc", "tls": "tls"}
            f.write("vmess://" + base64.b64encode(json.dumps(vm).encode()).decode() + "\n")
with open(same, "w") as f:
    for i in range(40000):
        f.write(f"trojan://pw@203.0.{(i >> 8) & 255}.{i & 255}:443#Same\n")
PY

measure() { # name input
    local size
    size=$(stat -c %s "$2")
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" "$2" --output "$work/config.json" \
        --audit-log "$work/audit.jsonl" --max-bytes 1G >"$work/out" 2>"$work/err" || {
        cat "$work/err" >&2; exit 1; }
    read -r secs kib <"$work/time"
    awk -v n="$1" -v s="$size" -v t="$secs" -v k="$kib" 'BEGIN {
        printf "%-32s input %7.1f MB   %6.2f s   peak RSS %7.1f MB (%.2fx input)\n",
               n, s / 1e6, t, k * 1024 / 1e6, k * 1024 / s }'
}
measure "$links links" "$work/big.txt"
grep -E "servers|config" "$work/out"
measure "40000 servers named alike" "$work/same.txt"
