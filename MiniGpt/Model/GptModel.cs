using MiniGpt.Layers;
using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// A GPT in the pre-LN residual form, in TransformerLens layout:
///   x = W_E[tokens] (+ W_pos)                       hook_embed, hook_pos_embed, blocks.0.hook_resid_pre
///   for each block:  x = x + attn(ln1(x))          hook_attn_out, hook_resid_mid
///                    x = x + mlp(ln2(x))           hook_mlp_out, hook_resid_post   (skipped if attn_only)
///   logits = ln_final(x)·W_U + b_U;  loss = mean cross-entropy of the next token
/// Forward keeps every activation (see <see cref="Activations"/>) and fires each hook point as it passes it
/// (nothing happens where no hook is registered); Backward walks the same steps in reverse, calling each
/// layer's hand-written backward through the model's kernel set, fires the backward hooks, and accumulates
/// into <see cref="Grads"/>. Set a breakpoint in any Layers/*.Backward to read a layer's tensors mid-step.
/// </summary>
public sealed class GptModel
{
    public ModelConfig Config { get; }

    /// <summary>The kernels this model runs (<see cref="Layers.Kernels.Fast"/> unless it was made with others, or MINIGPT_KERNELS=scalar).</summary>
    public IKernels Kernels { get; }

    public Arena Params { get; }
    /// <summary>
    /// Gradients, laid out as <see cref="Params"/>; made on first use (ZeroGrad, Backward, a training run), so a model
    /// that only runs forward (eval, sample, circuits of GPT-2 small) does not hold a second copy of its weights.
    /// </summary>
    public Arena Grads => _grads ??= ParameterLayout.Declare(Config).Build();
    private Arena? _grads;
    private ModelParams G => _gViews ??= ModelParams.From(Grads, Config);
    private ModelParams? _gViews;
    public Activations? Cache { get; private set; }

    /// <summary>Forward and backward hooks by TransformerLens hook name (see <see cref="HookNames"/>).</summary>
    public HookRegistry Hooks { get; }

    /// <summary>
    /// Whether every forward pass materialises each layer's attention scores and pattern [B, H, T, T] in <see cref="Cache"/>
    /// (Cache.Acts["blocks.0.attn.hook_pattern"], for a debugger or an analysis that reads the cache after the pass). Off,
    /// a layer materialises them only when a forward or backward hook sits on its hook_attn_scores or hook_pattern
    /// (RunWithCache, patching, the head probes); the others run attention tiled, keeping O(T) numbers per head instead
    /// of O(T²), and recompute the pattern in backward. Both paths give the same bits (logits, loss, every gradient),
    /// so this changes memory and speed only. Starts as <see cref="KeepPatternsVariable"/> says (off when unset).
    /// </summary>
    public bool KeepPatterns { get; set; } = KeepPatternsByDefault;

    /// <summary>
    /// Whether a layer whose pattern nobody asks for still keeps it (not the scores) when the context is short or the pattern
    /// small beside the layer's other activations (<see cref="Activations.PatternFitsForSpeed"/>): the backward pass then reads it instead of
    /// recomputing scores and pattern. The results are the same bits either way; off, every such layer runs in O(T) memory.
    /// </summary>
    public bool KeepPatternsForSpeed { get; set; } = true;

    /// <summary>Environment variable that sets <see cref="KeepPatterns"/> for models made without code: 1 (or true) keeps them, 0 (or unset) does not.</summary>
    public const string KeepPatternsVariable = "MINIGPT_KEEP_PATTERNS";

    /// <summary>What <see cref="KeepPatternsVariable"/> asks for (read now); anything but 1/true/0/false/empty is a one-line error.</summary>
    public static bool KeepPatternsByDefault => Environment.GetEnvironmentVariable(KeepPatternsVariable)?.Trim().ToLowerInvariant() switch
    {
        null or "" or "0" or "false" => false,
        "1" or "true" => true,
        var v => throw new UserError($"{KeepPatternsVariable}='{v}' is not a switch: use 1 to keep every layer's attention pattern in Cache, or 0"),
    };

    /// <summary>Every hook point, in the order a forward pass reaches them.</summary>
    public IReadOnlyList<string> HookNames => _points.Names;

    /// <summary>The shape kind of a hook point (<see cref="HookPoints.Shape"/> gives its dimensions), null for a name the model does not have.</summary>
    public HookShape? HookShapeOf(string name) => _points.IndexOf(name) is int i and >= 0 ? _points.ShapeKindOf(i) : null;

    /// <summary>The block a hook point belongs to, −1 outside the blocks (hook_embed, ln_final.hook_normalized, …).</summary>
    public int HookLayerOf(string name) => _points.IndexOf(name) is int i and >= 0 ? _points.LayerOf(i) : -1;

    private readonly ModelParams _p;
    private readonly HookPoints _points;
    private readonly LayerHooks[] _layerHooks;
    private readonly HookViews _forwardViews, _backwardViews;
    private int _b, _t; // the shape of the last forward pass
    private bool _hasTargets; // whether that pass had targets (Backward needs them)

    // tensors that exist only while a hook asks for them: hook_result per layer, its gradient, the change it made,
    // and the gradients at hook_pattern and hook_attn_scores of a backward that stops between attention's stages
    private readonly Tensor?[] _results;
    private Tensor? _dResults, _resultScratch, _dPattern, _dScores;
    // per layer, the softmax's output kept before a forward hook on hook_pattern may replace it (see Attention.Forward),
    // and whether the last forward pass kept it
    private readonly Tensor?[] _keptPatterns;
    private readonly bool[] _patternKept;

    public GptModel(ModelConfig config, IKernels? kernels = null)
    {
        Config = config.Validate();
        Kernels = kernels ?? Layers.Kernels.Default;
        Params = ParameterLayout.Declare(config).Build();
        _p = ModelParams.From(Params, config);
        _points = new HookPoints(config);
        Hooks = new HookRegistry(_points);
        _forwardViews = new HookViews(_points, config);
        _backwardViews = new HookViews(_points, config);
        _layerHooks = new LayerHooks[config.NLayers];
        for (int l = 0; l < config.NLayers; l++) _layerHooks[l] = new LayerHooks(this, l);
        _results = new Tensor?[config.NLayers];
        _keptPatterns = new Tensor?[config.NLayers];
        _patternKept = new bool[config.NLayers];
    }

    public static GptModel Create(ModelConfig config, ulong seed, IKernels? kernels = null)
    {
        var m = new GptModel(config, kernels);
        var rng = new Rng(seed);
        ParameterLayout.Initialise(m.Params, config, ref rng);
        return m;
    }

    public long ParameterCount => Params.Buffer.LongLength;

    /// <summary>Whether W_U [d_model, d_vocab] is exactly W_Eᵀ (W_E [d_vocab, d_model]) bit for bit, as in GPT-2 and nanoGPT.</summary>
    public bool HasTiedEmbeddings()
    {
        var c = Config;
        var wE = Params["embed.W_E"].Span; var wU = Params["unembed.W_U"].Span;
        for (int v = 0; v < c.DVocab; v++)
            for (int d = 0; d < c.DModel; d++)
                if (wU[d * c.DVocab + v] != wE[v * c.DModel + d]) return false;
        return true;
    }

    /// <summary>
    /// Runs a forward pass and returns copies of the activations whose names pass filter (all by default),
    /// with this pass's shapes, e.g. cache["blocks.0.attn.hook_pattern"] is [B, n_heads, T, T].
    /// </summary>
    public ActivationCache RunWithCache(ReadOnlySpan<int> tokens, int B, int T, Func<string, bool>? filter = null, ReadOnlySpan<int> targets = default)
    {
        var cache = new ActivationCache();
        var handles = new List<IDisposable>();
        foreach (var name in HookNames)
            if (filter == null || filter(name))
                handles.Add(Hooks.AddForward(name, (t, _) => cache.Add(new Tensor(t.Name, t.Span.ToArray(), 0, t.Shape.ToArray()))));
        try { Forward(tokens, targets, B, T); }
        finally { foreach (var h in handles) h.Dispose(); }
        return cache;
    }

    /// <summary>
    /// Makes sure activations exist for batch rows of seqLen tokens (0: n_ctx). Allocates only when the pass does
    /// not fit, then for the larger of the old and new row count and of the old and new B·T², so alternating
    /// shapes (a probe of 8 × 256 tokens, data windows of 1 × 1,024) settle on one buffer.
    /// </summary>
    public Activations EnsureBatch(int batch, int seqLen = 0)
    {
        if (seqLen <= 0) seqLen = Config.NCtx;
        long rows = (long)batch * seqLen, pairs = rows * seqLen;
        if (rows > Array.MaxLength) throw new UserError($"a pass of {batch} × {seqLen} tokens is more than .NET can hold: use a smaller batch");
        if (Cache != null)
        {
            // grow at least 2× per dimension that grows (within batch × n_ctx), so passes that lengthen one token at a
            // time (uncached sampling) reallocate O(log n_ctx) times, not once a token
            long most = (long)Math.Max(batch, Cache.RowCapacity / Config.NCtx) * Config.NCtx;
            if (rows > Cache.RowCapacity) rows = Math.Min(Math.Max(rows, 2L * Cache.RowCapacity), Math.Max(rows, Math.Min(most, Array.MaxLength)));
            if (pairs > Cache.AttentionCapacity) pairs = Math.Min(Math.Max(pairs, 2 * Cache.AttentionCapacity), Math.Max(pairs, rows * Config.NCtx));
        }
        return EnsureCapacity((int)rows, pairs);
    }

    /// <summary>
    /// Makes sure activations hold passes of up to rows token rows (B·T) and pairs query–key pairs per head (B·T²), so a
    /// caller that knows its passes' shapes (circuits: a probe of 8 × 256 tokens and data windows of 1 × 1,024) allocates
    /// once instead of growing. A buffer it replaces is collected before the new one is made: for GPT-2 small each is
    /// gigabytes, and two alive at once would double the peak.
    /// </summary>
    public Activations EnsureCapacity(int rows, long pairs)
    {
        if (Cache != null && rows <= Cache.RowCapacity && pairs <= Cache.AttentionCapacity) return Cache;
        rows = Math.Max(rows, Cache?.RowCapacity ?? 0);
        pairs = Math.Max(pairs, Cache?.AttentionCapacity ?? 0);
        if (Cache != null)
        {
            bool large = Cache.Acts.Buffer.LongLength + Cache.Scratch.Buffer.LongLength + Cache.PatternFloats > 1L << 26; // 256 MB
            Cache = null;
            Array.Clear(_results);
            Array.Clear(_keptPatterns);
            _dResults = _resultScratch = _dPattern = _dScores = null;
            _forwardViews.Clear();
            _backwardViews.Clear();
            if (large) GC.Collect();
        }
        Cache = new Activations(Config, rows, pairs);
        return Cache;
    }

    /// <summary>Logits of the last forward pass, [B·T, d_vocab].</summary>
    public Span<float> Logits => Cache!.Logits.Span[..(_b * _t * Config.DVocab)];

    /// <summary>Per-position losses of the last forward pass with targets, [B·T].</summary>
    public Span<float> Losses => Cache!.Losses.Span[..(_b * _t)];

    /// <summary>
    /// Runs tokens [B, T] (T ≤ n_ctx) through the model. With targets, returns the mean next-token
    /// loss (per-position losses in <see cref="Losses"/>); without, returns NaN and computes logits only.
    /// </summary>
    public float Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int B, int T)
    {
        var c = Config;
        if (T < 1 || T > c.NCtx) throw new ArgumentException($"sequence length {T} must be in [1, n_ctx={c.NCtx}]");
        if (tokens.Length != B * T) throw new ArgumentException($"expected {B * T} tokens, got {tokens.Length}");
        if (!targets.IsEmpty && targets.Length != B * T) throw new ArgumentException($"expected {B * T} targets, got {targets.Length}");
        CheckVocab(tokens, "token");
        CheckVocab(targets, "target token");
        var a = EnsureBatch(B, T);
        a.BeginPass(B, T);
        tokens.CopyTo(a.Tokens);
        targets.CopyTo(a.Targets);
        _b = B; _t = T;
        _hasTargets = !targets.IsEmpty;
        Array.Clear(_patternKept);
        var k = Kernels;
        int N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp;
        int ND = N * D;

        // resid_pre₀ = W_E[tokens] + W_pos[t]; shortformer positions enter only the queries and keys
        StepProfiler.Enter(StepPhase.Embed);
        Embedding.Forward(tokens, _p.WE.Span, _p.WPos.Span, a.Embed.Span, a.PosEmbed.Span, B, T, D);
        FireForward(_points.Embed, a.Embed);
        FireForward(_points.PosEmbed, a.PosEmbed);
        if (c.Shortformer) a.Embed.Span[..ND].CopyTo(a.Embedded.Span);
        else k.Add(a.Embed.Span[..ND], a.PosEmbed.Span[..ND], a.Embedded.Span[..ND]);

        for (int l = 0; l < c.NLayers; l++)
        {
            var w = _p.Blocks[l];
            var x = a.Blocks[l];
            var at = _points.Blocks[l];
            var residPre = x.ResidPre.Span[..ND];
            FireForward(at.ResidPre, x.ResidPre);

            // x_ln = ln1(resid_pre)
            var xln = Normalize(residPre, w.Ln1W, w.Ln1B, x.Ln1Out, x.Ln1Mean, x.Ln1Rstd, at.Ln1, N);
            // shortformer: queries and keys see positions; values and the residual stream do not
            ReadOnlySpan<float> xqk = xln;
            if (c.Shortformer)
            {
                StepProfiler.Enter(StepPhase.Residual);
                k.Add(xln, a.PosEmbed.Span[..ND], x.QkInput!.Span[..ND]);
                xqk = x.QkInput.Span[..ND];
            }
            // attn_out = attn(x_qk, x_ln), firing hook_q … hook_result on the way; the [B, H, T, T] scores and pattern are
            // written only where something asks for them, else attention runs tiled (the same bits)
            var attnOut = x.AttnOut.Span[..ND];
            Span<float> scores = default, pattern = default;
            if (KeepPatterns || _layerHooks[l].AsksForPattern)
            {
                a.MaterialisePatterns(l, B, T);
                scores = x.Scores!.Span;
                pattern = x.Pattern!.Span;
            }
            else if (KeepPatternsForSpeed && Activations.PatternFitsForSpeed(c, T))
            {
                // tiled, writing the pattern for the backward pass to read (short contexts: see PatternFitsForSpeed)
                a.KeepPatternOnly(l, B, T);
                pattern = x.Pattern!.Span;
            }
            else a.DropPatterns(l);
            Attention.Forward(k, xqk, xln, Weights(w), x.Q.Span, x.K.Span, x.V.Span, scores, pattern, x.SoftmaxMax.Span, x.SoftmaxSum.Span,
                x.Z.Span, attnOut, B, T, D, H, dh, _layerHooks[l]);
            FireForward(at.AttnOut, x.AttnOut);

            StepProfiler.Enter(StepPhase.Residual);
            if (!c.HasMlp)
            {
                k.Add(residPre, attnOut, x.ResidPost.Span[..ND]);
                FireForward(at.ResidPost, x.ResidPost);
                continue;
            }
            var residMid = x.ResidMid!.Span[..ND];
            k.Add(residPre, attnOut, residMid);
            FireForward(at.ResidMid, x.ResidMid);

            // resid_post = resid_mid + W_out·gelu(W_in·ln2(resid_mid))
            var x2 = Normalize(residMid, w.Ln2W, w.Ln2B, x.Ln2Out, x.Ln2Mean, x.Ln2Rstd, at.Ln2, N);
            var pre = x.Pre!.Span[..(N * M)];
            var post = x.Post!.Span[..(N * M)];
            var mlpOut = x.MlpOut!.Span[..ND];
            StepProfiler.Enter(StepPhase.MlpIn);
            Linear.Forward(k, x2, w.WIn!.Span, w.BIn!.Span, pre, N, D, M);
            FireForward(at.MlpPre, x.Pre);
            StepProfiler.Enter(StepPhase.Gelu);
            k.GeluForward(pre, post);
            FireForward(at.MlpPost, x.Post);
            StepProfiler.Enter(StepPhase.MlpOut);
            Linear.Forward(k, post, w.WOut!.Span, w.BOut!.Span, mlpOut, N, M, D);
            FireForward(at.MlpOut, x.MlpOut);
            StepProfiler.Enter(StepPhase.Residual);
            k.Add(residMid, mlpOut, x.ResidPost.Span[..ND]);
            FireForward(at.ResidPost, x.ResidPost);
        }

        // logits = ln_final(resid)·W_U + b_U
        var xf = Normalize(a.FinalResid.Span[..ND], _p.LnFinalW, _p.LnFinalB, a.LnFinalOut, a.LnFinalMean, a.LnFinalRstd, _points.LnFinal, N);
        var logits = a.Logits.Span[..(N * V)];
        StepProfiler.Enter(StepPhase.Unembed);
        Linear.Forward(k, xf, _p.WU.Span, _p.BU.Span, logits, N, D, V);
        FireForward(_points.Logits, a.Logits);
        if (targets.IsEmpty) return float.NaN;
        StepProfiler.Enter(StepPhase.Loss);
        return (float)(k.CrossEntropyForward(logits, targets, a.Losses.Span, N, V) / N);
    }

    public void ZeroGrad() => RowParallel.Clear(Grads.Buffer);

    /// <summary>
    /// Adds d(lossScale · Σ per-position losses)/dθ of the last forward pass into Grads.
    /// lossScale 1/(B·T) gives the gradient of the mean loss; a caller summing over several batches
    /// passes 1/(total positions) and does not zero in between.
    /// </summary>
    public void Backward(float lossScale)
    {
        var c = Config;
        var a = Cache is { } cache && _hasTargets ? cache : throw new InvalidOperationException("Backward needs a Forward with targets first");
        var k = Kernels;
        int B = _b, T = _t, N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp, ND = N * D;
        var dResid = a.DResid.Span[..ND];
        var dLn = a.DLn.Span[..ND];
        var xhat = a.LnXhat.Span;
        var g = a.LnG.Span;

        // loss = CE(logits);  logits = x_f·W_U + b_U
        var dLogits = a.DLogits.Span[..(N * V)];
        StepProfiler.Enter(StepPhase.LossBackward);
        k.CrossEntropyBackward(a.Logits.Span, a.Targets.AsSpan(0, N), dLogits, lossScale, N, V);
        FireBackward(_points.Logits, a.DLogits);
        var resid = a.FinalResid.Span[..ND];
        ReadOnlySpan<float> xf = c.HasLayerNorm ? a.LnFinalOut!.Span[..ND] : resid;
        StepProfiler.Enter(StepPhase.UnembedBackward);
        Linear.Backward(k, xf, _p.WU.Span, dLogits, dLn, G.WU.Span, G.BU.Span, N, D, V, accumulateDx: false);
        // x_f = ln_final(resid)
        if (c.HasLayerNorm)
        {
            FireBackward(_points.LnFinal, a.DLn);
            StepProfiler.Enter(StepPhase.LayerNormBackward);
            dResid.Clear();
            k.LayerNormBackward(resid, Sp(_p.LnFinalW), a.LnFinalMean!.Span, a.LnFinalRstd!.Span, dLn, dResid,
                Sp(G.LnFinalW), Sp(G.LnFinalB), xhat, g, N, D);
        }
        else dLn.CopyTo(dResid);
        // shortformer: d hook_pos_embed = Σ over the blocks of d x_qk (x_qk = ln1(x) + pos in every block)
        if (c.Shortformer) a.DPosEmbed.Span[..ND].Clear();

        for (int l = c.NLayers - 1; l >= 0; l--)
        {
            var w = _p.Blocks[l];
            var gw = G.Blocks[l];
            var x = a.Blocks[l];
            var at = _points.Blocks[l];
            FireBackward(at.ResidPost, a.DResid);
            // dResid holds d(resid_post). With an MLP: resid_post = resid_mid + mlp(ln2(resid_mid))
            if (c.HasMlp)
            {
                var residMid = x.ResidMid!.Span[..ND];
                ReadOnlySpan<float> x2 = c.HasLayerNorm ? x.Ln2Out!.Span[..ND] : residMid;
                var dPost = a.DMlpPost!.Span[..(N * M)];
                var dPre = a.DMlpPre!.Span[..(N * M)];
                ReadOnlySpan<float> dMlpOut = BranchGradient(at.MlpOut, a.DResid, a.DBranch);
                StepProfiler.Enter(StepPhase.MlpOutBackward);
                Linear.Backward(k, x.Post!.Span[..(N * M)], w.WOut!.Span, dMlpOut, dPost, gw.WOut!.Span, gw.BOut!.Span, N, M, D, accumulateDx: false);
                FireBackward(at.MlpPost, a.DMlpPost);
                StepProfiler.Enter(StepPhase.GeluBackward);
                k.GeluBackward(x.Pre!.Span[..(N * M)], dPost, dPre, dPre, accumulate: false);
                FireBackward(at.MlpPre, a.DMlpPre);
                StepProfiler.Enter(StepPhase.MlpInBackward);
                Linear.Backward(k, x2, w.WIn!.Span, dPre, dLn, gw.WIn!.Span, gw.BIn!.Span, N, D, M, accumulateDx: false);
                if (c.HasLayerNorm)
                {
                    FireBackward(at.Ln2, a.DLn);
                    StepProfiler.Enter(StepPhase.LayerNormBackward);
                    k.LayerNormBackward(residMid, Sp(w.Ln2W), x.Ln2Mean!.Span, x.Ln2Rstd!.Span, dLn, dResid, Sp(gw.Ln2W), Sp(gw.Ln2B), xhat, g, N, D);
                }
                else
                {
                    StepProfiler.Enter(StepPhase.ResidualBackward);
                    k.Add(dResid, dLn, dResid);
                }
                FireBackward(at.ResidMid, a.DResid);
            }
            // dResid holds d(resid_mid): resid_mid = resid_pre + attn(ln1(resid_pre))
            var residPre = x.ResidPre.Span[..ND];
            ReadOnlySpan<float> xln = c.HasLayerNorm ? x.Ln1Out!.Span[..ND] : residPre;
            ReadOnlySpan<float> xqk = c.Shortformer ? x.QkInput!.Span[..ND] : xln;
            var dQk = c.Shortformer ? a.DQkInput!.Span[..ND] : dLn;
            StepProfiler.Enter(StepPhase.ResidualBackward);
            dLn.Clear();
            dQk.Clear();
            ReadOnlySpan<float> dAttnOut = BranchGradient(at.AttnOut, a.DResid, a.DBranch);
            ReadOnlySpan<float> pattern = default; // empty: backward recomputes the tiled forward's pattern
            if (a.PatternsKept(l)) pattern = x.Pattern!.Span;
            else if (_layerHooks[l].AsksForPattern)
            {
                // a backward hook there added after the forward pass: the scores and pattern that pass would have kept, bit for bit
                a.MaterialisePatterns(l, B, T);
                k.Heads(x.Q.Span, x.K.Span, x.V.Span, x.Scores!.Span, x.Pattern!.Span, x.Z.Span, B, T, H, dh, HeadStages.Scores | HeadStages.Pattern);
                pattern = x.Pattern.Span;
            }
            Attention.Backward(k, xqk, xln, Weights(w), GradsOf(gw), x.Q.Span, x.K.Span, x.V.Span, pattern, x.SoftmaxMax.Span, x.SoftmaxSum.Span,
                x.Z.Span, dAttnOut, a.DQ!.Span, a.DK!.Span, a.DV!.Span, a.DZ!.Span, dQk, dLn, B, T, D, H, dh, _layerHooks[l]);
            if (c.Shortformer)
            {
                // x_qk = x_ln + pos
                StepProfiler.Enter(StepPhase.ResidualBackward);
                k.Add(dLn, dQk, dLn);
                k.Add(a.DPosEmbed.Span[..ND], dQk, a.DPosEmbed.Span[..ND]);
            }
            if (c.HasLayerNorm)
            {
                FireBackward(at.Ln1, a.DLn);
                StepProfiler.Enter(StepPhase.LayerNormBackward);
                k.LayerNormBackward(residPre, Sp(w.Ln1W), x.Ln1Mean!.Span, x.Ln1Rstd!.Span, dLn, dResid, Sp(gw.Ln1W), Sp(gw.Ln1B), xhat, g, N, D);
            }
            else
            {
                StepProfiler.Enter(StepPhase.ResidualBackward);
                k.Add(dResid, dLn, dResid);
            }
            FireBackward(at.ResidPre, a.DResid);
        }
        // dResid holds d(blocks.0.hook_resid_pre) = d(embed (+ pos)): both get it, each on its own where a hook may change it
        ReadOnlySpan<float> dEmbed = BranchGradient(_points.Embed, a.DResid, a.DBranch);
        ReadOnlySpan<float> dPos = dResid;
        if (c.Shortformer)
        {
            FireBackward(_points.PosEmbed, a.DPosEmbed);
            dPos = a.DPosEmbed.Span[..ND];
        }
        else if (Hooks.HasBackward(_points.PosEmbed)) dPos = BranchGradient(_points.PosEmbed, a.DResid, a.DPosEmbed);
        StepProfiler.Enter(StepPhase.EmbedBackward);
        Embedding.Backward(a.Tokens.AsSpan(0, N), dEmbed, dPos, G.WE.Span, G.WPos.Span, B, T, D);
    }

    /// <summary>x_ln = LayerNorm(x) into output (firing its hook point), or x itself for a model without LayerNorm.</summary>
    private ReadOnlySpan<float> Normalize(ReadOnlySpan<float> x, Tensor? w, Tensor? b, Tensor? output, Tensor? mean, Tensor? rstd, int point, int N)
    {
        if (!Config.HasLayerNorm) return x;
        StepProfiler.Enter(StepPhase.LayerNorm);
        int D = Config.DModel;
        Kernels.LayerNormForward(x, Sp(w), Sp(b), output!.Span, mean!.Span, rstd!.Span, N, D);
        FireForward(point, output);
        return output.Span[..(N * D)];
    }

    // ---- hook points ----

    private void FireForward(int point, Tensor activation)
    {
        if (Hooks.HasForward(point))
            Hooks.RunForward(point, _forwardViews.Of(point, activation, _b, _t), new HookPoint(_points.Names[point], _points.LayerOf(point), _b, _t));
    }

    private void FireBackward(int point, Tensor gradient)
    {
        if (Hooks.HasBackward(point))
            Hooks.RunBackward(point, _backwardViews.Of(point, gradient, _b, _t), new HookPoint(_points.Names[point], _points.LayerOf(point), _b, _t));
    }

    /// <summary>
    /// The gradient reaching one branch off the residual stream (attn_out, mlp_out, embed, pos_embed): the
    /// stream's own gradient, or, when a backward hook sits on the branch, a copy the hook may change without
    /// changing what flows past the branch.
    /// </summary>
    private ReadOnlySpan<float> BranchGradient(int point, Tensor dResid, Tensor copy)
    {
        int ND = _b * _t * Config.DModel;
        if (!Hooks.HasBackward(point)) return dResid.Span[..ND];
        dResid.Span[..ND].CopyTo(copy.Span);
        FireBackward(point, copy);
        return copy.Span[..ND];
    }

    /// <summary>A layer's attention points for <see cref="Attention"/>: its activations, their gradients, and the tensors made only for hooks.</summary>
    private sealed class LayerHooks(GptModel m, int layer) : IAttentionHooks
    {
        private readonly string _softmaxName = $"blocks.{layer}.attn.softmax"; // made once: a pass builds no string

        private int Point(AttentionPoint p) => m._points.Blocks[layer].Attention[(int)p];

        public bool HasForward(AttentionPoint p) => m.Hooks.HasForward(Point(p));
        public bool HasBackward(AttentionPoint p) => m.Hooks.HasBackward(Point(p));

        /// <summary>Whether a forward or backward hook sits on this layer's hook_attn_scores or hook_pattern: then its pattern is materialised.</summary>
        public bool AsksForPattern => HasForward(AttentionPoint.Scores) || HasForward(AttentionPoint.Pattern)
            || HasBackward(AttentionPoint.Scores) || HasBackward(AttentionPoint.Pattern);

        public void Forward(AttentionPoint p)
        {
            if (!HasForward(p)) return;
            var x = m.Cache!.Blocks[layer];
            m.FireForward(Point(p), p switch
            {
                AttentionPoint.Q => x.Q, AttentionPoint.K => x.K, AttentionPoint.V => x.V, AttentionPoint.Scores => x.Scores!,
                AttentionPoint.Pattern => x.Pattern!, AttentionPoint.Z => x.Z, _ => m._results[layer]!,
            });
        }

        public void Backward(AttentionPoint p)
        {
            if (!HasBackward(p)) return;
            var a = m.Cache!;
            m.FireBackward(Point(p), p switch
            {
                AttentionPoint.Q => a.DQ!, AttentionPoint.K => a.DK!, AttentionPoint.V => a.DV!, AttentionPoint.Z => a.DZ!,
                AttentionPoint.Scores => m._dScores!, AttentionPoint.Pattern => m._dPattern!, _ => m._dResults!,
            });
        }

        private int Rows => m.Cache!.RowCapacity;
        private int Used(int perRow) => m._b * m._t * perRow;

        public Span<float> ResultBuffer(bool gradient)
        {
            int HD = m.Config.NHeads * m.Config.DModel;
            var t = gradient ? m._dResults ??= Tensor.Zeros("d_result", Rows * HD) : m._results[layer] ??= Tensor.Zeros($"blocks.{layer}.attn.hook_result", Rows * HD);
            return t.Span[..Used(HD)];
        }

        public Span<float> ResultScratch() => (m._resultScratch ??= Tensor.Zeros("result_scratch", Rows * m.Config.DModel)).Span[..Used(m.Config.DModel)];

        // B·H·T·T of this pass, in buffers grown as the pattern's are, up to H times the largest B·T² asked for
        private long AttentionCapacity => m.Cache!.AttentionCapacity * m.Config.NHeads;
        private long AttentionUsed => (long)m._b * m.Config.NHeads * m._t * m._t;

        public Span<float> StageGradient(AttentionPoint p)
        {
            var t = p == AttentionPoint.Pattern
                ? m._dPattern = Activations.Grow(m._dPattern, "d_pattern", AttentionUsed, AttentionCapacity)
                : m._dScores = Activations.Grow(m._dScores, "d_scores", AttentionUsed, AttentionCapacity);
            return t.Span[..(int)AttentionUsed];
        }

        public Span<float> KeepPattern()
        {
            m._patternKept[layer] = true;
            var t = m._keptPatterns[layer] = Activations.Grow(m._keptPatterns[layer], _softmaxName, AttentionUsed, AttentionCapacity);
            return t.Span[..(int)AttentionUsed];
        }

        public ReadOnlySpan<float> KeptPattern() => m._patternKept[layer] ? m._keptPatterns[layer]!.Span[..(int)AttentionUsed] : default;
    }

    // ---- helpers ----

    /// <summary>An optional tensor's span, empty when absent (LayerNorm gains under LNPre).</summary>
    private static Span<float> Sp(Tensor? t) => t is null ? Span<float>.Empty : t.Span;

    private void CheckVocab(ReadOnlySpan<int> ids, string what)
    {
        int v = Config.DVocab;
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)v)
                throw new UserError($"{what} {ids[i]} at position {i} is outside the vocabulary [0, {v}): the data does not match the model's d_vocab");
    }

    private static Attention.Weights Weights(BlockParams w) =>
        new(w.WQ.Span, w.WK.Span, w.WV.Span, w.WO.Span, w.BQ.Span, w.BK.Span, w.BV.Span, w.BO.Span);

    private static Attention.Grads GradsOf(BlockParams g) =>
        new(g.WQ.Span, g.WK.Span, g.WV.Span, g.WO.Span, g.BQ.Span, g.BK.Span, g.BV.Span, g.BO.Span);
}

/// <summary>
/// The tensor views hooks are handed, one per hook point, made when a point first fires with a pass's shape
/// and kept while the shape and the buffer stay the same, so hooked passes allocate nothing in steady state.
/// </summary>
internal sealed class HookViews(HookPoints points, ModelConfig config)
{
    private readonly Tensor?[] _views = new Tensor?[points.Count];
    private readonly (int B, int T)[] _shapes = new (int, int)[points.Count];

    /// <summary>Drops every view, so buffers being replaced are not kept alive by them.</summary>
    public void Clear() => Array.Clear(_views);

    public Tensor Of(int point, Tensor buffer, int B, int T)
    {
        var v = _views[point];
        if (v != null && v.Buffer == buffer.Buffer && v.Offset == buffer.Offset && _shapes[point] == (B, T)) return v;
        _shapes[point] = (B, T);
        return _views[point] = new Tensor(points.Names[point], buffer.Buffer, buffer.Offset, HookPoints.Shape(points.ShapeKindOf(point), config, B, T));
    }
}
