"""Building blocks of the OpenAPI document shared by app.openapi and app.openapi_pages:
references, JSON bodies, error answers, and pydantic schemas made OpenAPI 3.0."""
from __future__ import annotations

import copy


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict:
    return {"description": description, "content": _json(_ref("Error"))}


AUTH_ERRORS = {
    "401": _error("missing, invalid, tampered, expired or revoked token; the code says "
                  "which (`token_stale`: the password or role changed since it was issued, "
                  "`unknown_user`: the account is gone)"),
    "422": _error("token claims could not be verified"),
}
ADMIN_ERRORS = {**AUTH_ERRORS, "403": _error("the caller is not an admin")}
MANAGER_ERRORS = {"503": _error("no manager runs, or the broker did not answer")}
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


# --- schemas from models ----------------------------------------------------------------
def _body_schema(model) -> dict:
    """A pydantic model's JSON schema, inlined (no $defs) for OpenAPI 3.0 tools."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]]))
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema.pop("description", None)   # the model's docstring is written for programmers
    return _nullable_for_30(inline(schema))


def _nullable_for_30(node):
    """pydantic writes `anyOf: [X, {type: null}]` (3.1); OpenAPI 3.0 says `nullable`."""
    if isinstance(node, dict):
        any_of = node.get("anyOf")
        if isinstance(any_of, list) and {"type": "null"} in any_of and len(any_of) == 2:
            other = next(item for item in any_of if item != {"type": "null"})
            merged = {k: v for k, v in node.items() if k not in ("anyOf", "title")}
            merged.update(_nullable_for_30(other))
            merged["nullable"] = True
            return merged
        return {key: _nullable_for_30(value) for key, value in node.items()
                if key != "title"}
    if isinstance(node, list):
        return [_nullable_for_30(item) for item in node]
    return node
