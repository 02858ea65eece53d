#!/usr/bin/env bash
# Installs what iotprobe and its tests need on a fresh Debian machine: the Debian daemons the
# tests run as real peers, and a virtual environment with the package and its dev tools.
# Idempotent: it installs only what is missing, so running it again costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  mosquitto mosquitto-clients   # real MQTT brokers for the tests
  libcoap3-bin                  # coap-server-notls / coap-server-openssl: real CoAP and DTLS peers
  nginx                         # real HTTP(S) peers, good and weak TLS
  openssl                       # openssl s_server, test certificates
  busybox-static                # busybox telnetd and httpd: a real Telnet daemon, a firmware web server
  lighttpd lighttpd-mod-gnutls  # a second real web server (HTTPS through GnuTLS), as in firmware
  mini-httpd                    # a third small real web server (Basic authentication by .htpasswd)
  apache2                       # a fourth real web server (Digest authentication, mod_ssl)
  vsftpd                        # a real FTP daemon
  snmpd                         # a real SNMP agent (community public)
  socat                         # small real listeners
  rsyslog rsyslog-gnutls        # a real syslog forwarder over TLS (RFC 5425)
  bsdutils                      # logger: RFC 5424 and 3164 over UDP and TCP
  tftpd-hpa                     # a real TFTP daemon
  dropbear-bin                  # a real SSH daemon (identification)
  openssh-server                # sshd: its real failed-login line for the monitoring rule
  curl                          # the HTTP matrix's reference tool
  nmap                          # the benchmark anchor; its NSE scripts are the reference tools
                                # of the SSH, Telnet, RTSP, Modbus and BACnet matrix rows
  postgresql                    # the sweep store on PostgreSQL, tested for real
  chromium                      # the HTML report, rendered headless in a test
  redis-server                  # the Celery broker of distributed sweeps, tested for real
  prometheus-node-exporter      # reads the sweep metrics textfile in a test (textfile collector)
  prometheus                    # promtool: lints the sweep metrics exposition in a test
  lighttpd-mod-wolfssl lighttpd-mod-mbedtls lighttpd-mod-openssl
                                # HTTPS over the TLS stacks of embedded devices (interop matrix)
  gnutls-bin                    # gnutls-serv / gnutls-cli: a GnuTLS peer and reference client
  zsh                           # the shell completion script, run in a real zsh
  gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good
                                # GStreamer's RTSP server, a real RTSP(S) peer (tests/peers/gst_rtsp.py)
  autoconf automake             # build PyPI DTLSSocket's tinydtls (aiocoap's CoAPS server peer)
  libivykis0 libnet1 libjson-c5 libpcre3 libwrap0 libglib2.0-0 libcap2 libssl3
                                # the libraries of syslog-ng, unpacked below (never installed)
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  # Packages must not start their own daemons on 0.0.0.0: that would answer on every loopback
  # address the tests and the lab use. policy-rc.d tells Debian's maintainer scripts not to.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# Node.js runs the matrix's Node peers (aedes, node-coap). Many machines ship Node.js with its npm;
# where neither is there, Debian's packages bring both.
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: npm is missing; run as root or install Node.js" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: nodejs npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.iotprobe-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  # every extra: the tests run PostgreSQL stores and distributed sweeps (docs/outputs.md)
  .venv/bin/python -m pip install -q -e '.[dev,postgres,distributed]'
  echo "$want" > "$stamp"
fi

# Node.js peers of the interoperability matrix: exact versions from the committed lock file,
# into tests/interop/node/node_modules (ignored by git), again whenever the lock file changes.
node_stamp=tests/interop/node/node_modules/.iotprobe-lock
node_want=$(sha256sum tests/interop/node/package-lock.json | cut -d' ' -f1)
if [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; then
  echo "setup: installing the Node.js interop peers"
  (cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$node_stamp"
fi

# syslog-ng, the matrix's second syslog sender (TLS through OpenSSL). Debian's syslog-ng-core
# conflicts with rsyslog, so it is never installed: its package is unpacked into .cache/interop
# (ignored by git) with its control file, and the tests run the binary from there.
syslog_ng=.cache/interop/syslog-ng
if [ ! -x "$syslog_ng/usr/sbin/syslog-ng" ]; then
  echo "setup: unpacking syslog-ng-core into $syslog_ng"
  rm -rf "$syslog_ng" .cache/interop/syslog-ng-core_*.deb
  mkdir -p .cache/interop
  (cd .cache/interop && apt-get download -qq syslog-ng-core)
  deb=$(echo .cache/interop/syslog-ng-core_*.deb)
  dpkg-deb -x "$deb" "$syslog_ng"
  dpkg-deb -e "$deb" "$syslog_ng/DEBIAN"
  rm -f "$deb"
fi
