using System.Numerics.Tensors;
using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>
/// LayerNorm over the last dimension, eps 1e-5, biased variance (as PyTorch and TransformerLens).
/// With empty w and b it is TransformerLens's "LNPre" (normalise only), used once w and b are folded
/// into the weights that read its output.
/// </summary>
public static unsafe class LayerNorm
{
    public const float Eps = 1e-5f;

    // x [N,C] → y [N,C] = (x - μ)·rstd·w + b, with μ = mean(x), rstd = 1/√(mean((x-μ)²) + eps) saved per row [N]
    // The readable form: one row after another (Forward runs it on chunks of rows in parallel).
    public static void ForwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        Span<float> y, Span<float> mean, Span<float> rstd, int N, int C)
    {
        for (int n = 0; n < N; n++)
        {
            var xr = x.Slice(n * C, C);
            var yr = y.Slice(n * C, C);
            float mu = TensorPrimitives.Sum(xr) / C;
            TensorPrimitives.Subtract(xr, mu, yr);                 // y = x - μ
            float var = TensorPrimitives.SumOfSquares(yr) / C;      // biased variance
            float rs = 1f / MathF.Sqrt(var + Eps);
            TensorPrimitives.Multiply(yr, rs, yr);                  // x̂
            if (!w.IsEmpty) TensorPrimitives.FusedMultiplyAdd(yr, w, b, yr); // x̂·w + b
            mean[n] = mu;
            rstd[n] = rs;
        }
    }

    // differentiates: y = (x - μ)·rstd·w + b
    //   dw += Σ_n dy·x̂,  db += Σ_n dy
    //   dx += rstd·(g - mean(g) - x̂·mean(g·x̂)),  g = dy·w
    // scratch xhat, g [C] hold x̂ and g for one row. The readable form: one row after another, dw and db summed in row order.
    public static void BackwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        BackwardInputs(ref views, x, w, mean, rstd, dy, N, C);
        xhat = xhat[..C];
        g = g[..C];
        for (int n = 0; n < N; n++)
        {
            var xr = x.Slice(n * C, C);
            var dyr = dy.Slice(n * C, C);
            var dxr = dx.Slice(n * C, C);
            TensorPrimitives.Subtract(xr, mean[n], xhat);
            TensorPrimitives.Multiply(xhat, rstd[n], xhat);
            if (w.IsEmpty) dyr.CopyTo(g); // LNPre: no affine part
            else
            {
                TensorPrimitives.FusedMultiplyAdd(dyr, xhat, dw, dw);
                TensorPrimitives.Add(db, dyr, db);
                TensorPrimitives.Multiply(dyr, w, g);
            }
            float meanG = TensorPrimitives.Sum(g) / C;
            float meanGx = TensorPrimitives.Dot(g, xhat) / C;
            // dx += rstd·(g - meanG - x̂·meanGx)
            TensorPrimitives.MultiplyAdd(xhat, -meanGx, g, g);
            TensorPrimitives.Subtract(g, meanG, g);
            TensorPrimitives.MultiplyAdd(g, rstd[n], dxr, dxr);
        }
        DebugViews.Out(ref views, "dx", dx, N, C);
        DebugViews.Out(ref views, "dw", dw, C);
        DebugViews.Out(ref views, "db", db, C);
    }

    // ---- fast form: the reference rows in fixed chunks of rows across the worker pool ----
    // Forward runs ForwardReference on each chunk, so it is bitwise the reference. Backward gives each chunk
    // its own partial dw and db (from zero), then adds the partials to dw and db in chunk order: the chunks
    // depend only on C, so the sums are the same on any thread count (though rounded differently from the
    // row-by-row reference).
    private struct Job
    {
        public float* X, W, B, Dy, Y, Mean, Rstd, Partial;
        public int N, C, Rows, WLen;
    }

    /// <summary><see cref="ForwardReference"/> on fixed chunks of rows across the worker pool (bitwise the reference).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        Span<float> y, Span<float> mean, Span<float> rstd, int N, int C) =>
        Run(x, w, b, default, y, mean, rstd, default, default, N, C, forward: true);

    /// <summary><see cref="BackwardReference"/> on fixed chunks of rows, each with its own dw/db partials added in chunk order.</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, int N, int C)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        BackwardInputs(ref views, x, w, mean, rstd, dy, N, C);
        Run(x, w, default, dy, dx, mean, rstd, dw, db, N, C, forward: false);
        DebugViews.Out(ref views, "dx", dx, N, C);
        DebugViews.Out(ref views, "dw", dw, C);
        DebugViews.Out(ref views, "db", db, C);
    }

    private static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ReadOnlySpan<float> dy, Span<float> y,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, Span<float> dw, Span<float> db, int N, int C, bool forward)
    {
        if (x.Length < (long)N * C || y.Length < (long)N * C || mean.Length < N || rstd.Length < N || (!forward && dy.Length < (long)N * C))
            throw new ArgumentException($"LayerNorm: buffers shorter than [{N}, {C}]");
        int rows = RowParallel.RowsPerTask(C), tasks = RowParallel.Tasks(N, rows);
        bool affine = !w.IsEmpty;
        fixed (float* px = x, pw = w, pb = b, pdy = dy, py = y, pm = mean, pr = rstd)
        {
            var job = new Job { X = px, W = pw, B = pb, Dy = pdy, Y = py, Mean = pm, Rstd = pr, N = N, C = C, Rows = rows, WLen = w.Length };
            if (forward) { RowParallel.Run(&ForwardChunk, &job, tasks, (long)N * C); return; }
            if (affine) job.Partial = SharedScratch.Get((long)tasks * 2 * C);
            RowParallel.Run(&BackwardChunk, &job, tasks, (long)N * C);
            if (!affine) return;
            for (int t = 0; t < tasks; t++)
            {
                float* p = job.Partial + (long)t * 2 * C;
                TensorPrimitives.Add(dw[..C], new ReadOnlySpan<float>(p, C), dw[..C]);
                TensorPrimitives.Add(db[..C], new ReadOnlySpan<float>(p + C, C), db[..C]);
            }
        }
    }

    private static void ForwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int n0 = t * j->Rows, n = Math.Min(j->Rows, j->N - n0), C = j->C;
        long o = (long)n0 * C;
        ForwardReference(new ReadOnlySpan<float>(j->X + o, n * C), new ReadOnlySpan<float>(j->W, j->WLen), new ReadOnlySpan<float>(j->B, j->WLen),
            new Span<float>(j->Y + o, n * C), new Span<float>(j->Mean + n0, n), new Span<float>(j->Rstd + n0, n), n, C);
    }

    private static void BackwardChunk(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int n0 = t * j->Rows, n = Math.Min(j->Rows, j->N - n0), C = j->C;
        long o = (long)n0 * C;
        Span<float> dw = default, db = default;
        if (j->WLen > 0)
        {
            dw = new Span<float>(j->Partial + (long)t * 2 * C, C);
            db = new Span<float>(j->Partial + (long)t * 2 * C + C, C);
            dw.Clear();
            db.Clear();
        }
        float* scratch = Scratch.Get(2L * C);
        BackwardReference(new ReadOnlySpan<float>(j->X + o, n * C), new ReadOnlySpan<float>(j->W, j->WLen),
            new ReadOnlySpan<float>(j->Mean + n0, n), new ReadOnlySpan<float>(j->Rstd + n0, n), new ReadOnlySpan<float>(j->Dy + o, n * C),
            new Span<float>(j->Y + o, n * C), dw, db, new Span<float>(scratch, C), new Span<float>(scratch + C, C), n, C);
    }

    // the inputs both backward forms show in a Debug build's locals
    [System.Diagnostics.Conditional("DEBUG")]
    private static void BackwardInputs(ref DebugViews? views, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean,
        ReadOnlySpan<float> rstd, ReadOnlySpan<float> dy, int N, int C)
    {
        DebugViews.In(ref views, "x", x, N, C);
        DebugViews.In(ref views, "w", w, C);
        DebugViews.In(ref views, "mean", mean, N);
        DebugViews.In(ref views, "rstd", rstd, N);
        DebugViews.In(ref views, "dy", dy, N, C);
    }
}
