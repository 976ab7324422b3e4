#!/usr/bin/env bash
# Prepare this machine for swarmd's test suite (docs/DESIGN.md §8).
#
# The end-to-end tests drive real swarmd processes with the real docker CLI, and the docker
# executor needs a real Docker Engine. No container registry is reachable, so the images the
# tests reference are built locally from Debian's busybox-static. This script:
#
#   1. installs the Debian packages the tests need (only those missing);
#   2. starts dockerd in the background if no engine answers on /var/run/docker.sock
#      (no systemd is assumed: this may run inside a container or a bare VM);
#   3. imports busybox:latest (also tagged alpine:latest and alpine:3.10) if missing;
#   4. checks that a container runs and that port publishing works;
#   5. checks that network namespaces can be made: e2e_machines runs a second Docker Engine
#      in one (crates/testkit Machine: ip netns, a veth, nsenter/unshare, mount, nft).
#
# It is idempotent and takes about a second when everything is already in place.
# Environment knobs:
#   SWARMD_CI_DOCKERD_LOG   dockerd's log file (default /tmp/swarmd-ci-dockerd.log)
#   SWARMD_CI_ENGINE_WAIT   seconds to wait for dockerd to answer (default 60)
set -euo pipefail

readonly ENGINE_HOST=unix:///var/run/docker.sock
readonly DOCKERD_LOG=${SWARMD_CI_DOCKERD_LOG:-/tmp/swarmd-ci-dockerd.log}
readonly ENGINE_WAIT=${SWARMD_CI_ENGINE_WAIT:-60}
# iproute2, util-linux (nsenter, unshare) and mount: the second "machine" of e2e_machines.
# docker-compose (1.29.2) and python3-docker (docker-py): real clients of `swarmd manage`
# in e2e_classic_compose. faketime (libfaketime): clock jumps of one swarmd in scripts/chaos;
# e2fsprogs: the ext4 on each chaos node's loop-device disk.
readonly PACKAGES=(docker.io busybox-static iproute2 curl procps nftables util-linux mount
	docker-compose python3-docker faketime e2fsprogs)
readonly IMAGE=busybox:latest
readonly IMAGE_ALIASES=(alpine:latest alpine:3.10)
# dockerd flag sets to try, in order. The defaults (overlay2, iptables-managed port publishing)
# are what the tests expect; vfs is the fallback for file systems where overlay2 cannot work
# (e.g. overlay-on-overlay inside a container). Disabling iptables is never an option: published
# ports would silently stop working.
readonly DOCKERD_FLAG_SETS=("" "--storage-driver=vfs")

log() { printf '[ci-setup] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "not root and sudo is missing"
	SUDO=(sudo)
fi

# The docker CLI always gets an explicit -H so an inherited DOCKER_HOST (which may point at a
# swarmd under test) never redirects setup commands.
engine() { docker -H "$ENGINE_HOST" "$@"; }
engine_up() { engine info >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------------------------

pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# A package counts as present when dpkg has it, or (for docker.io) when an equivalent engine
# is already installed from elsewhere, e.g. docker-ce, which conflicts with docker.io.
pkg_needed() {
	local pkg=$1
	pkg_installed "$pkg" && return 1
	case $pkg in
	docker.io) ! { command -v docker >/dev/null && { command -v dockerd >/dev/null || engine_up; }; } ;;
	*) return 0 ;;
	esac
}

# True when apt has no install candidate for one of the arguments (empty or stale lists).
apt_lists_lack() {
	local pkg policy
	for pkg in "$@"; do
		policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
		[[ $policy =~ Candidate:\ [^\(] ]] || return 0
	done
	return 1
}

install_packages() {
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		pkg_needed "$pkg" && missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local apt_log=/tmp/swarmd-ci-apt.log
	: >"$apt_log"
	if apt_lists_lack "${missing[@]}"; then
		log "apt lists lack a candidate; running apt-get update"
		"${SUDO[@]}" apt-get update >>"$apt_log" 2>&1 || die "apt-get update failed; see $apt_log"
	fi
	# Wait for a concurrent apt/dpkg (e.g. unattended-upgrades) instead of failing at once.
	local install=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}")
	if ! "${install[@]}" >>"$apt_log" 2>&1; then
		# Stale lists point at files the mirror no longer has: refresh once and retry.
		log "apt-get install failed; running apt-get update and retrying"
		"${SUDO[@]}" apt-get update >>"$apt_log" 2>&1 || die "apt-get update failed; see $apt_log"
		"${install[@]}" >>"$apt_log" 2>&1 || die "apt-get install ${missing[*]} failed; see $apt_log"
	fi
}

# ---------------------------------------------------------------------------------------------
# 2. Docker Engine
# ---------------------------------------------------------------------------------------------

# Poll `docker info` until it answers or `$1` seconds pass; stops early (fails) if the dockerd
# with pid `$2` (optional) exits.
wait_engine() {
	local timeout=$1 pid=${2:-} deadline
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		engine_up && return 0
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.2
	done
	engine_up
}

STARTED_PID=

# Start dockerd with the given flags, detached into its own session so it outlives this
# script (and the test run). Returns non-zero if it does not answer within ENGINE_WAIT.
start_dockerd() {
	local flags=("$@")
	log "starting dockerd ${flags[*]:-(default flags)}; log: $DOCKERD_LOG"
	printf '\n=== %s: dockerd %s\n' "$(date -Is)" "${flags[*]}" >>"$DOCKERD_LOG"
	"${SUDO[@]}" setsid nohup dockerd "${flags[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
	STARTED_PID=$!
	# With sudo, $! is sudo's pid; find dockerd's own pid through its pid file once it exists.
	if wait_engine "$ENGINE_WAIT" "$STARTED_PID"; then
		log "dockerd is up (pid $(cat /var/run/docker.pid 2>/dev/null || echo "$STARTED_PID"))"
		return 0
	fi
	log "dockerd ${flags[*]:-(default flags)} did not come up; last log lines:"
	tail -n 15 "$DOCKERD_LOG" >&2 || true
	stop_dockerd
	return 1
}

# Stop the dockerd this script started (never one it did not start).
stop_dockerd() {
	[[ -n $STARTED_PID ]] || return 0
	local pid=$STARTED_PID deadline
	deadline=$((SECONDS + 20))
	STARTED_PID=
	"${SUDO[@]}" kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
	"${SUDO[@]}" kill -KILL "$pid" 2>/dev/null || true
	# Wait for the socket to go away so the next attempt does not see the old daemon.
	while engine_up && ((SECONDS < deadline)); do sleep 0.2; done
}

# If the iptables alternative is nft-based but the kernel lacks nf_tables, docker's bridge
# driver fails at start; switch to the legacy backend (a no-op when not applicable).
maybe_switch_iptables_legacy() {
	command -v update-alternatives >/dev/null || return 1
	[[ -x /usr/sbin/iptables-legacy ]] || return 1
	[[ $(readlink -f /usr/sbin/iptables 2>/dev/null) == *nft* ]] || return 1
	grep -qiE 'iptables|nf_tables|nftables' "$DOCKERD_LOG" || return 1
	/usr/sbin/iptables-legacy -t nat -L -n >/dev/null 2>&1 || return 1
	log "iptables-nft looks broken here; switching the iptables alternative to iptables-legacy"
	"${SUDO[@]}" update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
	"${SUDO[@]}" update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# 3. Test images
# ---------------------------------------------------------------------------------------------

ROOTFS_TMP=
trap '[[ -z $ROOTFS_TMP ]] || rm -rf "$ROOTFS_TMP"' EXIT

images_present() { engine image inspect "$IMAGE" "${IMAGE_ALIASES[@]}" >/dev/null 2>&1; }

busybox_binary() {
	local path
	path=$(dpkg -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1 || true)
	[[ -n $path && -x $path ]] || path=$(command -v busybox || true)
	[[ -n $path ]] || die "no busybox binary found"
	if ldd "$path" >/dev/null 2>&1; then
		die "$path is dynamically linked; the test image needs busybox-static"
	fi
	printf '%s\n' "$path"
}

build_images() {
	local busybox rootfs applet
	busybox=$(busybox_binary)
	rootfs=$(mktemp -d /tmp/swarmd-ci-rootfs.XXXXXX)
	ROOTFS_TMP=$rootfs
	log "building $IMAGE from $busybox"

	mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,home,dev,proc,sys}
	chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
	chmod 700 "$rootfs/root"
	cp "$busybox" "$rootfs/bin/busybox"
	# Like the official busybox image: every applet in /bin...
	for applet in $("$busybox" --list); do
		[[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
	done
	# ...and also at its canonical path (/usr/bin/env, /sbin/ip, ...) so shebangs and
	# absolute paths written for other distributions work too.
	for applet in $("$busybox" --list-full); do
		[[ $applet == bin/* ]] || ln -sf /bin/busybox "$rootfs/$applet"
	done
	cat >"$rootfs/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/bin/false
	EOF
	cat >"$rootfs/etc/group" <<-'EOF'
		root:x:0:
		nobody:x:65534:
	EOF

	tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
		engine import \
			--change 'CMD ["sh"]' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'LABEL org.swarmd.ci-image=busybox-static' \
			--message 'swarmd CI image built from Debian busybox-static' \
			- "$IMAGE" >/dev/null
	local alias
	for alias in "${IMAGE_ALIASES[@]}"; do engine tag "$IMAGE" "$alias"; done
	rm -rf "$rootfs"
	ROOTFS_TMP=
}

# ---------------------------------------------------------------------------------------------
# 4. Checks
# ---------------------------------------------------------------------------------------------

check_run() {
	local out
	out=$(engine run --rm "$IMAGE" echo ok 2>&1) || {
		log "docker run failed: $out"
		return 1
	}
	[[ $out == ok ]] || {
		log "docker run printed '$out', expected 'ok'"
		return 1
	}
}

# Publish a port on loopback and fetch a page through it: proves the engine's NAT/proxy setup
# works with the flags it runs with.
check_port_publishing() {
	local cid port body="" deadline rc=1
	cid=$(engine run -d --rm -p 127.0.0.1::80 "$IMAGE" \
		sh -c 'mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www' 2>&1) || {
		log "docker run -p failed: $cid"
		return 1
	}
	port=$(engine port "$cid" 80/tcp | head -n1)
	port=${port##*:}
	deadline=$((SECONDS + 20))
	while ((SECONDS < deadline)); do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null || true)
		if [[ $body == published ]]; then
			rc=0
			break
		fi
		sleep 0.2
	done
	engine rm -f "$cid" >/dev/null 2>&1 || true
	((rc == 0)) || log "port publishing failed: 127.0.0.1:$port answered '$body'"
	return "$rc"
}

# A network namespace with a veth into it, made and removed: what crates/testkit's Machine
# needs besides the engine. A warning only: the tests that need it fail with the reason.
check_netns() {
	local ns="swarmd-ci-$$" ok=1
	"${SUDO[@]}" ip netns add "$ns" 2>/dev/null || ok=0
	if ((ok)); then
		"${SUDO[@]}" ip link add "swci$$" type veth peer name eth0 netns "$ns" 2>/dev/null || ok=0
		"${SUDO[@]}" ip link del "swci$$" 2>/dev/null || true
		"${SUDO[@]}" ip netns del "$ns" 2>/dev/null || true
	fi
	((ok)) || log "WARNING: cannot make a network namespace with a veth here; e2e_machines will fail"
}

ensure_images_and_check() {
	images_present || build_images
	check_run && check_port_publishing
}

# ---------------------------------------------------------------------------------------------

main() {
	local t0=$SECONDS
	install_packages

	# A dockerd that is still starting (e.g. launched by a concurrent run) gets time to answer
	# before we try to start another one.
	if ! engine_up && pgrep -x dockerd >/dev/null; then
		log "a dockerd is running but not answering yet; waiting"
		wait_engine "$ENGINE_WAIT" || die "dockerd (pid $(pgrep -x dockerd | xargs)) does not answer on $ENGINE_HOST"
	fi

	if engine_up; then
		ensure_images_and_check || die "the running Docker Engine cannot run the test images (see above)"
	else
		local flags ok=0 round
		for round in 1 2; do
			for flags in "${DOCKERD_FLAG_SETS[@]}"; do
				# shellcheck disable=SC2086 # the flag set is a word list
				start_dockerd $flags || continue
				if ensure_images_and_check; then
					ok=1
					break 2
				fi
				stop_dockerd
			done
			# A second round only if switching the iptables backend might help.
			if ((round == 2)) || ! maybe_switch_iptables_legacy; then break; fi
		done
		((ok)) || die "could not start a working Docker Engine; see $DOCKERD_LOG"
	fi
	check_netns
	log "ready: engine $(engine version -f '{{.Server.Version}}'), images $IMAGE ${IMAGE_ALIASES[*]} ($((SECONDS - t0)) s)"
}

main "$@"
