"""deploy/: the Kubernetes files parse and point at this code location, its settings and its
secrets. The image is built only where a Docker engine runs (none does on the CI machines)."""

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from ecom_assets_tests.support import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
SECRET_VARIABLES = {"ECOM_API_KEY", "DESTINATION__POSTGRES__CREDENTIALS"}


def values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def secrets() -> dict[str, dict]:
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in documents}


def settings_read_by_the_code() -> set[str]:
    """Every ECOM_* variable the package reads."""
    names: set[str] = set()
    for source in (PROJECT_DIR / "ecom_assets").rglob("*.py"):
        names |= set(re.findall(r"\bECOM_[A-Z_]+\b", source.read_text()))
    return names


def test_the_user_code_deployment_serves_the_module_of_the_code_location() -> None:
    [deployment] = values()["dagster-user-deployments"]["deployments"]
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["dg"][
        "project"
    ]
    module = f"{project['root_module']}.definitions"  # dg's default target module
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module]
    assert f'"--module-name", "{module}"' in (DEPLOY / "Dockerfile").read_text()


def test_settings_and_secrets_reach_the_code_server_and_every_run_pod() -> None:
    chart = values()
    [deployment] = chart["dagster-user-deployments"]["deployments"]
    settings = {variable["name"] for variable in deployment["env"]}
    assert settings <= settings_read_by_the_code(), "no setting the code does not read"
    assert {"ECOM_DESTINATION", "ECOM_API_BASE_URL"} <= settings
    secret_names = secrets()
    [app_secret] = deployment["envSecrets"]
    assert chart["runLauncher"]["type"] == "K8sRunLauncher"
    assert chart["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [app_secret]
    assert set(secret_names[app_secret["name"]]["stringData"]) == SECRET_VARIABLES
    # Dagster's own storage password, from the secret the chart is told to use.
    assert chart["generatePostgresqlPasswordSecret"] is False
    storage_secret = secret_names[chart["global"]["postgresqlSecretName"]]
    assert "postgresql-password" in storage_secret["stringData"]


def test_the_chart_and_the_vm_instance_enforce_the_same_rules() -> None:
    chart = values()
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    daemon = chart["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert chart["concurrency"]["pools"] == {"defaultLimit": 1, "granularity": "run"}
    assert instance["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": 1}
    assert instance["run_retries"] == {"enabled": True, "max_retries": 1}
    assert set(instance["storage"]) == {"postgres"}


def test_the_dockerfile_copies_only_files_that_exist() -> None:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (PROJECT_DIR / source).exists(), source


def test_the_image_builds_where_a_docker_engine_runs() -> None:
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine on this machine: the image is not built")
    subprocess.run(
        [docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "ecom-assets:test", "."],
        cwd=PROJECT_DIR, check=True,
    )
