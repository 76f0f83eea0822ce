using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Training;

/// <summary>Every setting of a training run. Saved with the training state, so a resume uses the same ones.</summary>
public sealed record TrainOptions
{
    /// <summary>
    /// The model to train. What it leaves unset comes from the data: n_ctx and attn_only here (Resolved),
    /// d_head, d_mlp and d_vocab when the model is built (Trainer.ModelConfigFor).
    /// </summary>
    [JsonIgnore] // written as a HookedTransformerConfig object of its own (see ToJson)
    public ModelConfig Model { get; init; } = new();
    public bool TieEmbeddings { get; init; }

    // optimisation (nanoGPT names)
    public string Optimizer { get; init; } = "adamw";
    public int BatchSize { get; init; } = 32;
    public int Steps { get; init; } = 3000;
    /// <summary>Peak learning rate; 0 means the default: 3e-3 for the induction task, 1e-3 for real data.</summary>
    public float Lr { get; init; }
    public float MinLr { get; init; } = -1;
    public int WarmupSteps { get; init; } = 100;
    public float WeightDecay { get; init; } = 0.1f;
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.99f;
    public float GradClip { get; init; } = 1.0f;

    // run
    public int EvalInterval { get; init; } = 250;
    public int EvalBatches { get; init; } = 20;
    public int LogInterval { get; init; } = 250;
    public int CheckpointInterval { get; init; } = 500;
    public ulong Seed { get; init; } = 1337;
    /// <summary>"induction" (the generated task), a UTF-8 text file, or a .bin token file.</summary>
    public string Data { get; init; } = "induction";
    public string? Val { get; init; }
    /// <summary>For text data: char, bpe:N, cl100k_base or o200k_base (see Data/Tokenizers).</summary>
    public string Tokenizer { get; init; } = "char";
    public string Out { get; init; } = "out/model.safetensors";

    /// <summary>
    /// Fine-tuning (train --init-from F, nanoGPT's init_from): the checkpoint whose weights, shape and tokenizer the
    /// run starts from (anything Checkpoint.Load reads); null for a run from random init. The optimizer, step,
    /// schedule and data order still start fresh. A resumed run reads its own checkpoint, never F again.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? InitFrom { get; init; }

    /// <summary>What F was when the run started (format, size, SHA-256): filled in by Trainer.Start.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public InitSource? InitSource { get; init; }

    /// <summary>
    /// Fills the defaults that depend on the kind of data, here and nowhere else, so the saved options say
    /// what was used: the induction task trains an attention-only model with n_ctx 32 at lr 3e-3, files one
    /// with MLPs, n_ctx 128, lr 1e-3; min_lr is lr / 10.
    /// </summary>
    public TrainOptions Resolved()
    {
        bool induction = Data == "induction";
        float lr = Lr > 0 ? Lr : induction ? 3e-3f : 1e-3f;
        var m = Model;
        if (m.NCtx == ModelConfig.Unset) m = m with { NCtx = induction ? 32 : 128 };
        if (!m.AttnOnlyGiven) m = m with { AttnOnly = induction };
        return this with { Lr = lr, MinLr = MinLr >= 0 ? MinLr : lr / 10, Model = m };
    }

    public void Validate()
    {
        void Pos(long v, string name) { if (v <= 0) throw new UserError($"--{name} must be > 0, got {v}"); }
        Pos(BatchSize, "batch-size"); Pos(Steps, "steps"); Pos(EvalInterval, "eval-interval"); Pos(EvalBatches, "eval-batches");
        Pos(LogInterval, "log-interval"); Pos(CheckpointInterval, "checkpoint-interval"); Pos(Model.NCtx, "n-ctx");
        if (!(Lr > 0) || !float.IsFinite(Lr)) throw new UserError($"--lr must be > 0, got {Lr}");
        if (!(MinLr >= 0) || MinLr > Lr) throw new UserError($"--min-lr must be in [0, lr={Lr}], got {MinLr}");
        if (WarmupSteps < 0) throw new UserError($"--warmup-steps must be ≥ 0, got {WarmupSteps}");
        if (!(WeightDecay >= 0)) throw new UserError($"--weight-decay must be ≥ 0, got {WeightDecay}");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new UserError($"--beta1 must be in [0, 1), got {Beta1}");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new UserError($"--beta2 must be in [0, 1), got {Beta2}");
        if (!(GradClip >= 0)) throw new UserError($"--grad-clip must be ≥ 0 (0 turns clipping off), got {GradClip}");
        Tokenizers.CheckName(Tokenizer);
        // training builds LayerNorm with its parameters or none; LNPre exists only in a folded model
        if (Model.NormalizationType is not ("LN" or null)) throw new UserError($"--normalization must be LN or none, got '{Model.NormalizationType}'");
        if (Model.PositionalEmbeddingType is not ("standard" or "shortformer"))
            throw new UserError($"--positional-embedding must be standard or shortformer, got '{Model.PositionalEmbeddingType}'");
    }

    /// <summary>{"model": {HookedTransformerConfig as asked for, unset values kept}, then every other setting in snake_case}.</summary>
    public string ToJson()
    {
        var o = JsonSerializer.SerializeToNode(this, JsonOpts)!.AsObject();
        o.Insert(0, "model", Model.ToJsonObject(asBuilt: false));
        return o.ToJsonString();
    }

    /// <summary>Reads ToJson's form, and the flat one of states written before the model's shape became <see cref="Model"/>.</summary>
    public static TrainOptions FromJson(string json)
    {
        try
        {
            var o = JsonNode.Parse(json);
            if (o is not JsonObject obj) throw new UserError("the training state's options are empty or not a JSON object: resume from another checkpoint");
            var model = obj.TryGetPropertyValue("model", out var m)
                ? ModelConfig.Read(m as JsonObject ?? throw new UserError("the training state's options have a 'model' that is not a JSON object: resume from another checkpoint"),
                    asBuilt: false, "the training state's model")
                : FlatModel(obj);
            var rest = obj.Deserialize<TrainOptions>(JsonOpts) ?? throw new UserError("the training state's options are empty");
            return rest with { Model = model };
        }
        catch (JsonException e) { throw new UserError($"the training state's options are damaged ({e.Message.Split('\n')[0]}): resume from another checkpoint"); }
        // JsonObject refuses a key given twice when it is first read, with an ArgumentException
        catch (ArgumentException) { throw new UserError("the training state's options name a setting twice: resume from another checkpoint"); }
    }

    /// <summary>
    /// The model of options written before it was a record of its own: the same settings, flat among the
    /// others under their old names, null where unset and "none" for no LayerNorm (n_ctx was always resolved).
    /// </summary>
    private static ModelConfig FlatModel(JsonObject flat)
    {
        var m = new JsonObject();
        foreach (var (old, name) in FlatNames)
            if (flat[old] is { } v) m[name] = v.DeepClone();
        if (m["normalization_type"] is JsonValue s && s.TryGetValue(out string? norm) && norm == "none") m["normalization_type"] = null;
        return ModelConfig.Read(m, asBuilt: false, "the training state's options");
    }

    private static readonly (string Old, string Name)[] FlatNames =
    [
        ("n_layers", "n_layers"), ("d_model", "d_model"), ("n_heads", "n_heads"), ("d_head", "d_head"), ("d_mlp", "d_mlp"),
        ("n_ctx", "n_ctx"), ("d_vocab", "d_vocab"), ("attn_only", "attn_only"), ("normalization", "normalization_type"),
        ("positional_embedding", "positional_embedding_type"), ("init_range", "initializer_range"),
    ];

    private static readonly JsonSerializerOptions JsonOpts = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };
}
