#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt (pinned, no dependencies resolved: the list
# names every one) for the GPU machine, which reaches no package index: cp312 manylinux x86-64
# builds into .whl/ (git-ignored; the device call carries it). Run from anywhere, where pip
# reaches PyPI:
#     bash benchmarks/fetch_gpu_wheels.sh                                # .whl/, Python 3.12
#     bash benchmarks/fetch_gpu_wheels.sh --python-version 3.11 --dest /tmp/whl311   # the CPU dry run
# PYTHON names the interpreter whose pip downloads (default python3); --list another list (the
# dry-run test fetches one with a name removed and checks that the missing module is reported).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=3.12
dest="$root/.whl"
list="$root/benchmarks/gpu_wheels.txt"
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) version="$2"; shift 2 ;;
        --dest) dest="$2"; shift 2 ;;
        --list) list="$2"; shift 2 ;;
        *) echo "usage: $0 [--python-version 3.12] [--dest DIR] [--list FILE]" >&2; exit 2 ;;
    esac
done
mapfile -t wheels < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
mkdir -p "$dest"
rm -f "$dest"/*.whl  # one version of each: two wheels of one package stop the install there
platforms=()
for p in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 \
         manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
done
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp "${platforms[@]}" -d "$dest" "${wheels[@]}"
ls "$dest"/*.whl | wc -l | xargs printf "%s wheels (Python $version) in $dest\n"
