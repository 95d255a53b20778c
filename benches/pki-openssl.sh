#!/usr/bin/env bash
# Baseline for examples/bench_pki.rs: the internal PKI made with openssl CLI calls,
# the way regenerate-ssl-certs-v2.sh and generate-minio-certs.sh did it — a P-256 CA,
# postgres-server, minio-server and N postgres-client certificates (random serials,
# SKI/AKI, CA:FALSE, key usage and EKU), an empty CRL, laid out in the PostgreSQL and
# MinIO folders, then every file and folder written fsynced (`sync FILE…`; set
# NOSYNC=1 to skip that and time the openssl work alone).
#
#   benches/pki-openssl.sh OUTDIR [CLIENTS]
set -euo pipefail
out=$1
clients=${2:-20}
mkdir -p "$out"
cd "$out"
umask 077

cat > ca.cnf <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
O = PazPaz
CN = PazPaz Internal CA
[ v3_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ ca ]
default_ca = pazpaz
[ pazpaz ]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
certificate = ca.crt
private_key = ca.key
CNF

openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 3650 -config ca.cnf -extensions v3_ca \
    -set_serial "0x$(openssl rand -hex 16)" -out ca.crt
: > index.txt
echo 01 > crlnumber
openssl ca -config ca.cnf -gencrl -out root.crl 2>/dev/null

# leaf NAME CN EKU SANS
leaf() {
    local name=$1 cn=$2 eku=$3 sans=$4
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = $eku"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        if [ -n "$sans" ]; then echo "subjectAltName = $sans"; fi
    } > "$name.ext"
    openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "/O=PazPaz/CN=$cn" -out "$name.csr"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -sha256 -days 365 \
        -set_serial "0x$(openssl rand -hex 16)" -extfile "$name.ext" -out "$name.crt" 2>/dev/null
}

leaf postgres-server db serverAuth "DNS:db,DNS:pazpaz-db,DNS:localhost,IP:127.0.0.1,IP:::1"
mkdir -p deploy/postgres/ssl
cp postgres-server.crt deploy/postgres/ssl/server.crt
cp postgres-server.key deploy/postgres/ssl/server.key
cp ca.crt deploy/postgres/ssl/root.crt
cp root.crl deploy/postgres/ssl/root.crl

leaf minio-server minio serverAuth "DNS:minio,DNS:pazpaz-minio,DNS:localhost,IP:127.0.0.1"
mkdir -p deploy/minio/certs/CAs
cp minio-server.crt deploy/minio/certs/public.crt
cp minio-server.key deploy/minio/certs/private.key
cp ca.crt deploy/minio/certs/CAs/ca.crt

for i in $(seq -w 1 "$clients"); do
    role="role$i"
    leaf "$role" "$role" clientAuth ""
    d="deploy/postgres/clients/$role"
    mkdir -p "$d"
    cp "$role.crt" "$d/postgresql.crt"
    cp "$role.key" "$d/postgresql.key"
    cp ca.crt "$d/root.crt"
done

if [ -z "${NOSYNC:-}" ]; then
    find . -print0 | xargs -0 sync --
fi
