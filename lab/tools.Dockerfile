# The lab's Debian tools: the same Debian packages `iotprobe lab up --real` runs locally.
# Used by the setup step (openssl, mosquitto_passwd), the CoAP devices (libcoap3-bin) and the
# Telnet device (busybox-static).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl mosquitto libcoap3-bin busybox-static \
    && rm -rf /var/lib/apt/lists/*
