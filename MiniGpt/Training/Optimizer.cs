using System.Numerics.Tensors;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", 2019), as torch.optim.AdamW:
///   θ ← θ − lr·λ·θ                       (decoupled decay, only for tensors that decay; see ParameterLayout.Decays)
///   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
///   θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
/// or plain SGD: θ ← θ − lr·λ·θ − lr·g. Moments live in two arenas with the parameters' layout; the AdamW
/// arithmetic is the model's kernel set's (<see cref="IKernels.AdamW"/>, the readable and the fast form in AdamW.cs).
/// </summary>
public sealed class Optimizer
{
    public string Kind { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Eps { get; }
    public float WeightDecay { get; }
    public Arena M { get; }
    public Arena V { get; }
    /// <summary>Updates applied so far (Adam's t).</summary>
    public long Step { get; set; }

    private readonly IKernels _kernels;
    private readonly Arena _params, _grads;
    // the parameter buffer cut into runs of tensors that all decay or all do not, in layout order
    private readonly ParamSegment[] _segments;

    public Optimizer(GptModel model, string kind, float beta1, float beta2, float eps, float weightDecay)
    {
        if (kind is not ("adamw" or "sgd")) throw new UserError($"optimizer '{kind}' is unknown: use adamw or sgd");
        Kind = kind; Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        _kernels = model.Kernels;
        _params = model.Params;
        _grads = model.Grads;
        M = ParameterLayout.Declare(model.Config).Build();
        V = ParameterLayout.Declare(model.Config).Build();
        var segments = new List<ParamSegment>();
        foreach (var t in _params.Tensors)
        {
            bool decay = ParameterLayout.Decays(t);
            if (segments.Count > 0 && segments[^1].Decay == decay && segments[^1].Start + segments[^1].Length == t.Offset)
                segments[^1] = segments[^1] with { Length = segments[^1].Length + t.Length };
            else segments.Add(new ParamSegment(t.Offset, t.Length, decay));
        }
        _segments = segments.ToArray();
    }

    /// <param name="gradScale">the factor every gradient is multiplied by as it is read (global-norm clipping)</param>
    public void Update(float lr, float gradScale = 1f)
    {
        Step++;
        float decay = WeightDecay == 0 ? 1f : 1f - lr * WeightDecay;
        if (Kind == "sgd")
        {
            if (gradScale != 1f) GradClip.Scale(_grads.Buffer, gradScale);
            foreach (var (start, length, decays) in _segments)
            {
                var p = _params.Buffer.AsSpan(start, length);
                if (decays && WeightDecay != 0) TensorPrimitives.Multiply(p, decay, p);
                TensorPrimitives.MultiplyAdd(_grads.Buffer.AsSpan(start, length), -lr, p, p);
            }
            return;
        }
        var step = new AdamWStep(lr, Beta1, Beta2, Eps, 1f - MathF.Pow(Beta1, Step), 1f - MathF.Pow(Beta2, Step), decay, gradScale);
        _kernels.AdamW(_params.Buffer, _grads.Buffer, M.Buffer, V.Buffer, _segments, step);
    }
}

/// <summary>nanoGPT's schedule: linear warm-up to lr, then cosine decay to min_lr at the last step.</summary>
public static class LrSchedule
{
    public static float At(long step, float lr, float minLr, int warmup, long totalSteps)
    {
        if (step < warmup) return lr * (step + 1) / (warmup + 1);
        if (step >= totalSteps) return minLr;
        double ratio = (double)(step - warmup) / Math.Max(1, totalSteps - warmup);
        double coeff = 0.5 * (1.0 + Math.Cos(Math.PI * ratio));
        return (float)(minLr + coeff * (lr - minLr));
    }
}

public static unsafe class GradClip
{
    private const int Chunk = 1 << 14;

    [ThreadStatic] private static double[]? _partials;

    /// <summary>Global L2 norm of all gradients; if above maxNorm (and maxNorm > 0), scales them down to it. Returns the norm before clipping.</summary>
    public static float ClipGlobalNorm(float[] grads, float maxNorm)
    {
        float norm = GlobalNorm(grads);
        float scale = ScaleFor(norm, maxNorm);
        if (scale != 1f) Scale(grads, scale);
        return norm;
    }

    /// <summary>The factor clipping to maxNorm multiplies gradients of this norm by: maxNorm/norm above it, else 1 (and 1 when maxNorm is 0, off).</summary>
    public static float ScaleFor(float norm, float maxNorm) => maxNorm > 0 && norm > maxNorm ? maxNorm / norm : 1f;

    /// <summary>
    /// ‖g‖₂ over all gradients: sums of squares in fixed chunks (in parallel: 49 ms of a GPT-2 124M step on one
    /// thread), combined in double in chunk order, so the result does not depend on threads.
    /// </summary>
    public static float GlobalNorm(float[] grads)
    {
        int chunks = (grads.Length + Chunk - 1) / Chunk;
        var partials = _partials is { } p && p.Length >= chunks ? p : (_partials = new double[chunks]);
        fixed (float* g = grads)
        fixed (double* ps = partials)
        {
            var job = new Job { Grads = g, Length = grads.Length, Partials = ps };
            RowParallel.Run(&SumOfSquaresChunk, &job, chunks, grads.Length);
            double ss = 0;
            for (int i = 0; i < chunks; i++) ss += ps[i];
            return (float)Math.Sqrt(ss);
        }
    }

    /// <summary>grads ·= scale, in fixed chunks across the pool.</summary>
    public static void Scale(float[] grads, float scale)
    {
        fixed (float* g = grads)
        {
            var job = new Job { Grads = g, Length = grads.Length, Scale = scale };
            RowParallel.Run(&ScaleChunk, &job, (grads.Length + Chunk - 1) / Chunk, grads.Length);
        }
    }

    private struct Job { public float* Grads; public long Length; public double* Partials; public float Scale; }

    private static Span<float> ChunkOf(Job* j, int t) => new(j->Grads + (long)t * Chunk, (int)Math.Min(Chunk, j->Length - (long)t * Chunk));

    private static void SumOfSquaresChunk(void* ctx, int t) => ((Job*)ctx)->Partials[t] = TensorPrimitives.SumOfSquares(ChunkOf((Job*)ctx, t));

    private static void ScaleChunk(void* ctx, int t)
    {
        var c = ChunkOf((Job*)ctx, t);
        TensorPrimitives.Multiply(c, ((Job*)ctx)->Scale, c);
    }
}
