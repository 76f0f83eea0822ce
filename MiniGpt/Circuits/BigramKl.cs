using MiniGpt.Layers;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// How close a zero-layer model is to the corpus bigram statistics. A zero-layer transformer's logits are
/// the direct path W_E·W_U (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits",
/// section "Zero-Layer Transformers": it can only learn bigram statistics), so its best possible next-token
/// distribution is the corpus bigram table.
/// </summary>
public static class BigramKl
{
    /// <summary>
    /// Σ_a w_a · KL(P_corpus(·|a) ‖ P_model(·|a)) in nats, w_a = (occurrences of a as the first token of a
    /// consecutive pair) / (number of pairs), so sources weigh by their frequency and unseen sources not at all.
    /// P_corpus(b|a) = (count(a, b) + α) / (count(a) + α·d_vocab), add-α smoothing with α = <paramref name="smoothing"/>
    /// (1: Laplace's add-one) so every b has P_corpus &gt; 0. P_model(·|a) = softmax of the model's logits for
    /// token a alone at position 0: ln_final(W_E[a] + W_pos[0])·W_U + b_U (W_pos omitted with shortformer
    /// positions, ln_final only if the model has LayerNorm), computed in the same way as
    /// <see cref="GptModel.Forward"/> on a one-token sequence; at later positions a zero-layer model differs
    /// only through W_pos[t].
    /// </summary>
    public static double KlToBigrams(GptModel model, int[] corpusTokens, double smoothing = 1.0)
    {
        var c = model.Config;
        if (c.NLayers != 0) throw new ArgumentException($"KlToBigrams is for zero-layer models (the direct path alone); this one has {c.NLayers} layers");
        if (corpusTokens.Length < 2) throw new ArgumentException("the corpus needs at least two tokens (one bigram)");
        if (!(smoothing > 0)) throw new ArgumentException($"smoothing must be > 0 so that every bigram has a probability, got {smoothing}");
        int V = c.DVocab, D = c.DModel;
        foreach (int t in corpusTokens)
            if ((uint)t >= (uint)V) throw new ArgumentException($"corpus token {t} is outside the vocabulary [0, {V})");

        // bigram counts, sparse: the pair codes a·V + b sorted, so each source's pairs are one run
        int P = corpusTokens.Length - 1;
        var codes = new long[P];
        for (int i = 0; i < P; i++) codes[i] = (long)corpusTokens[i] * V + corpusTokens[i + 1];
        Array.Sort(codes);

        var p = model.Params;
        var we = p["embed.W_E"].Span; var wpos = p["pos_embed.W_pos"].Span.Slice(0, D);
        var wu = p["unembed.W_U"].Span; var bu = p["unembed.b_U"].Span;
        ReadOnlySpan<float> lnw = p.TryGet("ln_final.w", out var w) ? w.Span : default;
        ReadOnlySpan<float> lnb = p.TryGet("ln_final.b", out var bb) ? bb.Span : default;
        var x = new float[D]; var xn = new float[D]; var mean = new float[1]; var rstd = new float[1];
        var logq = new double[V];
        var counts = new int[V];
        double total = 0;
        for (int start = 0; start < P;)
        {
            int a = (int)(codes[start] / V), end = start;
            Array.Clear(counts);
            while (end < P && codes[end] / V == a) counts[(int)(codes[end++] % V)]++;
            int na = end - start;

            // the model's log-probabilities for source a
            we.Slice(a * D, D).CopyTo(x);
            if (!c.Shortformer) for (int d = 0; d < D; d++) x[d] += wpos[d];
            ReadOnlySpan<float> xf = x;
            if (c.HasLayerNorm) { model.Kernels.LayerNormForward(x, lnw, lnb, xn, mean, rstd, 1, D); xf = xn; }
            for (int t = 0; t < V; t++) logq[t] = bu[t];
            for (int d = 0; d < D; d++)
            {
                double xd = xf[d];
                var row = wu.Slice(d * V, V);
                for (int t = 0; t < V; t++) logq[t] += xd * row[t];
            }
            double max = double.NegativeInfinity;
            foreach (double l in logq) max = Math.Max(max, l);
            double z = 0;
            foreach (double l in logq) z += Math.Exp(l - max);
            double lse = max + Math.Log(z);

            double denom = na + smoothing * V, kl = 0;
            for (int t = 0; t < V; t++)
            {
                double pc = (counts[t] + smoothing) / denom;
                kl += pc * (Math.Log(pc) - (logq[t] - lse));
            }
            total += (double)na / P * kl;
            start = end;
        }
        return total;
    }
}
