"""Static checks of the kind recipe (e2e/kind/README.md), which needs Docker and cannot run
in CI: the script parses, builds every image there is, applies every manifest it ships, uses
the image names the manifests use, and the cluster has native sidecars."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
KIND = ROOT / "e2e" / "kind"
RUN = KIND / "run"


def run_script() -> str:
    return RUN.read_text()


def assignment(name: str) -> str:
    m = re.search(rf"^{name}=(\S+)$", run_script(), re.MULTILINE)
    assert m, f"e2e/kind/run: no `{name}=` line"
    return m.group(1)


def test_script_is_executable_bash_that_parses():
    assert os.access(RUN, os.X_OK), "e2e/kind/run is not executable"
    assert run_script().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in run_script()
    subprocess.run(["bash", "-n", str(RUN)], check=True)


def test_builds_every_dockerfile():
    dockerfiles = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*Dockerfile*"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert dockerfiles
    for dockerfile in dockerfiles:
        assert dockerfile in run_script(), f"e2e/kind/run does not build {dockerfile}"


def test_applies_every_manifest():
    for manifest in sorted((KIND / "manifests").glob("*.yaml")):
        assert f'"$manifests/{manifest.name}"' in run_script(), (
            f"e2e/kind/run never applies manifests/{manifest.name}"
        )


def test_manifests_use_the_images_the_script_builds():
    fake = f"{assignment('fake_image')}:{assignment('tag')}"
    manifest = (KIND / "manifests" / "fake-upstream.yaml").read_text()
    images = re.findall(r"^\s*image:\s*(\S+)", manifest, re.MULTILINE)
    assert images == [fake], f"manifests/fake-upstream.yaml runs {images}, the script builds {fake}"
    assert re.search(r"^\s*imagePullPolicy:\s*Never$", manifest, re.MULTILINE), (
        "a locally built image must never be pulled"
    )


def test_cluster_has_native_sidecars_and_pinned_nodes():
    config = (KIND / "cluster.yaml").read_text()
    images = re.findall(r"^\s*image:\s*(\S+)", config, re.MULTILINE)
    roles = re.findall(r"^\s*- role:\s*(\S+)", config, re.MULTILINE)
    assert roles == ["control-plane", "worker"]
    assert len(images) == len(roles), "every node names its image"
    for image in images:
        m = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.\d+@sha256:[0-9a-f]{64}", image)
        assert m, f"{image}: want kindest/node:vX.Y.Z@sha256:<digest>"
        assert (int(m.group(1)), int(m.group(2))) >= (1, 29), (
            f"{image}: native sidecars need Kubernetes 1.29 or newer"
        )
