"""The persona list of the emulated lab (probe.lab.personas): explicit, complete, in lab order.

Device i of `iotprobe lab up` runs persona i mod len(ALL), so the order of ALL fixes every
persona's address: tests/golden/personas.txt holds the names in that order.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import probe.lab.personas as package
from probe.lab.personas import ALL, PERSONAS
from probe.lab.personas.base import Persona

GOLDEN = Path(__file__).resolve().parent / "golden" / "personas.txt"


def test_the_personas_keep_their_order() -> None:
    assert [persona.name for persona in ALL] == GOLDEN.read_text().split()
    assert list(PERSONAS) == [persona.name for persona in ALL]


def test_every_persona_a_family_module_defines_is_in_the_lab() -> None:
    families = [importlib.import_module(f"{package.__name__}.{info.name}")
                for info in pkgutil.iter_modules(package.__path__) if info.name != "base"]
    listed = {id(persona) for persona in ALL}
    for module in families:
        defined = [value for value in vars(module).values() if isinstance(value, Persona)]
        assert defined, module.__name__
        assert {id(persona) for persona in defined} == {id(p) for p in module.PERSONAS}, (
            f"{module.__name__}: a persona is missing from its PERSONAS tuple")
        assert {id(persona) for persona in defined} <= listed, (
            f"{module.__name__} is missing from probe.lab.personas.ALL")
