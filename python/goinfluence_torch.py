"""Per-example gradients of a PyTorch model as a goinfluence gradient file.

One file, PyTorch and numpy only (works with torch 1.13 and later). Copy it
next to your code or put this directory on sys.path.

export_gradients runs the model over a loader and writes, for every chosen
nn.Linear layer L (weight d_out × d_in) and every example n,

    L.a   [n, d_in(+1)]  or [n, T, d_in(+1)]   the layer's input activations,
                                               with a column of ones appended
                                               when the layer has a bias
    L.s   [n, d_out]     or [n, T, d_out]      the gradient of the example's
                                               summed loss w.r.t. the layer's
                                               output
    ids   I64 [n]                              the batches' example ids

so that Σ_t s_t a_tᵀ is the example's gradient of the weight (and of the bias
in the last column). Inputs of rank 3, [n, T, d], keep their token axis; T
must then be the same in every batch (pad to a fixed length and pass a
mask). The file is safetensors with the metadata format=goinfluence.gradients/v1
and layers=<module names in order>, as `goinfluence fit` and `goinfluence
score` read it (see gradients/doc.go in the goinfluence repository).

Usage::

    import torch
    from goinfluence_torch import export_gradients

    model.eval()   # no dropout, no batch norm in training mode
    def batches(xs, ys, ids, size=64):
        for i in range(0, len(xs), size):
            yield {"input": xs[i:i+size], "target": ys[i:i+size], "id": ids[i:i+size]}

    g = torch.Generator().manual_seed(0)
    export_gradients(model, batches(xs, ys, ids), "fit.safetensors", kind="fit", generator=g)
    export_gradients(model, batches(xs, ys, ids), "train.safetensors")
    export_gradients(model, batches(qx, qy, qids), "query.safetensors", kind="query")
    # then: goinfluence fit --grads fit.safetensors --method ekfac --out factors.safetensors
    #       goinfluence score --factors factors.safetensors --train train.safetensors \
    #                         --query query.safetensors --out scores.safetensors

read_safetensors reads any safetensors file (gradients, factors, scores) into
numpy arrays.
"""

import json
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["export_gradients", "read_safetensors", "FORMAT"]

FORMAT = "goinfluence.gradients/v1"

_KINDS = ("fit", "train", "query")
_LABELS = ("sampled", "empirical")
_DTYPES = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8")}


def export_gradients(model, loader, path, *, kind="train", layers=None, labels=None,
                     measurement=None, dtype=torch.float32, generator=None, progress=False):
    """Write the per-example gradients of model over loader to path; return the
    number of examples written.

    model: a torch.nn.Module in eval mode. Gradients are taken of the sum of
        the per-example losses of a batch, so each row of s is one example's
        gradient only as long as examples do not interact: no batch norm in
        training mode (call model.eval()); dropout in training mode would
        make the gradients random. Parameters need not require grad; their
        .grad is left untouched.
    loader: an iterable of batches, each a dict with
        "input"   passed as model(input);
        "target"  LongTensor [n] or [n, T] (needed for empirical labels;
                  negative targets, -100 as in torch's cross-entropy or -1,
                  are left out of the loss, and so are the targets of
                  padding tokens, whatever their value);
        "id"      LongTensor [n] of example ids, unique over the whole loader;
        "mask"    optional, bool or 0/1 [n, T], True for real tokens: padding
                  rows are written as zeros in a and s of every layer with a
                  token axis, so they add nothing, and are left out of the
                  default loss.
        The loader is read once, batch by batch; nothing is held over from
        one batch to the next but the example ids.
    path: the gradient file to write. It is written atomically (the
        batches' tensors go to temporary files in path's directory, then
        the file is assembled under a temporary name, synced and renamed
        over path), so a failure leaves no partial file and any previous file
        untouched. An existing file is only replaced if it is a goinfluence
        gradient file that this process does not hold open or mapped (an
        input of the loader, say).
    kind: "fit" (curvature data), "train" or "query"; it chooses the default
        labels and is recorded in the file's metadata.
    layers: None for every nn.Linear of model.named_modules(), in that order;
        or a list of module names (e.g. only LoRA matrices,
        ["blocks.0.attn.q.lora_A", ...]), written in that order. The file's
        layer names are the module names.
    labels: "sampled" (labels drawn from the model's softmax with generator:
        the true Fisher; the default for kind="fit") or "empirical" (the
        batch targets; the default for "train" and "query").
    measurement: None for cross-entropy of the model output (logits, last
        dim = classes; a tensor, or an object with .logits or a dict with
        "logits") summed over the example's unmasked tokens; or a function
        measurement(model_output, batch) -> tensor [n] of per-example
        values whose sum is backpropagated (e.g. the log-probability of a
        generated continuation for queries). labels is ignored then. As
        padding rows are written as zeros, a measurement must not depend on
        the outputs at padded positions.
    dtype: torch.float32 or torch.float64, the element type of a and s.
    generator: torch.Generator used to sample labels (None: torch's global
        one). Its device is where the labels are drawn.
    progress: print a line per batch to stderr.

    Raises ValueError naming the layer, batch, field or example id for an
    unknown layer name, a layer that is not nn.Linear, a layer called more
    than once or with gradients disabled in a forward pass (torch.no_grad,
    reentrant checkpointing), a missing batch key, duplicate ids, a token
    length that differs from the first batch's, and NaN or infinite
    activations or gradients.
    """
    if kind not in _KINDS:
        raise ValueError("kind %r: want one of %s" % (kind, ", ".join(_KINDS)))
    if labels is None:
        labels = "sampled" if kind == "fit" else "empirical"
    if labels not in _LABELS:
        raise ValueError("labels %r: want 'sampled' or 'empirical'" % (labels,))
    if dtype not in _DTYPES:
        raise ValueError("dtype %r: want torch.float32 or torch.float64" % (dtype,))
    if measurement is not None and not callable(measurement):
        raise ValueError("measurement must be a function (model_output, batch) -> tensor [n]")
    path = os.fspath(path)
    chosen = _select_layers(model, layers)
    _check_target(path)
    if model.training:
        warnings.warn("goinfluence_torch: the model is in training mode; call model.eval() "
                      "(batch norm makes examples interact, dropout makes gradients random)",
                      stacklevel=2)

    outdir = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    work = tempfile.mkdtemp(prefix="." + base + ".", suffix=".parts", dir=outdir)
    try:
        spool = _Spool(work, chosen, _DTYPES[dtype][1])
        taps = _Taps(chosen)
        seen = {}  # example id -> batch index
        n_total = 0
        started = last = time.monotonic()
        with taps:
            for bi, batch in enumerate(loader):
                ids = _batch_ids(batch, bi, seen)
                rows = _batch_rows(model, batch, bi, ids, taps, labels, measurement,
                                   generator, dtype)
                spool.append(bi, ids, rows)
                n_total += len(ids)
                now = time.monotonic()
                if progress and (now - last >= 1 or bi == 0):
                    last = now
                    print("goinfluence_torch: batch %d, %d examples, %.1f s"
                          % (bi, n_total, now - started), file=sys.stderr, flush=True)
        if n_total == 0:
            raise ValueError("the loader yielded no examples")
        meta = {"format": FORMAT, "layers": ",".join(name for name, _ in chosen),
                "kind": kind, "labels": "measurement" if measurement is not None else labels,
                "exporter": "goinfluence_torch", "torch": torch.__version__}
        spool.assemble(path, n_total, meta)
        if progress:
            print("goinfluence_torch: wrote %d examples of %d layers to %s in %.1f s"
                  % (n_total, len(chosen), path, time.monotonic() - started),
                  file=sys.stderr, flush=True)
        return n_total
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_safetensors(path):
    """Return (tensors, metadata) of the safetensors file at path: a dict of
    name -> numpy array (little-endian F16/F32/F64/I8/I32/I64/U8/BOOL; BF16
    widened to float32) and the __metadata__ dict."""
    kinds = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1",
             "I16": "<i2", "I32": "<i4", "I64": "<i8", "BOOL": "?", "BF16": "<u2"}
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        if info["dtype"] not in kinds:
            raise ValueError("%s: tensor %r has dtype %s" % (path, name, info["dtype"]))
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=kinds[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out, meta


# ---------------------------------------------------------------------------
# Layers and hooks.

def _select_layers(model, layers):
    modules = dict(model.named_modules())
    if layers is None:
        chosen = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        if not chosen:
            raise ValueError("the model has no nn.Linear layer; pass layers=")
    else:
        if isinstance(layers, str):
            raise ValueError("layers must be a list of module names, not the string %r" % layers)
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty")
        chosen = []
        for name in layers:
            if not isinstance(name, str) or name not in modules:
                linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
                raise ValueError("layer %r: no such module in the model (its nn.Linear layers: %s)"
                                 % (name, ", ".join(linear[:20]) + (", ..." if len(linear) > 20 else "")))
            m = modules[name]
            if not isinstance(m, torch.nn.Linear):
                raise ValueError("layer %r is a %s, not an nn.Linear" % (name, type(m).__name__))
            chosen.append((name, m))
    names = set()
    for name, _ in chosen:
        if name in names:
            raise ValueError("layer %r is listed twice" % name)
        if name == "" or "," in name:
            raise ValueError("layer %r: a layer name must be non-empty and free of commas "
                             "(the file's layers metadata is comma-separated); pass the "
                             "submodules, not the model itself" % name)
        names.add(name)
    return chosen


class _Tap(torch.autograd.Function):
    """Identity on a layer's output that hands the output's gradient to
    record. Its second input, a leaf that requires grad, puts every tap on
    the path that torch.autograd.grad walks, whether or not the layer's own
    parameters require grad; the output is a copy so that in-place
    operations after the layer (ReLU(inplace=True)) do not touch the tap."""

    @staticmethod
    def forward(ctx, out, anchor, record):
        ctx.record = record
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        ctx.record(grad)
        return grad, None, None


class _Taps:
    """Forward hooks on the chosen layers: the inputs they saw in the last
    forward pass and, after backward, the gradients of their outputs."""

    def __init__(self, chosen):
        self.chosen = chosen
        self.handles = []
        self.anchors = {}  # device -> leaf; one per device the layers' outputs are on
        self.reset()

    def reset(self):
        self.inputs, self.versions, self.grads, self.calls = {}, {}, {}, {}
        self.no_grad = set()  # layers whose first call ran with gradients disabled

    def __enter__(self):
        for name, module in self.chosen:
            self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        self.reset()
        return False

    def _hook(self, name):
        def hook(module, inputs, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1 or not inputs or not torch.is_tensor(inputs[0]) \
                    or not torch.is_tensor(output):
                return None  # reported by _batch_rows
            if not torch.is_grad_enabled():  # the tap would not be in the graph
                self.no_grad.add(name)
                return None
            x = inputs[0].detach()
            self.inputs[name], self.versions[name] = x, x._version

            def record(g):
                self.grads[name] = g.detach()
            anchor = self.anchors.get(output.device)
            if anchor is None:
                anchor = torch.zeros((), device=output.device, requires_grad=True)
                self.anchors[output.device] = anchor
            return _Tap.apply(output, anchor, record)
        return hook


# ---------------------------------------------------------------------------
# One batch.

def _batch_ids(batch, bi, seen):
    if not isinstance(batch, dict):
        raise ValueError("batch %d: a %s, want a dict with keys input, target, id (mask)"
                         % (bi, type(batch).__name__))
    for key in ("input", "id"):
        if key not in batch:
            raise ValueError("batch %d: missing key %r" % (bi, key))
    ids = batch["id"]
    if not torch.is_tensor(ids) or ids.dim() != 1 or ids.dtype.is_floating_point \
            or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError("batch %d: field 'id' must be an integer tensor [n], got %s"
                         % (bi, _describe(ids)))
    if len(ids) == 0:
        raise ValueError("batch %d: no examples" % bi)
    ids = [int(v) for v in ids.cpu().tolist()]
    for i in ids:
        if i in seen:
            where = "earlier in the same batch" if seen[i] == bi else "in batch %d" % seen[i]
            raise ValueError("batch %d: duplicate example id %d (also %s)" % (bi, i, where))
        seen[i] = bi
    return ids


def _batch_rows(model, batch, bi, ids, taps, labels, measurement, generator, dtype):
    """Run one batch forward and backward; return, per chosen layer, the
    (a, s) tensors of its examples in dtype on the CPU, masked."""
    n = len(ids)
    mask = batch.get("mask")
    if mask is not None:
        if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[0] != n:
            raise ValueError("batch %d: field 'mask' must be a tensor [n=%d, T], got %s"
                             % (bi, n, _describe(mask)))
        mask = mask != 0
    taps.reset()
    try:
        with torch.enable_grad():
            out = model(batch["input"])
            if measurement is None:
                value = _cross_entropy(out, batch, bi, n, mask, labels, generator)
            else:
                value = measurement(out, batch)
                if not torch.is_tensor(value) or tuple(value.shape) != (n,):
                    raise ValueError("batch %d: measurement returned %s, want a tensor [n=%d]"
                                     % (bi, _describe(value), n))
            for name, _ in taps.chosen:
                calls = taps.calls.get(name, 0)
                if calls == 0:
                    raise ValueError("batch %d: layer %r was not called in the forward pass" % (bi, name))
                if calls > 1:
                    raise ValueError("batch %d: layer %r was called %d times in one forward pass; "
                                     "shared layers are not supported" % (bi, name, calls))
                if name in taps.no_grad:
                    raise ValueError("batch %d: layer %r ran with gradients disabled (torch.no_grad, or "
                                     "torch.utils.checkpoint with use_reentrant=True, which runs it again "
                                     "in the backward pass): its output gradient cannot be taken; use "
                                     "use_reentrant=False or leave the layer out with layers=" % (bi, name))
                if name not in taps.inputs:
                    raise ValueError("batch %d: layer %r did not take and return a tensor" % (bi, name))
            total = value.sum()
            if not total.requires_grad:
                raise ValueError("batch %d: the loss does not depend on any chosen layer" % bi)
            torch.autograd.grad(total, list(taps.anchors.values()), allow_unused=True)

        rows = []
        for name, module in taps.chosen:
            x = taps.inputs[name]
            if x._version != taps.versions[name]:
                raise ValueError("batch %d: layer %r: its input was modified in place after the "
                                 "layer ran" % (bi, name))
            if x.dim() not in (2, 3) or x.shape[0] != n:
                raise ValueError("batch %d: layer %r: input of shape %s, want [n=%d, d_in] or "
                                 "[n=%d, T, d_in]" % (bi, name, list(x.shape), n, n))
            g = taps.grads.get(name)
            d_out = module.out_features
            if g is None:  # the output does not reach the loss
                g = torch.zeros(x.shape[:-1] + (d_out,), dtype=x.dtype, device=x.device)
            if g.shape[:-1] != x.shape[:-1] or g.shape[-1] != d_out:
                raise ValueError("batch %d: layer %r: output gradient of shape %s for input %s"
                                 % (bi, name, list(g.shape), list(x.shape)))
            a = x.to(dtype)
            if module.bias is not None:
                a = torch.cat([a, torch.ones(a.shape[:-1] + (1,), dtype=dtype, device=a.device)], -1)
            s = g.to(dtype)
            if x.dim() == 3 and mask is not None:
                if tuple(mask.shape) != tuple(x.shape[:2]):
                    raise ValueError("batch %d: layer %r: mask of shape %s, but the layer has "
                                     "%d tokens" % (bi, name, list(mask.shape), x.shape[1]))
                pad = ~mask.to(a.device).unsqueeze(-1)
                a, s = a.masked_fill(pad, 0), s.masked_fill(pad, 0)
            a, s = a.detach().cpu(), s.detach().cpu()
            for field, t, what in (("a", a, "activations"), ("s", s, "output gradients")):
                bad = ~torch.isfinite(t.reshape(n, -1)).all(1)
                if bool(bad.any()):
                    i = int(bad.nonzero()[0])
                    raise ValueError("batch %d: layer %r: non-finite %s (%s) of example id %d"
                                     % (bi, name, what, field, ids[i]))
            rows.append((a, s))
        return rows
    finally:
        taps.reset()


def _cross_entropy(out, batch, bi, n, mask, labels, generator):
    logits = out
    if not torch.is_tensor(logits):
        if isinstance(out, dict) and "logits" in out:
            logits = out["logits"]
        elif hasattr(out, "logits"):
            logits = out.logits
        elif isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
            logits = out[0]
    if not torch.is_tensor(logits) or logits.dim() not in (2, 3) or logits.shape[0] != n:
        raise ValueError("batch %d: model output %s is not logits [n=%d, classes] or "
                         "[n=%d, T, classes]; pass measurement=" % (bi, _describe(logits), n, n))
    shape = tuple(logits.shape[:-1])
    target = batch.get("target")
    if target is not None:
        if not torch.is_tensor(target) or tuple(target.shape) != shape:
            raise ValueError("batch %d: field 'target' must be a tensor %s, got %s"
                             % (bi, list(shape), _describe(target)))
        target = target.to(logits.device).long()
    if labels == "empirical":
        if target is None:
            raise ValueError("batch %d: missing key 'target' (empirical labels)" % bi)
        y = target
    else:
        with torch.no_grad():
            p = torch.softmax(logits.detach().double(), -1).reshape(-1, logits.shape[-1])
            dev = generator.device if generator is not None else p.device
            # A row with NaN or infinite logits draws from the uniform
            # distribution: its loss stays non-finite, and the check on s
            # reports the layer and the example id.
            p = torch.where(torch.isfinite(p).all(-1, keepdim=True), p, torch.full_like(p, 1.0 / p.shape[-1]))
            y = torch.multinomial(p.to(dev), 1, generator=generator).reshape(shape).to(logits.device)
    # Rows left out of the loss: negative targets and padding, whatever their
    # target (-1 or a pad id past the classes included), through torch's
    # ignore_index, so that their loss and its gradient are zeros.
    left_out = target < 0 if target is not None else None
    if logits.dim() == 3 and mask is not None:
        if tuple(mask.shape) != shape:
            raise ValueError("batch %d: field 'mask' of shape %s, logits have %s"
                             % (bi, list(mask.shape), list(shape)))
        pad = ~mask.to(logits.device)
        left_out = pad if left_out is None else left_out | pad
    if left_out is not None:
        y = y.masked_fill(left_out, -100)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                           reduction="none", ignore_index=-100).reshape(shape)
    if logits.dim() == 3:
        loss = loss.sum(1)
    return loss


def _describe(v):
    if torch.is_tensor(v):
        return "%s %s" % (str(v.dtype).replace("torch.", ""), list(v.shape))
    return type(v).__name__


# ---------------------------------------------------------------------------
# Files.

class _Spool:
    """Per-tensor temporary files, appended to batch by batch, then
    assembled into one safetensors file."""

    def __init__(self, work, chosen, np_dtype):
        self.work, self.chosen, self.np_dtype = work, chosen, np.dtype(np_dtype)
        self.shapes = None  # per layer: (a shape, s shape) without the example axis
        self.first = None

    def _file(self, key):
        return os.path.join(self.work, key)

    def append(self, bi, ids, rows):
        shapes = [(tuple(a.shape[1:]), tuple(s.shape[1:])) for a, s in rows]
        if self.shapes is None:
            self.shapes, self.first = shapes, bi
        for (name, _), got, want in zip(self.chosen, shapes, self.shapes):
            if got != want:
                if len(got[0]) == 2 and len(want[0]) == 2 and got[0][0] != want[0][0]:
                    raise ValueError("batch %d: layer %r has %d tokens, batch %d had %d: the token "
                                     "length T must be the same in every batch (pad and mask)"
                                     % (bi, name, got[0][0], self.first, want[0][0]))
                raise ValueError("batch %d: layer %r: a %s, s %s per example, batch %d had a %s, s %s"
                                 % (bi, name, list(got[0]), list(got[1]), self.first,
                                    list(want[0]), list(want[1])))
        self._write("ids", np.asarray(ids, dtype="<i8"))
        for i, (a, s) in enumerate(rows):
            self._write("%d.a" % i, a.numpy().astype(self.np_dtype, copy=False))
            self._write("%d.s" % i, s.numpy().astype(self.np_dtype, copy=False))

    def _write(self, key, arr):
        with open(self._file(key), "ab") as f:
            np.ascontiguousarray(arr).tofile(f)

    def assemble(self, path, n, meta):
        code = "F32" if self.np_dtype == np.dtype("<f4") else "F64"
        parts = [("ids", "I64", [n], "ids")]
        for i, (name, _) in enumerate(self.chosen):
            sa, ss = self.shapes[i]
            parts.append((name + ".a", code, [n] + list(sa), "%d.a" % i))
            parts.append((name + ".s", code, [n] + list(ss), "%d.s" % i))
        header, off = {"__metadata__": meta}, 0
        for tname, code_, shape, key in parts:
            size = os.path.getsize(self._file(key))
            want = int(np.prod(shape)) * (8 if code_ in ("I64", "F64") else 4)
            if size != want:
                raise RuntimeError("goinfluence_torch: %s: %d bytes spooled, want %d" % (tname, size, want))
            header[tname] = {"dtype": code_, "shape": shape, "data_offsets": [off, off + size]}
            off += size
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        h += b" " * (-len(h) % 8)
        outdir = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=outdir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(struct.pack("<Q", len(h)))
                out.write(h)
                for _, _, _, key in parts:
                    with open(self._file(key), "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.remove(self._file(key))  # the disk holds at most one extra copy of each
                out.flush()
                os.fchmod(out.fileno(), 0o666 & ~_umask())  # mkstemp makes it 0600
                os.fsync(out.fileno())
            _check_target(path)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        try:
            dfd = os.open(outdir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def _check_target(path):
    """Refuse to replace a directory, a file this process holds open or
    mapped (an input of the loader or the model), or a file that is not a
    goinfluence gradient file."""
    if os.path.isdir(path):
        raise ValueError("%s is a directory" % path)
    if not os.path.exists(path):
        return
    for other in _open_files():
        try:
            if os.path.samefile(path, other):
                raise ValueError("refusing to overwrite %s: this process has it open or mapped "
                                 "(an input?)" % path)
        except OSError:
            pass
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            (hlen,) = struct.unpack("<Q", raw)
            meta = json.loads(f.read(min(hlen, 1 << 26))).get("__metadata__") or {}
            ok = meta.get("format") == FORMAT
    except (OSError, ValueError, struct.error, AttributeError):
        ok = False
    if not ok:
        raise ValueError("refusing to overwrite %s: it is not a goinfluence gradient file "
                         "(remove it first if it should go)" % path)


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _open_files():
    """Paths this process has open or mapped (Linux /proc; empty elsewhere)."""
    paths = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                paths.add(os.readlink("/proc/self/fd/" + fd))
            except OSError:
                pass
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths.add(parts[5].rstrip("\n").replace(" (deleted)", ""))
    except OSError:
        pass
    return [p for p in paths if p.startswith("/")]
