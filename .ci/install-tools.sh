#!/usr/bin/env bash
# Installs the external tools the test suite talks to. Idempotent: every tool is checked
# first and only installed or built when missing or at the wrong version, so a warm run
# takes seconds. Build products live in $STOWAGE_CACHE (outside the repository) so they
# survive across clean clones on the same machine.
#
# Each tool has its own install_* function; add new ones (servers for backend tests) in
# the same style and call them from main at the bottom.
set -euo pipefail

CACHE=${STOWAGE_CACHE:-/var/cache/stowage}
RESTIC_019_VERSION=0.19.1

# Go keeps its module and build caches under $CACHE too, so a rebuild after a version
# bump does not download the world again.
export GOMODCACHE=$CACHE/go/mod
export GOCACHE=$CACHE/go/build
export GOPATH=$CACHE/go/path
# restic's release binaries are built without cgo; this also avoids needing a C compiler.
export CGO_ENABLED=0

log() { printf '[install-tools] %s\n' "$*"; }

now_ms() { date +%s%3N; }

# timed NAME CMD...: runs CMD and logs how long it took.
timed() {
  local name=$1 start elapsed
  shift
  start=$(now_ms)
  "$@"
  elapsed=$(( $(now_ms) - start ))
  log "$name took $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000)))s"
}

find_go() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
  else
    log "no Go toolchain found (looked on PATH and at /usr/local/go/bin/go)" >&2
    return 1
  fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    timed "apt-get update" apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  timed "apt-get install $*" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@"
}

# Debian 12's restic (0.14.0) is the "old restic" the suite checks compatibility with;
# attr gives setfattr/getfattr for the xattr fixtures; ca-certificates lets Go reach
# the module proxy over TLS.
install_apt_packages() {
  local missing=()
  [ -x /usr/bin/restic ] || missing+=(restic)
  { command -v setfattr && command -v getfattr; } >/dev/null 2>&1 || missing+=(attr)
  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  if [ ${#missing[@]} -eq 0 ]; then
    log "apt packages: restic, attr, ca-certificates already installed"
    return
  fi
  apt_install "${missing[@]}"
}

# The serve tests drive the server with clients nobody here wrote: rclone (WebDAV) and
# chromium (the web page, through puppeteer-core from npm).
install_serve_clients() {
  local missing=()
  command -v rclone >/dev/null 2>&1 || missing+=(rclone)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  if [ ${#missing[@]} -eq 0 ]; then
    log "serve clients: rclone, chromium already installed"
    return
  fi
  apt_install "${missing[@]}"
}

# restic 0.19.1 built from source through the Go module proxy (no prebuilt downloads).
install_restic_019() {
  local bin=$CACHE/bin/restic go
  if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "^restic $RESTIC_019_VERSION "; then
    log "restic $RESTIC_019_VERSION already built at $bin"
    return
  fi
  go=$(find_go)
  log "building restic $RESTIC_019_VERSION into $CACHE/bin with $("$go" version)"
  timed "go install restic@v$RESTIC_019_VERSION" \
    env GOBIN="$CACHE/bin" "$go" install "github.com/restic/restic/cmd/restic@v$RESTIC_019_VERSION"
  "$bin" version | grep -q "^restic $RESTIC_019_VERSION " || {
    log "built $bin but it does not report version $RESTIC_019_VERSION" >&2
    return 1
  }
}

main() {
  mkdir -p "$CACHE/bin"
  # One installer at a time per cache: two concurrent Go builds of the same module
  # would only compete for the 2 cores.
  exec 9>"$CACHE/.install.lock"
  if ! flock -n 9; then
    log "another install is running on $CACHE; waiting for it"
    flock 9
  fi
  timed "apt packages" install_apt_packages
  timed "serve clients" install_serve_clients
  timed "restic $RESTIC_019_VERSION" install_restic_019
  # Storage servers for the backend tests: one script each, sharing the helpers above.
  local script
  for script in "$(dirname "${BASH_SOURCE[0]}")"/servers/*.sh; do
    [ -e "$script" ] || continue
    # shellcheck source=/dev/null
    source "$script"
    timed "$(basename "$script" .sh)" "install_$(basename "$script" .sh | tr '-' '_')"
  done
}

start=$(now_ms)
main
log "all tools ready in $(( ($(now_ms) - start) / 1000 ))s"
