#!/usr/bin/env bash
# Install (when root) or list (otherwise) the system tools slipway's build and test lab need.
# Debian/Ubuntu package names. Safe to run repeatedly; installs only what is missing.
#   scripts/test-deps.sh            install missing packages (root) / list them (non-root)
#   scripts/test-deps.sh --check    only list, never install; exit 1 if anything is missing
set -euo pipefail

# command -> package. dnsmasq-base (NOT dnsmasq, which would start a system service).
# Podman end-to-end tests (test/e2e/podman.test.ts): rootless podman 4.3 needs runc (crun rejects
# the hybrid cgroup layout) and newuidmap/newgidmap (uidmap); its containers' root filesystem is
# built from busybox-static (a static busybox; it also satisfies udhcpc). ~15 s of CI install time.
declare -A PKG=(
  [ip]=iproute2 [ss]=iproute2 [unshare]=util-linux [setpriv]=util-linux [nsenter]=util-linux
  [iperf3]=iperf3 [dig]=dnsutils [udhcpc]=udhcpc [busybox]=busybox-static [slirp4netns]=slirp4netns
  [pasta]=passt [socat]=socat [tcpdump]=tcpdump [dnsmasq]=dnsmasq-base [ping]=iputils-ping
  [curl]=curl [python3]=python3 [make]=make [g++]=g++ [gcc]=gcc [ps]=procps
  [podman]=podman [runc]=runc [newuidmap]=uidmap [newgidmap]=uidmap
)
# Build essentials are checked as a package too (headers, libc-dev).
EXTRA_PKGS=(build-essential)

check_only=0
[[ "${1:-}" == "--check" ]] && check_only=1

missing_pkgs=()
missing_cmds=()
for cmd in "${!PKG[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
    missing_cmds+=("$cmd")
    missing_pkgs+=("${PKG[$cmd]}")
  fi
done
for p in "${EXTRA_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing_pkgs+=("$p")
  fi
done
# de-duplicate
mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sed '/^$/d' | sort -u)

if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
  echo "test-deps: all tools present"
  exit 0
fi

echo "test-deps: missing commands: ${missing_cmds[*]:-(none)}"
echo "test-deps: missing packages: ${missing_pkgs[*]}"

if [[ $check_only -eq 1 || $(id -u) -ne 0 ]]; then
  [[ $(id -u) -ne 0 ]] && echo "test-deps: not root; install them with: sudo apt-get install -y ${missing_pkgs[*]}"
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: apt-get not found; install these packages by hand: ${missing_pkgs[*]}" >&2
  exit 1
fi

echo "test-deps: installing: ${missing_pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"
echo "test-deps: installed: ${missing_pkgs[*]}"
