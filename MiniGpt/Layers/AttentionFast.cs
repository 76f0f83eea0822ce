using System.Numerics;
using System.Numerics.Tensors;
using MiniGpt.Tensors;
using static MiniGpt.Tensors.Views;

namespace MiniGpt.Layers;

/// <summary>
/// The fast attention kernels (FastKernels); Attention.cs holds the readable reference each one matches.
///
/// Projections: W_Q [H, D, dh] is H blocks of [D, dh]; copied once per call into a [D, H·dh] matrix
/// (D·H·dh floats, 1/N of the product's work) it projects every head with one matmul, instead of
/// H matmuls whose 32-column outputs keep the micro-kernel from filling its registers.
///
/// Per (batch, head) the products Q·Kᵀ, P·V and their gradients are tiny (T×T×dh), so they run on one
/// thread through SimdMatMul's register-blocked micro-kernel without packing: operands are first copied
/// into zero-padded per-thread scratch (Kᵀ, V, …) so every micro-kernel load is a whole vector. Query
/// rows go in blocks of 6 (the micro-kernel's height) and each block only touches keys j ≤ its last row,
/// skipping the masked half (FlashAttention's causal block skipping, Dao et al. 2022). Scale, mask and
/// softmax run on each block of rows right after its scores, while they are in L1.
///
/// Heads/HeadsBackward write and read the [T, T] scores and pattern of every head (what hooks see);
/// HeadsTiled/HeadsTiledBackward, at the end of this file, do the same work with each block's rows in
/// per-thread scratch and recompute the pattern in backward, keeping O(T) numbers per head.
/// </summary>
public static unsafe partial class Attention
{
    private const int Pad = 32; // the micro-kernel reads B rows 32 floats at a time
    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    [ThreadStatic] private static float[]? _wcat;

    private static float[] WeightScratch(int n) => _wcat is { } w && w.Length >= n ? w : (_wcat = new float[n]);

    // Wcat[d, h·dh + e] = W[h, d, e]; in chunks of rows d across the pool (GPT-2's three 2.4 MB copies per layer and
    // direction were ~28 ms of a step on one thread)
    private static void PackHeads(ReadOnlySpan<float> w, Span<float> wcat, int H, int D, int dh) => HeadCopy(w, wcat, H, D, dh, add: false);

    // W[h, d, e] += Gcat[d, h·dh + e]
    private static void AddHeads(ReadOnlySpan<float> gcat, Span<float> g, int H, int D, int dh) => HeadCopy(gcat, g, H, D, dh, add: true);

    private struct HeadCopyJob { public float* Src, Dst; public int H, D, Dh, Rows; public bool Add; }

    private static void HeadCopy(ReadOnlySpan<float> src, Span<float> dst, int H, int D, int dh, bool add)
    {
        if (src.Length < H * D * dh || dst.Length < H * D * dh) throw new ArgumentException("attention: head weights shorter than [H, D, d_head]");
        fixed (float* ps = src, pd = dst)
        {
            int rows = RowParallel.RowsPerTask(H * dh);
            var job = new HeadCopyJob { Src = ps, Dst = pd, H = H, D = D, Dh = dh, Rows = rows, Add = add };
            RowParallel.Run(&HeadCopyChunk, &job, RowParallel.Tasks(D, rows), (long)H * D * dh);
        }
    }

    // rows [d0, d0 + Rows) of Wcat; each element is written by one task, so the result does not depend on threads
    private static void HeadCopyChunk(void* ctx, int t)
    {
        var j = (HeadCopyJob*)ctx;
        int dh = j->Dh, HD = j->H * dh, d0 = t * j->Rows, d1 = Math.Min(j->D, d0 + j->Rows);
        for (int h = 0; h < j->H; h++)
            for (int d = d0; d < d1; d++)
            {
                long w = ((long)h * j->D + d) * dh, cat = (long)d * HD + h * dh;
                if (j->Add)
                {
                    var row = new Span<float>(j->Dst + w, dh);
                    TensorPrimitives.Add(row, new ReadOnlySpan<float>(j->Src + cat, dh), row);
                }
                else new ReadOnlySpan<float>(j->Src + w, dh).CopyTo(new Span<float>(j->Dst + cat, dh));
            }
    }

    // q = x_qk·Wcat_Q + b_Q (b_Q [H, dh] is already laid out as q's columns); k, v likewise
    public static void ProjectQkv(IKernels kn, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh)
    {
        int N = B * T, HD = H * dh;
        var wcat = WeightScratch(D * HD).AsSpan(0, D * HD);
        PackHeads(w.WQ, wcat, H, D, dh);
        Linear.Forward(kn, xqk, wcat, w.BQ, q, N, D, HD);
        PackHeads(w.WK, wcat, H, D, dh);
        Linear.Forward(kn, xqk, wcat, w.BK, k, N, D, HD);
        PackHeads(w.WV, wcat, H, D, dh);
        Linear.Forward(kn, xv, wcat, w.BV, v, N, D, HD);
    }

    // differentiates the above per projection: dWcat = xᵀ·dq, db += Σ_n dq[n], dx += dq·Wcatᵀ
    public static void ProjectQkvBackward(IKernels kn, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w, in Grads g,
        ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh)
    {
        int HD = H * dh;
        var buf = WeightScratch(2 * D * HD);
        var wcat = buf.AsSpan(0, D * HD);
        var gcat = buf.AsSpan(D * HD, D * HD);
        ProjectBackwardFast(kn, xqk, w.WQ, dq, g.WQ, g.BQ, dxqk, wcat, gcat, N, D, H, dh);
        ProjectBackwardFast(kn, xqk, w.WK, dk, g.WK, g.BK, dxqk, wcat, gcat, N, D, H, dh);
        ProjectBackwardFast(kn, xv, w.WV, dv, g.WV, g.BV, dxv, wcat, gcat, N, D, H, dh);
    }

    private static void ProjectBackwardFast(IKernels kn, ReadOnlySpan<float> x, ReadOnlySpan<float> wh, ReadOnlySpan<float> dy,
        Span<float> dw, Span<float> db, Span<float> dx, Span<float> wcat, Span<float> gcat, int N, int D, int H, int dh)
    {
        int HD = H * dh;
        kn.MatMul.TN(Mat(x, N, D), Mat(dy, N, HD), Mat(gcat, D, HD), accumulate: false);
        AddHeads(gcat, dw, H, D, dh);
        kn.SumRows(dy, db, N, HD);
        PackHeads(wh, wcat, H, D, dh);
        kn.MatMul.NT(Mat(dy, N, HD), Mat(wcat, D, HD), Mat(dx, N, D), accumulate: true);
    }

    // scratch copies of one head: rows [T, dh] of src (row stride HD) into dst [T, ldd], zero-padded to ldd
    private static void CopyHead(float* src, int HD, float* dst, int ldd, int T, int dh)
    {
        for (int i = 0; i < T; i++)
        {
            new ReadOnlySpan<float>(src + (long)i * HD, dh).CopyTo(new Span<float>(dst + (long)i * ldd, dh));
            new Span<float>(dst + (long)i * ldd + dh, ldd - dh).Clear();
        }
    }

    // dst[e, i] = src[i, e]: [dh, ldd], columns T..ldd zero.
    // 16 source rows at a time: their d_head floats stay in L1 while each row of dst gets 16 consecutive floats (one cache
    // line). Row by row, each source row's d_head stores went ldd floats apart, all into one L1 set when ldd is a multiple of
    // 1,024: at T 1,024, d_head 32 the tiled backward's setup (4 transposes, 4 copies) took 0.77 ms a head that way, as long
    // as 3 of its products, and takes 0.15 ms this way.
    private static void TransposeHead(float* src, int HD, float* dst, int ldd, int T, int dh)
    {
        const int Block = 16;
        for (int i0 = 0; i0 < T; i0 += Block)
        {
            int n = Math.Min(Block, T - i0);
            for (int e = 0; e < dh; e++)
            {
                float* d = dst + (long)e * ldd + i0, s = src + (long)i0 * HD + e;
                for (int i = 0; i < n; i++) d[i] = s[(long)i * HD];
            }
        }
        for (int e = 0; e < dh; e++) new Span<float>(dst + (long)e * ldd + T, ldd - T).Clear();
    }

    // scores[i, j] = q_i·k_j·scale for j ≤ i, −∞ beyond, for query rows [i0, i0+rows) (keys j < i0+rows computed)
    private static void ScoreRows(Job* j, long baseRow, float* kt, int tp, float* s0, int i0, int rows)
    {
        int T = j->T, HD = j->H * j->Dh;
        int n = Math.Min(T, i0 + rows);
        SimdMatMul.Small(j->Q + baseRow + (long)i0 * HD, HD, 1, kt, tp, s0 + (long)i0 * T, T, rows, n, j->Dh, acc: false);
        for (int i = i0; i < i0 + rows; i++)
        {
            var srow = new Span<float>(s0 + (long)i * T, T);
            TensorPrimitives.Multiply(srow[..(i + 1)], j->Scale, srow[..(i + 1)]);
            srow[(i + 1)..].Fill(float.NegativeInfinity);
        }
    }

    // z[i] = Σ_{j ≤ i} p_ij·v_j for rows [i0, i0+rows): p_ij is exactly 0 for j > i, so the block reads keys j < i0+rows
    private static void MixRows(Job* j, long baseRow, float* vp, int dhp, float* p0, int i0, int rows)
    {
        int T = j->T, HD = j->H * j->Dh;
        SimdMatMul.Small(p0 + (long)i0 * T, T, 1, vp, dhp, j->Z + baseRow + (long)i0 * HD, HD, rows, j->Dh, Math.Min(T, i0 + rows), acc: false);
    }

    // q, k, v, z [B,T,H,dh], scores, pattern [B,H,T,T]: the given stages of every (batch, head), one task each
    public static void Heads(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> scores, Span<float> pattern, Span<float> z, int B, int T, int H, int dh, HeadStages stages) =>
        RunHeads(&HeadForwardFast, q, k, v, scores, pattern, z, B, T, H, dh, stages);

    // one (batch, head), block of query rows by block: scores, then softmax, then z of the block while its rows are in L1
    private static void HeadForwardFast(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, dh = j->Dh, HD = j->H * dh, tp = RoundUp(T, Pad), dhp = RoundUp(dh, Pad);
        bool scores = (j->Stages & HeadStages.Scores) != 0, softmax = (j->Stages & HeadStages.Pattern) != 0, mix = (j->Stages & HeadStages.Mix) != 0;
        long baseRow = RowBase(j, task);
        float* kt = Scratch.Get((long)dh * tp + (long)T * dhp), vp = kt + (long)dh * tp;
        if (scores) TransposeHead(j->K + baseRow, HD, kt, tp, T, dh);
        if (mix) CopyHead(j->V + baseRow, HD, vp, dhp, T, dh);
        float* s0 = j->S + (long)task * T * T, p0 = j->P + (long)task * T * T;
        for (int i0 = 0; i0 < T; i0 += SimdMatMul.SmallRows)
        {
            int rows = Math.Min(SimdMatMul.SmallRows, T - i0);
            if (scores) ScoreRows(j, baseRow, kt, tp, s0, i0, rows);
            if (softmax)
                for (int i = i0; i < i0 + rows; i++)
                {
                    var prow = new Span<float>(p0 + (long)i * T, T);
                    Softmax.Forward(new ReadOnlySpan<float>(s0 + (long)i * T, i + 1), prow[..(i + 1)]);
                    prow[(i + 1)..].Clear();
                }
            if (mix) MixRows(j, baseRow, vp, dhp, p0, i0, rows);
        }
    }

    // differentiates the given stages of Heads; dPattern, dScores [B,H,T,T] as IKernels.HeadsBackward says
    public static void HeadsBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages) =>
        RunHeadsBackward(&HeadBackwardFast, q, k, v, pattern, dz, dq, dk, dv, dPattern, dScores, B, T, H, dh, stages);

    // one (batch, head), differentiating the same lines as HeadBackward, as matrix products:
    //   Mix:     dP = dZ·Vᵀ (causal rows),  dV = Pᵀ·dZ
    //   Pattern: dS = P ⊙ (dP − rowsum(P ⊙ dP))
    //   Scores:  dQ = dS·K·scale,  dK = dSᵀ·Q·scale
    // Block of query rows by block, as forward. dp and ds rows live in one [T, tp] scratch (in place) while consecutive
    // stages run here, or in the [T, T] matrices of dPattern/dScores where the call stops after or starts at a stage.
    private static void HeadBackwardFast(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, dh = j->Dh, HD = j->H * dh, tp = RoundUp(T, Pad), dhp = RoundUp(dh, Pad);
        const int R = SimdMatMul.SmallRows;
        bool mix = (j->Stages & HeadStages.Mix) != 0, softmax = (j->Stages & HeadStages.Pattern) != 0, scores = (j->Stages & HeadStages.Scores) != 0;
        long baseRow = RowBase(j, task);
        long headSize = (long)T * dhp;
        float* vt = Scratch.Get((long)dh * tp + 3 * headSize + (long)T * tp);
        float* kp = vt + (long)dh * tp, qp = kp + headSize, dzp = qp + headSize, buf = dzp + headSize;
        if (mix)
        {
            TransposeHead(j->V + baseRow, HD, vt, tp, T, dh);
            CopyHead(j->DZ + baseRow, HD, dzp, dhp, T, dh);
        }
        if (scores)
        {
            CopyHead(j->K + baseRow, HD, kp, dhp, T, dh);
            CopyHead(j->Q + baseRow, HD, qp, dhp, T, dh);
        }
        // where dp and ds rows are: the scratch between two stages that both run here, else the [T, T] matrices
        bool dpHere = mix && softmax, dsHere = softmax && scores;
        float* dp = dpHere ? buf : j->DP + (long)task * T * T, ds = dsHere ? buf : j->DS + (long)task * T * T;
        int ldp = dpHere ? tp : T, lds = dsHere ? tp : T;
        float* p0 = j->P + (long)task * T * T;
        for (int i0 = 0; i0 < T; i0 += R)
        {
            int rows = Math.Min(R, T - i0), n = Math.Min(T, i0 + rows);
            if (mix)
            {
                // dp_ij = dz_i·v_j for j < n
                SimdMatMul.Small(dzp + (long)i0 * dhp, dhp, 1, vt, tp, dp + (long)i0 * ldp, ldp, rows, n, dh, acc: false);
                if (!dpHere)
                    for (int i = i0; i < i0 + rows; i++) new Span<float>(dp + (long)i * T + i + 1, T - i - 1).Clear();
            }
            if (softmax)
                for (int i = i0; i < i0 + rows; i++)
                {
                    var prow = new ReadOnlySpan<float>(p0 + (long)i * T, i + 1);
                    var dpi = new Span<float>(dp + (long)i * ldp, i + 1);
                    var dsi = new Span<float>(ds + (long)i * lds, i + 1);
                    float dot = TensorPrimitives.Dot(prow, dpi);
                    TensorPrimitives.Subtract(dpi, dot, dsi);
                    TensorPrimitives.Multiply(dsi, prow, dsi);
                    if (!dsHere) new Span<float>(ds + (long)i * T + i + 1, T - i - 1).Clear();
                }
            if (scores)
            {
                for (int i = i0; i < i0 + rows; i++)
                {
                    // ds·scale in the scratch; the masked keys of this block exactly 0, as the products below read them
                    var row = new Span<float>(buf + (long)i * tp, i + 1);
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(ds + (long)i * lds, i + 1), j->Scale, row);
                    new Span<float>(buf + (long)i * tp + i + 1, n - i - 1).Clear();
                }
                // dq_i = Σ_{j < n} ds_ij·k_j
                SimdMatMul.Small(buf + (long)i0 * tp, tp, 1, kp, dhp, j->DQ + baseRow + (long)i0 * HD, HD, rows, dh, n, acc: false);
            }
        }
        // rows [j0, j0+R) of dV and dK reduce over queries i ≥ j0 (p_ij = ds_ij = 0 for i < j, written as 0 above
        // because query blocks and key blocks share the same boundaries)
        for (int j0 = 0; j0 < T; j0 += R)
        {
            int rows = Math.Min(R, T - j0), kk = T - j0;
            if (mix) SimdMatMul.Small(p0 + (long)j0 * T + j0, 1, T, dzp + (long)j0 * dhp, dhp, j->DV + baseRow + (long)j0 * HD, HD, rows, dh, kk, acc: false);
            if (scores) SimdMatMul.Small(buf + (long)j0 * tp + j0, 1, tp, qp + (long)j0 * dhp, dhp, j->DK + baseRow + (long)j0 * HD, HD, rows, dh, kk, acc: false);
        }
    }
}

// ---- the tiled path: per (batch, head) O(T) numbers kept between forward and backward, not the [T, T] scores and pattern ----
public static unsafe partial class Attention
{
    /// <summary>
    /// Pattern rows i below this are never recomputed inside a column panel: the forward pass exponentiated row i as a span
    /// of i + 1 floats, and TensorPrimitives.Exp (System.Numerics.Tensors 10.0) runs spans of fewer than 4 floats through
    /// scalar MathF.Exp, which rounds about half its results differently from the vector code that longer spans get. The
    /// vector code's result for an element depends on that element alone (the same bits at 128, 256 and 512 bits, at any
    /// offset in a span of any length ≥ 4: measured). So the backward pass keeps rows i &lt; 16 from its row-wise pass
    /// (136 floats), and exponentiates each column panel as one span of at least 16 floats: both sides of every comparison
    /// are then spans of ≥ 16 floats, which the widest vector code the machine has handles.
    /// </summary>
    internal const int ShortRows = 16;

    // q, k, v, z [B,T,H,dh] → z, softmaxMax, softmaxSum [B,H,T]: every (batch, head) one task, nothing [T, T] written
    // (and, given a pattern [B,H,T,T], each pattern row written there as well: see IKernels.HeadsTiled)
    public static void HeadsTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z,
        Span<float> softmaxMax, Span<float> softmaxSum, int B, int T, int H, int dh, Span<float> pattern = default) =>
        RunHeadsTiled(&HeadForwardTiledFast, q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern);

    // one (batch, head) of the tiled path: HeadForwardFast with each block's scores and pattern in a [6, tp] scratch instead
    // of the [T, T] matrices. The same products (the block's rows of Q against the same Kᵀ; the same pattern rows, zero past
    // the diagonal, against the same V), the same scale and Softmax.Forward on spans of the same length: z has
    // HeadForwardFast's bits. Per query row the softmax's max and sum are kept, for the backward pass.
    private static void HeadForwardTiledFast(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, dh = j->Dh, HD = j->H * dh, tp = RoundUp(T, Pad), dhp = RoundUp(dh, Pad);
        const int R = SimdMatMul.SmallRows;
        long baseRow = RowBase(j, task);
        float* kt = Scratch.Get((long)dh * tp + (long)T * dhp + (long)R * tp), vp = kt + (long)dh * tp, p = vp + (long)T * dhp;
        TransposeHead(j->K + baseRow, HD, kt, tp, T, dh);
        CopyHead(j->V + baseRow, HD, vp, dhp, T, dh);
        float* max = j->Max + (long)task * T, sum = j->Sum + (long)task * T;
        for (int i0 = 0; i0 < T; i0 += R)
        {
            int rows = Math.Min(R, T - i0), n = Math.Min(T, i0 + rows);
            // s_ij = q_i·k_j for the keys j < n of the block (row r of the scratch: query i0 + r)
            SimdMatMul.Small(j->Q + baseRow + (long)i0 * HD, HD, 1, kt, tp, p, tp, rows, n, dh, acc: false);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                var row = new Span<float>(p + (long)r * tp, n);
                // p_i = softmax over j ≤ i of s_ij·scale, its max and sum kept; the block's keys past the query exactly 0, as the mix reads them
                TensorPrimitives.Multiply(row[..(i + 1)], j->Scale, row[..(i + 1)]);
                Softmax.Forward(row[..(i + 1)], row[..(i + 1)], out max[i], out sum[i]);
                row[(i + 1)..].Clear();
            }
            // z_i = Σ_{j < n} p_ij·v_j
            SimdMatMul.Small(p, tp, 1, vp, dhp, j->Z + baseRow + (long)i0 * HD, HD, rows, dh, n, acc: false);
            if (j->P != null)
                for (int r = 0; r < rows; r++)
                {
                    float* prow = j->P + (long)task * T * T + (long)(i0 + r) * T;
                    new ReadOnlySpan<float>(p + (long)r * tp, n).CopyTo(new Span<float>(prow, n));
                    new Span<float>(prow + n, T - n).Clear();
                }
        }
    }

    // differentiates HeadsTiled, recomputing the pattern from q, k and the kept max and sum
    public static void HeadsTiledBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv,
        int B, int T, int H, int dh) =>
        RunHeadsTiledBackward(&HeadBackwardTiledFast, q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh);

    // one (batch, head), differentiating the lines HeadBackwardFast differentiates, with HeadBackwardFast's products:
    //   Mix:     z = P·V                  → dP = dZ·Vᵀ (causal rows),  dV = Pᵀ·dZ
    //   Pattern: P = softmax(S)           → dS = P ⊙ (dP − rowsum(P ⊙ dP))
    //   Scores:  S = Q·Kᵀ·scale           → dQ = dS·K·scale,  dK = dSᵀ·Q·scale
    // and P recomputed, FlashAttention's way (Dao et al. 2022), as P_ij = exp(S_ij − max_i)/sum_i. rowsum(P ⊙ dP) needs whole
    // rows and dV, dK whole columns, so two passes, with per-thread scratch of O(T·(d_head + 6)) floats:
    //   1. query blocks of 6 rows (as there): S, P, dP of the block's rows, the row dots (kept: T floats), dS and dQ;
    //   2. key blocks of 6 columns: the [6, T − j0] panels Pᵀ and dSᵀ of the block's keys over the queries i ≥ j0, made
    //      from Kblock·Qᵀ and Vblock·dZᵀ, then dV and dK through the same micro-kernel calls over the same k range.
    // Every value is the one HeadBackwardFast reads out of the [T, T] matrices: a score or dp is one FMA chain over d_head
    // in the micro-kernel wherever it sits in a tile (k·q and q·k round the same), and the elementwise steps are the same
    // operations (see ShortRows for exp), so dq, dk, dv are its results bit for bit.
    private static void HeadBackwardTiledFast(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, dh = j->Dh, HD = j->H * dh, tp = RoundUp(T, Pad), dhp = RoundUp(dh, Pad);
        const int R = SimdMatMul.SmallRows;
        long baseRow = RowBase(j, task);
        // transposed heads [dh, tp] (+ Pad: a panel reads their rows from column a0 for ⌈(T − a0)/32⌉·32 floats), head copies
        // [T, dhp], a block's rows [6, tp], panels [6, ≤ RoundUp(T, 16)], the short rows [16, 16], the row dots [T]
        long tr = (long)dh * tp + Pad, head = (long)T * dhp, block = (long)R * tp, panel = (long)R * RoundUp(T, 16);
        float* kt = Scratch.Get(4 * tr + 4 * head + 2 * block + 2 * panel + ShortRows * ShortRows + T);
        float* qt = kt + tr, vt = qt + tr, dzt = vt + tr;
        float* kp = dzt + tr, qp = kp + head, vp = qp + head, dzp = vp + head;
        float* s = dzp + head, d = s + block, pt = d + block, dst = pt + panel, shortP = dst + panel, dot = shortP + ShortRows * ShortRows;
        TransposeHead(j->K + baseRow, HD, kt, tp, T, dh);
        TransposeHead(j->Q + baseRow, HD, qt, tp, T, dh);
        TransposeHead(j->V + baseRow, HD, vt, tp, T, dh);
        TransposeHead(j->DZ + baseRow, HD, dzt, tp, T, dh);
        CopyHead(j->K + baseRow, HD, kp, dhp, T, dh);
        CopyHead(j->Q + baseRow, HD, qp, dhp, T, dh);
        CopyHead(j->V + baseRow, HD, vp, dhp, T, dh);
        CopyHead(j->DZ + baseRow, HD, dzp, dhp, T, dh);
        float* max = j->Max + (long)task * T, sum = j->Sum + (long)task * T;
        float scale = j->Scale;

        // pass 1: query block by query block, HeadBackwardFast's loop with the block's pattern rows recomputed
        for (int i0 = 0; i0 < T; i0 += R)
        {
            int rows = Math.Min(R, T - i0), n = Math.Min(T, i0 + rows);
            // p_ij = exp(q_i·k_j·scale − max_i)/sum_i for j ≤ i: HeadForwardTiledFast's product and scale, Softmax.Forward's operations
            SimdMatMul.Small(j->Q + baseRow + (long)i0 * HD, HD, 1, kt, tp, s, tp, rows, n, dh, acc: false);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                var p = new Span<float>(s + (long)r * tp, i + 1);
                TensorPrimitives.Multiply(p, scale, p);
                Softmax.Recompute(p, max[i], sum[i], p);
                if (i < ShortRows) p.CopyTo(new Span<float>(shortP + i * ShortRows, i + 1));
            }
            // dp_ij = dz_i·v_j for j < n
            SimdMatMul.Small(dzp + (long)i0 * dhp, dhp, 1, vt, tp, d, tp, rows, n, dh, acc: false);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                float* p = s + (long)r * tp, ds = d + (long)r * tp;
                // ds_ij·scale = p_ij·(dp_ij − Σ_j' p_ij'·dp_ij')·scale; the block's masked keys exactly 0
                dot[i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(p, i + 1), new ReadOnlySpan<float>(ds, i + 1));
                SoftmaxGradient(ds, p, dot + i, 0, scale, i + 1);
                new Span<float>(ds + i + 1, n - i - 1).Clear();
            }
            // dq_i = Σ_{j < n} ds_ij·scale·k_j
            SimdMatMul.Small(d, tp, 1, kp, dhp, j->DQ + baseRow + (long)i0 * HD, HD, rows, dh, n, acc: false);
        }

        // pass 2: key block by key block, panels of its c keys (row r: key j0 + r) over the queries from a0, the multiple of 16
        // at or before j0, so that the micro-kernel's loads of Qᵀ and dZᵀ rows are aligned (column i − a0; p_ij = ds_ij = 0 for
        // i < j, and the queries a0 ≤ i < j0, before every key of the block, are never read); then HeadBackwardFast's dV and dK
        // products of those keys, over the queries i ≥ j0
        for (int j0 = 0; j0 < T; j0 += R)
        {
            int c = Math.Min(R, T - j0), a0 = j0 & ~15, off = j0 - a0, w = T - a0, ld = RoundUp(w, 16), kk = T - j0;
            // p_ij = exp(k_j·q_i·scale − max_i)/sum_i
            SimdMatMul.Small(kp + (long)j0 * dhp, dhp, 1, qt + a0, tp, pt, ld, c, w, dh, acc: false);
            for (int r = 0; r < c; r++)
            {
                float* row = pt + (long)r * ld;
                ScaleShift(row + off, max + j0, scale, kk);
                new Span<float>(row + w, ld - w).Clear();
            }
            var whole = new Span<float>(pt, c * ld); // ≥ ShortRows floats, as ld is
            TensorPrimitives.Exp(whole, whole);
            for (int r = 0; r < c; r++)
            {
                var row = new Span<float>(pt + (long)r * ld + off, kk);
                TensorPrimitives.Divide(row, new ReadOnlySpan<float>(sum + j0, kk), row);
                row[..r].Clear();
                for (int i = j0 + r; i < Math.Min(T, ShortRows); i++) row[i - j0] = shortP[i * ShortRows + j0 + r];
            }
            // dv_j = Σ_{i ≥ j0} p_ij·dz_i
            SimdMatMul.Small(pt + off, ld, 1, dzp + (long)j0 * dhp, dhp, j->DV + baseRow + (long)j0 * HD, HD, c, dh, kk, acc: false);
            // ds_ij·scale = p_ij·(v_j·dz_i − dot_i)·scale
            SimdMatMul.Small(vp + (long)j0 * dhp, dhp, 1, dzt + a0, tp, dst, ld, c, w, dh, acc: false);
            for (int r = 0; r < c; r++)
            {
                float* row = dst + (long)r * ld + off;
                SoftmaxGradient(row, pt + (long)r * ld + off, dot + j0, 1, scale, kk);
                new Span<float>(row, r).Clear();
            }
            // dk_j = Σ_{i ≥ j0} ds_ij·scale·q_i
            SimdMatMul.Small(dst + off, ld, 1, qp + (long)j0 * dhp, dhp, j->DK + baseRow + (long)j0 * HD, HD, c, dh, kk, acc: false);
        }
    }

    // x_i = x_i·scale − shift_i (n floats): TensorPrimitives.Multiply by scale, then Subtract, in one pass with the same roundings
    // (RyuJIT never contracts a·b − c into one FMA)
    private static void ScaleShift(float* x, float* shift, float scale, int n)
    {
        int i = 0;
        var vs = new Vector<float>(scale);
        for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            Vector.Store(Vector.Load(x + i) * vs - Vector.Load(shift + i), x + i);
        for (; i < n; i++) x[i] = x[i] * scale - shift[i];
    }

    // ds_i = (ds_i − dot)·p_i·scale (n floats; dot: one per element with dotStride 1, one for all with 0): HeadBackwardFast's
    // TensorPrimitives.Subtract, Multiply by p and Multiply by scale, in one pass with the same roundings
    private static void SoftmaxGradient(float* ds, float* p, float* dot, int dotStride, float scale, int n)
    {
        int i = 0;
        var vs = new Vector<float>(scale);
        if (dotStride == 0)
        {
            var vd = new Vector<float>(*dot);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
                Vector.Store((Vector.Load(ds + i) - vd) * Vector.Load(p + i) * vs, ds + i);
        }
        else
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
                Vector.Store((Vector.Load(ds + i) - Vector.Load(dot + i)) * Vector.Load(p + i) * vs, ds + i);
        for (; i < n; i++) ds[i] = (ds[i] - dot[i * dotStride]) * p[i] * scale;
    }
}
