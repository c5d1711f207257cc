"""Where along the model a question's answer can be read: small MLP probes, fitted on one family's training items,
scored on held-out ones, at each stage of the frozen trained model (issue 17's diagnostic: is the colour of a named
shape lost in the vision encoders, the projector, or the language model's readout?).

    python -m bench.probe [--family colour] [--train 8000] [--test 500] [--weights W] [--out bench/results]

Stages (the three before the LM also get the prompt's mean token embedding, which names the shape asked about; the
LM's states have read the prompt):
    pixels       the preprocessed frame, area-downsampled to 24 x 24 x 3 (a control: the probe's own reach)
    vision       the two encoders' patch features, concatenated                        [T_patch x d_vision]
    projector    the visual tokens the LM is given                                     [T x d_model]
    lm_tokens    the LM's final hidden states at every visual token and the last token [(T + 1) x d_model]
    lm_last      the LM's final hidden state at the last token (what its answer is read from)
beside the model's own greedy answer on the same held-out items (its first token against the answer's). Same MLP for every stage (dropout 0.2 on its
inputs, 96 -> 48 -> answers, AdamW, cosine, 4000 steps of 256). A probe that reads a stage better than the model
answers says the information is there and the readout misses it; one that reads it no better says it is not there
in a form this probe can use (the pixels control shows how far the probe itself reaches).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from .timing import RESULTS_DIR, machine_info, write_result

STAGES = ("pixels", "vision", "projector", "lm_tokens", "lm_last")


@torch.no_grad()
def stage_features(model, tokenizer, items) -> tuple[dict[str, torch.Tensor], list[str]]:
    """items (one frame each) -> ({stage: [n, features]}, the model's greedy first answer token per item)."""
    from edge.preprocess import preprocess
    from export.train_scan import TRAIN_SCAN

    llm = model.llm
    out: dict[str, list[torch.Tensor]] = {s: [] for s in STAGES}
    said = []
    for it in items:
        pixels = torch.from_numpy(preprocess(it.frames()[0], model.cfg.image_size)[None])
        prompt = llm.embed(torch.from_numpy(tokenizer.encode_prompt(it.question.prompt)[None]))
        features = model.vision(pixels)
        features = features if isinstance(features, tuple) else (features,)
        vis = model.visual_embeds(pixels) if model.cfg.object_tokens else model.projector(*features)  # vision once
        logits, hidden, _, _ = llm.forward_hidden(torch.cat([vis, prompt], 1), *llm.empty_state(1), scan=TRAIN_SCAN)
        small = torch.nn.functional.interpolate(pixels.permute(0, 3, 1, 2).float() / 255, size=(24, 24), mode="area")
        asked = prompt[0].mean(0)
        T = vis.shape[1]
        for stage, x in (("pixels", torch.cat([small.flatten(), asked])),
                         ("vision", torch.cat([*(f[0].flatten() for f in features), asked])),
                         ("projector", torch.cat([vis[0].flatten(), asked])),
                         ("lm_tokens", torch.cat([hidden[0, :T].flatten(), hidden[0, -1]])),
                         ("lm_last", hidden[0, -1])):
            out[stage].append(x.float())
        said.append(int(logits[0].argmax()))
    return {s: torch.stack(v) for s, v in out.items()}, said


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 4000, seed: int = 0,
              dropout: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(x.shape[1], 96), torch.nn.GELU(),
                              torch.nn.Linear(96, 48), torch.nn.GELU(), torch.nn.Linear(48, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = torch.randint(0, len(x), (min(256, len(x)),), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[pick]), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def fit_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                  classes: int, steps: int = 4000, dropout: float = 0.2) -> tuple[np.ndarray, float]:
    """A probe fitted on (x_train, y_train) -> (bool [n_test]: each held-out example read right, the share of the
    training examples read right)."""
    net = fit_probe(x_train, y_train, classes, steps, dropout=dropout)
    with torch.no_grad():
        right = (net(x_test).argmax(1) == y_test).numpy()
        fitted = float((net(x_train).argmax(1) == y_train).float().mean())
    return right, fitted


def run(family: str, n_train: int, n_test: int, weights: str | None, steps: int = 4000, say=print) -> dict:
    from edge.world import make_item
    from edge.world.questions import FAMILIES, SINGLE_FRAME
    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained

    if family not in SINGLE_FRAME:
        raise ValueError(f"--family {family!r}: one of the single-frame families {list(SINGLE_FRAME)}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, tokenizer_json, _ = load_trained(weights or EMBEDDED)
    model.eval()
    tokenizer = prompt_tokenizer(tokenizer_json, model.cfg)
    f = FAMILIES.index(family)
    train = [make_item(family, (0, f, i)) for i in range(n_train)]  # training items' seeds (0, f, i)
    test = [make_item(family, (1000, f, i)) for i in range(n_test)]  # cobra-edge eval's held-out seed
    answers = sorted({it.question.answer for it in train + test})
    y_train = torch.tensor([answers.index(it.question.answer) for it in train])
    y_test = torch.tensor([answers.index(it.question.answer) for it in test])
    x_train, _ = stage_features(model, tokenizer, train)
    x_test, said = stage_features(model, tokenizer, test)
    say(f"probe {family}: features of {n_train} + {n_test} items in {time.perf_counter() - t0:.0f} s")
    doc = {"schema": "cobra-edge-probe/1", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "family": family,
           "weights": str(weights or EMBEDDED), "train_items": n_train, "test_items": n_test, "answers": answers,
           "steps": steps, "machine": machine_info(1),
           # the model's greedy first token against the answer's first token (with or without a leading space)
           "model_answer_accuracy": float(np.mean([s in (int(tokenizer.encode_text(it.question.answer)[0]),
                                                        int(tokenizer.encode_text(" " + it.question.answer)[0]))
                                                   for s, it in zip(said, test)])),
           "chance": 1 / len(answers), "probes": {}}
    say(f"probe {family}: the model's own answers {100 * doc['model_answer_accuracy']:.1f} %")
    for stage in STAGES:
        right, fitted = fit_and_score(x_train[stage], y_train, x_test[stage], y_test, len(answers), steps)
        held = float(right.mean())
        doc["probes"][stage] = {"features": int(x_train[stage].shape[1]), "held_out": held, "train": fitted}
        say(f"probe {family} on {stage:<10} ({x_train[stage].shape[1]} features): held-out {100 * held:.1f} %, "
            f"train {100 * fitted:.1f} %")
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="colour", help="a single-frame question family (default: colour)")
    p.add_argument("--train", type=int, default=8000, help="training items")
    p.add_argument("--test", type=int, default=500, help="held-out items (seed 1000, as cobra-edge eval)")
    p.add_argument("--steps", type=int, default=4000, help="probe training steps")
    p.add_argument("--weights", default=None, help="a trained checkpoint (default: the embedded model)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes")
    a = p.parse_args(argv)
    doc = run(a.family, a.train, a.test, a.weights, a.steps)
    write_result(a.out, f"probe-{a.family}", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
