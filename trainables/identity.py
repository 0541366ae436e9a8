"""Which fields of a spec make its id: a rule declared on the field, read by one serializer.

Every field is part of its spec's identity (`Spec.canonical`, whose hash is the id) unless its
annotation carries one of these:

    device: Annotated[str, OutOfIdentity("how it runs")] = "cpu"
    precision: Annotated[str, OmittedWhen(lambda spec: spec.precision == "fp32", "added later")] = "fp32"

`OutOfIdentity` leaves a field out at every value (how a spec runs, not what it computes; a label
for people); with `stands_as`, the field stays in the canonical string at that one value, as ids
made before the rule had it. `OmittedWhen` leaves it out where it changes nothing, so that ids
made before the field existed still hold. tests/unit/test_ids.py pins the ids these rules make.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_UNSET = object()


@dataclass(frozen=True)
class OutOfIdentity:
    why: str
    stands_as: Any = _UNSET

    def apply(self, spec, name: str, data: dict) -> None:
        if self.stands_as is _UNSET:
            data.pop(name, None)
        else:
            data[name] = self.stands_as


@dataclass(frozen=True)
class OmittedWhen:
    unchanged: Callable[[Any], bool] = field(compare=False)
    why: str = ""

    def apply(self, spec, name: str, data: dict) -> None:
        if self.unchanged(spec):
            data.pop(name, None)


RULES = (OutOfIdentity, OmittedWhen)


def identity_rules(model_class) -> dict[str, object]:
    """Field name -> its rule, for the fields of `model_class` that carry one."""
    return {
        name: rule for name, info in model_class.model_fields.items() for rule in info.metadata if isinstance(rule, RULES)
    }


def apply_rules(spec, data: dict) -> dict:
    """`data` (the spec's JSON dump) as its identity: each declared rule applied."""
    for name, rule in identity_rules(type(spec)).items():
        rule.apply(spec, name, data)
    return data
