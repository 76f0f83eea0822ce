using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The one evaluation loop (Evaluator) against losses computed row by row, and its gradient against one backward over all rows.</summary>
public class EvaluatorTests
{
    private static GptModel Model() =>
        GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 8, DVocab = 11 }, 9);

    private static (List<EvalBatch> Batches, int[] X, int[] Y, bool[] M) Data(int T)
    {
        var rng = new Rng(4);
        int rows = 5; // batches of 3 rows and 2 rows
        var x = new int[rows * T]; var y = new int[rows * T]; var m = new bool[rows * T];
        for (int i = 0; i < x.Length; i++) { x[i] = rng.NextInt(11); y[i] = rng.NextInt(11); m[i] = rng.NextInt(3) == 0; }
        var batches = new List<EvalBatch>
        {
            new(x[..(3 * T)], y[..(3 * T)], m[..(3 * T)]),
            new(x[(3 * T)..], y[(3 * T)..], m[(3 * T)..]),
        };
        return (batches, x, y, m);
    }

    [Fact]
    public void MeansMatchRowByRowLosses()
    {
        var model = Model();
        const int T = 8;
        var (batches, x, y, m) = Data(T);
        var e = Evaluator.Run(model, batches, byPosition: true);

        double sum = 0, masked = 0; long nMasked = 0;
        var byPos = new double[T];
        for (int r = 0; r < 5; r++)
        {
            model.Forward(x.AsSpan(r * T, T), y.AsSpan(r * T, T), 1, T);
            for (int t = 0; t < T; t++)
            {
                double l = model.Losses[t];
                sum += l; byPos[t] += l / 5;
                if (m[r * T + t]) { masked += l; nMasked++; }
            }
        }
        Assert.Equal(5 * T, e.Tokens);
        Assert.Equal(5, e.Rows);
        Assert.Equal(nMasked, e.MaskedTokens);
        Assert.True(nMasked > 0);
        Assert.Equal(sum / (5 * T), e.Loss, 1e-6);
        Assert.Equal(masked / nMasked, e.MaskedLoss!.Value, 1e-6);
        for (int t = 0; t < T; t++) Assert.Equal(byPos[t], e.LossByPosition![t], 1e-6);

        // without masks there is no masked mean; a mask of the wrong length is refused
        Assert.Null(Evaluator.Run(model, [new EvalBatch(x, y)]).MaskedLoss);
        Assert.Throws<ArgumentException>(() => Evaluator.Run(model, [new EvalBatch(x, y, new bool[3])]));
        Assert.Throws<ArgumentException>(() => Evaluator.Run(model, []));
    }

    [Fact]
    public void GradientIsThatOfTheMeanOverAllBatches()
    {
        var model = Model();
        const int T = 8;
        var (batches, x, y, _) = Data(T);
        Evaluator.Run(model, batches, gradients: true);
        var fromBatches = model.Grads.Buffer.ToArray();

        // one pass over all five rows: d(mean)/dθ directly
        model.EnsureBatch(5);
        model.Forward(x, y, 5, T);
        model.ZeroGrad();
        model.Backward(1f / (5 * T));
        var direct = model.Grads.Buffer;
        float max = 0;
        foreach (float g in direct) max = Math.Max(max, Math.Abs(g));
        Assert.True(max > 0);
        for (int i = 0; i < direct.Length; i++)
            Assert.True(Math.Abs(direct[i] - fromBatches[i]) <= 1e-5f * max, $"gradient {i}: {fromBatches[i]} vs {direct[i]}");
    }
}
