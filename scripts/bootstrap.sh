#!/usr/bin/env bash
# Installs the Debian packages that building Weir needs besides Rust, with
# apt-get, and only those that are missing. Run it once on a new machine:
#
#   scripts/bootstrap.sh              install what is missing, say what it installs
#   scripts/bootstrap.sh --dry-run    only say what it would install
#   scripts/bootstrap.sh PKG...       the same, plus these packages (scripts/test.sh
#                                     passes the JDK and Maven this way)
#
# Why: the rdkafka crate builds librdkafka from its bundled C sources with
# CMake (the `cmake-build` feature) and links the system's zlib, zstd,
# OpenSSL (TLS, SCRAM, OAUTHBEARER), Cyrus SASL (GSSAPI/Kerberos, PLAIN) and
# libcurl (OAUTHBEARER OIDC token requests). Everything else (protoc
# included, from protoc-bin-vendored) comes from crates.io.
#
# Works as root, or through sudo otherwise. Needs a Debian-like system
# (apt-get, dpkg-query); elsewhere it names what to install by hand.
set -euo pipefail

# The build's Debian packages, one a line. A package is installed unless
# dpkg already has it; "a|b|c" means any of them will do (the first is the
# one installed), for packages that conflict with their other flavours. To
# add one, add a line here: the README, scripts/test.sh and deploy/Dockerfile
# use this list.
BUILD_PACKAGES=(
    gcc        # cc: the linker rustc calls, and the C compiler of cc-rs and CMake
    g++        # librdkafka's CMake project enables C++ (it has a C++ API)
    make       # CMake's default generator (Unix Makefiles)
    libc6-dev  # C headers and crt files (only recommended by gcc, so named here)
    cmake      # librdkafka's build (rdkafka's cmake-build feature)
    pkg-config # how the -sys crates (and librdkafka's CMake) find system libraries
    zlib1g-dev # zlib for librdkafka (rdkafka's libz feature) and libz-sys
    libzstd-dev  # zstd compression in librdkafka (rdkafka's zstd-pkg-config feature)
    libssl-dev   # TLS, SASL/SCRAM and OAUTHBEARER in librdkafka (rdkafka's ssl feature)
    libsasl2-dev # Cyrus SASL: GSSAPI (Kerberos) and PLAIN in librdkafka (rdkafka's gssapi feature)
    # libcurl: librdkafka's OAUTHBEARER OIDC token requests (rdkafka's curl
    # feature). Any flavour links; the OpenSSL one matches librdkafka's TLS.
    "libcurl4-openssl-dev|libcurl4-gnutls-dev|libcurl4-nss-dev"
)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

dry_run=0
extra=()
for arg in "$@"; do
    case "$arg" in
    -n | --dry-run) dry_run=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "bootstrap: unknown option $arg (see $0 --help)" >&2
        exit 2
        ;;
    *) extra+=("$arg") ;;
    esac
done

say() { echo "bootstrap: $*" >&2; }
die() {
    echo "bootstrap: error: $*" >&2
    exit 1
}

wanted=("${BUILD_PACKAGES[@]}" ${extra[@]+"${extra[@]}"})

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    die "apt-get/dpkg-query not found: this script installs Debian packages. On another system install the equivalents of: ${wanted[*]%%|*} (a C and C++ compiler, make, CMake, pkg-config, the zlib, zstd, OpenSSL, Cyrus SASL and libcurl headers), then run cargo"
fi

installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# installed_any "a|b|c": one of them is installed.
installed_any() {
    local alt
    local -a alts
    IFS='|' read -r -a alts <<<"$1"
    for alt in "${alts[@]}"; do
        installed "$alt" && return 0
    done
    return 1
}

missing=()
for entry in "${wanted[@]}"; do
    installed_any "$entry" || missing+=("${entry%%|*}")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    say "all build packages are installed (${wanted[*]%%|*})"
elif ((dry_run)); then
    say "would install: ${missing[*]}"
else
    sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "not root and sudo not found: run this script as root, or install as root: apt-get install ${missing[*]}"
        sudo=(sudo)
        say "not root: using sudo for apt-get"
    fi
    say "installing Debian packages: ${missing[*]}"
    # No recommends: exactly the packages above and what they depend on.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        die "apt-get update failed (is a Debian mirror reachable? see /etc/apt/sources.list*)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed (see its output above)"
    for pkg in "${missing[@]}"; do
        installed "$pkg" || die "$pkg is still not installed after apt-get install"
    done
    say "installed: ${missing[*]}"
fi

# Rust itself is not a Debian package here: Weir builds with a rustup toolchain.
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x "$HOME/.cargo/bin/cargo" ]]; then
    say "warning: cargo not found; install Rust with rustup (https://rustup.rs), then run cargo"
fi
