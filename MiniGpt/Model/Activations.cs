using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// Every activation of a forward pass, under its TransformerLens hook name, in one buffer sized for the
/// passes asked of it: RowCapacity token rows (the largest B·T) and AttentionCapacity query–key pairs per head
/// (the largest B·T², which for a 1,024-context model probed on 8 × 256 tokens is 0.5 M, not 8 × 1,024² = 8.4 M).
/// A pass [B, T] uses the leading B·T rows of each tensor and the leading B·H·T·T floats of a pattern; hooks
/// are handed views with the pass's shape (HookViews), the buffers are declared flat ([rows, D], [H·pairs]). Nothing is
/// freed between forward and backward, which is what backward reads and what a cache returns.
/// Gradient scratch for the backward pass lives in a second, smaller buffer.
/// </summary>
public sealed class Activations
{
    /// <summary>Token rows the buffers hold: the largest B·T of a pass.</summary>
    public int RowCapacity { get; }
    /// <summary>Query–key pairs per head the attention buffers hold: the largest B·T·T of a pass.</summary>
    public long AttentionCapacity { get; }
    public Arena Acts { get; }
    public Arena Scratch { get; }
    public int[] Tokens { get; }
    public int[] Targets { get; }

    public Tensor Embed { get; }
    public Tensor PosEmbed { get; }
    /// <summary>blocks.0.hook_resid_pre: embed (+ pos), the stream before the first block.</summary>
    public Tensor Embedded { get; }
    public BlockActs[] Blocks { get; }
    public Tensor? LnFinalOut { get; }
    public Tensor? LnFinalMean { get; }
    public Tensor? LnFinalRstd { get; }
    public Tensor Logits { get; }
    public Tensor Losses { get; }
    public Tensor DResid { get; }
    public Tensor DLn { get; }
    /// <summary>d(attn_out), d(mlp_out) or d(embed) on its own, when a backward hook there may change it.</summary>
    public Tensor DBranch { get; }
    /// <summary>d(hook_pos_embed): with shortformer positions the sum over blocks of d(x_qk); else a copy for a backward hook.</summary>
    public Tensor DPosEmbed { get; }
    public Tensor DLogits { get; }
    public Tensor? DQkInput { get; }
    public Tensor? DQ { get; }
    public Tensor? DK { get; }
    public Tensor? DV { get; }
    public Tensor? DZ { get; }
    public Tensor? DMlpPre { get; }
    public Tensor? DMlpPost { get; }
    public Tensor LnXhat { get; }
    public Tensor LnG { get; }

    /// <summary>The residual stream after the last block (what ln_final reads).</summary>
    public Tensor FinalResid => Blocks.Length == 0 ? Embedded : Blocks[^1].ResidPost;

    /// <param name="rows">token rows: the largest B·T a pass will have.</param>
    /// <param name="pairs">query–key pairs per head: the largest B·T·T.</param>
    public Activations(ModelConfig c, int rows, long pairs)
    {
        if (rows < 1 || pairs < rows || pairs > (long)rows * c.NCtx)
            throw new ArgumentOutOfRangeException(nameof(pairs), $"{rows} rows and {pairs} query–key pairs are not the capacity of passes with T ≤ n_ctx={c.NCtx}");
        long attnFloats = pairs * c.NHeads;
        if (attnFloats > Array.MaxLength)
            throw new UserError($"one attention pattern would need {attnFloats:N0} floats, more than .NET can allocate: use a smaller batch or shorter sequences");
        RowCapacity = rows;
        AttentionCapacity = pairs;
        int R = rows, A = (int)attnFloats, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab;
        var a = new Arena();
        a.Add("hook_embed", R, D);
        a.Add("hook_pos_embed", R, D);
        a.Add("blocks.0.hook_resid_pre", R, D);
        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            if (l > 0) a.AddAlias(p + "hook_resid_pre", $"blocks.{l - 1}.hook_resid_post");
            if (c.HasLayerNorm) { a.Add(p + "ln1.hook_normalized", R, D); a.Add(p + "ln1.mean", R); a.Add(p + "ln1.rstd", R); }
            if (c.Shortformer) a.Add(p + "attn.qk_input", R, D);
            a.Add(p + "attn.hook_q", R, H, dh);
            a.Add(p + "attn.hook_k", R, H, dh);
            a.Add(p + "attn.hook_v", R, H, dh);
            a.Add(p + "attn.hook_attn_scores", A);
            a.Add(p + "attn.hook_pattern", A);
            a.Add(p + "attn.hook_z", R, H, dh);
            a.Add(p + "hook_attn_out", R, D);
            if (c.HasMlp)
            {
                a.Add(p + "hook_resid_mid", R, D);
                if (c.HasLayerNorm) { a.Add(p + "ln2.hook_normalized", R, D); a.Add(p + "ln2.mean", R); a.Add(p + "ln2.rstd", R); }
                a.Add(p + "mlp.hook_pre", R, c.DMlp);
                a.Add(p + "mlp.hook_post", R, c.DMlp);
                a.Add(p + "hook_mlp_out", R, D);
            }
            a.Add(p + "hook_resid_post", R, D);
        }
        if (c.HasLayerNorm) { a.Add("ln_final.hook_normalized", R, D); a.Add("ln_final.mean", R); a.Add("ln_final.rstd", R); }
        a.Add("logits", R, V);
        a.Add("losses", R);
        Acts = a.Build();

        var s = new Arena();
        s.Add("d_resid", R, D);
        s.Add("d_ln", R, D);
        s.Add("d_branch", R, D);
        s.Add("d_pos_embed", R, D);
        if (c.Shortformer) s.Add("d_qk_input", R, D);
        if (c.NLayers > 0)
        {
            s.Add("d_q", R, H, dh);
            s.Add("d_k", R, H, dh);
            s.Add("d_v", R, H, dh);
            s.Add("d_z", R, H, dh);
        }
        if (c.HasMlp && c.NLayers > 0) { s.Add("d_mlp_pre", R, c.DMlp); s.Add("d_mlp_post", R, c.DMlp); }
        s.Add("d_logits", R, V);
        s.Add("ln_xhat", D);
        s.Add("ln_g", D);
        Scratch = s.Build();

        Embed = Acts["hook_embed"]; PosEmbed = Acts["hook_pos_embed"]; Embedded = Acts["blocks.0.hook_resid_pre"];
        Blocks = Enumerable.Range(0, c.NLayers).Select(l => BlockActs.From(Acts, l)).ToArray();
        LnFinalOut = Acts.TryGet("ln_final.hook_normalized", out var lf) ? lf : null;
        LnFinalMean = Acts.TryGet("ln_final.mean", out var lm) ? lm : null;
        LnFinalRstd = Acts.TryGet("ln_final.rstd", out var lr) ? lr : null;
        Logits = Acts["logits"]; Losses = Acts["losses"];
        DResid = Scratch["d_resid"]; DLn = Scratch["d_ln"]; DBranch = Scratch["d_branch"]; DPosEmbed = Scratch["d_pos_embed"]; DLogits = Scratch["d_logits"];
        DQkInput = Scratch.TryGet("d_qk_input", out var dqk) ? dqk : null;
        if (c.NLayers > 0) { DQ = Scratch["d_q"]; DK = Scratch["d_k"]; DV = Scratch["d_v"]; DZ = Scratch["d_z"]; }
        DMlpPre = Scratch.TryGet("d_mlp_pre", out var dpre) ? dpre : null;
        DMlpPost = Scratch.TryGet("d_mlp_post", out var dpost) ? dpost : null;
        LnXhat = Scratch["ln_xhat"]; LnG = Scratch["ln_g"];
        Tokens = new int[R];
        Targets = new int[R];
    }

    /// <summary>Floats the activations and scratch of a batch of n_ctx-token rows will take, without allocating them.</summary>
    public static long EstimateFloats(ModelConfig c, int batch)
    {
        long T = c.NCtx;
        long N = batch * T, D = c.DModel, HD = (long)c.NHeads * c.DHead, TT = batch * c.NHeads * T * T;
        long perLayer = (c.HasLayerNorm ? N * D + 2 * N : 0) + (c.Shortformer ? N * D : 0) + 4 * N * HD + 2 * TT + 2 * N * D
            + (c.HasMlp ? N * D + (c.HasLayerNorm ? N * D + 2 * N : 0) + 2 * N * c.DMlp + N * D : 0);
        long acts = 3 * N * D + c.NLayers * perLayer + (c.HasLayerNorm ? N * D + 2 * N : 0) + N * c.DVocab + N;
        long scratch = 4 * N * D + (c.Shortformer ? N * D : 0) + 4 * N * HD + (c.HasMlp ? 2 * N * c.DMlp : 0) + N * c.DVocab + 2 * D;
        return acts + scratch;
    }
}
