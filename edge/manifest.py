"""``manifest.json``: the contract between export/ and the runtime, parsed and validated.

The runtime trusts nothing in an artifact directory: every file it will read is listed with its sha256,
every path must stay inside the directory, and the graph entries must hold the tensors the runtime uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import TensorSpec

from .errors import ManifestError
from .heads import parse_heads
from .state import StateSpec

FORMAT = "cobra-edge-artifact"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Tensors the runtime feeds and reads, per graph (the export side writes the same names: export/graphs.py).
# The vision graph's outputs (one fused ``patch_features``, or ``features_<encoder>`` per encoder) are fed to the
# projector by name; a projector may also take detector boxes (BOX_INPUTS) and then emits ``object_embeds``.
REQUIRED_TENSORS = {
    "vision": ({"pixels"}, set()),
    "projector": (set(), {"visual_embeds"}),
    "embed": ({"input_ids"}, {"inputs_embeds"}),
    "prefill": ({"inputs_embeds", "conv_state", "ssm_state"}, {"logits", "next_token", "conv_state_out", "ssm_state_out"}),
    "step": ({"input_ids", "conv_state", "ssm_state"}, {"logits", "next_token", "conv_state_out", "ssm_state_out"}),
}
BOX_INPUTS = {"boxes": TensorSpec("boxes", "float32", ("B", "K", 4)), "box_mask": TensorSpec("box_mask", "bool", ("B", "K"))}
LM_GRAPHS = ("embed", "prefill", "step")
VISION_GRAPHS = ("vision", "projector")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def confined_path(root: Path, rel: str, what: str) -> Path:
    """Resolve ``rel`` inside ``root``; refuse absolute paths, '..' and links that lead outside."""
    if not isinstance(rel, str) or not rel:
        raise ManifestError(f"{root / MANIFEST_NAME}: {what}: expected a relative file name, got {rel!r}")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise ManifestError(f"{root / MANIFEST_NAME}: {what}: path {rel!r} leaves the artifact directory")
    full = (root / p).resolve()
    if os.path.commonpath([full, root.resolve()]) != str(root.resolve()):
        raise ManifestError(f"{root / MANIFEST_NAME}: {what}: path {rel!r} resolves outside the artifact directory")
    return full


@dataclass
class GraphEntry:
    name: str
    file: str
    path: Path
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    custom_ops: tuple[str, ...] = ()  # "domain.Op" nodes with a portable function body (engines/kernels runs them fused)


@dataclass
class Manifest:
    root: Path
    model: dict
    graphs: dict[str, GraphEntry]
    state: StateSpec
    tokenizer_path: Path
    eos_token_id: int
    prompt_template: str
    image_size: int
    visual_tokens: int
    preprocessing: dict
    parity: dict
    files: dict[str, dict]
    raw: dict = field(repr=False)
    variants: dict[str, dict[str, GraphEntry]] = field(default_factory=dict)  # precision -> graphs it replaces
    weights_file: str | None = None  # the shared weights file every graph's initializers live in (None: per graph)
    heads: list = field(default_factory=list)  # edge.heads.HeadEntry: action heads on the prefill's hidden states
    heads_source: dict = field(default_factory=dict)

    @property
    def weights_path(self) -> Path | None:
        return None if self.weights_file is None else self.root / self.weights_file

    @property
    def has_vision(self) -> bool:
        return "vision" in self.graphs

    @property
    def precisions(self) -> list[str]:
        return ["fp32", *self.variants]

    def graphs_for(self, precision: str = "fp32") -> dict[str, GraphEntry]:
        """The graphs to run at ``precision``: fp32's, with the variant's files where it has one."""
        if precision == "fp32":
            return dict(self.graphs)
        if precision not in self.variants:
            raise ManifestError(f"{self.root}: no {precision!r} variant; this artifact has {self.precisions} "
                                f"(export it with --precision {precision})")
        return {**self.graphs, **self.variants[precision]}

    @classmethod
    def load(cls, directory: str | os.PathLike, verify_hashes: bool = True) -> "Manifest":
        root = Path(directory)
        mpath = root / MANIFEST_NAME
        if not root.is_dir():
            raise ManifestError(f"{root}: not a directory (expected an exported artifact directory)")
        if not mpath.is_file():
            raise ManifestError(f"{mpath}: missing (is {root} an artifact made by 'cobra-edge export'?)")
        try:
            raw = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"{mpath}: not valid JSON: {e}") from e
        return cls.from_dict(root, raw, verify_hashes=verify_hashes)

    @classmethod
    def from_dict(cls, root: Path, raw: Any, verify_hashes: bool = True) -> "Manifest":
        mpath = root / MANIFEST_NAME

        def need(d, key, kind, where="manifest"):
            if not isinstance(d, dict) or key not in d:
                raise ManifestError(f"{mpath}: {where}: missing key {key!r}")
            v = d[key]
            if not isinstance(v, kind):
                raise ManifestError(f"{mpath}: {where}.{key}: expected {kind.__name__}, got {type(v).__name__}")
            return v

        if need(raw, "format", str) != FORMAT:
            raise ManifestError(f"{mpath}: format is {raw['format']!r}, expected {FORMAT!r}")
        version = need(raw, "format_version", int)
        if version != FORMAT_VERSION:
            raise ManifestError(
                f"{mpath}: format_version {version} is not supported by this runtime (reads {FORMAT_VERSION}); "
                "re-export with a matching cobra-edge"
            )
        files = need(raw, "files", dict)
        checked: dict[str, Path] = {}
        for rel, info in files.items():
            full = confined_path(root, rel, f"files[{rel!r}]")
            digest = need(info, "sha256", str, f"files[{rel!r}]")
            if not full.is_file():
                raise ManifestError(f"{full}: listed in the manifest but missing")
            if verify_hashes:
                actual = sha256_file(full)
                if actual != digest:
                    raise ManifestError(
                        f"{full}: sha256 mismatch (manifest {digest[:16]}..., file {actual[:16]}...): "
                        "the file was changed or corrupted after export"
                    )
            checked[rel] = full

        def listed(rel: str, what: str) -> Path:
            full = confined_path(root, rel, what)
            if rel not in checked:
                raise ManifestError(f"{mpath}: {what}: {rel!r} is not listed in 'files' (no hash to check it by)")
            return full

        graphs: dict[str, GraphEntry] = {}
        for gname, g in need(raw, "graphs", dict).items():
            if gname not in REQUIRED_TENSORS:
                raise ManifestError(f"{mpath}: unknown graph {gname!r}; known: {sorted(REQUIRED_TENSORS)}")
            where = f"graphs.{gname}"
            file = need(g, "file", str, where)
            ins = {n: _tensor_spec(mpath, f"{where}.inputs.{n}", s) for n, s in need(g, "inputs", dict, where).items()}
            outs = {n: _tensor_spec(mpath, f"{where}.outputs.{n}", s) for n, s in need(g, "outputs", dict, where).items()}
            req_in, req_out = REQUIRED_TENSORS[gname]
            if not req_in <= set(ins) or not req_out <= set(outs):
                raise ManifestError(
                    f"{mpath}: {where}: needs inputs {sorted(req_in)} and outputs {sorted(req_out)}, "
                    f"declares {sorted(ins)} -> {sorted(outs)}"
                )
            custom_ops = g.get("custom_ops", [])
            if not isinstance(custom_ops, list) or not all(isinstance(o, str) for o in custom_ops):
                raise ManifestError(f"{mpath}: {where}.custom_ops: expected a list of 'domain.Op' names")
            graphs[gname] = GraphEntry(gname, file, listed(file, f"{where}.file"), ins, outs, tuple(custom_ops))
        missing = [g for g in LM_GRAPHS if g not in graphs]
        if missing:
            raise ManifestError(f"{mpath}: graphs {missing} missing; every artifact needs {list(LM_GRAPHS)}")
        if ("vision" in graphs) != ("projector" in graphs):
            raise ManifestError(f"{mpath}: 'vision' and 'projector' graphs come together or not at all")
        if "vision" in graphs:
            _check_vision_feeds_projector(mpath, graphs["vision"], graphs["projector"])

        try:
            state = StateSpec.from_dict(need(raw, "state", dict))
        except ValueError as e:
            raise ManifestError(f"{mpath}: state: {e}") from e
        for gname in ("prefill", "step"):
            for tname, want, shape in (("conv_state", state.conv_dtype, state.conv_shape),
                                       ("ssm_state", state.ssm_dtype, state.ssm_shape)):
                spec = graphs[gname].inputs[tname]
                expected = TensorSpec(tname, want, ("B", *shape))
                if not spec.matches(expected):
                    raise ManifestError(
                        f"{mpath}: graphs.{gname}.inputs.{tname} is {spec.describe()} but the state spec says "
                        f"{expected.describe()}"
                    )
        variants: dict[str, dict[str, GraphEntry]] = {}
        if not isinstance(raw.get("variants", {}), dict):
            raise ManifestError(f"{mpath}: variants: expected an object, got {type(raw['variants']).__name__}")
        for precision, v in raw.get("variants", {}).items():
            where = f"variants.{precision}"
            variants[precision] = {}
            for gname, g in need(v, "graphs", dict, where).items():
                if gname not in graphs:
                    raise ManifestError(f"{mpath}: {where}: graph {gname!r} has no fp32 entry to stand in for")
                file = need(g, "file", str, f"{where}.graphs.{gname}")
                base = graphs[gname]  # same tensor contract as the fp32 graph (checked against the file at load)
                variants[precision][gname] = GraphEntry(gname, file, listed(file, f"{where}.graphs.{gname}.file"),
                                                        base.inputs, base.outputs, base.custom_ops)
        tok = need(raw, "tokenizer", dict)
        template = need(raw, "prompt_template", str)
        if template.count("{prompt}") != 1:
            raise ManifestError(f"{mpath}: prompt_template must hold the placeholder '{{prompt}}' exactly once, "
                                f"holds it {template.count('{prompt}')} times: {template!r}")
        eos = need(tok, "eos_token_id", int, "tokenizer")
        if isinstance(eos, bool) or eos < 0:
            raise ManifestError(f"{mpath}: tokenizer.eos_token_id must be a token id >= 0, got {eos!r}")
        image_size, visual_tokens, pre = _check_vision_fields(mpath, raw, graphs)
        d_model = graphs["embed"].outputs["inputs_embeds"].shape[-1]
        heads, heads_source = parse_heads(mpath, raw, graphs["prefill"].outputs,
                                          d_model if isinstance(d_model, int) else None, listed)
        weights_file = None
        if "weights" in raw:
            weights_file = need(need(raw, "weights", dict), "file", str, "weights")
            listed(weights_file, "weights.file")
        return cls(
            root=root,
            model=need(raw, "model", dict),
            graphs=graphs,
            state=state,
            tokenizer_path=listed(need(tok, "file", str, "tokenizer"), "tokenizer.file"),
            eos_token_id=eos,
            prompt_template=template,
            image_size=image_size,
            visual_tokens=visual_tokens,
            preprocessing=pre,
            parity=raw.get("parity", {}),
            files=files,
            raw=raw,
            variants=variants,
            weights_file=weights_file,
            heads=heads,
            heads_source=heads_source,
        )


def _tensor_spec(mpath: Path, where: str, d) -> TensorSpec:
    """A graph tensor's {dtype, shape} from the manifest: a dtype name and a list of ints (fixed) or names."""
    if (not isinstance(d, dict) or not isinstance(d.get("dtype"), str) or not isinstance(d.get("shape"), list)
            or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in d["shape"])):
        raise ManifestError(f"{mpath}: {where}: expected {{'dtype': str, 'shape': [int or name, ...]}}, got {d!r}")
    return TensorSpec.from_dict(where.rsplit(".", 1)[-1], d)


def _check_vision_fields(mpath: Path, raw: dict, graphs: dict[str, GraphEntry]) -> tuple[int, int, dict]:
    """preprocessing.image_size and visual_tokens, checked against the graphs that use them: the size frames are
    resized to must be the vision graph's ``pixels`` [B, S, S, 3], and visual_tokens the projector's T."""
    pre = raw.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise ManifestError(f"{mpath}: preprocessing: expected an object, got {type(pre).__name__}")
    size, tokens = pre.get("image_size", 0), raw.get("visual_tokens", 0)
    for field_name, value in (("preprocessing.image_size", size), ("visual_tokens", tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ManifestError(f"{mpath}: {field_name} must be an int >= 0, got {value!r}")
    if "vision" not in graphs:
        return size, tokens, pre
    pixels = graphs["vision"].inputs.get("pixels")
    want = pixels.shape[1:3] if pixels is not None and len(pixels.shape) == 4 else None
    if want is None or pixels.shape[3] != 3 or pixels.dtype != "uint8":
        raise ManifestError(f"{mpath}: graphs.vision.inputs.pixels is {pixels.describe() if pixels else None}, "
                            "expected uint8[B, S, S, 3]")
    if size <= 0 or any(isinstance(d, int) and d != size for d in want):
        raise ManifestError(f"{mpath}: preprocessing.image_size is {size!r}, but graphs.vision.inputs.pixels is "
                            f"{pixels.describe()}: frames must be resized to the vision graph's input")
    embeds = graphs["projector"].outputs["visual_embeds"]
    if len(embeds.shape) != 3 or (isinstance(embeds.shape[1], int) and embeds.shape[1] != tokens):
        raise ManifestError(f"{mpath}: visual_tokens is {tokens}, but graphs.projector.outputs.visual_embeds is "
                            f"{embeds.describe()}")
    return size, tokens, pre


def _check_vision_feeds_projector(mpath: Path, vision: GraphEntry, projector: GraphEntry) -> None:
    """Every projector input is a vision output of the same spec, or a box input; boxes come with object_embeds."""
    if not vision.outputs:
        raise ManifestError(f"{mpath}: graphs.vision declares no outputs")
    for name, spec in projector.inputs.items():
        source = vision.outputs.get(name) or BOX_INPUTS.get(name)
        if source is None:
            raise ManifestError(
                f"{mpath}: graphs.projector input {name!r} is neither a vision output {sorted(vision.outputs)} "
                f"nor a box input {sorted(BOX_INPUTS)}"
            )
        if not spec.matches(source):
            raise ManifestError(f"{mpath}: graphs.projector input {name!r} is {spec.describe()}, expected {source.describe()}")
    takes_boxes = set(BOX_INPUTS) & set(projector.inputs)
    if takes_boxes and (takes_boxes != set(BOX_INPUTS) or "object_embeds" not in projector.outputs):
        raise ManifestError(f"{mpath}: graphs.projector: box inputs {sorted(BOX_INPUTS)} and output 'object_embeds' "
                            "come together")


def artifact_matches(directory: str | os.PathLike, model: dict, verify_hashes: bool = True,
                     revision: str | None = None, precisions=("fp32",)) -> bool:
    """True when ``directory`` holds a valid artifact exported from this model config (compared as the
    manifest stores it: through JSON, so tuples read back as lists), if given by this exporter ``revision``
    (export.onnx_export.EXPORT_REVISION), with all these ``precisions``. For caches of exports."""
    try:
        m = Manifest.load(directory, verify_hashes=verify_hashes)
    except ManifestError:
        return False
    if revision is not None and m.raw.get("export", {}).get("revision") != revision:
        return False
    if not set(precisions) <= set(m.precisions):
        return False
    return m.model == json.loads(json.dumps(model))


def write_manifest(root: str | os.PathLike, body: dict) -> Path:
    """Write ``body`` (without 'files') plus the sha256 of every other file in ``root``; validate by reloading."""
    root = Path(root)
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            rel = p.relative_to(root).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **body, "files": files}
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(doc, indent=2) + "\n")
    Manifest.load(root)  # what we write, we can read
    return path
