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
    /// Where the curve dips: the position of its minimum over early … late when that minimum is lower than both the
    /// early and the late loss by more than max(0.02 nats, 10 % of the curve's range over early … late), else null. A
    /// curve that falls and then rises again (U-shaped) has one; the ICL score (late − early) then does not say how low
    /// the loss got. A curve that only falls or only rises has none. The margin keeps position-to-position noise (a
    /// few hundredths of a nat on the default data) from counting.
    /// </summary>
    public static int? Dip(double[] lossByPosition, int early, int late)
    {
        int n = lossByPosition.Length;
        if (n == 0) return null;
        int e = Math.Clamp(early, 0, n - 1), l = Math.Clamp(late, 0, n - 1);
        int min = e;
        double hi = lossByPosition[e];
        for (int t = e; t <= l; t++)
        {
            if (lossByPosition[t] < lossByPosition[min]) min = t;
            hi = Math.Max(hi, lossByPosition[t]);
        }
        double margin = Math.Max(0.02, 0.1 * (hi - lossByPosition[min]));
        return lossByPosition[l] - lossByPosition[min] > margin && lossByPosition[e] - lossByPosition[min] > margin ? min : null;
    }
}
