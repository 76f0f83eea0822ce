using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Training;

/// <summary>
/// What one evaluation measured: the mean next-token loss over every position, the mean over the masked
/// positions (null when no batch has a mask or no position is masked), the token counts of both, the
/// number of rows, and, when asked for, the mean loss at each position of the row.
/// </summary>
public sealed record Evaluation(double Loss, long Tokens, double? MaskedLoss, long MaskedTokens, long Rows, double[]? LossByPosition);

/// <summary>
/// The one evaluation loop: forward every batch, sum the per-position losses (model.Losses, [B·T]) in
/// double, batch by batch and position by position, so the sums are bitwise reproducible and the same for
/// every caller (training's validation loss, eval, circuits' ablations and probe, the in-context curve).
/// Loss = Σ ℓ / N over all N positions; masked loss = Σ_{mask} ℓ / |mask|; loss by position
/// t = Σ_{rows r} ℓ[r, t] / rows. With gradients, model.Grads holds d(mean loss)/dθ at the end: the
/// gradients are zeroed first and each batch backpropagates with scale 1/N, so the sum over batches is
/// the gradient of the mean over all of them.
/// </summary>
public static class Evaluator
{
    /// <param name="seqLen">positions per row (0: n_ctx); every batch must be a whole number of rows.</param>
    /// <param name="byPosition">also return the loss by position (length seqLen).</param>
    /// <param name="gradients">leave d(mean loss)/dθ in model.Grads.</param>
    /// <param name="progress">called with (batches done, batches) after each batch.</param>
    public static Evaluation Run(GptModel model, IReadOnlyList<EvalBatch> batches, int seqLen = 0, bool byPosition = false,
        bool gradients = false, Action<int, int>? progress = null)
    {
        int T = seqLen == 0 ? model.Config.NCtx : seqLen;
        if (T < 1 || T > model.Config.NCtx) throw new ArgumentException($"seqLen {T} must be in [1, n_ctx={model.Config.NCtx}]");
        if (batches.Count == 0) throw new ArgumentException("an evaluation needs at least one batch");
        long total = 0;
        foreach (var (x, y, mask) in batches)
        {
            if (x.Length == 0 || x.Length % T != 0)
                throw new ArgumentException($"a batch of {x.Length} tokens is not a whole number of rows of {T} tokens: pass seqLen");
            if (y.Length != x.Length) throw new ArgumentException($"a batch has {x.Length} inputs but {y.Length} targets");
            if (mask != null && mask.Length != x.Length) throw new ArgumentException($"a batch has {x.Length} inputs but a mask of {mask.Length}");
            total += x.Length;
        }

        // the gradient of the mean: every batch's per-position losses weighted 1/N
        float scale = (float)(1.0 / total);
        if (gradients) model.ZeroGrad();
        double sum = 0, masked = 0;
        long maskedCount = 0, rows = 0;
        double[]? positions = byPosition ? new double[T] : null;
        for (int k = 0; k < batches.Count; k++)
        {
            var (x, y, mask) = batches[k];
            int B = x.Length / T;
            model.Forward(x, y, B, T);
            ReadOnlySpan<float> losses = model.Losses;
            for (int i = 0; i < losses.Length; i++)
            {
                sum += losses[i];
                if (mask != null && mask[i]) { masked += losses[i]; maskedCount++; }
            }
            if (positions != null)
                for (int b = 0; b < B; b++)
                    for (int t = 0; t < T; t++) positions[t] += losses[b * T + t];
            if (gradients) model.Backward(scale);
            rows += B;
            progress?.Invoke(k + 1, batches.Count);
        }
        if (positions != null)
            for (int t = 0; t < T; t++) positions[t] /= rows;
        return new Evaluation(sum / total, total, maskedCount > 0 ? masked / maskedCount : null, maskedCount, rows, positions);
    }
}
