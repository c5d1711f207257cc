"""What is here: ``cobra-edge inspect DIR`` (an artifact's manifest) and ``cobra-edge kernels`` (which kernels run)."""

from __future__ import annotations

import json


def cmd_inspect(args) -> int:
    from engines.kernels import status as kernel_status

    from .manifest import Manifest

    m = Manifest.load(args.dir, verify_hashes=not args.no_verify)
    if args.json:
        print(json.dumps(m.raw, indent=2))
        return 0
    model = m.model
    lm = model.get("lm", {})
    print(f"artifact   {m.root}")
    print(f"model      {model.get('name')}: Mamba {lm.get('n_layer')} layers, d_model {lm.get('d_model')}, "
          f"d_inner {lm.get('d_inner')}, d_state {lm.get('d_state')}, vocab {lm.get('vocab_padded')}")
    if m.has_vision:
        enc = ", ".join(f"{v['name']} ({v['width']} wide, {v['depth']} blocks)" for v in model.get("vision", []))
        print(f"vision     {enc}; {m.image_size} px; projector {model.get('projector')}; {m.visual_tokens} visual tokens")
    else:
        print("vision     none (language-model-only artifact)")
    from .provenance import describe, weights_info

    print(f"weights    {describe(weights_info(m))}")
    print(f"state      {m.state.bytes_per_stream:,} bytes per stream "
          f"(conv {list(m.state.conv_shape)} {m.state.conv_dtype}, ssm {list(m.state.ssm_shape)} {m.state.ssm_dtype})")
    print("graphs")
    for name, g in m.graphs.items():
        ins = ", ".join(f"{n} {s.describe()}" for n, s in g.inputs.items())
        outs = ", ".join(f"{n} {s.describe()}" for n, s in g.outputs.items())
        size = m.files.get(g.file, {}).get("bytes", 0)
        print(f"  {name:<10} {g.file:<16} {size / 1e6:8.2f} MB  {ins} -> {outs}")
        if g.custom_ops:
            print(f"  {'':<10} custom ops {', '.join(g.custom_ops)}: portable ONNX bodies inside the file; here "
                  f"they run as: {kernel_status()}")
    for h in m.heads:
        values = ", ".join(f"{v.name} [{v.lo:g}, {v.hi:g}] {v.unit}" for v in h.values)
        print(f"  head {h.name:<5} {h.file:<16} reads {h.reads()} -> {values}")
    if m.heads:
        print(f"  heads from {m.heads_source.get('source')}: {m.heads_source.get('path', '?')}")
    print("parity (max |onnx - torch|)")
    for name, outs in m.parity.get("graphs", {}).items():
        print(f"  {name:<10} " + ", ".join(f"{o} {v['max_abs_err']:.2e} (tol {v['tol']:.1e})" for o, v in outs.items()))
    if m.parity.get("portable"):
        print(f"  (checked at export with: {m.parity.get('kernels', '?')}; without the kernel library:)")
        for name, outs in m.parity["portable"].items():
            print(f"  {name:<10} " + ", ".join(f"{o} {v['max_abs_err']:.2e}" for o, v in outs.items()))
    for precision, v in m.raw.get("variants", {}).items():
        par = v.get("parity", {})
        files = ", ".join(g["file"] for g in v["graphs"].values())
        print(f"variant    {precision}: {files}; {v.get('weights', '')}")
        print(f"  vs fp32: prefill logits {par['prefill']['logits']:.2e} (max |logit| {par['prefill']['max_abs_logits']:.2f}), "
              f"ssm state {par['prefill']['ssm_state_out']:.2e}; step logits {par['step']['logits']:.2e}; greedy tokens "
              f"equal to fp32 for {par['greedy']['same_prefix']} of {par['greedy']['tokens']}")
    return 0


def cmd_kernels(args) -> int:
    """Which implementation runs cobra_edge nodes on ONNX Runtime's CPU provider here, and the CUDA build."""
    import onnxruntime

    from engines.kernels import OPS, library, status
    from engines.kernels.cuda import status as cuda_status

    print(f"cobra_edge.{' / '.join(OPS)}: {status()}")
    print(f"CUDA provider: {cuda_status()}")
    print(f"onnxruntime {onnxruntime.__version__} (providers: {', '.join(onnxruntime.get_available_providers())})")
    return 0 if library() else 1
