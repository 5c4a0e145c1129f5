"""The artifact directory ``NAME.sparsec/``: written atomically, verified (versions, sha256) before use."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import SparsecError

if TYPE_CHECKING:
    import onnx

MANIFEST = "manifest.json"
MODEL = "model.onnx"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactWriter:
    """Builds the artifact in a temporary sibling directory and renames it into place only on success,
    so a failed compile never leaves a half-written artifact (and never destroys the previous one)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir.resolve()
        self.tmp: Path | None = None

    def __enter__(self) -> ArtifactWriter:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent))
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        assert self.tmp is not None, "use ArtifactWriter as a context manager"
        return self.tmp / name

    def seal(self, manifest: dict[str, Any]) -> Path:
        """Hash every file and write manifest.json inside the temporary directory (it can be loaded from there)."""
        assert self.tmp is not None, "use ArtifactWriter as a context manager"
        files = sorted(p.name for p in self.tmp.iterdir() if p.is_file() and p.name != MANIFEST)
        digests = {f: sha256_file(self.tmp / f) for f in files}
        manifest = {"artifact_format": FORMAT_VERSION, **manifest, "files": digests}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return self.tmp

    def commit(self) -> Path:
        """Move the sealed directory into place, replacing a previous artifact (never another kind of folder)."""
        assert self.tmp is not None and (self.tmp / MANIFEST).is_file(), "seal() before commit()"
        os.chmod(self.tmp, 0o755)
        if self.out_dir.exists():
            if not (self.out_dir / MANIFEST).is_file() and (self.out_dir.is_file() or any(self.out_dir.iterdir())):
                raise SparsecError(f"{self.out_dir}: exists and is not a sparsec artifact; refusing to replace it")
            old = self.out_dir.with_name(self.tmp.name + ".old")
            self.out_dir.rename(old)
            self.tmp.rename(self.out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.tmp.rename(self.out_dir)
        self.tmp = None
        return self.out_dir


def type_text(t: onnx.TypeProto) -> str:
    """An ONNX type as ORT spells it: tensor(float), seq(map(int64,tensor(float)))."""
    import onnx

    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).name})"
    if kind == "sequence_type":
        return f"seq({type_text(t.sequence_type.elem_type)})"
    if kind == "map_type":
        key = onnx.helper.tensor_dtype_to_np_dtype(t.map_type.key_type).name
        return f"map({key},{type_text(t.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({type_text(t.optional_type.elem_type)})"
    return str(kind)


def value_infos(values: Any, model: onnx.ModelProto) -> list[dict[str, Any]]:
    """The manifest's records of graph inputs/outputs (initializers listed as inputs left out)."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    out = []
    for v in values:
        if v.name in inits:
            continue
        if v.type.WhichOneof("value") not in (None, "tensor_type"):  # a sequence or map (ai.onnx.ml): ORT's
            out.append({"name": v.name, "type": type_text(v.type)})
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]
        out.append(
            {"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type), "shape": dims}
        )
    return out


def read_manifest(artifact: str | Path) -> dict[str, Any]:
    """Parse manifest.json and check every listed file's sha256; any mismatch is a one-line SparsecError."""
    d = Path(artifact)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise SparsecError(f"{d}: not a sparsec artifact (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SparsecError(f"{mpath}: corrupted manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise SparsecError(f"{mpath}: corrupted manifest (no file list)")
    if manifest.get("artifact_format") != FORMAT_VERSION:
        raise SparsecError(
            f"{d}: artifact format {manifest.get('artifact_format')!r}, this sparsec reads format {FORMAT_VERSION}"
        )
    files = manifest["files"]
    if MODEL not in files:
        raise SparsecError(f"{mpath}: corrupted manifest ({MODEL} not listed)")
    root = d.resolve()
    for name, digest in files.items():
        f = (root / str(name)).resolve()
        if f.parent != root:
            raise SparsecError(f"{mpath}: file entry {name!r} points outside the artifact")
        if not f.is_file():
            raise SparsecError(f"{d}: missing artifact file {name}")
        if sha256_file(f) != digest:
            raise SparsecError(f"{d}: {name} does not match its sha256 in the manifest (modified or corrupted)")
    return manifest


def check_versions(manifest: dict[str, Any], current: dict[str, str]) -> None:
    """Refuse artifacts built by another sparsec, TVM or ONNX Runtime, naming both versions."""
    built = manifest.get("versions", {})
    if not isinstance(built, dict):
        raise SparsecError("corrupted manifest (versions is not a mapping)")
    for key in ("sparsec", "tvm", "tvm_ffi", "onnxruntime"):
        if key in current and built.get(key) != current[key]:
            raise SparsecError(
                f"artifact was built with {key} {built.get(key)}, this installation has {key} {current[key]}; recompile"
            )
