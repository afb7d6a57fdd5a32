"""Stripe's OpenAPI description (`spec3.json`) as a validator of the sandbox's answers.

The reference files are not part of the repository: they sit in `../shared/stripe` beside a checkout
(relative to the repository root), or wherever `OT_TEST_STRIPE_REFERENCE_DIR` points. The one
preprocessing step their README gives: `nullable: true` becomes `anyOf: [<schema>, {type: null}]`,
then Draft 4 validation with `referencing` resolving the `$ref`s.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

REFERENCE_DIR_VARIABLE = "OT_TEST_STRIPE_REFERENCE_DIR"
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SPEC_URI = "urn:stripe:spec3"


def reference_dir() -> Path:
    """Where `spec3.json` is: the variable's directory, else `../shared/stripe` from the repository root."""
    configured = os.environ.get(REFERENCE_DIR_VARIABLE)
    return Path(configured) if configured else REPOSITORY_ROOT.parent / "shared" / "stripe"


def without_nullable(node: Any) -> Any:
    """The schema with every `nullable: true` rewritten as an `anyOf` that also admits null."""
    if isinstance(node, list):
        return [without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {key: without_nullable(value) for key, value in node.items()}
    # A property may be *named* "nullable"; only the keyword's boolean value is the marker.
    if rewritten.get("nullable") is True:
        del rewritten["nullable"]
        return {"anyOf": [rewritten, {"type": "null"}]}
    return rewritten


@functools.cache
def _registry() -> Registry[Any]:
    path = reference_dir() / "spec3.json"
    if not path.is_file():
        pytest.fail(
            f"Stripe's spec3.json is not at {path}. Put the shared Stripe reference files at "
            f"../shared/stripe beside the repository, or set {REFERENCE_DIR_VARIABLE} to their directory.",
            pytrace=False,
        )
    spec = without_nullable(json.loads(path.read_text()))
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4))


@functools.cache
def validator(schema_name: str) -> Draft4Validator:
    """A Draft 4 validator of `components.schemas.<schema_name>`."""
    return Draft4Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=_registry())


def errors_of(schema_name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema, as readable lines (empty when it is valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message[:200]}"
        for error in validator(schema_name).iter_errors(instance)
    ]
