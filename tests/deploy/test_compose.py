"""docker-compose.yml: the whole stack as in production, checked by the real Compose binary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .support import (
    API_PORT,
    GATEWAY_PORT,
    GATEWAY_SETTINGS,
    GRACEFUL_TIMEOUT,
    REPO,
    SERVICES,
    WORKER_PORT,
    compose,
    load_documents,
)


def test_compose_config_is_valid() -> None:
    compose("config", "-q")
    compose("--profile", "monitoring", "config", "-q")


@pytest.mark.parametrize("variable", ["JWT_SECRET", "BROKER_PASSWORD",
                                      *(f"{name.upper()}_DB_PASSWORD" for name in SERVICES)])
def test_secrets_have_no_default(variable: str, tmp_path: Path) -> None:
    """Without the secret, compose refuses to start rather than run with a known value."""
    env_file = tmp_path / "env"
    env_file.write_text("".join(line + "\n" for line in
                                (REPO / ".env.example").read_text().splitlines()
                                if not line.startswith(f"{variable}=")))
    result = compose("config", "-q", env_file=env_file, check=False)
    assert result.returncode != 0
    assert variable in result.stderr


def _service(model: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in model["services"], f"compose has no service {name}"
    service: dict[str, Any] = model["services"][name]
    return service


def _healthcheck_url(service: dict[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    assert "python" in test, "the slim image has no curl: check with the image's python"
    return test


def test_every_long_running_container_has_a_healthcheck(compose_model: dict[str, Any]) -> None:
    for name, service in compose_model["services"].items():
        if name.endswith("-migrate"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize("name", SERVICES)
def test_service_processes(compose_model: dict[str, Any], name: str) -> None:
    migrate = _service(compose_model, f"{name}-migrate")
    api = _service(compose_model, f"{name}-api")
    worker = _service(compose_model, f"{name}-worker")

    for process, service in (("migrate", migrate), ("api", api), ("worker", worker)):
        assert service["command"] == [process]
        assert service["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert Path(service["build"]["context"]) == REPO
        assert service["image"] == api["image"], "one image runs every process"
        assert service.get("read_only") is True
        assert "/tmp" in service.get("tmpfs", [])
        assert service.get("cap_drop") == ["ALL"]
    assert migrate["restart"] == "no"
    assert {d: c["condition"] for d, c in migrate["depends_on"].items()} == {
        f"{name}-db": "service_healthy", "rabbitmq": "service_healthy"}
    for service in (api, worker):
        conditions = {d: c["condition"] for d, c in service["depends_on"].items()}
        assert conditions[f"{name}-migrate"] == "service_completed_successfully"
        assert conditions[f"{name}-db"] == "service_healthy"
        assert conditions["rabbitmq"] == "service_healthy"
        grace = service["stop_grace_period"]
        assert int(grace.rstrip("s")) > GRACEFUL_TIMEOUT

    assert f"127.0.0.1:{API_PORT}/readyz" in _healthcheck_url(api)
    assert f"127.0.0.1:{WORKER_PORT}/readyz" in _healthcheck_url(worker)
    # Only the gateway is published.
    assert not api.get("ports") and not worker.get("ports")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_its_own_database(compose_model: dict[str, Any], name: str) -> None:
    db = _service(compose_model, f"{name}-db")
    env = db["environment"]
    assert env["POSTGRES_DB"] == f"fleet_{name}"
    assert env["POSTGRES_USER"] == name
    url = compose_model["services"][f"{name}-api"]["environment"]["DATABASE_URL"]
    assert url == f"postgresql://{name}:{env['POSTGRES_PASSWORD']}@{name}-db:5432/fleet_{name}"
    others = [s for s in SERVICES if s != name]
    for other in others:
        assert env["POSTGRES_PASSWORD"] != \
            compose_model["services"][f"{other}-db"]["environment"]["POSTGRES_PASSWORD"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_gateway(compose_model: dict[str, Any]) -> None:
    gateway = _service(compose_model, "gateway")
    published = {(int(p["published"]), int(p["target"])) for p in gateway["ports"]}
    assert published == {(GATEWAY_PORT, GATEWAY_PORT)}
    env = gateway["environment"]
    assert set(env) == GATEWAY_SETTINGS
    assert env["GATEWAY_LISTEN"] == str(GATEWAY_PORT)
    # Clients connect to the published port themselves: nobody's X-Forwarded-For is believed.
    assert env["GATEWAY_TRUSTED_PROXIES"] == ""
    for name in SERVICES:
        assert env[f"{name.upper()}_SERVERS"] == f"server {name}-api:{API_PORT};"
        assert gateway["depends_on"][f"{name}-api"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway.get("read_only") is True


def test_gateway_trusted_proxies_come_from_the_env_file(tmp_path: Path) -> None:
    """With a proxy in front, .env names it; the gateway renders it as its trusted range."""
    from fleet_tools import gateway

    env_file = tmp_path / "env"
    env_file.write_text((REPO / ".env.example").read_text()
                        + "\nGATEWAY_TRUSTED_PROXIES=172.16.0.0/12, fd00::/8\n")
    model = json.loads(compose("config", "--format", "json", env_file=env_file).stdout)
    env = model["services"]["gateway"]["environment"]
    lines = gateway.template_values(env)["GATEWAY_REAL_IP_FROM"]
    assert lines == "set_real_ip_from 172.16.0.0/12; set_real_ip_from fd00::/8;"


def test_gateway_build_context_holds_what_its_dockerfile_copies(
        compose_model: dict[str, Any]) -> None:
    dockerfile = REPO / "gateway" / "Dockerfile"
    assert dockerfile.exists(), "gateway/Dockerfile is missing"
    build = compose_model["services"]["gateway"]["build"]
    context = Path(build["context"])
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                assert list(context.glob(source)), \
                    f"gateway/Dockerfile copies {source}, absent from build context {context}"


def test_broker_uses_a_pinned_management_image(compose_model: dict[str, Any]) -> None:
    rabbitmq = _service(compose_model, "rabbitmq")
    image = rabbitmq["image"]
    assert image.startswith("rabbitmq:3.13.") and image.endswith("-management")
    assert rabbitmq["healthcheck"]["test"]


def test_images_are_pinned(compose_model: dict[str, Any]) -> None:
    for name, service in compose_model["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_monitoring_profile_scrapes_every_process(compose_model: dict[str, Any]) -> None:
    prometheus = _service(compose_model, "prometheus")
    assert prometheus["profiles"] == ["monitoring"]
    config = load_documents((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())[0]
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    for name in SERVICES:
        assert f"{name}-api:{API_PORT}" in targets
        assert f"{name}-worker:{WORKER_PORT}" in targets
    for target in targets:
        assert target.split(":")[0] in compose_model["services"], f"unknown target {target}"
