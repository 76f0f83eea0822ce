using MiniGpt.Layers;
using MiniGpt.Training;

namespace MiniGpt.Superposition;

/// <summary>
/// How one toy model trains. The defaults follow the paper's notebook (Elhage et al. 2022: Adam, lr 1e-3,
/// batches of 1024, 10 000 steps); AdamW with weight decay 0 is that Adam. The learning rate follows a cosine
/// from lr down to lr/10 over the run, so the last steps settle the geometry instead of jittering around it.
/// Restarts &gt; 1 trains that many models from different initialisations and keeps the one of least loss
/// on a fixed evaluation set: toy models can stall in a poorer local optimum (a feature left out of a
/// pentagon, say), and the paper too reports the better of several runs where that matters.
/// </summary>
public sealed record ToyTrainOptions
{
    public int Steps { get; init; } = 10_000;
    public int BatchSize { get; init; } = 1024;
    public float Lr { get; init; } = 1e-3f;
    public float WeightDecay { get; init; } = 0f;
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;
    public int Restarts { get; init; } = 1;
    /// <summary>Samples of the evaluation set that picks among restarts and gives <see cref="TrainedToy.EvalLoss"/>.</summary>
    public int EvalSamples { get; init; } = 8192;
    /// <summary>Points of the loss curve kept (each the mean training loss of its stretch of steps).</summary>
    public int CurvePoints { get; init; } = 50;

    public void Validate()
    {
        if (Steps < 1) throw new UserError($"steps must be ≥ 1, got {Steps}");
        if (BatchSize < 1) throw new UserError($"batch size must be ≥ 1, got {BatchSize}");
        if (!(Lr > 0) || !float.IsFinite(Lr)) throw new UserError($"lr must be > 0, got {Lr}");
        if (!(WeightDecay >= 0)) throw new UserError($"weight decay must be ≥ 0, got {WeightDecay}");
        if (Restarts < 1) throw new UserError($"restarts must be ≥ 1, got {Restarts}");
    }
}

/// <summary>A trained toy model with its sparsity, the loss on the evaluation set and the training curve.</summary>
public sealed record TrainedToy(ToyModel Model, double Sparsity, double EvalLoss, double[] LossCurve, int Restart, double[] RestartLosses);

/// <summary>Trains one <see cref="ToyModel"/> on <see cref="SparseFeatures"/> with AdamW, serially and deterministically for a seed.</summary>
public static class ToyTraining
{
    public static TrainedToy Train(int n, int m, float[] importance, double sparsity, ToyTrainOptions o, ulong seed)
    {
        o.Validate();
        // the evaluation set is the same for every restart (its own stream), so the losses compare
        var evalRng = new Rng(seed ^ 0x5EEDE7A1UL);
        var xEval = new float[o.EvalSamples * n];
        SparseFeatures.Fill(xEval, sparsity, ref evalRng);
        TrainedToy? best = null;
        var losses = new double[o.Restarts];
        for (int r = 0; r < o.Restarts; r++)
        {
            var (model, curve) = TrainOnce(n, m, importance, sparsity, o, seed + (ulong)r * 0x9E3779B97F4A7C15UL);
            losses[r] = Loss(model, xEval, o.EvalSamples);
            if (best == null || losses[r] < best.EvalLoss) best = new TrainedToy(model, sparsity, losses[r], curve, r, losses);
        }
        return best!;
    }

    /// <summary>The model's loss on x [samples, n], in batches of 1024.</summary>
    public static double Loss(ToyModel model, ReadOnlySpan<float> x, int samples)
    {
        int n = model.N, m = model.M, chunk = Math.Min(1024, samples);
        var h = new float[chunk * m];
        var pre = new float[chunk * n];
        var o = new float[chunk * n];
        double sum = 0;
        for (int s = 0; s < samples; s += chunk)
        {
            int b = Math.Min(chunk, samples - s);
            sum += model.Forward(x.Slice(s * n, b * n), h, pre, o, b) * b;
        }
        return sum / samples;
    }

    private static (ToyModel, double[]) TrainOnce(int n, int m, float[] importance, double sparsity, ToyTrainOptions o, ulong seed)
    {
        var rng = new Rng(seed);
        var model = new ToyModel(n, m, importance);
        model.Initialize(ref rng);
        int B = o.BatchSize, wLen = m * n;
        // parameters, gradients and both AdamW moments in one flat layout: [W (m·n) | b (n)]. The update is
        // AdamW.UpdateReference, the project's readable AdamW over plain spans (the serial form: each model
        // runs on one thread, so the parallelism is across models and the results cannot depend on the count).
        // W decays, b does not (as the GPT's biases).
        int P = wLen + n;
        var p = new float[P];
        var g = new float[P];
        var mom = new float[P];
        var vel = new float[P];
        ReadOnlySpan<ParamSegment> segments = [new ParamSegment(0, wLen, true), new ParamSegment(wLen, n, false)];
        var x = new float[B * n];
        var h = new float[B * m];
        var pre = new float[B * n];
        var output = new float[B * n];
        var dh = new float[m];
        var dpre = new float[n];
        int points = Math.Clamp(o.CurvePoints, 1, o.Steps);
        var curve = new double[points];
        var counts = new int[points];
        for (int step = 1; step <= o.Steps; step++)
        {
            SparseFeatures.Fill(x, sparsity, ref rng);
            double loss = model.Forward(x, h, pre, output, B);
            int pt = (int)((long)(step - 1) * points / o.Steps);
            curve[pt] += loss; counts[pt]++;
            model.Backward(x, h, pre, output, g.AsSpan(0, wLen), g.AsSpan(wLen, n), dh, dpre, B);
            // lr: cosine from lr to lr/10 (see ToyTrainOptions)
            float lr = (float)(o.Lr * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * (step - 1) / Math.Max(1, o.Steps - 1)))));
            model.W.CopyTo(p, 0);
            model.B.CopyTo(p, wLen);
            var s = new AdamWStep(lr, o.Beta1, o.Beta2, o.Eps, 1f - MathF.Pow(o.Beta1, step), 1f - MathF.Pow(o.Beta2, step),
                o.WeightDecay == 0 ? 1f : 1f - lr * o.WeightDecay);
            AdamW.UpdateReference(p, g, mom, vel, segments, s);
            p.AsSpan(0, wLen).CopyTo(model.W);
            p.AsSpan(wLen, n).CopyTo(model.B);
        }
        for (int i = 0; i < points; i++) curve[i] /= Math.Max(1, counts[i]);
        return (model, curve);
    }
}
