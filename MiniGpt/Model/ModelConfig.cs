using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt.Model;

/// <summary>
/// The shape of a model, with TransformerLens HookedTransformerConfig names, so a checkpoint's
/// "config" metadata reads the same in both. normalization_type is "LN" or null (no LayerNorm);
/// positional_embedding_type is "standard" or "shortformer".
/// It is the one record of a shape: a checkpoint's config, the model a run asks for (TrainOptions.Model,
/// the train and bench options). Its defaults are the default run's model (2 layers, d_model 64, 4 heads);
/// what a run takes from its data or derives from other values starts unset, by TransformerLens's
/// conventions (-1 for d_head, d_mlp, n_ctx and d_vocab, as its d_vocab; null for initializer_range and
/// attn_only), and is filled in once, by TrainOptions.Resolved and Trainer.ModelConfigFor. A config that
/// builds a model has all of them.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>TransformerLens's "unset" for an integer setting (as its d_vocab = -1: taken from the tokenizer).</summary>
    public const int Unset = -1;

    public int NLayers { get; init; } = 2;
    public int DModel { get; init; } = 64;
    public int NHeads { get; init; } = 4;
    /// <summary>Unset: d_model / n_heads.</summary>
    public int DHead { get; init; } = Unset;
    /// <summary>Unset: 4·d_model (TransformerLens's default); 0 in an attention-only model's built config.</summary>
    public int DMlp { get; init; } = Unset;
    /// <summary>Unset: 32 for the induction task, 128 for files.</summary>
    public int NCtx { get; init; } = Unset;
    /// <summary>Unset: from the data (the tokenizer's size; max(64, 2·n_ctx) for the induction task).</summary>
    public int DVocab { get; init; } = Unset;

    /// <summary>
    /// attn_only: no MLPs. Unset, a training run's data decides (attention-only for the induction task, MLPs
    /// for files); unset reads as TransformerLens's default, false, which is what a model built from it has.
    /// Like InitRange, an unset and a given value compare unequal in the record even where they read alike.
    /// </summary>
    public bool AttnOnly { get => _attnOnly ?? false; init => _attnOnly = value; }
    private readonly bool? _attnOnly;
    /// <summary>Whether attn_only was given (true or false) rather than left to the data.</summary>
    public bool AttnOnlyGiven => _attnOnly.HasValue;

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
        if (v == Unset) throw new UserError($"{name} is unset (-1): give it, or let Trainer.Start take it from the data");
        if (v < 0 || (!allowZero && v == 0))
            throw new UserError($"{name} must be {(allowZero ? "≥ 0" : "> 0")}, got {v}");
    }

    /// <summary>A built model's HookedTransformerConfig JSON, every value stated (initializer_range as used).</summary>
    public string ToJson() => ToJsonObject(asBuilt: true).ToJsonString();

    /// <summary>
    /// asBuilt: a model's config, every value stated. Otherwise the shape a run asked for, unset values kept as
    /// TransformerLens writes them (-1; null for d_mlp and attn_only), so that it reads back as given.
    /// </summary>
    internal JsonObject ToJsonObject(bool asBuilt) => new()
    {
        ["n_layers"] = NLayers,
        ["d_model"] = DModel,
        ["n_heads"] = NHeads,
        ["d_head"] = DHead,
        ["d_mlp"] = (asBuilt && AttnOnly) || DMlp == Unset ? null : DMlp,
        ["n_ctx"] = NCtx,
        ["d_vocab"] = DVocab,
        ["d_vocab_out"] = DVocab,
        ["act_fn"] = ActFn,
        ["normalization_type"] = NormalizationType,
        ["attn_only"] = asBuilt || AttnOnlyGiven ? AttnOnly : null,
        ["positional_embedding_type"] = PositionalEmbeddingType,
        ["initializer_range"] = asBuilt ? EffectiveInitRange : InitRange ?? Unset,
    };

    /// <summary>Reads HookedTransformerConfig JSON (unknown keys are ignored, as TransformerLens adds many).</summary>
    public static ModelConfig FromJson(string json)
    {
        try
        {
            var o = JsonNode.Parse(json) as JsonObject ?? throw new UserError("the checkpoint's config is not a JSON object");
            return Read(o, asBuilt: true, "the checkpoint's config").Validate();
        }
        catch (JsonException e) { throw new UserError($"the checkpoint's config is not valid JSON ({e.Message.Split('\n')[0]})"); }
        // JsonObject refuses a key given twice when it is first read, with an ArgumentException
        catch (ArgumentException) { throw new UserError("the checkpoint's config names a key twice: keep one of them"); }
    }

    /// <summary>
    /// asBuilt: a checkpoint's config, which must state n_layers, d_model, n_ctx and d_vocab (d_head and d_mlp
    /// are derived when absent: d_model / n_heads and 4·d_model). Otherwise a run's requested shape (ToJsonObject's
    /// other form): what it does not state is this record's default, unset values stay unset, nothing is validated.
    /// where names the JSON in errors ("the checkpoint's config").
    /// </summary>
    internal static ModelConfig Read(JsonObject o, bool asBuilt, string where)
    {
        int Int(string key, int? fallback = null)
        {
            var n = o[key];
            if (n is null) return fallback ?? throw new UserError($"{where} has no '{key}': add it (HookedTransformerConfig key)");
            try { return n.GetValue<int>(); }
            catch (Exception) { throw new UserError($"{where} key '{key}' must be an integer, got {n.ToJsonString()}"); }
        }
        // a key that is absent takes the fallback, one given as null is null (normalization_type: none)
        string? Str(string key, string? fallback)
        {
            if (!o.TryGetPropertyValue(key, out var n)) return fallback;
            if (n is null) return null;
            try { return n.GetValue<string>(); }
            catch (Exception) { throw new UserError($"{where} key '{key}' must be a string, got {n.ToJsonString()}"); }
        }
        var d = new ModelConfig();
        bool? attnOnly = o["attn_only"] is { } a ? a.GetValueKind() == JsonValueKind.True : asBuilt ? false : null;
        int dModel = Int("d_model", asBuilt ? null : d.DModel);
        int nHeads = Int("n_heads", asBuilt ? 1 : d.NHeads);
        var cfg = new ModelConfig
        {
            NLayers = Int("n_layers", asBuilt ? null : d.NLayers),
            DModel = dModel,
            NHeads = nHeads,
            DHead = Int("d_head", !asBuilt ? Unset : nHeads > 0 ? dModel / nHeads : 1),
            DMlp = asBuilt && attnOnly == true ? 0 : Int("d_mlp", asBuilt ? 4 * dModel : Unset),
            NCtx = Int("n_ctx", asBuilt ? null : Unset),
            DVocab = Int("d_vocab", asBuilt ? null : Unset),
            NormalizationType = Str("normalization_type", asBuilt ? null : d.NormalizationType),
            PositionalEmbeddingType = Str("positional_embedding_type", "standard") ?? "standard",
            ActFn = Str("act_fn", "gelu_new") ?? "gelu_new",
            // TransformerLens's key; -1 (its "unset") and absence mean the default 0.8/√d_model
            InitRange = o["initializer_range"] is { } ir && ir.GetValueKind() == JsonValueKind.Number && ir.GetValue<double>() > 0 ? ir.GetValue<double>() : null,
        };
        if (attnOnly is bool given) cfg = cfg with { AttnOnly = given };
        int dVocabOut = Int("d_vocab_out", -1);
        if (dVocabOut != cfg.DVocab && dVocabOut != -1)
            throw new UserError($"d_vocab_out {dVocabOut} differs from d_vocab {cfg.DVocab}: MiniGpt needs them equal");
        return cfg;
    }
}
