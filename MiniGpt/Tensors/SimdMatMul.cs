using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>
/// Register-blocked, cache-blocked, parallel matmul on Vector512 (AVX-512) or Vector256 (AVX2).
///
/// All three forms reduce to one loop nest: C[i,j] += Σ_k A(i,k)·Bp[k,j], where A(i,k) is read with
/// a row stride and a k stride (so Aᵀ costs nothing) and Bp is B packed into a contiguous, zero-padded
/// [K, ⌈N/NR⌉·NR] panel (so Bᵀ costs one O(K·N) copy). The micro-kernel holds an MR×NR block of C
/// in 12 vector registers and streams k: per k it loads two B vectors and broadcasts MR values of A.
///
/// Parallelism: C is cut into MB×NB tiles, each computed whole by one task with k in a fixed order
/// (blocks of KC), so the result does not depend on the thread count.
/// </summary>
public sealed unsafe class SimdMatMul : IMatMul
{
    private const int MR = 6;       // rows of C per micro-kernel
    private const int KC = 256;     // k block: a KC×NR strip of B stays in L1
    private const int MB = 96;      // rows per task (16 micro-rows)
    private const int NB = 128;     // columns per task
    private const long SerialFlops = 1L << 18; // below this, dispatching to threads costs more than it saves

    private static readonly bool Use512 = Vector512.IsHardwareAccelerated;
    private static readonly int NR = Use512 ? 32 : 16; // two vectors of C per row

    [ThreadStatic] private static nint _pack;
    [ThreadStatic] private static long _packCapacity;

    private readonly WorkerPool? _pool;

    /// <param name="pool">null: the shared pool (set by --threads).</param>
    public SimdMatMul(WorkerPool? pool = null) => _pool = pool;

    public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        int m = a.Height, k = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul NN: A is [{m}, {k}] but B is [{b.Height}, {n}]");
        Kernels.CheckShapes("NN", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
        {
            int ldb = Stride(b);
            float* panel; int ldp;
            if (n % NR == 0) { panel = pb; ldp = ldb; } // rows of B are already whole vectors
            else { ldp = RoundUp(n, NR); panel = Pack(k, ldp); PackRows(pb, ldb, k, n, panel, ldp); }
            Multiply(pa, Stride(a), 1, panel, ldp, pc, Stride(c), m, n, k, accumulate);
        }
    }

    public void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        int m = a.Height, k = a.Width, n = b.Height;
        if (b.Width != k) throw new ArgumentException($"matmul NT: A is [{m}, {k}] but B is [{n}, {b.Width}]");
        Kernels.CheckShapes("NT", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
        {
            int ldp = RoundUp(n, NR);
            float* panel = Pack(k, ldp);
            PackTransposed(pb, Stride(b), n, k, panel, ldp);
            Multiply(pa, Stride(a), 1, panel, ldp, pc, Stride(c), m, n, k, accumulate);
        }
    }

    public void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        int k = a.Height, m = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul TN: A is [{k}, {m}] but B is [{b.Height}, {n}]");
        Kernels.CheckShapes("TN", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
        {
            int ldb = Stride(b);
            float* panel; int ldp;
            if (n % NR == 0) { panel = pb; ldp = ldb; }
            else { ldp = RoundUp(n, NR); panel = Pack(k, ldp); PackRows(pb, ldb, k, n, panel, ldp); }
            // A(i,k) = a[k, i]: row stride 1, k stride lda
            Multiply(pa, 1, Stride(a), panel, ldp, pc, Stride(c), m, n, k, accumulate);
        }
    }

    private struct Job
    {
        public float* A; public long Rs, Ks;
        public float* B; public int Ldb;
        public float* C; public int Ldc;
        public int M, N, K, TilesN;
        public bool Accumulate;
    }

    private void Multiply(float* a, long rs, long ks, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        var job = new Job { A = a, Rs = rs, Ks = ks, B = b, Ldb = ldb, C = c, Ldc = ldc, M = m, N = n, K = k, Accumulate = accumulate };
        job.TilesN = (n + NB - 1) / NB;
        int tiles = (m + MB - 1) / MB * job.TilesN;
        if ((long)m * n * k < SerialFlops)
            for (int t = 0; t < tiles; t++) Tile(&job, t);
        else
            (_pool ?? WorkerPool.Current).Run(&Tile, &job, tiles);
    }

    private static void Tile(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int i0 = t / j->TilesN * MB, j0 = t % j->TilesN * NB;
        int i1 = Math.Min(i0 + MB, j->M), j1 = Math.Min(j0 + NB, j->N);
        for (int p0 = 0; p0 < j->K; p0 += KC)
        {
            int kc = Math.Min(KC, j->K - p0);
            bool acc = p0 > 0 || j->Accumulate;
            for (int jj = j0; jj < j1; jj += NR)
            {
                int cols = Math.Min(NR, j1 - jj);
                float* bp = j->B + (long)p0 * j->Ldb + jj;
                for (int ii = i0; ii < i1; ii += MR)
                {
                    int rows = Math.Min(MR, i1 - ii);
                    float* ap = j->A + ii * j->Rs + p0 * j->Ks;
                    float* cp = j->C + (long)ii * j->Ldc + jj;
                    if (Use512) Kernel512(ap, j->Rs, j->Ks, bp, j->Ldb, kc, cp, j->Ldc, acc, rows, cols);
                    else Kernel256(ap, j->Rs, j->Ks, bp, j->Ldb, kc, cp, j->Ldc, acc, rows, cols);
                }
            }
        }
    }

    /// <summary>
    /// C[m, n] (+)= A(m, k)·B[k, n] on the calling thread, with no packing: A(i, p) = a[i·rs + p·ks] and
    /// B's rows must be readable for ⌈n/32⌉·32 floats (callers zero-pad). The attention kernels use it for
    /// their per-(batch, head) products, which are too small to pack or split.
    /// </summary>
    internal static void Small(float* a, long rs, long ks, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool acc)
    {
        for (int jj = 0; jj < n; jj += NR)
        {
            int cols = Math.Min(NR, n - jj);
            for (int ii = 0; ii < m; ii += MR)
            {
                int rows = Math.Min(MR, m - ii);
                if (Use512) Kernel512(a + ii * rs, rs, ks, b + jj, ldb, k, c + (long)ii * ldc + jj, ldc, acc, rows, cols);
                else Kernel256(a + ii * rs, rs, ks, b + jj, ldb, k, c + (long)ii * ldc + jj, ldc, acc, rows, cols);
            }
        }
    }

    /// <summary>Rows of C one Small call covers per micro-kernel; attention blocks its query rows by this.</summary>
    internal const int SmallRows = MR;

    // C[0..rows, 0..cols] (+)= A(0..rows, 0..kc) · B[0..kc, 0..NR]; rows ≤ 6, cols ≤ 32.
    // Rows past `rows` re-read the last valid row of A (never out of bounds) and are not stored.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512(float* a, long rs, long ks, float* b, int ldb, int kc, float* c, int ldc, bool acc, int rows, int cols)
    {
        float* a0 = a, a1 = a + rs * Math.Min(1, rows - 1), a2 = a + rs * Math.Min(2, rows - 1);
        float* a3 = a + rs * Math.Min(3, rows - 1), a4 = a + rs * Math.Min(4, rows - 1), a5 = a + rs * Math.Min(5, rows - 1);
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            b += ldb;
            long o = p * ks;
            var x = Vector512.Create(a0[o]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[o]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[o]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[o]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[o]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[o]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
        }
        if (rows == MR && cols == 32)
        {
            Store512(c, c00, c01, acc); Store512(c + ldc, c10, c11, acc); Store512(c + 2 * ldc, c20, c21, acc);
            Store512(c + 3 * ldc, c30, c31, acc); Store512(c + 4 * ldc, c40, c41, acc); Store512(c + 5 * ldc, c50, c51, acc);
            return;
        }
        float* tmp = stackalloc float[MR * 32];
        c00.Store(tmp); c01.Store(tmp + 16); c10.Store(tmp + 32); c11.Store(tmp + 48); c20.Store(tmp + 64); c21.Store(tmp + 80);
        c30.Store(tmp + 96); c31.Store(tmp + 112); c40.Store(tmp + 128); c41.Store(tmp + 144); c50.Store(tmp + 160); c51.Store(tmp + 176);
        StoreEdge(tmp, 32, c, ldc, rows, cols, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, bool acc)
    {
        if (acc) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
        v0.Store(c);
        v1.Store(c + 16);
    }

    // The AVX2 twin of Kernel512 with 16 columns (2 × Vector256): same loop, half the width.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256(float* a, long rs, long ks, float* b, int ldb, int kc, float* c, int ldc, bool acc, int rows, int cols)
    {
        float* a0 = a, a1 = a + rs * Math.Min(1, rows - 1), a2 = a + rs * Math.Min(2, rows - 1);
        float* a3 = a + rs * Math.Min(3, rows - 1), a4 = a + rs * Math.Min(4, rows - 1), a5 = a + rs * Math.Min(5, rows - 1);
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            b += ldb;
            long o = p * ks;
            var x = Vector256.Create(a0[o]); c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[o]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[o]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[o]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a4[o]); c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a5[o]); c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
        }
        float* tmp = stackalloc float[MR * 16];
        c00.Store(tmp); c01.Store(tmp + 8); c10.Store(tmp + 16); c11.Store(tmp + 24); c20.Store(tmp + 32); c21.Store(tmp + 40);
        c30.Store(tmp + 48); c31.Store(tmp + 56); c40.Store(tmp + 64); c41.Store(tmp + 72); c50.Store(tmp + 80); c51.Store(tmp + 88);
        StoreEdge(tmp, 16, c, ldc, rows, cols, acc);
    }

    private static void StoreEdge(float* tmp, int ldt, float* c, int ldc, int rows, int cols, bool acc)
    {
        for (int r = 0; r < rows; r++)
        {
            float* cr = c + (long)r * ldc, tr = tmp + r * ldt;
            if (acc) for (int q = 0; q < cols; q++) cr[q] += tr[q];
            else for (int q = 0; q < cols; q++) cr[q] = tr[q];
        }
    }

    // Bp[p, j] = B[p, j] for j < n, 0 beyond.
    private static void PackRows(float* b, int ldb, int k, int n, float* panel, int ldp)
    {
        for (int p = 0; p < k; p++)
        {
            var dst = new Span<float>(panel + (long)p * ldp, ldp);
            new ReadOnlySpan<float>(b + (long)p * ldb, n).CopyTo(dst);
            dst[n..].Clear();
        }
    }

    // Bp[p, j] = B[j, p]: B is [n, k]. Blocked 8×8 so reads and writes both stay in cache lines.
    private static void PackTransposed(float* b, int ldb, int n, int k, float* panel, int ldp)
    {
        for (int j0 = 0; j0 < n; j0 += 8)
        {
            int j1 = Math.Min(j0 + 8, n);
            for (int p0 = 0; p0 < k; p0 += 8)
            {
                int p1 = Math.Min(p0 + 8, k);
                for (int j = j0; j < j1; j++)
                {
                    float* src = b + (long)j * ldb;
                    for (int p = p0; p < p1; p++) panel[(long)p * ldp + j] = src[p];
                }
            }
        }
        if (ldp > n)
            for (int p = 0; p < k; p++) new Span<float>(panel + (long)p * ldp + n, ldp - n).Clear();
    }

    private static float* Pack(int k, int ldp)
    {
        long need = (long)k * ldp + 32; // slack: the micro-kernel may read one full vector past ldp
        if (_packCapacity < need)
        {
            if (_pack != 0) NativeMemory.AlignedFree((void*)_pack);
            long cap = Math.Max(need, 1L << 16);
            _pack = (nint)NativeMemory.AlignedAlloc((nuint)(cap * sizeof(float)), 64);
            _packCapacity = cap;
        }
        return (float*)_pack;
    }

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    private static int Stride(ReadOnlySpan2D<float> s) =>
        s.Height < 2 ? s.Width : (int)(Unsafe.ByteOffset(ref Unsafe.AsRef(in s[0, 0]), ref Unsafe.AsRef(in s[1, 0])) / sizeof(float));

    private static int Stride(Span2D<float> s) =>
        s.Height < 2 ? s.Width : (int)(Unsafe.ByteOffset(ref s[0, 0], ref s[1, 0]) / sizeof(float));
}
