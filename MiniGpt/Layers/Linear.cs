using System.Runtime.Intrinsics;
using System.Numerics.Tensors;
using MiniGpt.Tensors;
using static MiniGpt.Tensors.Views;

namespace MiniGpt.Layers;

/// <summary>y = x·W + b with W stored [in, out] (TransformerLens's W_in, W_out, W_U, W_O layout).</summary>
public static unsafe class Linear
{
    // x [N,I], W [I,O], b [O] or empty → y [N,O]
    public static void Forward(IKernels k, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int N, int I, int O)
    {
        // the bias goes in as the product is stored (a separate y[n] += b pass read and wrote y again: 16 MB per WB MLP layer)
        if (b.IsEmpty) k.MatMul.NN(Mat(x, N, I), Mat(w, I, O), Mat(y, N, O), accumulate: false);
        else k.MatMul.NN(Mat(x, N, I), Mat(w, I, O), b, Mat(y, N, O));
    }

    /// <summary>y[n] += b for every row n (the readable form).</summary>
    public static void AddBiasReference(Span<float> y, ReadOnlySpan<float> b, int N, int O)
    {
        for (int n = 0; n < N; n++) TensorPrimitives.Add(y.Slice(n * O, O), b, y.Slice(n * O, O));
    }

    // differentiates: y = x·W + b
    //   dW += xᵀ·dy,  db += Σ_n dy[n],  dx (+)= dy·Wᵀ
    public static void Backward(IKernels k, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dw, Span<float> db, int N, int I, int O, bool accumulateDx)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "x", x, N, I);
        DebugViews.In(ref views, "W", w, I, O);
        DebugViews.In(ref views, "dy", dy, N, O);
        k.MatMul.TN(Mat(x, N, I), Mat(dy, N, O), Mat(dw, I, O), accumulate: true);
        if (!db.IsEmpty) k.SumRows(dy, db, N, O);
        if (!dx.IsEmpty) k.MatMul.NT(Mat(dy, N, O), Mat(w, I, O), Mat(dx, N, I), accumulateDx);
        DebugViews.Out(ref views, "dx", dx, N, I);
        DebugViews.Out(ref views, "dW", dw, I, O);
        DebugViews.Out(ref views, "db", db, O);
    }

    /// <summary>acc[c] += Σ_n m[n,c], rows in order (deterministic), in column bands across the worker pool.</summary>
    public static void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C) => Run(m, acc, N, C, sum: true);

    /// <summary>The readable form of <see cref="SumRows"/>: one row after another.</summary>
    public static void SumRowsReference(ReadOnlySpan<float> m, Span<float> acc, int N, int C)
    {
        for (int n = 0; n < N; n++) TensorPrimitives.Add(acc, m.Slice(n * C, C), acc);
    }

    // ---- fast forms, bitwise the references ----
    // SumRows: each task owns a band of columns and adds every row to it in row order, so each acc[c] is summed
    // exactly as the reference sums it. The bias add: each task owns a chunk of rows.
    private const int ColumnBand = 64;

    private struct Job { public float* M, V; public int N, C, Rows; }

    /// <summary>y[n] += b for every row n, rows in chunks across the worker pool.</summary>
    public static void AddBias(Span<float> y, ReadOnlySpan<float> b, int N, int O) => Run(b, y, N, O, sum: false);

    private static void Run(ReadOnlySpan<float> m, Span<float> v, int N, int C, bool sum)
    {
        // sum: m is [N, C], v the [C] accumulator; bias: m is the [C] bias, v the [N, C] output
        if (sum ? m.Length < (long)N * C || v.Length < C : m.Length < C || v.Length < (long)N * C)
            throw new ArgumentException($"row sums/bias: buffers do not match [{N}, {C}]");
        fixed (float* pm = m, pv = v)
        {
            int rows = RowParallel.RowsPerTask(C);
            var job = new Job { M = pm, V = pv, N = N, C = C, Rows = rows };
            if (sum) RowParallel.Run(&SumBand, &job, RowParallel.Tasks(C, ColumnBand), (long)N * C);
            else RowParallel.Run(&BiasChunk, &job, RowParallel.Tasks(N, rows), (long)N * C);
        }
    }

    // The band's running sums stay in registers across the rows (one TensorPrimitives.Add per 64-float row cost
    // more in calls than in adds). Each acc[c] is still ((acc[c] + m[0,c]) + m[1,c]) + …, the reference's order.
    private static void SumBand(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int c0 = t * ColumnBand, w = Math.Min(ColumnBand, j->C - c0), N = j->N;
        long C = j->C;
        float* acc = j->V + c0, m = j->M + c0;
        int c = 0;
        for (; c + 32 <= w; c += 32)
        {
            var s0 = Vector256.Load(acc + c); var s1 = Vector256.Load(acc + c + 8);
            var s2 = Vector256.Load(acc + c + 16); var s3 = Vector256.Load(acc + c + 24);
            float* r = m + c;
            for (int n = 0; n < N; n++, r += C)
            {
                s0 += Vector256.Load(r); s1 += Vector256.Load(r + 8);
                s2 += Vector256.Load(r + 16); s3 += Vector256.Load(r + 24);
            }
            s0.Store(acc + c); s1.Store(acc + c + 8); s2.Store(acc + c + 16); s3.Store(acc + c + 24);
        }
        for (; c < w; c++)
        {
            float s = acc[c];
            float* r = m + c;
            for (int n = 0; n < N; n++, r += C) s += *r;
            acc[c] = s;
        }
    }

    private static void BiasChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int n0 = t * j->Rows, n = Math.Min(j->Rows, j->N - n0);
        AddBiasReference(new Span<float>(j->V + (long)n0 * j->C, n * j->C), new ReadOnlySpan<float>(j->M, j->C), n, j->C);
    }
}
