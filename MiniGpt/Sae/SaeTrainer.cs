using System.Diagnostics;
using System.Numerics.Tensors;
using MiniGpt.Data;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Training;

namespace MiniGpt.Sae;

/// <summary>How to train an SAE (the defaults follow Anthropic's April 2024 recipe scaled down to small models).</summary>
public sealed record SaeTrainOptions
{
    public required string Hook { get; init; }
    /// <summary>Features; 0: 8 × d_in.</summary>
    public int DSae { get; init; }
    /// <summary>TopK by default: on the README's shakespeare model it reaches L0 16 at loss recovered 0.965, where relu stays below 0.52 at any L0 tried.</summary>
    public SaeArchitecture Architecture { get; init; } = SaeArchitecture.TopK;
    public int K { get; init; } = 16;
    /// <summary>λ of the decoder-norm-weighted L1 penalty, on activations scaled so E‖x‖² = d_in (Relu only).</summary>
    public float L1Coefficient { get; init; } = 5f;
    /// <summary>λ rises linearly from 0 over this share of the steps (Anthropic: 5 %).</summary>
    public double L1Warmup { get; init; } = 0.05;
    public float Lr { get; init; } = 1e-3f;
    /// <summary>Linear learning-rate warm-up steps; the rate then holds and decays linearly to 0 over the last LrDecay of the steps.</summary>
    public int WarmupSteps { get; init; } = 100;
    public double LrDecay { get; init; } = 0.2;
    public int Steps { get; init; } = 4000;
    /// <summary>Activations per step.</summary>
    public int BatchRows { get; init; } = 1024;
    /// <summary>Rows in the shuffled activation buffer.</summary>
    public int BufferRows { get; init; } = 65536;
    /// <summary>Windows of n_ctx tokens run through the model at once to refill the buffer.</summary>
    public int WindowsPerRefill { get; init; } = 16;
    /// <summary>A feature is dead when it has not fired on any of the last DeadWindow steps' activations.</summary>
    public int DeadWindow { get; init; } = 1000;
    /// <summary>Resample dead features (Anthropic 2023, "Towards Monosemanticity") at these shares of training; empty: never.</summary>
    public double[] ResampleAt { get; init; } = [];
    public int LogInterval { get; init; } = 100;
    public ulong Seed { get; init; } = 1;
}

/// <summary>One training log line: the batch's mse, L0 and explained variance, λ and lr, the features dead so far, the throughput.</summary>
public readonly record struct SaeTrainLog(int Step, double Mse, double L0, double ExplainedVariance, double L1Coefficient, double Lr, int Dead, double TokensPerSecond, long ModelTokens);

/// <summary>
/// Trains an SAE on the activations an <see cref="ActivationStore"/> streams: inputs scaled by one factor so that
/// E‖x‖² = d_in (Anthropic's normalisation, which makes λ transferable), b_dec started at their mean, AdamW
/// (β 0.9, 0.999, no decay) with warm-up and a linear decay to 0, λ warmed up, TopK's decoder kept at unit norm,
/// dead features tracked over a window and optionally resampled. The result is rescaled to the raw activations.
/// A step allocates nothing; the run is deterministic for a seed.
/// </summary>
public sealed class SaeTrainer
{
    public SaeTrainOptions Options { get; }
    public SparseAutoencoder Sae { get; }
    public ActivationStore Store { get; }
    /// <summary>The factor the activations are multiplied by for training (E‖scale·x‖² = d_in).</summary>
    public float Scale { get; }
    public List<SaeTrainLog> History { get; } = [];
    /// <summary>The step each feature last fired on (−1: never).</summary>
    public int[] LastFired { get; }
    public int Resampled { get; private set; }

    private readonly float[] _x, _m, _v, _mean;
    private readonly SaeActivations _act;
    private readonly ParamSegment[] _segments;
    private int _step;

    public SaeTrainer(GptModel model, IBatchSource data, SaeTrainOptions o, IKernels? kernels = null)
    {
        if (o.Steps < 1) throw new UserError($"--steps must be ≥ 1, got {o.Steps}");
        if (o.BatchRows < 1) throw new UserError($"--batch-rows must be ≥ 1, got {o.BatchRows}");
        Options = o;
        int dIn = ActivationStore.WidthOf(model, o.Hook);
        var config = new SaeConfig
        {
            DIn = dIn, DSae = o.DSae == 0 ? 8 * dIn : o.DSae, Architecture = o.Architecture, K = o.K,
            HookName = o.Hook, HookLayer = model.HookLayerOf(o.Hook), ContextSize = model.Config.NCtx,
        };
        if (o.DSae < 0) throw new UserError($"--d-sae must be ≥ 1, got {o.DSae}: give the number of features, e.g. {8 * dIn} (8 × d_in)");
        Sae = new SparseAutoencoder(config, kernels);
        int buffer = Math.Max(o.BufferRows, 2 * o.BatchRows);
        Store = new ActivationStore(model, data, o.Hook, buffer, o.WindowsPerRefill, o.Seed);
        if (o.BatchRows > Store.Capacity / 2)
            throw new UserError($"--batch-rows {o.BatchRows} is more than half the buffer ({Store.Capacity} rows, whole batches of {o.WindowsPerRefill} windows): use --buffer {2 * o.BatchRows + o.WindowsPerRefill * model.Config.NCtx} or more");
        _x = new float[o.BatchRows * dIn];
        _mean = new float[dIn];
        _act = new SaeActivations(config, o.BatchRows);
        _m = new float[Sae.Parameters.Length];
        _v = new float[Sae.Parameters.Length];
        _segments = Sae.Segments;
        LastFired = new int[config.DSae];
        Array.Fill(LastFired, -1);

        // the scale and b_dec from a first sample of the buffer (it is refilled before those rows are trained on twice)
        int probeRows = Math.Min(Store.Capacity / 2, 8192);
        var probe = new float[probeRows * dIn];
        Store.Next(probe, probeRows);
        double sq = TensorPrimitives.SumOfSquares(probe) / probeRows;
        Scale = sq > 0 ? (float)Math.Sqrt(dIn / sq) : 1f;
        Sae.Initialise(o.Seed, o.Architecture == SaeArchitecture.TopK ? 1f : 0.1f);
        var bDec = Sae.BDec;
        for (int n = 0; n < probeRows; n++) TensorPrimitives.Add(bDec, probe.AsSpan(n * dIn, dIn), bDec);
        TensorPrimitives.Multiply(bDec, Scale / probeRows, bDec);
    }

    public int Step => _step;

    /// <summary>λ at a step: linear from 0 to λ over the first L1Warmup of the steps.</summary>
    public float L1At(int step) => Options.Architecture != SaeArchitecture.Relu ? 0f
        : Options.L1Warmup <= 0 ? Options.L1Coefficient : (float)(Options.L1Coefficient * Math.Min(1.0, (step + 1) / (Options.L1Warmup * Options.Steps)));

    /// <summary>lr at a step: linear warm-up, constant, then linear decay to 0 over the last LrDecay of the steps.</summary>
    public float LrAt(int step)
    {
        var o = Options;
        double warm = o.WarmupSteps > 0 ? Math.Min(1.0, (step + 1.0) / o.WarmupSteps) : 1.0;
        double decayStart = o.Steps * (1 - o.LrDecay);
        double decay = step < decayStart ? 1.0 : Math.Max(0.0, (o.Steps - step) / (o.Steps - decayStart));
        return (float)(o.Lr * warm * decay);
    }

    /// <summary>Runs the remaining steps, calling log every LogInterval steps and at the last.</summary>
    public void Run(Action<SaeTrainLog>? log = null, Func<bool>? stop = null)
    {
        var o = Options;
        var clock = Stopwatch.StartNew();
        long tokens0 = Store.TokensSeen;
        double mseSum = 0, l0Sum = 0, evSum = 0;
        int logged = 0;
        var resampleSteps = o.ResampleAt.Select(f => (int)(f * o.Steps)).ToHashSet();
        while (_step < o.Steps)
        {
            var (mse, l0, ev) = TrainStep();
            mseSum += mse; l0Sum += l0; evSum += ev; logged++;
            if (resampleSteps.Contains(_step)) Resampled += ResampleDead();
            if (_step % o.LogInterval == 0 || _step == o.Steps)
            {
                double secs = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                var entry = new SaeTrainLog(_step, mseSum / logged, l0Sum / logged, evSum / logged, L1At(_step - 1), LrAt(_step - 1), DeadCount(),
                    (double)_step * o.BatchRows / secs, Store.TokensSeen - tokens0);
                History.Add(entry);
                log?.Invoke(entry);
                mseSum = l0Sum = evSum = 0; logged = 0;
            }
            if (stop?.Invoke() == true) break;
        }
    }

    /// <summary>One step on the next batch of the store; returns the batch's mse, L0 and explained variance (scaled units).</summary>
    public (double Mse, double L0, double ExplainedVariance) TrainStep()
    {
        var o = Options;
        int N = o.BatchRows, d = Sae.Config.DIn, s = Sae.Config.DSae;
        Store.Next(_x, N);
        TensorPrimitives.Multiply(_x, Scale, _x);
        float l1 = L1At(_step);
        Sae.Forward(_x, N, _act);
        var loss = Sae.Loss(_x, N, _act, l1);
        if (!double.IsFinite(loss.Total))
            throw new UserError($"SAE training diverged at step {_step + 1}: the loss is not finite; lower --lr (it is {Options.Lr:G3}){(Options.Architecture == SaeArchitecture.Relu ? " or --l1" : "")}");
        Sae.Backward(_x, N, _act, l1);
        float lr = LrAt(_step);
        _step++;
        float bc1 = 1f - MathF.Pow(0.9f, _step), bc2 = 1f - MathF.Pow(0.999f, _step);
        Sae.Kernels.AdamW(Sae.Parameters, Sae.Gradients, _m, _v, _segments, new AdamWStep(lr, 0.9f, 0.999f, 1e-8f, bc1, bc2, 1f)); // the SAE's kernel set, so MINIGPT_KERNELS=scalar reaches this too
        if (Sae.Config.Architecture == SaeArchitecture.TopK) Sae.NormaliseDecoder();

        // L0 and firing; explained variance of the batch against its own mean
        var f = _act.Features;
        long active = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < s; i++)
                if (f[n * s + i] > 0) { active++; LastFired[i] = _step; }
        // Σ_n ‖x_n − x̄‖² = Σ_n ‖x_n‖² − N‖x̄‖², rows read in order
        var mean = _mean.AsSpan();
        mean.Clear();
        for (int n = 0; n < N; n++) TensorPrimitives.Add(mean, _x.AsSpan(n * d, d), mean);
        TensorPrimitives.Multiply(mean, 1f / N, mean);
        double total = (double)TensorPrimitives.SumOfSquares(_x.AsSpan(0, N * d)) - (double)N * TensorPrimitives.SumOfSquares(mean);
        return (loss.Mse, (double)active / N, 1 - loss.Mse * N / total);
    }

    /// <summary>Features that have not fired in the last DeadWindow steps (all steps so far, early in training).</summary>
    public int DeadCount()
    {
        int since = _step - Options.DeadWindow, dead = 0;
        foreach (int last in LastFired) if (last < 0 || last <= since) dead++;
        return dead;
    }

    /// <summary>
    /// Resamples dead features (Anthropic 2023, simplified): each dead feature i gets a decoder row along an input the SAE
    /// reconstructs worst (chosen with probability ∝ its squared error, from the next batch), an encoder column along the
    /// same direction scaled to 0.2 × the mean encoder norm of the live features, b_enc,i = 0, and its Adam moments reset.
    /// </summary>
    public int ResampleDead()
    {
        int d = Sae.Config.DIn, s = Sae.Config.DSae, N = Options.BatchRows;
        int since = _step - Options.DeadWindow;
        var dead = Enumerable.Range(0, s).Where(i => LastFired[i] < 0 || LastFired[i] <= since).ToList();
        if (dead.Count == 0) return 0;
        Store.Next(_x, N);
        TensorPrimitives.Multiply(_x, Scale, _x);
        Sae.Forward(_x, N, _act);
        var err = new double[N];
        double totalErr = 0;
        for (int n = 0; n < N; n++)
        {
            double e = 0;
            for (int j = 0; j < d; j++) { double r = _act.Reconstruction[n * d + j] - _x[n * d + j]; e += r * r; }
            err[n] = e * e; // ∝ squared loss
            totalErr += err[n];
        }
        var wEnc = Sae.WEnc; var wDec = Sae.WDec;
        double aliveNorm = 0; int alive = 0;
        var deadSet = dead.ToHashSet();
        for (int i = 0; i < s; i++)
        {
            if (deadSet.Contains(i)) continue;
            double nn = 0;
            for (int j = 0; j < d; j++) nn += wEnc[j * s + i] * wEnc[j * s + i];
            aliveNorm += Math.Sqrt(nn); alive++;
        }
        double encNorm = alive > 0 ? 0.2 * aliveNorm / alive : 0.2;
        var rng = new Rng(Options.Seed + (ulong)_step);
        var dir = new float[d];
        foreach (int i in dead)
        {
            double u = rng.NextDouble() * totalErr, acc = 0;
            int pick = N - 1;
            for (int n = 0; n < N; n++) { acc += err[n]; if (acc >= u) { pick = n; break; } }
            for (int j = 0; j < d; j++) dir[j] = _x[pick * d + j] - Sae.BDec[j];
            float norm = TensorPrimitives.Norm(dir);
            if (norm == 0) continue;
            TensorPrimitives.Multiply(dir, 1f / norm, dir);
            float decNorm = Sae.Config.Architecture == SaeArchitecture.TopK ? 1f : 0.1f;
            for (int j = 0; j < d; j++)
            {
                wDec[i * d + j] = dir[j] * decNorm;
                wEnc[j * s + i] = (float)(dir[j] * encNorm);
            }
            Sae.BEnc[i] = 0;
            ResetMoments(i);
            LastFired[i] = _step; // give it a window to fire before it counts as dead again
        }
        return dead.Count;
    }

    private void ResetMoments(int i)
    {
        int d = Sae.Config.DIn, s = Sae.Config.DSae;
        int wDec = d * s + s, bEnc = d * s;
        for (int j = 0; j < d; j++) { _m[j * s + i] = _v[j * s + i] = 0; _m[wDec + i * d + j] = _v[wDec + i * d + j] = 0; }
        _m[bEnc + i] = _v[bEnc + i] = 0;
    }

    /// <summary>The trained SAE for raw (unscaled) activations, as saved and evaluated.</summary>
    public SparseAutoencoder Result() => Sae.Rescaled(Scale);
}
