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
/// </summary>
public sealed class CopyingScore() : HeadScore("copying", "copy", "share of the head's attention in the repeat on tokens its OV circuit makes the top logit",
    ["attn.hook_pattern", "attn.hook_v"])
{
    public override double[][] Compute(HeadProbe probe)
    {
        var model = probe.Model;
        var c = probe.Config;
        var wu = model.Params["unembed.W_U"].Span.ToArray();
        float[]? lnw = model.Params.TryGet("ln_final.w", out var w) ? w.Span.ToArray() : null;
        int B = probe.Batch, T = probe.SeqLen, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab;
        var r = new double[D];
        var logits = new double[V];
        return probe.PerHead((l, h) =>
        {
            var pattern = probe.Pattern(l);                // [B, H, T, T]
            var v = probe.Activation(l, "attn.hook_v");    // [B, T, H, dh]
            var wo = model.Params[$"blocks.{l}.attn.W_O"].Span.Slice(h * dh * D, dh * D); // [dh, D]
            double num = 0, den = 0;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < T; j++)
                {
                    double wj = 0; // attention that position j receives from the queries of the repeated half
                    for (int i = Math.Max(j, T / 2); i < T; i++) wj += pattern[((b * H + h) * T + i) * T + j];
                    if (wj == 0) continue;
                    var vj = v.Slice(((b * T + j) * H + h) * dh, dh);
                    Array.Clear(r);
                    for (int e = 0; e < dh; e++)
                    {
                        double ve = vj[e];
                        var row = wo.Slice(e * D, D);
                        for (int d = 0; d < D; d++) r[d] += ve * row[d];
                    }
                    if (c.HasLayerNorm)
                    {
                        double mean = 0;
                        for (int d = 0; d < D; d++) mean += r[d];
                        mean /= D;
                        for (int d = 0; d < D; d++) r[d] = (r[d] - mean) * (lnw?[d] ?? 1.0);
                    }
                    Array.Clear(logits);
                    for (int d = 0; d < D; d++)
                    {
                        double rd = r[d];
                        var urow = wu.AsSpan(d * V, V);
                        for (int t = 0; t < V; t++) logits[t] += rd * urow[t];
                    }
                    int tok = probe.Tokens[b * T + j];
                    double cj = 1;
                    for (int t = 0; t < V; t++)
                        if (t != tok && logits[t] >= logits[tok]) { cj = 0; break; }
                    num += wj * cj;
                    den += wj;
                }
            return den > 0 ? num / den : 0;
        });
    }
}
