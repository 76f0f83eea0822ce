using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>The logits split into path terms: Names[k] and its logits Logits[k], [B·T·d_vocab] row-major.</summary>
public sealed record PathTerms(string[] Names, float[][] Logits);

/// <summary>
/// The path expansion of Elhage et al. 2021 ("A Mathematical Framework for Transformer Circuits",
/// sections "Zero/One/Two-Layer Attention-Only Transformers") of an attention-only model with one or two
/// layers and no LayerNorm, evaluated with the model's actual attention patterns A^{l,h} (from a cache of
/// the same run). With x₀ the residual stream after the embedding (W_E[tok] + W_pos, or W_E[tok] alone for
/// shortformer positions, which enter only queries and keys), row vectors, and no biases:
///   logits = x₀·W_U                                                        "direct"
///          + Σ_h A^{0,h}·x₀·W_V^{0,h}·W_O^{0,h}·W_U                         "L0H{h}"
///          + Σ_h A^{1,h}·x₀·W_V^{1,h}·W_O^{1,h}·W_U                         "L1H{h}"   (2 layers)
///          + Σ_{h0,h1} A^{1,h1}·A^{0,h0}·x₀·W_V^{0,h0}W_O^{0,h0}·W_V^{1,h1}W_O^{1,h1}·W_U
///                                                                            "L0H{h0}->L1H{h1}" (virtual heads: V-composition)
///          + bias                                                            "bias"
/// where A·X mixes positions (Σ_j A[i,j]·X[j]). Every bias is collected in the one position-independent
/// "bias" term: b_U + (c₀ + c₁)·W_U with c₀ = b_O⁰ + Σ_h b_V^{0,h}·W_O^{0,h} (layer 0's constant output,
/// since each attention row sums to 1) and c₁ = b_O¹ + Σ_h (c₀·W_V^{1,h} + b_V^{1,h})·W_O^{1,h} (layer 1's
/// constant output, including c₀ read through its values). Q- and K-composition live in the attention
/// patterns, which are frozen; so the terms sum to the model's logits exactly (up to float rounding).
/// A "single-head" term is thus the head reading the embedding only; what it reads from layer 0 is in the
/// virtual-head terms.
/// </summary>
public static class PathExpansion
{
    /// <summary>Splits the logits of tokens [B, T] into path terms (see the class summary for the terms and their order).</summary>
    public static PathTerms Expand(GptModel model, int[] tokens, int B, int T) => ExpandWithLogits(model, tokens, B, T).Terms;

    /// <summary>
    /// For each term of <see cref="Expand"/> (same order), the mean cross-entropy increase over the B·T
    /// positions when that term alone is subtracted from the logits, attention patterns frozen:
    /// CE(logits − term_k, targets) − CE(logits, targets), with logits the model's own. A term that is 0
    /// scores exactly 0; removing a layer-0 head's term leaves its virtual-head terms in place.
    /// </summary>
    public static double[] TermImportance(GptModel model, int[] tokens, int[] targets, int B, int T)
    {
        if (targets.Length != B * T) throw new ArgumentException($"expected {B * T} targets, got {targets.Length}");
        int V = model.Config.DVocab;
        foreach (int y in targets)
            if ((uint)y >= (uint)V) throw new ArgumentException($"target token {y} is outside the vocabulary [0, {V})");
        var (terms, logits) = ExpandWithLogits(model, tokens, B, T);
        double baseline = MeanCrossEntropy(logits, targets, V);
        var result = new double[terms.Names.Length];
        var ablated = new float[logits.Length];
        for (int k = 0; k < result.Length; k++)
        {
            var term = terms.Logits[k];
            for (int i = 0; i < ablated.Length; i++) ablated[i] = logits[i] - term[i];
            result[k] = MeanCrossEntropy(ablated, targets, V) - baseline;
        }
        return result;
    }

    private static (PathTerms Terms, float[] Logits) ExpandWithLogits(GptModel model, int[] tokens, int B, int T)
    {
        var c = model.Config;
        if (c.HasLayerNorm)
            throw new ArgumentException($"path expansion needs a model without LayerNorm (normalization_type null, train --normalization none); this one has " +
                $"normalization_type {c.NormalizationType}. LayerNorm divides by the norm of the whole residual stream, so the logits are not a sum of path terms; " +
                "folding it (LayerNormFolding) moves its gain and bias into the weights but keeps that division");
        if (!c.AttnOnly) throw new ArgumentException("path expansion needs an attention-only model (attn_only): an MLP is nonlinear");
        if (c.NLayers is not (1 or 2)) throw new ArgumentException($"path expansion is implemented for 1- and 2-layer models, this one has {c.NLayers}");
        int N = B * T, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, nL = c.NLayers;
        var p = model.Params;
        var cache = model.RunWithCache(tokens, B, T, n => n is "hook_embed" or "hook_pos_embed" or "logits" || n.EndsWith(".attn.hook_pattern", StringComparison.Ordinal));
        // x₀ = the residual stream before block 0 (what layer 0's values read)
        var x0 = cache["hook_embed"].Span.ToArray();
        if (!c.Shortformer)
        {
            var pos = cache["hook_pos_embed"].Span;
            for (int i = 0; i < x0.Length; i++) x0[i] += pos[i];
        }
        var wu = p["unembed.W_U"].Span.ToArray();
        var names = new List<string>();
        var terms = new List<float[]>();
        void Add(string name, float[] resid) { names.Add(name); terms.Add(Unembed(resid, wu, N, D, V)); }

        Add("direct", x0);
        var patterns = new float[nL][];
        for (int l = 0; l < nL; l++) patterns[l] = cache[$"blocks.{l}.attn.hook_pattern"].Span.ToArray();
        var layer0 = new float[H][];
        for (int h = 0; h < H; h++)
        {
            layer0[h] = HeadOutput(x0, patterns[0], p["blocks.0.attn.W_V"].Span, p["blocks.0.attn.W_O"].Span, h, B, T, D, H, dh);
            Add($"L0H{h}", layer0[h]);
        }
        if (nL == 2)
        {
            for (int h = 0; h < H; h++)
                Add($"L1H{h}", HeadOutput(x0, patterns[1], p["blocks.1.attn.W_V"].Span, p["blocks.1.attn.W_O"].Span, h, B, T, D, H, dh));
            for (int h0 = 0; h0 < H; h0++)
                for (int h1 = 0; h1 < H; h1++)
                    Add($"L0H{h0}->L1H{h1}", HeadOutput(layer0[h0], patterns[1], p["blocks.1.attn.W_V"].Span, p["blocks.1.attn.W_O"].Span, h1, B, T, D, H, dh));
        }

        // bias: b_U + (c₀ + c₁)·W_U, the same at every position
        var constant = new double[D];
        for (int l = 0; l < nL; l++)
        {
            string a = $"blocks.{l}.attn.";
            var wv = p[a + "W_V"].Span; var wo = p[a + "W_O"].Span; var bv = p[a + "b_V"].Span; var bo = p[a + "b_O"].Span;
            var outl = new double[D];
            for (int d = 0; d < D; d++) outl[d] = bo[d];
            for (int h = 0; h < H; h++)
                for (int e = 0; e < dh; e++)
                {
                    // (constant·W_V[h] + b_V[h])[e]: the value the head reads from the constant part of the stream
                    double ve = bv[h * dh + e];
                    for (int d = 0; d < D; d++) ve += constant[d] * wv[(h * D + d) * dh + e];
                    var row = wo.Slice((h * dh + e) * D, D);
                    for (int d = 0; d < D; d++) outl[d] += ve * row[d];
                }
            for (int d = 0; d < D; d++) constant[d] += outl[d];
        }
        var bu = p["unembed.b_U"].Span;
        var biasRow = new double[V];
        for (int t = 0; t < V; t++) biasRow[t] = bu[t];
        for (int d = 0; d < D; d++)
        {
            var urow = wu.AsSpan(d * V, V);
            for (int t = 0; t < V; t++) biasRow[t] += constant[d] * urow[t];
        }
        var bias = new float[N * V];
        for (int n = 0; n < N; n++)
            for (int t = 0; t < V; t++) bias[n * V + t] = (float)biasRow[t];
        names.Add("bias"); terms.Add(bias);
        return (new PathTerms(names.ToArray(), terms.ToArray()), cache["logits"].Span.ToArray());
    }

    // y[b,i] = Σ_j A[b,h,i,j]·(x[b,j]·W_V[h])·W_O[h], without biases. x [B,T,D] → y [B,T,D]
    private static float[] HeadOutput(float[] x, float[] pattern, ReadOnlySpan<float> wv, ReadOnlySpan<float> wo, int h, int B, int T, int D, int H, int dh)
    {
        int N = B * T;
        var v = new double[N * dh];
        var wvh = wv.Slice(h * D * dh, D * dh);
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++)
            {
                double xd = x[n * D + d];
                if (xd == 0) continue;
                var row = wvh.Slice(d * dh, dh);
                for (int e = 0; e < dh; e++) v[n * dh + e] += xd * row[e];
            }
        var z = new double[N * dh];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j <= i; j++)
                {
                    double a = pattern[((b * H + h) * T + i) * T + j];
                    if (a == 0) continue;
                    for (int e = 0; e < dh; e++) z[(b * T + i) * dh + e] += a * v[(b * T + j) * dh + e];
                }
        var y = new float[N * D];
        var woh = wo.Slice(h * dh * D, dh * D);
        var acc = new double[D];
        for (int n = 0; n < N; n++)
        {
            Array.Clear(acc);
            for (int e = 0; e < dh; e++)
            {
                double ze = z[n * dh + e];
                var row = woh.Slice(e * D, D);
                for (int d = 0; d < D; d++) acc[d] += ze * row[d];
            }
            for (int d = 0; d < D; d++) y[n * D + d] = (float)acc[d];
        }
        return y;
    }

    // resid [N,D]·W_U [D,V] → [N,V], no bias
    private static float[] Unembed(float[] resid, ReadOnlySpan<float> wu, int N, int D, int V)
    {
        var outp = new float[N * V];
        var acc = new double[V];
        for (int n = 0; n < N; n++)
        {
            Array.Clear(acc);
            for (int d = 0; d < D; d++)
            {
                double r = resid[n * D + d];
                if (r == 0) continue;
                var row = wu.Slice(d * V, V);
                for (int t = 0; t < V; t++) acc[t] += r * row[t];
            }
            for (int t = 0; t < V; t++) outp[n * V + t] = (float)acc[t];
        }
        return outp;
    }

    // mean over rows of logsumexp(logits[n]) − logits[n, y_n], in double
    internal static double MeanCrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int V)
    {
        int N = targets.Length;
        double total = 0;
        for (int n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            double max = double.NegativeInfinity;
            foreach (float f in row) max = Math.Max(max, f);
            double s = 0;
            foreach (float f in row) s += Math.Exp(f - max);
            total += Math.Log(s) + max - row[targets[n]];
        }
        return total / N;
    }
}
