"""Every persona of the emulated lab, in lab order: `iotprobe lab up` gives device i persona
i mod len(ALL), so this order fixes each persona's address (tests/golden/personas.txt guards
it). A new persona goes into its family's module and its `PERSONAS` tuple; a new family's
module goes into ALL here.

What a persona must get is keyed by check id, with `probe.model.Status` values:

    Persona(name="good-webui", ..., listeners=(TcpListener(443, WebApp(...), tls=True),),
            expect={OPEN_PORTS: PASS, CLEARTEXT_MANAGEMENT: PASS, **GOOD_TLS, **WELL_KEPT_WEB},
            expect_verdict=Verdict.CONFORMANT,
            expect_intrusive={HTTP_DEFAULT_CREDENTIALS: PASS})

`expect` is the default scan, `expect_intrusive` the intrusive checks with --intrusive,
`expect_monitored` what changes when the inventory declares the persona's monitoring sinks.
A persona writes only what the catalogue cannot tell: the listeners say which services they
offer (`tls`, `http`, `https`, `mqtt`, `mqtts`, the names of the checks' `applies_to`), and
probe.lab.expectations derives `skipped` for intrusive checks without --intrusive,
`not_applicable` for checks whose services nothing offers, and, with --intrusive,
`not_applicable` for an intrusive check whose whole family is; any other check is not
compared, with the reason (the self-test counts them). Ids are checked against the catalogue
when the expectations resolve; a wrong one names the persona and the id. Bundles are dicts
over catalogue families (`every(TLS_CHECKS, PASS)`, in probe.lab.personas.base).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from probe.lab.personas import (
    basic,
    bench,
    coap,
    fragile,
    hostile,
    monitor,
    mqtt,
    mqtt_ws,
    plant,
    remote,
    tls,
)
from probe.lab.personas.base import Persona

ALL: tuple[Persona, ...] = (*basic.PERSONAS, *coap.PERSONAS, *bench.PERSONAS,
                            *hostile.PERSONAS, *mqtt.PERSONAS, *monitor.PERSONAS,
                            *tls.PERSONAS, *fragile.PERSONAS, *plant.PERSONAS,
                            *remote.PERSONAS, *mqtt_ws.PERSONAS)


def _by_name(personas: Iterable[Persona]) -> Mapping[str, Persona]:
    named: dict[str, Persona] = {}
    for persona in personas:
        if persona.name in named:
            raise ValueError(f"persona {persona.name} is listed twice")
        named[persona.name] = persona
    return MappingProxyType(named)


PERSONAS = _by_name(ALL)
"""ALL by name, in the same order."""
