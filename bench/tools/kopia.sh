#!/usr/bin/env bash
# Builds kopia at a pinned version for the bench (bench/run.ts's kopia rows) into
# $STOWAGE_CACHE/bin/kopia (default /var/cache/stowage/bin/kopia). Only the bench uses it:
# CI and .ci/run do not. Cached: does nothing when the binary there already carries the
# pinned module version.
#
# Not "go install github.com/kopia/kopia@VERSION": that asks the Go module proxy for the
# module's version list too, which the proxy here refuses for kopia. A throwaway module
# that requires the pinned version builds the same program (as .ci/servers/rest-server.sh
# does for rest-server).
set -euo pipefail

KOPIA_VERSION=v0.21.1
CACHE=${STOWAGE_CACHE:-/var/cache/stowage}
BIN=$CACHE/bin/kopia

export GOMODCACHE=$CACHE/go/mod
export GOCACHE=$CACHE/go/build
export GOPATH=$CACHE/go/path
# kopia's release binaries are static; no C compiler needed.
export CGO_ENABLED=0

log() { printf '[kopia.sh] %s\n' "$*" >&2; }

if command -v go >/dev/null 2>&1; then GO=$(command -v go)
elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
else log "no Go toolchain found (looked on PATH and at /usr/local/go/bin/go)"; exit 1
fi

has_version() {
  [ -x "$BIN" ] && "$GO" version -m "$BIN" 2>/dev/null |
    grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/kopia/kopia[[:space:]]+$KOPIA_VERSION([[:space:]]|$)"
}

if has_version; then
  log "kopia $KOPIA_VERSION already built at $BIN"
  exit 0
fi

mkdir -p "$CACHE/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$GO" mod init stowage-build/kopia >/dev/null 2>&1
printf 'require github.com/kopia/kopia %s\n' "$KOPIA_VERSION" >>go.mod
log "building kopia $KOPIA_VERSION into $BIN with $("$GO" version)"
start=$(date +%s)
"$GO" build -mod=mod -trimpath -o "$BIN.partial" github.com/kopia/kopia
mv "$BIN.partial" "$BIN"
log "built in $(( $(date +%s) - start ))s: $("$BIN" --version 2>&1 | head -1)"
has_version || { log "built $BIN but it carries no github.com/kopia/kopia $KOPIA_VERSION module version"; exit 1; }
