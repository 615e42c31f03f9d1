#!/usr/bin/env bash
# Makes a local CA and the certificates of examples/tls/anygate.yml (ECDSA P-256, openssl):
#   certs/ca.pem, certs/ca.key            the local CA (trust it: curl --cacert certs/ca.pem)
#   certs/localhost.pem, .key             server: localhost, *.localhost, 127.0.0.1, ::1
#   certs/client.pem, .key                a client certificate (CN=example client) for mTLS
# Usage: examples/tls/make-certs.sh [DIR]   (default: the directory of this script)
set -euo pipefail
dir="${1:-$(dirname "$0")}/certs"
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "make-certs.sh: needs openssl" >&2; exit 1; }
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=AnyGate example/CN=AnyGate example CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

issue() { # NAME SUBJECT EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
issue localhost "/CN=localhost" "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth
basicConstraints=CA:false"
issue client "/O=AnyGate example/CN=example client" "extendedKeyUsage=clientAuth
basicConstraints=CA:false"
rm -f ca.srl
echo "certificates in $dir"
