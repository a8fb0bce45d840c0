#!/usr/bin/env bash
# Whole `rotate-secrets` wall time against a real PostgreSQL 15 and a real supervisord
# whose stack-app is the real stack-entrypoint running the Node fixture servers
# (Tests/Fixtures/app) and whose cron-jobs is a loop, split into its steps (`--timings`), next to a same-run baseline:
# `supervisorctl restart stack-app cron-jobs` alone (what the shell version's dominant
# step cost; it returns at RUNNING, before Node listens).
#
#   Benchmarks/rotate-secrets.sh [ROUNDS]
#
# Prints, per step, the median over ROUNDS rotations (each to fresh keys), the median
# wall time of a whole run (process start to exit), the baseline's median and the
# ratios. The listen step waits for the new Node servers to bind their ports, which the
# baseline does not, so "without listen" is the like-for-like figure.
set -euo pipefail
rounds=${1:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pgbin=/usr/lib/postgresql/15/bin

echo "building rotate-secrets and stack-entrypoint (release)..." >&2
swift build -c release --product rotate-secrets >&2
swift build -c release --product stack-entrypoint >&2
bin="$(swift build -c release --show-bin-path)/rotate-secrets"
entrypoint="$(swift build -c release --show-bin-path)/stack-entrypoint"

work=$(mktemp -d /tmp/rotb.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    [ -f "$work/supervisord.pid" ] && kill -TERM "$(cat "$work/supervisord.pid")" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
wait_for() { # wait_for DESCRIPTION COMMAND...: 10 ms polls with backoff, 30 s bound
    local what=$1 delay=0.01; shift
    for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep "$delay"; delay=$(awk -v d="$delay" 'BEGIN{d*=2; if (d>0.2) d=0.2; print d}'); done
    echo "$what did not come up" >&2; exit 1
}

# PostgreSQL with the "ApiKeySet" table and the internal row on the placeholder keys.
mkdir -p "$work/pg" "$work/pgsock"
[ "$(id -u)" = 0 ] && chown nobody "$work/pg" "$work/pgsock"
as_owner "$pgbin/initdb" -D "$work/pg" -U postgres --auth-local=trust --auth-host=reject >/dev/null
as_owner "$pgbin/postgres" -D "$work/pg" -k "$work/pgsock" -c listen_addresses= >"$work/pg.log" 2>&1 &
pids+=($!)
wait_for PostgreSQL "$pgbin/pg_isready" -h "$work/pgsock" -U postgres
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work/pgsock" -U postgres "$@"; }
psql -c 'CREATE DATABASE stackframe'
psql -d stackframe <<'SQL'
CREATE TABLE "ApiKeySet" ("projectId" TEXT NOT NULL, "id" UUID NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "updatedAt" TIMESTAMP(3) NOT NULL, "description" TEXT NOT NULL, "expiresAt" TIMESTAMP(3) NOT NULL, "manuallyRevokedAt" TIMESTAMP(3),
  "publishableClientKey" TEXT, "secretServerKey" TEXT, "superSecretAdminKey" TEXT, CONSTRAINT "ApiKeySet_pkey" PRIMARY KEY ("projectId", "id"));
CREATE UNIQUE INDEX ON "ApiKeySet"("publishableClientKey");
CREATE UNIQUE INDEX ON "ApiKeySet"("secretServerKey");
CREATE UNIQUE INDEX ON "ApiKeySet"("superSecretAdminKey");
INSERT INTO "ApiKeySet" VALUES ('internal', '3142e763-b230-44b5-8636-aa62f7489c26', NOW(), NOW(), 'Internal API key set', '2099-12-31 23:59:59', NULL,
  '00000000000000000000000000000000ffffffffffffffffffffffffffffffff', '00000000000000000000000000000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee',
  '00000000000000000000000000000000dddddddddddddddddddddddddddddddd');
SQL
database="postgresql://postgres@/stackframe?host=$work/pgsock"

# The app tree as built (sentinels in it); stack-entrypoint's first start replaces them
# in place (WORK_DIR = the app tree, as in the emulator), the PCK by the placeholder.
mkdir -p "$work/app"
cp -R Tests/Fixtures/app/apps "$work/app/"
mkdir -m 700 "$work/state"
read -r backend_port dashboard_port < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

cat >"$work/cron-jobs.sh" <<EOF
set -a; [ -f "$work/state/rotated-secrets.env" ] && . "$work/state/rotated-secrets.env"; set +a
exec /bin/sh -c 'while :; do sleep 1; done'
EOF
cat >"$work/supervisord.conf" <<EOF
[unix_http_server]
file=$work/s.sock
chmod=0700
[supervisord]
nodaemon=true
logfile=$work/supervisord.log
pidfile=$work/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$work/s.sock
[program:stack-app]
command=$entrypoint --app-dir $work/app --work-dir $work/app --rotated-secrets $work/state/rotated-secrets.env
startsecs=0
autorestart=unexpected
stopasgroup=true
killasgroup=true
stopwaitsecs=10
environment=PATH="$PATH",NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR="true",STACK_SKIP_MIGRATIONS="true",STACK_SKIP_SEED_SCRIPT="true",STACK_RUNTIME_WORK_DIR="$work/app",STACK_DATABASE_CONNECTION_STRING="$database",BACKEND_PORT="$backend_port",DASHBOARD_PORT="$dashboard_port",STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY="00000000000000000000000000000000ffffffffffffffffffffffffffffffff",STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY="00000000000000000000000000000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY="00000000000000000000000000000000dddddddddddddddddddddddddddddddd"
[program:cron-jobs]
command=/bin/sh $work/cron-jobs.sh
startsecs=0
stopasgroup=true
killasgroup=true
EOF
supervisord -c "$work/supervisord.conf" >/dev/null 2>&1 &
pids+=($!)
wait_for supervisord supervisorctl -c "$work/supervisord.conf" status stack-app
wait_for "the backend" curl -sf "http://127.0.0.1:$backend_port/health"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%N | awk '{printf "%.3f", $1/1e6}'; }
: >"$work/steps"; : >"$work/wall"; : >"$work/baseline"
for _ in $(seq 1 "$rounds"); do
    start=$(now_ms)
    supervisorctl -c "$work/supervisord.conf" restart stack-app cron-jobs >/dev/null
    end=$(now_ms)
    awk -v a="$start" -v b="$end" 'BEGIN{print b-a}' >>"$work/baseline"
    wait_for "the backend" curl -sf "http://127.0.0.1:$backend_port/health"

    k1=$(openssl rand -hex 32); k2=$(openssl rand -hex 32); k3=$(openssl rand -hex 32); k4=$(openssl rand -hex 32)
    start=$(now_ms)
    (   # exported by the shell (no value on any command line)
        export STACK_RUNTIME_WORK_DIR="$work/app" STACK_DATABASE_CONNECTION_STRING="$database" \
            BACKEND_PORT="$backend_port" DASHBOARD_PORT="$dashboard_port"
        export STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY="$k1" STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY="$k2" \
            STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY="$k3" CRON_SECRET="$k4"
        exec "$bin" --timings --env-file-path "$work/state/rotated-secrets.env" --supervisor-socket "$work/s.sock" >"$work/run.log"
    )
    end=$(now_ms)
    awk -v a="$start" -v b="$end" 'BEGIN{print b-a}' >>"$work/wall"
    grep -o 'elapsed=[0-9.]* ms step=[a-z-]*' "$work/run.log" | sed 's/elapsed=\([0-9.]*\) ms step=\(.*\)/\2 \1/' >>"$work/steps"
done

echo "rotate-secrets, $rounds rotations (real PostgreSQL 15, supervisord, Node fixture servers); medians in ms:"
for step in prepare journal env-file rewrite sync database commit restart listen finish; do
    printf '  %-9s %8.1f\n' "$step" "$(awk -v s="$step" '$1==s {print $2}' "$work/steps" | median)"
done
wall=$(median <"$work/wall")
listen=$(awk '$1=="listen" {print $2}' "$work/steps" | median)
baseline=$(median <"$work/baseline")
printf '  %-9s %8.1f   (process start to exit)\n' "whole" "$wall"
printf 'baseline: supervisorctl restart stack-app cron-jobs: %.1f ms\n' "$baseline"
awk -v w="$wall" -v l="$listen" -v b="$baseline" 'BEGIN {
    printf "ratio whole/baseline: %.2f   ratio (whole - listen)/baseline: %.2f\n", w/b, (w-l)/b }'
