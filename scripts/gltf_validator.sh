#!/usr/bin/env bash
# The Khronos glTF validator (npm package gltf-validator, pinned), kept outside the checkout.
#
#   bash scripts/gltf_validator.sh install          # install once (idempotent, safe to run concurrently); prints its folder
#   bash scripts/gltf_validator.sh validate F.glb.. # print one JSON array: the validator's report per file
#
# The package lives in ${SMPLERX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smpler-x}/gltf-validator-<version>; a folder
# without the `.complete` marker is an interrupted install and is redone. `validate` exits 3 (and installs nothing)
# when Node.js or the validator is missing, so callers can tell "not installed" from "invalid file" (exit 0 with the
# reports: the caller reads numErrors) or a crash (other codes). Needs Node.js >= 14 and npm; `install` run as root
# installs them from Debian's packages when they are missing.
set -euo pipefail
VERSION="2.0.0-dev.3.10"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${SMPLERX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smpler-x}"
dir="$root/gltf-validator-$VERSION"

case "${1:-}" in
  install)
    if ! command -v npm >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then  # CI on a fresh machine runs as root
        echo "[gltf-validator] installing Node.js and npm (Debian packages)" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
      else
        echo "error: npm not found; install Node.js (>= 14) and npm (Debian: apt-get install nodejs npm)" >&2
        exit 1
      fi
    fi
    mkdir -p "$root"
    (
      flock 9
      if [ ! -f "$dir/.complete" ]; then
        echo "[gltf-validator] installing gltf-validator@$VERSION into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --no-package-lock --loglevel=error \
          "gltf-validator@$VERSION" >&2
        touch "$dir/.complete"
      fi
    ) 9>"$root/.lock-gltf-validator-$VERSION"
    echo "$dir"
    ;;
  validate)
    shift
    [ "$#" -ge 1 ] || { echo "usage: $0 validate FILE.glb [FILE.glb ...]" >&2; exit 2; }
    command -v node >/dev/null || { echo "Node.js not found (needed by the glTF validator)" >&2; exit 3; }
    [ -f "$dir/.complete" ] || { echo "gltf-validator $VERSION not installed: run bash scripts/gltf_validator.sh install" >&2; exit 3; }
    exec node "$here/gltf_validate.cjs" "$dir/node_modules/gltf-validator" "$@"
    ;;
  *)
    echo "usage: $0 install | validate FILE.glb [FILE.glb ...]" >&2
    exit 2
    ;;
esac
