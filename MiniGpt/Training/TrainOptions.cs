using System.Text.Json;
using MiniGpt.Data;

namespace MiniGpt.Training;

/// <summary>Every setting of a training run. Saved with the training state, so a resume uses the same ones.</summary>
public sealed record TrainOptions
{
    // model (HookedTransformerConfig names, kebab-case on the command line)
    public int NLayers { get; init; } = 2;
    public int DModel { get; init; } = 64;
    public int NHeads { get; init; } = 4;
    public int? DHead { get; init; }
    public int? DMlp { get; init; }
    /// <summary>0 means the default: 32 for the induction task, 128 for real data.</summary>
    public int NCtx { get; init; }
    public int? DVocab { get; init; }
    /// <summary>null: attention-only for the induction task, with MLPs for real data.</summary>
    public bool? AttnOnly { get; init; }
    public string Normalization { get; init; } = "LN";
    public string PositionalEmbedding { get; init; } = "standard";
    public double? InitRange { get; init; }
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

    /// <summary>Fills the data-dependent defaults (lr, min_lr) so the saved options say what was used.</summary>
    public TrainOptions Resolved()
    {
        bool induction = Data == "induction";
        float lr = Lr > 0 ? Lr : induction ? 3e-3f : 1e-3f;
        return this with { Lr = lr, MinLr = MinLr >= 0 ? MinLr : lr / 10, NCtx = NCtx > 0 ? NCtx : induction ? 32 : 128 };
    }

    public void Validate()
    {
        void Pos(long v, string name) { if (v <= 0) throw new UserError($"--{name} must be > 0, got {v}"); }
        Pos(BatchSize, "batch-size"); Pos(Steps, "steps"); Pos(EvalInterval, "eval-interval"); Pos(EvalBatches, "eval-batches");
        Pos(LogInterval, "log-interval"); Pos(CheckpointInterval, "checkpoint-interval"); Pos(NCtx, "n-ctx");
        if (!(Lr > 0) || !float.IsFinite(Lr)) throw new UserError($"--lr must be > 0, got {Lr}");
        if (!(MinLr >= 0) || MinLr > Lr) throw new UserError($"--min-lr must be in [0, lr={Lr}], got {MinLr}");
        if (WarmupSteps < 0) throw new UserError($"--warmup-steps must be ≥ 0, got {WarmupSteps}");
        if (!(WeightDecay >= 0)) throw new UserError($"--weight-decay must be ≥ 0, got {WeightDecay}");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new UserError($"--beta1 must be in [0, 1), got {Beta1}");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new UserError($"--beta2 must be in [0, 1), got {Beta2}");
        if (!(GradClip >= 0)) throw new UserError($"--grad-clip must be ≥ 0 (0 turns clipping off), got {GradClip}");
        Tokenizers.CheckName(Tokenizer);
        if (Normalization is not ("LN" or "none")) throw new UserError($"--normalization must be LN or none, got '{Normalization}'");
        if (PositionalEmbedding is not ("standard" or "shortformer")) throw new UserError($"--positional-embedding must be standard or shortformer, got '{PositionalEmbedding}'");
    }

    public string ToJson() => JsonSerializer.Serialize(this, JsonOpts);

    public static TrainOptions FromJson(string json)
    {
        try { return JsonSerializer.Deserialize<TrainOptions>(json, JsonOpts) ?? throw new UserError("the training state's options are empty"); }
        catch (JsonException e) { throw new UserError($"the training state's options are damaged ({e.Message.Split('\n')[0]}): resume from another checkpoint"); }
    }

    private static readonly JsonSerializerOptions JsonOpts = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };
}
