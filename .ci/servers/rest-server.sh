# restic's rest-server, the REST backend tests' server. Sourced by .ci/install-tools.sh,
# which provides log, timed, find_go, $CACHE and the Go cache variables.
REST_SERVER_VERSION=v0.14.0

install_rest_server() {
  local bin=$CACHE/bin/rest-server go work
  go=$(find_go)
  if [ -x "$bin" ] && "$go" version -m "$bin" 2>/dev/null |
    grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+github.com/restic/rest-server[[:space:]]+$REST_SERVER_VERSION([[:space:]]|$)"; then
    log "rest-server $REST_SERVER_VERSION already built at $bin"
    return
  fi
  log "building rest-server $REST_SERVER_VERSION into $CACHE/bin with $("$go" version)"
  # Not "go install module@version": that also asks the proxy for the module's version list
  # (to look for a deprecation notice), which the proxy here refuses for rest-server. A
  # throwaway module that requires the pinned version builds the same program.
  work=$(mktemp -d)
  (
    cd "$work"
    "$go" mod init stowage-build/rest-server >/dev/null 2>&1
    printf 'require github.com/restic/rest-server %s\n' "$REST_SERVER_VERSION" >>go.mod
    timed "go build rest-server@$REST_SERVER_VERSION" \
      "$go" build -mod=mod -o "$bin" github.com/restic/rest-server/cmd/rest-server
  ) || { rm -rf "$work"; return 1; }
  rm -rf "$work"
  "$go" version -m "$bin" | grep -q "github.com/restic/rest-server" || {
    log "built $bin but it carries no github.com/restic/rest-server module version" >&2
    return 1
  }
}
