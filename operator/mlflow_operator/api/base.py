"""The base of every API model: camelCase on the wire, strict input, and cross-field rules.

A cross-field rule is declared once, as a `Rule`, and becomes both a CEL expression in the CRD
(`x-kubernetes-validations`, enforced by the API server at `kubectl apply`) and a check the
operator runs when it reads an object (a manifest that reached the cluster before the CRD was
upgraded still gets a clear error, not a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class Rule:
    """One validation rule of an object: CEL for the API server, `holds` for the operator."""

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None  # JSON path below the object, e.g. ".pollInterval"

    def schema(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        return rule


def exactly_one_of(*wire_names: str, what: str = "") -> Rule:
    """Exactly one of these optional fields is set."""
    listed = ", ".join(wire_names[:-1]) + f" or {wire_names[-1]}"
    present = ", ".join(f"has(self.{name})" for name in wire_names)
    return Rule(
        cel=f"[{present}].filter(x, x).size() == 1",
        message=f"exactly one of {listed} must be set{what}",
        holds=lambda obj: sum(_is_set(obj, name) for name in wire_names) == 1,
    )


def _is_set(obj: Any, wire_name: str) -> bool:
    return getattr(obj, _python_name(type(obj), wire_name)) is not None


def _python_name(model: type[BaseModel], wire_name: str) -> str:
    for name, field in model.model_fields.items():
        if wire_name in (field.alias, name):
            return name
    raise KeyError(f"{model.__name__} has no field {wire_name}")


def _add_rules_to_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.schema() for rule in rules]


class ApiModel(BaseModel):
    """Base of spec models: camelCase aliases, unknown fields refused, rules checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_add_rules_to_schema,
    )
    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in self.__rules__:
            if not rule.holds(self):
                # field_path travels in the context so messages can name the exact field
                raise PydanticCustomError(
                    "rule",
                    rule.message.replace("{", "(").replace("}", ")"),
                    {"field_path": rule.field_path or ""},
                )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as it is written to the API server: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(BaseModel):
    """Base of status models: fields this version does not know are kept out, not refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Self:
        """The status an object carries; empty when an older operator wrote another shape."""
        try:
            return cls.model_validate(obj.get("status") or {})
        except ValidationError:  # start afresh: the reconcile writes a whole status again
            return cls()
