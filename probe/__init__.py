"""iotprobe: a live network conformance probe for IoT fleets."""

__version__ = "0.1.0"
