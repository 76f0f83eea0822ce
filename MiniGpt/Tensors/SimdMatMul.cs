using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>
/// Register-blocked, cache-blocked, parallel matmul on Vector512 (AVX-512) or Vector256 (AVX2).
///
/// All three forms reduce to one loop nest: C[i,j] += Σ_k A(i,k)·B(k,j), where A(i,k) and B(k,j) are read
/// with a row/column stride and a k stride (so Aᵀ and Bᵀ cost nothing to describe). k is cut into blocks of
/// KC; each block of B is packed into NR-column strips ([KC, NR], contiguous, zero-padded), so the
/// micro-kernel streams B from contiguous memory whatever its layout and width. A is read in place: per k the
/// micro-kernel broadcasts MR values of A, which are MR rows apart (NN, NT) or MR neighbours in one row of
/// the source (TN's Aᵀ, the weight gradients). Packing Aᵀ into MR-row panels, as BLAS does, measured slower
/// here at every workload shape (WB mlp_out dW 9.4 → 9.0 ms, head dW 0.80 → 0.27 ms on 2 threads): with
/// N ≤ 1024 each panel is reused only N/NR times, too few to repay the copy. The micro-kernel holds an
/// MR×NR block of C in 12 vector registers: per k it loads two B vectors and broadcasts MR values of A.
///
/// Parallelism: one region per product; its tasks pack block p, multiply block p into C's tiles, pack block
/// p + 1 (into the other of two buffers), … and wait (spinning) only for earlier tasks. Each C element is
/// summed by one task at a time, block after block in k order, so the result does not depend on the thread
/// count. (Long-k products with few tiles split k into shape-determined groups instead: see MultiplySplitK.)
/// </summary>
public sealed unsafe class SimdMatMul : IMatMul
{
    private const int MR = 6;       // rows of C per micro-kernel
    private const int KC = 256;     // k block: a KC×NR strip of B stays in L1
    private const int MB = 96;      // rows per task (16 micro-rows)
    private const int NB = 128;     // columns per task for narrow shapes (up to 4·NB when there are rows enough)
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
        MatMulShapes.Check("NN", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
            // B(k, j) = b[k, j]: k stride ldb, column stride 1
            Multiply(pa, Stride(a), 1, pb, Stride(b), 1, pc, Stride(c), m, n, k, accumulate);
    }

    public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, ReadOnlySpan<float> bias, Span2D<float> c)
    {
        int m = a.Height, k = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul NN: A is [{m}, {k}] but B is [{b.Height}, {n}]");
        MatMulShapes.Check("NN", m, n, k, c.Height, c.Width);
        if (bias.Length < n) throw new ArgumentException($"matmul NN: the bias has {bias.Length} values for {n} columns");
        if (m == 0 || n == 0) return;
        fixed (float* pbias = bias)
        {
            if (k == 0)
            {
                for (int i = 0; i < m; i++) bias[..n].CopyTo(c.GetRowSpan(i));
                return;
            }
            fixed (float* pa = &a.DangerousGetReference())
            fixed (float* pb = &b.DangerousGetReference())
            fixed (float* pc = &c.DangerousGetReference())
                Multiply(pa, Stride(a), 1, pb, Stride(b), 1, pc, Stride(c), m, n, k, accumulate: false, bias: pbias);
        }
    }

    public void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        int m = a.Height, k = a.Width, n = b.Height;
        if (b.Width != k) throw new ArgumentException($"matmul NT: A is [{m}, {k}] but B is [{n}, {b.Width}]");
        MatMulShapes.Check("NT", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
            // B(k, j) = b[j, k]: k stride 1, column stride ldb
            Multiply(pa, Stride(a), 1, pb, 1, Stride(b), pc, Stride(c), m, n, k, accumulate);
    }

    public void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        int k = a.Height, m = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul TN: A is [{k}, {m}] but B is [{b.Height}, {n}]");
        MatMulShapes.Check("TN", m, n, k, c.Height, c.Width);
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) c.Clear(); return; }
        fixed (float* pa = &a.DangerousGetReference())
        fixed (float* pb = &b.DangerousGetReference())
        fixed (float* pc = &c.DangerousGetReference())
        {
            // A(i, k) = a[k, i]: row stride 1, k stride lda
            int lda = Stride(a), ldb = Stride(b), ldc = Stride(c);
            // The micro-kernel pads C to MR-row by NR-column blocks. When n is narrow and m is not (the unembedding's
            // dW_U [d_model, 65]: 65 columns cost 96), work out Cᵀ = Bᵀ·A instead, whose padding is on the short side
            // (66 rows of 6): Cᵀ(j, i) = Σ_k B(k, j)·A(i, k) is the same sum in the same k order, so C is bitwise equal.
            if (PaddedCost(n, m) * 5 < PaddedCost(m, n) * 4)
                Multiply(pb, 1, ldb, pa, lda, 1, pc, 1, n, m, k, accumulate, ldc);
            else
                Multiply(pa, 1, lda, pb, ldb, 1, pc, ldc, m, n, k, accumulate);
        }
    }

    // One product is a sequence of phases over the k blocks p = 0, 1, …: phase 2p packs block p of B into one of
    // two buffers, phase 2p+1 multiplies the packed block into C's tiles.
    // All phases run as one parallel region: tasks are claimed in order, and a task first waits (spinning) for the
    // phases it reads from, which were all claimed before it, so the wait always ends. A compute task waits for its
    // block's packing and for its own tile of the previous block (the same C elements); a pack task waits until the block that
    // last used its buffer (p - 2) has been multiplied. Each C element is still summed by one task, block by block in
    // k order, so the result does not depend on the thread count (or on the tile shape).
    private struct Job
    {
        public float* A; public long Rs, Ks;       // A(i, k) = A[i·Rs + k·Ks]
        public float* B; public long Bk, Bj;       // B(k, j) = B[k·Bk + j·Bj]
        public float* C; public int Ldc, Cj;       // C(i, j) = C[i·Ldc + j·Cj]
        public int M, N, K, Blocks;
        public bool Accumulate;
        public float* PackBuf;                     // two buffers of BufFloats, one packed block of B each
        public long BufFloats;
        public int Strips;                         // NR-column strips of B
        public int PackTasks, TileRows, TileCols, TilesN, Tiles, PhaseTasks;
        public int* Done;                          // tasks finished, per phase
        public int* TileDone;                      // per (block, tile): 1 once that tile of that k block is multiplied
        public float* Bias;                        // NN with a bias: b[j] added to C(i, j) after the last k block; else null
        public float* APanels;                     // column mode, TN: Aᵀ packed for every k block (PackRowPanels), else null
    }

    private const int StripsPerPackTask = 4;

    private static long PaddedCost(int m, int n) => (long)RoundUp(m, MR) * RoundUp(n, NR);

    // C(i, j) = c[i·ldc + j·cj]: cj = 1 normally; cj = the output's row stride (and ldc = 1) when the caller swapped
    // the operands to compute Cᵀ.
    private void Multiply(float* a, long rs, long ks, float* b, long bk, long bj, float* c, int ldc, int m, int n, int k, bool accumulate, int cj = 1, float* bias = null)
    {
        var job = new Job { A = a, Rs = rs, Ks = ks, B = b, Bk = bk, Bj = bj, C = c, Ldc = ldc, Cj = cj, M = m, N = n, K = k, Accumulate = accumulate, Bias = bias };
        job.Blocks = (k + KC - 1) / KC;
        job.Strips = (n + NR - 1) / NR;
        int kc = Math.Min(KC, k);
        job.BufFloats = (long)job.Strips * NR * kc + 64;
        job.PackTasks = (job.Strips + StripsPerPackTask - 1) / StripsPerPackTask;
        // C tiles: whole micro-panels, at least ~8 tasks per block when the shape allows, each tall enough to reuse a B strip
        job.TileRows = MB;
        job.TileCols = n <= 4 * NB ? RoundUp(n, NR) : 4 * NB;
        if ((long)((m + MB - 1) / MB) * ((n + job.TileCols - 1) / job.TileCols) < 8) job.TileCols = Math.Min(job.TileCols, NB);
        if ((long)((m + MB - 1) / MB) * ((n + job.TileCols - 1) / job.TileCols) < 8) job.TileCols = NR * Math.Max(1, NB / NR / 2);
        job.TilesN = (n + job.TileCols - 1) / job.TileCols;
        job.Tiles = (m + job.TileRows - 1) / job.TileRows * job.TilesN;
        job.PhaseTasks = job.PackTasks + job.Tiles;
        if (job.Tiles <= SplitKMaxTiles && job.Blocks >= SplitKMinBlocks)
        {
            MultiplySplitK(ref job);
            return;
        }
        if (cj == 1 && n >= ColumnModeMinTasks * NR &&
            (m <= ColumnModeRows && ks == 1 || rs == 1 && n >= ColumnModeWidthRatio * m && (long)m * k <= ColumnModeMaxPanelFloats))
        {
            MultiplyColumns(ref job);
            return;
        }
        job.PackBuf = Pack(2 * job.BufFloats);
        RunPhases(&job, (long)m * n * k < SerialFlops ? null : _pool ?? WorkerPool.Current);
    }

    // ---- column mode: few rows of C (GPT-2 at B·T = 256 tokens: every forward product and input gradient) ----
    // With m ≤ ColumnModeRows the phased scheme packs a whole k block of B (for the 50,257-column unembedding, 51 MB)
    // into a buffer that every row tile then streams back from memory, and a row of tiles is too short to hide it.
    // Here each task owns a band of C's columns through every k block: it packs one NR-column strip of B at a time into
    // its own L1-sized buffer and runs all m rows against it (m/MR micro-kernels per packed strip), so B is read from
    // memory once and A (m × kc, in L2) is shared by the strips. Each C element is still summed block by block in k order
    // by the micro-kernel, the same operations as the phased path: bitwise the same result, for any thread count.
    private const int ColumnModeRows = 384, ColumnModeMinTasks = 4;
    // TN takes column mode too when C is ≥ 4× wider than tall (GPT-2's dW_U [768, 50257] with k = 256 tokens): the
    // phased scheme would pack all of B's block (the 51 MB of d logits) and stream it back for each of 8 row tiles, and
    // with long k it reloads C's tiles every k block, where a column band of C stays in L2 through all of them (2 threads,
    // 3 runs each: WB mlp_in dW [256, 1024], k = 4,096, 334–340 → 369–379 GFLOP/s; GPT-2 c_fc dW [768, 3072] 422–432 →
    // 462–467). At 1× (WB's square attn_out dW) it measured slower (386–397 → 350–352). Aᵀ is packed once for all tasks,
    // so it must be small (GPT-2: 0.8 MB).
    private const int ColumnModeWidthRatio = 4;
    private const long ColumnModeMaxPanelFloats = 1 << 22;

    // floats of one k block's packed Aᵀ for m rows (panels of PanelFloats(KC), the last block's shorter panels inside)
    private static long APanelBlockFloats(int m) => (long)((m + MR - 1) / MR) * PanelFloats(KC);

    private struct ColumnJob
    {
        public Job* Whole;
        public int BandCols, Bands;
    }

    private void MultiplyColumns(ref Job whole)
    {
        var pool = _pool ?? WorkerPool.Current;
        // TN (A(i, k) = a[i + k·ks]): Aᵀ packed once into MR-row panels per k block, shared by every task (read-only)
        if (whole.Ks != 1)
        {
            whole.APanels = Scratch.Grow(ref _aPanels, ref _aPanelsCapacity, whole.Blocks * APanelBlockFloats(whole.M));
            for (int block = 0; block < whole.Blocks; block++)
            {
                int p0 = block * KC, kc = Math.Min(KC, whole.K - p0);
                PackRowPanels(whole.A + p0 * whole.Ks, whole.Ks, whole.M, kc, whole.APanels + block * APanelBlockFloats(whole.M));
            }
        }
        // bands of 128 columns (4 strips), narrower where that leaves fewer than 4 bands per thread
        int band = 4 * NR;
        while (band > NR && (whole.N + band - 1) / band < 4 * pool.Threads) band -= NR;
        fixed (Job* w = &whole)
        {
            var cjob = new ColumnJob { Whole = w, BandCols = band, Bands = (whole.N + band - 1) / band };
            if ((long)whole.M * whole.N * whole.K < SerialFlops)
                for (int t = 0; t < cjob.Bands; t++) ColumnTask(&cjob, t);
            else
                pool.Run(&ColumnTask, &cjob, cjob.Bands);
        }
    }

    [ThreadStatic] private static nint _tileDone; // ints, in a float-sized native buffer
    [ThreadStatic] private static long _tileDoneCapacity;
    [ThreadStatic] private static nint _aPanels;
    [ThreadStatic] private static long _aPanelsCapacity;
    [ThreadStatic] private static nint _strip;
    [ThreadStatic] private static long _stripCapacity;

    private static void ColumnTask(void* ctx, int t)
    {
        var cjob = (ColumnJob*)ctx;
        Job* j = cjob->Whole;
        int c0 = t * cjob->BandCols, c1 = Math.Min(j->N, c0 + cjob->BandCols);
        int strips = (c1 - c0 + NR - 1) / NR;
        float* band = Scratch.Grow(ref _strip, ref _stripCapacity, (long)strips * KC * NR);
        for (int block = 0; block < j->Blocks; block++)
        {
            int p0 = block * KC, kc = Math.Min(KC, j->K - p0);
            bool acc = block > 0 || j->Accumulate;
            float* panels = j->APanels != null ? j->APanels + block * APanelBlockFloats(j->M) : null;
            long rs = panels != null ? 1 : j->Rs, ks = panels != null ? MR : j->Ks;
            // TN (its B an activation gradient, rows far apart): the band's strips packed row by row first; else each strip
            // right before its micro-kernels (for NN's weights that measured the same or better)
            bool whole = panels != null;
            if (whole) PackBand(j->B + p0 * j->Bk, j->Bk, j->Bj, c0, c1 - c0, kc, band);
            for (int jj = c0; jj < c1; jj += NR)
            {
                int cols = Math.Min(NR, c1 - jj);
                float* strip = whole ? band + (long)(jj - c0) / NR * NR * kc : band;
                if (!whole) PackStrip(j->B + p0 * j->Bk, j->Bk, j->Bj, jj, cols, kc, strip);
                float* bias = j->Bias != null && block == j->Blocks - 1 ? j->Bias + jj : null;
                for (int ii = 0; ii < j->M; ii += MR)
                {
                    int rows = Math.Min(MR, j->M - ii);
                    float* ap = panels != null ? panels + ii / MR * PanelFloats(kc) : j->A + ii * j->Rs + p0 * j->Ks;
                    float* cp = j->C + (long)ii * j->Ldc + jj;
                    if (Use512) Kernel512(ap, rs, ks, strip, NR, kc, cp, j->Ldc, acc, rows, cols, bias);
                    else Kernel256(ap, rs, ks, strip, NR, kc, cp, j->Ldc, acc, rows, cols, bias);
                }
            }
        }
    }

    // The band's strips of one k block, [kc, NR] each, as PackStrip makes them (column mode's TN). Where B's rows are
    // contiguous (bj = 1) a row of the band is copied whole before the next: TN's B is an activation gradient whose rows
    // are n floats apart (4 KB at WB's mlp_in, a page), and packing strip by strip walked each block's kc rows once per
    // strip, 32 floats a row, every row a new page the prefetcher does not follow (WB mlp_in dW [256, 1024] from 4,096
    // tokens, 2 threads, 3 runs each: 311–357 → 392–416 GFLOP/s; the GPT-2 products measured the same).
    private static void PackBand(float* b, long bk, long bj, int c0, int width, int kc, float* dst)
    {
        int strips = (width + NR - 1) / NR, full = width / NR;
        if (bj != 1 || !Use512)
        {
            for (int s = 0; s < strips; s++) PackStrip(b, bk, bj, c0 + s * NR, Math.Min(NR, width - s * NR), kc, dst + (long)s * NR * kc);
            return;
        }
        long strip = (long)NR * kc;
        for (int p = 0; p < kc; p++)
        {
            float* src = b + p * bk + c0, d = dst + (long)p * NR;
            if (p + 8 < kc) Sse.Prefetch0(src + 8 * bk);
            int s = 0;
            for (; s < full; s++, src += NR, d += strip)
            {
                Vector512.Load(src).Store(d);
                Vector512.Load(src + 16).Store(d + 16);
            }
            if (s < strips)
            {
                int q = 0, cols = width - s * NR;
                for (; q < cols; q++) d[q] = src[q];
                for (; q < NR; q++) d[q] = 0;
            }
        }
    }

    // all phases of a job: on pool, or in task order on this thread (null)
    private static void RunPhases(Job* job, WorkerPool? pool)
    {
        int* done = stackalloc int[2 * job->Blocks];
        for (int i = 0; i < 2 * job->Blocks; i++) done[i] = 0;
        job->Done = done;
        long flags = (long)job->Blocks * job->Tiles;
        job->TileDone = (int*)Scratch.Grow(ref _tileDone, ref _tileDoneCapacity, flags);
        new Span<int>(job->TileDone, (int)flags).Clear();
        int tasks = job->Blocks * job->PhaseTasks;
        if (pool == null)
            for (int t = 0; t < tasks; t++) Task(job, t);
        else
            pool.Run(&Task, job, tasks);
    }

    // ---- split k: long-k products with few C tiles (dW_U = xᵀ·dlogits at WB: k = 4096 tokens, C = [256, 65]) ----
    // A block of k has too few tiles to share between threads, and its phases would serialise on the previous block.
    // Instead k is cut into SplitK groups of whole blocks; each task runs one group serially into its own partial
    // [m, n] buffer, and the partials are added to C in group order. The groups depend on the shape only, so the
    // result is the same for any thread count (rounded differently from the one-pass sum, as any k split is).
    private const int SplitKMaxTiles = 4, SplitKMinBlocks = 4, SplitK = 4;

    [ThreadStatic] private static nint _partials;
    [ThreadStatic] private static long _partialsCapacity;

    private struct SplitJob
    {
        public Job* Whole;
        public float* Partials;     // SplitK × [M, N], row stride N
        public int BlocksPerGroup;
    }

    private void MultiplySplitK(ref Job whole)
    {
        long mn = (long)whole.M * whole.N;
        int groups = Math.Min(SplitK, whole.Blocks);
        var split = new SplitJob
        {
            Partials = Scratch.Grow(ref _partials, ref _partialsCapacity, groups * mn),
            BlocksPerGroup = (whole.Blocks + groups - 1) / groups,
        };
        groups = (whole.Blocks + split.BlocksPerGroup - 1) / split.BlocksPerGroup;
        fixed (Job* w = &whole)
        {
            split.Whole = w;
            if ((long)whole.M * whole.N * whole.K < SerialFlops)
                for (int g = 0; g < groups; g++) GroupTask(&split, g);
            else
                (_pool ?? WorkerPool.Current).Run(&GroupTask, &split, groups);
        }
        // C (+)= P_0 + P_1 + …, in group order
        for (int i = 0; i < whole.M; i++)
            for (int jx = 0; jx < whole.N; jx++)
            {
                float sum = whole.Accumulate ? whole.C[(long)i * whole.Ldc + (long)jx * whole.Cj] : 0f;
                for (int g = 0; g < groups; g++) sum += split.Partials[g * mn + (long)i * whole.N + jx];
                if (whole.Bias != null) sum += whole.Bias[jx];
                whole.C[(long)i * whole.Ldc + (long)jx * whole.Cj] = sum;
            }
    }

    // one group of k blocks, run on this thread from its first block to its last, into partial g
    private static void GroupTask(void* ctx, int g)
    {
        var s = (SplitJob*)ctx;
        Job* w = s->Whole;
        int k0 = g * s->BlocksPerGroup * KC, k1 = Math.Min(w->K, k0 + s->BlocksPerGroup * KC);
        var job = *w;
        job.A = w->A + k0 * w->Ks;
        job.B = w->B + k0 * w->Bk;
        job.K = k1 - k0;
        job.Blocks = (job.K + KC - 1) / KC;
        job.C = s->Partials + g * (long)w->M * w->N;
        job.Ldc = w->N;
        job.Cj = 1;
        job.Accumulate = false;
        job.Bias = null; // added once, after the partials
        job.PackBuf = Pack(2 * job.BufFloats); // this thread's own
        RunPhases(&job, null);
    }

    private static void Task(void* ctx, int t)
    {
        var j = (Job*)ctx;
        int block = t / j->PhaseTasks, local = t % j->PhaseTasks;
        if (local < j->PackTasks)
        {
            if (block >= 2) WaitFor(j, 2 * (block - 2) + 1, j->Tiles);
            PackTask(j, block, local);
            Interlocked.Increment(ref j->Done[2 * block]);
        }
        else
        {
            int tile = local - j->PackTasks;
            WaitFor(j, 2 * block, j->PackTasks);
            // only this tile of the previous block (the same C elements, summed block after block), not the whole block: that
            // left a thread idle for up to a tile at every block boundary (WB's mlp_out dW, 16 blocks of 11 tiles on 2
            // threads: 438–440 → 461–462 GFLOP/s, alternated in one process)
            if (block >= 1) WaitForTile(j, (block - 1) * j->Tiles + tile);
            TileTask(j, block, tile);
            Volatile.Write(ref j->TileDone[block * j->Tiles + tile], 1);
            Interlocked.Increment(ref j->Done[2 * block + 1]);
        }
    }

    private static void WaitForTile(Job* j, int flag)
    {
        if (Volatile.Read(ref j->TileDone[flag]) != 0) return;
        var spin = new SpinWait();
        while (Volatile.Read(ref j->TileDone[flag]) == 0) spin.SpinOnce(-1);
    }

    private static void WaitFor(Job* j, int phase, int count)
    {
        if (Volatile.Read(ref j->Done[phase]) >= count) return;
        var spin = new SpinWait();
        while (Volatile.Read(ref j->Done[phase]) < count) spin.SpinOnce(-1);
    }

    private static void PackTask(Job* j, int block, int task)
    {
        int p0 = block * KC, kc = Math.Min(KC, j->K - p0);
        float* buf = j->PackBuf + (block & 1) * j->BufFloats;
        int s1 = Math.Min(j->Strips, (task + 1) * StripsPerPackTask);
        for (int s = task * StripsPerPackTask; s < s1; s++)
            PackStrip(j->B + p0 * j->Bk, j->Bk, j->Bj, s * NR, Math.Min(NR, j->N - s * NR), kc, buf + (long)s * NR * kc);
    }

    private static void TileTask(Job* j, int block, int t)
    {
        int p0 = block * KC, kc = Math.Min(KC, j->K - p0);
        bool acc = block > 0 || j->Accumulate;
        float* bpack = j->PackBuf + (block & 1) * j->BufFloats;
        int i0 = t / j->TilesN * j->TileRows, c0 = t % j->TilesN * j->TileCols;
        int i1 = Math.Min(i0 + j->TileRows, j->M), c1 = Math.Min(c0 + j->TileCols, j->N);
        // Aᵀ (TN) in MR-row panels, once per tile and k block; other forms read A in place (see PackRowPanels)
        long rs = j->Rs, ks = j->Ks;
        bool packed = rs == 1 && ks >= PackRowStride;
        float* panels = packed
            ? PackRowPanels(j->A + i0 + p0 * ks, ks, i1 - i0, kc, Scratch.Grow(ref _rowPanels, ref _rowPanelsCapacity, (long)((i1 - i0 + MR - 1) / MR) * PanelFloats(kc)))
            : null;
        if (packed) ks = MR;
        for (int jj = c0; jj < c1; jj += NR)
        {
            int cols = Math.Min(NR, c1 - jj);
            float* bp = bpack + (long)(jj / NR) * NR * kc;
            for (int ii = i0; ii < i1; ii += MR)
            {
                int rows = Math.Min(MR, i1 - ii);
                float* cp = j->C + (long)ii * j->Ldc + (long)jj * j->Cj;
                // packed: the panel's rows are 1 apart and its k steps MR apart; else A in place
                float* ap = packed ? panels + (ii - i0) / MR * PanelFloats(kc) : j->A + ii * rs + p0 * ks;
                if (j->Cj != 1) { KernelTransposedC(ap, rs, ks, bp, kc, cp, j->Cj, acc, rows, cols); continue; }
                float* bias = j->Bias != null && block == j->Blocks - 1 ? j->Bias + jj : null;
                if (Use512) Kernel512(ap, rs, ks, bp, NR, kc, cp, j->Ldc, acc, rows, cols, bias);
                else Kernel256(ap, rs, ks, bp, NR, kc, cp, j->Ldc, acc, rows, cols, bias);
            }
        }
    }

    [ThreadStatic] private static nint _rowPanels;
    [ThreadStatic] private static long _rowPanelsCapacity;

    // TN's Aᵀ is packed where the source's rows are at least this many floats (3 KB) apart; see PackRowPanels.
    private const int PackRowStride = 768;

    // a panel: kc rows of MR floats, and 8 floats of slack for PackRowPanels' 8-float stores (32-byte aligned when kc is even)
    private static long PanelFloats(int kc) => (long)kc * MR + 8;

    // Panel r of the result holds A(r·MR + q, p) at [r·PanelFloats + p·MR + q], q < MR, for the `rows` rows of a tile
    // whose A(i, p) = a[i + p·ks] (TN's Aᵀ: MR neighbours of one row of the source per k, rows ks apart). Read in
    // place, the micro-kernel's k steps are ks floats apart: at the widths of the WB mlp_out and GPT-2 weight
    // gradients (ks = 768 … 3072 floats, 3–12 KB) they fall in a few L1 sets, thrash them and evict the B strip that
    // should stay there. Copied once per tile and k block, one core measured (MatMul probe, 3 runs each, GFLOP/s):
    // GPT-2 c_proj dW 144–162 → 215–225, WB mlp_out dW 159–167 → 183–194, GPT-2 dW_U 157–175 → 183–189. Where rows are
    // closer (ks = 256: WB mlp_in and attn_out dW) the in-place lines are shared by neighbouring micro-kernels and stay
    // in L1, and the copy made attn_out dW slower (213–229 → 168–172), hence PackRowStride.
    private static float* PackRowPanels(float* a, long ks, int rows, int kc, float* dst)
    {
        int panels = (rows + MR - 1) / MR;
        long panelFloats = PanelFloats(kc);
        // k by k, so that each row of the source is read once, front to back
        int vectorPanels = Vector256.IsHardwareAccelerated && rows >= 8 ? (rows - 8) / MR + 1 : 0; // panels with 2 more floats of A to read
        for (int p = 0; p < kc; p++)
        {
            float* src = a + p * ks, d = dst + p * MR;
            int r = 0;
            // 8 floats per panel: the next k's store (or, at the last k, the panel's slack) takes the last 2
            for (; r < vectorPanels; r++) Vector256.Load(src + r * MR).Store(d + r * panelFloats);
            for (; r < panels; r++)
            {
                int n = Math.Min(MR, rows - r * MR);
                for (int q = 0; q < n; q++) d[r * panelFloats + q] = src[r * MR + q];
            }
        }
        return dst;
    }

    // C(r, q) at c[r + q·ldcT] (a block of Cᵀ): the micro-kernel fills a row-major stack tile, which is then added
    // in column by column. The scatter is MR·NR scalar stores per kc·MR·NR multiply-adds.
    [SkipLocalsInit]
    private static void KernelTransposedC(float* a, long rs, long ks, float* b, int kc, float* c, int ldcT, bool acc, int rows, int cols)
    {
        float* tile = stackalloc float[MR * 32];
        // the real row count: the kernel then re-reads the last valid row of A instead of reading past it
        if (Use512) Kernel512(a, rs, ks, b, NR, kc, tile, 32, false, rows, 32);
        else Kernel256(a, rs, ks, b, NR, kc, tile, 32, false, rows, 16);
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < cols; q++)
            {
                float* dst = c + r + (long)q * ldcT;
                *dst = acc ? *dst + tile[r * 32 + q] : tile[r * 32 + q];
            }
    }

    // Strip[p, q] = B(p, j0 + q) for q < cols, 0 beyond: a [kc, NR] block the micro-kernel reads with one stride.
    private static void PackStrip(float* b, long bk, long bj, int j0, int cols, int kc, float* dst)
    {
        if (bj == 1)
        {
            float* src = b + j0;
            if (cols == NR)
            {
                if (Use512)
                    for (int p = 0; p < kc; p++, src += bk, dst += NR)
                    {
                        Vector512.Load(src).Store(dst);
                        Vector512.Load(src + 16).Store(dst + 16);
                    }
                else
                    for (int p = 0; p < kc; p++, src += bk, dst += NR)
                    {
                        Vector256.Load(src).Store(dst);
                        Vector256.Load(src + 8).Store(dst + 8);
                    }
                return;
            }
            for (int p = 0; p < kc; p++, src += bk, dst += NR)
            {
                int q = 0;
                for (; q < cols; q++) dst[q] = src[q];
                for (; q < NR; q++) dst[q] = 0;
            }
            return;
        }
        // bk == 1 (NT's Bᵀ): column j of the strip is a contiguous run of B's row j0 + q. 8×8 blocks are transposed in AVX
        // registers, the edges element by element: copied element by element throughout, the transpose cost ~15 % of the
        // GPT-2 input-gradient products at 256 rows, where each strip feeds only 43 micro-kernels
        int q8 = Avx.IsSupported ? cols / 8 * 8 : 0, p8 = kc / 8 * 8;
        for (int q0 = 0; q0 < q8; q0 += 8)
            for (int p0 = 0; p0 < p8; p0 += 8)
                Transpose8x8(b + (j0 + q0) * bj + p0, bj, dst + (long)p0 * NR + q0, NR);
        for (int q = 0; q < cols; q++)
        {
            float* src = b + (j0 + q) * bj;
            for (int p = q < q8 ? p8 : 0; p < kc; p++) dst[p * NR + q] = src[p];
        }
        for (int q = cols; q < NR; q++)
            for (int p = 0; p < kc; p++) dst[p * NR + q] = 0;
    }

    // d[c·ldd + r] = s[r·lds + c] for an 8×8 block (AVX: unpack pairs, then quads, then swap 128-bit halves)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, long lds, float* d, int ldd)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + lds);
        var r2 = Avx.LoadVector256(s + 2 * lds); var r3 = Avx.LoadVector256(s + 3 * lds);
        var r4 = Avx.LoadVector256(s + 4 * lds); var r5 = Avx.LoadVector256(s + 5 * lds);
        var r6 = Avx.LoadVector256(s + 6 * lds); var r7 = Avx.LoadVector256(s + 7 * lds);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20)); Avx.Store(d + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20)); Avx.Store(d + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31)); Avx.Store(d + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31)); Avx.Store(d + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void Kernel512(float* a, long rs, long ks, float* b, int ldb, int kc, float* c, int ldc, bool acc, int rows, int cols, float* bias = null)
    {
        float* tmp = stackalloc float[MR * 32]; // allocated (uninitialised) before the loop: see the stores below
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
        // The accumulators go to the stack tile straight after the loop, with no call in between: zmm registers do
        // not survive calls on x64, and a call while they were live (StoreEdge, or zeroing a stackalloc) made RyuJIT
        // spill and reload all twelve on every iteration of the loop above when it had no PGO block weights
        // (DOTNET_TieredPGO=0): a 4× slowdown.
        c00.Store(tmp); c01.Store(tmp + 16); c10.Store(tmp + 32); c11.Store(tmp + 48); c20.Store(tmp + 64); c21.Store(tmp + 80);
        c30.Store(tmp + 96); c31.Store(tmp + 112); c40.Store(tmp + 128); c41.Store(tmp + 144); c50.Store(tmp + 160); c51.Store(tmp + 176);
        if (rows == MR && cols == 32)
        {
            for (int r = 0; r < MR; r++) Store512(c + (long)r * ldc, tmp + r * 32, acc, bias);
            return;
        }
        StoreEdge(tmp, 32, c, ldc, rows, cols, acc, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, float* t, bool acc, float* bias)
    {
        var v0 = Vector512.Load(t);
        var v1 = Vector512.Load(t + 16);
        if (acc) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
        // the bias after the last k block's sum, as a separate y[n] += b pass adds it: the same bits
        if (bias != null) { v0 += Vector512.Load(bias); v1 += Vector512.Load(bias + 16); }
        v0.Store(c);
        v1.Store(c + 16);
    }

    // The AVX2 twin of Kernel512 with 16 columns (2 × Vector256): same loop, half the width.
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void Kernel256(float* a, long rs, long ks, float* b, int ldb, int kc, float* c, int ldc, bool acc, int rows, int cols, float* bias = null)
    {
        float* tmp = stackalloc float[MR * 16]; // before the loop, for the same reason as in Kernel512
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
        c00.Store(tmp); c01.Store(tmp + 8); c10.Store(tmp + 16); c11.Store(tmp + 24); c20.Store(tmp + 32); c21.Store(tmp + 40);
        c30.Store(tmp + 48); c31.Store(tmp + 56); c40.Store(tmp + 64); c41.Store(tmp + 72); c50.Store(tmp + 80); c51.Store(tmp + 88);
        StoreEdge(tmp, 16, c, ldc, rows, cols, acc, bias);
    }

    private static void StoreEdge(float* tmp, int ldt, float* c, int ldc, int rows, int cols, bool acc, float* bias)
    {
        for (int r = 0; r < rows; r++)
        {
            float* cr = c + (long)r * ldc, tr = tmp + r * ldt;
            if (acc) for (int q = 0; q < cols; q++) cr[q] += tr[q];
            else for (int q = 0; q < cols; q++) cr[q] = tr[q];
            if (bias != null) for (int q = 0; q < cols; q++) cr[q] += bias[q];
        }
    }

    // this thread's panel buffer for packed operands (its own slot: Scratch/SharedScratch hold other data meanwhile)
    private static float* Pack(long floats) => Scratch.Grow(ref _pack, ref _packCapacity, floats);

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    private static int Stride(ReadOnlySpan2D<float> s) =>
        s.Height < 2 ? s.Width : (int)(Unsafe.ByteOffset(ref Unsafe.AsRef(in s[0, 0]), ref Unsafe.AsRef(in s[1, 0])) / sizeof(float));

    private static int Stride(Span2D<float> s) =>
        s.Height < 2 ? s.Width : (int)(Unsafe.ByteOffset(ref s[0, 0], ref s[1, 0]) / sizeof(float));
}
