#!/usr/bin/env bash
# Makes build/hot-symbols.txt: the functions of the hookmirror binary that a daemon runs, which
# build.rs asks the linker to place together at the start of .text (fewer resident code pages;
# README, Performance (e)).
#
#   build/hot-symbols.sh [path/to/release/hookmirror]     (default: builds target/release)
#
# Needs valgrind, git, nginx, fcgiwrap, openssh-server, openssl, python3. Runs on 127.0.0.1 only,
# as root (nginx, sshd), in a temp folder it removes. About 3 minutes.
#
# The scenario is what a daemon does: the release binary runs `serve` under callgrind (which
# records every function that runs) twice — first with no checkout (clones), then restarted with
# every checkout present (fetches) — with repositories over git:// (git daemon), https://
# (nginx + fcgiwrap + git http-backend over TLS with a test CA and a token), ssh:// (a private
# sshd, ed25519 key, strict known_hosts) and file://; during each run a commit is pushed and
# signed webhooks from GitHub and GitLab arrive, then the API, /metrics, the status page and the
# health endpoints are read. The list keeps the executed functions that are symbols of the
# binary, sorted by name (the linker places them in that order; sorted, a new list differs from
# the old one only where the code did). Re-run it after larger changes: a function missing from
# the list (a renamed one) only lands elsewhere in .text, it is never an error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-}"
if [[ -z "$BIN" ]]; then
  (cd "$ROOT" && cargo build --release --locked --quiet)
  BIN="$ROOT/target/release/hookmirror"
fi
T="$(mktemp -d "${TMPDIR:-/tmp}/hookmirror-hot.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  [[ -f "$T/sshd.pid" ]] && kill "$(cat "$T/sshd.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$T"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=(git -c user.name=hot -c user.email=hot@example.invalid -c init.defaultBranch=main)

# The origin: 60 files in 6 folders, 40 commits.
"${G[@]}" init -q --bare "$T/srv/origin.git"
"${G[@]}" init -q "$T/work"
for c in $(seq 1 40); do
  for f in $(seq 1 60); do
    [[ $c -eq 1 || $((f % 13)) -eq $((c % 13)) ]] || continue
    mkdir -p "$T/work/d$((f % 6))"
    printf 'file %s commit %s\n%0300d\n' "$f" "$c" 0 > "$T/work/d$((f % 6))/f$f.txt"
  done
  "${G[@]}" -C "$T/work" add -A
  "${G[@]}" -C "$T/work" commit -q -m "commit $c"
done
"${G[@]}" -C "$T/work" push -q "$T/srv/origin.git" HEAD:main
push_commit() {
  echo "change $(date +%s%N)" >> "$T/work/d1/f1.txt"
  "${G[@]}" -C "$T/work" commit -q -am change
  "${G[@]}" -C "$T/work" push -q "$T/srv/origin.git" HEAD:main
  "${G[@]}" -C "$T/work" rev-parse HEAD
}

# git://
GPORT=$(free_port)
setsid git daemon --reuseaddr --listen=127.0.0.1 --port="$GPORT" --base-path="$T/srv" \
  --export-all "$T/srv" > /dev/null 2>&1 &
PIDS+=($!)

# https:// (nginx + fcgiwrap + git http-backend, TLS with a test certificate)
HPORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
setsid /usr/sbin/fcgiwrap -c 2 -s "unix:$T/fcgi.sock" &
PIDS+=($!)
cat > "$T/nginx.conf" <<EOF
user root;
daemon off;
pid $T/nginx.pid;
error_log $T/nginx.err;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $T/nb; proxy_temp_path $T/np; fastcgi_temp_path $T/nf;
  uwsgi_temp_path $T/nu; scgi_temp_path $T/ns;
  server {
    listen 127.0.0.1:$HPORT ssl;
    ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:$T/fcgi.sock;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT $T/srv;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO \$uri;
    }
  }
}
EOF
setsid nginx -c "$T/nginx.conf" &
PIDS+=($!)

# ssh:// (a private sshd)
SPORT=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$T/userkey"
cp "$T/userkey.pub" "$T/authorized_keys"
cat > "$T/sshd_config" <<EOF
Port $SPORT
ListenAddress 127.0.0.1
HostKey $T/hostkey
AuthorizedKeysFile $T/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $T/sshd.pid
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -f "$T/sshd_config" -E "$T/sshd.log"
echo "[127.0.0.1]:$SPORT $(cut -d' ' -f1,2 "$T/hostkey.pub")" > "$T/known_hosts"

# hookmirror
PORT=$(free_port)
TOKEN=hot-symbols-api-token-0123456789
SECRET=hot-symbols-webhook-secret
{
  echo "listen: 127.0.0.1:$PORT"
  echo "workers: 4"
  echo "initialise: true"
  echo "log: {format: text, level: info, output: $T/hookmirror.log}"
  echo "api: {token: $TOKEN}"
  echo "repos:"
  for i in 1 2 3 4; do
    echo "  - {name: git$i, url: 'git://127.0.0.1:$GPORT/origin.git', directory: '$T/c/git$i', branch: main, secret: $SECRET}"
    echo "  - {name: https$i, url: 'https://127.0.0.1:$HPORT/origin.git', directory: '$T/c/https$i', branch: main, secret: $SECRET, provider: gitlab, auth: {username: hot, token: glpat-hot, ca_file: '$T/cert.pem'}}"
    echo "  - {name: ssh$i, url: 'ssh://root@127.0.0.1:$SPORT$T/srv/origin.git', directory: '$T/c/ssh$i', branch: main, secret: $SECRET, auth: {ssh_key: '$T/userkey', known_hosts: '$T/known_hosts'}}"
  done
  echo "  - {name: file1, url: 'file://$T/srv/origin.git', directory: '$T/c/file1', branch: main, secret: $SECRET}"
} > "$T/hookmirror.yaml"

api() { curl -fsS -H "Authorization: Bearer $TOKEN" "${@:2}" "http://127.0.0.1:$PORT$1"; }
wait_synced() { # every repository synced once since the start, none busy
  for _ in $(seq 1 600); do
    if api /api/repos 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["repos"]
sys.exit(0 if all(x["syncs"] >= 1 and x["state"] == "idle" and x["last_error"] is None for x in r) else 1)' 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "hot-symbols: the repositories did not sync: $(api /api/repos)" >&2
  return 1
}
webhooks() { # $1: the pushed commit
  python3 - "$PORT" "$SECRET" "$1" "$GPORT" "$HPORT" <<'EOF'
import hashlib, hmac, json, sys, urllib.request
port, secret, after, gport, hport = sys.argv[1:]
def post(path, body, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        print("webhook", path, e.code, file=sys.stderr)
gh = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": after,
    "repository": {"clone_url": f"git://127.0.0.1:{gport}/origin.git", "full_name": "hot/origin"}}).encode()
sig = "sha256=" + hmac.new(secret.encode(), gh, hashlib.sha256).hexdigest()
post("/hooks/git1", gh, {"Content-Type": "application/json", "X-GitHub-Event": "push",
    "X-GitHub-Delivery": "hot-" + after[:12], "X-Hub-Signature-256": sig})
gl = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "before": "0" * 40, "after": after,
    "project": {"git_http_url": f"https://127.0.0.1:{hport}/origin.git"}}).encode()
post("/hooks/https1", gl, {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook",
    "X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": "hot-gl-" + after[:12]})
EOF
}

OUT="$T/callgrind"
for round in 1 2; do
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$OUT.$round" \
    "$BIN" serve -c "$T/hookmirror.yaml" > "$T/serve.$round.out" 2>&1 &
  VG=$!
  wait_synced
  webhooks "$(push_commit)"
  sleep 3
  api /api/repos/ssh1/sync -X POST > /dev/null
  sleep 3
  wait_synced
  for p in /api/repos /api/repos/git1 /api/repos/git1/history /metrics / /healthz /readyz; do
    api "$p" > /dev/null
  done
  kill -TERM "$VG"
  wait "$VG" || true
done

python3 - "$BIN" "$OUT.1" "$OUT.2" > "$ROOT/build/hot-symbols.txt" <<'EOF'
import re, subprocess, sys
nm = subprocess.run(["nm", "--defined-only", sys.argv[1]], capture_output=True, text=True, check=True)
code = {p[2] for p in (l.split() for l in nm.stdout.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
ran = set()
for path in sys.argv[2:]:
    ran.update(re.findall(r"^c?fn=\(\d+\) (.+)$", open(path).read(), re.M))
# Sorted, so that a new list differs from the old one only where the code did.
print("\n".join(sorted(ran & code)))
EOF
echo "hot-symbols: $(wc -l < "$ROOT/build/hot-symbols.txt") functions -> build/hot-symbols.txt" >&2
