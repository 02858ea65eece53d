"""Camera and plant personas: a camera whose RTSP stream anyone can describe, a camera that
asks for credentials over RTSPS, and a plant gateway that exposes Modbus/TCP and BACnet/IP.

The catalogue names no UDP service and `plant.exposure` no service at all, so each persona here
writes `plant.exposure`; the RTSP checks apply to `rtsp`, which the RTSP listeners offer, so
personas of other families get `not_applicable` for them by rule.
"""

from __future__ import annotations

from probe.lab.personas.base import (
    CLEARTEXT_MANAGEMENT,
    FAIL,
    GOOD_TLS,
    OPEN_PORTS,
    PASS,
    Persona,
)
from probe.lab.servers import TcpListener, UdpListener
from probe.lab.servers_plant import BacnetDevice, ModbusDevice, RtspCamera
from probe.model import Verdict

RTSP_AUTHENTICATION = "rtsp.authentication"
RTSP_CLEARTEXT = "rtsp.cleartext"
PLANT_EXPOSURE = "plant.exposure"

OPEN_RTSP_CAMERA = Persona(
    name="open-rtsp-camera",
    description="RTSP on 554 that serves its stream's description to anyone, in clear",
    device_class="camera",
    listeners=(TcpListener(554, RtspCamera()),),
    expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, RTSP_AUTHENTICATION: FAIL,
            RTSP_CLEARTEXT: FAIL, PLANT_EXPOSURE: PASS},
    expect_verdict=Verdict.NONCONFORMANT,
)

LOCKED_RTSPS_CAMERA = Persona(
    name="locked-rtsps-camera",
    description="RTSP inside TLS on 322 that answers DESCRIBE with a Basic challenge (401)",
    device_class="camera",
    listeners=(TcpListener(322, RtspCamera(protected=True), tls=True),),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, RTSP_AUTHENTICATION: PASS,
            RTSP_CLEARTEXT: PASS, PLANT_EXPOSURE: PASS, **GOOD_TLS},
    expect_verdict=Verdict.NONCONFORMANT,
)

PLANT_GATEWAY = Persona(
    name="plant-gateway",
    description="a gateway exposing Modbus/TCP on 502 and BACnet/IP on 47808/udp",
    device_class="gateway",
    listeners=(TcpListener(502, ModbusDevice()), UdpListener(47808, BacnetDevice())),
    expect={OPEN_PORTS: FAIL, CLEARTEXT_MANAGEMENT: PASS, PLANT_EXPOSURE: FAIL},
    expect_verdict=Verdict.NONCONFORMANT,
)

PERSONAS = (OPEN_RTSP_CAMERA, LOCKED_RTSPS_CAMERA, PLANT_GATEWAY)
"""This module's personas, in lab order (`probe.lab.personas.ALL`)."""
