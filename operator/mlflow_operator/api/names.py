"""Rules on metadata.name: the API server refuses a name whose children could not be created.

A name the API server accepts must never lead to a half-applied set of children (a Deployment
created, its Service refused). The limits come from the children: a ModelDeployment's name is
its Service's name (a DNS-1035 label) and a label value; an MLflowServer's longest child name
limit is computed in core/mlflowserver/layout.py and passed in by the CRD generator (crds.py).

CEL at the root of the schema may read self.metadata.name (and nothing else of metadata).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mlflow_operator.api.base import Rule

MAX_NAME = 63  # a DNS-1123/1035 label, and a label value
# A Service name: lower-case letters, digits and '-', starting with a letter.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# StatefulSet pods carry the label controller-revision-hash=<statefulset>-<hash>; the hash is
# an FNV-32 printed in decimal (up to 10 characters) and a label value has at most 63.
MAX_STATEFULSET_NAME = MAX_NAME - len("-") - 10
# a CronJob's Jobs are named <cronjob>-<scheduled time in minutes>: 11 characters more
MAX_CRONJOB_NAME = 52
# MLflow version tags the operator writes (where, and since when, a version serves): a
# ModelDeployment's own spec.tags may not use the prefix.
WRITE_BACK_TAG_PREFIX = "mlflow-operator."


def name_rules(kind: str, max_length: int, why_length: str) -> tuple[Rule, ...]:
    return (
        Rule(
            cel=f"self.metadata.name.matches('{DNS_1035_LABEL}')",
            message=(
                "metadata.name must consist of lower-case letters, digits and '-', start with a "
                f"letter and end with a letter or digit (it names the {kind}'s Service)"
            ),
            holds=lambda name: re.match(DNS_1035_LABEL, name) is not None,
        ),
        Rule(
            cel=f"size(self.metadata.name) <= {max_length}",
            message=f"metadata.name must be at most {max_length} characters ({why_length})",
            holds=lambda name: len(name) <= max_length,
        ),
    )


def name_errors(name: str, rules: Sequence[Rule]) -> list[str]:
    """The messages of the rules `name` breaks (the operator's own check of what it reads)."""
    return [rule.message for rule in rules if not rule.holds(name)]
