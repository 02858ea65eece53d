#!/bin/sh
# The lab's CoAP devices: libcoap's example server (Debian: libcoap3-bin), which serves
# /.well-known/core, /, /time and /example_data and takes PUTs from anyone.
#
#   run.sh plain   coap-server-notls on udp/5683
#   run.sh psk     coap-server-openssl on udp/5683 and DTLS with a pre-shared key on udp/5684
#
# LAB_BIND: the address to listen on (docker-compose.yml: 0.0.0.0; `iotprobe lab up --real`:
# the device's loopback address). LAB_STATE: the setup step's files (the PSK).
# Used as-is by both; the server replaces this shell (exec), so its PID is the daemon's.
set -eu
bind=${LAB_BIND:-0.0.0.0}
state=${LAB_STATE:-/lab/state}
case ${1:-} in
    plain) exec coap-server-notls -A "$bind" -p 5683 ;;
    psk) exec coap-server-openssl -A "$bind" -p 5683 -k "$(cat "$state/coaps.psk")" ;;
    *) echo "usage: run.sh plain|psk" >&2; exit 2 ;;
esac
