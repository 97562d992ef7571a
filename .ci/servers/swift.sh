# OpenStack Swift for the Swift backend tests: Debian's python3-swift (the proxy, account,
# container and object servers as a Python library) plus memcached, which tempauth needs.
# test/servers/swift.ts builds the rings, writes the config files and starts a single-node
# cluster on 127.0.0.1 from these packages; nothing is built here.
# Sourced by .ci/install-tools.sh, which provides log and apt_install.

install_swift() {
  local missing=()
  /usr/bin/python3 -c 'import swift.common.ring, swift.proxy.server, swift.obj.server' >/dev/null 2>&1 || missing+=(python3-swift)
  command -v memcached >/dev/null 2>&1 || missing+=(memcached)
  if [ ${#missing[@]} -eq 0 ]; then
    log "swift: python3-swift $(/usr/bin/python3 -c 'import swift; print(swift.__version__)') and memcached already installed"
    return
  fi
  # The tests start their own memcached on a free port; a system one, if apt starts it, is unused.
  apt_install "${missing[@]}"
  /usr/bin/python3 -c 'import swift.common.ring, swift.proxy.server, swift.obj.server' || {
    log "python3-swift is installed but /usr/bin/python3 cannot import it" >&2
    return 1
  }
}
