using System.Runtime.Intrinsics;
using MiniGpt.Tensors;

namespace MiniGpt.Generation;

/// <summary>
/// Matrix-vector products for decoding one position: G matrices W [G, I, O] stored [in, out] (TransformerLens's
/// layout: W_Q/W_K/W_V are [H, D, d_head], W_O, W_in, W_out, W_U are one [I, O] matrix each), one input x [I]:
///   y[g·O + o] = Σ_i x[i]·W[g, i, o] + b[g·O + o]      (b [G·O] or empty)
/// A decoded token reads every weight once and does two flops with it, so this is memory-bound, and what counts
/// is reading the weights as long contiguous streams straight from where the parameters live (nothing is repacked
/// per token). A task is a tile of W: rows [r0, r0 + RowChunk) × columns [c0, c0 + Band). Each row's segment is
/// Band·4 = 4 KB contiguous (the old 128-column bands read 512 B then jumped O·4 bytes, 201 KB for W_U, to a new
/// page each row), and the tile's partial sums y_tile += x[i]·W[i, tile] live in a 4 KB stack buffer in L1.
/// A matrix with many bands (W_U: 50) takes all its rows in one task and writes y directly; a narrow one
/// (O = 768: W_O, W_out; or W_in's 3 bands) is split into RowChunk-row chunks too, each writing a partial
/// y into a scratch [chunks, G·O], which are then added in chunk order. The tiles depend only on the shape, never
/// on the thread count, and each sum runs over i in a fixed order (fused multiply-adds within a chunk, then the
/// chunks in order), so y is bitwise identical on any pool. Every vector width (512, 256, 128 bits) and the scalar
/// tail do the same per-lane fused multiply-add chain, so the bits do not depend on the instruction set either.
/// </summary>
public static unsafe class Gemv
{
    /// <summary>Output columns per tile: 4 KB of each row, the tile's accumulators a 4 KB stack buffer.</summary>
    public const int Band = 1024;

    /// <summary>Rows per tile when a matrix is split over rows: 64 rows × 3 KB (O = 768) is a 192 KB stream.</summary>
    public const int RowChunk = 64;

    /// <summary>Below this many tiles (G·bands) the rows are split too, so that two or more threads have work.</summary>
    public const int MinColumnTiles = 8;

    /// <summary>The readable form: one output at a time, y[o] = (Σ_i x[i]·W[i, o]) + b[o], rows in order.</summary>
    public static void Reference(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O)
    {
        Check(x, w, b, y, G, I, O);
        for (int g = 0; g < G; g++)
            for (int o = 0; o < O; o++)
            {
                float s = 0;
                for (int i = 0; i < I; i++) s += x[i] * w[(g * I + i) * O + o];
                y[g * O + o] = b.IsEmpty ? s : s + b[g * O + o];
            }
    }

    private struct Job
    {
        public float* X, W, B, Y, Partial; // Partial [Chunks, G·O], or null when Chunks = 1 (tiles write y)
        public int G, I, O, Bands, Chunks;
    }

    // the partial sums of a row-split product, per calling thread: grown once to the largest shape, then reused
    // (a decoded token allocates nothing); per thread because two threads may decode at once on their own pools
    [ThreadStatic] private static float[]? _partial;

    /// <summary>The fast form: tiles across the worker pool (see the class comment).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O)
    {
        Check(x, w, b, y, G, I, O);
        if (G == 0 || O == 0) return;
        int bands = (O + Band - 1) / Band;
        int chunks = G * bands >= MinColumnTiles || I <= RowChunk ? 1 : (I + RowChunk - 1) / RowChunk;
        int n = G * O;
        if (chunks > 1 && (_partial == null || _partial.Length < (long)chunks * n)) _partial = new float[(long)chunks * n];
        fixed (float* px = x, pw = w, pb = b, py = y, pp = chunks > 1 ? _partial : null)
        {
            var job = new Job { X = px, W = pw, B = b.IsEmpty ? null : pb, Y = py, Partial = pp, G = G, I = I, O = O, Bands = bands, Chunks = chunks };
            RowParallel.Run(&TileTask, &job, G * bands * chunks, (long)G * I * O);
            if (chunks == 1) return;
            // y = Σ_chunk partial[chunk] (+ b), the chunks in order: the same bits whichever task ran first
            var dst = y[..n];
            new ReadOnlySpan<float>(pp, n).CopyTo(dst);
            for (int k = 1; k < chunks; k++) AddInto(dst, new ReadOnlySpan<float>(pp + (long)k * n, n));
            if (!b.IsEmpty) AddInto(dst, b[..n]);
        }
    }

    private static void AddInto(Span<float> dst, ReadOnlySpan<float> a) => System.Numerics.Tensors.TensorPrimitives.Add(dst, a, dst);

    // task t = ((chunk · G) + g) · bands + band
    private static void TileTask(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int I = j->I, O = j->O, band = t % j->Bands, gc = t / j->Bands, g = gc % j->G, chunk = gc / j->G;
        int c0 = band * Band, cols = Math.Min(Band, O - c0);
        int r0 = chunk * RowChunk, r1 = j->Chunks == 1 ? I : Math.Min(I, r0 + RowChunk);
        float* acc = stackalloc float[Band];
        new Span<float>(acc, cols).Clear();
        Accumulate(acc, j->X, j->W + ((long)g * I + r0) * O + c0, O, r1 - r0, cols, r0);
        long o0 = (long)g * O + c0;
        var sums = new ReadOnlySpan<float>(acc, cols);
        if (j->Chunks > 1)
            sums.CopyTo(new Span<float>(j->Partial + (long)chunk * j->G * O + o0, cols));
        else if (j->B == null)
            sums.CopyTo(new Span<float>(j->Y + o0, cols));
        else
            System.Numerics.Tensors.TensorPrimitives.Add(sums, new ReadOnlySpan<float>(j->B + o0, cols), new Span<float>(j->Y + o0, cols));
    }

    /// <summary>
    /// acc[c] = fma(W[rows-1, c], x[r0+rows-1], … fma(W[0, c], x[r0], acc[c])) for c in [0, cols), w the tile's first
    /// element and stride its row pitch. Four rows per pass over the tile (four streams in flight, and acc is loaded
    /// and stored once per four rows), then the leftover rows one at a time: the same chain, row by row.
    /// </summary>
    private static void Accumulate(float* acc, float* x, float* w, int stride, int rows, int cols, int r0)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* w0 = w + (long)i * stride, w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride;
            float x0 = x[r0 + i], x1 = x[r0 + i + 1], x2 = x[r0 + i + 2], x3 = x[r0 + i + 3];
            int c = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> v0 = Vector512.Create(x0), v1 = Vector512.Create(x1), v2 = Vector512.Create(x2), v3 = Vector512.Create(x3);
                for (; c + 16 <= cols; c += 16)
                {
                    var a = Vector512.Load(acc + c);
                    a = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + c), v0, a);
                    a = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + c), v1, a);
                    a = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + c), v2, a);
                    a = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + c), v3, a);
                    a.Store(acc + c);
                }
            }
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> v0 = Vector256.Create(x0), v1 = Vector256.Create(x1), v2 = Vector256.Create(x2), v3 = Vector256.Create(x3);
                for (; c + 8 <= cols; c += 8)
                {
                    var a = Vector256.Load(acc + c);
                    a = Vector256.FusedMultiplyAdd(Vector256.Load(w0 + c), v0, a);
                    a = Vector256.FusedMultiplyAdd(Vector256.Load(w1 + c), v1, a);
                    a = Vector256.FusedMultiplyAdd(Vector256.Load(w2 + c), v2, a);
                    a = Vector256.FusedMultiplyAdd(Vector256.Load(w3 + c), v3, a);
                    a.Store(acc + c);
                }
            }
            if (Vector128.IsHardwareAccelerated) // ARM64's NEON: .NET accelerates only 128 bits there
            {
                Vector128<float> v0 = Vector128.Create(x0), v1 = Vector128.Create(x1), v2 = Vector128.Create(x2), v3 = Vector128.Create(x3);
                for (; c + 4 <= cols; c += 4)
                {
                    var a = Vector128.Load(acc + c);
                    a = Vector128.FusedMultiplyAdd(Vector128.Load(w0 + c), v0, a);
                    a = Vector128.FusedMultiplyAdd(Vector128.Load(w1 + c), v1, a);
                    a = Vector128.FusedMultiplyAdd(Vector128.Load(w2 + c), v2, a);
                    a = Vector128.FusedMultiplyAdd(Vector128.Load(w3 + c), v3, a);
                    a.Store(acc + c);
                }
            }
            // the last columns one at a time, with the same fused multiply-adds as a vector lane (same bits)
            for (; c < cols; c++)
                acc[c] = MathF.FusedMultiplyAdd(w3[c], x3, MathF.FusedMultiplyAdd(w2[c], x2, MathF.FusedMultiplyAdd(w1[c], x1, MathF.FusedMultiplyAdd(w0[c], x0, acc[c]))));
        }
        for (; i < rows; i++)
        {
            float* wr = w + (long)i * stride;
            float xi = x[r0 + i];
            int c = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; c + 16 <= cols; c += 16) Vector512.FusedMultiplyAdd(Vector512.Load(wr + c), Vector512.Create(xi), Vector512.Load(acc + c)).Store(acc + c);
            if (Vector256.IsHardwareAccelerated)
                for (; c + 8 <= cols; c += 8) Vector256.FusedMultiplyAdd(Vector256.Load(wr + c), Vector256.Create(xi), Vector256.Load(acc + c)).Store(acc + c);
            if (Vector128.IsHardwareAccelerated)
                for (; c + 4 <= cols; c += 4) Vector128.FusedMultiplyAdd(Vector128.Load(wr + c), Vector128.Create(xi), Vector128.Load(acc + c)).Store(acc + c);
            for (; c < cols; c++) acc[c] = MathF.FusedMultiplyAdd(wr[c], xi, acc[c]);
        }
    }

    private static void Check(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O)
    {
        if (x.Length < I || w.Length < (long)G * I * O || y.Length < (long)G * O || (!b.IsEmpty && b.Length < (long)G * O))
            throw new ArgumentException($"gemv: buffers do not match x [{I}], W [{G}, {I}, {O}], y [{G * O}]");
    }
}
