# fake-gcs-server: an in-memory / on-disk Google Cloud Storage server (JSON and XML APIs)
# for the GCS backend tests and for restic's gs backend (through STORAGE_EMULATOR_HOST).
# Sourced by .ci/install-tools.sh, which provides log, timed, find_go, $CACHE and the Go env.

FAKE_GCS_SERVER_VERSION=1.56.1

# The binary records the module version it was built from; `go version -m` reads it back,
# which is how a rebuild after a version bump is detected.
fake_gcs_server_built_version() {
  local bin=$1 go=$2
  "$go" version -m "$bin" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/fsouza/fake-gcs-server" { print $3 }'
}

install_fake_gcs_server() {
  local bin=$CACHE/bin/fake-gcs-server go
  go=$(find_go)
  if [ -x "$bin" ] && [ "$(fake_gcs_server_built_version "$bin" "$go")" = "v$FAKE_GCS_SERVER_VERSION" ]; then
    log "fake-gcs-server $FAKE_GCS_SERVER_VERSION already built at $bin"
    return
  fi
  log "building fake-gcs-server $FAKE_GCS_SERVER_VERSION into $CACHE/bin with $("$go" version)"
  timed "go install fake-gcs-server@v$FAKE_GCS_SERVER_VERSION" \
    env GOBIN="$CACHE/bin" "$go" install "github.com/fsouza/fake-gcs-server@v$FAKE_GCS_SERVER_VERSION"
  [ "$(fake_gcs_server_built_version "$bin" "$go")" = "v$FAKE_GCS_SERVER_VERSION" ] || {
    log "built $bin but it does not report module version v$FAKE_GCS_SERVER_VERSION" >&2
    return 1
  }
}
