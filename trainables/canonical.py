"""The base of every spec: frozen, no unknown keys, and a canonical string whose hash is its id.

Like open_lth's hyperparameter dataclasses, identity, de-duplication and resume follow from the
spec alone: two specs with the same fields have the same id, wherever they came from. Which
fields make the id is declared on each field (`trainables/identity.py`) and applied here, by the
one serializer every spec inherits.
"""
from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, SerializationInfo, model_serializer

from lth_sweep.trainables.identity import apply_rules


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _identity(self, handler, info: SerializationInfo) -> dict:
        data = handler(self)
        return apply_rules(self, data) if (info.context or {}).get("identity") else data

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json", context={"identity": True}), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:12]
