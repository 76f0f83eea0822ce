using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Training;

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
    public static double[] LossByPosition(GptModel model, IReadOnlyList<EvalBatch> batches, int seqLen = 0) =>
        Evaluator.Run(model, batches, seqLen, byPosition: true).LossByPosition!;

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

    /// <summary>
    /// Where the curve dips: the position of the minimum over early … late of the curve smoothed by a centred moving
    /// mean of 2h+1 positions (h = max(1, n/16): 5 at n_ctx 32, 9 at 64), when that smoothed minimum is below both the
    /// smoothed early and the smoothed late loss by more than the margin, else null. A curve that falls and then rises
    /// again (U-shaped) has one, and the ICL score (late − early) then does not say how low the loss got; a curve that
    /// only falls or only rises has none. Per-position losses are means over a few dozen windows and wobble: the margin
    /// is max(0.02 nats, 3σ/√(2h+1)), σ the noise of one position estimated from the second differences
    /// (x[t+1] − 2x[t] + x[t−1] has variance 6σ² for independent noise, and a smooth curve adds little to it). That
    /// flags the default model's curve (σ ≈ 0.06 nats; smoothed minimum 1.33 near position 24, late 3.12) and not a
    /// 800-step Shakespeare model's, which is flat within its noise (σ ≈ 0.2 nats on 64 windows).
    /// </summary>
    public static int? Dip(double[] lossByPosition, int early, int late)
    {
        var c = lossByPosition;
        int n = c.Length;
        if (n < 3) return null;
        int e = Math.Clamp(early, 0, n - 1), l = Math.Clamp(late, 0, n - 1);
        int h = Math.Max(1, n / 16);
        var smooth = new double[n];
        for (int t = 0; t < n; t++)
        {
            int a = Math.Max(0, t - h), b = Math.Min(n - 1, t + h);
            double sum = 0;
            for (int k = a; k <= b; k++) sum += c[k];
            smooth[t] = sum / (b - a + 1);
        }
        double d2 = 0;
        for (int t = 1; t < n - 1; t++) { double x = c[t + 1] - 2 * c[t] + c[t - 1]; d2 += x * x; }
        double sigma = Math.Sqrt(d2 / (n - 2) / 6);
        double margin = Math.Max(0.02, 3 * sigma / Math.Sqrt(2 * h + 1));
        int min = e;
        for (int t = e; t <= l; t++) if (smooth[t] < smooth[min]) min = t;
        return smooth[l] - smooth[min] > margin && smooth[e] - smooth[min] > margin ? min : null;
    }
}
