"""A real Modbus/TCP server for the tests: pymodbus, with a device identification.

`modbus_server.py ADDRESS PORT`: holding registers 1-100 and the identification objects a PLC
reports (vendor, product code, revision) answer function code 43/14.
"""

import asyncio
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import StartAsyncTcpServer


async def main(address: str, port: str) -> None:
    block = ModbusSequentialDataBlock(1, [17] * 100)
    device = ModbusDeviceContext(hr=block, ir=block, co=block, di=block)
    identity = ModbusDeviceIdentification(info_name={
        "VendorName": "iotprobe-test", "ProductCode": "PLC-1", "MajorMinorRevision": "3.16"})
    await StartAsyncTcpServer(context=ModbusServerContext(devices=device, single=True),
                              identity=identity, address=(address, int(port)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
