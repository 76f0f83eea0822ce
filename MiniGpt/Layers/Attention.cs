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
public static unsafe class Attention
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
    public static void Forward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, Span<float> scores, Span<float> pattern, Span<float> z, Span<float> output,
        int B, int T, int D, int H, int dh)
    {
        int N = B * T, HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            Project(xqk, w.WQ.Slice(h * D * dh, D * dh), w.BQ.Slice(h * dh, dh), q, h, N, D, HD, dh);
            Project(xqk, w.WK.Slice(h * D * dh, D * dh), w.BK.Slice(h * dh, dh), k, h, N, D, HD, dh);
            Project(xv, w.WV.Slice(h * D * dh, D * dh), w.BV.Slice(h * dh, dh), v, h, N, D, HD, dh);
        }
        fixed (float* pq = q, pk = k, pv = v, ps = scores, pp = pattern, pz = z)
        {
            var job = new Job { Q = pq, K = pk, V = pv, S = ps, P = pp, Z = pz, T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh) };
            WorkerPool.Current.Run(&HeadForward, &job, B * H);
        }
        Linear.Forward(z[..(N * HD)], w.WO, w.BO, output, N, HD, D);
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
        public float* Q, K, V, S, P, Z, DQ, DK, DV, DZ;
        public int T, H, Dh;
        public float Scale;
    }

    // one (batch, head): scores, causal softmax and z for every query position
    private static void HeadForward(void* ctx, int task)
    {
        var j = (Job*)ctx;
        int T = j->T, H = j->H, dh = j->Dh, HD = H * dh;
        int b = task / H, h = task % H;
        float* s0 = j->S + (long)task * T * T, p0 = j->P + (long)task * T * T;
        long baseRow = (long)b * T * HD + h * dh;
        for (int i = 0; i < T; i++)
        {
            var qi = new ReadOnlySpan<float>(j->Q + baseRow + (long)i * HD, dh);
            var srow = new Span<float>(s0 + (long)i * T, T);
            var prow = new Span<float>(p0 + (long)i * T, T);
            for (int jj = 0; jj <= i; jj++)
                srow[jj] = TensorPrimitives.Dot(qi, new ReadOnlySpan<float>(j->K + baseRow + (long)jj * HD, dh)) * j->Scale;
            srow[(i + 1)..].Fill(float.NegativeInfinity);
            // softmax over the causal prefix j ≤ i; the masked tail is exactly 0
            Softmax.Forward(srow[..(i + 1)], prow[..(i + 1)]);
            prow[(i + 1)..].Clear();
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
        Span<float> dxqk, Span<float> dxv, int B, int T, int D, int H, int dh)
    {
        int N = B * T, HD = H * dh;
        // out = z·W_O + b_O
        Linear.Backward(z[..(N * HD)], w.WO, dOut, dz, g.WO, g.BO, N, HD, D, accumulateDx: false);
        fixed (float* pq = q, pk = k, pv = v, pp = pattern, pdq = dq, pdk = dk, pdv = dv, pdz = dz)
        {
            var job = new Job { Q = pq, K = pk, V = pv, P = pp, DQ = pdq, DK = pdk, DV = pdv, DZ = pdz, T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh) };
            WorkerPool.Current.Run(&HeadBackward, &job, B * H);
        }
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
            float dot = TensorPrimitives.Dot(prow, dpi);
            TensorPrimitives.Subtract(dpi, dot, dpi);
            TensorPrimitives.Multiply(dpi, prow, dpi);
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
