#!/usr/bin/env python3
"""Independent PyTorch reference for a GPT in TransformerLens layout.

Used by the C# tests to cross-check the C# implementation. Runs with plain
torch + numpy (no safetensors package: the format is read/written by hand).

Commands:
  init   --config JSON --seed S --out F.safetensors
  tokens --vocab V --count N --seed S --out F.bin
  eval   --checkpoint F --data D.bin --out R.json [--grads G.safetensors] [--batch 8]
  logits --checkpoint F --data D.bin --out L.safetensors
  gpt2hf --config JSON --seed S --out DIR [--prefix]   (a random GPT-2 in the Hugging Face layout)
  gpt2llmc --dir DIR --out F.bin --padded-vocab VP   (that model as llm.c's gpt2_124M.bin layout)
  gpt2logits --dir DIR --data D.bin --out L.safetensors (an independent GPT-2 forward in that layout)
  sae    --dir SAE-FOLDER --x X.safetensors --out R.safetensors   (SAELens formulas: features and reconstruction)
"""
import argparse
import json
import os
import math
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)


# ----------------------------------------------------------------------------
# safetensors (F32 only)
# ----------------------------------------------------------------------------

def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (written as F32, in dict order)."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        arr = np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy(), dtype="<f4")
        data = arr.tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in blobs:
            f.write(data)


def load_safetensors(path):
    """Returns (dict name -> float32 torch tensor, metadata dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        if name.endswith("attn.mask") or name.endswith("attn.IGNORE"):
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        arr = np.frombuffer(data[begin:end], dtype="<f4")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{name}: size mismatch for shape {shape}")
        tensors[name] = torch.from_numpy(arr.reshape(shape).astype(np.float32))
    return tensors, metadata


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

def complete_config(cfg):
    cfg = dict(cfg)
    cfg.setdefault("normalization_type", "LN")
    cfg.setdefault("attn_only", False)
    cfg.setdefault("positional_embedding_type", "standard")
    cfg.setdefault("act_fn", "gelu_new")
    if cfg.get("initializer_range") is None:
        cfg["initializer_range"] = 0.8 / math.sqrt(cfg["d_model"])
    if cfg["normalization_type"] not in ("LN", None):
        raise ValueError(f"unsupported normalization_type {cfg['normalization_type']}")
    if cfg["positional_embedding_type"] not in ("standard", "shortformer"):
        raise ValueError(f"unsupported positional_embedding_type {cfg['positional_embedding_type']}")
    if cfg["act_fn"] != "gelu_new":
        raise ValueError(f"unsupported act_fn {cfg['act_fn']}")
    if not cfg["attn_only"] and not cfg.get("d_mlp"):
        raise ValueError("d_mlp is required unless attn_only")
    return cfg


def param_shapes(cfg):
    """Ordered dict name -> shape, exactly the TransformerLens names."""
    D, H, K, V, C = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["d_vocab"], cfg["n_ctx"]
    ln = cfg["normalization_type"] == "LN"
    shapes = {"embed.W_E": (V, D), "pos_embed.W_pos": (C, D)}
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}."
        if ln:
            shapes[p + "ln1.w"] = (D,)
            shapes[p + "ln1.b"] = (D,)
        for m in ("Q", "K", "V"):
            shapes[p + f"attn.W_{m}"] = (H, D, K)
        shapes[p + "attn.W_O"] = (H, K, D)
        for m in ("Q", "K", "V"):
            shapes[p + f"attn.b_{m}"] = (H, K)
        shapes[p + "attn.b_O"] = (D,)
        if not cfg["attn_only"]:
            M = cfg["d_mlp"]
            if ln:
                shapes[p + "ln2.w"] = (D,)
                shapes[p + "ln2.b"] = (D,)
            shapes[p + "mlp.W_in"] = (D, M)
            shapes[p + "mlp.b_in"] = (M,)
            shapes[p + "mlp.W_out"] = (M, D)
            shapes[p + "mlp.b_out"] = (D,)
    if ln:
        shapes["ln_final.w"] = (D,)
        shapes["ln_final.b"] = (D,)
    shapes["unembed.W_U"] = (D, V)
    shapes["unembed.b_U"] = (V,)
    return shapes


def init_params(cfg, seed):
    torch.manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        leaf = name.split(".")[-1]
        if leaf.startswith("W_"):
            t = torch.empty(shape, dtype=torch.float32).normal_(0.0, cfg["initializer_range"])
        elif leaf == "w":
            t = torch.ones(shape, dtype=torch.float32)
        else:
            t = torch.zeros(shape, dtype=torch.float32)
        params[name] = t
    return params


def check_params(cfg, params):
    expected = param_shapes(cfg)
    missing = [n for n in expected if n not in params]
    extra = [n for n in params if n not in expected]
    if missing or extra:
        raise ValueError(f"parameter mismatch: missing={missing} extra={extra}")
    for name, shape in expected.items():
        if tuple(params[name].shape) != tuple(shape):
            raise ValueError(f"{name}: shape {tuple(params[name].shape)} != {shape}")


def layer_norm(x, params, prefix, cfg):
    if cfg["normalization_type"] is None:
        return x
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased
    return (x - mean) / torch.sqrt(var + 1e-5) * params[prefix + ".w"] + params[prefix + ".b"]


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, pos, params, prefix, cfg):
    qk_in = x + pos if cfg["positional_embedding_type"] == "shortformer" else x
    v_in = x
    q = torch.einsum("bpd,hdk->bphk", qk_in, params[prefix + "W_Q"]) + params[prefix + "b_Q"]
    k = torch.einsum("bpd,hdk->bphk", qk_in, params[prefix + "W_K"]) + params[prefix + "b_K"]
    v = torch.einsum("bpd,hdk->bphk", v_in, params[prefix + "W_V"]) + params[prefix + "b_V"]
    T = x.shape[1]
    scores = torch.einsum("bihk,bjhk->bhij", q, k) / math.sqrt(cfg["d_head"])
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    z = torch.einsum("bhij,bjhk->bihk", pattern, v)
    return torch.einsum("bphk,hkd->bpd", z, params[prefix + "W_O"]) + params[prefix + "b_O"]


def forward(params, cfg, tokens):
    """tokens: LongTensor [B, T] -> logits [B, T, d_vocab]."""
    T = tokens.shape[1]
    if T > cfg["n_ctx"]:
        raise ValueError(f"sequence length {T} > n_ctx {cfg['n_ctx']}")
    embed = params["embed.W_E"][tokens]
    pos = params["pos_embed.W_pos"][:T].unsqueeze(0)
    resid = embed + pos if cfg["positional_embedding_type"] == "standard" else embed
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}."
        x = layer_norm(resid, params, p + "ln1", cfg)
        resid = resid + attention(x, pos, params, p + "attn.", cfg)
        if not cfg["attn_only"]:
            x2 = layer_norm(resid, params, p + "ln2", cfg)
            pre = x2 @ params[p + "mlp.W_in"] + params[p + "mlp.b_in"]
            resid = resid + gelu_new(pre) @ params[p + "mlp.W_out"] + params[p + "mlp.b_out"]
    x = layer_norm(resid, params, "ln_final", cfg)
    return x @ params["unembed.W_U"] + params["unembed.b_U"]


def load_model(path):
    params, metadata = load_safetensors(path)
    if "config" not in metadata:
        raise ValueError(f"{path}: no 'config' in __metadata__")
    cfg = complete_config(json.loads(metadata["config"]))
    check_params(cfg, params)
    return cfg, params


def read_tokens(path):
    return np.fromfile(path, dtype="<u2").astype(np.int64)


# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------

def cmd_init(args):
    raw = json.loads(args.config)
    if raw.get("initializer_range") is None:
        raw["initializer_range"] = 0.8 / math.sqrt(raw["d_model"])
    cfg = complete_config(raw)
    params = init_params(cfg, args.seed)
    # Store the config as given, only with initializer_range filled in.
    save_safetensors(args.out, params, {"config": json.dumps(raw)})


def cmd_tokens(args):
    if not 0 < args.vocab <= 65536:
        raise ValueError("vocab must be in 1..65536")
    rng = np.random.default_rng(args.seed)
    toks = rng.integers(0, args.vocab, size=args.count).astype("<u2")
    toks.tofile(args.out)


def cmd_eval(args):
    cfg, params = load_model(args.checkpoint)
    toks = read_tokens(args.data)
    C = cfg["n_ctx"]
    starts = list(range(0, len(toks) - C, C))  # i + C + 1 <= len
    if not starts:
        raise ValueError(f"need at least n_ctx+1 = {C + 1} tokens, got {len(toks)}")
    inputs = torch.from_numpy(np.stack([toks[i:i + C] for i in starts]))
    targets = torch.from_numpy(np.stack([toks[i + 1:i + C + 1] for i in starts]))
    total = len(starts) * C
    want_grads = args.grads is not None
    for t in params.values():
        t.requires_grad_(want_grads)

    loss_sum = 0.0  # float64 accumulator
    for b in range(0, len(starts), args.batch):
        x, y = inputs[b:b + args.batch], targets[b:b + args.batch]
        with torch.set_grad_enabled(want_grads):
            logits = forward(params, cfg, x)
            batch_sum = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            if want_grads:
                (batch_sum / total).backward()
        loss_sum += float(batch_sum.detach().double())

    result = {"loss": loss_sum / total, "windows": len(starts), "tokens": total}
    with open(args.out, "w") as f:
        json.dump(result, f)
    if want_grads:
        grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)) for n, t in params.items()}
        save_safetensors(args.grads, grads)


def cmd_logits(args):
    cfg, params = load_model(args.checkpoint)
    toks = read_tokens(args.data)[:cfg["n_ctx"]]
    if len(toks) == 0:
        raise ValueError("no tokens")
    with torch.no_grad():
        logits = forward(params, cfg, torch.from_numpy(toks).unsqueeze(0))[0]
    save_safetensors(args.out, {"logits": logits})


def cmd_sae(args):
    # SAELens's forward of the two architectures (sae_lens SAE.encode / decode), written from its definitions:
    #   standard: f = relu((x - b_dec) @ W_enc + b_enc);  topk: hidden_pre the same, keep its k largest, relu
    #   x_hat = f @ W_dec + b_dec
    with open(os.path.join(args.dir, "cfg.json")) as fh:
        cfg = json.load(fh)
    w, _ = load_safetensors(os.path.join(args.dir, "sae_weights.safetensors"))
    x = load_safetensors(args.x)[0]["x"]
    if x.shape[1] != cfg["d_in"] or tuple(w["W_enc"].shape) != (cfg["d_in"], cfg["d_sae"]) or tuple(w["W_dec"].shape) != (cfg["d_sae"], cfg["d_in"]):
        raise ValueError("shapes do not match cfg.json")
    with torch.no_grad():
        pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        if cfg["architecture"] == "topk":
            k = cfg["activation_fn_kwargs"]["k"]
            top = torch.topk(pre, k, dim=-1)
            f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
        else:
            f = torch.relu(pre)
        x_hat = f @ w["W_dec"] + w["b_dec"]
    save_safetensors(args.out, {"features": f, "reconstruction": x_hat})


def hf_gpt2_forward(w, cfg, toks):
    # GPT-2 as transformers' modeling_gpt2 computes it, in its own layout: Conv1D weights are [in, out] (y = x @ W + b),
    # c_attn holds q, k, v side by side, lm_head is tied to wte
    D, H = cfg["n_embd"], cfg["n_head"]
    dh = D // H
    T = toks.shape[1]
    def ln(x, g, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * g + b
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    x = w["wte.weight"][toks] + w["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        a = ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"]) @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = a.split(D, dim=-1)
        q, k, v = (t.view(t.shape[0], T, H, dh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(x.shape[0], T, D)
        x = x + z @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = gelu(ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"]) @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = ln(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T


def cmd_gpt2hf(args):
    # a randomly initialised GPT-2 in the Hugging Face layout (model.safetensors + config.json), GPT-2's init scale
    cfg = json.loads(args.config)
    D, L, V, P = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_positions"]
    g = torch.Generator().manual_seed(args.seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02
    w = {"wte.weight": r(V, D), "wpe.weight": r(P, D), "ln_f.weight": 1 + r(D), "ln_f.bias": r(D)}
    for l in range(L):
        p = f"h.{l}."
        w.update({p + "ln_1.weight": 1 + r(D), p + "ln_1.bias": r(D), p + "ln_2.weight": 1 + r(D), p + "ln_2.bias": r(D),
                  p + "attn.c_attn.weight": r(D, 3 * D), p + "attn.c_attn.bias": r(3 * D),
                  p + "attn.c_proj.weight": r(D, D), p + "attn.c_proj.bias": r(D),
                  p + "mlp.c_fc.weight": r(D, 4 * D), p + "mlp.c_fc.bias": r(4 * D),
                  p + "mlp.c_proj.weight": r(4 * D, D), p + "mlp.c_proj.bias": r(D)})
    os.makedirs(args.out, exist_ok=True)
    prefix = "transformer." if args.prefix else ""
    save_safetensors(os.path.join(args.out, "model.safetensors"), {prefix + k: v for k, v in w.items()}, {"format": "pt"})
    full = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], activation_function="gelu_new", layer_norm_epsilon=1e-5, n_ctx=P, **cfg)
    with open(os.path.join(args.out, "config.json"), "w") as fh:
        json.dump(full, fh, indent=2)


def load_hf_gpt2(folder):
    """(config.json, weights by name without transformers' "transformer." prefix) of a Hugging Face GPT-2 folder."""
    with open(os.path.join(folder, "config.json")) as fh:
        cfg = json.load(fh)
    w, _ = load_safetensors(os.path.join(folder, "model.safetensors"))
    return cfg, {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}


def cmd_gpt2llmc(args):
    # the Hugging Face GPT-2 of --dir written as llm.c's gpt2_124M.bin (train_gpt2.py's write_model, version 3, float32):
    # a 256-int32 header, then the parameters stacked over layers, Linear weights [out, in] (Conv1D's transposed),
    # wte padded with zero rows to padded_vocab_size
    cfg, w = load_hf_gpt2(args.dir)
    L, C, V, T = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    Vp = args.padded_vocab
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, 3, T, V, L, cfg["n_head"], C, Vp]
    wte = torch.cat([w["wte.weight"], torch.zeros(Vp - V, C)])
    stack = lambda name, f=lambda t: t: torch.stack([f(w[f"h.{l}.{name}"]) for l in range(L)])
    params = [wte, w["wpe.weight"], stack("ln_1.weight"), stack("ln_1.bias"),
              stack("attn.c_attn.weight", lambda t: t.T), stack("attn.c_attn.bias"),
              stack("attn.c_proj.weight", lambda t: t.T), stack("attn.c_proj.bias"),
              stack("ln_2.weight"), stack("ln_2.bias"),
              stack("mlp.c_fc.weight", lambda t: t.T), stack("mlp.c_fc.bias"),
              stack("mlp.c_proj.weight", lambda t: t.T), stack("mlp.c_proj.bias"),
              w["ln_f.weight"], w["ln_f.bias"]]
    with open(args.out, "wb") as fh:
        fh.write(header.tobytes())
        for t in params:
            fh.write(np.ascontiguousarray(t.to(torch.float32).numpy(), dtype="<f4").tobytes())


def cmd_gpt2logits(args):
    cfg, w = load_hf_gpt2(args.dir)
    toks = torch.from_numpy(read_tokens(args.data)).unsqueeze(0)
    with torch.no_grad():
        logits = hf_gpt2_forward(w, cfg, toks)[0]
    save_safetensors(args.out, {"logits": logits})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init")
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("tokens")
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser("eval")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--grads")
    p.add_argument("--batch", type=int, default=8)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("logits")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_logits)

    p = sub.add_parser("gpt2hf")
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", action="store_true")
    p.set_defaults(func=cmd_gpt2hf)

    p = sub.add_parser("gpt2llmc")
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--padded-vocab", type=int, required=True)
    p.set_defaults(func=cmd_gpt2llmc)

    p = sub.add_parser("gpt2logits")
    p.add_argument("--dir", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gpt2logits)

    p = sub.add_parser("sae")
    p.add_argument("--dir", required=True)
    p.add_argument("--x", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sae)

    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # print only the error, exit non-zero
        print(f"reference.py: error: {e}", file=sys.stderr)
        sys.exit(1)
