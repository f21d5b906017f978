#!/usr/bin/env bash
# Install nflow's build and test dependencies from Debian packages (Debian 12, as root or with sudo).
# (Open MPI is optional for building — CMake enables `mpirun -np N nflow train` when it finds it — and
# installed here so that the data-parallel tests run.)
set -euo pipefail
PKGS=(build-essential cmake pkgconf libopenblas-dev libdnnl-dev libpng-dev libjpeg-dev zlib1g-dev libcjson-dev libcmocka-dev dataset-fashion-mnist
      python3-numpy python3-pytest python3-sklearn libopenmpi-dev openmpi-bin
      clang-14 libclang-rt-14-dev libomp-14-dev) # clang: the libFuzzer targets (scripts/fuzz.sh, tests/fuzz)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
