#!/usr/bin/env bash
# Make sure the project's virtual environment exists and `.venv` in the checkout points to it.
#
# The environment (torch with CUDA libraries is ~5.5 GB) lives outside the checkout, in
#   ${SMPLERX_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/smpler-x}/venv-<hash of requirements.txt + python>
# so a fresh clone, or a CI rerun, reuses it instead of reinstalling torch. Editing requirements.txt
# changes the hash and builds a new one. A build that did not finish has no `.complete` marker and is
# rebuilt from scratch on the next call. Usage: `source scripts/env.sh` or `bash scripts/env.sh`.
set -euo pipefail
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_python="${PYTHON:-python3}"
command -v "$_python" >/dev/null || { echo "error: $_python not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1; }
_pyver="$("$_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$_pyver" in
  3.10|3.11|3.12|3.13) ;;
  *) echo "error: Python $_pyver is not supported (need 3.10-3.13; torch 2.14.1 wheels are tested on 3.11). Set PYTHON=/path/to/python3.11" >&2; exit 1 ;;
esac
_key="$( (cat "$_repo/requirements.txt"; echo "$_pyver"; uname -m) | sha256sum | cut -c1-12)"
_root="${SMPLERX_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/smpler-x}"
_venv="$_root/venv-$_key"
mkdir -p "$_root"
(
  flock 9
  if [ ! -f "$_venv/.complete" ]; then
    echo "[env] building $_venv (first run only; installs torch, takes a few minutes)" >&2
    rm -rf "$_venv"
    "$_python" -m venv "$_venv"
    # (pip warns once per package about this machine's local mirror folders; those lines are dropped)
    "$_venv/bin/python" -m pip install --quiet -r "$_repo/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2) >&2
    touch "$_venv/.complete"
  fi
) 9>"$_root/.lock-$_key"
if [ -L "$_repo/.venv" ] || [ ! -e "$_repo/.venv" ]; then
  ln -sfn "$_venv" "$_repo/.venv"
elif [ "$(readlink -f "$_repo/.venv")" != "$(readlink -f "$_venv")" ]; then
  echo "[env] note: $_repo/.venv is a real folder, not the cached environment; leaving it alone and using it" >&2
fi
export SMPLERX_PYTHON="$_repo/.venv/bin/python"
