"""gdn-fuse fixture generator: export Gated DeltaNet subgraphs with the real torch.onnx exporter.

Derived from ../shared/corpus/export_corpus.py (same case structure, seeds and tiny configs for the
cases it made), extended with the variants the fusion pass must handle: opsets 18..23, optimizer
on/off, bf16/fp16 Cast wrappers, present/absent initial state and final-state output, B=1 / T=1,
with and without the in-kernel L2 norm, the kernel copies in both the Qwen3-Next and Qwen3.5
modeling code, and whole-layer prefill / cached-decode graphs for both families.

Each case becomes <root>/<case>/model.onnx plus test_data_set_0/{input,output}_N.pb (ONNX backend
test layout; N follows graph input/output order; tensors keep their true element type, bf16 is
written as TensorProto.BFLOAT16 raw_data) and an entry in <root>/manifest.json (merged into an
existing one).  bench_* cases get no test data.

Usage (needs torch, transformers, onnxscript, onnx, onnxruntime):
    python models/generate.py [--root DIR] [--tar FILE.tgz] [--kernel-src DIR] [case ...]
Default root is the folder of this script; with case names only those cases are (re)exported.
"""
import argparse, collections, copy, hashlib, inspect, json, os, shutil, sys, tarfile, time, traceback
import numpy as np, torch, torch.nn.functional as F, onnx
from onnx import helper, TensorProto
import onnxruntime as ort
import transformers, onnxscript
from transformers.models.qwen3_next import modeling_qwen3_next as m3n
from transformers.models.qwen3_5 import modeling_qwen3_5 as m35
from transformers import Qwen3NextConfig

ap = argparse.ArgumentParser()
ap.add_argument("--root", default=os.path.dirname(os.path.abspath(__file__)))
ap.add_argument("--tar", default=None, help="also write a .tgz of all case folders + manifest")
ap.add_argument("--kernel-src", default=None, help="dump the kernel/layer sources of both modeling files here")
ap.add_argument("cases", nargs="*")
ARGS = ap.parse_args()
ROOT = ARGS.root
ONLY = set(ARGS.cases)
os.makedirs(ROOT, exist_ok=True)

VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxscript": onnxscript.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "python": sys.version.split()[0]}
print("VERSIONS", json.dumps(VERSIONS), flush=True)

KERNELS = ["torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule", "l2norm",
           "torch_causal_conv1d_update", "causal_conv1d_update", "causal_conv1d_fn"]


def own_or_imported(mod, fn):
    f = getattr(mod, fn, None)
    if f is None:
        return None
    f = inspect.unwrap(f)
    return {"defined_in": getattr(f, "__module__", "?"), "own_copy": getattr(f, "__module__", "") == mod.__name__}


KERNEL_INFO = {m.__name__: {fn: own_or_imported(m, fn) for fn in KERNELS} for m in (m3n, m35)}
print("KERNEL_INFO", json.dumps(KERNEL_INFO), flush=True)
if ARGS.kernel_src:
    os.makedirs(ARGS.kernel_src, exist_ok=True)
    for m, tag in ((m3n, "qwen3_next"), (m35, "qwen3_5")):
        for fn in KERNELS:
            f = getattr(m, fn, None)
            if f is not None:
                open(os.path.join(ARGS.kernel_src, f"{tag}.{fn}.py"), "w").write(inspect.getsource(inspect.unwrap(f)))
        for cls in ("Qwen3NextGatedDeltaNet", "Qwen3_5GatedDeltaNet"):
            c = getattr(m, cls, None)
            if c is not None:
                open(os.path.join(ARGS.kernel_src, f"{tag}.{cls}.py"), "w").write(inspect.getsource(c))
        open(os.path.join(ARGS.kernel_src, f"{tag}.module_file.py"), "w").write(inspect.getsource(m))


def kernel_handles_gqa(mod):
    return "repeat_interleave" in inspect.getsource(inspect.unwrap(mod.torch_chunk_gated_delta_rule))


# ----------------------------------------------------------------------------- modules
class ChunkCore(torch.nn.Module):
    def __init__(self, mod, l2=True, with_state=True, final=True):
        super().__init__(); self.mod, self.l2, self.with_state, self.final = mod, l2, with_state, final
    def forward(self, query, key, value, g, beta, initial_state=None):
        o, s = self.mod.torch_chunk_gated_delta_rule(query, key, value, g=g, beta=beta,
            initial_state=initial_state if self.with_state else None,
            output_final_state=self.final, use_qk_l2norm_in_kernel=self.l2)
        return (o, s) if self.final else o


class RecurrentCore(torch.nn.Module):
    def __init__(self, mod, l2=True):
        super().__init__(); self.mod, self.l2 = mod, l2
    def forward(self, query, key, value, g, beta, initial_state):
        return self.mod.torch_recurrent_gated_delta_rule(query, key, value, g=g, beta=beta,
            initial_state=initial_state, output_final_state=True, use_qk_l2norm_in_kernel=self.l2)


class DecodeLayer(torch.nn.Module):
    """One cached decode step of a GatedDeltaNet layer (Qwen3-Next or Qwen3.5), written out from the
    layer's own cached path (`causal_conv1d_update` + `torch_recurrent_gated_delta_rule` + gated RMSNorm),
    with the states as explicit inputs/outputs instead of the HF cache object (the HF conv update copies
    into the cache in place; here the new conv state is returned).  conv_state is [B, conv_dim, K] (HF
    keeps K = linear_conv_kernel_dim positions), recurrent_state is [B, Hv, Dk, Dv]."""
    def __init__(self, layer, mod):
        super().__init__(); self.l = layer; self.mod = mod
        l = layer
        src = inspect.getsource(type(l).forward)
        if hasattr(l, "repeat_qk_heads"):
            self.repeat = bool(l.repeat_qk_heads)
        else:
            self.repeat = "repeat_interleave" in src and l.num_v_heads > l.num_k_heads
    def forward(self, hidden_states, conv_state, recurrent_state):
        l = self.l
        B, T, _ = hidden_states.shape
        if hasattr(l, "in_proj_qkvz"):  # Qwen3-Next: interleaved qkvz / ba projections
            q, k, v, z, b, a = l.fix_query_key_value_ordering(l.in_proj_qkvz(hidden_states), l.in_proj_ba(hidden_states))
            q, k, v = (x.reshape(x.shape[0], x.shape[1], -1) for x in (q, k, v))
            mixed_qkv = torch.cat((q, k, v), dim=-1).transpose(1, 2)
        else:  # Qwen3.5: separate projections
            mixed_qkv = l.in_proj_qkv(hidden_states).transpose(1, 2)
            z = l.in_proj_z(hidden_states).reshape(B, T, -1, l.head_v_dim)
            b = l.in_proj_b(hidden_states); a = l.in_proj_a(hidden_states)
        # causal_conv1d_update (functional)
        state_len = conv_state.shape[-1]
        full = torch.cat([conv_state, mixed_qkv], dim=-1)
        new_conv_state = full[:, :, -state_len:]
        out = F.conv1d(full, l.conv1d.weight, l.conv1d.bias, padding=0, groups=l.conv_dim)
        mixed_qkv = F.silu(out[:, :, -T:]).transpose(1, 2)
        q, k, v = torch.split(mixed_qkv, [l.key_dim, l.key_dim, l.value_dim], dim=-1)
        q = q.reshape(B, T, -1, l.head_k_dim); k = k.reshape(B, T, -1, l.head_k_dim); v = v.reshape(B, T, -1, l.head_v_dim)
        beta = b.sigmoid()
        g = -l.A_log.float().exp() * F.softplus(a.float() + l.dt_bias)
        if self.repeat:
            q = q.repeat_interleave(l.num_v_heads // l.num_k_heads, dim=2)
            k = k.repeat_interleave(l.num_v_heads // l.num_k_heads, dim=2)
        o, s = self.mod.torch_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=recurrent_state,
                                                         output_final_state=True, use_qk_l2norm_in_kernel=True)
        o = l.norm(o.reshape(-1, l.head_v_dim), z.reshape(-1, l.head_v_dim)).reshape(B, T, -1)
        return l.out_proj(o), new_conv_state, s


# The input and output names of a decode-step case (DecodeLayer's arguments and results).
LAYER_IO = (["hidden_states", "conv_state", "recurrent_state"], ["output", "new_conv_state", "new_recurrent_state"])


def decode_inputs(layer, conv_kernel, B, seed):
    """Inputs of one decode step of `layer`: hidden_states [B, 1, 64], conv_state [B, conv_dim, conv_kernel] and
    recurrent_state [B, Hv, Dk, Dv] (scaled by 0.1), drawn in this order from a generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 1, 64, generator=gen), torch.randn(B, layer.conv_dim, conv_kernel, generator=gen),
            0.1 * torch.randn(B, layer.num_v_heads, layer.head_k_dim, layer.head_v_dim, generator=gen)]


def check_decode_against_layer(layer, mod, B=2, T=3, seed=123, dtype=torch.float32, device="cpu"):
    """Token-by-token DecodeLayer from zero states must match the layer's own no-cache forward.
    The conv state is in the layer's dtype, the recurrent state float32 (what the HF recurrent rule returns)."""
    dec = DecodeLayer(layer, mod).eval()
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, layer.hidden_size, generator=gen).to(device=device, dtype=dtype)
    with torch.no_grad():
        ref = layer(h)
        ref = ref[0] if isinstance(ref, tuple) else ref
        cs = torch.zeros(B, layer.conv_dim, layer.conv_kernel_size, dtype=dtype, device=device)
        rs = torch.zeros(B, layer.num_v_heads, layer.head_k_dim, layer.head_v_dim, device=device)
        outs = []
        for t in range(T):
            o, cs, rs = dec(h[:, t:t + 1], cs, rs); outs.append(o)
        got = torch.cat(outs, 1)
    return float((got.float() - ref.float()).norm() / ref.float().norm())


def hf_cache_state_dtypes(layer, cfg, dtype, device):
    """Run the HF layer itself with its cache object (prefill 3 tokens, then one cached decode token)
    and report the element types HF keeps the conv and recurrent states in."""
    from transformers import DynamicCache
    layer = copy.deepcopy(layer).to(device=device, dtype=dtype).eval()
    cache = DynamicCache(config=cfg)
    gen = torch.Generator().manual_seed(99)
    h = torch.randn(1, 4, layer.hidden_size, generator=gen).to(device=device, dtype=dtype)
    out = {}
    with torch.no_grad():
        layer(h[:, :3], cache_params=cache)
        L = cache.layers[layer.layer_idx]
        out["after_prefill"] = {"conv": str(L.conv_states[0].dtype), "recurrent": str(L.recurrent_states[0].dtype)}
        layer(h[:, 3:], cache_params=cache)
        L = cache.layers[layer.layer_idx]
        out["after_decode"] = {"conv": str(L.conv_states[0].dtype), "recurrent": str(L.recurrent_states[0].dtype)}
    return out


def core_inputs(B, T, H, K, V, dtype=torch.float32, state=True, seed=0, Hk=None):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    Hk = Hk or H
    q, k, v = r(B, T, Hk, K), r(B, T, Hk, K), r(B, T, H, V)
    a = r(B, T, H); A_log = torch.log(torch.empty(H).uniform_(1, 16, generator=gen))
    g = -A_log.exp() * F.softplus(a + 1.0)
    beta = torch.sigmoid(r(B, T, H))
    ins = [q.to(dtype), k.to(dtype), v.to(dtype), g.to(torch.float32), beta.to(dtype)]
    if state:
        ins.append((0.1 * r(B, H, K, V)).to(torch.float32))
    return ins


def tiny_next_config(**kw):
    c = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=24,
             linear_num_key_heads=2, linear_num_value_heads=4, num_experts=4,
             num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
             layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"])
    c.update(kw)
    return Qwen3NextConfig(**c)


def tiny_35_config():
    from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5TextConfig
    return Qwen3_5TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=16,
                             linear_value_head_dim=24, linear_num_key_heads=2, linear_num_value_heads=4,
                             layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"])


class LM(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, input_ids): return s.m(input_ids=input_ids, use_cache=False).logits


# ----------------------------------------------------------------------------- tensor I/O
def to_proto(t, name):
    """TensorProto with the tensor's true element type (bf16 -> BFLOAT16 raw uint16 bits)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        p = TensorProto(); p.name = name; p.data_type = TensorProto.BFLOAT16; p.dims.extend(t.shape)
        p.raw_data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        return p
    return onnx.numpy_helper.from_array(t.numpy(), name)


def ort_check_model(m):
    """ORT python cannot take/return bf16 numpy arrays: wrap bf16 graph inputs/outputs with Casts from/to
    float32 (exact for inputs) for the ORT-vs-torch check only.  The saved model is not changed."""
    bf = TensorProto.BFLOAT16
    if not any(v.type.tensor_type.elem_type == bf for v in list(m.graph.input) + list(m.graph.output)):
        return m
    m = copy.deepcopy(m)
    pre, post = [], []
    for i in m.graph.input:
        if i.type.tensor_type.elem_type == bf:
            orig = i.name; i.name = orig + "__f32"; i.type.tensor_type.elem_type = TensorProto.FLOAT
            pre.append(helper.make_node("Cast", [i.name], [orig], to=bf))
    for o in m.graph.output:
        if o.type.tensor_type.elem_type == bf:
            orig = o.name; o.name = orig + "__f32"; o.type.tensor_type.elem_type = TensorProto.FLOAT
            post.append(helper.make_node("Cast", [orig], [o.name], to=TensorProto.FLOAT))
    nodes = pre + list(m.graph.node) + post
    del m.graph.node[:]; m.graph.node.extend(nodes)
    return m


def relerrs(outs, refs):
    errs = []
    for o, r in zip(outs, refs):
        r = r.detach().float().cpu().numpy(); o = np.asarray(o).astype(np.float32)
        errs.append(float(np.linalg.norm(o - r) / (np.linalg.norm(r) + 1e-30)))
    return errs


def reference(module, args, entry):
    """PyTorch outputs on CPU; on CUDA (copy of the module) where CPU has no kernel for the dtype."""
    with torch.no_grad():
        try:
            ref = module(*args); entry["reference_device"] = "cpu"
        except (RuntimeError, NotImplementedError) as e:
            if not torch.cuda.is_available():
                raise
            entry["reference_device"] = "cuda"; entry["cpu_reference_error"] = f"{type(e).__name__}: {e}"[:500]
            mc_ = copy.deepcopy(module).cuda()
            ref = mc_(*[a.cuda() if a is not None else None for a in args])
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    return [r.detach().cpu() for r in refs]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------- one case
manifest_path = os.path.join(ROOT, "manifest.json")
manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
DONE = {}


def save_case(name, module, args, input_names, output_names, notes, opset=18, optimize=True,
              family="qwen3_next", kind="chunk", l2=True, max_bytes=None, extra=None, dynamic_shapes=None,
              other_args=None):
    """dynamic_shapes: passed to torch.onnx.export; the case fails if a dynamic dim comes out static.
    other_args: a second input set (another batch) for dynamic cases, written as test_data_set_1 and
    checked through ORT too.  The reference runs on CPU; where CPU torch lacks a half/bfloat16 kernel it
    runs on CUDA (entry["reference_device"])."""
    if ONLY and name not in ONLY:
        return
    d = os.path.join(ROOT, name)
    keep = not name.startswith("bench_")
    os.makedirs(os.path.join(d, "test_data_set_0") if keep else d, exist_ok=True)
    entry = {"notes": notes, "provenance": "generated by models/generate.py", "family": family, "kind": kind,
             "opset": opset, "optimize": optimize, "use_qk_l2norm_in_kernel": l2, "versions": VERSIONS}
    if extra:
        entry.update(extra)
    try:
        module.eval()
        refs = reference(module, args, entry)
        t0 = time.time()
        kw = {"dynamic_shapes": dynamic_shapes} if dynamic_shapes is not None else {}
        prog = torch.onnx.export(module, tuple(args), dynamo=True, opset_version=opset, optimize=optimize,
                                 input_names=input_names, output_names=output_names, **kw)
        entry["export_s"] = round(time.time() - t0, 2)
        path = os.path.join(d, "model.onnx")
        prog.save(path, external_data=False)
        m = onnx.load(path)
        entry["opset_imports"] = {o.domain or "ai.onnx": o.version for o in m.opset_import}
        entry["nodes"] = len(m.graph.node)
        entry["ops"] = dict(collections.Counter(n.op_type for n in m.graph.node).most_common())
        shp = lambda v: [dd.dim_value or dd.dim_param for dd in v.type.tensor_type.shape.dim]
        entry["inputs"] = [(i.name, shp(i), i.type.tensor_type.elem_type) for i in m.graph.input]
        entry["outputs"] = [(o.name, shp(o), o.type.tensor_type.elem_type) for o in m.graph.output]
        entry["bytes"] = os.path.getsize(path)
        entry["sha256"] = sha256(path)
        if max_bytes and entry["bytes"] > max_bytes:
            os.remove(path); os.rmdir(d)
            entry["status"] = "skipped"; entry["error"] = f"model.onnx is {entry['bytes']} bytes > {max_bytes}"
            raise StopIteration
        if dynamic_shapes is not None:
            entry["dynamic_shapes"] = repr(dynamic_shapes)
            static = [(nm, s_) for nm, s_, _ in entry["inputs"] + entry["outputs"] if not isinstance(s_[0], str)]
            if static:
                shutil.rmtree(d)
                raise RuntimeError(f"exporter specialised the batch dimension: static dim 0 on {static} "
                                   f"(inputs {entry['inputs']}, outputs {entry['outputs']})")
        gin = [i.name for i in m.graph.input]
        feed_t = [a for a in args if a is not None]
        assert len(gin) == len(feed_t), (gin, len(feed_t))
        assert len(m.graph.output) == len(refs), ([o.name for o in m.graph.output], len(refs))
        if keep:
            for i, (nm, a) in enumerate(zip(gin, feed_t)):
                open(os.path.join(d, "test_data_set_0", f"input_{i}.pb"), "wb").write(to_proto(a, nm).SerializeToString())
            for i, (o, r) in enumerate(zip(m.graph.output, refs)):
                open(os.path.join(d, "test_data_set_0", f"output_{i}.pb"), "wb").write(to_proto(r, o.name).SerializeToString())
        mc = ort_check_model(m)
        so = ort.SessionOptions(); so.intra_op_num_threads = 2
        t0 = time.time()
        try:
            sess = ort.InferenceSession(mc.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT CPU has no bfloat16 Conv: the export is fine, only this check cannot run
            if not any(t.data_type == TensorProto.BFLOAT16 for t in m.graph.initializer):
                raise
            entry["ort_vs_torch_relerr"] = None; entry["ort_check_error"] = f"{type(e).__name__}: {e}"[:1000]
            entry["ort_check_note"] = ("onnxruntime CPU has no bfloat16 kernel for an op of this graph, so the python "
                                       "ORT-vs-torch check cannot run; see ort_node_relerr (models/check-ort-node.mjs)")
            entry["status"] = "ok"
            raise StopIteration

        entry["ort_load_s"] = round(time.time() - t0, 3)
        feeds = {}
        for i, a in zip(mc.graph.input, feed_t):
            arr = a.detach().float().numpy() if a.dtype == torch.bfloat16 else a.detach().numpy()
            feeds[i.name] = arr
        outs = sess.run(None, feeds)
        entry["ort_vs_torch_relerr"] = relerrs(outs, refs)
        if other_args is not None:
            refs1 = reference(module, other_args, {})
            d1 = os.path.join(d, "test_data_set_1"); os.makedirs(d1, exist_ok=True)
            for i, (nm, a) in enumerate(zip(gin, other_args)):
                open(os.path.join(d1, f"input_{i}.pb"), "wb").write(to_proto(a, nm).SerializeToString())
            for i, (o, r) in enumerate(zip(m.graph.output, refs1)):
                open(os.path.join(d1, f"output_{i}.pb"), "wb").write(to_proto(r, o.name).SerializeToString())
            feeds1 = {i.name: (a.detach().float().numpy() if a.dtype == torch.bfloat16 else a.detach().numpy())
                      for i, a in zip(mc.graph.input, other_args)}
            entry["other_batch_inputs"] = [list(a.shape) for a in other_args]
            entry["ort_vs_torch_relerr_other_batch"] = relerrs(sess.run(None, feeds1), refs1)
        ts = []
        for _ in range(5):
            t0 = time.perf_counter(); sess.run(None, feeds); ts.append(time.perf_counter() - t0)
        entry["ort_cpu2t_run_ms_median"] = round(1000 * sorted(ts)[2], 3)
        entry["status"] = "ok"
    except StopIteration:
        pass
    except Exception as e:
        entry["status"] = "failed"; entry["error"] = (type(e).__name__ + ": " + str(e))[:3000]
        entry["trace"] = traceback.format_exc()[-3000:]
    manifest[name] = entry; DONE[name] = entry
    print(name, entry.get("status"), entry.get("nodes"), entry.get("bytes"), entry.get("ort_vs_torch_relerr"),
          entry.get("error", "")[:300], flush=True)


def guarded(label, fn):
    try:
        fn()
    except Exception as e:
        print("CASE-SETUP-FAILED", label, type(e).__name__, e, flush=True)
        traceback.print_exc()
        manifest[label] = {"status": "failed", "error": f"setup: {type(e).__name__}: {e}"[:3000], "versions": VERSIONS}


IN5 = ["query", "key", "value", "g", "beta", "initial_state"]
OUT2 = ["core_attn_out", "final_state"]
torch.manual_seed(0)

# ============ cases reproduced from ../shared/corpus/export_corpus.py (same seeds/configs) ============
save_case("chunk_t100_h4_k32_v48", ChunkCore(m3n), core_inputs(2, 100, 4, 32, 48), IN5, OUT2,
          "torch_chunk_gated_delta_rule, 100 tokens (padded to 2 chunks), initial state, l2norm in kernel")
save_case("chunk_t64_noopt", ChunkCore(m3n), core_inputs(1, 64, 2, 16, 16, seed=1), IN5, OUT2,
          "one chunk, raw exporter output without the onnxscript optimizer", optimize=False)
save_case("chunk_t130_fp16", ChunkCore(m3n), core_inputs(1, 130, 2, 32, 32, dtype=torch.float16, seed=2), IN5, OUT2,
          "fp16 q/k/v/beta, fp32 g and state; 3 chunks")
save_case("chunk_t80_nostate", ChunkCore(m3n, with_state=False, final=False), core_inputs(2, 80, 2, 16, 32, state=False, seed=3),
          IN5[:5], ["core_attn_out"], "no initial state, no final state output")
save_case("recurrent_t1_b3", RecurrentCore(m3n), core_inputs(3, 1, 4, 32, 48, seed=7), IN5, OUT2,
          "single-token decode, batch 3", kind="recurrent")
save_case("recurrent_t4_b2", RecurrentCore(m3n), core_inputs(2, 4, 2, 16, 16, seed=8), IN5, OUT2,
          "4-token decode (speculative / MTP verify)", kind="recurrent")
cfg = tiny_next_config()
torch.manual_seed(1)
layer = m3n.Qwen3NextGatedDeltaNet(cfg, layer_idx=0)
save_case("layer_qwen3next_prefill_t96", layer, [torch.randn(2, 96, 64)], ["hidden_states"], ["output"],
          "Qwen3NextGatedDeltaNet forward without cache (conv1d, GQA repeat_interleave, gating, chunk rule, gated RMSNorm)",
          kind="layer_prefill")
cfg35 = tiny_35_config()


def _model35():
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5ForCausalLM
    torch.manual_seed(4)
    mdl35 = Qwen3_5ForCausalLM(cfg35).eval()
    save_case("model_qwen35_tiny_t50", LM(mdl35), [torch.randint(0, 256, (2, 50))], ["input_ids"], ["logits"],
              "tiny Qwen3_5ForCausalLM text model (3 linear-attention + 1 full attention layers), no cache",
              family="qwen3_5", kind="model")
guarded("model_qwen35_tiny_t50", _model35)


def _decode_next():
    torch.manual_seed(5)
    lyr = m3n.Qwen3NextGatedDeltaNet(cfg, layer_idx=0).eval()
    chk = check_decode_against_layer(lyr, m3n)
    args = decode_inputs(lyr, cfg.linear_conv_kernel_dim, 2, 6)
    save_case("layer_qwen3next_decode_b2", DecodeLayer(lyr, m3n), args, *LAYER_IO,
              "decode step of a Qwen3NextGatedDeltaNet layer: causal_conv1d_update + recurrent rule, states in/out",
              kind="layer_decode", extra={"decode_vs_layer_forward_relerr": chk})
guarded("layer_qwen3next_decode_b2", _decode_next)

# ============ new variants ============
save_case("chunk_t64_opset23", ChunkCore(m3n), core_inputs(1, 64, 2, 16, 16, seed=20), IN5, OUT2,
          "chunked rule, one chunk, opset 23, optimizer on", opset=23)
save_case("chunk_t70_opset20_nol2", ChunkCore(m3n, l2=False), core_inputs(1, 70, 2, 16, 24, seed=21), IN5, OUT2,
          "chunked rule, 70 tokens (2 chunks), opset 20, use_qk_l2norm_in_kernel=False", opset=20, l2=False)
save_case("chunk_t1_b1", ChunkCore(m3n), core_inputs(1, 1, 2, 16, 16, seed=22), IN5, OUT2,
          "B=1, T=1 through the chunked rule (1 token padded to one 64-chunk)")
save_case("chunk_t96_bf16", ChunkCore(m3n), core_inputs(1, 96, 2, 16, 16, dtype=torch.bfloat16, seed=23), IN5, OUT2,
          "bf16 q/k/v/beta with Casts, fp32 g and state, bf16 core_attn_out; 2 chunks")
HK35 = 1 if kernel_handles_gqa(m35) else 2
save_case("chunk_qwen35_t100", ChunkCore(m35), core_inputs(2, 100, 2, 16, 24, seed=24, Hk=HK35), IN5, OUT2,
          f"Qwen3.5 copy of torch_chunk_gated_delta_rule, 100 tokens, {HK35} q/k head(s) for 2 v heads"
          + (" (grouped-value attention: repeat_interleave inside the kernel)" if HK35 != 2 else ""),
          family="qwen3_5", extra={"num_k_heads": HK35, "num_v_heads": 2})
save_case("recurrent_qwen35_t2_b2", RecurrentCore(m35), core_inputs(2, 2, 2, 16, 24, seed=25, Hk=HK35), IN5, OUT2,
          f"Qwen3.5 copy of torch_recurrent_gated_delta_rule, 2 tokens, batch 2, {HK35} q/k head(s) for 2 v heads",
          family="qwen3_5", kind="recurrent", extra={"num_k_heads": HK35, "num_v_heads": 2})
save_case("recurrent_t1_b1_opset23_nol2", RecurrentCore(m3n, l2=False), core_inputs(1, 1, 2, 16, 16, seed=26), IN5, OUT2,
          "single-token decode, B=1, opset 23, no l2norm in kernel", opset=23, kind="recurrent", l2=False)
save_case("recurrent_t3_b2_noopt", RecurrentCore(m3n), core_inputs(2, 3, 2, 16, 16, seed=27), IN5, OUT2,
          "3-token recurrent rule, raw exporter output without the onnxscript optimizer", optimize=False, kind="recurrent")


def _layer35():
    torch.manual_seed(30)
    lyr = m35.Qwen3_5GatedDeltaNet(cfg35, layer_idx=0).eval()
    save_case("layer_qwen35_prefill_t64", lyr, [torch.randn(2, 64, 64)], ["hidden_states"], ["output"],
              "Qwen3_5GatedDeltaNet forward without cache (separate in_proj_qkv/z/b/a, conv1d, gating, chunk rule, gated RMSNorm)",
              family="qwen3_5", kind="layer_prefill")
    torch.manual_seed(31)
    lyr2 = m35.Qwen3_5GatedDeltaNet(cfg35, layer_idx=0).eval()
    chk = check_decode_against_layer(lyr2, m35)
    args = decode_inputs(lyr2, cfg35.linear_conv_kernel_dim, 2, 32)
    save_case("layer_qwen35_decode_b2", DecodeLayer(lyr2, m35), args, *LAYER_IO,
              "decode step of a Qwen3_5GatedDeltaNet layer: causal_conv1d_update + recurrent rule, states in/out",
              family="qwen3_5", kind="layer_decode", extra={"decode_vs_layer_forward_relerr": chk, "gqa_repeat_in_layer": DecodeLayer(lyr2, m35).repeat})
guarded("layer_qwen35", _layer35)

save_case("bench_recurrent_t1_b1_h32_k128", RecurrentCore(m3n), core_inputs(1, 1, 32, 128, 128, seed=40), IN5, OUT2,
          "benchmark size: decode batch 1, 32 heads, 128x128 state", kind="recurrent", max_bytes=2_000_000)
save_case("bench_recurrent_t1_b64_h32_k128", RecurrentCore(m3n), core_inputs(64, 1, 32, 128, 128, seed=41), IN5, OUT2,
          "benchmark size: decode batch 64, 32 heads, 128x128 state", kind="recurrent", max_bytes=2_000_000)

# ============ fp16 / bf16 layers, dynamic batch ============
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _layers_lowp():
    # same weights and input as layer_qwen3next_prefill_t96 (seed 1), cast to float16
    torch.manual_seed(1)
    lyr = m3n.Qwen3NextGatedDeltaNet(cfg, layer_idx=0).eval()
    h = torch.randn(2, 96, 64)
    save_case("layer_qwen3next_prefill_t96_fp16", lyr.to(torch.float16), [h.to(torch.float16)], ["hidden_states"], ["output"],
              "layer_qwen3next_prefill_t96 (same weights and input) with module and input cast to float16",
              kind="layer_prefill", extra={"dtype": "float16"})
    torch.manual_seed(50)
    lyr = m3n.Qwen3NextGatedDeltaNet(cfg, layer_idx=0).eval()
    h = torch.randn(2, 64, 64)
    save_case("layer_qwen3next_prefill_t64_bf16", lyr.to(torch.bfloat16), [h.to(torch.bfloat16)], ["hidden_states"], ["output"],
              "Qwen3NextGatedDeltaNet forward without cache, 64 tokens (one chunk), module and input in bfloat16",
              kind="layer_prefill", extra={"dtype": "bfloat16"})
    for dt, tag in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        name = f"layer_qwen35_decode_b2_{tag}"
        if ONLY and name not in ONLY:
            continue
        torch.manual_seed(31)   # same weights and inputs as layer_qwen35_decode_b2
        lyr2 = m35.Qwen3_5GatedDeltaNet(cfg35, layer_idx=0).eval()
        args = decode_inputs(lyr2, cfg35.linear_conv_kernel_dim, 2, 32)
        extra = {"dtype": tag, "state_dtypes": {"conv_state": str(dt), "recurrent_state": "torch.float32"}}
        try:
            extra["hf_cache_state_dtypes"] = hf_cache_state_dtypes(lyr2, cfg35, dt, DEV)
        except Exception as e:
            extra["hf_cache_state_dtypes"] = f"probe failed: {type(e).__name__}: {e}"[:500]
        lyr2 = lyr2.to(dt)
        try:
            extra["decode_vs_layer_forward_relerr"] = check_decode_against_layer(lyr2, m35, dtype=dt)
        except Exception:
            extra["decode_vs_layer_forward_relerr"] = check_decode_against_layer(copy.deepcopy(lyr2).to(DEV), m35, dtype=dt, device=DEV)
            extra["decode_check_device"] = DEV
        args = [args[0].to(dt), args[1].to(dt), args[2]]  # recurrent state float32, as HF's recurrent rule returns it
        save_case(name, DecodeLayer(lyr2, m35), args, *LAYER_IO,
                  f"layer_qwen35_decode_b2 (same weights and inputs) in {dt}: hidden and conv state {tag}, recurrent state float32",
                  family="qwen3_5", kind="layer_decode", extra=extra)
guarded("layers_lowp", _layers_lowp)


def _dynb():
    batch = torch.export.Dim("batch")
    save_case("chunk_t100_dynb", ChunkCore(m3n), core_inputs(2, 100, 4, 32, 48, seed=60), IN5, OUT2,
              "chunked rule, 100 tokens, exported with a dynamic batch dimension (Dim('batch') on dim 0 of every input)",
              dynamic_shapes=tuple({0: batch} for _ in range(6)), other_args=core_inputs(3, 100, 4, 32, 48, seed=61))
    save_case("recurrent_t1_dynb", RecurrentCore(m3n), core_inputs(2, 1, 4, 32, 48, seed=62), IN5, OUT2,
              "single-token recurrent rule exported with a dynamic batch dimension", kind="recurrent",
              dynamic_shapes=tuple({0: batch} for _ in range(6)), other_args=core_inputs(3, 1, 4, 32, 48, seed=63))
    torch.manual_seed(5)   # same weights as layer_qwen3next_decode_b2
    lyr = m3n.Qwen3NextGatedDeltaNet(cfg, layer_idx=0).eval()
    K = cfg.linear_conv_kernel_dim
    save_case("layer_qwen3next_decode_dynb", DecodeLayer(lyr, m3n), decode_inputs(lyr, K, 2, 6), *LAYER_IO,
              "layer_qwen3next_decode_b2 (same weights and inputs) exported with a dynamic batch dimension",
              kind="layer_decode", dynamic_shapes=tuple({0: batch} for _ in range(3)), other_args=decode_inputs(lyr, K, 3, 64))
    save_case("layer_qwen3next_prefill_dynb", layer, [torch.randn(2, 96, 64, generator=torch.Generator().manual_seed(70))],
              ["hidden_states"], ["output"],
              "layer_qwen3next_prefill_t96 (same weights) exported with a dynamic batch dimension",
              kind="layer_prefill", dynamic_shapes=({0: batch},),
              other_args=[torch.randn(3, 96, 64, generator=torch.Generator().manual_seed(71))])
guarded("dynb", _dynb)

manifest["_generator"] = {"versions": VERSIONS, "kernel_info": KERNEL_INFO,
                          "qwen35_kernel_handles_gqa": kernel_handles_gqa(m35), "qwen3next_kernel_handles_gqa": kernel_handles_gqa(m3n)}
json.dump(manifest, open(manifest_path, "w"), indent=1, default=str)
if ARGS.tar:
    with tarfile.open(ARGS.tar, "w:gz") as tf:
        for n in DONE:
            if os.path.isdir(os.path.join(ROOT, n)):
                tf.add(os.path.join(ROOT, n), arcname=n)
        tf.add(manifest_path, arcname="manifest.json")
        if ARGS.kernel_src:
            tf.add(ARGS.kernel_src, arcname="_kernel_src")
print("DONE", {k: v.get("status") for k, v in DONE.items()}, flush=True)
