using System.Numerics.Tensors;
using MiniGpt.Layers;
using MiniGpt.Tensors;

namespace MiniGpt.Model;

/// <summary>
/// A GPT in the pre-LN residual form, in TransformerLens layout:
///   x = W_E[tokens] (+ W_pos)                       hook_embed, hook_pos_embed, blocks.0.hook_resid_pre
///   for each block:  x = x + attn(ln1(x))          hook_attn_out, hook_resid_mid
///                    x = x + mlp(ln2(x))           hook_mlp_out, hook_resid_post   (skipped if attn_only)
///   logits = ln_final(x)·W_U + b_U;  loss = mean cross-entropy of the next token
/// Forward keeps every activation (see <see cref="Activations"/>); Backward walks the same steps in
/// reverse, calling each layer's hand-written Backward, and accumulates into <see cref="Grads"/>.
/// Set a breakpoint in any Layers/*.Backward to read a layer's tensors mid-step.
/// </summary>
public sealed class GptModel
{
    public ModelConfig Config { get; }
    public Arena Params { get; }
    public Arena Grads { get; }
    public Activations? Cache { get; private set; }

    /// <summary>Forward and backward hooks by TransformerLens hook name (see <see cref="HookNames"/>).</summary>
    public HookRegistry Hooks { get; }

    private readonly ModelParams _p, _g;
    private readonly HashSet<string> _hookNames;
    private int _b, _t; // the shape of the last forward pass
    private bool _hasTargets; // whether that pass had targets (Backward needs them)
    private float[]?[] _results = []; // hook_result per layer, allocated only when something asks for it
    private float[]? _dPattern, _dScores; // gradients at hook_pattern/hook_attn_scores, only for backward hooks

    public GptModel(ModelConfig config)
    {
        Config = config.Validate();
        Params = ParameterLayout.Declare(config).Build();
        Grads = ParameterLayout.Declare(config).Build();
        _p = ModelParams.From(Params, config);
        _g = ModelParams.From(Grads, config);
        HookNames = ListHookNames(config);
        _hookNames = new HashSet<string>(HookNames, StringComparer.Ordinal);
        Hooks = new HookRegistry(_hookNames.Contains);
    }

    /// <summary>Every hook point, in the order a forward pass reaches them.</summary>
    public IReadOnlyList<string> HookNames { get; }

    private static List<string> ListHookNames(ModelConfig c)
    {
        var n = new List<string> { "hook_embed", "hook_pos_embed" };
        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            n.Add(p + "hook_resid_pre");
            if (c.HasLayerNorm) n.Add(p + "ln1.hook_normalized");
            n.AddRange([p + "attn.hook_q", p + "attn.hook_k", p + "attn.hook_v", p + "attn.hook_attn_scores", p + "attn.hook_pattern",
                p + "attn.hook_z", p + "attn.hook_result", p + "hook_attn_out"]);
            if (c.HasMlp)
            {
                n.Add(p + "hook_resid_mid");
                if (c.HasLayerNorm) n.Add(p + "ln2.hook_normalized");
                n.AddRange([p + "mlp.hook_pre", p + "mlp.hook_post", p + "hook_mlp_out"]);
            }
            n.Add(p + "hook_resid_post");
        }
        if (c.HasLayerNorm) n.Add("ln_final.hook_normalized");
        n.Add("logits");
        return n;
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
                handles.Add(Hooks.AddForward(name, (t, _) => cache.Add(new Tensor(t.Name, t.Span.ToArray(), 0, t.Shape))));
        try { Forward(tokens, targets, B, T); }
        finally { foreach (var h in handles) h.Dispose(); }
        return cache;
    }

    // a view of the leading rows of a buffer with this pass's shape, handed to hooks
    private static Tensor View(string name, Tensor t, params int[] shape) => new(name, t.Buffer, t.Offset, shape);

    private void FireForward(string name, Tensor buffer, int layer, params int[] shape)
    {
        if (Hooks.HasForward(name)) Hooks.RunForward(name, View(name, buffer, shape), new HookPoint(name, layer, _b, _t));
    }

    private void FireBackward(string name, Tensor buffer, int layer, params int[] shape)
    {
        if (Hooks.HasBackward(name)) Hooks.RunBackward(name, View(name, buffer, shape), new HookPoint(name, layer, _b, _t));
    }

    public static GptModel Create(ModelConfig config, ulong seed)
    {
        var m = new GptModel(config);
        var rng = new Rng(seed);
        ParameterLayout.Initialise(m.Params, config, ref rng);
        return m;
    }

    public long ParameterCount => Params.Buffer.LongLength;

    /// <summary>Makes sure activations exist for a batch of this size (allocates only when it grows).</summary>
    public Activations EnsureBatch(int batch)
    {
        if (Cache == null || Cache.BatchCapacity < batch) Cache = new Activations(Config, batch);
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
        var a = EnsureBatch(B);
        tokens.CopyTo(a.Tokens);
        targets.CopyTo(a.Targets);
        _b = B; _t = T;
        _hasTargets = !targets.IsEmpty;
        int N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp;
        int ND = N * D;

        bool hooked = !Hooks.IsEmpty;
        Embedding.Forward(tokens, _p.WE.Span, _p.WPos.Span, a.Embed.Span, a.PosEmbed.Span, a.Embedded.Span, B, T, D, addPos: !c.Shortformer);
        if (hooked)
        {
            FireForward("hook_embed", a.Embed, -1, B, T, D);
            FireForward("hook_pos_embed", a.PosEmbed, -1, B, T, D);
            if (c.Shortformer) a.Embed.Span[..ND].CopyTo(a.Embedded.Span);
            else TensorPrimitives.Add(a.Embed.Span[..ND], a.PosEmbed.Span[..ND], a.Embedded.Span[..ND]);
        }

        for (int l = 0; l < c.NLayers; l++)
        {
            var w = _p.Blocks[l];
            var x = a.Blocks[l];
            var residPre = x.ResidPre.Span[..ND];
            string hp = hooked ? $"blocks.{l}." : "";
            if (hooked) FireForward(hp + "hook_resid_pre", x.ResidPre, l, B, T, D);

            // x_ln = ln1(resid_pre)
            ReadOnlySpan<float> xln = residPre;
            if (c.HasLayerNorm)
            {
                LayerNorm.Forward(residPre, Sp(w.Ln1W), Sp(w.Ln1B), x.Ln1Out!.Span, x.Ln1Mean!.Span, x.Ln1Rstd!.Span, N, D);
                xln = x.Ln1Out.Span[..ND];
                if (hooked) FireForward(hp + "ln1.hook_normalized", x.Ln1Out, l, B, T, D);
            }
            // shortformer: queries and keys see positions; values and the residual stream do not
            ReadOnlySpan<float> xqk = xln;
            if (c.Shortformer)
            {
                TensorPrimitives.Add(xln, a.PosEmbed.Span[..ND], x.QkInput!.Span[..ND]);
                xqk = x.QkInput.Span[..ND];
            }
            var attnOut = x.AttnOut.Span[..ND];
            if (!hooked)
                Attention.Forward(xqk, xln, Weights(w), x.Q.Span, x.K.Span, x.V.Span, x.Scores.Span, x.Pattern.Span, x.Z.Span,
                    attnOut, B, T, D, H, dh);
            else
                HookedAttention(l, hp, xqk, xln, w, x, attnOut);

            if (!c.HasMlp)
            {
                AddResidual(residPre, attnOut, x.ResidPost.Span[..ND]);
                if (hooked) FireForward(hp + "hook_resid_post", x.ResidPost, l, B, T, D);
                continue;
            }
            var residMid = x.ResidMid!.Span[..ND];
            AddResidual(residPre, attnOut, residMid);
            if (hooked) FireForward(hp + "hook_resid_mid", x.ResidMid, l, B, T, D);

            // resid_post = resid_mid + W_out·gelu(W_in·ln2(resid_mid))
            ReadOnlySpan<float> x2 = residMid;
            if (c.HasLayerNorm)
            {
                LayerNorm.Forward(residMid, Sp(w.Ln2W), Sp(w.Ln2B), x.Ln2Out!.Span, x.Ln2Mean!.Span, x.Ln2Rstd!.Span, N, D);
                x2 = x.Ln2Out.Span[..ND];
                if (hooked) FireForward(hp + "ln2.hook_normalized", x.Ln2Out, l, B, T, D);
            }
            var pre = x.Pre!.Span[..(N * M)];
            var post = x.Post!.Span[..(N * M)];
            var mlpOut = x.MlpOut!.Span[..ND];
            Linear.Forward(x2, w.WIn!.Span, w.BIn!.Span, pre, N, D, M);
            if (hooked) FireForward(hp + "mlp.hook_pre", x.Pre, l, B, T, M);
            Gelu.Forward(pre, post);
            if (hooked) FireForward(hp + "mlp.hook_post", x.Post, l, B, T, M);
            Linear.Forward(post, w.WOut!.Span, w.BOut!.Span, mlpOut, N, M, D);
            if (hooked) FireForward(hp + "hook_mlp_out", x.MlpOut, l, B, T, D);
            AddResidual(residMid, mlpOut, x.ResidPost.Span[..ND]);
            if (hooked) FireForward(hp + "hook_resid_post", x.ResidPost, l, B, T, D);
        }

        ReadOnlySpan<float> xf = a.FinalResid.Span[..ND];
        if (c.HasLayerNorm)
        {
            LayerNorm.Forward(xf, Sp(_p.LnFinalW), Sp(_p.LnFinalB), a.LnFinalOut!.Span, a.LnFinalMean!.Span, a.LnFinalRstd!.Span, N, D);
            xf = a.LnFinalOut.Span[..ND];
            if (hooked) FireForward("ln_final.hook_normalized", a.LnFinalOut, -1, B, T, D);
        }
        var logits = a.Logits.Span[..(N * V)];
        Linear.Forward(xf, _p.WU.Span, _p.BU.Span, logits, N, D, V);
        if (hooked) FireForward("logits", a.Logits, -1, B, T, V);
        if (targets.IsEmpty) return float.NaN;
        return (float)(CrossEntropy.Forward(logits, targets, a.Losses.Span, N, V) / N);
    }

    // Attention stage by stage, with a hook after each (the fast path runs the same stages without them).
    private void HookedAttention(int l, string hp, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xln, BlockParams w, BlockActs x, Span<float> attnOut)
    {
        int B = _b, T = _t, D = Config.DModel, H = Config.NHeads, dh = Config.DHead, N = B * T;
        var wts = Weights(w);
        Attention.ProjectQkv(xqk, xln, wts, x.Q.Span, x.K.Span, x.V.Span, B, T, D, H, dh);
        FireForward(hp + "attn.hook_q", x.Q, l, B, T, H, dh);
        FireForward(hp + "attn.hook_k", x.K, l, B, T, H, dh);
        FireForward(hp + "attn.hook_v", x.V, l, B, T, H, dh);
        Attention.Scores(x.Q.Span, x.K.Span, x.Scores.Span, B, T, H, dh);
        FireForward(hp + "attn.hook_attn_scores", x.Scores, l, B, H, T, T);
        Attention.Pattern(x.Scores.Span, x.Pattern.Span, B, T, H);
        FireForward(hp + "attn.hook_pattern", x.Pattern, l, B, H, T, T);
        Attention.Mix(x.Pattern.Span, x.V.Span, x.Z.Span, B, T, H, dh);
        FireForward(hp + "attn.hook_z", x.Z, l, B, T, H, dh);
        if (Hooks.HasForward(hp + "attn.hook_result"))
        {
            if (_results.Length != Config.NLayers) _results = new float[]?[Config.NLayers];
            var buf = _results[l] is { } r && r.Length >= N * H * D ? r : (_results[l] = new float[Cache!.BatchCapacity * Config.NCtx * H * D]);
            var result = new Tensor(hp + "attn.hook_result", buf, 0, B, T, H, D);
            Attention.Results(x.Z.Span, w.WO.Span, result.Span, B, T, D, H, dh);
            var before = result.Span.ToArray();
            FireForward(result.Name, result, l, B, T, H, D);
            // attn_out is z·W_O + b_O, as on the fast path, unless a hook changed a head's result: then it is
            // rebuilt from the results. Reading (caching) hook_result thus leaves every number bitwise unchanged.
            if (result.Span.SequenceEqual(before)) Linear.Forward(x.Z.Span[..(N * H * dh)], w.WO.Span, w.BO.Span, attnOut, N, H * dh, D);
            else Attention.OutputFromResults(result.Span, w.BO.Span, attnOut, N, D, H);
        }
        else Linear.Forward(x.Z.Span[..(N * H * dh)], w.WO.Span, w.BO.Span, attnOut, N, H * dh, D);
        FireForward(hp + "hook_attn_out", x.AttnOut, l, B, T, D);
    }

    // The gradient reaching one residual branch (attn_out or mlp_out): dResid itself, or a copy that a
    // backward hook may change without changing what flows past the branch.
    private ReadOnlySpan<float> BranchGradient(bool hooked, string name, Activations a, int l)
    {
        int ND = _b * _t * Config.DModel;
        if (!hooked || !Hooks.HasBackward(name)) return a.DResid.Span[..ND];
        a.DResid.Span[..ND].CopyTo(a.DBranch.Span);
        FireBackward(name, a.DBranch, l, _b, _t, Config.DModel);
        return a.DBranch.Span[..ND];
    }

    private void HookedAttentionBackward(int l, string hp, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xln, BlockParams w, BlockParams gw,
        BlockActs x, Activations a, Span<float> dQk, Span<float> dLn)
    {
        int B = _b, T = _t, D = Config.DModel, H = Config.NHeads, dh = Config.DHead, TT = B * H * T * T;
        bool wantP = Hooks.HasBackward(hp + "attn.hook_pattern"), wantS = Hooks.HasBackward(hp + "attn.hook_attn_scores");
        if ((wantP || wantS) && (_dPattern == null || _dPattern.Length < TT)) { _dPattern = new float[TT]; _dScores = new float[TT]; }
        var dOut = BranchGradient(true, hp + "hook_attn_out", a, l);
        Attention.Backward(xqk, xln, Weights(w), GradsOf(gw), x.Q.Span, x.K.Span, x.V.Span, x.Pattern.Span, x.Z.Span, dOut,
            a.DQ!.Span, a.DK!.Span, a.DV!.Span, a.DZ!.Span, dQk, dLn, B, T, D, H, dh,
            wantP ? _dPattern.AsSpan(0, TT) : default, wantS ? _dScores.AsSpan(0, TT) : default,
            afterDz: () => FireBackward(hp + "attn.hook_z", a.DZ!, l, B, T, H, dh),
            afterDqkv: () =>
            {
                // seen after the softmax backward, so changes here reach W_Q/W_K/W_V and the inputs but not the pattern's gradient
                if (wantP) FireBackward(hp + "attn.hook_pattern", new Tensor("d_pattern", _dPattern!, 0, TT), l, B, H, T, T);
                if (wantS) FireBackward(hp + "attn.hook_attn_scores", new Tensor("d_scores", _dScores!, 0, TT), l, B, H, T, T);
                FireBackward(hp + "attn.hook_q", a.DQ!, l, B, T, H, dh);
                FireBackward(hp + "attn.hook_k", a.DK!, l, B, T, H, dh);
                FireBackward(hp + "attn.hook_v", a.DV!, l, B, T, H, dh);
            });
    }

    /// <summary>dst = a + b for the residual stream: in parallel chunks with the fast kernels (elementwise, so the same bits).</summary>
    private static void AddResidual(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        if (Kernels.Fast) RowParallel.Add(a, b, dst);
        else TensorPrimitives.Add(a, b, dst);
    }

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

    public void ZeroGrad() => Array.Clear(Grads.Buffer);

    /// <summary>
    /// Adds d(lossScale · Σ per-position losses)/dθ of the last forward pass into Grads.
    /// lossScale 1/(B·T) gives the gradient of the mean loss; a caller summing over several batches
    /// passes 1/(total positions) and does not zero in between.
    /// </summary>
    public void Backward(float lossScale)
    {
        var c = Config;
        var a = Cache is { } cache && _hasTargets ? cache : throw new InvalidOperationException("Backward needs a Forward with targets first");
        int B = _b, T = _t, N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp, ND = N * D;
        var dResid = a.DResid.Span[..ND];
        var dLn = a.DLn.Span[..ND];
        var xhat = a.LnXhat.Span;
        var g = a.LnG.Span;

        // loss = CE(logits);  logits = x_f·W_U + b_U
        var dLogits = a.DLogits.Span[..(N * V)];
        CrossEntropy.Backward(a.Logits.Span, a.Targets.AsSpan(0, N), dLogits, lossScale, N, V);
        bool hooked = Hooks.AnyBackward;
        if (hooked) FireBackward("logits", a.DLogits, -1, B, T, V);
        var resid = a.FinalResid.Span[..ND];
        ReadOnlySpan<float> xf = c.HasLayerNorm ? a.LnFinalOut!.Span[..ND] : resid;
        Linear.Backward(xf, _p.WU.Span, dLogits, dLn, _g.WU.Span, _g.BU.Span, N, D, V, accumulateDx: false);
        // x_f = ln_final(resid)
        if (c.HasLayerNorm)
        {
            if (hooked) FireBackward("ln_final.hook_normalized", a.DLn, -1, B, T, D);
            dResid.Clear();
            LayerNorm.Backward(resid, Sp(_p.LnFinalW), a.LnFinalMean!.Span, a.LnFinalRstd!.Span, dLn, dResid,
                Sp(_g.LnFinalW), Sp(_g.LnFinalB), xhat, g, N, D);
        }
        else dLn.CopyTo(dResid);

        for (int l = c.NLayers - 1; l >= 0; l--)
        {
            var w = _p.Blocks[l];
            var gw = _g.Blocks[l];
            var x = a.Blocks[l];
            string hp = hooked ? $"blocks.{l}." : "";
            if (hooked) FireBackward(hp + "hook_resid_post", a.DResid, l, B, T, D);
            // dResid holds d(resid_post). With an MLP: resid_post = resid_mid + mlp(ln2(resid_mid))
            if (c.HasMlp)
            {
                var residMid = x.ResidMid!.Span[..ND];
                ReadOnlySpan<float> x2 = c.HasLayerNorm ? x.Ln2Out!.Span[..ND] : residMid;
                var dPost = a.DMlpPost!.Span[..(N * M)];
                var dPre = a.DMlpPre!.Span[..(N * M)];
                ReadOnlySpan<float> dMlpOut = BranchGradient(hooked, hp + "hook_mlp_out", a, l);
                Linear.Backward(x.Post!.Span[..(N * M)], w.WOut!.Span, dMlpOut, dPost, gw.WOut!.Span, gw.BOut!.Span, N, M, D, accumulateDx: false);
                if (hooked) FireBackward(hp + "mlp.hook_post", a.DMlpPost, l, B, T, M);
                Gelu.Backward(x.Pre!.Span[..(N * M)], dPost, dPre, dPre, accumulate: false);
                if (hooked) FireBackward(hp + "mlp.hook_pre", a.DMlpPre, l, B, T, M);
                Linear.Backward(x2, w.WIn!.Span, dPre, dLn, gw.WIn!.Span, gw.BIn!.Span, N, D, M, accumulateDx: false);
                if (c.HasLayerNorm)
                {
                    if (hooked) FireBackward(hp + "ln2.hook_normalized", a.DLn, l, B, T, D);
                    LayerNorm.Backward(residMid, Sp(w.Ln2W), x.Ln2Mean!.Span, x.Ln2Rstd!.Span, dLn, dResid, Sp(gw.Ln2W), Sp(gw.Ln2B), xhat, g, N, D);
                }
                else AddResidual(dResid, dLn, dResid);
                if (hooked) FireBackward(hp + "hook_resid_mid", a.DResid, l, B, T, D);
            }
            // dResid holds d(resid_mid): resid_mid = resid_pre + attn(ln1(resid_pre))
            var residPre = x.ResidPre.Span[..ND];
            ReadOnlySpan<float> xln = c.HasLayerNorm ? x.Ln1Out!.Span[..ND] : residPre;
            ReadOnlySpan<float> xqk = c.Shortformer ? x.QkInput!.Span[..ND] : xln;
            var dQk = c.Shortformer ? a.DQkInput!.Span[..ND] : dLn;
            dLn.Clear();
            dQk.Clear();
            if (!hooked)
                Attention.Backward(xqk, xln, Weights(w), GradsOf(gw), x.Q.Span, x.K.Span, x.V.Span, x.Pattern.Span, x.Z.Span, dResid,
                    a.DQ!.Span, a.DK!.Span, a.DV!.Span, a.DZ!.Span, dQk, dLn, B, T, D, H, dh);
            else
                HookedAttentionBackward(l, hp, xqk, xln, w, gw, x, a, dQk, dLn);
            if (c.Shortformer)
            {
                // x_qk = x_ln + W_pos[t]
                TensorPrimitives.Add(dLn, dQk, dLn);
                var dPos = _g.WPos.Span;
                for (int n = 0; n < N; n++)
                {
                    var row = dPos.Slice(n % T * D, D);
                    TensorPrimitives.Add(row, dQk.Slice(n * D, D), row);
                }
            }
            if (c.HasLayerNorm)
            {
                if (hooked) FireBackward(hp + "ln1.hook_normalized", a.DLn, l, B, T, D);
                LayerNorm.Backward(residPre, Sp(w.Ln1W), x.Ln1Mean!.Span, x.Ln1Rstd!.Span, dLn, dResid, Sp(gw.Ln1W), Sp(gw.Ln1B), xhat, g, N, D);
            }
            else AddResidual(dResid, dLn, dResid);
            if (hooked) FireBackward(hp + "hook_resid_pre", a.DResid, l, B, T, D);
        }
        // dResid holds d(blocks.0.hook_resid_pre) = d(W_E[tokens] (+ W_pos))
        if (hooked)
        {
            FireBackward("hook_embed", a.DResid, -1, B, T, D);
            if (!c.Shortformer) FireBackward("hook_pos_embed", a.DResid, -1, B, T, D); // shortformer: W_pos gets its gradient through the q/k inputs
        }
        Embedding.Backward(a.Tokens.AsSpan(0, N), dResid, _g.WE.Span, _g.WPos.Span, B, T, D, addPos: !c.Shortformer);
    }
}
