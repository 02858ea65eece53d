"""A real BACnet/IP device for the tests: bacpypes3's Application with a device object.

`bacnet_device.py ADDRESS PORT INSTANCE`: answers Who-Is with I-Am (to the asker) and reads of
its device object's properties, as a building controller does.
"""

import asyncio
import sys

from bacpypes3.app import Application
from bacpypes3.ipv4.app import NormalApplication
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import IPv4Address


async def main(address: str, port: str, instance: str) -> None:
    device = DeviceObject(objectIdentifier=("device", int(instance)),
                          objectName="iotprobe-test-controller", vendorIdentifier=999)
    app: Application = NormalApplication(device, IPv4Address(f"{address}/32:{port}"))
    try:
        await asyncio.Future()
    finally:
        app.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
