"""What the gateway learns from the protos, read once from the descriptor set
(gateway/generated/descriptors.binpb, written by scripts/gen_protos.py) for
the Envoy config, the sidecar and the OpenAPI document alike:

- public services: those of an ``aimusicstore.*`` package with at least one
  ``google.api.http`` rule. Internal services (ApiKeyService,
  ModerationService) have none, and the gateway never routes them. Each is
  served by the backend its package names: ``aimusicstore.<backend>.v1``;
- streaming methods: a stream in the descriptor;
- cache rules: the ``aimusicstore.api.v1.cache`` method option
  (protos/aimusicstore/api/v1/annotations.proto).

    load() -> ApiDescriptors              the checkout's descriptor set (read once)
    ApiDescriptors.parse(bytes)           any serialized FileDescriptorSet
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.api import annotations_pb2 as http_annotations
from google.protobuf import descriptor_pb2

# Registers the cache option, so that parsing the descriptor set reads it.
from aimusicstore.api.v1 import annotations_pb2 as api_annotations

DESCRIPTOR_SET = Path(__file__).resolve().parent / "generated" / "descriptors.binpb"
API_PACKAGE_PREFIX = "aimusicstore."


@dataclass(frozen=True)
class HttpBinding:
    """One google.api.http binding: the rule itself or one of its additional_bindings."""

    method: str  # "get", "post", "put", "patch", "delete", or a custom rule's kind in lower case
    template: str
    body: str
    response_body: str
    custom: bool = False


@dataclass(frozen=True)
class CacheRule:
    cache_control: str  # the Cache-Control header value
    edge_cached: bool  # the gateway's own cache keeps answers


@dataclass(frozen=True)
class Method:
    service: str  # the service's full name
    index: int  # in its service, as source comments are addressed
    proto: descriptor_pb2.MethodDescriptorProto
    bindings: tuple[HttpBinding, ...]
    cache: CacheRule | None

    @property
    def name(self) -> str:
        return str(self.proto.name)

    @property
    def path(self) -> str:
        """The gRPC path, /package.Service/Method."""
        return f"/{self.service}/{self.name}"

    @property
    def streams(self) -> bool:
        """A long-lived call: no request timeout, a budget of its own."""
        return bool(self.proto.server_streaming or self.proto.client_streaming)


@dataclass(frozen=True)
class Service:
    full_name: str
    backend: str  # the service (cluster, target setting) that serves it
    file: descriptor_pb2.FileDescriptorProto
    index: int  # in its file, as source comments are addressed
    methods: tuple[Method, ...]

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


def _bindings(options: descriptor_pb2.MethodOptions) -> tuple[HttpBinding, ...]:
    if not options.HasExtension(http_annotations.http):
        return ()
    rule = options.Extensions[http_annotations.http]
    out = []
    for binding in [rule, *rule.additional_bindings]:
        kind = binding.WhichOneof("pattern")
        if kind is None:
            continue
        if kind == "custom":
            method, template = binding.custom.kind.lower(), binding.custom.path
        else:
            method, template = kind, getattr(binding, kind)
        out.append(HttpBinding(method, template, binding.body, binding.response_body, custom=kind == "custom"))
    return tuple(out)


def _cache_rule(
    where: str, options: descriptor_pb2.MethodOptions, bindings: tuple[HttpBinding, ...]
) -> CacheRule | None:
    if not options.HasExtension(api_annotations.cache):
        return None
    option = options.Extensions[api_annotations.cache]
    rule = CacheRule(cache_control=str(option.cache_control), edge_cached=bool(option.edge_cached))
    if not rule.cache_control:
        raise ValueError(f"{where} has a cache rule without a cache_control")
    if not bindings or any(b.method != "get" for b in bindings):
        raise ValueError(f"{where} has a cache rule but is not a GET")
    if rule.edge_cached and "max-age" not in rule.cache_control:
        raise ValueError(f"{where} is edge-cached without a max-age")
    return rule


def _backend(package: str) -> str:
    """aimusicstore.<backend>.v1 -> <backend>."""
    parts = package.split(".")
    if len(parts) != 3:
        raise ValueError(f"package {package} does not name its backend as aimusicstore.<backend>.<version>")
    return parts[1]


def _service(file: descriptor_pb2.FileDescriptorProto, index: int, backend: str) -> Service:
    proto = file.service[index]
    full_name = f"{file.package}.{proto.name}"
    methods = []
    for i, method in enumerate(proto.method):
        bindings = _bindings(method.options)
        cache_rule = _cache_rule(f"{full_name}.{method.name}", method.options, bindings)
        methods.append(Method(full_name, i, method, bindings, cache_rule))
    return Service(full_name, backend, file, index, tuple(methods))


class ApiDescriptors:
    """The public services of a FileDescriptorSet, in the order of its files."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.files: tuple[descriptor_pb2.FileDescriptorProto, ...] = tuple(descriptor_set.file)
        services = []
        for file in self.files:
            if not file.package.startswith(API_PACKAGE_PREFIX):
                continue
            for i in range(len(file.service)):
                service = _service(file, i, _backend(file.package))
                if any(m.bindings for m in service.methods):
                    services.append(service)
        self.services: tuple[Service, ...] = tuple(services)

    @classmethod
    def parse(cls, data: bytes) -> ApiDescriptors:
        return cls(descriptor_pb2.FileDescriptorSet.FromString(data))

    def methods(self) -> list[Method]:
        return [method for service in self.services for method in service.methods]

    def public_services(self) -> dict[str, str]:
        """Service full name -> the backend that serves it."""
        return {service.full_name: service.backend for service in self.services}

    def streaming_methods(self) -> list[str]:
        """gRPC paths of the methods that stream."""
        return [method.path for method in self.methods() if method.streams]

    def cache_control(self) -> dict[str, str]:
        """gRPC path -> the Cache-Control of its answers, for the reads that have one."""
        return {method.path: method.cache.cache_control for method in self.methods() if method.cache}

    def edge_cached_methods(self) -> list[str]:
        """gRPC paths of the reads the gateway's own cache keeps."""
        return [method.path for method in self.methods() if method.cache and method.cache.edge_cached]

    def method(self, path: str) -> Method:
        """A public method by its gRPC path."""
        for method in self.methods():
            if method.path == path:
                return method
        raise KeyError(f"no public method {path}")


@cache
def load(path: Path = DESCRIPTOR_SET) -> ApiDescriptors:
    """The descriptor set generated from this checkout's protos."""
    return ApiDescriptors.parse(path.read_bytes())
