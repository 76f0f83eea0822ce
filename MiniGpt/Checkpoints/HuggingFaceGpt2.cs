using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Model;

namespace MiniGpt.Checkpoints;

/// <summary>
/// GPT-2 in the Hugging Face layout (a folder with model.safetensors and config.json, as transformers' GPT2LMHeadModel
/// saves it), converted on load to TransformerLens names and shapes the way TransformerLens converts GPT-2:
///   c_attn.weight [D, 3D] (Conv1D: y = x·W, W [in, out]) → W_Q, W_K, W_V [H, D, d_head] (columns h·d_head … of each third);
///   c_attn.bias [3D] → b_Q, b_K, b_V [H, d_head];  attn.c_proj.weight [D, D] → W_O [H, d_head, D] (rows h·d_head …);
///   mlp.c_fc.weight [D, 4D] → W_in, mlp.c_proj.weight [4D, D] → W_out (Conv1D is already [in, out]);
///   wte [V, D] → W_E and, tied, W_U = wteᵀ [D, V] with b_U = 0; wpe → W_pos; ln_1, ln_2, ln_f → ln1, ln2, ln_final.
/// The attention mask buffers (attn.bias, attn.masked_bias) are ignored; names may carry transformers' "transformer." prefix.
/// </summary>
public static class HuggingFaceGpt2
{
    /// <summary>Whether path is (or is the model.safetensors of) a Hugging Face GPT-2 folder.</summary>
    public static bool Is(string path)
    {
        string dir = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string st = Directory.Exists(path) ? Path.Combine(path, "model.safetensors") : path;
        return File.Exists(Path.Combine(dir, "config.json")) && File.Exists(st) && ReadModelType(Path.Combine(dir, "config.json")) == "gpt2";
    }

    private static string? ReadModelType(string configPath)
    {
        try { return (JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject)?["model_type"]?.GetValue<string>(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { return null; }
    }

    public static Checkpoint.Loaded Load(string path, Layers.IKernels? kernels = null)
    {
        string dir = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string st = Directory.Exists(path) ? Path.Combine(path, "model.safetensors") : path;
        string cfgPath = Path.Combine(dir, "config.json");
        var cfg = ReadConfig(cfgPath);
        var f = SafeTensorsFile.Open(st);
        string prefix = f.Entries.ContainsKey("transformer.wte.weight") ? "transformer." : "";
        int D = cfg.DModel, H = cfg.NHeads, dh = cfg.DHead, V = cfg.DVocab, M = cfg.DMlp, P = cfg.NCtx;

        // every tensor present with the shape config.json implies, before anything is allocated for the model
        void Expect(string name, params int[] shape)
        {
            if (!f.Entries.TryGetValue(prefix + name, out var e))
                throw new UserError($"'{st}' has no tensor {prefix + name}, which a GPT-2 of {cfg.NLayers} layers needs: the file is incomplete or not GPT-2");
            if (!e.Shape.SequenceEqual(shape))
                throw new UserError($"'{st}': {prefix + name} is [{string.Join(", ", e.Shape)}] but config.json implies [{string.Join(", ", shape)}]: the file and its config.json disagree");
            if (e.DType != "F32") throw new UserError($"'{st}': {prefix + name} is {e.DType}; MiniGpt reads float32 GPT-2 weights (save with torch_dtype=float32)");
        }
        Expect("wte.weight", V, D);
        Expect("wpe.weight", P, D);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string h = $"h.{l}.";
            Expect(h + "ln_1.weight", D); Expect(h + "ln_1.bias", D);
            Expect(h + "attn.c_attn.weight", D, 3 * D); Expect(h + "attn.c_attn.bias", 3 * D);
            Expect(h + "attn.c_proj.weight", D, D); Expect(h + "attn.c_proj.bias", D);
            Expect(h + "ln_2.weight", D); Expect(h + "ln_2.bias", D);
            Expect(h + "mlp.c_fc.weight", D, M); Expect(h + "mlp.c_fc.bias", M);
            Expect(h + "mlp.c_proj.weight", M, D); Expect(h + "mlp.c_proj.bias", D);
        }
        Expect("ln_f.weight", D); Expect("ln_f.bias", D);

        var model = new GptModel(cfg, kernels);
        var p = model.Params;
        float[] Read(string name)
        {
            var e = f.Entries[prefix + name];
            var a = new float[e.Count];
            f.ReadF32(prefix + name, a);
            return a;
        }
        void Copy(string from, string to) => Read(from).CopyTo(p[to].Span);

        var wte = Read("wte.weight");
        wte.CopyTo(p["embed.W_E"].Span);
        var wU = p["unembed.W_U"].Span; // [D, V] = wteᵀ (GPT-2 ties lm_head to wte and has no lm_head bias)
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++) wU[d * V + v] = wte[v * D + d];
        p["unembed.b_U"].Span.Clear();
        Copy("wpe.weight", "pos_embed.W_pos");
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string h = $"h.{l}.", b = $"blocks.{l}.";
            Copy(h + "ln_1.weight", b + "ln1.w"); Copy(h + "ln_1.bias", b + "ln1.b");
            Copy(h + "ln_2.weight", b + "ln2.w"); Copy(h + "ln_2.bias", b + "ln2.b");
            var cAttn = Read(h + "attn.c_attn.weight"); // [D, 3D]
            var cAttnB = Read(h + "attn.c_attn.bias");
            string[] w = ["attn.W_Q", "attn.W_K", "attn.W_V"], bias = ["attn.b_Q", "attn.b_K", "attn.b_V"];
            for (int part = 0; part < 3; part++)
            {
                var dst = p[b + w[part]].Span;     // [H, D, dh]
                var dstB = p[b + bias[part]].Span; // [H, dh]
                for (int head = 0; head < H; head++)
                    for (int e = 0; e < dh; e++)
                    {
                        int col = part * D + head * dh + e;
                        for (int d = 0; d < D; d++) dst[(head * D + d) * dh + e] = cAttn[d * 3 * D + col];
                        dstB[head * dh + e] = cAttnB[col];
                    }
            }
            Read(h + "attn.c_proj.weight").CopyTo(p[b + "attn.W_O"].Span); // [D = H·dh, D] row h·dh+e is W_O[h, e, :]
            Copy(h + "attn.c_proj.bias", b + "attn.b_O");
            Copy(h + "mlp.c_fc.weight", b + "mlp.W_in");
            Copy(h + "mlp.c_fc.bias", b + "mlp.b_in");
            Copy(h + "mlp.c_proj.weight", b + "mlp.W_out");
            Copy(h + "mlp.c_proj.bias", b + "mlp.b_out");
        }
        Copy("ln_f.weight", "ln_final.w"); Copy("ln_f.bias", "ln_final.b");
        // GPT-2's vocabulary is GPT-2's tokenizer, ids and all; another size has no tokenizer to name
        string? tokenizer = V == 50257 ? Data.TiktokenTokens.Full("gpt2").ToJson() : null;
        return new Checkpoint.Loaded(model, tokenizer, f);
    }

    /// <summary>config.json → a GPT-2 ModelConfig (LayerNorm, gelu_new, learned positions, MLPs), or a one-line error.</summary>
    public static ModelConfig ReadConfig(string path)
    {
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new UserError($"'{path}' is not a JSON object"); }
        catch (JsonException e) { throw new UserError($"'{path}' is not valid JSON ({e.Message.Split('.')[0]})"); }
        int Int(string key, params string[] alt)
        {
            foreach (string k in alt.Prepend(key))
                if (o[k] is JsonValue v && v.TryGetValue(out int i)) return i;
            throw new UserError($"'{path}' has no integer '{key}': a GPT-2 config.json names n_layer, n_head, n_embd, n_positions and vocab_size");
        }
        int D = Int("n_embd"), H = Int("n_head");
        if (H < 1 || D % H != 0) throw new UserError($"'{path}': n_embd {D} is not a multiple of n_head {H}");
        int inner = o["n_inner"] is JsonValue ni && ni.TryGetValue(out int n) ? n : 4 * D;
        string act = o["activation_function"]?.GetValue<string>() ?? "gelu_new";
        if (act is not ("gelu_new" or "gelu_pytorch_tanh"))
            throw new UserError($"'{path}': activation_function '{act}' is not one MiniGpt runs: GPT-2 uses gelu_new");
        double eps = o["layer_norm_epsilon"] is JsonValue ev && ev.TryGetValue(out double x) ? x : 1e-5;
        if (Math.Abs(eps - 1e-5) > 1e-12) throw new UserError($"'{path}': layer_norm_epsilon {eps} is not GPT-2's 1e-5, the only epsilon MiniGpt's LayerNorm uses");
        return new ModelConfig
        {
            NLayers = Int("n_layer"), DModel = D, NHeads = H, DHead = D / H, DMlp = inner, NCtx = Int("n_positions", "n_ctx"),
            DVocab = Int("vocab_size"), AttnOnly = false, NormalizationType = "LN", ActFn = "gelu_new",
        }.Validate();
    }

    /// <summary>
    /// Whether a model has GPT-2's form, so that the Hugging Face layout can hold it: LayerNorm with parameters, MLPs with
    /// gelu_new, learned positions, d_head · n_heads = d_model, d_mlp = 4·d_model, and W_U = W_Eᵀ with b_U = 0 (GPT-2 ties
    /// them and has no unembedding bias). The reason it cannot, or null.
    /// </summary>
    public static string? WhyNotGpt2(GptModel m)
    {
        var c = m.Config;
        if (c.AttnOnly) return "it is attention-only (GPT-2 has MLPs)";
        if (!c.HasLayerNormParams) return "it has no LayerNorm parameters (GPT-2 has LN with weights and biases)";
        if (c.Shortformer) return "it uses shortformer positions (GPT-2 adds learned positions to the stream)";
        if (c.DHead * c.NHeads != c.DModel) return $"d_head × n_heads = {c.DHead * c.NHeads} is not d_model {c.DModel}";
        if (c.DMlp != 4 * c.DModel) return $"d_mlp {c.DMlp} is not 4 × d_model (GPT-2's config.json would need n_inner)";
        if (!m.HasTiedEmbeddings()) return "its W_U is not W_Eᵀ (GPT-2 ties them: train with --tie-embeddings)";
        foreach (float b in m.Params["unembed.b_U"].Span)
            if (b != 0) return "it has a non-zero unembedding bias b_U (GPT-2 has none)";
        return null;
    }

    /// <summary>Writes m as transformers' GPT2LMHeadModel saves it: dir/model.safetensors (names under "transformer.") and dir/config.json.</summary>
    public static void Save(string dir, GptModel m)
    {
        if (WhyNotGpt2(m) is { } why) throw new UserError($"the model cannot be written as GPT-2: {why}");
        var c = m.Config;
        var p = m.Params;
        int D = c.DModel, H = c.NHeads, dh = c.DHead, M = c.DMlp;
        var tensors = new List<(string Name, int[] Shape, ReadOnlyMemory<float> Data)>();
        void Add(string name, int[] shape, float[] data) => tensors.Add(("transformer." + name, shape, data));
        float[] Get(string name) => p[name].Span.ToArray();
        Add("wte.weight", [c.DVocab, D], Get("embed.W_E"));
        Add("wpe.weight", [c.NCtx, D], Get("pos_embed.W_pos"));
        for (int l = 0; l < c.NLayers; l++)
        {
            string h = $"h.{l}.", b = $"blocks.{l}.";
            Add(h + "ln_1.weight", [D], Get(b + "ln1.w")); Add(h + "ln_1.bias", [D], Get(b + "ln1.b"));
            // the inverse of Load's split: W_{Q,K,V}[h, d, e] → c_attn.weight[d, part·D + h·dh + e]
            var cAttn = new float[D * 3 * D];
            var cAttnB = new float[3 * D];
            string[] w = ["attn.W_Q", "attn.W_K", "attn.W_V"], bias = ["attn.b_Q", "attn.b_K", "attn.b_V"];
            for (int part = 0; part < 3; part++)
            {
                var src = p[b + w[part]].Span; var srcB = p[b + bias[part]].Span;
                for (int head = 0; head < H; head++)
                    for (int e = 0; e < dh; e++)
                    {
                        int col = part * D + head * dh + e;
                        for (int d = 0; d < D; d++) cAttn[d * 3 * D + col] = src[(head * D + d) * dh + e];
                        cAttnB[col] = srcB[head * dh + e];
                    }
            }
            Add(h + "attn.c_attn.weight", [D, 3 * D], cAttn); Add(h + "attn.c_attn.bias", [3 * D], cAttnB);
            Add(h + "attn.c_proj.weight", [D, D], Get(b + "attn.W_O")); Add(h + "attn.c_proj.bias", [D], Get(b + "attn.b_O"));
            Add(h + "ln_2.weight", [D], Get(b + "ln2.w")); Add(h + "ln_2.bias", [D], Get(b + "ln2.b"));
            Add(h + "mlp.c_fc.weight", [D, M], Get(b + "mlp.W_in")); Add(h + "mlp.c_fc.bias", [M], Get(b + "mlp.b_in"));
            Add(h + "mlp.c_proj.weight", [M, D], Get(b + "mlp.W_out")); Add(h + "mlp.c_proj.bias", [D], Get(b + "mlp.b_out"));
        }
        Add("ln_f.weight", [D], Get("ln_final.w")); Add("ln_f.bias", [D], Get("ln_final.b"));
        Directory.CreateDirectory(dir);
        SafeTensorsFile.Write(Path.Combine(dir, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var config = new JsonObject
        {
            ["model_type"] = "gpt2", ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["n_layer"] = c.NLayers, ["n_head"] = H, ["n_embd"] = D, ["n_positions"] = c.NCtx, ["n_ctx"] = c.NCtx, ["vocab_size"] = c.DVocab,
            ["activation_function"] = "gelu_new", ["layer_norm_epsilon"] = 1e-5, ["tie_word_embeddings"] = true,
            ["resid_pdrop"] = 0.0, ["embd_pdrop"] = 0.0, ["attn_pdrop"] = 0.0, ["torch_dtype"] = "float32",
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
