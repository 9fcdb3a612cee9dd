#!/usr/bin/env python3
"""make test-interop: goinfluence_torch against torch autograd and the Go CLI.

1. Per-example gradients in the exported files (Σ_t s aᵀ, bias in the last
   column) against torch autograd run on one example at a time, in float64:
   an MLP without a token axis (layers with and without bias) and a small
   sequence model with a token axis, padding masks and tokens that depend on
   earlier tokens; empirical labels, sampled labels and a custom
   measurement. Tolerance 1e-10 relative (max |diff| / max |reference|).
2. Scores: fit, train and query files exported in float64 go through
   `goinfluence fit --method M` and `goinfluence score --damping δ --dtype
   f64 --self`; the F64 scores and self-influences are compared with the
   same quantities computed here in torch float64 from the files'
   per-example gradients following DESIGN §3. Tolerance 1e-8 relative.
3. Errors the exporter must raise, and what it must leave behind.

Run with the goinfluence binary in GOINFLUENCE_BIN (scripts/test-interop.sh
builds it), or it falls back to `go run ./cmd/goinfluence`. Exits 1 on any
failure, after printing the whole table.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from goinfluence_torch import export_gradients, read_safetensors  # noqa: E402

GRAD_TOL = 1e-10
SCORE_TOL = 1e-8
F32_TOL = 1e-5
DAMPING = 1e-3
ROOT = os.path.dirname(HERE)

results = []  # (check, max |diff|, relative error, tolerance)
failures = []


def record(check, diff, ref, tol):
    diff = np.asarray(diff, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    abs_err = float(np.max(np.abs(diff))) if diff.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    rel = abs_err / scale if scale > 0 else float("inf")
    if scale == 0:
        failures.append("%s: the reference is all zeros" % check)
    results.append((check, abs_err, rel, tol))


# ---------------------------------------------------------------------------
# Models and data.

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(6, 8)
        self.l2 = torch.nn.Linear(8, 8, bias=False)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.l2(torch.tanh(self.l1(x)))))


class Seq(torch.nn.Module):
    """embedding → Linear → tanh → causal mean over earlier tokens → Linear
    (no bias) → tanh → Linear to the vocabulary, per token."""

    def __init__(self, vocab=11, emb=5, hidden=7):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, emb)
        self.blocks = torch.nn.ModuleDict({"proj": torch.nn.Linear(emb, hidden),
                                           "mix": torch.nn.Linear(hidden, hidden, bias=False)})
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, tokens):
        h = torch.tanh(self.blocks["proj"](self.emb(tokens)))
        steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        h = torch.cumsum(h, 1) / steps
        return self.head(torch.tanh(self.blocks["mix"](h)))


class CheckpointedSeq(Seq):
    """Seq with blocks.proj under torch.utils.checkpoint."""

    def __init__(self, use_reentrant):
        super().__init__()
        self.use_reentrant = use_reentrant

    def forward(self, tokens):
        h = torch.utils.checkpoint.checkpoint(lambda e: torch.tanh(self.blocks["proj"](e)), self.emb(tokens),
                                              use_reentrant=self.use_reentrant)
        steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        h = torch.cumsum(h, 1) / steps
        return self.head(torch.tanh(self.blocks["mix"](h)))


def mlp_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return {"input": x, "target": y, "id": torch.arange(n) * 3 + seed}


def seq_data(n, seed, T=6, vocab=11):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, T + 1, (n,), generator=g)
    mask = torch.arange(T).view(1, -1) < lengths.view(-1, 1)
    tokens = torch.randint(0, vocab, (n, T), generator=g).masked_fill(~mask, 0)
    target = torch.randint(0, vocab, (n, T), generator=g).masked_fill(~mask, 0)
    return {"input": tokens, "target": target, "mask": mask, "id": torch.arange(n) + 1000 * seed}


def batches(data, size):
    n = len(data["id"])
    for i in range(0, n, size):
        yield {k: v[i:i + size] for k, v in data.items()}


def one(data, i):
    return {k: v[i:i + 1] for k, v in data.items()}


def logprob_continuation(out, batch):
    """A query measurement: log p(target) summed over the unmasked tokens
    (or of the one target without a token axis), plus a nonlinear term."""
    lp = F.log_softmax(out, -1).gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    extra = 0.1 * torch.tanh(out).pow(2).sum(-1)
    if lp.dim() == 2:  # padding must not count: its rows are written as zeros
        return ((lp + extra) * batch["mask"]).sum(1)
    return lp + extra


def cross_entropy_with(labels):
    def loss(out, batch):
        y = labels
        l = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        if out.dim() == 3:
            return (l.view(y.shape) * batch["mask"]).sum(1)
        return l
    return loss


# ---------------------------------------------------------------------------
# 1. Per-example gradients against autograd.

def linear_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def autograd_grads(model, data, loss_for_example):
    """Per layer: [N, d_out, d_in(+1)] from one backward per example."""
    n = len(data["id"])
    layers = linear_layers(model)
    out = {name: [] for name, _ in layers}
    for i in range(n):
        model.zero_grad()
        b = one(data, i)
        loss_for_example(i, model(b["input"]), b).sum().backward()
        for name, m in layers:
            g = m.weight.grad.clone()
            if m.bias is not None:
                g = torch.cat([g, m.bias.grad.unsqueeze(1)], 1)
            out[name].append(g)
    return {k: torch.stack(v) for k, v in out.items()}


def file_grads(tensors, layer):
    a = torch.from_numpy(np.array(tensors[layer + ".a"], dtype=np.float64))
    s = torch.from_numpy(np.array(tensors[layer + ".s"], dtype=np.float64))
    if a.dim() == 2:
        return torch.einsum("no,ni->noi", s, a)
    return torch.einsum("nto,nti->noi", s, a)


def sampled_labels(model, data, tensors):
    """The labels the exporter drew, read back from the head's output
    gradient: s = softmax(logits) − onehot(y) on every unmasked row."""
    with torch.no_grad():
        p = torch.softmax(model(data["input"]), -1)
    s = torch.from_numpy(np.array(tensors["head.s"]))
    onehot = p - s
    y = onehot.argmax(-1)
    resid = onehot - F.one_hot(y, p.shape[-1]).to(p.dtype)
    if "mask" in data:
        resid = resid * data["mask"].unsqueeze(-1)
        y = y.masked_fill(~data["mask"], 0)
    if float(resid.abs().max()) > 1e-12:
        failures.append("sampled labels: the head's s is not softmax − onehot (%.3g)" % float(resid.abs().max()))
    return y


def check_gradients(tmp):
    torch.manual_seed(1)
    cases = [("mlp", MLP().eval(), mlp_data(23, 1)), ("seq", Seq().eval(), seq_data(19, 2))]
    for mname, model, data in cases:
        for how in ("empirical", "sampled", "measurement"):
            path = os.path.join(tmp, "g-%s-%s.safetensors" % (mname, how))
            kw = {"dtype": torch.float64}
            if how == "measurement":
                kw.update(kind="query", measurement=logprob_continuation)
            else:
                kw.update(labels=how, generator=torch.Generator().manual_seed(7))
            n = export_gradients(model, batches(data, 5), path, **kw)
            if n != len(data["id"]):
                failures.append("%s %s: export returned %d, want %d" % (mname, how, n, len(data["id"])))
            tensors, meta = read_safetensors(path)
            if meta.get("layers") != ",".join(name for name, _ in linear_layers(model)):
                failures.append("%s: layers metadata %r" % (mname, meta.get("layers")))
            if not np.array_equal(tensors["ids"], data["id"].numpy()):
                failures.append("%s %s: ids differ" % (mname, how))
            if how == "measurement":
                loss = lambda i, out, b: logprob_continuation(out, b)  # noqa: E731
            else:
                y = data["target"] if how == "empirical" else sampled_labels(model, data, tensors)
                if how == "sampled" and torch.equal(y, data["target"]):
                    failures.append("%s: sampled labels equal the targets" % mname)
                loss = lambda i, out, b, y=y: cross_entropy_with(y[i:i + 1])(out, b)  # noqa: E731
            ref = autograd_grads(model, data, loss)
            diffs, refs = [], []
            for name, _ in linear_layers(model):
                got = file_grads(tensors, name)
                diffs.append((got - ref[name]).flatten())
                refs.append(ref[name].flatten())
            record("grads %s, %s" % (mname, "custom measurement" if how == "measurement" else how + " labels"),
                   torch.cat(diffs).numpy(), torch.cat(refs).numpy(), GRAD_TOL)

    # Targets left out of the loss: negative ones (-1 as well as -100) and,
    # at padded positions, any value, even one past the classes.
    model, data = Seq().eval(), seq_data(11, 6)
    odd = data["target"].masked_fill(~data["mask"], 99)
    odd[:, 0] = -1
    data = dict(data, target=odd)
    y = odd.masked_fill((odd < 0) | ~data["mask"], -100)
    path = os.path.join(tmp, "g-seq-left-out.safetensors")
    export_gradients(model, batches(data, 4), path, dtype=torch.float64)
    tensors, _ = read_safetensors(path)
    ref = autograd_grads(model, data, lambda i, out, b: cross_entropy_with(y[i:i + 1])(out, b))
    record("grads seq, targets -1 and 99 left out",
           np.concatenate([(file_grads(tensors, k) - ref[k]).flatten().numpy() for k in ref]),
           np.concatenate([ref[k].flatten().numpy() for k in ref]), GRAD_TOL)
    export_gradients(model, batches(data, 4), path, kind="fit", generator=torch.Generator().manual_seed(7))
    if np.any(read_safetensors(path)[0]["head.s"][:, 0] != 0):
        failures.append("sampled labels: a token with target -1 has a nonzero head.s")

    # Checkpointing without reentrance gives the same file; with it, the
    # layer runs under no_grad (check_errors).
    model, data = Seq().eval(), seq_data(7, 7)
    ck = CheckpointedSeq(use_reentrant=False).eval()
    ck.load_state_dict(model.state_dict())
    paths = [os.path.join(tmp, "g-seq-%s.safetensors" % k) for k in ("plain", "checkpointed")]
    for m, p in zip((model, ck), paths):
        export_gradients(m, batches(data, 4), p, dtype=torch.float64)
    plain, checkpointed = (read_safetensors(p)[0] for p in paths)
    if any(not np.array_equal(plain[k], checkpointed[k]) for k in plain):
        failures.append("checkpoint(use_reentrant=False): the file differs from the model without it")

    # The same generator seed draws the same labels: the same bytes.
    model, data = MLP().eval(), mlp_data(12, 4)
    again = [os.path.join(tmp, "again-%d.safetensors" % i) for i in range(2)]
    for p in again:
        export_gradients(model, batches(data, 5), p, kind="fit", generator=torch.Generator().manual_seed(3))
    with open(again[0], "rb") as f0, open(again[1], "rb") as f1:
        if f0.read() != f1.read():
            failures.append("two exports with the same generator seed differ")

    # Padding rows are zeros in a and s; a chosen subset of layers, in the given order.
    model, data = Seq().eval(), seq_data(9, 3)
    path = os.path.join(tmp, "g-seq-subset.safetensors")
    export_gradients(model, batches(data, 4), path, layers=["head", "blocks.mix"], dtype=torch.float64)
    tensors, meta = read_safetensors(path)
    if meta["layers"] != "head,blocks.mix" or set(tensors) != {"ids", "head.a", "head.s", "blocks.mix.a", "blocks.mix.s"}:
        failures.append("layers=[head, blocks.mix]: file has %s, layers %r" % (sorted(tensors), meta["layers"]))
    pad = ~data["mask"].numpy()
    if np.any(tensors["head.a"][pad] != 0) or np.any(tensors["head.s"][pad] != 0):
        failures.append("padding rows are not zero")
    if tensors["head.a"].shape != (9, 6, 8) or tensors["blocks.mix.a"].shape != (9, 6, 7):
        failures.append("shapes: head.a %s, blocks.mix.a %s" % (tensors["head.a"].shape, tensors["blocks.mix.a"].shape))


# ---------------------------------------------------------------------------
# 2. Scores through the Go CLI against DESIGN §3 in torch float64.

def goinfluence(*args):
    binary = os.environ.get("GOINFLUENCE_BIN")
    cmd = [binary] if binary else ["go", "run", "./cmd/goinfluence"]
    r = subprocess.run(cmd + list(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if r.returncode != 0:
        raise RuntimeError("goinfluence %s: exit %d\n%s" % (" ".join(args), r.returncode, r.stderr))


def token_rows(t):
    t = torch.from_numpy(np.array(t, dtype=np.float64))
    return t.reshape(-1, t.shape[-1])


def eig(rows):
    c = rows.T @ rows / rows.shape[0]  # M = every token row of the file
    c = 0.5 * (c + c.T)
    return torch.linalg.eigh(c)


def reference_scores(fit, train, query, layers, method, damping):
    scores = torch.zeros(len(query["ids"]), len(train["ids"]))
    self_inf = torch.zeros(len(train["ids"]))
    for name in layers:
        gf, gt, gq = (file_grads(f, name) for f in (fit, train, query))
        if method == "identity":
            precond = lambda g: g  # noqa: E731
        elif method == "diagonal":
            lam = (gf ** 2).mean(0)
            precond = lambda g, lam=lam: g / (lam + damping)  # noqa: E731
        else:
            la, qa = eig(token_rows(fit[name + ".a"]))
            ls, qs = eig(token_rows(fit[name + ".s"]))
            if method == "kfac":
                lam = ls.view(-1, 1) * la.view(1, -1)
            else:
                lam = ((qs.T @ gf @ qa) ** 2).mean(0)
            precond = lambda g, qa=qa, qs=qs, lam=lam: qs @ ((qs.T @ g @ qa) / (lam + damping)) @ qa.T  # noqa: E731
        scores += torch.einsum("qoi,toi->qt", precond(gq), gt)
        self_inf += torch.einsum("toi,toi->t", precond(gt), gt)
    return scores, self_inf


def check_scores(tmp):
    torch.manual_seed(2)
    cases = [("mlp", MLP().eval(), mlp_data(64, 11), mlp_data(30, 12), mlp_data(8, 13), None),
             ("seq", Seq().eval(), seq_data(48, 21), seq_data(25, 22), seq_data(6, 23), logprob_continuation)]
    for mname, model, fit_d, train_d, query_d, meas in cases:
        paths = {k: os.path.join(tmp, "%s-%s.safetensors" % (mname, k)) for k in ("fit", "train", "query")}
        export_gradients(model, batches(fit_d, 16), paths["fit"], kind="fit",
                         generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        export_gradients(model, batches(train_d, 16), paths["train"], dtype=torch.float64)
        export_gradients(model, batches(query_d, 4), paths["query"], kind="query", measurement=meas,
                         dtype=torch.float64)
        files = {k: read_safetensors(p)[0] for k, p in paths.items()}
        layers = read_safetensors(paths["fit"])[1]["layers"].split(",")
        for method in ("ekfac", "kfac", "diagonal", "identity"):
            factors = os.path.join(tmp, "%s-factors-%s.safetensors" % (mname, method))
            out = os.path.join(tmp, "%s-scores-%s.safetensors" % (mname, method))
            goinfluence("fit", "--grads", paths["fit"], "--method", method, "--out", factors)
            goinfluence("score", "--factors", factors, "--train", paths["train"], "--query", paths["query"],
                        "--damping", repr(DAMPING), "--dtype", "f64", "--self", "--out", out)
            got, _ = read_safetensors(out)
            if got["scores"].dtype != np.float64:
                failures.append("%s %s: scores are %s, want float64" % (mname, method, got["scores"].dtype))
            ref, ref_self = reference_scores(files["fit"], files["train"], files["query"], layers, method, DAMPING)
            record("scores %s, %s" % (mname, method), got["scores"] - ref.numpy(), ref.numpy(), SCORE_TOL)
            record("self-influence %s, %s" % (mname, method), got["self"] - ref_self.numpy(), ref_self.numpy(), SCORE_TOL)
        if mname == "mlp":  # F32 files read by Go, against the F64 reference
            p32 = {k: p.replace(".safetensors", "-f32.safetensors") for k, p in paths.items()}
            export_gradients(model, batches(fit_d, 16), p32["fit"], kind="fit",
                             generator=torch.Generator().manual_seed(5))
            export_gradients(model, batches(train_d, 16), p32["train"])
            export_gradients(model, batches(query_d, 4), p32["query"], kind="query")
            factors = os.path.join(tmp, "mlp-factors-f32.safetensors")
            out = os.path.join(tmp, "mlp-scores-f32.safetensors")
            goinfluence("fit", "--grads", p32["fit"], "--method", "ekfac", "--out", factors)
            goinfluence("score", "--factors", factors, "--train", p32["train"], "--query", p32["query"],
                        "--damping", repr(DAMPING), "--dtype", "f64", "--out", out)
            ref, _ = reference_scores(files["fit"], files["train"], files["query"], layers, "ekfac", DAMPING)
            record("scores mlp, ekfac, F32 files", read_safetensors(out)[0]["scores"] - ref.numpy(),
                   ref.numpy(), F32_TOL)


# ---------------------------------------------------------------------------
# 3. Errors.

def check_errors(tmp):
    model, data = MLP().eval(), mlp_data(10, 4)
    seq, sdata = Seq().eval(), seq_data(8, 5)
    nan_model = MLP().eval()
    with torch.no_grad():
        nan_model.l1.weight[0, 0] = float("nan")
    dup = dict(data, id=torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 2]))
    no_target = {k: v for k, v in data.items() if k != "target"}
    short = seq_data(4, 6, T=5)
    not_grads = os.path.join(tmp, "checkpoint.safetensors")
    with open(not_grads, "wb") as f:
        f.write(b"not a gradient file")
    out = os.path.join(tmp, "err.safetensors")
    cases = [
        ("unknown layer", lambda: export_gradients(model, batches(data, 5), out, layers=["l3"]), "'l3'"),
        ("layer not nn.Linear", lambda: export_gradients(seq, batches(sdata, 4), out, layers=["emb"]), "Embedding"),
        ("missing batch key", lambda: export_gradients(model, batches(no_target, 5), out), "'target'"),
        ("duplicate ids", lambda: export_gradients(model, batches(dup, 5), out), "duplicate example id 2 (also in batch 0)"),
        ("NaN gradients", lambda: export_gradients(nan_model, batches(data, 5), out), "layer 'l1'"),
        ("NaN logits, sampled labels", lambda: export_gradients(nan_model, batches(data, 5), out, kind="fit"),
         "layer 'l1'"),
        ("reentrant checkpoint", lambda: export_gradients(CheckpointedSeq(use_reentrant=True).eval(),
                                                          batches(sdata, 4), out),
         "layer 'blocks.proj' ran with gradients disabled"),
        ("token length differs", lambda: export_gradients(seq, [next(batches(sdata, 4)), short], out), "batch 1"),
        ("overwrite a non-gradient file", lambda: export_gradients(model, batches(data, 5), not_grads), "refusing"),
    ]
    for name, fn, want in cases:
        try:
            fn()
            failures.append("error case %r: no error" % name)
        except ValueError as e:
            if want not in str(e):
                failures.append("error case %r: %s (want %r in it)" % (name, e, want))
            print("  %-30s ValueError: %s" % (name, e))
    if os.path.exists(out):
        failures.append("a failed export left %s" % out)
    for m in (model, seq, nan_model):  # a failed export leaves the model as it was
        if any(sub._forward_hooks for sub in m.modules()):
            failures.append("a failed export left forward hooks on %s" % type(m).__name__)
        if any(q.grad is not None or not q.requires_grad for q in m.parameters()):
            failures.append("a failed export changed .grad or requires_grad of %s" % type(m).__name__)
    good = os.path.join(tmp, "good.safetensors")
    export_gradients(model, batches(data, 5), good)
    with open(good, "rb") as f:
        before = f.read()
    try:
        export_gradients(nan_model, batches(data, 5), good)
        failures.append("NaN export over an existing file: no error")
    except ValueError:
        pass
    with open(good, "rb") as f:
        if f.read() != before:
            failures.append("a failed export changed the existing file")
    with open(good, "rb") as held:  # an input of this process is never replaced
        try:
            export_gradients(model, batches(data, 5), good)
            failures.append("export over a file this process holds open: no error")
        except ValueError as e:
            print("  %-30s ValueError: %s" % ("overwrite an open input", e))
    with open(not_grads, "rb") as f:
        if f.read() != b"not a gradient file":
            failures.append("the refused file was changed")
    left = [f for f in os.listdir(tmp) if f.startswith(".")]
    if left:
        failures.append("temporary files left behind: %s" % left)
    return len(cases) + 2


def main():
    torch.set_default_dtype(torch.float64)
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="goinfluence-interop-")
    try:
        print("torch %s, numpy %s, python %s" % (torch.__version__, np.__version__, sys.version.split()[0]))
        check_gradients(tmp)
        t1 = time.monotonic()
        check_scores(tmp)
        t2 = time.monotonic()
        print("errors raised by export_gradients:")
        os.makedirs(os.path.join(tmp, "errors"))
        n_err = check_errors(os.path.join(tmp, "errors"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("%-40s %12s %12s %8s" % ("check", "max |diff|", "rel. error", "tol"))
    for check, abs_err, rel, tol in results:
        ok = rel <= tol
        if not ok:
            failures.append("%s: relative error %.3g > %g" % (check, rel, tol))
        print("%-40s %12.3g %12.3g %8.0e %s" % (check, abs_err, rel, tol, "ok" if ok else "FAIL"))
    print("relative error = max |diff| / max |reference|; damping %g; %d error cases" % (DAMPING, n_err))
    print("time: gradients %.1f s, scores %.1f s, total %.1f s" % (t1 - t0, t2 - t1, time.monotonic() - t0))
    if failures:
        print("\nFAIL:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
