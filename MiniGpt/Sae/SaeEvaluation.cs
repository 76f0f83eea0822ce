using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Sae;

/// <summary>
/// An SAE measured on held-out windows, in the activations' own scale:
/// L0 = mean number of active features per token; MSE = mean ‖x̂ − x‖² per token; explained variance
/// = 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²; loss recovered = (L_zero − L_sae)/(L_zero − L_clean), the model's next-token loss
/// with the reconstruction spliced in at the hook (a forward hook that writes x̂ over x), between the clean loss (1)
/// and the loss with the activation zero-ablated (0); Frequency[i] = the share of tokens on which feature i fires.
/// </summary>
public sealed record SaeEvaluationResult(
    long Tokens, double L0, double Mse, double ExplainedVariance, double LossClean, double LossSae, double LossZero,
    double[] Frequency, double DenseThreshold)
{
    public double LossRecovered => (LossZero - LossSae) / (LossZero - LossClean);
    /// <summary>Features that never fired on these tokens.</summary>
    public int Dead => Frequency.Count(f => f == 0);
    /// <summary>Features that fire on more than DenseThreshold of the tokens.</summary>
    public int Dense => Frequency.Count(f => f > DenseThreshold);
}

public static class SaeEvaluation
{
    /// <summary>Dense: firing on more than 10 % of tokens (Anthropic's "dense features" are of this order).</summary>
    public const double DenseThreshold = 0.1;

    public static SaeEvaluationResult Run(GptModel model, SparseAutoencoder sae, IReadOnlyList<EvalBatch> batches)
    {
        var c = model.Config;
        string hook = sae.Config.HookName;
        int d = sae.Config.DIn, s = sae.Config.DSae;
        if (ActivationStore.WidthOf(model, hook) != d)
            throw new UserError($"the SAE reads {d} values at '{hook}' but this model has {ActivationStore.WidthOf(model, hook)} there: give the checkpoint the SAE was trained on");
        int maxRows = batches.Max(b => b.Inputs.Length);
        var act = new SaeActivations(sae.Config, maxRows);
        var x = new float[maxRows * d];
        var fired = new long[s];
        double sumClean = 0, sumSae = 0, sumZero = 0, se = 0, sumSq = 0, l0 = 0;
        var sum = new double[d];
        long tokens = 0;
        int rows = 0;
        foreach (var batch in batches)
        {
            int T = Math.Min(c.NCtx, batch.Inputs.Length);
            int B = batch.Inputs.Length / T;
            rows = B * T;
            // clean: the loss, and the activations at the hook
            using (model.Hooks.AddForward(hook, (v, _) => v.Span.CopyTo(x)))
                sumClean += model.Forward(batch.Inputs, batch.Targets, B, T) * rows;
            sae.Forward(x, rows, act);
            var f = act.Features;
            var xhat = act.Reconstruction;
            for (int n = 0; n < rows; n++)
            {
                for (int i = 0; i < s; i++)
                    if (f[n * s + i] > 0) { fired[i]++; l0++; }
                for (int j = 0; j < d; j++)
                {
                    double xv = x[n * d + j], e = xhat[n * d + j] - xv;
                    se += e * e;
                    sumSq += xv * xv;
                    sum[j] += xv;
                }
            }
            // spliced: the reconstruction written over the activation, so every later layer reads x̂
            using (model.Hooks.AddForward(hook, (v, _) => xhat.AsSpan(0, rows * d).CopyTo(v.Span)))
                sumSae += model.Forward(batch.Inputs, batch.Targets, B, T) * rows;
            using (model.Hooks.AddForward(hook, (v, _) => v.Span.Clear()))
                sumZero += model.Forward(batch.Inputs, batch.Targets, B, T) * rows;
            tokens += rows;
        }
        // Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖²
        double mean2 = 0;
        foreach (double v in sum) mean2 += v / tokens * (v / tokens);
        double variance = sumSq - tokens * mean2;
        var freq = fired.Select(n => (double)n / tokens).ToArray();
        return new SaeEvaluationResult(tokens, l0 / tokens, se / tokens, 1 - se / variance, sumClean / tokens, sumSae / tokens, sumZero / tokens, freq, DenseThreshold);
    }
}
