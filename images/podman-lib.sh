# Shared by images/container-test.sh and images/images-test.sh (sourced, after `cd` to the
# repository root, with CACHE, BASE, DEBIAN_MIRROR, step and die defined): the tools, podman's
# configuration for this kind of machine, the stand-in base image and the build options.
# shellcheck shell=bash

install_tools() {
  local missing=()
  for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return
  step "installing ${missing[*]} (apt-get)"
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install podman buildah runc debootstrap)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
}

# runc, not crun (crun refuses this machine's cgroup layout); ulimits no higher than the host's hard
# limits; cgroupfs and a file event log, since there is no systemd.
podman_config() {
  local nofile nproc
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 1024 ] && nofile=1024
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 1024 ] && nproc=1024
  cat >"$CACHE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF=$CACHE/containers.conf
}

# A stand-in for python:3.11-slim-bookworm: Debian bookworm's Python 3.11 as `python`/`pip`, with
# no EXTERNALLY-MANAGED marker, as the real image has. Tagged with the base's own name.
stand_in_base() {
  local tarball=$CACHE/bookworm-python311.tar root
  if [ ! -s "$tarball" ]; then
    step "debootstrap: a bookworm root file system with python3 (the stand-in base, once)"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      bookworm "$root" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { rm -rf "$root"; die "debootstrap failed, see $CACHE/debootstrap.log"; }
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  step "importing the stand-in base as $BASE"
  podman import -q --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tarball" "$BASE" >/dev/null
}

ensure_base() {
  podman image exists "$BASE" && return
  step "pulling $BASE"
  timeout 120 podman pull -q "$BASE" >/dev/null 2>&1 && return
  step "$BASE cannot be pulled here: building a stand-in"
  stand_in_base
}

# Pip inside the build: the host's CA bundle (for a TLS-inspecting proxy) and the host's on-disk
# wheel folders (pip's find-links: the CPU torch wheel) mounted in, and named through the
# Dockerfile's WHEEL_SOURCES instead of PyTorch's index. Without find-links, the Dockerfile's
# default (PyTorch's CPU index) stays.
build_options() {
  local cert links dir
  cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
  links=${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
  BUILD_OPTS=()
  if [ -n "$cert" ] && [ -f "$cert" ]; then
    printf '[global]\ncert = /etc/adg-build-ca.crt\n' >"$CACHE/pip.conf"
    BUILD_OPTS+=(-v "$cert:/etc/adg-build-ca.crt:ro" -v "$CACHE/pip.conf:/etc/pip.conf:ro")
  fi
  local sources=""
  for dir in $links; do
    [ -d "$dir" ] || continue
    BUILD_OPTS+=(-v "$dir:$dir:ro")
    sources+="--find-links $dir "
  done
  [ -n "$sources" ] && BUILD_OPTS+=(--build-arg "WHEEL_SOURCES=$sources")
  return 0
}


# A registry on loopback for `make images-test`: Debian's docker-registry (the CNCF distribution
# registry, the OCI distribution spec's reference implementation) on 127.0.0.1 and a free port,
# its storage in a temporary folder. Sets REGISTRY_ADDR (127.0.0.1:PORT) and REGISTRY_PID; the
# caller stops it and removes REGISTRY_DIR.
start_registry() {
  if ! command -v docker-registry >/dev/null; then
    [ "$(id -u)" = 0 ] || die "missing docker-registry: apt-get install docker-registry"
    step "installing docker-registry (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  REGISTRY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/adg-registry.XXXXXX")
  REGISTRY_ADDR=127.0.0.1:$port
  cat >"$REGISTRY_DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
CONF
  docker-registry serve "$REGISTRY_DIR/config.yml" >"$REGISTRY_DIR/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 50); do
    curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break
    kill -0 "$REGISTRY_PID" 2>/dev/null || die "the registry did not start: $(tail -3 "$REGISTRY_DIR/registry.log")"
    sleep 0.2
  done
  curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null || die "the registry does not answer on $REGISTRY_ADDR"
  step "registry $(docker-registry --version | awk '{print $2, $3}') on $REGISTRY_ADDR, storage in $REGISTRY_DIR"
}
