"""Pre-train a small byte-level causal transformer, LoRA-fine-tune it on
DataNets of Debian's fortunes, and export per-token gradients of the LoRA
matrices for goinfluence.

    /usr/bin/python3 examples/lora-lm/train.py WORKDIR

Everything goes into WORKDIR, nothing into the repository. Each stage is
cached there: the pre-trained weights (base.pt), the LoRA weights (lora.pt)
and the gradient files are reused when present, so a rerun only redoes what
is missing. manifest.json is written last; examples/lora-lm/main.go runs this
script when it is absent.

DataNets: four collections of /usr/share/games/fortunes (BSD licence, see
/usr/share/doc/fortunes/copyright), each entry one contribution of a
synthetic contributor. The base corpus is every other collection there.

Files written (gradients in goinfluence.gradients/v1 via
python/goinfluence_torch.py, LoRA layers only, per token):
    fit.safetensors              training entries, labels sampled from the model (true Fisher)
    train.safetensors            training entries, their own next-byte labels
    query-entries.safetensors    held-out entries, loss of the entry itself
    query-generated.safetensors  held-out prompts, measurement -log p(generated continuation)
    train.jsonl, queries.jsonl   the texts, DataNets and contributors by id
    lora.pt                      the checkpoint the gradients were taken at
    manifest.json                configuration, held-out losses and stage timings
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

FORTUNES = "/usr/share/games/fortunes"
DATANETS = ["startrek", "zippy", "perl", "riddles"]
CONTRIBUTORS_PER_DATANET = 3
QUERIES_PER_DATANET = 30
TRAIN_PER_DATANET = 150
MAX_BYTES = 127  # an entry's bytes kept; with BOS and EOS, T = 128 positions
BOS, EOS, VOCAB = 256, 257, 258
PROMPT_BYTES = 20
GEN_BYTES = 60

CONFIG = dict(d_model=128, n_layers=2, n_heads=4, d_mlp=512, ctx=MAX_BYTES + 1,
              lora_rank=4, lora_alpha=8, lora_targets=["q", "k", "v", "o"],
              pretrain_steps=1500, pretrain_batch=32, pretrain_lr=3e-3,
              finetune_epochs=16, finetune_batch=16, finetune_lr=3e-3)


# ---------------------------------------------------------------- data

def read_collection(name):
    """The entries of one fortunes file, as bytes, in file order."""
    with open(os.path.join(FORTUNES, name), "rb") as f:
        raw = f.read()
    out = []
    for e in raw.split(b"\n%\n"):
        e = e.strip(b"\n%")
        if len(e.strip()) >= 16:
            out.append(e[:MAX_BYTES])
    return out


def base_collections():
    skip = set(DATANETS)
    names = []
    for n in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, n)
        if n in skip or "." in n or not os.path.isfile(p):
            continue
        names.append(n)
    return names


def split_datanets(seed):
    """Per DataNet: held-out queries and training entries, with synthetic
    contributors; both lists of dicts with fresh ids."""
    rng = random.Random(seed)
    train, queries = [], []
    for net in DATANETS:
        es = read_collection(net)
        rng.shuffle(es)
        q, t = es[:QUERIES_PER_DATANET], es[QUERIES_PER_DATANET:QUERIES_PER_DATANET + TRAIN_PER_DATANET]
        for e in q:
            queries.append(dict(datanet=net, text=e))
        for e in t:
            c = "%s-%d" % (net, rng.randrange(CONTRIBUTORS_PER_DATANET) + 1)
            train.append(dict(datanet=net, contributor=c, text=e))
    for i, e in enumerate(train):
        e["id"] = i
    for i, e in enumerate(queries):
        e["id"] = i
    return train, queries


def encode(entries):
    """Input and target byte tensors [n, T] and the mask of real targets."""
    T = CONFIG["ctx"]
    n = len(entries)
    x = torch.zeros(n, T, dtype=torch.long)
    y = torch.zeros(n, T, dtype=torch.long)
    m = torch.zeros(n, T, dtype=torch.bool)
    for i, e in enumerate(entries):
        seq = [BOS] + list(e) + [EOS]
        seq = seq[:T + 1]
        k = len(seq) - 1
        x[i, :k] = torch.tensor(seq[:-1])
        y[i, :k] = torch.tensor(seq[1:])
        m[i, :k] = True
    return x, y, m


# ---------------------------------------------------------------- model

class LoRALinear(nn.Module):
    """A frozen nn.Linear plus lora_B(lora_A(x))·α/r, the adapters plain
    nn.Linear modules without bias (so the exporter sees them as layers)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.lora_A = None
        self.lora_B = None
        self.scale = 0.0

    def add_lora(self, r, alpha, gen):
        d_in, d_out = self.base.in_features, self.base.out_features
        self.lora_A = nn.Linear(d_in, r, bias=False)
        self.lora_B = nn.Linear(r, d_out, bias=False)
        with torch.no_grad():
            self.lora_A.weight.copy_(torch.randn(r, d_in, generator=gen) / math.sqrt(d_in))
            self.lora_B.weight.zero_()
        self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        if self.lora_A is not None:
            y = y + self.lora_B(self.lora_A(x)) * self.scale
        return y


class Block(nn.Module):
    def __init__(self, d, h, d_mlp):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (LoRALinear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d_mlp)
        self.fc2 = nn.Linear(d_mlp, d)

    def forward(self, x, causal):
        n, T, d = x.shape
        z = self.ln1(x)
        q, k, v = (p(z).view(n, T, self.h, d // self.h).transpose(1, 2) for p in (self.q, self.k, self.v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.h)
        att = att.masked_fill(~causal[:T, :T], float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(n, T, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ByteLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, c["d_model"])
        self.pos = nn.Embedding(c["ctx"], c["d_model"])
        self.blocks = nn.ModuleList(Block(c["d_model"], c["n_heads"], c["d_mlp"]) for _ in range(c["n_layers"]))
        self.ln = nn.LayerNorm(c["d_model"])
        self.head = nn.Linear(c["d_model"], VOCAB)
        self.register_buffer("causal", torch.ones(c["ctx"], c["ctx"], dtype=torch.bool).tril(), persistent=False)

    def forward(self, x):
        T = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(T))
        for b in self.blocks:
            h = b(h, self.causal)
        return self.head(self.ln(h))

    def lora_modules(self):
        return [(n, m) for n, m in self.named_modules() if n.endswith(".lora_A") or n.endswith(".lora_B")]


def seq_loss(model, x, y, m):
    logits = model(x)
    l = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1), reduction="none").view_as(y)
    return (l * m).sum() / m.sum()


def train_loop(model, params, x, y, m, steps, batch, lr, gen, log):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    n = x.shape[0]
    for s in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        loss = seq_loss(model, x[idx], y[idx], m[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 100 == 0 or s == steps - 1:
            log("  step %4d/%d  loss %.3f nats/byte" % (s, steps, loss.item()))


@torch.no_grad()
def mean_loss(model, x, y, m):
    return seq_loss(model, x, y, m).item()


@torch.no_grad()
def generate(model, prompt, n_new, gen, temperature=0.7):
    """prompt: list of token ids (BOS first); sampled continuation (no EOS)."""
    seq = list(prompt)
    out = []
    for _ in range(n_new):
        if len(seq) >= CONFIG["ctx"]:
            break
        logits = model(torch.tensor([seq]))[0, -1, :256] / temperature
        t = torch.multinomial(logits.softmax(-1), 1, generator=gen).item()
        seq.append(t)
        out.append(t)
    return out


# ---------------------------------------------------------------- export

def loader(xs, ys, ms, ids, batch, extra=None):
    for lo in range(0, xs.shape[0], batch):
        b = {"input": xs[lo:lo + batch], "target": ys[lo:lo + batch],
             "mask": ms[lo:lo + batch], "id": ids[lo:lo + batch]}
        if extra is not None:
            for k, v in extra.items():
                b[k] = v[lo:lo + batch]
        yield b


class Loader:
    """Re-iterable loader (the exporter may iterate more than once)."""

    def __init__(self, *args, **kw):
        self.args, self.kw = args, kw

    def __iter__(self):
        return loader(*self.args, **self.kw)


def continuation_nll(logits, batch):
    """-log p(continuation | prompt), summed over the generated bytes: the
    query's loss, so that positive scores are training entries that raise
    the probability of what the model generated."""
    lp = F.log_softmax(logits, -1).gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    return -(lp * batch["cont"]).sum(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", help="where the weights, gradients and lists go (cached there)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the split, the contributors, training and sampling")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (on a busy 2-core machine 2 ran 6x slower than 1)")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    W = lambda name: os.path.join(args.workdir, name)
    torch.set_num_threads(args.threads)
    log = lambda s: print(s, flush=True)
    timings = {}
    try:
        import goinfluence_torch as gt
    except ImportError as e:
        sys.exit("train.py: cannot import goinfluence_torch from python/ at the repository root: %s" % e)

    train, queries = split_datanets(args.seed)
    xt, yt, mt = encode([e["text"] for e in train])
    xq, yq, mq = encode([e["text"] for e in queries])
    log("DataNets %s: %d training entries, %d held-out queries" % (",".join(DATANETS), len(train), len(queries)))

    # Pre-training on every other collection.
    torch.manual_seed(args.seed)
    model = ByteLM(CONFIG)
    if os.path.exists(W("base.pt")):
        model.load_state_dict(torch.load(W("base.pt")))
        log("pre-trained weights from %s" % W("base.pt"))
    else:
        base = []
        for n in base_collections():
            base += read_collection(n)
        xb, yb, mb = encode(base)
        log("pre-training on %d entries of %d other collections (%d bytes)" % (len(base), len(base_collections()), int(mb.sum())))
        t0 = time.time()
        train_loop(model, model.parameters(), xb, yb, mb, CONFIG["pretrain_steps"], CONFIG["pretrain_batch"],
                   CONFIG["pretrain_lr"], torch.Generator().manual_seed(args.seed), log)
        timings["pretrain_s"] = time.time() - t0
        torch.save(model.state_dict(), W("base.pt"))
    model.eval()
    base_loss = {net: mean_loss(model, *(t[[i for i, e in enumerate(queries) if e["datanet"] == net]] for t in (xq, yq, mq)))
                 for net in DATANETS}

    # LoRA fine-tuning on the DataNets, base weights frozen.
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(args.seed + 1)
    for b in model.blocks:
        for name in CONFIG["lora_targets"]:
            getattr(b, name).add_lora(CONFIG["lora_rank"], CONFIG["lora_alpha"], gen)
    lora_params = [p for _, m in model.lora_modules() for p in m.parameters()]
    if os.path.exists(W("lora.pt")):
        model.load_state_dict(torch.load(W("lora.pt")), strict=False)
        log("LoRA weights from %s" % W("lora.pt"))
    else:
        steps = CONFIG["finetune_epochs"] * len(train) // CONFIG["finetune_batch"]
        log("LoRA fine-tuning (rank %d on %s, %d parameters) for %d steps" % (
            CONFIG["lora_rank"], ",".join(CONFIG["lora_targets"]), sum(p.numel() for p in lora_params), steps))
        model.train()
        t0 = time.time()
        train_loop(model, lora_params, xt, yt, mt, steps, CONFIG["finetune_batch"], CONFIG["finetune_lr"],
                   torch.Generator().manual_seed(args.seed + 2), log)
        timings["finetune_s"] = time.time() - t0
        model.eval()
        torch.save({n: p for n, p in model.state_dict().items() if "lora_" in n}, W("lora.pt"))
    ft_loss = {net: mean_loss(model, *(t[[i for i, e in enumerate(queries) if e["datanet"] == net]] for t in (xq, yq, mq)))
               for net in DATANETS}
    for net in DATANETS:
        log("  held-out %-9s loss %.3f → %.3f nats/byte (base → LoRA)" % (net, base_loss[net], ft_loss[net]))

    # Generated continuations of the held-out prompts.
    gen = torch.Generator().manual_seed(args.seed + 3)
    t0 = time.time()
    gx, gy, gm, gc = (torch.zeros(len(queries), CONFIG["ctx"], dtype=d) for d in (torch.long, torch.long, torch.bool, torch.bool))
    for i, q in enumerate(queries):
        prompt = [BOS] + list(q["text"][:PROMPT_BYTES])
        cont = generate(model, prompt, GEN_BYTES, gen)
        seq = prompt + cont
        k = len(seq) - 1
        gx[i, :k] = torch.tensor(seq[:-1])
        gy[i, :k] = torch.tensor(seq[1:])
        gm[i, :k] = True
        gc[i, len(prompt) - 1:k] = True  # targets that are generated bytes
        q["prompt"] = bytes(prompt[1:])
        q["continuation"] = bytes(cont)
    timings["generate_s"] = time.time() - t0

    # Gradients of the LoRA matrices, per token.
    layers = [n for n, _ in model.lora_modules()]
    for p in lora_params:
        p.requires_grad_(True)
    tid = torch.tensor([e["id"] for e in train])
    qid = torch.tensor([e["id"] for e in queries])
    t0 = time.time()
    jobs = [
        ("fit.safetensors", dict(kind="fit", labels="sampled", generator=torch.Generator().manual_seed(args.seed + 4)), Loader(xt, yt, mt, tid, 32)),
        ("train.safetensors", dict(kind="train", labels="empirical"), Loader(xt, yt, mt, tid, 32)),
        ("query-entries.safetensors", dict(kind="query", labels="empirical"), Loader(xq, yq, mq, qid, 32)),
        ("query-generated.safetensors", dict(kind="query", measurement=continuation_nll), Loader(gx, gy, gm, qid, 32, extra={"cont": gc})),
    ]
    exported = 0
    for name, kw, ld in jobs:
        if os.path.exists(W(name)):
            continue
        n = gt.export_gradients(model, ld, W(name), layers=layers, **kw)  # written atomically
        log("  %s: %d examples" % (name, n))
        exported += 1
    if exported:
        timings["export_s"] = time.time() - t0

    dec = lambda b: b.decode("utf-8", "replace")
    with open(W("train.jsonl"), "w") as f:
        for e in train:
            f.write(json.dumps(dict(id=e["id"], datanet=e["datanet"], contributor=e["contributor"], text=dec(e["text"]))) + "\n")
    with open(W("queries.jsonl"), "w") as f:
        for q in queries:
            f.write(json.dumps(dict(id=q["id"], datanet=q["datanet"], text=dec(q["text"]), prompt=dec(q["prompt"]),
                                    continuation=dec(q["continuation"]))) + "\n")
    man = dict(config=CONFIG, datanets=DATANETS, seed=args.seed, train=len(train), queries=len(queries),
               layers=layers, torch=torch.__version__, threads=args.threads,
               heldout_loss_base=base_loss, heldout_loss_lora=ft_loss, timings=timings)
    old = {}
    if os.path.exists(W("manifest.json")):
        with open(W("manifest.json")) as f:
            old = json.load(f).get("timings", {})
    man["timings"] = {**old, **timings}
    with open(W("manifest.json") + ".tmp", "w") as f:
        json.dump(man, f, indent=1)
    os.replace(W("manifest.json") + ".tmp", W("manifest.json"))
    log("wrote %s" % W("manifest.json"))


if __name__ == "__main__":
    main()
