"""Generates the gateway's OpenAPI 3.0.3 document and HTML reference page.

The input is the FileDescriptorSet that scripts/gen_protos.py builds (with
--include_imports and --include_source_info), read through
gateway/descriptors.py as the Envoy config reads it. Every method of a public
service that carries a ``google.api.http`` rule becomes one operation per
binding (the rule and its additional_bindings); services and methods without
rules are internal and left out. Descriptions come from the proto comments,
``google.api.field_behavior`` sets readOnly / writeOnly / required, a read's
cache option its Cache-Control header, the allowed values of enumerated
string fields come from services/common/vocabulary.py, and JSON field names
are the proto field names, as the gateway transcodes with
preserve_proto_field_names.

Only protobuf and googleapis-common-protos are used. The output is
deterministic, so CI can check it with ``git diff --exit-code``.

    build(descriptor_set_bytes) -> dict   the OpenAPI document
    render_html(spec) -> str              a self-contained HTML reference
    write(descriptor_set_path, out_dir)   writes openapi.json and docs.html
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from gateway.descriptors import API_PACKAGE_PREFIX, ApiDescriptors, CacheRule, HttpBinding, Method, Service
from services.common import access, vocabulary

__all__ = ["build", "render_html", "write"]

OPENAPI_VERSION = "3.0.3"
TITLE = "aimusicstore API"
API_VERSION = "v1"

_FDP = descriptor_pb2.FieldDescriptorProto
_FB = field_behavior_pb2

# Operations that need a key (services/common/access.py) require the bearer
# scheme; every other operation takes none (an empty list: no key is asked for).
_KEY_REQUIRED: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_NO_KEY: list[dict[str, list[str]]] = []
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_GATEWAY_TAG = "Gateway"
# Component names used by the hand-declared part of the document.
_RESERVED_NAMES = frozenset({"Error", "HealthStatus"})

_DESCRIPTION = """\
The HTTP/JSON API of aimusicstore: the gRPC services behind the Envoy gateway,
transcoded to JSON.

This document is generated from the protos (`protos/`) by `gateway/openapi.py`
(run `scripts/gen_protos.py`); do not edit it by hand.

JSON field names are the proto field names (snake_case). 64-bit integers are
strings and timestamps are RFC 3339 strings, as in the proto3 JSON mapping;
fields holding their default value may be omitted from responses.

Authentication: send an agent's API key (or the admin key) as
`Authorization: Bearer <key>`. Operations that need a key carry the
`bearerAuth` security requirement and say whose key in their description
and in `x-requires-key` (`agent`, `agent_or_admin` or `admin`); every other
operation takes no key.

Browsers: `GET /api/v1/events` with `Accept: text/event-stream` is
Server-Sent Events (resume with `Last-Event-ID`); the public reads and the
live feed answer CORS for the origins the gateway is configured with.

Errors are `google.rpc.Status` as JSON (`code`, `message`, `details`) with the
matching HTTP status code."""

# Scalar field types -> schema (proto3 JSON mapping).
_SCALARS: dict[int, dict[str, Any]] = {
    _FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    _FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    _FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _FDP.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    _FDP.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
    _FDP.TYPE_INT64: {"type": "string", "format": "int64"},
    _FDP.TYPE_SINT64: {"type": "string", "format": "int64"},
    _FDP.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _FDP.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _FDP.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _FDP.TYPE_BOOL: {"type": "boolean"},
    _FDP.TYPE_STRING: {"type": "string"},
    _FDP.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Well-known types have a special JSON form and are inlined, never components.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": "number", "format": "double", "nullable": True},
    "google.protobuf.FloatValue": {"type": "number", "format": "float", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.UInt32Value": {
        "type": "integer",
        "format": "int32",
        "minimum": 0,
        "nullable": True,
    },
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte", "nullable": True},
}
# Well-known types that a query parameter can carry (as their JSON string form).
_QUERY_WELL_KNOWN = {
    name for name, schema in _WELL_KNOWN.items() if schema.get("type") not in (None, "object", "array")
}

_CUSTOM_METHODS = ("head", "options", "trace")

# Streams the gateway also serves as Server-Sent Events (its sidecar, on the
# same path, when the client sends `Accept: text/event-stream`).
_SSE_METHODS = frozenset({"/aimusicstore.vote.v1.VoteService/WatchVotes"})
_SSE_DESCRIPTION = (
    "Browsers: send `Accept: text/event-stream` for Server-Sent Events instead: each event is "
    "`id: <event_id>` and `data: <the JSON object>` (no `event:` name: `onmessage` gets it); a `retry:` "
    "hint comes first and a comment "
    "line keeps a quiet stream open. Resume with the `Last-Event-ID` header (an `event_id` seen before; "
    "EventSource sends it when it reconnects): the events since then come first. An id that is malformed or "
    "older than the feed still holds is 400."
)

_VARIABLE = re.compile(r"\{([^{}=]+)(?:=([^{}]*))?\}")


# --------------------------------------------------------------------------
# Descriptor index


@dataclass
class _Message:
    full_name: str
    local_name: str  # the name inside its package; "Outer.Inner" when nested
    proto: descriptor_pb2.DescriptorProto
    comments: dict[tuple[int, ...], str]
    path: tuple[int, ...]


@dataclass
class _Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    comments: dict[tuple[int, ...], str]
    path: tuple[int, ...]


@dataclass
class _Index:
    messages: dict[str, _Message] = field(default_factory=dict)
    enums: dict[str, _Enum] = field(default_factory=dict)


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


def _file_comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    out: dict[tuple[int, ...], str] = {}
    for loc in file.source_code_info.location:
        text = loc.leading_comments or loc.trailing_comments
        if text.strip():
            out[tuple(loc.path)] = _clean_comment(text)
    return out


def _index_file(index: _Index, file: descriptor_pb2.FileDescriptorProto) -> None:
    comments = _file_comments(file)
    package = file.package

    def add_enum(enum: Any, prefix: str, path: tuple[int, ...]) -> None:
        full = f"{prefix}.{enum.name}" if prefix else enum.name
        index.enums[full] = _Enum(full, enum, comments, path)

    def add_message(msg: Any, prefix: str, local_prefix: str, path: tuple[int, ...]) -> None:
        full = f"{prefix}.{msg.name}" if prefix else msg.name
        local = f"{local_prefix}.{msg.name}" if local_prefix else msg.name
        index.messages[full] = _Message(full, local, msg, comments, path)
        for i, nested in enumerate(msg.nested_type):
            add_message(nested, full, local, (*path, 3, i))
        for i, enum in enumerate(msg.enum_type):
            add_enum(enum, full, (*path, 4, i))

    for i, msg in enumerate(file.message_type):
        add_message(msg, package, "", (4, i))
    for i, enum in enumerate(file.enum_type):
        add_enum(enum, package, (5, i))


def _behaviors(fld: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    return set(fld.options.Extensions[_FB.field_behavior])


def _is_required(fld: descriptor_pb2.FieldDescriptorProto) -> bool:
    return _FB.REQUIRED in _behaviors(fld)


def _checked(binding: HttpBinding) -> HttpBinding:
    if binding.custom and binding.method not in _CUSTOM_METHODS:
        raise ValueError(f"unsupported custom HTTP method {binding.method.upper()!r}")
    return binding


def _parse_template(template: str) -> tuple[str, list[tuple[str, str]], set[str]]:
    """Turns a google.api.http path template into an OpenAPI path.

    Returns (path, [(field_path, pattern)] for path parameters, bound field
    paths). A variable whose pattern is all literal segments, as in
    ``{collection=songs}``, becomes that literal text; the field is still bound
    (the transcoder sets it from the URL), so it is no query or body field.
    """
    params: list[tuple[str, str]] = []
    bound: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name, pattern = match.group(1).strip(), match.group(2)
        bound.add(name)
        if pattern is not None and "*" not in pattern:
            return pattern
        params.append((name, pattern or "*"))
        return "{" + name + "}"

    return _VARIABLE.sub(replace, template), params, bound


def _allowed_values(msg: _Message, fld: descriptor_pb2.FieldDescriptorProto) -> tuple[str, ...] | None:
    """The values an enumerated string field of the API takes (services/common/vocabulary.py)."""
    if not msg.full_name.startswith(API_PACKAGE_PREFIX):
        return None
    return vocabulary.field_values(msg.proto.name, fld.name)


def _cache_control_header(rule: CacheRule) -> dict[str, Any]:
    description = "Set by the gateway: how long shared caches may keep this answer."
    if rule.edge_cached:
        description += " The gateway answers repeats of this read's common URLs from its own cache."
    return {"description": description, "schema": {"type": "string", "enum": [rule.cache_control]}}


def _first_sentence(text: str) -> str:
    paragraph = text.split("\n\n", 1)[0].replace("\n", " ")
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`\"(])", paragraph, maxsplit=1)[0].strip()


# --------------------------------------------------------------------------
# Document builder


class _Builder:
    def __init__(self, api: ApiDescriptors) -> None:
        self.api = api
        self.index = _Index()
        for file in api.files:
            _index_file(self.index, file)
        self.names: dict[str, str] = {}  # message full name -> component name
        self.wanted: list[str] = []  # messages the operations reference, in order

    # -- references --------------------------------------------------------

    def message(self, type_name: str) -> _Message:
        try:
            return self.index.messages[type_name.lstrip(".")]
        except KeyError:
            raise ValueError(f"message {type_name} is not in the descriptor set") from None

    def ref(self, full_name: str) -> dict[str, Any]:
        """A reference to a message's schema; well-known types are inlined."""
        if full_name in _WELL_KNOWN:
            return copy.deepcopy(_WELL_KNOWN[full_name])
        if full_name not in self.wanted:
            self.wanted.append(full_name)
        # Filled in once every reference is known, see _finish_refs.
        return {"$ref": full_name}

    # -- schemas -------------------------------------------------------------

    def enum_schema(self, type_name: str) -> dict[str, Any]:
        enum = self.index.enums[type_name.lstrip(".")]
        if enum.full_name == "google.protobuf.NullValue":
            return {"nullable": True}
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.proto.value]}
        values = []
        for i, value in enumerate(enum.proto.value):
            comment = enum.comments.get((*enum.path, 2, i))
            if comment:
                values.append(f"- `{value.name}`: {' '.join(comment.split())}")
        notes = [enum.comments.get(enum.path, ""), "\n".join(values)]
        if any(notes):
            schema["description"] = "\n\n".join(n for n in notes if n)
        return schema

    def is_map(self, fld: descriptor_pb2.FieldDescriptorProto) -> bool:
        return bool(
            fld.type == _FDP.TYPE_MESSAGE
            and fld.label == _FDP.LABEL_REPEATED
            and self.message(fld.type_name).proto.options.map_entry
        )

    def single_schema(self, fld: descriptor_pb2.FieldDescriptorProto, owner: _Message | None = None) -> dict[str, Any]:
        """The schema of one value of the field (ignoring repeated) of the
        owner message (when known: its enumerated string fields list their values)."""
        if fld.type == _FDP.TYPE_STRING and owner is not None:
            values = _allowed_values(owner, fld)
            if values:
                return {"type": "string", "enum": list(values)}
        if fld.type in _SCALARS:
            return copy.deepcopy(_SCALARS[fld.type])
        if fld.type == _FDP.TYPE_ENUM:
            return self.enum_schema(fld.type_name)
        if fld.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_GROUP):
            return self.ref(fld.type_name.lstrip("."))
        raise ValueError(f"unsupported field type {fld.type} of {fld.name}")

    def value_schema(self, fld: descriptor_pb2.FieldDescriptorProto, owner: _Message | None = None) -> dict[str, Any]:
        """The schema of the field's JSON value: maps and repeated included."""
        if self.is_map(fld):
            entry = self.message(fld.type_name).proto
            value = next(f for f in entry.field if f.name == "value")
            return {"type": "object", "additionalProperties": self.single_schema(value)}
        if fld.label == _FDP.LABEL_REPEATED:
            return {"type": "array", "items": self.single_schema(fld, owner)}
        return self.single_schema(fld, owner)

    def property_schema(self, msg: _Message, index: int) -> dict[str, Any]:
        fld = msg.proto.field[index]
        schema = self.value_schema(fld, msg)
        extra: dict[str, Any] = {}
        notes = []
        comment = msg.comments.get((*msg.path, 2, index))
        if comment:
            notes.append(comment)
        if fld.HasField("oneof_index") and not fld.proto3_optional:
            oneof = msg.proto.oneof_decl[fld.oneof_index].name
            others = [f.name for f in msg.proto.field if f.HasField("oneof_index") and f.oneof_index == fld.oneof_index]
            notes.append(f"Oneof `{oneof}`: at most one of {', '.join(others)} is set.")
        if schema.get("description"):  # enum value notes
            notes.append(schema.pop("description"))
        if notes:
            extra["description"] = "\n\n".join(notes)
        behaviors = _behaviors(fld)
        if _FB.OUTPUT_ONLY in behaviors:
            extra["readOnly"] = True
        if _FB.INPUT_ONLY in behaviors:
            extra["writeOnly"] = True
        if fld.options.deprecated:
            extra["deprecated"] = True
        if extra and "$ref" in schema:
            # Siblings of $ref are ignored in OpenAPI 3.0; wrap it instead.
            schema = {"allOf": [schema]}
        schema.update(extra)
        return schema

    def object_schema(self, msg: _Message, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        comment = msg.comments.get(msg.path)
        if comment:
            schema["description"] = comment
        properties = {}
        required = []
        for i, fld in enumerate(msg.proto.field):
            if fld.name in exclude:
                continue
            properties[fld.name] = self.property_schema(msg, i)
            if _is_required(fld):
                required.append(fld.name)
        if properties:
            schema["properties"] = properties
        if required:
            schema["required"] = required
        if msg.proto.options.deprecated:
            schema["deprecated"] = True
        return schema

    # -- fields along a path --------------------------------------------------

    def resolve(
        self, msg: _Message, field_path: str, what: str
    ) -> list[tuple[_Message, int, descriptor_pb2.FieldDescriptorProto]]:
        """The fields named by a dotted path, e.g. "song.id", from msg."""
        chain = []
        current = msg
        parts = field_path.split(".")
        for i, part in enumerate(parts):
            match = [(j, f) for j, f in enumerate(current.proto.field) if f.name == part]
            if not match:
                raise ValueError(f"{what}: {current.full_name} has no field {part!r}")
            j, fld = match[0]
            chain.append((current, j, fld))
            if i < len(parts) - 1:
                if fld.type != _FDP.TYPE_MESSAGE or fld.label == _FDP.LABEL_REPEATED:
                    raise ValueError(f"{what}: {field_path!r} goes through a non-message field")
                current = self.message(fld.type_name)
        return chain

    def query_params(
        self,
        msg: _Message,
        exclude: set[str],
        prefix: str = "",
        parents_required: bool = True,
        seen: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        params = []
        for i, fld in enumerate(msg.proto.field):
            name = prefix + fld.name
            if name in exclude or self.is_map(fld):
                continue
            required = parents_required and _is_required(fld)
            type_name = fld.type_name.lstrip(".")
            if fld.type == _FDP.TYPE_MESSAGE and type_name not in _QUERY_WELL_KNOWN:
                # Nested messages are flattened as parent.child=... (a few
                # levels, no cycles); repeated messages and JSON-object types
                # cannot travel in a query string and are left out.
                chain = (*seen, msg.full_name)
                if (
                    fld.label != _FDP.LABEL_REPEATED
                    and type_name not in _WELL_KNOWN
                    and type_name not in chain
                    and len(chain) < 3
                ):
                    params += self.query_params(
                        self.message(type_name),
                        exclude,
                        prefix=name + ".",
                        parents_required=required,
                        seen=chain,
                    )
                continue
            schema = self.property_schema(msg, i)
            param: dict[str, Any] = {"name": name, "in": "query"}
            for key in ("description", "deprecated"):
                if key in schema:
                    param[key] = schema.pop(key)
            schema.pop("readOnly", None)
            if required:
                param["required"] = True
            param["schema"] = schema
            params.append(param)
        return params

    # -- operations ----------------------------------------------------------

    def operation(
        self,
        service: Service,
        method: Method,
        binding: HttpBinding,
        comments: dict[tuple[int, ...], str],
    ) -> tuple[str, dict[str, Any]]:
        proto = method.proto
        where = f"{service.full_name}.{method.name}"
        request = self.message(proto.input_type)
        response = self.message(proto.output_type)
        path, path_params, bound = _parse_template(binding.template)

        op: dict[str, Any] = {"tags": [service.name]}
        comment = comments.get((6, service.index, 2, method.index), "")
        if comment:
            op["summary"] = _first_sentence(comment)
        description = comment
        if proto.server_streaming:
            description += (
                "\n\nThe response is a stream of newline-delimited JSON "
                f"(`application/x-ndjson`): one `{response.proto.name}` object per line, "
                "sent as the events happen, until the client disconnects."
            )
            if method.path in _SSE_METHODS:
                description += "\n\n" + _SSE_DESCRIPTION
        if proto.client_streaming:
            description += "\n\nThe request body is a stream of request messages."
        if description.strip() and description.strip() != op.get("summary"):
            op["description"] = description.strip()
        if proto.options.deprecated:
            op["deprecated"] = True
        op["x-grpc-method"] = method.path

        parameters = []
        for field_path, pattern in path_params:
            owner, index, _fld = self.resolve(request, field_path, where)[-1]
            schema = self.single_schema(owner.proto.field[index], owner)
            param: dict[str, Any] = {"name": field_path, "in": "path", "required": True}
            notes = [owner.comments.get((*owner.path, 2, index), "")]
            if pattern != "*":
                notes.append(f"Matches the path pattern `{pattern}`.")
            if any(notes):
                param["description"] = "\n\n".join(n for n in notes if n)
            param["schema"] = schema
            parameters.append(param)

        body = binding.body
        if body == "*":
            top_bound = {p for p in bound if "." not in p}
            if top_bound & {f.name for f in request.proto.field}:
                schema = self.object_schema(request, exclude=top_bound)
            else:
                schema = self.ref(request.full_name)
            left = [f for f in request.proto.field if f.name not in top_bound]
            if left:
                op["requestBody"] = {
                    "required": any(_is_required(f) for f in left),
                    "content": {"application/json": {"schema": schema}},
                }
                if request.comments.get(request.path):
                    op["requestBody"]["description"] = request.comments[request.path]
        else:
            if body:
                owner, i, fld = self.resolve(request, body, where)[-1]
                op["requestBody"] = {
                    "required": _is_required(fld),
                    "content": {"application/json": {"schema": self.value_schema(fld, owner)}},
                }
                if owner.comments.get((*owner.path, 2, i)):
                    op["requestBody"]["description"] = owner.comments[(*owner.path, 2, i)]
            parameters += self.query_params(request, exclude=bound | ({body} if body else set()))
        if parameters:
            op["parameters"] = parameters

        if binding.response_body:
            owner, _i, fld = self.resolve(response, binding.response_body, where)[-1]
            out_schema = self.value_schema(fld, owner)
        else:
            out_schema = self.ref(response.full_name)
        ok: dict[str, Any]
        if proto.server_streaming:
            ok = {
                "description": f"A newline-delimited JSON stream of `{response.proto.name}`.",
                "content": {"application/x-ndjson": {"schema": out_schema}},
            }
            if method.path in _SSE_METHODS:
                ok["description"] += " With `Accept: text/event-stream`: Server-Sent Events of the same objects."
                ok["content"]["text/event-stream"] = {
                    "schema": {"type": "string", "description": "An `id:` and a `data:` line per event."}
                }
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": out_schema}}}
        if method.cache:
            ok["headers"] = {"Cache-Control": _cache_control_header(method.cache)}
        op["responses"] = {
            "200": ok,
            "default": {
                "description": "An error: `google.rpc.Status` as JSON.",
                "content": {"application/json": {"schema": dict(_ERROR_REF)}},
            },
        }
        who = access.requirement(method.path)
        if who is None:
            op["security"] = copy.deepcopy(_NO_KEY)
        else:
            op["security"] = copy.deepcopy(_KEY_REQUIRED)
            op["x-requires-key"] = who
            note = f"Requires {access.WHO_TEXT[who]} as `Authorization: Bearer <key>`."
            op["description"] = f"{op['description']}\n\n{note}" if op.get("description") else note
            op["responses"]["401"] = {
                "description": "No key, or a key that is not valid.",
                "content": {"application/json": {"schema": dict(_ERROR_REF)}},
            }
        return path, op

    def build(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        operation_ids: set[str] = set()
        # The public services: those with http rules, in the order of their files.
        for service in self.api.services:
            comments = _file_comments(service.file)
            for method in service.methods:
                for n, binding in enumerate(method.bindings):
                    path, op = self.operation(service, method, _checked(binding), comments)
                    op_id = f"{service.name}_{method.name}" + (f"_{n + 1}" if n else "")
                    if op_id in operation_ids:
                        raise ValueError(f"duplicate operationId {op_id}")
                    operation_ids.add(op_id)
                    op["operationId"] = op_id
                    item = paths.setdefault(path, {})
                    if binding.method in item:
                        other = item[binding.method]["operationId"]
                        raise ValueError(f"{op_id} and {other} both map to {binding.method.upper()} {path}")
                    item[binding.method] = op
            tag: dict[str, Any] = {"name": service.name}
            if comments.get((6, service.index)):
                tag["description"] = comments[(6, service.index)]
            tags.append(tag)

        schemas = self._components()
        _replace_refs(paths, self.names)
        paths.update(_gateway_paths())
        tags.append(
            {
                "name": _GATEWAY_TAG,
                "description": "Served by the gateway itself rather than by a gRPC service.",
            }
        )
        return {
            "openapi": OPENAPI_VERSION,
            "info": {"title": TITLE, "version": API_VERSION, "description": _DESCRIPTION},
            "servers": [{"url": "/"}],
            "tags": tags,
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An agent API key, or the admin key.",
                    }
                },
            },
        }

    def _components(self) -> dict[str, Any]:
        # Build schemas of everything referenced, transitively: building one
        # may append more to self.wanted.
        built: dict[str, dict[str, Any]] = {}
        i = 0
        while i < len(self.wanted):
            full = self.wanted[i]
            built[full] = self.object_schema(self.index.messages[full])
            i += 1
        # Component names are the short names unless two collide (with each
        # other or with the hand-declared schemas); those use full names.
        counts: dict[str, int] = {}
        for full in built:
            local = self.index.messages[full].local_name
            counts[local] = counts.get(local, 0) + 1
        for full in built:
            local = self.index.messages[full].local_name
            clash = counts[local] > 1 or local in _RESERVED_NAMES
            self.names[full] = full if clash else local
        schemas = {self.names[full]: schema for full, schema in built.items()}
        _replace_refs(schemas, self.names)
        schemas.update(_gateway_schemas())
        return schemas


def _replace_refs(node: Any, names: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            node["$ref"] = f"#/components/schemas/{names[ref]}"
        for value in node.values():
            _replace_refs(value, names)
    elif isinstance(node, list):
        for value in node:
            _replace_refs(value, names)


def _gateway_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "description": "A `google.rpc.Status` rendered as JSON.",
            "properties": {
                "code": {
                    "type": "integer",
                    "format": "int32",
                    "description": "The gRPC status code (`google.rpc.Code`), e.g. 5: NOT_FOUND.",
                },
                "message": {"type": "string", "description": "A developer-facing message."},
                "details": {
                    "type": "array",
                    "description": "Typed details, e.g. `google.rpc.BadRequest`.",
                    "items": {
                        "type": "object",
                        "properties": {"@type": {"type": "string"}},
                        "additionalProperties": True,
                    },
                },
            },
        },
        "HealthStatus": {
            "type": "object",
            "description": "The gateway's view of the backend services.",
            "properties": {
                "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
                "services": {
                    "type": "object",
                    "description": "The health of each backend service, keyed by name.",
                    "additionalProperties": True,
                },
            },
            "required": ["status"],
        },
    }


def _gateway_paths() -> dict[str, Any]:
    paths = _gateway_path_items()
    for item in paths.values():
        item["get"]["security"] = copy.deepcopy(_NO_KEY)
    return paths


def _gateway_path_items() -> dict[str, Any]:
    health_ref = {"$ref": "#/components/schemas/HealthStatus"}
    return {
        "/health": {
            "get": {
                "operationId": "Gateway_Health",
                "tags": [_GATEWAY_TAG],
                "summary": "Reports whether the gateway and its backend services are healthy.",
                "responses": {
                    "200": {
                        "description": "Every backend service is healthy.",
                        "content": {
                            "application/json": {
                                "schema": dict(health_ref),
                                "example": {"status": "healthy", "services": {}},
                            }
                        },
                    },
                    "503": {
                        "description": "At least one backend service is unhealthy.",
                        "content": {
                            "application/json": {
                                "schema": dict(health_ref),
                                "example": {"status": "unhealthy", "services": {}},
                            }
                        },
                    },
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "Gateway_OpenApi",
                "tags": [_GATEWAY_TAG],
                "summary": "This OpenAPI document.",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.0 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "Gateway_Docs",
                "tags": [_GATEWAY_TAG],
                "summary": "Interactive API docs (Swagger UI) built from this document: try any call.",
                "responses": {
                    "200": {
                        "description": "The docs page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/docs/reference": {
            "get": {
                "operationId": "Gateway_Reference",
                "tags": [_GATEWAY_TAG],
                "summary": "A static HTML reference of this API (no JavaScript).",
                "responses": {
                    "200": {
                        "description": "The HTML reference page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/": {
            "get": {
                "operationId": "Gateway_ChartsPage",
                "tags": [_GATEWAY_TAG],
                "summary": "The live charts page, for people: trending, charts, history, leaderboard, live votes.",
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def build(descriptor_set_bytes: bytes) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for a serialized FileDescriptorSet."""
    return _Builder(ApiDescriptors.parse(descriptor_set_bytes)).build()


# --------------------------------------------------------------------------
# HTML reference

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--fg); }
main { max-width: 1040px; margin: 0 auto; padding: 24px 20px 80px; }
h1 { margin: 0 0 4px; font-size: 28px; }
h2 { margin: 40px 0 8px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { margin: 0; font-size: 16px; font-weight: 600; }
h4 { margin: 16px 0 6px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em;
     color: var(--muted); }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
code, .path { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 13px; }
p code, td code, li code { background: var(--bg2); padding: 1px 4px; border-radius: 4px; }
.muted { color: var(--muted); }
nav { background: var(--bg2); border: 1px solid var(--line); border-radius: 8px;
      padding: 8px 16px; margin: 20px 0; columns: 2 320px; }
nav ul { list-style: none; padding-left: 0; margin: 4px 0 12px; }
nav li { break-inside: avoid; }
nav .group { font-weight: 600; margin-top: 8px; break-after: avoid; }
.op { border: 1px solid var(--line); border-radius: 8px; margin: 16px 0; padding: 14px 16px; }
.op-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.method { display: inline-block; min-width: 64px; text-align: center; padding: 2px 8px;
          border-radius: 4px; color: #fff; font: 600 12px ui-monospace, monospace; }
.get { background: #1f6feb; } .post { background: #1a7f37; } .put { background: #9a6700; }
.patch { background: #8250df; } .delete { background: #cf222e; }
.head, .options, .trace { background: #59636e; }
.path { font-size: 15px; font-weight: 600; }
.grpc { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px;
         border-bottom: 1px solid var(--line); }
th { background: var(--bg2); font-weight: 600; font-size: 13px; }
td:first-child { white-space: nowrap; }
td p { margin: 0 0 4px; } td p:last-child { margin: 0; }
.flag { display: inline-block; font-size: 11px; padding: 0 5px; margin: 1px 2px 1px 0;
        border-radius: 8px; border: 1px solid var(--line); color: var(--muted);
        white-space: nowrap; }
.flag.req { border-color: #cf222e; color: #cf222e; }
.schema { border-top: 1px solid var(--line); padding-top: 8px; margin-top: 24px; }
"""

_METHOD_ORDER = ("get", "post", "put", "patch", "delete", "head", "options", "trace")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline_md(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


def _paragraphs(text: str | None) -> str:
    if not text:
        return ""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.split("\n")
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline_md(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline_md(' '.join(lines))}</p>")
    return "".join(out)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _type_html(schema: Any) -> str:
    if schema is True or schema == {}:
        return "any JSON value"
    if not isinstance(schema, dict):
        return "?"
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#{_schema_anchor(name)}">{_esc(name)}</a>'
    if len(schema.get("allOf", ())) == 1:
        return _type_html(schema["allOf"][0])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type_html(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        extra = schema["additionalProperties"]
        if extra is True or extra == {}:
            return "object (any JSON)"
        return f"map of string to {_type_html(extra)}"
    if "enum" in schema:
        return "enum: " + " | ".join(f"<code>{_esc(v)}</code>" for v in schema["enum"])
    text = _esc(kind or "any JSON value")
    if "format" in schema:
        text += f" <span class=muted>({_esc(schema['format'])})</span>"
    return text


def _resolve(spec: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict):
        if "$ref" in schema:
            schema = spec["components"]["schemas"].get(_ref_name(schema["$ref"]), {})
        elif len(schema.get("allOf", ())) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            break
    return schema


def _flags(required: bool, schema: dict[str, Any]) -> str:
    flags = []
    if required:
        flags.append('<span class="flag req">required</span>')
    if schema.get("readOnly"):
        flags.append('<span class="flag">output only</span>')
    if schema.get("writeOnly"):
        flags.append('<span class="flag">input only</span>')
    if schema.get("nullable"):
        flags.append('<span class="flag">nullable</span>')
    if schema.get("deprecated"):
        flags.append('<span class="flag">deprecated</span>')
    return "".join(flags)


def _fields_table(schema: dict[str, Any]) -> str:
    props = schema.get("properties") or {}
    if not props:
        return "<p class=muted>No fields (an empty JSON object).</p>"
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in props.items():
        rows.append(
            f"<tr><td><code>{_esc(name)}</code></td><td>{_type_html(prop)}</td>"
            f"<td>{_flags(name in required, prop)}{_paragraphs(prop.get('description'))}</td></tr>"
        )
    return "<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>" + "".join(rows) + "</table>"


def _payload_html(spec: dict[str, Any], schema: dict[str, Any], content_type: str) -> str:
    head = f"<p><code>{_esc(content_type)}</code> &middot; {_type_html(schema)}</p>"
    target = _resolve(spec, schema)
    if isinstance(target, dict) and target.get("type") == "array":
        target = _resolve(spec, target.get("items"))
    if (
        isinstance(target, dict)
        and target.get("type") == "object"
        and ("properties" in target or "additionalProperties" not in target)
    ):
        return head + _fields_table(target)
    return head


def _operation_html(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="op-{_esc(op["operationId"])}">',
        f'<div class="op-head"><span class="method {method}">{method.upper()}</span>'
        f'<span class="path">{_esc(path)}</span></div>',
    ]
    if op.get("summary"):
        parts.append(f"<h3>{_inline_md(op['summary'])}</h3>")
    if op.get("deprecated"):
        parts.append('<p><span class="flag">deprecated</span></p>')
    parts.append(_paragraphs(op.get("description")))
    grpc = op.get("x-grpc-method")
    meta = f"operationId <code>{_esc(op['operationId'])}</code>"
    if grpc:
        meta = f"gRPC <code>{_esc(grpc)}</code> &middot; " + meta
    if op.get("x-requires-key"):
        meta += f" &middot; requires {_esc(access.WHO_TEXT[op['x-requires-key']])}"
    else:
        meta += " &middot; no key needed"
    parts.append(f'<p class="grpc muted">{meta}</p>')

    params = op.get("parameters") or []
    if params:
        rows = "".join(
            f"<tr><td><code>{_esc(p['name'])}</code></td><td>{_esc(p['in'])}</td>"
            f"<td>{_type_html(p.get('schema', {}))}</td>"
            f"<td>{_flags(bool(p.get('required')), p)}{_paragraphs(p.get('description'))}</td>"
            "</tr>"
            for p in params
        )
        parts.append(
            "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th>"
            f"<th>Description</th></tr>{rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        for content_type, media in body.get("content", {}).items():
            label = "Request body" + ("" if body.get("required") else " (optional)")
            parts.append(f"<h4>{label}</h4>")
            parts.append(_paragraphs(body.get("description")))
            parts.append(_payload_html(spec, media.get("schema", {}), content_type))
    for status, response in op.get("responses", {}).items():
        if status == "default":
            continue
        parts.append(f"<h4>Response {_esc(status)}</h4>")
        parts.append(_paragraphs(response.get("description")))
        for content_type, media in response.get("content", {}).items():
            parts.append(_payload_html(spec, media.get("schema", {}), content_type))
        for name, header in response.get("headers", {}).items():
            parts.append(
                f"<p>Header <code>{_esc(name)}</code>: {_type_html(header.get('schema', {}))}. "
                f"{_inline_md(header.get('description', ''))}</p>"
            )
    if "default" in op.get("responses", {}):
        parts.append(
            '<p class="muted">Errors: <a href="#schema-Error">Error</a> '
            "(<code>google.rpc.Status</code> JSON) with the matching HTTP status.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_html(spec: dict[str, Any]) -> str:
    """A self-contained HTML reference page for an OpenAPI document."""
    info = spec.get("info", {})
    ops_by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method in _METHOD_ORDER:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["Other"])[0]
                ops_by_tag.setdefault(tag, []).append((path, method, op))
    tags = [t for t in spec.get("tags", []) if t["name"] in ops_by_tag]
    known = {t["name"] for t in tags}
    tags += [{"name": name} for name in ops_by_tag if name not in known]

    nav = []
    body = []
    for tag in tags:
        name = tag["name"]
        anchor = "tag-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)
        items = "".join(
            f'<li><a href="#op-{_esc(op["operationId"])}"><span class="method {m}">'
            f"{m.upper()}</span> <code>{_esc(p)}</code></a></li>"
            for p, m, op in ops_by_tag[name]
        )
        nav.append(f'<div class="group"><a href="#{anchor}">{_esc(name)}</a></div><ul>{items}</ul>')
        body.append(f'<h2 id="{anchor}">{_esc(name)}</h2>')
        body.append(_paragraphs(tag.get("description")))
        body.extend(_operation_html(spec, p, m, op) for p, m, op in ops_by_tag[name])

    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        nav.append('<div class="group"><a href="#schemas">Schemas</a></div>')
        body.append('<h2 id="schemas">Schemas</h2>')
        for name in sorted(schemas):
            schema = schemas[name]
            body.append(
                f'<section class="schema" id="{_schema_anchor(name)}"><h3>{_esc(name)}</h3>'
                f"{_paragraphs(schema.get('description'))}{_fields_table(schema)}</section>"
            )

    title = _esc(info.get("title", "API"))
    version = _esc(info.get("version", ""))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title} reference</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{title}</h1><p class="muted">Version {version} &middot; '
        '<a href="openapi.json">openapi.json</a></p>\n'
        f"{_paragraphs(info.get('description'))}\n"
        f"<nav>{''.join(nav)}</nav>\n" + "\n".join(part for part in body if part) + "\n</main>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------


def write(descriptor_set: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> None:
    """Writes out_dir/openapi.json and out_dir/docs.html."""
    spec = build(Path(descriptor_set).read_bytes())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (out / "openapi.json").write_text(text, encoding="utf-8", newline="\n")
    (out / "docs.html").write_text(render_html(spec), encoding="utf-8", newline="\n")
