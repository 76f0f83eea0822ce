using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Model;

/// <summary>
/// The shape of a model, with TransformerLens HookedTransformerConfig names, so a checkpoint's
/// "config" metadata reads the same in both. normalization_type is "LN" or null (no LayerNorm);
/// positional_embedding_type is "standard" or "shortformer".
/// </summary>
public sealed record ModelConfig
{
    public int NLayers { get; init; } = 2;
    public int DModel { get; init; } = 64;
    public int NHeads { get; init; } = 4;
    public int DHead { get; init; } = 16;
    public int DMlp { get; init; } = 256;
    public int NCtx { get; init; } = 64;
    public int DVocab { get; init; } = 64;
    public bool AttnOnly { get; init; }
    public string? NormalizationType { get; init; } = "LN";
    public string PositionalEmbeddingType { get; init; } = "standard";
    public string ActFn { get; init; } = "gelu_new";
    /// <summary>Std of the normal init of every W_* (TransformerLens's initializer_range); its default is 0.8/√d_model.</summary>
    public double? InitRange { get; init; }

    /// <summary>LN: LayerNorm with gain and bias; LNPre: normalisation only (after folding); null: none.</summary>
    public bool HasLayerNorm => NormalizationType is "LN" or "LNPre";
    public bool HasLayerNormParams => NormalizationType == "LN";
    public bool Shortformer => PositionalEmbeddingType == "shortformer";
    public bool HasMlp => !AttnOnly;
    public double EffectiveInitRange => InitRange ?? 0.8 / Math.Sqrt(DModel);

    /// <summary>Throws a <see cref="UserError"/> naming the first thing that cannot work.</summary>
    public ModelConfig Validate()
    {
        Positive(NLayers, "n_layers", allowZero: true);
        Positive(DModel, "d_model");
        Positive(NCtx, "n_ctx");
        Positive(DVocab, "d_vocab");
        if (NLayers > 0)
        {
            Positive(NHeads, "n_heads");
            Positive(DHead, "d_head");
            if (HasMlp) Positive(DMlp, "d_mlp");
        }
        if (NormalizationType is not (null or "LN" or "LNPre"))
            throw new UserError($"normalization_type '{NormalizationType}' is not supported: use LN, LNPre or none");
        if (PositionalEmbeddingType is not ("standard" or "shortformer"))
            throw new UserError($"positional_embedding_type '{PositionalEmbeddingType}' is not supported: use standard or shortformer");
        if (ActFn is not ("gelu_new" or "gelu_pytorch_tanh"))
            throw new UserError($"act_fn '{ActFn}' is not supported: MiniGpt implements gelu_new (tanh GELU)");
        long perLayer = 4L * NHeads * DModel * DHead + (HasMlp ? 2L * DModel * DMlp : 0);
        long total = perLayer * NLayers + 2L * DVocab * DModel + (long)NCtx * DModel;
        if (total > 1L << 30)
            throw new UserError($"the model would have {total:N0} parameters, more than MiniGpt's limit of 2^30: choose smaller sizes");
        return this;
    }

    private static void Positive(int v, string name, bool allowZero = false)
    {
        if (v < 0 || (!allowZero && v == 0))
            throw new UserError($"{name} must be {(allowZero ? "≥ 0" : "> 0")}, got {v}");
    }

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["n_layers"] = NLayers,
            ["d_model"] = DModel,
            ["n_heads"] = NHeads,
            ["d_head"] = DHead,
            ["d_mlp"] = AttnOnly ? null : DMlp,
            ["n_ctx"] = NCtx,
            ["d_vocab"] = DVocab,
            ["d_vocab_out"] = DVocab,
            ["act_fn"] = ActFn,
            ["normalization_type"] = NormalizationType,
            ["attn_only"] = AttnOnly,
            ["positional_embedding_type"] = PositionalEmbeddingType,
            ["initializer_range"] = EffectiveInitRange,
        };
        return o.ToJsonString();
    }

    /// <summary>Reads HookedTransformerConfig JSON (unknown keys are ignored, as TransformerLens adds many).</summary>
    public static ModelConfig FromJson(string json)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new UserError("the checkpoint's config is not a JSON object"); }
        catch (JsonException e) { throw new UserError($"the checkpoint's config is not valid JSON ({e.Message.Split('\n')[0]})"); }
        int Int(string key, int? fallback = null)
        {
            var n = o[key];
            if (n is null) return fallback ?? throw new UserError($"the checkpoint's config has no '{key}': add it (HookedTransformerConfig key)");
            try { return n.GetValue<int>(); }
            catch (Exception) { throw new UserError($"the checkpoint's config key '{key}' must be an integer, got {n.ToJsonString()}"); }
        }
        string? Str(string key, string? fallback)
        {
            var n = o[key];
            if (n is null) return fallback;
            try { return n.GetValue<string>(); }
            catch (Exception) { throw new UserError($"the checkpoint's config key '{key}' must be a string, got {n.ToJsonString()}"); }
        }
        bool attnOnly = o["attn_only"] is { } a && a.GetValueKind() == JsonValueKind.True;
        int dModel = Int("d_model");
        int nHeads = Int("n_heads", 1);
        var cfg = new ModelConfig
        {
            NLayers = Int("n_layers"),
            DModel = dModel,
            NHeads = nHeads,
            DHead = Int("d_head", nHeads > 0 ? dModel / nHeads : 1),
            DMlp = attnOnly ? 0 : Int("d_mlp", 4 * dModel),
            NCtx = Int("n_ctx"),
            DVocab = Int("d_vocab"),
            AttnOnly = attnOnly,
            NormalizationType = Str("normalization_type", null),
            PositionalEmbeddingType = Str("positional_embedding_type", "standard") ?? "standard",
            ActFn = Str("act_fn", "gelu_new") ?? "gelu_new",
            // TransformerLens's key; -1 (its "unset") and absence mean the default 0.8/√d_model
            InitRange = o["initializer_range"] is { } ir && ir.GetValueKind() == JsonValueKind.Number && ir.GetValue<double>() > 0 ? ir.GetValue<double>() : null,
        };
        int dVocabOut = Int("d_vocab_out", -1);
        if (dVocabOut != cfg.DVocab && dVocabOut != -1)
            throw new UserError($"d_vocab_out {dVocabOut} differs from d_vocab {cfg.DVocab}: MiniGpt needs them equal");
        return cfg.Validate();
    }
}
