"""Every peer of the matrix, protocol by protocol."""

from __future__ import annotations

from interop import (
    Peer,
    peers_coap,
    peers_http,
    peers_mqtt,
    peers_mqtt_ws,
    peers_plant,
    peers_rtsp,
    peers_ssh,
    peers_syslog,
    peers_telnet,
    peers_tls,
)

ALL: tuple[Peer, ...] = (*peers_tls.PEERS, *peers_http.PEERS, *peers_mqtt.PEERS,
                         *peers_mqtt_ws.PEERS,
                         *peers_coap.PEERS, *peers_syslog.PEERS, *peers_ssh.PEERS,
                         *peers_telnet.PEERS, *peers_rtsp.PEERS, *peers_plant.PEERS)
