"""Every persona of the emulated lab, in lab order: `iotprobe lab up` gives device i persona
i mod len(ALL), so this order fixes each persona's address (tests/golden/personas.txt guards
it). A new persona goes into its family's module and its `PERSONAS` tuple; a new family's
module goes into ALL here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from probe.lab.personas import basic, bench, coap, hostile, monitor, mqtt, remote, tls
from probe.lab.personas.base import Persona

ALL: tuple[Persona, ...] = (*basic.PERSONAS, *coap.PERSONAS, *bench.PERSONAS,
                            *hostile.PERSONAS, *mqtt.PERSONAS, *monitor.PERSONAS,
                            *tls.PERSONAS, *remote.PERSONAS)


def _by_name(personas: Iterable[Persona]) -> Mapping[str, Persona]:
    named: dict[str, Persona] = {}
    for persona in personas:
        if persona.name in named:
            raise ValueError(f"persona {persona.name} is listed twice")
        named[persona.name] = persona
    return MappingProxyType(named)


PERSONAS = _by_name(ALL)
"""ALL by name, in the same order."""
