using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// One block's parameters (or gradients, or Adam moments: same names) as typed fields, looked up once,
/// so the training step does no string building or dictionary lookups. Absent tensors are null
/// (LayerNorm without normalization, MLP when attn_only).
/// </summary>
public sealed class BlockParams
{
    public Tensor? Ln1W, Ln1B, Ln2W, Ln2B, WIn, BIn, WOut, BOut;
    public required Tensor WQ, WK, WV, WO, BQ, BK, BV, BO;

    public static BlockParams From(Arena a, int layer)
    {
        string p = $"blocks.{layer}.";
        Tensor? Opt(string n) => a.TryGet(p + n, out var t) ? t : null;
        return new BlockParams
        {
            Ln1W = Opt("ln1.w"), Ln1B = Opt("ln1.b"), Ln2W = Opt("ln2.w"), Ln2B = Opt("ln2.b"),
            WQ = a[p + "attn.W_Q"], WK = a[p + "attn.W_K"], WV = a[p + "attn.W_V"], WO = a[p + "attn.W_O"],
            BQ = a[p + "attn.b_Q"], BK = a[p + "attn.b_K"], BV = a[p + "attn.b_V"], BO = a[p + "attn.b_O"],
            WIn = Opt("mlp.W_in"), BIn = Opt("mlp.b_in"), WOut = Opt("mlp.W_out"), BOut = Opt("mlp.b_out"),
        };
    }
}

/// <summary>The whole model's parameters as typed fields (see <see cref="BlockParams"/>).</summary>
public sealed class ModelParams
{
    public required Tensor WE, WPos, WU, BU;
    public Tensor? LnFinalW, LnFinalB;
    public required BlockParams[] Blocks;

    public static ModelParams From(Arena a, ModelConfig c) => new()
    {
        WE = a["embed.W_E"], WPos = a["pos_embed.W_pos"], WU = a["unembed.W_U"], BU = a["unembed.b_U"],
        LnFinalW = a.TryGet("ln_final.w", out var w) ? w : null,
        LnFinalB = a.TryGet("ln_final.b", out var b) ? b : null,
        Blocks = Enumerable.Range(0, c.NLayers).Select(l => BlockParams.From(a, l)).ToArray(),
    };
}

/// <summary>One block's activations under their hook names (null where the config has no such step).</summary>
public sealed class BlockActs
{
    public required Tensor ResidPre, Q, K, V, SoftmaxMax, SoftmaxSum, Z, AttnOut, ResidPost;
    public Tensor? Ln1Out, Ln1Mean, Ln1Rstd, QkInput, ResidMid, Ln2Out, Ln2Mean, Ln2Rstd, Pre, Post, MlpOut;
    /// <summary>
    /// hook_attn_scores and hook_pattern [B·H·T²], null until a pass first materialises them (Activations.MaterialisePatterns);
    /// they hold the last pass's only if Activations.PatternsKept says so.
    /// </summary>
    public Tensor? Scores, Pattern;

    public static BlockActs From(Arena a, int layer)
    {
        string p = $"blocks.{layer}.";
        Tensor? Opt(string n) => a.TryGet(p + n, out var t) ? t : null;
        return new BlockActs
        {
            ResidPre = a[p + "hook_resid_pre"],
            Ln1Out = Opt("ln1.hook_normalized"), Ln1Mean = Opt("ln1.mean"), Ln1Rstd = Opt("ln1.rstd"),
            QkInput = Opt("attn.qk_input"),
            Q = a[p + "attn.hook_q"], K = a[p + "attn.hook_k"], V = a[p + "attn.hook_v"],
            SoftmaxMax = a[p + "attn.softmax_max"], SoftmaxSum = a[p + "attn.softmax_sum"], Z = a[p + "attn.hook_z"],
            AttnOut = a[p + "hook_attn_out"], ResidMid = Opt("hook_resid_mid"),
            Ln2Out = Opt("ln2.hook_normalized"), Ln2Mean = Opt("ln2.mean"), Ln2Rstd = Opt("ln2.rstd"),
            Pre = Opt("mlp.hook_pre"), Post = Opt("mlp.hook_post"), MlpOut = Opt("hook_mlp_out"),
            ResidPost = a[p + "hook_resid_post"],
        };
    }
}
