#!/usr/bin/env bash
# Whole-process `scepd enroll` (fresh RSA-2048 key) vs micromdm scepclient,
# against the same local scepserver. A report, not a test: always exits 0
# unless the harness itself cannot run.
set -euo pipefail

cd "$(dirname "$0")/.."            # repo root, so the default SCEPD resolves
SCEPD=${SCEPD:-.venv/bin/scepd}
RUNS=10
CHALLENGE=bench-secret
TARGET=1.30

[[ -x $SCEPD ]] || { echo "no scepd at $SCEPD (create .venv or set SCEPD)" >&2; exit 2; }
for b in scepclient scepserver curl python3 openssl; do
    command -v "$b" >/dev/null || { echo "missing $b" >&2; exit 2; }
done
# GNU time gives peak RSS (%M); bash's `time` keyword cannot.
if [[ ! -x /usr/bin/time ]]; then
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq time >/dev/null
    else echo "need /usr/bin/time (Debian package time)" >&2; exit 2; fi
fi

WORK=$(mktemp -d)
SRV_PID=
cleanup() { if [[ -n $SRV_PID ]]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT

# Free port: let the kernel pick one (small race until scepserver binds it).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/scep
scepserver ca -init -depot "$WORK/depot" >"$WORK/ca.log" 2>&1
# -allowrenew 0 so a repeated DN would not be refused (CNs are unique anyway).
scepserver -depot "$WORK/depot" -port "$PORT" -challenge "$CHALLENGE" -allowrenew 0 \
    >"$WORK/server.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 100); do
    curl -sf "$URL?operation=GetCACaps" >/dev/null && break
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 2; }
    sleep 0.1
done
curl -sf "$URL?operation=GetCACaps" >/dev/null || { echo "scepserver not answering" >&2; exit 2; }

# Monotonic wall time of the whole process (incl. interpreter start-up);
# argv[1] gets the command's output; GNU time inside writes "%e %M" to DIR/time.
TIMER='import subprocess,sys,time
log=open(sys.argv[1],"w"); t=time.monotonic()
rc=subprocess.run(sys.argv[2:],stdout=log,stderr=subprocess.STDOUT).returncode
print(f"{time.monotonic()-t:.4f}"); sys.exit(rc)'

# run TOOL N: enroll in a fresh directory; prints "wall rss ok|FAIL".
run() {
    local tool=$1 n=$2 dir=$WORK/$1-$2 wall rss rc=0
    mkdir "$dir"
    if [[ $tool == scepd ]]; then
        printf '%s\n' "$CHALLENGE" >"$dir/challenge"
        set -- "$SCEPD" enroll --url "$URL" --key "$dir/key.pem" --cert "$dir/cert.pem" \
            --subject "CN=bench-scepd-$n" --challenge-file "$dir/challenge"
    else
        set -- scepclient -server-url "$URL" -private-key "$dir/key.pem" \
            -certificate "$dir/cert.pem" -cn "bench-client-$n" -challenge "$CHALLENGE"
    fi
    wall=$(python3 -c "$TIMER" "$dir/log" /usr/bin/time -f '%e %M' -o "$dir/time" "$@") || rc=$?
    # Last line of the -o file is "%e %M" (a non-zero exit adds a line before it).
    rss=$(awk 'END{print $2+0}' "$dir/time" 2>/dev/null || echo 0)
    # Success = exit 0 and a parseable certificate actually written (checked untimed).
    if [[ $rc -eq 0 && -s $dir/cert.pem ]] && openssl x509 -in "$dir/cert.pem" -noout 2>/dev/null; then
        echo "${wall:-nan} $rss ok"
    else
        echo "$tool run $n failed (rc=$rc):" >&2; tail -n 5 "$dir/log" >&2
        echo "${wall:-nan} $rss FAIL"
    fi
}

mkdir -p bench/out
OUT=bench/out/enroll-$(date +%Y%m%dT%H%M%S).txt
{ echo "# scepd enroll vs scepclient, $RUNS alternating runs, $(date -Is)"
  echo "# scepd=$SCEPD scepclient=$(command -v scepclient) server=$URL"
  echo "# tool run wall_s peak_rss_kib status"; } >"$OUT"

printf '%-4s %-10s %9s %10s  %-4s\n' run tool wall_s rss_kib ok
for n in $(seq "$RUNS"); do
    for tool in scepd scepclient; do
        read -r wall rss st < <(run "$tool" "$n")
        printf '%-4s %-10s %9s %10s  %-4s\n' "$n" "$tool" "$wall" "$rss" "$st"
        echo "$tool $n $wall $rss $st" >>"$OUT"
    done
done

# Medians over successful runs only; peak RSS = max over those runs.
python3 - "$OUT" "$TARGET" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
target = float(sys.argv[2])
ok = {t: [r for r in rows if r[0] == t and r[4] == "ok"] for t in ("scepd", "scepclient")}
for t, rs in ok.items():
    fails = sum(1 for r in rows if r[0] == t) - len(rs)
    if fails: print(f"{t}: {fails} failed run(s) excluded")
if not all(ok.values()):
    print("no successful runs for one tool: cannot compare (FAIL)"); sys.exit(0)
med = {t: statistics.median(float(r[2]) for r in rs) for t, rs in ok.items()}
rss = {t: max(int(r[3]) for r in rs) for t, rs in ok.items()}
ratio = med["scepd"] / med["scepclient"]
verdict = "PASS" if ratio <= target else "FAIL"
lines = [f"scepd median {med['scepd']:.3f}s  scepclient median {med['scepclient']:.3f}s  "
         f"ratio {ratio:.2f} (target <= {target:.2f}: {verdict})",
         f"peak RSS scepd {rss['scepd']} KiB  scepclient {rss['scepclient']} KiB"]
print("\n".join(lines))
with open(sys.argv[1], "a") as f: f.write("".join("# " + l + "\n" for l in lines))
EOF
echo "raw numbers: $OUT"
