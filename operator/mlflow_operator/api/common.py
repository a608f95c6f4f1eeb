"""Types shared by both kinds: references, Kubernetes core types, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from mlflow_operator.api.base import ApiModel, Rule, StatusModel

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

IntOrString = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""An integer or a percentage such as `25%` (Kubernetes' IntOrString)."""

Quantity = Annotated[
    int | str,
    # The exact shape of Kubernetes' own Quantity schema: the API server accepts an anyOf under
    # x-kubernetes-int-or-string only as [{type: integer}, {type: string}], so the pattern sits
    # beside it (OpenAPI applies a pattern to strings only).
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
"""A resource quantity such as `500m`, `2Gi` or `4` (Kubernetes' resource.Quantity)."""

FreeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes core object passed through as is (the API server validates it in the pod)."""


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the object in the same namespace.",
    )


class OptionalObjectReference(ApiModel):
    """A reference to an object in the same namespace; an empty name means: create one."""

    name: str = Field(
        default="",
        max_length=253,
        description="Name of the object in the same namespace; empty lets the operator create it.",
    )


class ResourceRequirements(ApiModel):
    """Compute resources of a container (core/v1 ResourceRequirements)."""

    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources, e.g. {cpu: '2', memory: 4Gi}."
    )
    requests: dict[str, Quantity] | None = Field(
        default=None, description="Resources the scheduler reserves, e.g. {cpu: 500m}."
    )


class EnvVar(ApiModel):
    """An environment variable of a container (core/v1 EnvVar)."""

    name: str = Field(min_length=1, description="Name of the variable.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: FreeObject | None = Field(
        default=None,
        description="Source of the value (secretKeyRef, configMapKeyRef, fieldRef, ...).",
    )


class ServiceSpec(ApiModel):
    """The Service in front of the pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: int = Field(default=80, ge=1, le=65535, description="Port the Service listens on.")


def service_spec_field(port: int) -> Any:
    return Field(
        default_factory=lambda: ServiceSpec(port=port),
        description=f"The Service in front of the pods (default ClusterIP, port {port}).",
    )


class PodTemplate(ApiModel):
    """Pod-level settings passed to the pods the operator creates."""

    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels the pods must run on."
    )
    tolerations: list[FreeObject] | None = Field(
        default=None,
        description="Tolerations (core/v1 Toleration); serving pods with gpu.count > 0 also "
        "get the GPU toleration.",
    )
    affinity: FreeObject | None = Field(default=None, description="core/v1 Affinity.")
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount the pods run as."
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets used to pull the image."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods.")
    runtime_class_name: str | None = Field(
        default=None, description="RuntimeClass of the pods (e.g. nvidia)."
    )
    labels: dict[str, str] | None = Field(
        default=None, description="Extra labels on the pods (the operator's own labels win)."
    )
    annotations: dict[str, str] | None = Field(
        default=None, description="Extra annotations on the pods."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """One condition in the metav1.Condition shape, read by kubectl wait and GitOps tools."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word: why the condition is so.")
    message: str = Field(default="", description="A sentence for people.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed from."
    )


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        description="Current state in metav1.Condition form.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def not_both_zero(surge: str, unavailable: str) -> Rule:
    """Deployment's rule: maxSurge and maxUnavailable cannot both be zero."""

    def zero(value: int | str) -> bool:
        return str(value) in ("0", "0%")

    return Rule(
        cel=(
            f"!(has(self.{surge}) && has(self.{unavailable}) && "
            f"string(self.{surge}) in ['0', '0%'] && string(self.{unavailable}) in ['0', '0%'])"
        ),
        message=f"{surge} and {unavailable} cannot both be 0",
        holds=lambda obj: not (zero(obj.max_surge) and zero(obj.max_unavailable)),
    )
