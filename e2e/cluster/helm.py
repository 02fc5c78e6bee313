#!/usr/bin/env python3
"""Helm for the cluster suite, through Helm's own engine (PyPI helm-python-sdk, Helm v4
as a C library): no helm binary needed. Talks to the cluster in $KUBECONFIG.

    helm.py install   RELEASE NAMESPACE [VALUES_JSON]   -> JSON: the objects it created
    helm.py upgrade   RELEASE NAMESPACE [VALUES_JSON]   -> JSON: the objects it manages
    helm.py uninstall RELEASE NAMESPACE                 -> JSON: {"uninstalled": RELEASE}

Never waits for workloads: with no kubelet (the local control plane) Pods stay Pending.
"""

import json
import os
import sys

import helm_python as helm
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "charts", "modelroute")


def objects(manifest: str) -> list[dict]:
    found = []
    for doc in yaml.safe_load_all(manifest or ""):
        if not doc:
            continue
        meta = doc.get("metadata", {})
        found.append(
            {
                "apiVersion": doc.get("apiVersion"),
                "kind": doc.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
            }
        )
    return found


def install(config: helm.Config, release: str, namespace: str, values: dict) -> dict:
    """`Config.install` with `force_conflicts`, which the Python wrapper does not expose
    (helm-python-sdk 0.2.2, pinned): Helm 4 server-side applies the chart's CRD, and in the
    cluster suite the other tests have applied the same CRD under their own field manager.
    Same content, so taking the fields over is harmless; without it Helm refuses."""
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts

    payload = _native.call_string(
        "helm_install",
        config._raw(),
        config._context_arg(None),
        _native.HANDLE(0),
        CHART,
        release,
        json.dumps(values),
        _opts(namespace=namespace, timeout_seconds=120, force_conflicts=True),
    )
    return _loads_obj(payload)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("install", "upgrade", "uninstall"):
        print(__doc__, file=sys.stderr)
        return 2
    action, release, namespace = argv[0], argv[1], argv[2]
    values = json.loads(argv[3]) if len(argv) > 3 else {}
    config = helm.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=namespace)
    try:
        if action == "install":
            result = install(config, release, namespace, values)
        elif action == "upgrade":
            result = config.upgrade(CHART, release, values, namespace=namespace, timeout=120)
        else:
            config.uninstall(release, timeout=120)
            print(json.dumps({"uninstalled": release}))
            return 0
    except helm.HelmError as e:
        print(f"helm {action} {release}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"objects": objects(result.get("manifest", ""))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
