#!/bin/sh
# The lab's setup step: certificates, accounts and the other generated files, written to OUTDIR.
#
#   setup.sh OUTDIR NAME=SANS [NAME@vendor=SANS ...]
#
# Run by docker-compose.yml as the one-shot `setup` service (OUTDIR /lab/state, a volume) and
# by `iotprobe lab up --real` (OUTDIR in the lab's state directory), so both labs get the same
# files. Nothing here is committed: every run makes a new CA, new keys and new passwords.
#
# NAME=SANS         a server certificate for NAME (EC P-256, SHA-256) from the lab CA;
#                   SANS is an openssl subjectAltName list, e.g. IP:127.52.0.3,DNS:broker-tls
# NAME@vendor=SANS  the same, but RSA 2048 on the one "vendor" key that every such device
#                   shares (what fleet.unique-keys catches)
#
# Needs openssl, mosquitto_passwd (Debian: mosquitto) and a POSIX shell.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: setup.sh OUTDIR NAME=SANS [NAME@vendor=SANS ...]" >&2
    exit 2
fi
out=$1
shift
mkdir -p "$out"
cd "$out"
umask 022
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- the lab CA: the trust anchor for scans of the lab ---------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 730 \
    -subj "/O=iotprobe lab/CN=iotprobe lab CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.crt 2>/dev/null
chmod 600 ca.key

# --- one certificate per device --------------------------------------------------------------
vendor_key=$tmp/vendor.key
issue() {  # issue NAME SANS KEYTYPE(ec|vendor) USAGE
    name=$1 sans=$2 kind=$3 usage=$4
    if [ "$kind" = vendor ]; then
        [ -f "$vendor_key" ] || openssl genpkey -algorithm RSA \
            -pkeyopt rsa_keygen_bits:2048 -out "$vendor_key" 2>/dev/null
        cp "$vendor_key" "$name.key"
        keyusage=digitalSignature,keyEncipherment
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" \
            2>/dev/null
        keyusage=digitalSignature
    fi
    openssl req -new -key "$name.key" -subj "/O=iotprobe lab/CN=$name" -out "$tmp/$name.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,$keyusage"
        echo "extendedKeyUsage=$usage"
        [ -n "$sans" ] && echo "subjectAltName=$sans"
    } > "$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA ca.crt -CAkey ca.key -sha256 -days 365 \
        -set_serial "0x$(openssl rand -hex 12)" -extfile "$tmp/$name.ext" \
        -out "$name.crt" 2>/dev/null
    chmod 644 "$name.key"
}

for spec in "$@"; do
    case $spec in
        *=*) ;;
        *) echo "setup.sh: expected NAME=SANS, got '$spec'" >&2; exit 2 ;;
    esac
    name=${spec%%=*}
    sans=${spec#*=}
    case $name in
        *@vendor) issue "${name%@vendor}" "$sans" vendor serverAuth ;;
        *) issue "$name" "$sans" ec serverAuth ;;
    esac
done
# The client certificate the probe (and your own clients) present to the mutual-TLS broker.
issue client "" ec clientAuth

# --- accounts -------------------------------------------------------------------------------
secret() { openssl rand -hex 12; }
for who in probe canary monitor device web-admin; do
    secret > "$who.password"
done
password() { cat "$1.password"; }

# broker-acl, broker-mtls and broker-logging: the probe, its canary, a device and (logging) a
# monitor.
for broker in broker-acl broker-mtls broker-logging; do
    mosquitto_passwd -c -b "$broker.passwd" probe "$(password probe)"
    mosquitto_passwd -b "$broker.passwd" canary "$(password canary)"
    mosquitto_passwd -b "$broker.passwd" device "$(password device)"
done
mosquitto_passwd -b broker-logging.passwd monitor "$(password monitor)"
# broker-tls: a device account and the vendor's default admin/admin left in place.
mosquitto_passwd -c -b broker-tls.passwd device "$(password device)"
mosquitto_passwd -b broker-tls.passwd admin admin

# nginx Basic authentication: a strong admin password, and the default admin/admin.
printf 'admin:%s\n' "$(openssl passwd -apr1 "$(password web-admin)")" > web-strong.htpasswd
printf 'admin:%s\n' "$(openssl passwd -apr1 admin)" > web-basic.htpasswd

# --- CoAP over DTLS: the pre-shared key -----------------------------------------------------
secret > coaps.psk

# --- security.txt (RFC 9116), valid for 180 days from now ------------------------------------
expires=$(date -u -d "@$(( $(date +%s) + 180 * 86400 ))" +%Y-%m-%dT%H:%M:%SZ)
printf 'Contact: mailto:psirt@lab.example\nExpires: %s\nPreferred-Languages: en\n' "$expires" \
    > security.txt

chmod 644 ./*.crt ./*.password ./*.passwd ./*.htpasswd coaps.psk security.txt
echo "iotprobe lab setup: files in $out"
