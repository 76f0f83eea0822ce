using MiniGpt.Model;

namespace MiniGpt.Train;

/// <summary>
/// The model-shape options, one per <see cref="ModelConfig"/> setting a run chooses, with ModelConfig's own
/// defaults. train and bench both take this group, so bench with no options times the step of the model
/// train trains with none. What is left unset here is resolved from the data (TrainOptions.Resolved,
/// Trainer.ModelConfigFor); --help says what each unset default becomes.
/// </summary>
internal static class ModelOptions
{
    private static readonly ModelConfig D = new();

    public static readonly Option<int> NLayers = Option.Int("n-layers", "transformer blocks (0 = bigram model)", D.NLayers);
    public static readonly Option<int> DModel = Option.Int("d-model", "residual stream width", D.DModel);
    public static readonly Option<int> NHeads = Option.Int("n-heads", "attention heads per block", D.NHeads);
    public static readonly Option<int> DHead = Option.Int("d-head", "width of each head", D.DHead, shown: "d_model / n_heads");
    public static readonly Option<int> DMlp = Option.Int("d-mlp", "MLP hidden width", D.DMlp, shown: "4·d_model");
    public static readonly Option<int> NCtx = Option.Int("n-ctx", "context length (tokens per window)", D.NCtx, shown: "32 for induction, 128 for files")
        .Check(n => n > 0, "must be > 0");
    public static readonly Option<int> DVocab = Option.Int("d-vocab", "vocabulary size; required for .bin data", D.DVocab,
        shown: "from the data (max(64, 2·n_ctx) for induction)");
    public static readonly Option<bool?> AttnOnly = Option.OptionalFlag("attn-only", "no MLPs (default for the induction task; --attn-only=false to force MLPs)");
    public static readonly Option<string?> Normalization = Option.Of("normalization", "LN or none", D.NormalizationType, D.NormalizationType ?? "none",
        (_, v) => v.Equals("none", StringComparison.OrdinalIgnoreCase) ? null : v).Choices("LN", "none"); // anything else is refused with the config (exit code 1)
    public static readonly Option<string> PositionalEmbedding =
        Option.Text("positional-embedding", "standard, or shortformer (positions only in queries and keys)", D.PositionalEmbeddingType)
            .Choices("standard", "shortformer");
    // read as a float and widened, as it always was, so that a given value initialises the weights it did before
    public static readonly Option<double?> InitializerRange = Option.Of<double?>("initializer-range",
        "std of the normal init of every W_* (TransformerLens initializer_range)", D.InitRange, "0.8/√d_model", (n, v) => Option.ParseFloat(n, v));

    /// <summary>The group, in --help order.</summary>
    public static IEnumerable<Option> All =>
        [NLayers, DModel, NHeads, DHead, DMlp, NCtx, DVocab, AttnOnly, Normalization, PositionalEmbedding, InitializerRange];

    /// <summary>The group for a verb that always runs the induction task (bench): the same options, with the defaults that task gives.</summary>
    public static IEnumerable<Option> ForInductionTask =>
        [NLayers, DModel, NHeads, DHead, DMlp, NCtx.WithHelpLine(NCtx.Help, shown: "32"), DVocab.WithHelpLine("vocabulary size", shown: "max(64, 2·n_ctx)"),
         AttnOnly.WithHelpLine("no MLPs: on unless --attn-only=false, as train on the induction task"), Normalization, PositionalEmbedding, InitializerRange];

    /// <summary>The shape the command line asks for; attn_only stays unset unless --attn-only is given.</summary>
    public static ModelConfig Read(Options o)
    {
        var m = new ModelConfig
        {
            NLayers = o.Get(NLayers), DModel = o.Get(DModel), NHeads = o.Get(NHeads), DHead = o.Get(DHead), DMlp = o.Get(DMlp),
            NCtx = o.Get(NCtx), DVocab = o.Get(DVocab), NormalizationType = o.Get(Normalization),
            PositionalEmbeddingType = o.Get(PositionalEmbedding), InitRange = o.Get(InitializerRange),
        };
        return o.Get(AttnOnly) is bool attnOnly ? m with { AttnOnly = attnOnly } : m;
    }
}
