"""The exit codes of the `iotprobe` commands (docs/cli.md), defined once."""

EXIT_OK = 0
"""Every device conformant (failures below --fail-on tolerated)."""
EXIT_NONCONFORMANT = 1
"""At least one device nonconformant."""
EXIT_INPUT = 2
"""A usage or input error."""
EXIT_INCONCLUSIVE = 3
"""No failure, but at least one device inconclusive."""
EXIT_INTERNAL = 4
"""The probe itself failed (a bug): never a verdict on the devices."""
