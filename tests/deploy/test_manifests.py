"""deploy/k8s checked offline: against the Kubernetes and KEDA schemas, and against
taskq itself (the env it reads, the commands it has, the keys it writes, its shutdown).

No cluster, no KEDA, no Redis: ``kubernetes-validate`` ships the Kubernetes schemas,
tests/deploy/crds/ holds KEDA's CRDs (their ``openAPIV3Schema``, made strict below the
way the API server's strict field validation is).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from taskq.cli import _queues
from taskq.config import DEFAULT_PREFIX, Settings
from taskq.keys import GROUP, Keyspace
from taskq.partitions import partition_names
from tests.deploy.surface import (
    K8S,
    MANIFESTS,
    deployment,
    docs_of_kind,
    literal_env,
    load,
    parse_taskq,
    taskq_envvars,
    worker_container,
)

#: The Kubernetes version the manifests are checked against (and so need at least).
K8S_VERSION = "1.30.0"

CRDS = Path(__file__).parent / "crds"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}

#: Worker.run joins the delay-queue mover for up to this long after the hand-back.
MOVER_JOIN_SECONDS = 5.0

#: The partitioned-queue variant: queue `hot` split 4 ways (the brief's example).
HOT_QUEUE, HOT_PARTITIONS = "hot", 4

SCALED_OBJECTS = {
    K8S / "keda-scaledobject.yaml": "redis-streams",
    K8S / "variants" / "keda-scaledobject-cluster.yaml": "redis-cluster-streams",
    K8S / "variants" / "keda-scaledobject-partitioned.yaml": "redis-cluster-streams",
}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(K8S)) for p in paths]


def _strict(schema: Any) -> Any:
    """``schema`` with unknown fields refused wherever the CRD lists the fields (the
    API server's strict field validation; plain JSON Schema would accept typos)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_schemas() -> dict[str, Any]:
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        (crd,) = load(path)
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        api = f"{crd['spec']['group']}/{version['name']}"
        schemas[crd["spec"]["names"]["kind"]] = (api, _strict(version["schema"]["openAPIV3Schema"]))
    return schemas


CRD_SCHEMAS = _crd_schemas()


def _validate(doc: dict[str, Any]) -> None:
    """Validate one document: a KEDA kind against its CRD, anything else with
    kubernetes-validate (strict). Raises on an invalid document."""
    if doc["kind"] in CRD_KINDS:
        api, schema = CRD_SCHEMAS[doc["kind"]]
        assert doc["apiVersion"] == api
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# -- schemas ------------------------------------------------------------------------


def test_the_crds_are_vendored_and_the_manifest_set_is_complete() -> None:
    assert set(CRD_SCHEMAS) == CRD_KINDS
    assert {p.relative_to(K8S).as_posix() for p in MANIFESTS} == {
        "worker.yaml",
        "pdb.yaml",
        "keda-scaledobject.yaml",
        "variants/keda-scaledobject-cluster.yaml",
        "variants/keda-scaledobject-partitioned.yaml",
        "examples/secret.yaml",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=_ids(MANIFESTS))
def test_every_manifest_validates(path: Path) -> None:
    docs = load(path)
    assert docs
    for doc in docs:
        _validate(doc)


def test_the_validators_refuse_what_they_should() -> None:
    """The checks above can fail: a typo, a wrong type, a missing field."""
    dep = copy.deepcopy(deployment())
    dep["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 45
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriodSecond"):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    (so,) = [d for _, d in docs_of_kind("ScaledObject", [K8S / "keda-scaledobject.yaml"])]
    bad = copy.deepcopy(so)
    bad["spec"]["triggers"][0]["metadata"]["lagCount"] = 100  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        _validate(bad)
    bad = copy.deepcopy(so)
    bad["spec"]["minReplicaCont"] = 0
    with pytest.raises(jsonschema.ValidationError, match="minReplicaCont"):
        _validate(bad)
    bad = copy.deepcopy(so)
    del bad["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError, match="scaleTargetRef"):
        _validate(bad)


def test_the_directory_applies_alone() -> None:
    """`kubectl apply -f deploy/k8s/` (not recursive): no namespace to pre-create, no
    placeholder Secret over a real one, one ScaledObject per Deployment (KEDA refuses a
    second), and nothing references a kind the directory lacks but the Secret."""
    top = sorted(K8S.glob("*.yaml"))
    docs = [d for p in top for d in load(p)]
    for path in MANIFESTS:
        for doc in load(path):
            assert "namespace" not in doc["metadata"], path
    assert "Secret" not in {d["kind"] for d in docs}
    targets = [d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"]
    assert targets == [deployment()["metadata"]["name"]]


# -- the worker Deployment ----------------------------------------------------------


def _worker_ctx(monkeypatch: pytest.MonkeyPatch) -> Any:
    c = worker_container()
    return parse_taskq(c["command"] + c.get("args", []), literal_env(c), monkeypatch)


def test_the_worker_runs_taskq_worker_in_exec_form(monkeypatch: pytest.MonkeyPatch) -> None:
    c = worker_container()
    assert c["command"][:2] == ["taskq", "worker"]  # no shell in between: SIGTERM reaches it
    ctx = _worker_ctx(monkeypatch)  # every option named exists and parses
    from taskq.app import load_app

    app = load_app(ctx.params["app_spec"])
    assert set(_queues(ctx.params["queues"])) <= set(app.queues())
    with pytest.raises(click.NoSuchOption):
        parse_taskq(["taskq", "worker", "m:app", "--gracee", "1"], {}, monkeypatch)


def test_the_env_the_manifests_set_is_env_taskq_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    known = taskq_envvars(monkeypatch)
    assert {"TASKQ_REDIS_URL", "TASKQ_PREFIX", "TASKQ_HEARTBEAT_FILE"} <= known
    assert "TASKQ_REDIS_URLS" not in known  # the check can fail
    for path, doc in docs_of_kind("Deployment"):
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith("TASKQ_"):
                    assert e["name"] in known, f"{path}: {e['name']} is read by nothing"
                else:  # the others are there for KEDA, and say so by their name
                    assert e["name"].startswith("KEDA_"), e["name"]


def test_the_redis_url_and_keda_credentials_come_from_the_secret() -> None:
    (secret,) = [d for _, d in docs_of_kind("Secret")]
    data = secret["stringData"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in worker_container()["env"]
        if "valueFrom" in e
    }
    assert "TASKQ_REDIS_URL" in refs
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in data
    for _, auth in docs_of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in data
    # The example's three keys describe one Redis.
    url = urlsplit(data["redis-url"])
    assert data["redis-address"] == f"{url.hostname}:{url.port}"
    assert data["redis-password"] == url.password
    assert "CHANGE-ME" in data["redis-password"]  # a placeholder, and it says so


def test_the_worker_runs_unprivileged() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A named USER in the image cannot be checked by the kubelet: a numeric uid can.
    assert pod["securityContext"]["runAsUser"] > 0
    sc = worker_container()["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_termination_grace_outlasts_the_workers_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker.run on SIGTERM: the blocking read in progress ends (block_seconds), the
    tasks get --grace, the outbox flush and hand-back take at most a socket timeout on
    a slow Redis, the mover is joined. All of it before the kubelet's SIGKILL."""
    grace = _worker_ctx(monkeypatch).params["grace"]
    s = Settings()
    shutdown = s.block_seconds + grace + s.socket_timeout + MOVER_JOIN_SECONDS
    period = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace < shutdown < period
    assert period < grace + 60  # and not so long that a stuck pod lingers for minutes


def test_the_probes_read_the_heartbeat_the_worker_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    c = worker_container()
    written = _worker_ctx(monkeypatch).params["heartbeat_file"]
    assert written
    for probe in ("livenessProbe", "startupProbe"):
        argv = c[probe]["exec"]["command"]
        assert argv[:2] == ["taskq", "health"]
        ctx = parse_taskq(argv, literal_env(c), monkeypatch)
        assert ctx.params["heartbeat_file"] == written, probe
        assert c[probe]["timeoutSeconds"] >= 2  # a Python start, not a ping
    # On a writable emptyDir (the root filesystem is read-only), not on Redis.
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if written.startswith(m["mountPath"] + "/")]
    assert "emptyDir" in volumes[mount["name"]]
    assert not mount.get("readOnly", False)
    max_age = ctx.params["max_age"]
    assert max_age > 1.0  # the supervisor touches the file about every second


def test_the_pdb_covers_the_workers_and_never_blocks_drains() -> None:
    (pdb,) = [d for _, d in docs_of_kind("PodDisruptionBudget")]
    dep = deployment()["spec"]
    labels = dep["template"]["metadata"]["labels"]
    assert dep["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert "minAvailable" not in pdb["spec"]  # with zero replicas it would block drains
    assert "replicas" not in dep  # KEDA owns the count


# -- KEDA ---------------------------------------------------------------------------


def _scaled_object(path: Path) -> dict[str, Any]:
    (so,) = [d for _, d in docs_of_kind("ScaledObject", [path])]
    return so


def _streams_of(so: dict[str, Any], mode: str) -> list[str]:
    key = {"lag": "lagCount", "pending": "pendingEntriesCount"}[mode]
    return [t["metadata"]["stream"] for t in so["spec"]["triggers"] if key in t["metadata"]]


@pytest.mark.parametrize("path", list(SCALED_OBJECTS), ids=_ids(list(SCALED_OBJECTS)))
def test_keda_triggers_fit_the_worker(path: Path) -> None:
    so = _scaled_object(path)
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    # The CRD's CEL rule, which jsonschema does not run.
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    env = {e["name"] for e in worker_container()["env"]}
    auths = {d["metadata"]["name"] for _, d in docs_of_kind("TriggerAuthentication", [path])}
    names = [t["name"] for t in spec["triggers"]]
    assert len(set(names)) == len(names)
    for t in spec["triggers"]:
        assert t["type"] == SCALED_OBJECTS[path]
        meta = t["metadata"]
        assert meta["consumerGroup"] == GROUP
        # Exactly one mode: lag (can scale from zero) or pending (runs in flight).
        assert ("lagCount" in meta) != ("pendingEntriesCount" in meta)
        for key, value in meta.items():
            if key.endswith("FromEnv"):  # KEDA reads these from the target's container
                assert value in env, f"{t['name']}: {key}={value} is not in the worker's env"
        assert t["authenticationRef"]["name"] in auths  # defined in the same file
    # Scaling from zero needs a lag trigger: at zero replicas nothing is pending.
    assert spec["minReplicaCount"] > 0 or _streams_of(so, "lag")
    # Every lag stream is also watched for runs in flight: no scale to zero under them.
    assert sorted(_streams_of(so, "lag")) == sorted(_streams_of(so, "pending"))


@pytest.mark.parametrize(
    "path",
    [K8S / "keda-scaledobject.yaml", K8S / "variants" / "keda-scaledobject-cluster.yaml"],
    ids=["single", "cluster"],
)
def test_keda_watches_the_streams_the_worker_consumes(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _worker_ctx(monkeypatch)
    prefix = literal_env(worker_container()).get("TASKQ_PREFIX", DEFAULT_PREFIX)
    consumed = {Keyspace(prefix).stream(q) for q in _queues(ctx.params["queues"])}
    so = _scaled_object(path)
    assert set(_streams_of(so, "lag")) == consumed
    assert "taskq:{default}:stream" in consumed  # as written in the YAML


def test_the_partitioned_variant_has_one_trigger_per_partition_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = literal_env(worker_container()).get("TASKQ_PREFIX", DEFAULT_PREFIX)
    ks = Keyspace(prefix)
    expected = [ks.stream(name) for name in partition_names(HOT_QUEUE, HOT_PARTITIONS)]
    assert len(set(expected)) == HOT_PARTITIONS
    so = _scaled_object(K8S / "variants" / "keda-scaledobject-partitioned.yaml")
    assert _streams_of(so, "lag") == expected
    assert _streams_of(so, "pending") == expected
    # The formula adds every trigger up, each once: none is left out of the scaling.
    formula = so["spec"]["advanced"]["scalingModifiers"]["formula"]
    used = re.findall(r"[A-Za-z_]\w*", formula)
    names = [t["name"] for t in so["spec"]["triggers"]]
    assert sorted(u for u in used if u != "max") == sorted(names)
