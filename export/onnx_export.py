"""Export a ``CobraModel`` to an artifact directory: one ONNX file per graph, tokenizer.json, manifest.json.

After writing, every graph is run in ONNX Runtime on random inputs and compared with the PyTorch reference
(prefill against the Python-loop scan, not the exported one); the errors go into the manifest and export
fails loudly past tolerance.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edge.manifest import GraphEntry, write_manifest
from engines.kernels import status as kernel_status
from edge.runtime import check_engine_matches
from edge.state import StateSpec

from .errors import NonFiniteWeightError, ParityError
from .fused import attach_portable_functions, translations
from .graphs import PREFILL_SCAN, GraphDef, example_inputs, graph_defs
from .model import CobraModel
from .precision import VARIANT_GRAPHS, WEIGHTS, check_precisions, export_fp16, variant_file, variant_parity
from .quantize import quantize_graph
from .scan import DEFAULT_CHUNK
from .tokenizer import write_tokenizer
from .weight_store import ALIGN, WEIGHTS_FILE, WeightStore

# max |ort - ref| <= atol + rtol * max |ref|, per output dtype
TOLERANCES = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2)}
# how the graphs are built (not what they compute): caches of exports are stale when it changes
EXPORT_REVISION = (f"prefill-scan={PREFILL_SCAN}(body chunked:{DEFAULT_CHUNK}:state-major);step=fused;lm-head=last;"
                   "next-token;weights=shared-file;linear=gemm;int8=per-row")
EXTERNAL_DATA_BYTES = 1 << 30  # past this a graph's weights go to '<graph>.onnx.data' (protobuf's 2 GB limit)


def check_finite_weights(model: torch.nn.Module) -> None:
    """Refuse a model with a NaN or infinite parameter or buffer before anything is exported: such an artifact
    answers nothing, however exactly its graphs match the reference."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point():
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            first = tuple(int(i) for i in (~finite).nonzero()[0])
            raise NonFiniteWeightError(
                f"weight {name} {tuple(t.shape)} holds {bad} NaN or infinite value(s) (first at index {first}, "
                f"{float(t[first])}); export refused: fix the checkpoint"
            )


def _finite_or_fail(graph: str, output: str, what: str, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise ParityError(f"graph {graph!r}, output {output!r}: {what} holds {bad} NaN or infinite value(s) of "
                          f"{values.size}")


# ONNX Runtime sessions of the export's checks: they read the weights where the model reads them (no pre-packed copy)
# and allocate from an arena of their own, released with the session (the process-wide arena never shrinks)
_CHECK_OPTIONS = {"prepacking": False, "shared_arena": False}


@dataclass
class ExportResult:
    out_dir: Path
    parity: dict


def _export_graph(model: CobraModel, gdef: GraphDef, path: Path, store: WeightStore | None = None) -> tuple[str, ...]:
    """Write one graph; -> the custom ops it calls ("cobra_edge.SelectiveScan" in a prefill graph,
    "cobra_edge.SelectiveStep" in a step graph), each carried with its portable body as a model-local function.
    With ``store`` its initializers go to the artifact's one weights file (each stored once) and the graph file
    holds only structure and references; without, the graph keeps its own weights (inside, or in
    '<graph>.onnx.data' past 1 GiB)."""
    module = gdef.module(model).eval()
    args = example_inputs(gdef, batch=2, length=5)
    # L is left to torch.export to bound (Dim.DYNAMIC): the chunked scan pads L to a multiple of its chunk, and a
    # named Dim with explicit bounds trips torch.export's derived-dimension check; the name is set afterwards
    dims = {"B": torch.export.Dim("B", min=1, max=4096), "L": torch.export.Dim.DYNAMIC,
            "K": torch.export.Dim("K", min=1, max=4096)}
    dyn = tuple({i: dims[s] for i, s in enumerate(t.shape) if isinstance(s, str)} for t in gdef.inputs)
    if any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values()):
        dyn = (dyn,)  # forward(*inputs): torch.export sees one argument holding the tuple
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    # torch's exporter narrates every stage on stdout/stderr and warns about things we checked; keep it quiet
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, args, dynamo=True, input_names=[t.name for t in gdef.inputs],
            output_names=[t.name for t in gdef.outputs], dynamic_shapes=dyn, verbose=False,
            custom_translation_table=translations(),
        )
    _name_dynamic_dims(program.model, gdef)
    lm = model.cfg.lm
    custom_ops = attach_portable_functions(program.model, lm.d_inner, lm.d_state, lm.d_conv)
    if store is not None:
        import onnx_ir as ir

        store.externalize(program.model)
        ir.save(program.model, str(path))
    else:
        program.save(str(path), external_data=weight_bytes > EXTERNAL_DATA_BYTES)
    return custom_ops


def _name_dynamic_dims(model, gdef: GraphDef) -> None:
    """Give the graph's symbolic dimensions the contract's names (B, L, K) wherever the exporter wrote its own
    (s29, ...), in the in-memory model before it is saved: graph inputs and outputs and every value inside,
    subgraphs (Scan bodies) included, so the names stay consistent."""
    import onnx_ir as ir

    rename = {}
    for t, value in zip(gdef.inputs, model.graph.inputs):
        for want, dim in zip(t.shape, value.shape or ()):
            if isinstance(want, str) and isinstance(dim, ir.SymbolicDim) and dim.value not in (None, want):
                rename[dim.value] = want
    if not rename:
        return
    values = [*model.graph.inputs, *model.graph.outputs]
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        values += node.outputs
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                values += [*attr.value.inputs, *attr.value.outputs]
    for v in values:
        if v.shape is not None and any(isinstance(d, ir.SymbolicDim) and d.value in rename for d in v.shape):
            v.shape = ir.Shape([ir.SymbolicDim(rename[d.value]) if isinstance(d, ir.SymbolicDim) and d.value in rename
                                else d for d in v.shape])


def _head_entry(gdef: GraphDef, head) -> dict:
    """A head's manifest entry: its graph file and tensors, the positions it reads, and its outputs' labels."""
    c = head.cfg
    return {"name": c.name, "file": gdef.file, "positions": list(c.positions), "image_tokens": c.image_tokens,
            "pool": c.pool,
            "inputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in gdef.inputs},
            "outputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in gdef.outputs},
            "values": [{"name": o.name, "unit": o.unit, "range": [o.lo, o.hi], "description": o.description}
                       for o in c.outputs]}


def _reference(model: CobraModel, gdef: GraphDef) -> Callable:
    """The PyTorch function each graph must equal (prefill uses the Python-loop scan, not the exported one)."""
    llm = model.llm
    name = gdef.name
    if gdef.reference is not None:
        return gdef.reference
    if name == "prefill" and any(t.name == "hidden_states" for t in gdef.outputs):
        def prefill_hidden(e, c, s):
            logits, hidden, c2, s2 = llm.forward_hidden(e, c, s)
            return logits, logits.argmax(-1), c2, s2, hidden
        return prefill_hidden
    if name == "vision":
        return model.vision
    if name == "projector":
        return model.projector
    if name == "embed":
        return llm.embed
    if name == "prefill":
        def prefill(e, c, s):
            logits, c2, s2 = llm.forward_embeds(e, c, s)
            return logits[:, -1], logits[:, -1].argmax(-1), c2, s2
        return prefill
    if name == "step":
        def step(ids, c, s):
            logits, c2, s2 = llm.step(ids, c, s)
            return logits, logits.argmax(-1), c2, s2
        return step
    raise KeyError(name)


def _check_argmax(graph: str, tokens: np.ndarray, ref_logits: np.ndarray) -> None:
    """Each row's token must be the reference's argmax, or tie with it within the logits' tolerance (a float
    difference may pick either of two near-equal maxima)."""
    atol, rtol = TOLERANCES["float32"]
    picked = np.take_along_axis(ref_logits, tokens.reshape(-1, 1), axis=1)[:, 0]
    best = ref_logits.max(axis=1)
    bad = np.flatnonzero(best - picked > atol + rtol * np.abs(ref_logits).max())
    if bad.size:
        raise ParityError(f"graph {graph!r}, output 'next_token': rows {bad.tolist()} are not the argmax of the "
                          f"reference logits (got {tokens[bad].tolist()}, want {ref_logits[bad].argmax(1).tolist()})")


def check_parity(model: CobraModel, gdef: GraphDef, path: Path, cases=((1, 1), (2, 7)), threads: int | None = None,
                 kernels: bool = True, initializers: dict | None = None) -> dict:
    """Run the graph in ONNX Runtime and the reference in PyTorch on the same random inputs.

    Returns {output: {max_abs_err, max_abs_ref, tol}} over all cases (B, L); raises ParityError past tol.
    ``kernels=False`` checks the graph as a runtime without cobra-edge's kernel library runs it (the portable
    function bodies of its custom ops).
    """
    from engines import load_engine

    engine = load_engine("onnxruntime", path, name=gdef.name, threads=threads, kernels=kernels,
                         initializers=initializers, **_CHECK_OPTIONS)
    ref_fn = _reference(model, gdef)
    report: dict[str, dict] = {}
    for seed, (b, l) in enumerate(cases):
        args = example_inputs(gdef, batch=b, length=l, seed=100 + seed)
        with torch.no_grad():
            ref = ref_fn(*args)
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = engine.run({t.name: a.numpy() for t, a in zip(gdef.inputs, args)})
        for tdef, r in zip(gdef.outputs, ref):
            if tdef.name == "next_token":  # an argmax: compared through the reference's logits below
                _check_argmax(gdef.name, got["next_token"], ref[0].float().numpy())
                continue
            r = r.float().numpy()
            g = got[tdef.name].astype(np.float32)
            if g.shape != r.shape:
                raise ParityError(f"graph {gdef.name!r}, output {tdef.name!r}: shape {g.shape} != reference {r.shape}")
            # NaN-safe: max() with a NaN keeps whichever came first, so non-finite values are refused by name first
            _finite_or_fail(gdef.name, tdef.name, "the PyTorch reference", r)
            _finite_or_fail(gdef.name, tdef.name, "ONNX Runtime's output", g)
            entry = report.setdefault(tdef.name, {"max_abs_err": 0.0, "max_abs_ref": 0.0})
            entry["max_abs_err"] = max(entry["max_abs_err"], float(np.abs(g - r).max()))
            entry["max_abs_ref"] = max(entry["max_abs_ref"], float(np.abs(r).max()))
    for tdef in gdef.outputs:
        if tdef.name not in report:
            continue
        atol, rtol = TOLERANCES[tdef.dtype]
        entry = report[tdef.name]
        entry["tol"] = atol + rtol * entry["max_abs_ref"]
        if not entry["max_abs_err"] <= entry["tol"]:
            raise ParityError(
                f"graph {gdef.name!r}, output {tdef.name!r}: max |onnx - torch| = {entry['max_abs_err']:.3g} > "
                f"tolerance {entry['tol']:.3g} (max |ref| = {entry['max_abs_ref']:.3g})"
            )
    return report


def _export_variant(model: CobraModel, defs: list[GraphDef], tmp: Path, precision: str, store: WeightStore,
                    keep_float: tuple[str, ...] = ()) -> dict:
    """Write one precision variant of the prefill and step graphs into ``tmp``, its weights into ``store`` (only
    the tensors it changes are new there); int8 / int4 leave the projections named by ``keep_float`` in float32;
    -> its manifest entry."""
    from engines import load_engine

    lm_defs = [g for g in defs if g.name in VARIANT_GRAPHS]
    if precision in ("int8", "int4"):
        for g in lm_defs:
            quantize_graph(tmp / g.file, tmp / variant_file(g.name, precision), precision, store, keep_float)
    else:
        export_fp16(model, lm_defs, tmp, _export_graph, store)
    files = {g.name: {"fp32": g.file, "variant": variant_file(g.name, precision)} for g in lm_defs}
    files["embed"] = {"fp32": "embed.onnx"}
    specs = {}

    def open_engine(graph: str, which: str):
        engine = load_engine("onnxruntime", tmp / files[graph][which], name=graph, **_CHECK_OPTIONS,
                             initializers=store.arrays_for(tmp / files[graph][which]))
        if graph in VARIANT_GRAPHS:  # same contract as the fp32 graph, or the runtime could not swap them
            if which == "fp32":
                specs[graph] = (engine.inputs, engine.outputs)
            else:
                file = files[graph][which]
                promise = GraphEntry(graph, file, tmp / file, *specs[graph])
                check_engine_matches(promise, engine, promised_by=f"the fp32 {graph} graph")
        return engine

    parity = variant_parity(open_engine)
    entry = {"graphs": {g.name: {"file": variant_file(g.name, precision)} for g in lm_defs},
             "weights": WEIGHTS[precision], "parity": parity}
    if keep_float and precision in ("int8", "int4"):
        entry["weights"] += f"; kept float32: {', '.join(keep_float)}"
        entry["float32_weights"] = kept_float_weights(model, keep_float)
    return entry


def kept_float_weights(model: CobraModel, keep_float: tuple[str, ...]) -> list[str]:
    """The quantizable weights (the LM's projections and head: 2-D, not the embedding) whose names contain one of
    ``keep_float``; a ValueError naming any entry that matches none of them."""
    names = [n for n, p in model.named_parameters(remove_duplicate=False)  # the head may share the embedding's
             if n.startswith("llm.") and n.endswith(".weight") and p.ndim == 2 and "embedding" not in n]
    for k in keep_float:
        if not any(k in n for n in names):
            kinds = sorted({n.split(".")[-2] for n in names})
            raise ValueError(f"--keep-float {k!r} names none of the quantized weights; their names contain "
                             f"{', '.join(kinds)} (e.g. {names[0]})")
    return [n for n in names if any(k in n for k in keep_float)]


def export_model(model: CobraModel, out_dir: str | Path, tokenizer: str | Path | None = None,
                 progress: Callable[[str], None] | None = None, overwrite: bool = False,
                 precisions: tuple[str, ...] = ("fp32",), weights_source: dict | None = None,
                 heads: tuple = (), heads_source: dict | None = None,
                 keep_float: tuple[str, ...] = ()) -> ExportResult:
    """Write every graph, check parity, write tokenizer.json and manifest.json. Atomic: the directory
    appears only when everything passed (written to a temporary sibling, then renamed).
    ``precisions``: fp32 always; "fp16" and "int8" add variants of the prefill and step graphs
    (export/precision.py) with their error against fp32 in the manifest. ``weights_source``: where the weights came from,
    recorded in the manifest (edge/provenance.py: random, trained, checkpoint); unknown when not given.
    ``heads``: action heads (export/heads.py): the prefill graph then also outputs hidden_states, each head is a
    graph of its own, and the manifest lists them under "heads" (with ``heads_source``). ``keep_float``: the
    int8 / int4 variants leave the projections whose weight names contain one of these (e.g. "out_proj") in
    float32, listed in the manifest (docs/evaluation.md: which weights int8 loses on)."""
    variants = check_precisions(precisions)
    keep_float = tuple(keep_float)
    if keep_float:
        if not {"int8", "int4"} & set(variants):
            raise ValueError("--keep-float applies to the int8 and int4 variants: add --precision int8 (or int4)")
        kept_float_weights(model, keep_float)  # names nothing: an error before any export work
    cfg = model.cfg
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file; give a directory for the artifact")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True / --overwrite)")
    if out_dir.parent.exists() and not out_dir.parent.is_dir():
        raise FileExistsError(f"--out {out_dir}: {out_dir.parent} is a file, not a directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    check_finite_weights(model)
    model = model.eval()
    if heads:
        from .heads import check_heads

        check_heads(list(heads), cfg.lm.d_model,
                    None if cfg.object_tokens or not cfg.num_visual_tokens else cfg.num_visual_tokens)
        for head in heads:
            check_finite_weights(head)
    defs = graph_defs(model, tuple(heads))
    head_defs = {g.name: h for g, h in zip(defs[len(defs) - len(heads):], heads)}
    say = progress or (lambda _msg: None)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    store = WeightStore(tmp)
    try:
        say(f"weights: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters -> {WEIGHTS_FILE}")
        store.bind(model)  # from here the model reads its weights from the file: one copy for PyTorch and ORT
        parity, portable, custom_ops = {}, {}, {}
        for gdef in defs:  # one graph at a time: its exporter and ONNX Runtime memory released before the next
            say(f"export {gdef.name}")
            custom_ops[gdef.name] = _export_graph(model, gdef, tmp / gdef.file, store)
            gc.collect()
            say(f"check {gdef.name}")
            weights = store.arrays_for(tmp / gdef.file)
            parity[gdef.name] = check_parity(model, gdef, tmp / gdef.file, initializers=weights)
            if custom_ops[gdef.name]:  # and as a runtime without the kernel library runs it
                say(f"check {gdef.name} (portable bodies)")
                portable[gdef.name] = check_parity(model, gdef, tmp / gdef.file, kernels=False, initializers=weights)
            del weights
            gc.collect()
        variant_entries = {}
        for precision in sorted(variants, key=lambda p: p != "fp16"):  # fp16 reads the model; int8 only files
            say(f"variant {precision}")
            store.release()  # the fp32 pages leave this process's memory; files are read again as needed
            variant_entries[precision] = _export_variant(model, defs, tmp, precision, store, keep_float)
            gc.collect()
        variant_entries = {p: variant_entries[p] for p in variants}  # the manifest lists them as asked
        dropped = store.compact(sorted(tmp.glob("*.onnx")))
        say(f"weights: {store.size / 2**20:.1f} MiB in {WEIGHTS_FILE} ({dropped / 2**20:.1f} MiB no graph reads dropped)")
        say("tokenizer")
        write_tokenizer(tmp, cfg.lm.vocab_size, tokenizer)
        lm = cfg.lm
        state = StateSpec(lm.n_layer, lm.d_inner, lm.d_conv, lm.d_state, conv_dtype=cfg.dtype, ssm_dtype="float32")
        body = {
            "model": cfg.to_dict(),
            "visual_tokens": cfg.num_visual_tokens,
            "graphs": {
                g.name: {
                    "file": g.file,
                    "inputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in g.inputs},
                    "outputs": {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in g.outputs},
                    **({"custom_ops": list(custom_ops[g.name])} if custom_ops[g.name] else {}),
                }
                for g in defs if g.name not in head_defs
            },
            "state": {**state.to_dict(), "bytes_per_stream": state.bytes_per_stream},
            "preprocessing": {"image_size": cfg.image_size, "color": "RGB", "layout": "NHWC uint8",
                              "resize": "naive", "interpolation": "area when both axes shrink, else cubic",
                              "normalisation": "inside the vision graph, per encoder"},
            "tokenizer": {"file": "tokenizer.json", "eos_token_id": cfg.eos_token_id},
            "prompt_template": cfg.prompt_template,
            "parity": {"reference": "export.mamba / export.vision (PyTorch, fp32)", "graphs": parity,
                       "kernels": kernel_status(),
                       "portable": portable},
            "export": {"revision": EXPORT_REVISION},
            "weights": {"file": WEIGHTS_FILE, "tensors": store.tensors, "bytes": store.size,
                        "layout": "every initializer of every graph and variant stored once (by content), "
                                  f"{ALIGN}-byte aligned; graphs refer to it as ONNX external data"},
            "weights_source": weights_source or {"source": "unknown"},
        }
        if heads:
            body["heads"] = {"source": heads_source or {"source": "unknown"},
                             "list": [_head_entry(g, head_defs[g.name]) for g in defs if g.name in head_defs]}
        if variant_entries:
            body["variants"] = variant_entries
        say("manifest")
        write_manifest(tmp, body)
        tmp.chmod(0o755)  # mkdtemp makes it private; a robot's service user must be able to read it
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out_dir, parity)
