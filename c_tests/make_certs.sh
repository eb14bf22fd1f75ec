#!/bin/sh
# Makes a test PKI in $1: ca.pem (+ hashed copy for CURLOPT_CAPATH in $1/capath), signed by
# that CA a server certificate for 127.0.0.1 (server), a client certificate "client-one"
# (client), a server certificate for another host name (wronghost) and an expired server
# certificate for 127.0.0.1 (expired), and a self-signed server certificate for 127.0.0.1 that
# no CA vouches for (rogue).
set -eu
dir=$1
mkdir -p "$dir/capath"
cd "$dir"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
# name, common name, subjectAltName, validity in days (-1: expired yesterday)
while read -r name cn san days; do
  q openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout $name.key -out $name.csr
  printf 'subjectAltName=%s\n' "$san" > $name.ext
  q openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile $name.ext -out $name.pem
done <<LIST
server 127.0.0.1 IP:127.0.0.1 2
client client-one IP:127.0.0.1 2
wronghost elsewhere.test DNS:elsewhere.test 2
expired 127.0.0.1 IP:127.0.0.1 -1
LIST
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout rogue.key -out rogue.pem
cp ca.pem capath/
q openssl rehash capath
