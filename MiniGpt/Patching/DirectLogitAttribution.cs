using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>One part of the final residual stream and its direct contribution to the logit difference (mean over the targets).</summary>
public sealed record LogitAttribution(string Name, int Layer, int Head, double Value);

/// <summary>The parts (embeddings, each head's result, each layer's b_O, each MLP, the biases after the stream) and the logit difference they sum to.</summary>
public sealed record DirectLogitAttributionResult(IReadOnlyList<LogitAttribution> Parts, double LogitDiff)
{
    public double Sum => Parts.Sum(p => p.Value);

    /// <summary>The heads' parts as a [layer, head] grid, row-major.</summary>
    public double[] HeadGrid(ModelConfig c)
    {
        var g = new double[c.NLayers * c.NHeads];
        foreach (var p in Parts) if (p.Head >= 0) g[p.Layer * c.NHeads + p.Head] = p.Value;
        return g;
    }
}

/// <summary>
/// Direct logit attribution (TransformerLens's decompose_resid / stack_head_results / logits_to_ave_logit_diff
/// with apply_ln_to_stack): the final residual stream is a sum of parts,
///   resid_final = embed + pos_embed + Σ_l (Σ_h z_{l,h}·W_O[l,h] + b_O[l] + mlp_out_l),
/// and with ln_final's scale frozen at its value in the run (1/σ of each position), the logit difference is
/// linear in them: logit_a − logit_w = Σ_parts rstd·((part − mean(part))·w_ln)·(W_U[:,a] − W_U[:,w])
///                                   + b_ln·(W_U[:,a] − W_U[:,w]) + b_U[a] − b_U[w],
/// the last two one part, "biases". The parts sum to the model's logit difference (to float rounding).
/// </summary>
public static class DirectLogitAttribution
{
    public static DirectLogitAttributionResult Run(GptModel m, PatchPrompts p, bool corrupted = false)
    {
        var c = m.Config;
        ActivationPatching.CheckFits(m, p);
        int B = p.Batch, T = p.SeqLen, D = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocab;
        var tokens = corrupted ? p.Corrupted : p.Clean;
        var cache = m.RunWithCache(tokens, B, T, n => n is "hook_embed" or "hook_pos_embed" || n.EndsWith(".attn.hook_z") || n.EndsWith(".hook_mlp_out"));
        double logitDiff = PatchMetric.LogitDiff.Value(m.Logits, p, V);
        // ln_final's 1/σ per position, as the run computed it (the frozen scale)
        float[]? rstd = c.HasLayerNorm ? m.Cache!.LnFinalRstd!.Span[..(B * T)].ToArray() : null;
        ReadOnlySpan<float> gain = c.HasLayerNormParams ? m.Params["ln_final.w"].Span : default;
        var wU = m.Params["unembed.W_U"].Span;
        var bU = m.Params["unembed.b_U"].Span;

        // the direction of each target, u = W_U[:, a] − W_U[:, w] (times the gain: the frozen LayerNorm's linear part)
        var targets = new List<(int Row, double[] U)>();
        for (int b = 0; b < B; b++)
            foreach (var t in p.Targets[b])
            {
                var u = new double[D];
                for (int d = 0; d < D; d++) u[d] = ((double)wU[d * V + t.Answer] - wU[d * V + t.Wrong]) * (gain.IsEmpty ? 1 : gain[d]);
                targets.Add((b * T + t.Position, u));
            }

        // the part's mean contribution over the targets, part [B·T, d_model]
        double Contribution(ReadOnlySpan<float> part)
        {
            double sum = 0;
            foreach (var (row, u) in targets)
            {
                var x = part.Slice(row * D, D);
                double mean = 0;
                if (rstd != null) { foreach (float v in x) mean += v; mean /= D; }
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (x[d] - mean) * u[d];
                sum += rstd != null ? dot * rstd[row] : dot;
            }
            return sum / targets.Count;
        }

        var parts = new List<LogitAttribution> { new("embed", -1, -1, Contribution(cache["hook_embed"].Span)) };
        if (!c.Shortformer) parts.Add(new("pos_embed", -1, -1, Contribution(cache["hook_pos_embed"].Span)));
        var result = new float[B * T * D];
        // Contribution reads only the targets' rows, so each head's result is formed there alone (not for all B·T rows)
        var targetRows = targets.Select(t => t.Row).Distinct().ToArray();
        for (int l = 0; l < c.NLayers; l++)
        {
            var z = cache[$"blocks.{l}.attn.hook_z"].Span;
            var wO = m.Params[$"blocks.{l}.attn.W_O"].Span;
            for (int h = 0; h < H; h++)
            {
                // result_h = z_h · W_O[h]  ([rows, d_head]·[d_head, d_model])
                foreach (int n in targetRows) Array.Clear(result, n * D, D);
                foreach (int n in targetRows)
                    for (int e = 0; e < dh; e++)
                    {
                        float zv = z[(n * H + h) * dh + e];
                        var row = wO.Slice((h * dh + e) * D, D);
                        for (int d = 0; d < D; d++) result[n * D + d] += zv * row[d];
                    }
                parts.Add(new($"L{l}H{h}", l, h, Contribution(result)));
            }
            var bO = m.Params[$"blocks.{l}.attn.b_O"].Span;
            for (int n = 0; n < B * T; n++) bO.CopyTo(result.AsSpan(n * D, D));
            parts.Add(new($"blocks.{l}.attn.b_O", l, -1, Contribution(result)));
            if (c.HasMlp) parts.Add(new($"blocks.{l}.mlp_out", l, -1, Contribution(cache[$"blocks.{l}.hook_mlp_out"].Span)));
        }
        // what is added after the stream: ln_final.b·u + b_U[a] − b_U[w] (u without the gain here)
        ReadOnlySpan<float> lnB = c.HasLayerNormParams ? m.Params["ln_final.b"].Span : default;
        double biases = 0;
        for (int b = 0; b < B; b++)
            foreach (var t in p.Targets[b])
            {
                double s = (double)bU[t.Answer] - bU[t.Wrong];
                if (!lnB.IsEmpty)
                    for (int d = 0; d < D; d++) s += lnB[d] * ((double)wU[d * V + t.Answer] - wU[d * V + t.Wrong]);
                biases += s;
            }
        parts.Add(new("biases (ln_final.b, unembed.b_U)", -1, -1, biases / p.TargetCount));
        return new DirectLogitAttributionResult(parts, logitDiff);
    }
}
