"""The deployment files are valid, offline: compose against the Compose Specification schema
(bundled by check-jsonschema), every Kubernetes object that ``kubectl kustomize`` builds from the
base and each overlay against the Kubernetes 1.32 schemas (bundled by kubernetes-validate,
strict: an unknown field fails), KEDA objects against the fields KEDA requires. A deliberately
broken copy of each must fail, or the check proves nothing.

Also: every ``HEARO_*`` name that compose or the manifests set is a real setting; the images are
non-root with health checks; the alert rules and the dashboard use only documented metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.32"
KUSTOMIZATIONS = ("k8s/base", "k8s/overlays/dev", "k8s/overlays/prod")
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cuda.yml")
# What KEDA needs of its objects (its CRDs are not in kubernetes-validate).
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {"spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer"}, "pollingInterval": {"type": "integer"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"}, "metadata": {
                        "type": "object", "additionalProperties": {"type": "string"}}},
                }},
            },
        }},
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {"spec": {"type": "object", "properties": {"secretTargetRef": {"type": "array", "items": {
            "type": "object", "required": ["parameter", "name", "key"]}}}}},
    },
}  # fmt: skip


def compose_errors(path: Path) -> list[str]:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{path.name}: {e.json_path}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its built-in kustomize) is needed to build k8s/", pytrace=False)
    built = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False)
    if built.returncode != 0:
        raise AssertionError(f"kustomize {folder}: {built.stderr}")
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def manifest_errors(folder: Path) -> list[str]:
    errors = []
    for resource in kustomize(folder):
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        if resource.get("apiVersion", "").startswith("keda.sh/"):
            schema = KEDA_SCHEMAS.get(resource["kind"])
            if schema is None:
                errors.append(f"{name}: no schema for this KEDA kind")
                continue
            errors += [f"{name}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(resource)]
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{name}: {error}")
    return errors


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_match_the_compose_spec(name: str) -> None:
    assert compose_errors(REPO / name) == []


def test_a_broken_compose_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = (REPO / "docker-compose.yml").read_text()
    broken.write_text(text.replace("    restart: \"no\"\n", "    restart: \"no\"\n    replicas_typo: 2\n", 1))
    assert compose_errors(broken), "a service with an unknown key passed the schema"
    broken.write_text(text.replace("condition: service_healthy", "condition: service_happy", 1))
    assert compose_errors(broken), "an unknown depends_on condition passed the schema"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_kustomizations_build_valid_objects(folder: str) -> None:
    assert manifest_errors(REPO / folder) == []


def test_a_broken_manifest_fails(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(REPO / "k8s", copy)
    gateway = copy / "base" / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("containerPort: 8000", 'containerPort: "eight thousand"', 1))
    errors = manifest_errors(copy / "overlays" / "prod")
    assert any("containerPort" in e for e in errors), errors
    gateway.write_text((REPO / "k8s" / "base" / "gateway.yaml").read_text().replace("readinessProbe:", "readynessProbe:", 1))
    assert any("readynessProbe" in e for e in manifest_errors(copy / "overlays" / "dev"))


def test_the_deployment_invariants_hold() -> None:
    """What issue 15 asks of the manifests, read from what kustomize builds for production."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(REPO / "k8s/overlays/prod")}
    workers = objects[("ScaledObject", "hearo-alerting")]["spec"]
    assert workers["minReplicaCount"] >= 2 and objects[("Deployment", "hearo-alerting")]["spec"]["replicas"] >= 2
    inference = objects[("Deployment", "hearo-inference")]["spec"]["template"]["spec"]
    container = inference["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert inference["tolerations"] and inference["affinity"]["nodeAffinity"]
    assert container["livenessProbe"] != container["readinessProbe"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    for kind, name in objects:
        if kind == "Deployment":
            for each in objects[(kind, name)]["spec"]["template"]["spec"]["containers"]:
                assert each["resources"]["requests"] and each["resources"]["limits"], name
                assert "livenessProbe" in each and "readinessProbe" in each, name
    ingresses = [o for (kind, _), o in objects.items() if kind == "Ingress"]
    assert [i["metadata"]["name"] for i in ingresses] == ["hearo-gateway"]
    backends = {p["backend"]["service"]["name"] for r in ingresses[0]["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"hearo-gateway"}  # the only public entry
    assert not any(p["path"].startswith("/metrics") for r in ingresses[0]["spec"]["rules"] for p in r["http"]["paths"])
    assert ("HorizontalPodAutoscaler", "hearo-gateway") in objects and ("Job", "hearo-migrate") in objects
    assert {"hearo-gateway", "hearo-alerting", "hearo-inference"} <= {n for k, n in objects if k == "PodDisruptionBudget"}


def _setting_names() -> set[str]:
    """Every environment name some settings class of the services reads."""
    from hearo.agency import AgencySettings
    from services.alerting.settings import AlertingSettings
    from services.gateway.settings import GatewaySettings
    from services.inference.settings import InferenceSettings
    from shared.clips import ClipStorageSettings

    names: set[str] = set()
    classes: list[type[BaseSettings]] = [AgencySettings, AlertingSettings, GatewaySettings, InferenceSettings, ClipStorageSettings]
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias.upper())
            else:
                names.add(f"{prefix}{field_name}".upper())
    return names


def _names_set_by_deployment() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for key in service.get("environment") or {}:
            found.setdefault(key, set()).add(f"compose {name}")
    for folder in KUSTOMIZATIONS[1:]:
        for resource in kustomize(REPO / folder):
            keys: list[str] = list((resource.get("data") or {}).keys())
            if resource["kind"] == "Deployment":
                for container in resource["spec"]["template"]["spec"]["containers"]:
                    keys += [env["name"] for env in container.get("env", [])]
            for key in keys:
                found.setdefault(key, set()).add(f"{folder} {resource['kind']}/{resource['metadata']['name']}")
    for line in (REPO / ".env.example").read_text().splitlines() + (REPO / "k8s/base/secret.example.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            found.setdefault(line.split("=", 1)[0], set()).add("example env")
    return found


def test_every_hearo_variable_is_a_real_setting() -> None:
    settings = _setting_names() | {"HEARO_DATA_DIR", "HEARO_ENVIRONMENT", "HEARO_DATABASE_URL"}
    # Not settings of a service: inputs of compose's own interpolation, and the shared webhook
    # secret that compose spreads over the settings that take it.
    compose_inputs = {"HEARO_HTTP_PORT", "HEARO_WEBHOOK_SECRET", "HEARO_SECRET_KEY", "HEARO_BEATS_CHECKPOINT"}
    unknown = {
        name: sorted(where) for name, where in _names_set_by_deployment().items()
        if name.startswith("HEARO_") and name not in settings and name not in compose_inputs
    }  # fmt: skip
    assert unknown == {}


def test_images_are_pinned_non_root_and_health_checked() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    targets = {}
    for stage in stages:
        header = stage.splitlines()[0]
        targets[header.split(" AS ")[-1].strip()] = stage
    assert {"gateway", "alerting", "inference-cpu", "inference-cuda"} <= set(targets)
    for base in re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M):
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", base), base
    for target in ("gateway", "alerting", "inference-cpu", "inference-cuda"):
        stage = targets[target]
        assert re.search(r"^USER 10001", stage, re.M), target
        assert "HEALTHCHECK" in stage and "LABEL" in stage and "CMD [" in stage, target
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        image = service["image"]
        assert not image.endswith(":latest") and re.search(r":[\w.-]*\d", image), f"{name}: {image} is not pinned"


def _documented_metrics() -> set[str]:
    section = (REPO / "docs" / "operations.md").read_text().split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(hearo_[a-z_]+)`", section))


def _metric_names(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\b(hearo_[a-z_]+)", expr)}


def test_alert_rules_and_dashboard_use_documented_metrics() -> None:
    documented = _documented_metrics()
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "hearo-overview.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used and used <= documented, used - documented
    overdue = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "HearoIncidentOverdue"][0]
    assert overdue["expr"].endswith("> 5") and overdue["labels"]["severity"] == "page"
    runbooks = {r["annotations"]["runbook"].split("#")[1] for g in rules["groups"] for r in g["rules"]}
    headings = set(re.findall(r"^### (\S+)", (REPO / "docs" / "operations.md").read_text(), re.M))
    assert runbooks <= {h.lower() for h in headings}, runbooks - {h.lower() for h in headings}
