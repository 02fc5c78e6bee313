"""Static checks of the container images (docs/images.md): their Dockerfiles and the build
context. No Docker engine needed; the facts come from the files, `cargo metadata` and git.

Each image must: build in a named stage and run in another (multi-stage); run on distroless
`:nonroot` whose Debian release matches the builder's (same glibc); run as a numeric, non-root
USER; build its binary with `cargo build --release --locked -p PACKAGE --bin BIN`, where the
package is a workspace member with that bin target; use a Rust toolchain at least the
workspace's `rust-version`; start that binary as its ENTRYPOINT; EXPOSE the ports the contract
gives it; carry the OCI labels. The root `.dockerignore` must keep build output out and every
file a build reads in.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Image:
    dockerfile: str
    package: str
    bin: str
    ports: frozenset[int]


# Ports: sidecar 4000 proxy (loopback) + 4001 admin; operator 8443 gRPC, 9443 webhook,
# 8080 admin; fake-upstream 8080.
IMAGES = [
    Image("sidecar/Dockerfile", "modelroute-sidecar", "modelroute-sidecar",
          frozenset({4000, 4001})),
    Image("operator/Dockerfile", "modelroute-operator", "modelroute-operator",
          frozenset({8443, 9443, 8080})),
    Image("e2e/Dockerfile.fake-upstream", "modelroute-e2e", "fake-upstream",
          frozenset({8080})),
]

DISTROLESS = re.compile(
    r"^gcr\.io/distroless/(?:cc|static)-debian(?P<debian>\d+):nonroot(?:@sha256:[0-9a-f]{64})?$"
)
RUST_IMAGE = re.compile(
    r"^(?:docker\.io/)?(?:library/)?rust:(?P<version>\d+\.\d+(?:\.\d+)?)-(?P<suite>[a-z]+)"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
DEBIAN_SUITES = {"bullseye": 11, "bookworm": 12, "trixie": 13}
OCI_LABELS = ("title", "description", "source", "licenses")


# ------------------------------------------------------------------ helpers


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[dict]

    def all(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    def last(self, instruction: str) -> str | None:
        values = self.all(instruction)
        return values[-1] if values else None


def stages(dockerfile: str) -> list[Stage]:
    # A file object: with a path, dockerfile-parse wants the name `Dockerfile`.
    parser = DockerfileParser(fileobj=io.BytesIO((ROOT / dockerfile).read_bytes()))
    out: list[Stage] = []
    for inst in parser.structure:
        if inst["instruction"] == "FROM":
            words = inst["value"].split()
            words = [w for w in words if not w.startswith("--platform=")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            out.append(Stage(image=words[0], name=name, instructions=[]))
        elif inst["instruction"] != "COMMENT":
            assert out, f"{dockerfile}: {inst['instruction']} before the first FROM"
            out[-1].instructions.append(inst)
    return out


def builder_of(dockerfile: str) -> Stage:
    """The stage the final stage copies its binary from."""
    all_stages = stages(dockerfile)
    final = all_stages[-1]
    sources = {
        m.group(1)
        for copy in final.all("COPY")
        if (m := re.search(r"--from=(\S+)", copy))
    }
    assert len(sources) == 1, f"{dockerfile}: the final stage copies from {sources or 'no stage'}"
    (source,) = sources
    named = [s for s in all_stages[:-1] if s.name == source]
    assert named, f"{dockerfile}: COPY --from={source} names no earlier stage"
    return named[0]


def cargo_build(dockerfile: str) -> list[str]:
    """The words of the `cargo build` command in the builder stage (up to `&&`/`;`)."""
    builds = []
    for run in builder_of(dockerfile).all("RUN"):
        words = shlex.split(run)
        for i, word in enumerate(words):
            if word == "cargo" and words[i + 1 : i + 2] == ["build"]:
                end = next(
                    (j for j in range(i, len(words)) if words[j] in ("&&", ";", "||")),
                    len(words),
                )
                builds.append(words[i:end])
    assert len(builds) == 1, f"{dockerfile}: want one `cargo build` in the builder, found {builds}"
    return builds[0]


def option(words: list[str], *names: str) -> list[str]:
    """Every value of an option given as `--name value` or `--name=value`."""
    values = []
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                values.append(words[i + 1])
            elif word.startswith(name + "="):
                values.append(word.split("=", 1)[1])
    return values


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="module")
def metadata() -> dict:
    cargo = os.environ.get("CARGO", "cargo")
    out = subprocess.run(
        [cargo, "metadata", "--no-deps", "--format-version", "1"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def workspace_package() -> dict:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]


def git_files(*pathspecs: str) -> list[str]:
    """Tracked files and new ones not ignored by .gitignore."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *pathspecs],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def members(metadata: dict) -> dict[str, dict]:
    ids = set(metadata["workspace_members"])
    return {p["name"]: p for p in metadata["packages"] if p["id"] in ids}


# ------------------------------------------------------------------ Dockerfiles


def test_every_dockerfile_is_checked():
    assert sorted(git_files("*Dockerfile*")) == sorted(i.dockerfile for i in IMAGES), (
        "every Dockerfile needs an entry in IMAGES (and every entry a Dockerfile)"
    )


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_multi_stage_onto_distroless_nonroot(image: Image):
    all_stages = stages(image.dockerfile)
    assert len(all_stages) >= 2, f"{image.dockerfile}: build and runtime must be separate stages"
    final = all_stages[-1]
    runtime = DISTROLESS.match(final.image)
    assert runtime, f"{image.dockerfile}: final stage runs on {final.image}, not distroless :nonroot"
    builder = RUST_IMAGE.match(builder_of(image.dockerfile).image)
    assert builder, (
        f"{image.dockerfile}: builder {builder_of(image.dockerfile).image} is not rust:X.Y-<debian>"
    )
    suite = builder.group("suite")
    assert DEBIAN_SUITES.get(suite) == int(runtime.group("debian")), (
        f"{image.dockerfile}: builder on Debian {suite} but runtime debian{runtime.group('debian')}: "
        "the binary must link against the runtime's glibc"
    )


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_runs_as_numeric_non_root_user(image: Image):
    user = stages(image.dockerfile)[-1].last("USER")
    assert user is not None, f"{image.dockerfile}: the final stage sets no USER"
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user.strip())
    assert m, (
        f"{image.dockerfile}: USER {user!r} must be numeric (runAsNonRoot cannot check a name)"
    )
    assert int(m.group(1)) != 0, f"{image.dockerfile}: USER is root"
    assert m.group(2) is None or int(m.group(2)) != 0, f"{image.dockerfile}: group is root"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_builds_the_bin_locked_in_release(image: Image, metadata: dict):
    words = cargo_build(image.dockerfile)
    assert "--release" in words, f"{image.dockerfile}: {' '.join(words)} is not a release build"
    assert "--locked" in words, (
        f"{image.dockerfile}: {' '.join(words)} does not build with Cargo.lock as it is"
    )
    packages = option(words, "-p", "--package")
    bins = option(words, "--bin")
    assert packages == [image.package], f"{image.dockerfile}: builds packages {packages}"
    assert bins == [image.bin], f"{image.dockerfile}: builds bins {bins}"

    workspace = members(metadata)
    for package in packages:
        assert package in workspace, (
            f"{image.dockerfile}: package {package} is not a workspace member ({sorted(workspace)})"
        )
    bin_targets = [t["name"] for t in workspace[image.package]["targets"] if "bin" in t["kind"]]
    assert image.bin in bin_targets, f"{image.package} has no bin {image.bin} ({bin_targets})"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_builder_rust_is_at_least_the_workspace_rust_version(image: Image, metadata: dict):
    builder = RUST_IMAGE.match(builder_of(image.dockerfile).image)
    assert builder, f"{image.dockerfile}: builder is not a rust:X.Y image"
    have = version_tuple(builder.group("version"))
    need = members(metadata)[image.package]["rust_version"]
    assert need, f"{image.package} declares no rust-version"
    assert have >= version_tuple(need), (
        f"{image.dockerfile}: builder Rust {builder.group('version')} < rust-version {need}"
    )


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_entrypoint_is_the_built_binary(image: Image):
    final = stages(image.dockerfile)[-1]
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None, f"{image.dockerfile}: no ENTRYPOINT"
    # Exec form (a JSON list): the binary is PID 1 and gets SIGTERM; no shell in between.
    try:
        argv = json.loads(entrypoint)
    except json.JSONDecodeError:
        argv = None
    assert isinstance(argv, list) and argv, (
        f"{image.dockerfile}: ENTRYPOINT {entrypoint} is not exec form"
    )
    path = argv[0]
    assert Path(path).name == image.bin, f"{image.dockerfile}: ENTRYPOINT runs {path}"

    # The binary at that path is the one the build produced.
    copies = [shlex.split(c) for c in final.all("COPY") if "--from=" in c]
    into = {c[-1]: c[-2] for c in copies}
    assert path in into, f"{image.dockerfile}: nothing is copied to {path}"
    produced = into[path]
    runs = " ".join(builder_of(image.dockerfile).all("RUN"))
    assert f"target/release/{image.bin} {produced}" in runs, (
        f"{image.dockerfile}: {produced} is not installed from target/release/{image.bin}"
    )


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_exposes_the_contract_ports(image: Image):
    exposed = {
        int(port.split("/")[0])
        for value in stages(image.dockerfile)[-1].all("EXPOSE")
        for port in value.split()
    }
    assert exposed == image.ports, f"{image.dockerfile}: EXPOSE {sorted(exposed)}"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_oci_labels(image: Image, workspace_package: dict):
    labels = dict(
        word.split("=", 1)
        for value in stages(image.dockerfile)[-1].all("LABEL")
        for word in shlex.split(value)
    )
    for key in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), f"{image.dockerfile}: no {key} label"
    assert labels["org.opencontainers.image.source"] == workspace_package["repository"]
    assert labels["org.opencontainers.image.licenses"] == workspace_package["license"]
    assert labels["org.opencontainers.image.title"].startswith("modelroute-")


# ------------------------------------------------------------------ .dockerignore


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line, with Docker's semantics: paths relative to the context,
    `*` and `?` within one path element, `**` across elements, `!` re-includes, last match wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exclude, re.compile(f"^{regex}$")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` out of the context: a rule matches the path or one of
    its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exclude, regex in rules:
        if any(regex.match(c) for c in candidates):
            verdict = exclude
    return verdict


def test_matcher_follows_docker_semantics():
    rules = [
        (True, re.compile(r"^target$")),
        (True, re.compile(r"^(?:.*/)?__pycache__$")),
        (False, re.compile(r"^target/keep$")),
    ]
    assert ignored("target/release/x", rules)
    assert ignored("e2e/python/__pycache__/a.pyc", rules)
    assert not ignored("sidecar/src/route/target.rs", rules)
    assert not ignored("target/keep", rules)


def test_dockerignore_keeps_build_output_and_vcs_out():
    rules = dockerignore_rules()
    for path in ("target", "target/release/modelroute-sidecar", ".git/HEAD", ".venv/bin/python"):
        assert ignored(path, rules), f".dockerignore lets {path} into the build context"


def test_dockerignore_keeps_every_file_a_build_reads(metadata: dict):
    """Every tracked file of a workspace member is in the context, except the e2e tooling
    that no crate reads (cluster scripts, kind recipe, Python SDK checks) and Dockerfiles."""
    not_read_by_builds = ("e2e/cluster/", "e2e/kind/", "e2e/python/")
    rules = dockerignore_rules()
    needed = ["Cargo.toml", "Cargo.lock"]
    for package in members(metadata).values():
        member = Path(package["manifest_path"]).parent.relative_to(ROOT).as_posix()
        needed += [
            f
            for f in git_files(member)
            if not f.startswith(not_read_by_builds) and "Dockerfile" not in Path(f).name
        ]
    left_out = [f for f in needed if ignored(f, rules)]
    assert not left_out, f".dockerignore leaves out files the build reads: {left_out}"
