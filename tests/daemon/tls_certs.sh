#!/usr/bin/env bash
# Makes the PKI of tests/daemon/tls_test.c in DIR with the real openssl CLI:
#   ca.pem/ca.key          the test CA
#   server1.pem, server2   server certificates (CN localhost, SAN 127.0.0.1),
#                          serials 0x1001 and 0x1002 (reload shows the change)
#   cam-1.pem, ops.pem     client certificates signed by the CA
#   rogue.pem              a client certificate "cam-1" from another CA
# Keys are mode 0600 (sluice refuses key files others can read).
set -euo pipefail
d=$1
cd "$d"
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=sluice-test-ca 2>/dev/null
openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 2 \
  -subj /CN=other-ca 2>/dev/null

sign() { # name cn serial ext ca
  openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%b' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$5.pem" -CAkey "$5.key" -set_serial "$3" \
    -days 2 -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
srv='subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
cli='extendedKeyUsage=clientAuth\n'
sign server1 localhost 0x1001 "$srv" ca
sign server2 localhost 0x1002 "$srv" ca
sign cam-1 cam-1 0x2001 "$cli" ca
sign ops ops 0x2002 "$cli" ca
sign rogue cam-1 0x3001 "$cli" other-ca
chmod 600 ./*.key
chmod 644 ./*.pem
