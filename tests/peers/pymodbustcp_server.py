"""A second, independent Modbus/TCP server for the tests: pyModbusTCP's.

`pymodbustcp_server.py ADDRESS PORT identified|anonymous`: holding registers as pyModbusTCP's
data bank keeps them; `identified`, it reports a vendor, product code and revision to function
code 43/14, `anonymous` it answers that function with an exception (illegal function).
"""

import sys

from pyModbusTCP.server import DeviceIdentification, ModbusServer


def main(address: str, port: str, mode: str) -> None:
    identity = DeviceIdentification(vendor_name=b"iotprobe-test", product_code=b"RTU-2",
                                    major_minor_revision=b"0.3") if mode == "identified" else None
    ModbusServer(host=address, port=int(port), no_block=False, device_id=identity).start()


if __name__ == "__main__":
    main(*sys.argv[1:])
