"""The declarative YAML: typed, immutable models, loading with precise errors, live checks."""

from syncswim_lib.config.loader import load_project, parse_project
from syncswim_lib.config.models import (
    ENDPOINT_KINDS,
    ConflictRule,
    Conflicts,
    Endpoint,
    EndpointKind,
    Entity,
    FieldMap,
    FrozenDict,
    Letter,
    Mode,
    Project,
    Reference,
    RefOnDelete,
    RunMode,
    SideSpec,
    Sync,
)
from syncswim_lib.config.secrets import Secret
from syncswim_lib.config.transforms import BUILTINS, Transform

__all__ = [
    "BUILTINS",
    "ENDPOINT_KINDS",
    "ConflictRule",
    "Conflicts",
    "Endpoint",
    "EndpointKind",
    "Entity",
    "FieldMap",
    "FrozenDict",
    "Letter",
    "Mode",
    "Project",
    "RefOnDelete",
    "Reference",
    "RunMode",
    "Secret",
    "SideSpec",
    "Sync",
    "Transform",
    "load_project",
    "parse_project",
]
