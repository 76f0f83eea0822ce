using System.Numerics.Tensors;
using MiniGpt.Tensors;
using static MiniGpt.Tensors.Views;

namespace MiniGpt.Layers;

/// <summary>
/// Multi-head causal self-attention in TransformerLens layout:
///   q[b,p,h,:] = x_qk[b,p]·W_Q[h] + b_Q[h]   (same for k; v from x_v)
///   scores[b,h,i,j] = q[b,i,h]·k[b,j,h] / √d_head for j ≤ i, −∞ above the diagonal
///   pattern = softmax_j(scores);  z[b,i,h] = Σ_j pattern[b,h,i,j]·v[b,j,h]
///   out[b,p] = Σ_h z[b,p,h]·W_O[h] + b_O   (W_O [H,d_head,D] is a dense [H·d_head, D] matrix)
/// x_qk and x_v are the same tensor except with shortformer positions (x_qk = ln1(x) + W_pos).
/// </summary>
public static unsafe partial class Attention
{
    public readonly ref struct Weights
    {
        public readonly ReadOnlySpan<float> WQ, WK, WV, WO, BQ, BK, BV, BO;
        public Weights(ReadOnlySpan<float> wq, ReadOnlySpan<float> wk, ReadOnlySpan<float> wv, ReadOnlySpan<float> wo,
            ReadOnlySpan<float> bq, ReadOnlySpan<float> bk, ReadOnlySpan<float> bv, ReadOnlySpan<float> bo)
        { WQ = wq; WK = wk; WV = wv; WO = wo; BQ = bq; BK = bk; BV = bv; BO = bo; }
    }

    public readonly ref struct Grads
    {
        public readonly Span<float> WQ, WK, WV, WO, BQ, BK, BV, BO;
        public Grads(Span<float> wq, Span<float> wk, Span<float> wv, Span<float> wo,
            Span<float> bq, Span<float> bk, Span<float> bv, Span<float> bo)
        { WQ = wq; WK = wk; WV = wv; WO = wo; BQ = bq; BK = bk; BV = bv; BO = bo; }
    }

    // x_qk, x_v [B,T,D] → q,k,v,z [B,T,H,dh], scores, pattern [B,H,T,T], out [B,T,D]
    // The stages are public so the model can run hooks between them; this is all of them in order.
    public static void Forward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, Span<float> scores, Span<float> pattern, Span<float> z, Span<float> output,
        int B, int T, int D, int H, int dh)
    {
        ProjectQkv(xqk, xv, w, q, k, v, B, T, D, H, dh);
        if (Kernels.Fast) FusedHeads(q, k, v, scores, pattern, z, B, T, H, dh); // Scores, Pattern, Mix in one pass per head
        else
        {
            Scores(q, k, scores, B, T, H, dh);
            Pattern(scores, pattern, B, T, H);
            Mix(pattern, v, z, B, T, H, dh);
        }
        Linear.Forward(z[..(B * T * H * dh)], w.WO, w.BO, output, B * T, H * dh, D);
    }

    // q[b,p,h] = x_qk[b,p]·W_Q[h] + b_Q[h];  k likewise;  v[b,p,h] = x_v[b,p]·W_V[h] + b_V[h]
    public static void ProjectQkv(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh)
    {
        if (Kernels.Fast) { ProjectQkvFast(xqk, xv, w, q, k, v, B, T, D, H, dh); return; }
        int N = B * T, HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            Project(xqk, w.WQ.Slice(h * D * dh, D * dh), w.BQ.Slice(h * dh, dh), q, h, N, D, HD, dh);
            Project(xqk, w.WK.Slice(h * D * dh, D * dh), w.BK.Slice(h * dh, dh), k, h, N, D, HD, dh);
            Project(xv, w.WV.Slice(h * D * dh, D * dh), w.BV.Slice(h * dh, dh), v, h, N, D, HD, dh);
        }
    }

    // scores[b,h,i,j] = q[b,i,h]·k[b,j,h] / √dh for j ≤ i, −∞ above the diagonal
    public static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> k, Span<float> scores, int B, int T, int H, int dh)
    {
        fixed (float* pq = q, pk = k, ps = scores)
        {
            var job = new Job { Q = pq, K = pk, S = ps, T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh) };
            WorkerPool.Current.Run(Kernels.Fast ? &HeadScoresFast : &HeadScores, &job, B * H);
        }
    }

    // pattern[b,h,i,:] = softmax over j ≤ i of scores[b,h,i,j]; exactly 0 for j > i
    public static void Pattern(ReadOnlySpan<float> scores, Span<float> pattern, int B, int T, int H)
    {
        fixed (float* ps = scores, pp = pattern)
        {
            var job = new Job { S = ps, P = pp, T = T, H = H };
            WorkerPool.Current.Run(&HeadPattern, &job, B * H);
        }
    }

    // z[b,i,h] = Σ_{j ≤ i} pattern[b,h,i,j]·v[b,j,h]
    public static void Mix(ReadOnlySpan<float> pattern, ReadOnlySpan<float> v, Span<float> z, int B, int T, int H, int dh)
    {
        fixed (float* pp = pattern, pv = v, pz = z)
        {
            var job = new Job { P = pp, V = pv, Z = pz, T = T, H = H, Dh = dh };
            WorkerPool.Current.Run(Kernels.Fast ? &HeadMixFast : &HeadMix, &job, B * H);
        }
    }

    // result[b,p,h,:] = z[b,p,h]·W_O[h]  (hook_result: each head's write into the residual stream) [B,T,H,D]
    public static void Results(ReadOnlySpan<float> z, ReadOnlySpan<float> wo, Span<float> result, int B, int T, int D, int H, int dh)
    {
        int N = B * T, HD = H * dh;
        for (int h = 0; h < H; h++)
            Kernels.MatMul.NN(Cols(z, N, HD, h * dh, dh), Mat(wo.Slice(h * dh * D, dh * D), dh, D), Cols(result, N, H * D, h * D, D), accumulate: false);
    }

    // out[b,p] = Σ_h result[b,p,h] + b_O  (the same as z·W_O + b_O, summed head by head)
    public static void OutputFromResults(ReadOnlySpan<float> result, ReadOnlySpan<float> bo, Span<float> output, int N, int D, int H)
    {
        for (int n = 0; n < N; n++)
        {
            var o = output.Slice(n * D, D);
            bo.CopyTo(o);
            for (int h = 0; h < H; h++) TensorPrimitives.Add(o, result.Slice((n * H + h) * D, D), o);
        }
    }

    // q[:, h] = x·W_Q[h] + b_Q[h], written into the head's columns of [N, H·dh]
    private static void Project(ReadOnlySpan<float> x, ReadOnlySpan<float> wh, ReadOnlySpan<float> bh, Span<float> outp,
        int h, int N, int D, int HD, int dh)
    {
        Kernels.MatMul.NN(Mat(x, N, D), Mat(wh, D, dh), Cols(outp, N, HD, h * dh, dh), accumulate: false);
        for (int n = 0; n < N; n++)
        {
            var r = outp.Slice(n * HD + h * dh, dh);
            TensorPrimitives.Add(r, bh, r);
        }
    }

    private struct Job
    {
        public float* Q, K, V, S, P, Z, DQ, DK, DV, DZ, DP, DS;
        public int T, H, Dh;
        public float Scale;
    }

    // one (batch, head) of Scores
    private static void HeadScores(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, H = j->H, dh = j->Dh, HD = H * dh;
        int b = task / H, h = task % H;
        float* s0 = j->S + (long)task * T * T;
        long baseRow = (long)b * T * HD + h * dh;
        for (int i = 0; i < T; i++)
        {
            var qi = new ReadOnlySpan<float>(j->Q + baseRow + (long)i * HD, dh);
            var srow = new Span<float>(s0 + (long)i * T, T);
            for (int jj = 0; jj <= i; jj++)
                srow[jj] = TensorPrimitives.Dot(qi, new ReadOnlySpan<float>(j->K + baseRow + (long)jj * HD, dh)) * j->Scale;
            srow[(i + 1)..].Fill(float.NegativeInfinity);
        }
    }

    // one (batch, head) of Pattern: softmax over the causal prefix j ≤ i; the masked tail is exactly 0
    private static void HeadPattern(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T;
        float* s0 = j->S + (long)task * T * T, p0 = j->P + (long)task * T * T;
        for (int i = 0; i < T; i++)
        {
            var srow = new ReadOnlySpan<float>(s0 + (long)i * T, i + 1);
            var prow = new Span<float>(p0 + (long)i * T, T);
            Softmax.Forward(srow, prow[..(i + 1)]);
            prow[(i + 1)..].Clear();
        }
    }

    // one (batch, head) of Mix
    private static void HeadMix(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, H = j->H, dh = j->Dh, HD = H * dh;
        int b = task / H, h = task % H;
        float* p0 = j->P + (long)task * T * T;
        long baseRow = (long)b * T * HD + h * dh;
        for (int i = 0; i < T; i++)
        {
            float* prow = p0 + (long)i * T;
            var zi = new Span<float>(j->Z + baseRow + (long)i * HD, dh);
            zi.Clear();
            for (int jj = 0; jj <= i; jj++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(j->V + baseRow + (long)jj * HD, dh), prow[jj], zi, zi);
        }
    }

    // differentiates the whole forward above. dxqk and dxv are accumulated into (they may be the same span).
    // dq, dk, dv, dz [B,T,H,dh] are scratch that end holding those gradients.
    public static void Backward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w, in Grads g,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> z,
        ReadOnlySpan<float> dOut, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dz,
        Span<float> dxqk, Span<float> dxv, int B, int T, int D, int H, int dh,
        Span<float> dPatternOut = default, Span<float> dScoresOut = default, Action? afterDz = null, Action? afterDqkv = null)
    {
        int N = B * T, HD = H * dh;
        // out = z·W_O + b_O
        Linear.Backward(z[..(N * HD)], w.WO, dOut, dz, g.WO, g.BO, N, HD, D, accumulateDx: false);
        afterDz?.Invoke(); // a backward hook on hook_z may read or change dz here
        fixed (float* pq = q, pk = k, pv = v, pp = pattern, pdq = dq, pdk = dk, pdv = dv, pdz = dz, pdp = dPatternOut, pds = dScoresOut)
        {
            var job = new Job { Q = pq, K = pk, V = pv, P = pp, DQ = pdq, DK = pdk, DV = pdv, DZ = pdz, DP = pdp, DS = pds,
                T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh) };
            WorkerPool.Current.Run(Kernels.Fast ? &HeadBackwardFast : &HeadBackward, &job, B * H);
        }
        afterDqkv?.Invoke(); // backward hooks on hook_q/k/v may read or change dq, dk, dv here
        if (Kernels.Fast) { ProjectQkvBackwardFast(xqk, xv, w, g, dq, dk, dv, dxqk, dxv, N, D, H, dh); return; }
        for (int h = 0; h < H; h++)
        {
            ProjectBackward(xqk, w.WQ.Slice(h * D * dh, D * dh), dq, g.WQ.Slice(h * D * dh, D * dh), g.BQ.Slice(h * dh, dh), dxqk, h, N, D, HD, dh);
            ProjectBackward(xqk, w.WK.Slice(h * D * dh, D * dh), dk, g.WK.Slice(h * D * dh, D * dh), g.BK.Slice(h * dh, dh), dxqk, h, N, D, HD, dh);
            ProjectBackward(xv, w.WV.Slice(h * D * dh, D * dh), dv, g.WV.Slice(h * D * dh, D * dh), g.BV.Slice(h * dh, dh), dxv, h, N, D, HD, dh);
        }
    }

    // differentiates: q[:, h] = x·W_Q[h] + b_Q[h]
    //   dW_Q[h] += xᵀ·dq[:, h],  db_Q[h] += Σ_n dq[n, h],  dx += dq[:, h]·W_Q[h]ᵀ
    private static void ProjectBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> wh, ReadOnlySpan<float> dOutp,
        Span<float> dwh, Span<float> dbh, Span<float> dx, int h, int N, int D, int HD, int dh)
    {
        var dyh = Cols(dOutp, N, HD, h * dh, dh);
        Kernels.MatMul.TN(Mat(x, N, D), dyh, Mat(dwh, D, dh), accumulate: true);
        for (int n = 0; n < N; n++) TensorPrimitives.Add(dbh, dOutp.Slice(n * HD + h * dh, dh), dbh);
        Kernels.MatMul.NT(dyh, Mat(wh, D, dh), Mat(dx, N, D), accumulate: true);
    }

    // Row i of (batch·head) task's [T, T] gradient for a backward hook: the causal prefix, then zeros. dst null: nobody asked.
    private static void CopyHookRow(float* dst, int task, int i, int T, ReadOnlySpan<float> prefix)
    {
        if (dst == null) return;
        var row = new Span<float>(dst + (long)task * T * T + (long)i * T, T);
        prefix.CopyTo(row);
        row[prefix.Length..].Clear();
    }

    // one (batch, head), differentiating
    //   z_i = Σ_j p_ij·v_j            → dp_ij = dz_i·v_j,  dv_j += Σ_i p_ij·dz_i
    //   p_i = softmax(s_i)            → ds_ij = p_ij·(dp_ij − Σ_j' p_ij'·dp_ij')
    //   s_ij = q_i·k_j·scale          → dq_i += Σ_j ds_ij·scale·k_j,  dk_j += Σ_i ds_ij·scale·q_i
    private static void HeadBackward(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, H = j->H, dh = j->Dh, HD = H * dh;
        int b = task / H, h = task % H;
        float* p0 = j->P + (long)task * T * T;
        long baseRow = (long)b * T * HD + h * dh;
        for (int i = 0; i < T; i++)
        {
            new Span<float>(j->DQ + baseRow + (long)i * HD, dh).Clear();
            new Span<float>(j->DK + baseRow + (long)i * HD, dh).Clear();
            new Span<float>(j->DV + baseRow + (long)i * HD, dh).Clear();
        }
        Span<float> ds = T <= 2048 ? stackalloc float[T] : new float[T];
        for (int i = 0; i < T; i++)
        {
            var prow = new ReadOnlySpan<float>(p0 + (long)i * T, i + 1);
            var dzi = new ReadOnlySpan<float>(j->DZ + baseRow + (long)i * HD, dh);
            var dpi = ds[..(i + 1)];
            for (int jj = 0; jj <= i; jj++)
            {
                var vj = new ReadOnlySpan<float>(j->V + baseRow + (long)jj * HD, dh);
                dpi[jj] = TensorPrimitives.Dot(dzi, vj);
                var dvj = new Span<float>(j->DV + baseRow + (long)jj * HD, dh);
                TensorPrimitives.MultiplyAdd(dzi, prow[jj], dvj, dvj);
            }
            CopyHookRow(j->DP, task, i, T, dpi); // d loss / d pattern, for backward hooks on hook_pattern
            float dot = TensorPrimitives.Dot(prow, dpi);
            TensorPrimitives.Subtract(dpi, dot, dpi);
            TensorPrimitives.Multiply(dpi, prow, dpi);
            CopyHookRow(j->DS, task, i, T, dpi); // d loss / d scores (scaled scores, as hook_attn_scores holds them)
            TensorPrimitives.Multiply(dpi, j->Scale, dpi);
            var qi = new ReadOnlySpan<float>(j->Q + baseRow + (long)i * HD, dh);
            var dqi = new Span<float>(j->DQ + baseRow + (long)i * HD, dh);
            for (int jj = 0; jj <= i; jj++)
            {
                var kj = new ReadOnlySpan<float>(j->K + baseRow + (long)jj * HD, dh);
                TensorPrimitives.MultiplyAdd(kj, dpi[jj], dqi, dqi);
                var dkj = new Span<float>(j->DK + baseRow + (long)jj * HD, dh);
                TensorPrimitives.MultiplyAdd(qi, dpi[jj], dkj, dkj);
            }
        }
    }
}
