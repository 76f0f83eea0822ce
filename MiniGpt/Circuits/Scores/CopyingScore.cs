using System.Numerics.Tensors;
using CommunityToolkit.HighPerformance;

namespace MiniGpt.Circuits;

/// <summary>
/// copying: how often the head, when it attends to a position, raises that position's token above every
/// other token: the top-1 copying check of the OV circuit (the ARENA/TransformerLens tutorials' top_1_acc of
/// the full OV circuit W_E·W_OV·W_U; the behaviour Elhage et al. 2021 call copying and Olsson et al. 2022
/// measure for induction heads), taken over the actually attended positions instead of bare token
/// embeddings. For a source position j with value v_j (hook_v, the head's actual input there), the head's
/// direct logit effect when it attends fully to j is ℓ_j = r̃_j·W_U with r_j = v_j·W_O[h] and
/// r̃_j = ln_final.w ⊙ (r_j − mean(r_j)) for a LayerNorm model (LN's centring and gain; its 1/σ is a positive
/// factor, which leaves the ranking unchanged), r_j otherwise. c_j = 1 if ℓ_j[tok_j] &gt; ℓ_j[t] for every
/// t ≠ tok_j, else 0, and the score is Σ_{b,j} w_{b,j}·c_{b,j} / Σ w with w_{b,j} = Σ_{i ≥ L} A[b,i,j], the
/// attention position j receives from the queries of the repeated half: the fraction of the head's attention
/// there that lands on tokens it copies. (Queries of the first half are left out: there is nothing to copy
/// yet, and a trained induction head parks that attention on an early position, which took its score from
/// 0.93 to 0.48 on the trained default model.) 1 for a head that copies everything it attends to, 0 for one
/// that never does (≈ 1/d_vocab by chance). (A share-of-positive-logits version, ReLU(ℓ̄_j[tok_j]) /
/// Σ_v ReLU(ℓ̄_j[v]), was tried and rejected: on the trained induction model it gave ≈ 0.1 for induction
/// heads whose attended token is the top logit 93–96 % of the time, because many tokens get a small
/// positive share.) Gives no role.
/// The logits of the attended positions are one [K, D]·[D, V] product per head through the model's kernels.
/// A wide model caps K: with d_vocab·d_model·positions above 2³³ multiply-adds per head (GPT-2 small's
/// 50,257 × 768 on 8 × 256 probe positions is 7.9·10¹⁰), the score is taken over the K = 2³³/(d_vocab·d_model)
/// positions (at least 64; 222 for GPT-2 small) that receive the most attention from the repeated half, which
/// for a copying head are the positions it copies from. The score is exact whenever the probe's B·T positions fit
/// K: the default model's 512, and the 2,048 of a probe at n_ctx ≥ 256 while d_vocab·d_model ≤ 4.2 M (e.g. 65 × 768).
/// </summary>
public sealed class CopyingScore() : HeadScore("copying", "copy", "share of the head's attention in the repeat on tokens its OV circuit makes the top logit",
    ["attn.hook_pattern", "attn.hook_v"])
{
    /// <summary>Multiply-adds of the per-head [K, D]·[D, V] logits product above which K is capped (see the class comment).</summary>
    public const long WorkPerHead = 1L << 33;

    /// <summary>The most positions a head's score reads for this vocabulary and width.</summary>
    public static int MaxPositions(int vocab, int dModel) => (int)Math.Clamp(WorkPerHead / ((long)vocab * dModel), 64, int.MaxValue);

    public override double[][] Compute(HeadProbe probe)
    {
        var model = probe.Model;
        var c = probe.Config;
        var mm = model.Kernels.MatMul;
        var wu = model.Params["unembed.W_U"];   // [D, V]
        float[]? lnw = model.Params.TryGet("ln_final.w", out var w) ? w.Span.ToArray() : null;
        int B = probe.Batch, T = probe.SeqLen, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab, P = B * T;
        int K = Math.Min(P, MaxPositions(V, D));
        var weight = new double[P];   // w_{b,j}: attention position (b, j) receives from the queries of the repeated half
        var order = new int[P];
        var r = new float[K * D];     // r̃_j of the chosen positions, [K, D]
        var logits = new float[K * V];
        return probe.PerHead((l, h) =>
        {
            var pattern = probe.Pattern(l);                // [B, H, T, T]
            var v = probe.Activation(l, "attn.hook_v");    // [B, T, H, dh]
            var wo = model.Params[$"blocks.{l}.attn.W_O"].Span.Slice(h * dh * D, dh * D); // [dh, D]
            int n = 0;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < T; j++)
                {
                    double wj = 0;
                    for (int i = Math.Max(j, T / 2); i < T; i++) wj += pattern[((b * H + h) * T + i) * T + j];
                    weight[b * T + j] = wj;
                    if (wj > 0) order[n++] = b * T + j;
                }
            if (n > K)
            {
                // the K positions with the most attention, ties to the earlier position
                Array.Sort(order, 0, n, Comparer<int>.Create((a, b) => weight[a] != weight[b] ? weight[b].CompareTo(weight[a]) : a.CompareTo(b)));
                n = K;
                Array.Sort(order, 0, n);
            }
            if (n == 0) return 0;
            for (int k = 0; k < n; k++)
            {
                int p = order[k], b = p / T, j = p % T;
                var vj = v.Slice(((b * T + j) * H + h) * dh, dh);
                var rk = r.AsSpan(k * D, D);
                rk.Clear();
                for (int e = 0; e < dh; e++)
                    TensorPrimitives.MultiplyAdd(wo.Slice(e * D, D), vj[e], rk, rk); // r = v_j·W_O[h]
                if (c.HasLayerNorm)
                {
                    float mean = TensorPrimitives.Sum(rk) / D;
                    for (int d = 0; d < D; d++) rk[d] = (rk[d] - mean) * (lnw?[d] ?? 1f);
                }
            }
            // ℓ = r̃·W_U for every chosen position at once: [n, D]·[D, V]
            mm.NN(new ReadOnlySpan2D<float>(r, 0, n, D, 0), wu.AsSpan2D(D, V), new Span2D<float>(logits, 0, n, V, 0), accumulate: false);
            double num = 0, den = 0;
            for (int k = 0; k < n; k++)
            {
                int p = order[k];
                var lk = logits.AsSpan(k * V, V);
                int tok = probe.Tokens[p];
                double cj = 1;
                for (int t = 0; t < V; t++)
                    if (t != tok && lk[t] >= lk[tok]) { cj = 0; break; }
                num += weight[p] * cj;
                den += weight[p];
            }
            return den > 0 ? num / den : 0;
        });
    }
}
