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


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("install", "upgrade", "uninstall"):
        print(__doc__, file=sys.stderr)
        return 2
    action, release, namespace = argv[0], argv[1], argv[2]
    values = json.loads(argv[3]) if len(argv) > 3 else {}
    config = helm.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=namespace)
    try:
        if action == "install":
            result = config.install(CHART, release, values, namespace=namespace, timeout=120)
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
