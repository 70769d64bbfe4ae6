#!/usr/bin/env bash
# Idempotent set-up: every dependency of the suite is installed by this file.
# A second run installs nothing new; each step is skipped when its stamp is current.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$ROOT/.venv"
TOXIPROXY_TAG="v2.12.0"
ACTIONLINT_TAG="v1.7.12"
WANT="${1:-all}"   # all | test | drill

say() { printf '[setup] %s\n' "$*"; }
die() { printf '\n[setup] ERROR: %s\n' "$1" >&2; shift; for hint in "$@"; do printf '         - %s\n' "$hint" >&2; done; exit 1; }

mkdir -p "$TOOLS/bin"

apt_install() {
  # Installs Debian packages; needs root (or sudo) and a reachable Debian mirror.
  local pkgs=("$@")
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root to install ${pkgs[*]}" \
      "run this set-up as root or install sudo" "or install the packages yourself: apt-get install -y ${pkgs[*]}"
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; cannot install ${pkgs[*]}" \
    "install them with your package manager" "or use CHAOS_ENV=docker / CHAOS_ENV=external"
  if [ ! -f "$TOOLS/.apt-updated" ]; then
    $sudo apt-get update -qq && touch "$TOOLS/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
}

# 1. Python >= 3.11 and the virtualenv.
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python3 not found" "install Python 3.11 or newer" "or set PYTHON=/path/to/python3.11"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is required ($("$PY" --version 2>&1) found)" \
  "install Python 3.11 or newer" "or set PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv .venv"
  "$PY" -m venv "$VENV"
fi
stamp_py="$TOOLS/.pip-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp_py" ]; then
  say "installing Python dependencies"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  rm -f "$TOOLS"/.pip-* && touch "$stamp_py"
fi

# 2. PostgreSQL server binaries (15 or newer).
find_pg_bindir() {
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}
PG_BIN="$(find_pg_bindir || true)"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  say "installing PostgreSQL server (apt-get install postgresql)"
  apt_install postgresql postgresql-contrib
  PG_BIN="$(find_pg_bindir)"
fi
[ -x "$PG_BIN/initdb" ] || die "initdb not found after installing postgresql" "install PostgreSQL 15+ server binaries" "or set CHAOS_ENV=docker"
pg_major="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)\..*/\1/')"
[ "$pg_major" -ge 15 ] || die "PostgreSQL $pg_major found; 15 or newer is required" "apt-get install postgresql-15 (or newer)"
echo "$PG_BIN" > "$TOOLS/pg_bindir"

# 3. Go tools: toxiproxy-server and actionlint at pinned tags.
go_tool() {  # name module tag binary-name-after-install [ldflags]
  local name="$1" module="$2" tag="$3" built="$4" ldflags="${5:-}"
  local want="$TOOLS/bin/$name"
  local stamp="$TOOLS/.$name-$tag-$(printf '%s' "$ldflags" | sha256sum | cut -c1-8)"
  if [ -x "$want" ] && [ -f "$stamp" ]; then return; fi
  command -v go >/dev/null 2>&1 || die "go not found; needed to build $name $tag" \
    "install Go 1.22+ (apt-get install golang-go, or from go.dev)" \
    "or put a $name binary on PATH as $want" "or use CHAOS_ENV=docker"
  say "building $name $tag with go install"
  local gobin; gobin="$(mktemp -d)"
  GOBIN="$gobin" GOFLAGS=-mod=mod go install -ldflags "$ldflags" "$module@$tag"
  mv "$gobin/$built" "$want"
  rm -rf "$gobin"
  rm -f "$TOOLS/.$name-"* && touch "$stamp"
}
# The version is stamped in, as the release build does; a plain go install reports "git".
go_tool toxiproxy-server github.com/Shopify/toxiproxy/v2/cmd/server "$TOXIPROXY_TAG" server \
  "-X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_TAG#v}"
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_TAG" actionlint

# 4. Node packages: the Allure CLI and the pinned Baileys (for format checks).
command -v npm >/dev/null 2>&1 || die "npm not found; needed for the Allure CLI and Baileys checks" \
  "apt-get install nodejs npm (Node 18+)" "or install Node.js from nodejs.org"
stamp_npm="$TOOLS/.npm-$(cat "$ROOT/package.json" "$ROOT/package-lock.json" 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp_npm" ] || [ ! -d "$ROOT/node_modules" ]; then
  say "installing Node packages (npm ci)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  rm -f "$TOOLS"/.npm-* && touch "$stamp_npm"
fi
# The Node twin of the bridge (bridges/node) has its own lockfile; Baileys it takes from the root install.
twin="$ROOT/bridges/node"
stamp_twin="$TOOLS/.twin-$(cat "$twin/package.json" "$twin/package-lock.json" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp_twin" ] || [ ! -d "$twin/node_modules" ]; then
  say "installing the Node twin's packages (npm ci in bridges/node)"
  (cd "$twin" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  rm -f "$TOOLS"/.twin-* && touch "$stamp_twin"
fi
command -v java >/dev/null 2>&1 || { say "installing a Java runtime for the Allure CLI"; apt_install default-jre-headless; }

# 5. Headless Chromium to check the HTML report as a person would see it: the drill checks its report,
# and the tests check the checker (tests/test_reports_html.py), so both need it.
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian chromium (headless report check)"
  apt_install chromium
fi
say "ready (PostgreSQL $pg_major at $PG_BIN, toxiproxy $TOXIPROXY_TAG, actionlint $ACTIONLINT_TAG)"
