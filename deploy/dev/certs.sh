#!/usr/bin/env bash
# Make a certificate authority and the certificates of Weir's processes and
# clients with openssl: for the test suite, a dev cluster, or as a worked
# example of the identities Weir expects (docs/security.md).
#
#   deploy/dev/certs.sh ca DIR
#       DIR/ca.pem, DIR/ca.key: a new CA (EC P-256, 10 years)
#   deploy/dev/certs.sh issue DIR NAME SAN[,SAN...]
#       DIR/NAME.pem, DIR/NAME.key: a certificate signed by DIR/ca.pem for
#       both TLS server and client use, with the subject alternative names
#       given in openssl's syntax, e.g.
#         URI:weir://driver/1,IP:127.0.0.1,DNS:weir-driver-0.weir-driver
#         URI:weir://executor/exec-1,IP:127.0.0.1
#         URI:weir://client/alice
#
# Keys are PKCS#8 PEM, readable only by their owner.
set -euo pipefail

die() {
    echo "certs: error: $*" >&2
    exit 1
}
command -v openssl >/dev/null 2>&1 ||
    die "openssl not found; install it (Debian: apt-get install -y openssl)"

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || die "usage: $0 ca DIR | issue DIR NAME SAN[,SAN...]"
mkdir -p "$dir"

case "$cmd" in
ca)
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
        -subj "/CN=weir-ca-$(basename "$dir")" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem" 2>/dev/null
    ;;
issue)
    name="${3:-}"
    san="${4:-}"
    [[ -n "$name" && -n "$san" ]] || die "usage: $0 issue DIR NAME SAN[,SAN...]"
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "name must be letters, digits, '.', '_' or '-': $name"
    [[ -f "$dir/ca.pem" && -f "$dir/ca.key" ]] || die "no CA in $dir: run '$0 ca $dir' first"
    ext="$(mktemp)"
    trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key.new" 2>/dev/null)
    openssl req -new -key "$dir/$name.key.new" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$dir/$name.pem.new" 2>/dev/null
    # Replace the pair by renames, certificate last, so a process that
    # reloads on change never reads a half-written file.
    mv "$dir/$name.key.new" "$dir/$name.key"
    mv "$dir/$name.pem.new" "$dir/$name.pem"
    ;;
*) die "unknown command $cmd (ca or issue)" ;;
esac
