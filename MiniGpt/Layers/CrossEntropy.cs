using System.Numerics.Tensors;
using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>Softmax and next-token cross-entropy fused, so the [N, V] probabilities are never stored.</summary>
public static unsafe class CrossEntropy
{
    /// <summary><see cref="ForwardReference"/> on fixed chunks of rows across the worker pool when the logits are large (bitwise the reference).</summary>
    public static double Forward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V)
    {
        if ((long)N * V >= RowParallel.SerialElements)
        {
            // the reference rows in parallel chunks, then the same in-order sum of the same float losses
            Run(logits, targets, losses, 0, N, V, forward: true);
            double sum = 0;
            for (int n = 0; n < N; n++) sum += losses[n];
            return sum;
        }
        return ForwardReference(logits, targets, losses, N, V);
    }

    // logits [N,V], targets [N] → losses [N] = logsumexp(logits[n]) − logits[n, target[n]]; returns Σ_n losses
    // The readable form: one row after another. The exponentials go through TensorPrimitives into a row of scratch
    // (a scalar MathF.Exp loop cost 2.3 ns per logit: 30 ms of GPT-2's step at 256 × 50,257 logits), summed as
    // Softmax.Forward sums them for the backward pass.
    public static double ForwardReference(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V)
    {
        double total = 0;
        var e = ExpScratch(V);
        for (int n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            float max = TensorPrimitives.Max(row);
            TensorPrimitives.Subtract(row, max, e);
            TensorPrimitives.Exp(e, e);
            float sum = TensorPrimitives.Sum(e);
            float loss = (float)(Math.Log(sum) + max - row[targets[n]]);
            losses[n] = loss;
            total += loss;
        }
        return total;
    }

    [ThreadStatic] private static float[]? _exp;

    private static Span<float> ExpScratch(int V) => (_exp is { } e && e.Length >= V ? e : (_exp = new float[V])).AsSpan(0, V);

    /// <summary><see cref="BackwardReference"/> on fixed chunks of rows across the worker pool when the logits are large (bitwise the reference).</summary>
    public static void Backward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "logits", logits, N, V);
        if ((long)N * V >= RowParallel.SerialElements) Run(logits, targets, dLogits, scale, N, V, forward: false);
        else BackwardReference(logits, targets, dLogits, scale, N, V);
        DebugViews.Out(ref views, "dlogits", dLogits, N, V);
    }

    // differentiates: loss = scale·Σ_n (logsumexp(logits[n]) − logits[n, y_n])
    //   dlogits[n] = scale·(softmax(logits[n]) − onehot(y_n))
    // The readable form: one row after another.
    public static void BackwardReference(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "logits", logits, N, V);
        for (int n = 0; n < N; n++)
        {
            var d = dLogits.Slice(n * V, V);
            Softmax.Forward(logits.Slice(n * V, V), d);
            d[targets[n]] -= 1f;
            TensorPrimitives.Multiply(d, scale, d);
        }
        DebugViews.Out(ref views, "dlogits", dLogits, N, V);
    }

    // ---- fast form: the reference rows in fixed chunks across the worker pool (bitwise the reference) ----
    private struct Job { public float* Logits, Out; public int* Targets; public float Scale; public int N, V, Rows; }

    private static void Run(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> output, float scale, int N, int V, bool forward)
    {
        if (logits.Length < (long)N * V || targets.Length < N || output.Length < (forward ? N : (long)N * V))
            throw new ArgumentException($"cross-entropy: buffers shorter than [{N}, {V}]");
        int rows = RowParallel.RowsPerTask(V);
        fixed (float* pl = logits, po = output)
        fixed (int* pt = targets)
        {
            var job = new Job { Logits = pl, Out = po, Targets = pt, Scale = scale, N = N, V = V, Rows = rows };
            RowParallel.Run(forward ? &ForwardChunk : &BackwardChunk, &job, RowParallel.Tasks(N, rows), (long)N * V);
        }
    }

    private static void ForwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int n0 = t * j->Rows, n = Math.Min(j->Rows, j->N - n0);
        ForwardReference(new ReadOnlySpan<float>(j->Logits + (long)n0 * j->V, n * j->V), new ReadOnlySpan<int>(j->Targets + n0, n),
            new Span<float>(j->Out + n0, n), n, j->V);
    }

    private static void BackwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int n0 = t * j->Rows, n = Math.Min(j->Rows, j->N - n0);
        long o = (long)n0 * j->V;
        BackwardReference(new ReadOnlySpan<float>(j->Logits + o, n * j->V), new ReadOnlySpan<int>(j->Targets + n0, n),
            new Span<float>(j->Out + o, n * j->V), j->Scale, n, j->V);
    }
}
