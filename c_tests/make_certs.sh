#!/bin/sh
# Makes a test PKI in $1: ca.pem (+ hashed copy for CURLOPT_CAPATH in $1/capath), a server
# certificate for 127.0.0.1 signed by the CA, a client certificate "client-one" signed by the
# CA, and a self-signed server certificate that no CA vouches for.
set -eu
dir=$1
mkdir -p "$dir/capath"
cd "$dir"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
for name in server client; do
  cn=$name-one
  [ $name = server ] && cn=127.0.0.1
  q openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout $name.key -out $name.csr
  printf 'subjectAltName=IP:127.0.0.1\n' > $name.ext
  q openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $name.ext -out $name.pem
done
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout rogue.key -out rogue.pem
cp ca.pem capath/
q openssl rehash capath
