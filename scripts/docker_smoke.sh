#!/usr/bin/env bash
# Docker smoke test of bida on a machine without registry access (run before each release).
#
#   sudo scripts/docker_smoke.sh [--ref REF] [--keep]
#
# 1. makes sure a Docker engine answers (installs docker.io and starts dockerd if needed);
# 2. builds a local base image without a registry: debootstrap a minimal Debian from the
#    mirror apt already uses, then `docker import` it as bida-base:local;
# 3. builds bida:<version> from the working tree (or from git REF) on that base, with the
#    CPU build of torch (a local wheel from pip's find-links when there is one);
# 4. runs the image read-only, as uid 1000, without network, on the demo dataset (made by the
#    image itself) and checks: --version prints the version file, non-root user, labels,
#    derivatives + sidecars + dataset_description, outputs owned by the caller's uid, the
#    BIDS dir untouched, nothing written outside /out except the caches under /tmp/.cache.
#
# Options:   --ref REF   build from a commit or tag (git archive) instead of the working tree
#            --keep      keep the dockerd this script started, and the smoke folder
# Environment: SMOKE_DIR (default /tmp/bida-smoke), BASE_IMAGE (use this base, skip
#   debootstrap), REBUILD_BASE=1, DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: apt's),
#   TORCH_SPEC, TORCH_INDEX, SMOKE_UID (1000), BIDA_REPO (default: this script's checkout).
# Ends with "docker smoke: OK" and exit 0, or the first failed check and exit 1.
set -euo pipefail

REPO=${BIDA_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SMOKE_DIR=${SMOKE_DIR:-/tmp/bida-smoke}
SUITE=${DEBIAN_SUITE:-bookworm}
BASE_TAG=bida-base:local
SMOKE_UID=${SMOKE_UID:-1000}
REF=""
KEEP=0
STARTED_DOCKERD=""

while [[ $# -gt 0 ]]; do
    case $1 in
        --ref) REF=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
done

log() { printf '[smoke %(%H:%M:%S)T] %s\n' -1 "$*"; }
fail() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
    if [[ -n $STARTED_DOCKERD && $KEEP -eq 0 ]]; then
        log "stopping the dockerd started by this script (pid $STARTED_DOCKERD)"
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
}
trap cleanup EXIT

[[ $(id -u) -eq 0 ]] || fail "run as root (apt-get, dockerd, debootstrap, chown)"
mkdir -p "$SMOKE_DIR"

apt_install() {  # apt_install PACKAGE...; output in $SMOKE_DIR/apt.log
    {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get install -y -q "$@"
    } >>"$SMOKE_DIR/apt.log" 2>&1 || fail "apt-get install $*: see $SMOKE_DIR/apt.log"
}

# ------------------------------------------------------------------ 1. a Docker engine
wait_for_docker() {
    local _
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 1
    done
    return 1
}

start_dockerd() {  # start_dockerd [extra dockerd args...]
    local logf=$SMOKE_DIR/dockerd.log
    log "starting dockerd $* (log: $logf)"
    dockerd --iptables=false --bridge=none --data-root "$SMOKE_DIR/docker" \
        --pidfile "$SMOKE_DIR/dockerd.pid" "$@" >>"$logf" 2>&1 &
    STARTED_DOCKERD=$!
    if wait_for_docker "$STARTED_DOCKERD"; then
        return 0
    fi
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    wait "$STARTED_DOCKERD" 2>/dev/null || true
    STARTED_DOCKERD=""
    return 1
}

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        log "using the running Docker engine"
        return
    fi
    if ! command -v dockerd >/dev/null; then
        log "installing docker.io"
        apt_install docker.io
    fi
    start_dockerd || start_dockerd --storage-driver=vfs \
        || fail "dockerd does not start; last lines of $SMOKE_DIR/dockerd.log:
$(tail -n 20 "$SMOKE_DIR/dockerd.log")"
    log "Docker engine up: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}')"
}

# ------------------------------------------------------------------ 2. local base image
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    # shellcheck disable=SC2016  # $(REPO_URI) is apt's format field, not a shell expansion
    uri=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' \
        "Release: $SUITE" 'Created-By: Packages' 2>/dev/null | head -n 1)
    echo "${uri:-http://deb.debian.org/debian/}"
}

build_base() {
    if [[ -n ${BASE_IMAGE:-} ]]; then
        log "using BASE_IMAGE=$BASE_IMAGE"
        return
    fi
    BASE_IMAGE=$BASE_TAG
    if [[ ${REBUILD_BASE:-0} != 1 ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
        log "reusing $BASE_TAG (REBUILD_BASE=1 makes a new one)"
        return
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs=$SMOKE_DIR/rootfs mirror
    mirror=$(debian_mirror)
    rm -rf "$rootfs"
    log "debootstrap $SUITE from $mirror (minbase, a few minutes)"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$mirror" \
        >"$SMOKE_DIR/debootstrap.log" 2>&1 || fail "debootstrap: see $SMOKE_DIR/debootstrap.log"
    # The base trusts what this host trusts (a TLS-inspecting proxy's CA, for instance) and
    # pip uses the system CA bundle; both are properties of this machine, not of the image.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs/debootstrap"
    log "docker import -> $BASE_TAG"
    tar --numeric-owner -C "$rootfs" -c . | docker import - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
}

# ------------------------------------------------------------------ 3. the bida image
find_local_torch() {  # print a local torch wheel matching TORCH_SPEC's version, if any
    local want=${TORCH_SPEC:-torch==2.13.0} dirs dir
    want=${want#torch==}
    dirs="${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true)"
    for dir in $dirs; do
        dir=${dir#file://}
        [[ -d $dir ]] || continue
        compgen -G "$dir/torch-${want}+cpu-cp311-*.whl" | head -n 1 && return 0
    done
    return 0
}

stage_context() {
    local ctx=$SMOKE_DIR/context
    rm -rf "$ctx"
    mkdir -p "$ctx/.whl"
    if [[ -n $REF ]]; then
        log "build context: git archive $REF"
        git -C "$REPO" archive "$REF" | tar -x -C "$ctx"
    else
        log "build context: working tree (tracked + untracked, not ignored)"
        (cd "$REPO" && git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do [[ -f $f ]] && printf '%s\0' "$f"; done \
            | tar --null -T - -c) | tar -x -C "$ctx"
    fi
    local wheel
    wheel=$(find_local_torch)
    if [[ -n $wheel ]]; then
        cp "$wheel" "$ctx/.whl/"
        local base
        base=$(basename "$wheel")
        TORCH_SPEC="torch==$(cut -d- -f2 <<<"$base")"
        log "torch: local wheel $base"
    else
        TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
        TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
        log "torch: $TORCH_SPEC from $TORCH_INDEX"
    fi
    CONTEXT=$ctx
}

build_image() {
    VERSION=$(tr -d '[:space:]' <"$CONTEXT/version")
    IMAGE=bida:$VERSION
    local rev t0
    rev=$(git -C "$REPO" rev-parse --short "${REF:-HEAD}")
    [[ -z $REF && -n $(git -C "$REPO" status --porcelain) ]] && rev="$rev-dirty"
    log "docker build $IMAGE on $BASE_IMAGE (log: $SMOKE_DIR/build.log)"
    t0=$SECONDS
    docker build --network host \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "TORCH_SPEC=$TORCH_SPEC" \
        --build-arg "TORCH_INDEX=${TORCH_INDEX:-}" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "VCS_REF=$rev" \
        -t "$IMAGE" "$CONTEXT" >"$SMOKE_DIR/build.log" 2>&1 \
        || fail "docker build; last lines of $SMOKE_DIR/build.log:
$(tail -n 30 "$SMOKE_DIR/build.log")"
    BUILD_S=$((SECONDS - t0))
    log "built $IMAGE in ${BUILD_S}s, $(docker image inspect -f '{{.Size}}' "$IMAGE" \
        | awk '{printf "%.2f GB", $1/1e9}')"
}

# ------------------------------------------------------------------ 4. checks
run_ro() {  # the hardened way users run it: read-only image, no network, unprivileged uid
    docker run --rm --read-only --tmpfs /tmp --network none -u "$SMOKE_UID:$SMOKE_UID" "$@"
}

check_image() {
    local got user entry label
    got=$(run_ro "$IMAGE" --version)
    [[ $got == "bida $VERSION" ]] || fail "--version printed '$got', version file says $VERSION"
    log "ok: --version -> $got"
    user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
    [[ -n $user && $user != root && $user != 0 && $user != 0:* ]] \
        || fail "image USER is '$user' (must be non-root)"
    got=$(docker run --rm --network none --entrypoint id "$IMAGE" -u)
    [[ $got != 0 ]] || fail "default user has uid 0"
    entry=$(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")
    label=$(docker image inspect \
        -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")
    [[ $label == "$VERSION" ]] || fail "label org.opencontainers.image.version='$label'"
    log "ok: USER $user (uid $got), ENTRYPOINT $entry, version label $label"
    if docker run --rm --network none --entrypoint sh "$IMAGE" -c \
        'command -v gcc || command -v cc || command -v make' >/dev/null 2>&1; then
        fail "build tools in the final image"
    fi
    log "ok: no compiler or make in the final image"
}

check_demo_run() {
    local run=$SMOKE_DIR/run
    rm -rf "$run"
    mkdir -p "$run/demo" "$run/out" "$run/tmp"
    chown "$SMOKE_UID:$SMOKE_UID" "$run/demo" "$run/out"
    chmod 1777 "$run/tmp"

    log "demo dataset made by the image: bida demo-data"
    run_ro -v "$run/demo:/demo" "$IMAGE" demo-data /demo/bids >"$run/demo.log" 2>&1 \
        || fail "demo-data: $(tail -n 5 "$run/demo.log")"
    local before after
    before=$(cd "$run/demo/bids" && find . -type f -print0 | sort -z | xargs -0 sha256sum)

    log "participant level: read-only image, bids_dir :ro, uid $SMOKE_UID, no network"
    local name=bida-smoke-$$ t0 rc=0
    t0=$SECONDS
    docker run --name "$name" --read-only --network none -u "$SMOKE_UID:$SMOKE_UID" \
        -v "$run/demo/bids:/data:ro" -v "$run/out:/out" -v "$run/tmp:/tmp" \
        "$IMAGE" /data /out participant >"$run/participant.log" 2>&1 || rc=$?
    PART_S=$((SECONDS - t0))
    local diff  # (the mount points themselves are created by Docker, not by bida)
    diff=$(docker diff "$name" | grep -v -x -E '[AC] /(data|out|tmp)' || true)
    docker rm "$name" >/dev/null
    [[ $rc -eq 0 ]] || fail "participant level exited $rc:
$(tail -n 20 "$run/participant.log")"
    log "ok: participant level exit 0 in ${PART_S}s"
    [[ -z $diff ]] || fail "container wrote into its own filesystem: $diff"
    log "ok: docker diff empty"

    after=$(cd "$run/demo/bids" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    [[ $before == "$after" ]] || fail "the BIDS directory changed"
    log "ok: BIDS directory unchanged"

    local stray
    stray=$(cd "$run/tmp" && find . -mindepth 1 ! -path './.cache' ! -path './.cache/*')
    [[ -z $stray ]] || fail "written in /tmp outside /tmp/.cache: $stray"
    log "ok: /tmp holds only caches ($(cd "$run/tmp" && find . -type f | wc -l) files)"

    stray=$(find "$run/out" ! -uid "$SMOKE_UID")
    [[ -z $stray ]] || fail "outputs not owned by uid $SMOKE_UID: $stray"
    log "ok: every output owned by uid $SMOKE_UID"

    # Derivatives, checked with the image's own Python (nibabel) from the outputs alone.
    docker run --rm --read-only --tmpfs /tmp --network none -u "$SMOKE_UID:$SMOKE_UID" \
        -v "$run/out:/out:ro" -e "EXPECT_TAG=$IMAGE" --entrypoint python "$IMAGE" -c '
import json, os
from pathlib import Path
import nibabel as nib
import numpy as np

out = Path("/out")
desc = json.loads((out / "dataset_description.json").read_text())
assert desc["DatasetType"] == "derivative", desc
gen = desc["GeneratedBy"][0]
assert gen["Container"] == {"Type": "docker", "Tag": os.environ["EXPECT_TAG"]}, gen
status = json.loads((out / "logs" / "bida_status.json").read_text())
assert status, "empty bida_status.json"
bad = [s for s in status if s["status"] not in ("done", "skipped-isotropic")]
assert not bad, bad
done = sorted(out.glob("sub-*/**/anat/*_desc-*_T2w.nii.gz"))
assert len(done) == sum(s["status"] == "done" for s in status) > 0, (done, status)
for path in done:
    side = json.loads(Path(str(path)[: -len(".nii.gz")] + ".json").read_text())
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    zooms = img.header.get_zooms()[:3]
    assert data.ndim == 3 and np.isfinite(data).all() and data.std() > 0, path
    assert max(zooms) / min(zooms) < 1.5, (path, zooms)
    assert side, path
    print(f"{path.relative_to(out)}: {data.shape}, voxels {tuple(round(float(z), 3) for z in zooms)}")
print(f"{len(done)} derivatives ok, {len(status) - len(done)} runs skipped as isotropic")
' || fail "derivative checks"
    log "ok: derivatives, sidecars, dataset_description (Container docker $IMAGE)"

    log "group level"
    run_ro -v "$run/demo/bids:/data:ro" -v "$run/out:/out" "$IMAGE" /data /out group \
        >"$run/group.log" 2>&1 || fail "group level: $(tail -n 5 "$run/group.log")"
    log "ok: group level exit 0"
}

ensure_docker
build_base
stage_context
build_image
check_image
check_demo_run
log "docker smoke: OK ($IMAGE, build ${BUILD_S}s, participant ${PART_S}s)"
[[ $KEEP -eq 1 ]] || rm -rf "$SMOKE_DIR/context" "$SMOKE_DIR/run"
