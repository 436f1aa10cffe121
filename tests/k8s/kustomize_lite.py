"""A tiny offline renderer for the Kustomize features k8s/ uses, so the tests need no kustomize binary.

Supported: `resources` (YAML files, multi-document, and directories with a kustomization.yaml, recursively),
`labels` (pairs added to metadata.labels only: includeSelectors/includeTemplates false, as we use them),
`images` (newName/newTag by image name), `namespace` (objects and RoleBinding ServiceAccount subjects), and
`patches` with a `target` (kind/name/version/group) and an inline JSON6902 `patch` (add/replace/remove).
Any other kustomization key fails loudly, so a manifest never relies on something this file ignores.
Transformers run in kustomize's order for these features: resources, patches, then namespace, labels, images.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "labels", "images", "namespace", "patches"}


class RenderError(ValueError):
    pass


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_json6902(obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and (last not in node if isinstance(node, dict) else False):
                raise RenderError(f"replace of missing {op['path']}")
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if op["op"] == "add":
                    node.insert(index, op["value"])
                else:
                    node[index] = op["value"]
            else:
                node[last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise RenderError(f"JSON6902 op {op['op']!r} is not supported here")


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "version": version,
        "group": group,
        "namespace": obj["metadata"].get("namespace"),
    }
    for key, wanted in target.items():
        if key not in checks:
            raise RenderError(f"patch target key {key!r} is not supported here")
        if checks[key] != wanted:
            return False
    return True


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec) if obj["kind"] != "Pod" else spec
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def _set_image(container: dict[str, Any], rule: dict[str, Any]) -> None:
    image = container["image"]
    name = image.split("@")[0]
    name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    if name != rule["name"]:
        return
    tag = image[len(name) :]
    new_name = rule.get("newName", name)
    if "digest" in rule:
        tag = "@" + rule["digest"]
    elif "newTag" in rule:
        tag = ":" + str(rule["newTag"])
    container["image"] = new_name + tag


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` would emit (for the supported subset), in resource order."""
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise RenderError(f"{directory} has no kustomization.yaml")
    spec = yaml.safe_load(kustomization_file.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise RenderError(f"{kustomization_file}: unsupported keys {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += render(path)
        elif path.is_file():
            objects += [copy.deepcopy(doc) for doc in load_yaml_documents(path)]
        else:
            raise RenderError(f"{kustomization_file}: resource {resource} does not exist")
    seen = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in seen:
            raise RenderError(f"{kustomization_file}: duplicate object {key}")
        seen.add(key)
    for patch in spec.get("patches", []):
        if set(patch) - {"target", "patch"}:
            raise RenderError(f"{kustomization_file}: only inline JSON6902 patches with a target are supported")
        ops = yaml.safe_load(patch["patch"])
        hits = [obj for obj in objects if _matches(obj, patch["target"])]
        if not hits:
            raise RenderError(f"{kustomization_file}: patch target {patch['target']} matches nothing")
        for obj in hits:
            apply_json6902(obj, ops)
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
            if obj["kind"] == "RoleBinding":
                for subject in obj.get("subjects", []):
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = spec["namespace"]
    for label in spec.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise RenderError("labels with includeSelectors/includeTemplates are not supported here")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    for rule in spec.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                _set_image(container, rule)
    return objects
