using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// In-context learning as Olsson et al. 2022 ("In-context Learning and Induction Heads",
/// transformer-circuits.pub/2022/in-context-learning-and-induction-heads) measure it: the loss as a
/// function of the token's position in the context, and the ICL score, the loss late in the context
/// minus the loss early in it (negative when later tokens are predicted better).
/// </summary>
public static class InContext
{
    /// <summary>
    /// The in-context learning curve: element t is the mean next-token loss of position t (the loss of
    /// predicting token t+1 from tokens 0 … t) over every row of every batch. Each batch is B rows of
    /// seqLen tokens, row-major (seqLen 0: n_ctx, the shape of the trainer's validation batches), with
    /// targets of the same shape. The curve has length seqLen.
    /// </summary>
    public static double[] LossByPosition(GptModel model, IReadOnlyList<(int[] Inputs, int[] Targets)> batches, int seqLen = 0)
    {
        int T = seqLen == 0 ? model.Config.NCtx : seqLen;
        if (T < 1 || T > model.Config.NCtx) throw new ArgumentException($"seqLen {T} must be in [1, n_ctx={model.Config.NCtx}]");
        if (batches.Count == 0) throw new ArgumentException("LossByPosition needs at least one batch");
        var sum = new double[T];
        long rows = 0;
        foreach (var (x, y) in batches)
        {
            if (x.Length == 0 || x.Length % T != 0)
                throw new ArgumentException($"a batch of {x.Length} tokens is not a whole number of rows of {T} tokens: pass seqLen");
            if (y.Length != x.Length) throw new ArgumentException($"a batch has {x.Length} inputs but {y.Length} targets");
            int B = x.Length / T;
            model.Forward(x, y, B, T);
            var losses = model.Losses;
            for (int n = 0; n < B * T; n++) sum[n % T] += losses[n];
            rows += B;
        }
        for (int t = 0; t < T; t++) sum[t] /= rows;
        return sum;
    }

    /// <summary>
    /// Olsson et al. 2022's in-context learning score: loss at token index <paramref name="late"/> minus
    /// loss at token index <paramref name="early"/> (0-based indices into the curve; the paper uses the
    /// 500th and 50th tokens). Both indices are clamped to [0, length−1], so on a context shorter than
    /// late+1 the last position stands in for "late"; if both clamp to the same position the score is 0,
    /// so for short contexts (toy models' n_ctx of 32–64) pass indices that fit, e.g. early = T/10, late = T−1.
    /// </summary>
    public static double IclScore(double[] lossByPosition, int early = 50, int late = 500)
    {
        if (lossByPosition.Length == 0) throw new ArgumentException("the loss curve is empty");
        int n = lossByPosition.Length;
        int e = Math.Clamp(early, 0, n - 1), l = Math.Clamp(late, 0, n - 1);
        return lossByPosition[l] - lossByPosition[e];
    }
}
