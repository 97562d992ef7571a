# MinIO, the S3 server the S3 backend tests run against. Sourced by .ci/install-tools.sh,
# which provides log, timed, find_go, $CACHE and the Go cache variables.
#
# MinIO publishes RELEASE.* tags that are not semantic versions, so the Go module proxy
# only knows its commits as pseudo-versions. This one is the last commit of the community
# repository (RELEASE.2025-10-15T17-29-55Z plus its follow-up fixes, 2026-02-12).
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

install_minio() {
  local bin=$CACHE/bin/minio go
  go=$(find_go)
  # go install builds carry their module version in the binary; "minio --version" does not.
  if [ -x "$bin" ] && "$go" version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/minio/minio[[:space:]]+$MINIO_VERSION([[:space:]]|$)"; then
    log "minio $MINIO_VERSION already built at $bin"
    return
  fi
  log "building minio $MINIO_VERSION into $CACHE/bin with $("$go" version)"
  timed "go install minio@$MINIO_VERSION" \
    env GOBIN="$CACHE/bin" "$go" install "github.com/minio/minio@$MINIO_VERSION"
  "$go" version -m "$bin" | grep -q "github.com/minio/minio" || {
    log "built $bin but it carries no github.com/minio/minio module version" >&2
    return 1
  }
}
