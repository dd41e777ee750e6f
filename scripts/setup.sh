#!/usr/bin/env bash
# Installs the Debian packages gsched needs, only those missing.
# Runs `apt-get update` at most once, and only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config g++ clang libclang-rt-dev
  libgrpc-dev protobuf-compiler-grpc grpc-proto
  libprotobuf-c-dev protobuf-c-compiler
  liburcu-dev libck-dev libbenchmark-dev libcmocka-dev
  python3 python3-grpcio python3-grpc-tools openssl
  gearman-job-server libgearman-dev beanstalkd gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing missing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
