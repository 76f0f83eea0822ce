using MiniGpt.Layers;
using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>
/// What one residual stream predicts when decoded as the final one is: ln_final (with this stream's own
/// mean and variance) then W_U and b_U. TargetLoss and LogitDiff are the metrics' means over the prompts'
/// targets, AnswerLogit the mean logit of the answer there, SequenceLoss the mean next-token loss over
/// every position of the prompts that has a next token of its own (each predicting the prompt's next token; a
/// padded pair's padding neither predicts nor is predicted).
/// </summary>
public sealed record LogitLensLayer(string Name, double TargetLoss, double AnswerLogit, double LogitDiff, double SequenceLoss);

/// <summary>
/// The logit lens (nostalgebraist 2020; TransformerLens's accumulated_resid + apply_ln_to_stack +
/// unembed): the residual stream before each block, and the final one, read through the unembedding. The
/// last row is the model's own output.
/// </summary>
public static class LogitLens
{
    public static IReadOnlyList<LogitLensLayer> Run(GptModel m, PatchPrompts p, bool corrupted = false)
    {
        var c = m.Config;
        ActivationPatching.CheckFits(m, p);
        int B = p.Batch, T = p.SeqLen, N = B * T, D = c.DModel, V = c.DVocab;
        var tokens = corrupted ? p.Corrupted : p.Clean;
        var names = new List<string>();
        for (int l = 0; l < c.NLayers; l++) names.Add($"blocks.{l}.hook_resid_pre");
        string final = c.NLayers == 0 ? "hook_embed" : $"blocks.{c.NLayers - 1}.hook_resid_post";
        var cache = m.RunWithCache(tokens, B, T, n => names.Contains(n) || n == final || n == "hook_pos_embed");
        var streams = names.Select(n => (n, cache[n].Span.ToArray())).ToList();
        if (c.NLayers > 0) streams.Add((final, cache[final].Span.ToArray()));
        else
        {
            // a zero-layer model's final stream is embed + pos (shortformer: embed alone)
            var x = cache["hook_embed"].Span.ToArray();
            if (!c.Shortformer) m.Kernels.Add(x, cache["hook_pos_embed"].Span, x);
            streams.Add(("hook_embed + hook_pos_embed", x));
        }

        var logits = new float[N * V];
        var rows = new List<LogitLensLayer>();
        foreach (var (name, x) in streams)
        {
            Decode(m, x, logits, N);
            double answer = 0;
            for (int b = 0; b < B; b++)
                foreach (var t in p.Targets[b]) answer += logits[(b * T + t.Position) * V + t.Answer];
            // Σ_b Σ_{t+1 < len_b} (logsumexp(logits[b, t]) − logits[b, t, x_{b,t+1}]) / Σ_b (len_b − 1): only pairs of tokens
            // inside a pair's own length, so a padded pair weighs its len_b − 1 predictions, as if run alone
            double seq = 0;
            int predictions = 0;
            for (int b = 0; b < B; b++)
                for (int t = 0; t + 1 < p.Lengths[b]; t++)
                {
                    seq += PatchMetric.LogSumExp(logits.AsSpan((b * T + t) * V, V)) - logits[(b * T + t) * V + tokens[b * T + t + 1]];
                    predictions++;
                }
            rows.Add(new LogitLensLayer(name, PatchMetric.AnswerLoss.Value(logits, p, V), answer / p.TargetCount,
                PatchMetric.LogitDiff.Value(logits, p, V), predictions > 0 ? seq / predictions : double.NaN));
        }
        return rows;
    }

    /// <summary>logits [N, d_vocab] = ln_final(x)·W_U + b_U for residual streams x [N, d_model], each row normalised by its own statistics.</summary>
    public static void Decode(GptModel m, ReadOnlySpan<float> x, Span<float> logits, int N)
    {
        var c = m.Config;
        int D = c.DModel;
        ReadOnlySpan<float> xf = x;
        if (c.HasLayerNorm)
        {
            var y = new float[N * D];
            ReadOnlySpan<float> w = c.HasLayerNormParams ? m.Params["ln_final.w"].Span : default;
            ReadOnlySpan<float> b = c.HasLayerNormParams ? m.Params["ln_final.b"].Span : default;
            m.Kernels.LayerNormForward(x, w, b, y, new float[N], new float[N], N, D);
            xf = y;
        }
        Linear.Forward(m.Kernels, xf, m.Params["unembed.W_U"].Span, m.Params["unembed.b_U"].Span, logits, N, D, c.DVocab);
    }
}
