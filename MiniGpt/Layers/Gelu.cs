using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>The tanh approximation of GELU (TransformerLens "gelu_new", GPT-2's activation).</summary>
public static unsafe class Gelu
{
    private const float C = 0.7978845608028654f; // √(2/π)
    private const float A = 0.044715f;

    // y = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))   x, y [len]; the readable form, one vector operation at a time
    public static void ForwardReference(ReadOnlySpan<float> x, Span<float> y)
    {
        TensorPrimitives.Multiply(x, x, y);
        TensorPrimitives.Multiply(y, x, y);                 // x³
        TensorPrimitives.FusedMultiplyAdd(y, A, x, y);      // x + A·x³
        TensorPrimitives.Multiply(y, C, y);
        TensorPrimitives.Tanh(y, y);                        // t
        TensorPrimitives.Add(y, 1f, y);
        TensorPrimitives.Multiply(y, x, y);
        TensorPrimitives.Multiply(y, 0.5f, y);              // ½·x·(1+t)
    }

    // differentiates: y = ½·x·(1 + t),  t = tanh(u),  u = √(2/π)·(x + 0.044715·x³)
    //   dy/dx = ½·(1 + t) + ½·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²)
    // dx (+)= dy · dy/dx; tScratch [len] receives t. The readable form of Backward.
    public static void BackwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "x", x, x.Length);
        DebugViews.In(ref views, "dy", dy, x.Length);
        var t = tScratch[..x.Length];
        TensorPrimitives.Multiply(x, x, t);
        TensorPrimitives.Multiply(t, x, t);
        TensorPrimitives.FusedMultiplyAdd(t, A, x, t);
        TensorPrimitives.Multiply(t, C, t);
        TensorPrimitives.Tanh(t, t);
        for (int i = 0; i < x.Length; i++)
        {
            float xi = x[i], ti = t[i];
            float d = 0.5f * (1f + ti) + 0.5f * xi * (1f - ti * ti) * C * (1f + 3f * A * xi * xi);
            dx[i] = accumulate ? dx[i] + dy[i] * d : dy[i] * d;
        }
        DebugViews.Out(ref views, "dx", dx, x.Length);
    }

    // ---- fast form: one pass per element, Vector256, split into fixed chunks across the worker pool ----
    // With s = σ(2u) = 1/(1 + e^(−2u)):  ½·(1 + tanh u) = s  and  1 − tanh² u = 4·s·(1 − s), so
    //   y = x·s,   dy/dx = s + 2·x·s·(1 − s)·√(2/π)·(1 + 3·0.044715·x²)
    // (one exp per element instead of tanh's; elementwise, so the chunking cannot change a result).
    private const int Chunk = 1 << 14;

    private struct Job { public float* X, Dy, Out; public int Length; public bool Accumulate; }

    /// <summary>y = x·σ(2u): <see cref="ForwardReference"/> in one pass per element, chunks across the worker pool.</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Run(x, default, y, forward: true, accumulate: false);

    /// <summary>dx (+)= dy·dy/dx: <see cref="BackwardReference"/> in one pass per element (no scratch: t is not stored).</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "x", x, x.Length);
        DebugViews.In(ref views, "dy", dy, x.Length);
        Run(x, dy, dx, forward: false, accumulate);
        DebugViews.Out(ref views, "dx", dx, x.Length);
    }

    private static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> output, bool forward, bool accumulate)
    {
        int n = x.Length;
        if (output.Length < n || (!forward && dy.Length < n)) throw new ArgumentException("GELU: output/gradient shorter than input");
        fixed (float* px = x, pdy = dy, po = output)
        {
            var job = new Job { X = px, Dy = pdy, Out = po, Length = n, Accumulate = accumulate };
            int tasks = (n + Chunk - 1) / Chunk;
            if (tasks <= 1) { if (forward) ForwardChunk(&job, 0); else BackwardChunk(&job, 0); }
            else WorkerPool.Current.Run(forward ? &ForwardChunk : &BackwardChunk, &job, tasks);
        }
    }

    private static Vector256<float> Sigmoid2U(Vector256<float> x)
    {
        var u = Vector256.Create(C) * (x + Vector256.Create(A) * x * x * x);
        return Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(Vector256.Create(-2f) * u));
    }

    private static float Sigmoid2U(float x)
    {
        float u = C * (x + A * x * x * x);
        return 1f / (1f + MathF.Exp(-2f * u));
    }

    private static void ForwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int i0 = t * Chunk, i1 = Math.Min(j->Length, i0 + Chunk), i = i0;
        float* x = j->X, y = j->Out;
        for (; i <= i1 - 8; i += 8)
        {
            var xv = Vector256.Load(x + i);
            (xv * Sigmoid2U(xv)).Store(y + i);
        }
        for (; i < i1; i++) y[i] = x[i] * Sigmoid2U(x[i]);
    }

    private static void BackwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int i0 = t * Chunk, i1 = Math.Min(j->Length, i0 + Chunk), i = i0;
        float* x = j->X, dy = j->Dy, dx = j->Out;
        bool acc = j->Accumulate;
        var one = Vector256<float>.One;
        for (; i <= i1 - 8; i += 8)
        {
            var xv = Vector256.Load(x + i);
            var s = Sigmoid2U(xv);
            var d = s + Vector256.Create(2f * C) * xv * s * (one - s) * (one + Vector256.Create(3f * A) * xv * xv);
            var g = Vector256.Load(dy + i) * d;
            if (acc) g += Vector256.Load(dx + i);
            g.Store(dx + i);
        }
        for (; i < i1; i++)
        {
            float xi = x[i], s = Sigmoid2U(xi);
            float d = s + 2f * C * xi * s * (1f - s) * (1f + 3f * A * xi * xi);
            dx[i] = acc ? dx[i] + dy[i] * d : dy[i] * d;
        }
    }
}
