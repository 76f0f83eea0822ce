using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// Every activation of a forward pass, under its TransformerLens hook name, in one buffer sized for the
/// passes asked of it: RowCapacity token rows (the largest B·T) and AttentionCapacity query–key pairs per head
/// (the largest B·T², which for a 1,024-context model probed on 8 × 256 tokens is 0.5 M, not 8 × 1,024² = 8.4 M).
/// A pass [B, T] uses the leading B·T rows of each tensor and the leading B·H·T·T floats of a pattern; hooks
/// are handed views with the pass's shape (HookViews), the buffers are declared flat ([rows, D], [H·pairs]), and a lookup
/// by name in <see cref="Acts"/> gives the last pass's view too ([B, T, D], [B, H, T, T]: <see cref="PassViews"/>), while
/// the typed fields (Blocks[l].Q, …) and Acts.Tensors are the stored buffers. Nothing is
/// freed between forward and backward, which is what backward reads and what a cache returns.
/// Gradient scratch for the backward pass lives in a second, smaller buffer.
///
/// Attention's scores and pattern (hook_attn_scores, hook_pattern [B, H, T, T]) are not in the buffer: a layer whose
/// attention runs tiled keeps only the softmax's max and sum per query row (attn.softmax_max, attn.softmax_sum, [B, H, T]).
/// The two [B, H, T, T] tensors of a layer are made the first time a pass materialises that layer's pattern
/// (<see cref="MaterialisePatterns"/>: a hook there, or GptModel.KeepPatterns), sized for that pass and grown by
/// doubling up to AttentionCapacity; Acts shows them under their hook names only while the last pass kept them,
/// and otherwise says, in one line, how to get them (never an older pass's pattern).
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
        _config = c;
        RowCapacity = rows;
        AttentionCapacity = pairs;
        int R = rows, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab;
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
            // [B, H, T] of the pass, flat: what backward recomputes a tiled layer's pattern from
            a.Add(p + "attn.softmax_max", R * H);
            a.Add(p + "attn.softmax_sum", R * H);
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
        _scoreNames = new string[c.NLayers];
        _patternNames = new string[c.NLayers];
        _scoreSlots = new Arena.OnDemand[c.NLayers];
        _patternSlots = new Arena.OnDemand[c.NLayers];
        for (int l = 0; l < c.NLayers; l++)
        {
            _scoreNames[l] = $"blocks.{l}.attn.hook_attn_scores";
            _patternNames[l] = $"blocks.{l}.attn.hook_pattern";
            _scoreSlots[l] = Acts.AddOnDemand(_scoreNames[l], NotKept(_scoreNames[l]));
            _patternSlots[l] = Acts.AddOnDemand(_patternNames[l], NotKept(_patternNames[l]));
        }

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
        // set last: the typed views above are the stored [rows, …] buffers the passes index into
        _pass = new PassViews(R, H);
        Acts.Viewer = _pass.View;
    }

    private readonly PassViews _pass;

    /// <summary>Records the shape of the pass being run, so that Acts shows its tensors as [B, T, …] (two stores, no allocation).</summary>
    public void BeginPass(int B, int T) => _pass.Begin(B, T);

    /// <summary>The last pass's batch and sequence length (0, 0 before the first pass).</summary>
    public (int B, int T) Pass => (_pass.B, _pass.T);

    private readonly ModelConfig _config;
    private readonly Arena.OnDemand[] _scoreSlots, _patternSlots;
    private readonly string[] _scoreNames, _patternNames; // made once: a pass builds no string

    private static string NotKept(string name) =>
        $"{name} was not kept: the last forward pass ran this layer's attention tiled, without the [B, H, T, T] scores and pattern; " +
        $"set GptModel.KeepPatterns = true (or {GptModel.KeepPatternsVariable}=1), or add a hook at {name}, before the pass";

    /// <summary>
    /// Makes layer's scores and pattern buffers (BlockActs.Scores, Pattern) hold a pass of B sequences of T tokens
    /// (B·H·T² floats), allocating or growing them (at least 2× a time, at most AttentionCapacity·H) only when they are
    /// too small, and shows them in Acts as this pass's.
    /// </summary>
    public void MaterialisePatterns(int layer, int B, int T)
    {
        var x = Blocks[layer];
        long need = (long)B * _config.NHeads * T * T, cap = AttentionCapacity * _config.NHeads;
        x.Scores = Grow(x.Scores, _scoreNames[layer], need, cap);
        x.Pattern = Grow(x.Pattern, _patternNames[layer], need, cap);
        _scoreSlots[layer].Tensor = x.Scores;
        _patternSlots[layer].Tensor = x.Pattern;
    }

    /// <summary>
    /// Makes layer's pattern buffer hold a pass of B sequences of T tokens, without the scores: the tiled forward writes
    /// the pattern there for the backward pass to read (see <see cref="PatternFitsForSpeed"/>). Acts shows it as this
    /// pass's hook_pattern, and says hook_attn_scores was not kept.
    /// </summary>
    public void KeepPatternOnly(int layer, int B, int T)
    {
        var x = Blocks[layer];
        x.Pattern = Grow(x.Pattern, _patternNames[layer], (long)B * _config.NHeads * T * T, AttentionCapacity * _config.NHeads);
        _scoreSlots[layer].Tensor = null;
        _patternSlots[layer].Tensor = x.Pattern;
    }

    /// <summary>
    /// Whether a layer that nobody asks for its pattern keeps it anyway, for speed: the tiled forward writes it and the
    /// backward pass reads it instead of recomputing scores and pattern (9 T²-sized products a step become 6). While
    /// T ≤ 256 (a pattern row is then at most 1 KB per head, and WA, attention-only at n_ctx 256, ran 8 % slower tiled than
    /// materialised), or while the pattern, H·T floats per token, is at most half of the layer's other activations per
    /// token (GPT-2 small up to n_ctx 577). Beyond, attention stays O(T) per head.
    /// </summary>
    public static bool PatternFitsForSpeed(ModelConfig c, int T) => T <= 256 || 2L * c.NHeads * T <= LayerFloatsPerToken(c);

    // floats per token of one block's activations without the scores and pattern (EstimateFloats' perLayer / N)
    private static long LayerFloatsPerToken(ModelConfig c)
    {
        long D = c.DModel, H = c.NHeads, HD = H * c.DHead;
        return (c.HasLayerNorm ? D + 2 : 0) + (c.Shortformer ? D : 0) + 4 * HD + 2 * H + 2 * D
            + (c.HasMlp ? D + (c.HasLayerNorm ? D + 2 : 0) + 2 * c.DMlp + D : 0);
    }

    /// <summary>Marks layer's scores and pattern as not this pass's (its attention ran tiled): Acts says so instead of showing them.</summary>
    public void DropPatterns(int layer)
    {
        _scoreSlots[layer].Tensor = null;
        _patternSlots[layer].Tensor = null;
    }

    /// <summary>Whether the last forward pass materialised layer's scores and pattern (BlockActs.Scores, Pattern hold them).</summary>
    public bool PatternsKept(int layer) => _patternSlots[layer].Tensor != null;

    /// <summary>Floats of the scores and pattern buffers made so far (all layers).</summary>
    public long PatternFloats
    {
        get
        {
            long n = 0;
            foreach (var x in Blocks) n += (x.Scores?.Length ?? 0) + (x.Pattern?.Length ?? 0);
            return n;
        }
    }

    /// <summary>
    /// t if it holds need floats, else a new zeroed tensor of max(need, 2·|t|) floats, at most cap (≥ need): buffers that
    /// exist only when asked for grow like this, so passes that lengthen one token at a time reallocate O(log T) times.
    /// </summary>
    internal static Tensor Grow(Tensor? t, string name, long need, long cap)
    {
        if (t != null && t.Length >= need) return t;
        if (need > Array.MaxLength)
            throw new UserError($"{name} would need {need:N0} floats, more than .NET can allocate: use a smaller batch or shorter sequences, " +
                "or do without the materialised attention pattern (no hook on hook_pattern or hook_attn_scores, GptModel.KeepPatterns off)");
        long n = Math.Min(Math.Min(cap, Array.MaxLength), Math.Max(need, 2L * (t?.Length ?? 0)));
        return Tensor.Zeros(name, (int)Math.Max(n, need));
    }

    /// <summary>
    /// Floats the activations and scratch of a batch of n_ctx-token rows will take, without allocating them: with attention
    /// tiled (the default; keepPatterns false), or with every layer's [B, H, T, T] scores and pattern materialised
    /// (GptModel.KeepPatterns, or hooks on them in every layer).
    /// </summary>
    public static long EstimateFloats(ModelConfig c, int batch, bool keepPatterns = false)
    {
        long T = c.NCtx;
        long N = batch * T, D = c.DModel, H = c.NHeads, HD = H * c.DHead, TT = batch * H * T * T;
        long perLayer = N * LayerFloatsPerToken(c) + (keepPatterns ? 2 * TT : PatternFitsForSpeed(c, (int)T) ? TT : 0);
        long acts = 3 * N * D + c.NLayers * perLayer + (c.HasLayerNorm ? N * D + 2 * N : 0) + N * c.DVocab + N;
        long scratch = 4 * N * D + (c.Shortformer ? N * D : 0) + 4 * N * HD + (c.HasMlp ? 2 * N * c.DMlp : 0) + N * c.DVocab + 2 * D;
        return acts + scratch;
    }
}
