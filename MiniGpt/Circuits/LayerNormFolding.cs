using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// LayerNorm folding, as TransformerLens's <c>fold_layer_norm</c>, <c>center_writing_weights</c> and
/// <c>center_unembed</c> (HookedTransformer.process_weights_) do it, so that the weight circuits of a
/// LayerNorm model read the normalised residual stream directly.
///
/// The math. LayerNorm is LN(x) = w ⊙ x̂ + b with x̂ = (x − μ(x)·1)/σ(x) (LNPre: normalise only).
/// A layer that reads it, y = LN(x)·W + c with W [d_model, out], is
///   y = x̂·diag(w)·W + (b·W + c)
/// so (1) fold: W' = diag(w)·W (row d of W times w_d), c' = c + b·W, and LN becomes LNPre.
/// (2) centre the reading weights: Σ_d x̂_d = 0, so x̂·(W' − 1·m) = x̂·W' for any row m [out]; TL takes
///     m = the mean of W' over d_model (each column of W' gets mean 0). This applies to
///     ln1 → W_Q, W_K, W_V (per head; b_Q, b_K, b_V), ln2 → W_in (b_in) and ln_final → W_U (b_U).
/// (3) centre the writing weights: every vector written into the residual stream (a row of W_E, W_pos,
///     W_O[h], W_out, and b_O, b_out) loses its mean over d_model. The residual x then becomes
///     x − μ(x)·1, which leaves x − μ(x)·1 and σ(x) — hence every LN(x) — unchanged, because every
///     reader of the residual stream is a LayerNorm (ln1, ln2, ln_final). Not done without LayerNorm.
/// (4) centre the unembedding: W_U[d, :] −= mean_v W_U[d, v] and b_U −= mean(b_U). Each position's logits
///     shift by the same constant over the vocabulary (x̂·mean + mean(b_U)), which softmax ignores: the
///     logits change but log-softmax does not. TL applies this with or without LayerNorm; so do we.
///
/// Shortformer positions with LayerNorm are not supported: there W_pos is added after ln1
/// (x_qk = LN(x) + W_pos), and (x̂·diag(w) + pos)·W cannot be written as (x̂ + pos)·W' with one W'.
/// </summary>
public static class LayerNormFolding
{
    /// <summary>
    /// A new model whose logits give the same log-softmax as <paramref name="m"/>'s (the same logits when
    /// <paramref name="centerUnembed"/> is false): normalization "LN" becomes "LNPre"; "LNPre" stays (only
    /// the centring applies); a model without LayerNorm is copied unchanged except for the unembedding
    /// centring (4).
    /// </summary>
    public static GptModel FoldLayerNorm(GptModel m, bool centerWriting = true, bool centerUnembed = true)
    {
        var c = m.Config;
        bool hasLn = c.HasLayerNorm;
        if (hasLn && c.Shortformer)
            throw new NotSupportedException("LayerNorm folding with shortformer positions is not supported: W_pos is added after ln1, so ln1's gain cannot be folded into W_Q and W_K");
        var folded = new GptModel(hasLn ? c with { NormalizationType = "LNPre" } : c, m.Kernels);
        var src = m.Params;
        var dst = folded.Params;
        foreach (var t in dst.Tensors) src[t.Name].Span.CopyTo(t.Span);

        int D = c.DModel, H = c.NHeads, dh = c.DHead;
        if (hasLn)
        {
            bool lnParams = c.HasLayerNormParams;
            for (int l = 0; l < c.NLayers; l++)
            {
                string p = $"blocks.{l}.";
                // (1)+(2) ln1 into each head's W_Q, W_K, W_V and b_Q, b_K, b_V
                var ln1W = lnParams ? src[p + "ln1.w"].Span : default;
                var ln1B = lnParams ? src[p + "ln1.b"].Span : default;
                foreach (var (w, b) in new[] { ("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V") })
                {
                    var wAll = dst[p + "attn." + w].Span;
                    var bAll = dst[p + "attn." + b].Span;
                    for (int h = 0; h < H; h++)
                        FoldReader(ln1W, ln1B, wAll.Slice(h * D * dh, D * dh), bAll.Slice(h * dh, dh), D, dh);
                }
                if (c.HasMlp) // ln2 into W_in, b_in
                    FoldReader(lnParams ? src[p + "ln2.w"].Span : default, lnParams ? src[p + "ln2.b"].Span : default,
                        dst[p + "mlp.W_in"].Span, dst[p + "mlp.b_in"].Span, D, c.DMlp);
            }
            // ln_final into W_U, b_U
            FoldReader(lnParams ? src["ln_final.w"].Span : default, lnParams ? src["ln_final.b"].Span : default,
                dst["unembed.W_U"].Span, dst["unembed.b_U"].Span, D, c.DVocab);

            if (centerWriting) // (3)
            {
                CenterRows(dst["embed.W_E"].Span, c.DVocab, D);
                CenterRows(dst["pos_embed.W_pos"].Span, c.NCtx, D);
                for (int l = 0; l < c.NLayers; l++)
                {
                    string p = $"blocks.{l}.";
                    CenterRows(dst[p + "attn.W_O"].Span, H * dh, D);
                    CenterRows(dst[p + "attn.b_O"].Span, 1, D);
                    if (c.HasMlp)
                    {
                        CenterRows(dst[p + "mlp.W_out"].Span, c.DMlp, D);
                        CenterRows(dst[p + "mlp.b_out"].Span, 1, D);
                    }
                }
            }
        }
        if (centerUnembed) // (4): each row of W_U [d_model, d_vocab] and b_U lose their mean over the vocabulary
        {
            CenterRows(dst["unembed.W_U"].Span, D, c.DVocab);
            CenterRows(dst["unembed.b_U"].Span, 1, c.DVocab);
        }
        return folded;
    }

    /// <summary>
    /// The model the weight circuits are read from, and whether LayerNorm was folded into it: a LayerNorm model
    /// without shortformer positions is folded (<see cref="FoldLayerNorm"/>); any other model (no LayerNorm, or
    /// shortformer positions, which cannot be folded) is copied with its unembedding centred (4) only, as
    /// TransformerLens's center_unembed does whatever fold_ln does.
    /// </summary>
    public static (GptModel Model, bool Folded) ForCircuits(GptModel m) =>
        m.Config.HasLayerNorm && !m.Config.Shortformer ? (FoldLayerNorm(m), true) : (CenterUnembed(m), false);

    /// <summary>A copy of <paramref name="m"/> whose W_U rows and b_U have mean 0 over the vocabulary (4); nothing else changes, so the log-softmax is the same.</summary>
    public static GptModel CenterUnembed(GptModel m)
    {
        var c = m.Config;
        var copy = new GptModel(c, m.Kernels);
        foreach (var t in copy.Params.Tensors) m.Params[t.Name].Span.CopyTo(t.Span);
        CenterRows(copy.Params["unembed.W_U"].Span, c.DModel, c.DVocab);
        CenterRows(copy.Params["unembed.b_U"].Span, 1, c.DVocab);
        return copy;
    }

    // W [D, outDim], c [outDim] read LN(x) = w ⊙ x̂ + b (w, b empty for LNPre: w = 1, b = 0):
    //   c ← c + b·W;  W ← diag(w)·W;  W[:, j] ← W[:, j] − mean_d W[d, j]   (in double, written back as float)
    private static void FoldReader(ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> W, Span<float> c, int D, int outDim)
    {
        var colSum = new double[outDim];
        var bias = new double[outDim];
        for (int j = 0; j < outDim; j++) bias[j] = c[j];
        for (int d = 0; d < D; d++)
        {
            var row = W.Slice(d * outDim, outDim);
            double bd = b.IsEmpty ? 0 : b[d], wd = w.IsEmpty ? 1 : w[d];
            for (int j = 0; j < outDim; j++)
            {
                bias[j] += bd * row[j];
                double scaled = wd * row[j];
                row[j] = (float)scaled;
                colSum[j] += scaled;
            }
        }
        for (int j = 0; j < outDim; j++) c[j] = (float)bias[j];
        for (int d = 0; d < D; d++)
        {
            var row = W.Slice(d * outDim, outDim);
            for (int j = 0; j < outDim; j++) row[j] = (float)(row[j] - colSum[j] / D);
        }
    }

    // M [rows, cols]: each row minus its mean
    private static void CenterRows(Span<float> m, int rows, int cols)
    {
        for (int i = 0; i < rows; i++)
        {
            var row = m.Slice(i * cols, cols);
            double s = 0;
            for (int j = 0; j < cols; j++) s += row[j];
            double mean = s / cols;
            for (int j = 0; j < cols; j++) row[j] = (float)(row[j] - mean);
        }
    }
}
