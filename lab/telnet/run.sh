#!/bin/sh
# The lab's Telnet device: busybox telnetd on tcp/23 (Debian: busybox-static). Its login program
# is /bin/false, so nobody ever gets a shell: what matters is that Telnet answers at all.
#
# LAB_BIND: the address to listen on (docker-compose.yml: 0.0.0.0; `iotprobe lab up --real`:
# the device's loopback address). Used as-is by both; telnetd replaces this shell (exec) and
# stays in the foreground (-F), so its PID is the daemon's.
set -eu
exec busybox telnetd -F -p 23 -b "${LAB_BIND:-0.0.0.0}" -l /bin/false
