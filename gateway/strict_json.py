"""Strict JSON request bodies: checked against the protos before Envoy's
gRPC-JSON transcoder sees them.

The transcoder follows the lenient side of the proto3 JSON mapping, and
Envoy 1.40 has no option to change it (its request_validation_options cover
methods, query parameters and path/body collisions only):

- a field the message does not have is dropped, at any depth
  (`{"vote": "up", "stars": 3}` votes, and `stars` is lost);
- a single value where the proto has a list is taken as a list of one
  (`"features": "stems"`, `"votes": {...}`);
- `bool` fields take strings (`"yes"` is true, `"no"` false);
- some type errors name the message instead of the field
  (`song: invalid value Starting an object on a scalar field for type title`).

So each route that takes a JSON body (POST and PATCH with a `body` in their
http rule) runs a small Lua script in Envoy first, on the body the buffer
filter has already read: a single pass over the JSON, led by the schema of
the body's message, generated here from the descriptor set. A field the
message does not have, or a value of the wrong JSON type, is answered 400
with the API's JSON error naming the field as the client wrote it
(`stars`, `votes[0].stars`, `title`), and a BadRequest detail. Anything the
script cannot parse is left to the transcoder, which answers it as before.
Native gRPC never passes through it.

    body_checks(api) -> [BodyCheck]     every (HTTP method, path) whose body is checked
    lua_script(api, message) -> str     the script for one body message
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2

from gateway.descriptors import ApiDescriptors

_F = descriptor_pb2.FieldDescriptorProto

# The JSON shape each scalar type takes in the proto3 JSON mapping.
_SCALARS: dict[int, str] = {
    _F.TYPE_STRING: "s",
    _F.TYPE_BYTES: "s",
    _F.TYPE_BOOL: "b",
    _F.TYPE_INT32: "i32",
    _F.TYPE_SINT32: "i32",
    _F.TYPE_SFIXED32: "i32",
    _F.TYPE_UINT32: "u32",
    _F.TYPE_FIXED32: "u32",
    _F.TYPE_INT64: "i64",
    _F.TYPE_SINT64: "i64",
    _F.TYPE_SFIXED64: "i64",
    _F.TYPE_UINT64: "u64",
    _F.TYPE_FIXED64: "u64",
    _F.TYPE_DOUBLE: "f",
    _F.TYPE_FLOAT: "f",
    _F.TYPE_ENUM: "e",
}

# Well-known types have a JSON form of their own.
_WELL_KNOWN: dict[str, str] = {
    ".google.protobuf.Struct": "obj",  # any object
    ".google.protobuf.Any": "obj",
    ".google.protobuf.Value": "any",  # any JSON value
    ".google.protobuf.ListValue": "arr",  # any list
    ".google.protobuf.Timestamp": "s",
    ".google.protobuf.Duration": "s",
    ".google.protobuf.FieldMask": "s",
    ".google.protobuf.StringValue": "s",
    ".google.protobuf.BytesValue": "s",
    ".google.protobuf.BoolValue": "b",
    ".google.protobuf.Int32Value": "i32",
    ".google.protobuf.UInt32Value": "u32",
    ".google.protobuf.Int64Value": "i64",
    ".google.protobuf.UInt64Value": "u64",
    ".google.protobuf.DoubleValue": "f",
    ".google.protobuf.FloatValue": "f",
}


@dataclass(frozen=True)
class BodyCheck:
    """One HTTP rule that takes a JSON body, and the message that body is."""

    verb: str  # POST, PATCH...
    template: str
    grpc_path: str
    message: str  # full name with a leading dot, as descriptors spell type names

    @property
    def path_regex(self) -> str:
        """The template as an anchored RE2 regex, trailing slashes allowed
        (the transcoder takes `/api/v1/vote/` for `/api/v1/vote`)."""
        return _template_regex(self.template).removesuffix("$") + "/*$"


_TEMPLATE_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def _template_regex(template: str) -> str:
    out, last = [], 0
    for match in _TEMPLATE_VARIABLE.finditer(template):
        out.append(re.escape(template[last : match.start()]))
        pattern = match.group(2)
        if pattern is None or pattern == "*":
            out.append("[^/]+")
        elif pattern == "**":
            out.append(".+")
        elif "*" in pattern:
            raise ValueError(f"unsupported path template variable in {template!r}")
        else:
            out.append(re.escape(pattern))
        last = match.end()
    out.append(re.escape(template[last:]))
    return "^" + "".join(out) + "$"


def _messages(api: ApiDescriptors) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message of the descriptor set by full name (leading dot)."""
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: list[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            out[name] = message
            walk(name, list(message.nested_type))

    for file in api.files:
        walk(f".{file.package}" if file.package else "", list(file.message_type))
    return out


def body_checks(api: ApiDescriptors) -> list[BodyCheck]:
    """Every http rule with a body, in the order of the protos."""
    messages = _messages(api)
    checks = []
    for method in api.methods():
        for binding in method.bindings:
            if not binding.body or binding.custom:
                continue
            message = method.proto.input_type
            if binding.body != "*":
                fields = {f.name: f for f in messages[message].field}
                field = fields.get(binding.body)
                if field is None or field.type != _F.TYPE_MESSAGE or field.label == _F.LABEL_REPEATED:
                    raise ValueError(f"{method.path}: body {binding.body!r} is not a message field")
                message = field.type_name
            checks.append(BodyCheck(binding.method.upper(), binding.template, method.path, message))
    _check_unambiguous(checks)
    return checks


def _check_unambiguous(checks: list[BodyCheck]) -> None:
    """Each body route must match only its own rule's paths: a path taken by
    two rules of one method would be checked against the wrong message."""
    for a in checks:
        sample = _TEMPLATE_VARIABLE.sub("x", a.template)
        for b in checks:
            if a is not b and a.verb == b.verb and re.fullmatch(b.path_regex, sample):
                raise ValueError(f"{a.verb} {a.template} is also matched by {b.template}")


def _schema(api: ApiDescriptors, root: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(message name, [(JSON key, Lua spec expression)])] of every message
    reachable from `root`, root first. A field is known by its proto name and
    its JSON name, as the transcoder takes both."""
    messages = _messages(api)
    order: list[str] = []
    pending = [root]
    while pending:
        name = pending.pop(0)
        if name in order:
            continue
        order.append(name)
        for field in messages[name].field:
            if field.type == _F.TYPE_MESSAGE and field.type_name not in _WELL_KNOWN:
                target = messages[field.type_name]
                if target.options.map_entry:
                    value = next(f for f in target.field if f.name == "value")
                    if value.type == _F.TYPE_MESSAGE and value.type_name not in _WELL_KNOWN:
                        pending.append(value.type_name)
                else:
                    pending.append(field.type_name)
    var = {name: f"M{i}" for i, name in enumerate(order)}

    def spec(field: descriptor_pb2.FieldDescriptorProto, element: bool = False) -> str:
        if field.type == _F.TYPE_MESSAGE:
            if field.type_name in _WELL_KNOWN:
                single = f'{{k="{_WELL_KNOWN[field.type_name]}"}}'
            else:
                target = messages[field.type_name]
                if target.options.map_entry:
                    value = next(f for f in target.field if f.name == "value")
                    return f'{{k="map", e={spec(value, element=True)}}}'
                single = f'{{k="m", m={var[field.type_name]}}}'
        else:
            single = f'{{k="{_SCALARS[field.type]}"}}'
        if field.label == _F.LABEL_REPEATED and not element:
            return f'{{k="l", e={single}}}'
        return single

    out = []
    for name in order:
        keys: list[tuple[str, str]] = []
        for field in messages[name].field:
            entry = spec(field)
            keys.append((field.name, entry))
            if field.json_name and field.json_name != field.name:
                keys.append((field.json_name, entry))
        out.append((var[name], keys))
    return out


def lua_script(api: ApiDescriptors, message: str) -> str:
    """The Envoy Lua script that checks a JSON body of `message`."""
    schema = _schema(api, message)
    lines = [f"local {var} = {{}}" for var, _ in schema]
    for var, keys in schema:
        for key, entry in keys:
            lines.append(f'{var}["{key}"] = {entry}')
    lines.append(f"local ROOT = {schema[0][0]}")
    return "\n".join(lines) + "\n" + _VALIDATOR


# The script marks its own answers in the request's dynamic metadata, so
# that the gateway's local-reply mappers leave their JSON as it is (Envoy
# passes a Lua filter's answer through them, like its own errors).
METADATA_NAMESPACE = "aimusicstore"
METADATA_KEY = "json_error"


def local_reply_mapper() -> dict[str, Any]:
    """A local-reply mapper, to go before those that rewrite 400s: the
    script's answers keep their body (already the API's JSON error)."""
    return {
        "filter": {
            "metadata_filter": {
                "matcher": {
                    "filter": METADATA_NAMESPACE,
                    "path": [{"key": METADATA_KEY}],
                    "value": {"bool_match": True},
                },
                # (Its default is to match every reply without the key.)
                "match_if_key_not_found": False,
            }
        }
    }


# The checker. One pass over the body; a field's path is built only when a
# check fails. Returns of the parsing functions: the position after the
# value, or nil (with FAIL set for a violation, unset for JSON it cannot
# parse: the transcoder then answers as before).
_VALIDATOR = r"""
local byte, sub, find, gsub, floor = string.byte, string.sub, string.find, string.gsub, math.floor
local s, n, FAIL_PATH, FAIL_MSG
local MAX_DEPTH = 100
local METADATA_NAMESPACE, METADATA_KEY = "aimusicstore", "json_error"

local QUOTE, BACKSLASH, LBRACE, RBRACE, LBRACKET, RBRACKET = 34, 92, 123, 125, 91, 93
local COMMA, COLON = 44, 58

local function ws(i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function fail(path, msg)
  FAIL_PATH, FAIL_MSG = path, msg
  return nil
end

-- The end of the string starting at i (a quote): position after it, and
-- whether it holds escapes.
local function str_end(i)
  local j, escaped = i + 1, false
  while true do
    local k = find(s, '["\\]', j)
    if k == nil then return nil end
    if byte(s, k) == QUOTE then return k + 1, escaped end
    escaped = true
    if byte(s, k + 1) == 117 then j = k + 6 else j = k + 2 end
  end
end

local ESCAPES = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
local function unescape(raw)
  raw = gsub(raw, "\\u(%x%x%x%x)", function(h)
    local c = tonumber(h, 16)
    if c < 128 then return string.char(c) end
    return "?"
  end)
  return (gsub(raw, "\\(.)", function(c) return ESCAPES[c] or c end))
end

-- The first bytes of a JSON value: { [ " t f n - and digits.
local VALUE_START = { [123] = true, [91] = true, [34] = true, [116] = true, [102] = true, [110] = true, [45] = true }
for d = 48, 57 do VALUE_START[d] = true end

local function json_type(c)
  if c == LBRACE then return "an object" end
  if c == LBRACKET then return "a list" end
  if c == QUOTE then return "a string" end
  if c == 116 or c == 102 then return "true or false" end
  if c == 110 then return "null" end
  return "a number"
end

local skip
local function skip_container(i, close, depth)
  if depth > MAX_DEPTH then return nil end
  i = ws(i + 1)
  if byte(s, i) == close then return i + 1 end
  while true do
    if close == RBRACE then
      if byte(s, i) ~= QUOTE then return nil end
      i = str_end(i)
      if i == nil then return nil end
      i = ws(i)
      if byte(s, i) ~= COLON then return nil end
      i = ws(i + 1)
    end
    i = skip(i, depth + 1)
    if i == nil then return nil end
    i = ws(i)
    local c = byte(s, i)
    if c == close then return i + 1 end
    if c ~= COMMA then return nil end
    i = ws(i + 1)
  end
end

local function number_end(i)
  local _, e = find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if e == nil then return nil end
  return e + 1
end

skip = function(i, depth)
  local c = byte(s, i)
  if c == LBRACE then return skip_container(i, RBRACE, depth) end
  if c == LBRACKET then return skip_container(i, RBRACKET, depth) end
  if c == QUOTE then return str_end(i) end
  if c == 116 and sub(s, i, i + 3) == "true" then return i + 4 end
  if c == 102 and sub(s, i, i + 4) == "false" then return i + 5 end
  if c == 110 and sub(s, i, i + 3) == "null" then return i + 4 end
  return number_end(i)
end

local INT_RANGE = {
  i32 = { -2147483648, 2147483647, "an integer from -2147483648 to 2147483647" },
  u32 = { 0, 4294967295, "an integer from 0 to 4294967295" },
  i64 = { -9223372036854775808, 9223372036854775807, "an integer" },
  u64 = { 0, 18446744073709551615, "a non-negative integer" },
}

local function path_of(prefix, key) return prefix .. key end

local object
-- A value of the field `key` (under `prefix`) of kind spec.
local function value(i, spec, prefix, key, depth)
  local c = byte(s, i)
  if c == nil or not VALUE_START[c] then return nil end
  local k = spec.k
  if c == 110 then
    if sub(s, i, i + 3) == "null" then return i + 4 end
    return nil
  end
  if k == "s" then
    if c ~= QUOTE then return fail(path_of(prefix, key), "expected a string, got " .. json_type(c)) end
    return str_end(i)
  elseif k == "m" then
    if c ~= LBRACE then return fail(path_of(prefix, key), "expected an object, got " .. json_type(c)) end
    return object(i, spec.m, prefix .. key .. ".", depth + 1)
  elseif k == "l" then
    if c ~= LBRACKET then return fail(path_of(prefix, key), "expected a list, got " .. json_type(c)) end
    if depth > MAX_DEPTH then return nil end
    local e, index = spec.e, 0
    i = ws(i + 1)
    if byte(s, i) == RBRACKET then return i + 1 end
    while true do
      local item = key .. "[" .. index .. "]"
      if byte(s, i) == 110 and sub(s, i, i + 3) == "null" then
        return fail(path_of(prefix, item), "a list item cannot be null")
      end
      i = value(i, e, prefix, item, depth + 1)
      if i == nil then return nil end
      i = ws(i)
      local d = byte(s, i)
      if d == RBRACKET then return i + 1 end
      if d ~= COMMA then return nil end
      i = ws(i + 1)
      index = index + 1
    end
  elseif k == "b" then
    if c == 116 and sub(s, i, i + 3) == "true" then return i + 4 end
    if c == 102 and sub(s, i, i + 4) == "false" then return i + 5 end
    return fail(path_of(prefix, key), "expected true or false, got " .. json_type(c))
  elseif k == "f" then
    if c == QUOTE then
      local e = str_end(i)
      if e == nil then return nil end
      local text = sub(s, i + 1, e - 2)
      if text == "NaN" or text == "Infinity" or text == "-Infinity"
         or (find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*$") and tonumber(text)) then
        return e
      end
      return fail(path_of(prefix, key), "expected a number")
    end
    if c == LBRACE or c == LBRACKET or c == 116 or c == 102 then
      return fail(path_of(prefix, key), "expected a number, got " .. json_type(c))
    end
    return number_end(i)
  elseif k == "e" then
    if c == QUOTE then return str_end(i) end
    if c == LBRACE or c == LBRACKET or c == 116 or c == 102 then
      return fail(path_of(prefix, key), "expected a string, got " .. json_type(c))
    end
    return number_end(i)
  elseif INT_RANGE[k] then
    local range = INT_RANGE[k]
    local e, number
    if c == QUOTE then
      e = str_end(i)
      if e == nil then return nil end
      local text = sub(s, i + 1, e - 2)
      if not find(text, "^-?%d+$") then return fail(path_of(prefix, key), "expected " .. range[3]) end
      number = tonumber(text)
    elseif c == LBRACE or c == LBRACKET or c == 116 or c == 102 then
      return fail(path_of(prefix, key), "expected " .. range[3] .. ", got " .. json_type(c))
    else
      e = number_end(i)
      if e == nil then return nil end
      number = tonumber(sub(s, i, e - 1))
      if number == nil then return nil end
    end
    if number ~= floor(number) or number < range[1] or number > range[2] then
      return fail(path_of(prefix, key), "expected " .. range[3])
    end
    return e
  elseif k == "map" then
    if c ~= LBRACE then return fail(path_of(prefix, key), "expected an object, got " .. json_type(c)) end
    if depth > MAX_DEPTH then return nil end
    local inner = prefix .. key .. "."
    i = ws(i + 1)
    if byte(s, i) == RBRACE then return i + 1 end
    while true do
      if byte(s, i) ~= QUOTE then return nil end
      local e, escaped = str_end(i)
      if e == nil then return nil end
      local name = sub(s, i + 1, e - 2)
      if escaped then name = unescape(name) end
      i = ws(e)
      if byte(s, i) ~= COLON then return nil end
      i = value(ws(i + 1), spec.e, inner, name, depth + 1)
      if i == nil then return nil end
      i = ws(i)
      local d = byte(s, i)
      if d == RBRACE then return i + 1 end
      if d ~= COMMA then return nil end
      i = ws(i + 1)
    end
  elseif k == "obj" then
    if c ~= LBRACE then return fail(path_of(prefix, key), "expected an object, got " .. json_type(c)) end
    return skip(i, depth)
  elseif k == "arr" then
    if c ~= LBRACKET then return fail(path_of(prefix, key), "expected a list, got " .. json_type(c)) end
    return skip(i, depth)
  end
  return skip(i, depth) -- "any"
end

object = function(i, fields, prefix, depth)
  if depth > MAX_DEPTH then return nil end
  i = ws(i + 1)
  if byte(s, i) == RBRACE then return i + 1 end
  while true do
    if byte(s, i) ~= QUOTE then return nil end
    local e, escaped = str_end(i)
    if e == nil then return nil end
    local name = sub(s, i + 1, e - 2)
    if escaped then name = unescape(name) end
    local spec = fields[name]
    if spec == nil then return fail(prefix .. name, "unknown field") end
    i = ws(e)
    if byte(s, i) ~= COLON then return nil end
    i = value(ws(i + 1), spec, prefix, name, depth)
    if i == nil then return nil end
    i = ws(i)
    local c = byte(s, i)
    if c == RBRACE then return i + 1 end
    if c ~= COMMA then return nil end
    i = ws(i + 1)
  end
end

local function json_string(text)
  if #text > 200 then text = sub(text, 1, 200) .. "..." end
  text = gsub(text, "[^\32-\126]", "?")
  return '"' .. gsub(text, '["\\]', "\\%0") .. '"'
end

function envoy_on_request(handle)
  local body = handle:body()
  if body == nil then return end
  n = body:length()
  if n == 0 then return end
  s = body:getBytes(0, n)
  FAIL_PATH, FAIL_MSG = nil, nil
  local i = ws(1)
  if i > n then return end
  local ok
  if byte(s, i) ~= LBRACE then
    FAIL_MSG = "the request body must be a JSON object"
  else
    ok = object(i, ROOT, "", 1)
    if ok ~= nil and ws(ok) <= n then
      FAIL_MSG = "the request body has more after its JSON object"
    end
  end
  s = nil
  if FAIL_MSG == nil then return end
  local field = FAIL_PATH or "body"
  local message = FAIL_PATH and (FAIL_PATH .. ": " .. FAIL_MSG) or FAIL_MSG
  handle:streamInfo():dynamicMetadata():set(METADATA_NAMESPACE, METADATA_KEY, true)
  handle:respond(
    { [":status"] = "400", ["content-type"] = "application/json" },
    '{"code":3,"message":' .. json_string(message) ..
    ',"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","field_violations":[{"field":' ..
    json_string(field) .. ',"description":' .. json_string(FAIL_MSG) .. '}]}]}'
  )
end
"""
