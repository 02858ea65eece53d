"""The emulated lab: personas (kinds of device with known good and bad configurations), the
servers they run, and the fleet that runs them on loopback addresses."""

from probe.lab.fleet import DeviceSpec, Fleet, LabBindError, plan_fleet, run_fleet
from probe.lab.personas import PERSONAS
from probe.lab.personas.base import Persona

__all__ = [
    "PERSONAS",
    "DeviceSpec",
    "Fleet",
    "LabBindError",
    "Persona",
    "plan_fleet",
    "run_fleet",
]
