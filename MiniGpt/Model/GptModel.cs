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

    private readonly ModelParams _p, _g;
    private int _b, _t; // the shape of the last forward pass

    public GptModel(ModelConfig config)
    {
        Config = config.Validate();
        Params = ParameterLayout.Declare(config).Build();
        Grads = ParameterLayout.Declare(config).Build();
        _p = ModelParams.From(Params, config);
        _g = ModelParams.From(Grads, config);
    }

    public static GptModel Create(ModelConfig config, ulong seed)
    {
        var m = new GptModel(config);
        var rng = new Rng(seed);
        ParameterLayout.Initialise(m.Params, config, ref rng);
        return m;
    }

    public long ParameterCount => Params.Buffer.LongLength;
    public int LastBatch => _b;
    public int LastSeqLen => _t;

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
        int N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp;
        int ND = N * D;

        Embedding.Forward(tokens, _p.WE.Span, _p.WPos.Span, a.Embed.Span, a.PosEmbed.Span, a.Embedded.Span, B, T, D, addPos: !c.Shortformer);

        for (int l = 0; l < c.NLayers; l++)
        {
            var w = _p.Blocks[l];
            var x = a.Blocks[l];
            var residPre = x.ResidPre.Span[..ND];

            // x_ln = ln1(resid_pre)
            ReadOnlySpan<float> xln = residPre;
            if (c.HasLayerNorm)
            {
                LayerNorm.Forward(residPre, Sp(w.Ln1W), Sp(w.Ln1B), x.Ln1Out!.Span, x.Ln1Mean!.Span, x.Ln1Rstd!.Span, N, D);
                xln = x.Ln1Out.Span[..ND];
            }
            // shortformer: queries and keys see positions; values and the residual stream do not
            ReadOnlySpan<float> xqk = xln;
            if (c.Shortformer)
            {
                TensorPrimitives.Add(xln, a.PosEmbed.Span[..ND], x.QkInput!.Span[..ND]);
                xqk = x.QkInput.Span[..ND];
            }
            var attnOut = x.AttnOut.Span[..ND];
            Attention.Forward(xqk, xln, Weights(w), x.Q.Span, x.K.Span, x.V.Span, x.Scores.Span, x.Pattern.Span, x.Z.Span,
                attnOut, B, T, D, H, dh);

            if (!c.HasMlp)
            {
                TensorPrimitives.Add(residPre, attnOut, x.ResidPost.Span[..ND]);
                continue;
            }
            var residMid = x.ResidMid!.Span[..ND];
            TensorPrimitives.Add(residPre, attnOut, residMid);

            // resid_post = resid_mid + W_out·gelu(W_in·ln2(resid_mid))
            ReadOnlySpan<float> x2 = residMid;
            if (c.HasLayerNorm)
            {
                LayerNorm.Forward(residMid, Sp(w.Ln2W), Sp(w.Ln2B), x.Ln2Out!.Span, x.Ln2Mean!.Span, x.Ln2Rstd!.Span, N, D);
                x2 = x.Ln2Out.Span[..ND];
            }
            var pre = x.Pre!.Span[..(N * M)];
            var post = x.Post!.Span[..(N * M)];
            var mlpOut = x.MlpOut!.Span[..ND];
            Linear.Forward(x2, w.WIn!.Span, w.BIn!.Span, pre, N, D, M);
            Gelu.Forward(pre, post);
            Linear.Forward(post, w.WOut!.Span, w.BOut!.Span, mlpOut, N, M, D);
            TensorPrimitives.Add(residMid, mlpOut, x.ResidPost.Span[..ND]);
        }

        ReadOnlySpan<float> xf = a.FinalResid.Span[..ND];
        if (c.HasLayerNorm)
        {
            LayerNorm.Forward(xf, Sp(_p.LnFinalW), Sp(_p.LnFinalB), a.LnFinalOut!.Span, a.LnFinalMean!.Span, a.LnFinalRstd!.Span, N, D);
            xf = a.LnFinalOut.Span[..ND];
        }
        var logits = a.Logits.Span[..(N * V)];
        Linear.Forward(xf, _p.WU.Span, _p.BU.Span, logits, N, D, V);
        if (targets.IsEmpty) return float.NaN;
        return (float)(CrossEntropy.Forward(logits, targets, a.Losses.Span, N, V) / N);
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
        var a = Cache ?? throw new InvalidOperationException("Backward needs a Forward with targets first");
        int B = _b, T = _t, N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, M = c.DMlp, ND = N * D;
        var dResid = a.DResid.Span[..ND];
        var dLn = a.DLn.Span[..ND];
        var xhat = a.LnXhat.Span;
        var g = a.LnG.Span;

        // loss = CE(logits);  logits = x_f·W_U + b_U
        var dLogits = a.DLogits.Span[..(N * V)];
        CrossEntropy.Backward(a.Logits.Span, a.Targets.AsSpan(0, N), dLogits, lossScale, N, V);
        var resid = a.FinalResid.Span[..ND];
        ReadOnlySpan<float> xf = c.HasLayerNorm ? a.LnFinalOut!.Span[..ND] : resid;
        Linear.Backward(xf, _p.WU.Span, dLogits, dLn, _g.WU.Span, _g.BU.Span, N, D, V, accumulateDx: false);
        // x_f = ln_final(resid)
        if (c.HasLayerNorm)
        {
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
            // dResid holds d(resid_post). With an MLP: resid_post = resid_mid + mlp(ln2(resid_mid))
            if (c.HasMlp)
            {
                var residMid = x.ResidMid!.Span[..ND];
                ReadOnlySpan<float> x2 = c.HasLayerNorm ? x.Ln2Out!.Span[..ND] : residMid;
                var dPost = a.DMlpPost!.Span[..(N * M)];
                var dPre = a.DMlpPre!.Span[..(N * M)];
                Linear.Backward(x.Post!.Span[..(N * M)], w.WOut!.Span, dResid, dPost, gw.WOut!.Span, gw.BOut!.Span, N, M, D, accumulateDx: false);
                Gelu.Backward(x.Pre!.Span[..(N * M)], dPost, dPre, dPre, accumulate: false);
                Linear.Backward(x2, w.WIn!.Span, dPre, dLn, gw.WIn!.Span, gw.BIn!.Span, N, D, M, accumulateDx: false);
                if (c.HasLayerNorm)
                    LayerNorm.Backward(residMid, Sp(w.Ln2W), x.Ln2Mean!.Span, x.Ln2Rstd!.Span, dLn, dResid, Sp(gw.Ln2W), Sp(gw.Ln2B), xhat, g, N, D);
                else TensorPrimitives.Add(dResid, dLn, dResid);
            }
            // dResid holds d(resid_mid): resid_mid = resid_pre + attn(ln1(resid_pre))
            var residPre = x.ResidPre.Span[..ND];
            ReadOnlySpan<float> xln = c.HasLayerNorm ? x.Ln1Out!.Span[..ND] : residPre;
            ReadOnlySpan<float> xqk = c.Shortformer ? x.QkInput!.Span[..ND] : xln;
            var dQk = c.Shortformer ? a.DQkInput!.Span[..ND] : dLn;
            dLn.Clear();
            dQk.Clear();
            Attention.Backward(xqk, xln, Weights(w), GradsOf(gw), x.Q.Span, x.K.Span, x.V.Span, x.Pattern.Span, x.Z.Span, dResid,
                a.DQ!.Span, a.DK!.Span, a.DV!.Span, a.DZ!.Span, dQk, dLn, B, T, D, H, dh);
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
                LayerNorm.Backward(residPre, Sp(w.Ln1W), x.Ln1Mean!.Span, x.Ln1Rstd!.Span, dLn, dResid, Sp(gw.Ln1W), Sp(gw.Ln1B), xhat, g, N, D);
            else TensorPrimitives.Add(dResid, dLn, dResid);
        }
        // dResid holds d(blocks.0.hook_resid_pre) = d(W_E[tokens] (+ W_pos))
        Embedding.Backward(a.Tokens.AsSpan(0, N), dResid, _g.WE.Span, _g.WPos.Span, B, T, D, addPos: !c.Shortformer);
    }
}
