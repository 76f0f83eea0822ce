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
///
/// <see cref="Forward"/> and <see cref="Backward"/> are the whole layer, for whichever kernel set the model
/// runs; the per-head work is <see cref="HeadForward"/>/<see cref="HeadBackward"/> here (the readable
/// reference, one head at a time) or the fused kernels of AttentionFast.cs. Both run the three stages of a
/// head (scores, pattern, mix) in one pass, unless a hook sits between two of them: then each stage runs
/// over every head, the hook fires on the whole tensor, and the next stage reads what the hook left.
///
/// Two paths, with the same bits. Materialised: scores and pattern [B, H, T, T] are written (what hooks on
/// hook_attn_scores/hook_pattern and Cache readers see) and backward reads the pattern. Tiled, when the caller
/// passes no pattern buffer: forward keeps per query row only the softmax's max and sum ([B, H, T]; memory O(T)
/// per head instead of O(T²)) and backward recomputes each pattern row from q, k and those two numbers, as
/// FlashAttention does (Dao et al. 2022). A score is one dot product whatever the tile it is computed in, and the
/// recomputed softmax runs Softmax.Forward's operations on the same values (<see cref="Softmax.Recompute"/>), so
/// the pattern, and everything after it, is bit for bit the materialised one (<see cref="HeadForwardTiled"/>).
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

    // x_qk, x_v [B,T,D] → q,k,v,z [B,T,H,dh], scores, pattern [B,H,T,T] (or, when scores is empty, softmaxMax and softmaxSum
    // [B,H,T]: the tiled path, which also writes pattern when it is given), out [B,T,D]; hooks: the model's hook points of this layer
    public static void Forward(IKernels kn, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, Span<float> scores, Span<float> pattern, Span<float> softmaxMax, Span<float> softmaxSum,
        Span<float> z, Span<float> output, int B, int T, int D, int H, int dh, IAttentionHooks? hooks = null)
    {
        int N = B * T, HD = H * dh;
        StepProfiler.Enter(StepPhase.Qkv);
        kn.ProjectQkv(xqk, xv, w, q, k, v, B, T, D, H, dh);
        if (hooks != null)
        {
            hooks.Forward(AttentionPoint.Q);
            hooks.Forward(AttentionPoint.K);
            hooks.Forward(AttentionPoint.V);
        }
        StepProfiler.Enter(StepPhase.Attention);
        if (scores.IsEmpty) Tiled(kn, q, k, v, z, softmaxMax, softmaxSum, pattern, B, T, H, dh, hooks);
        else Materialised(kn, q, k, v, scores, pattern, z, B, T, H, dh, hooks);
        hooks?.Forward(AttentionPoint.Z);
        StepProfiler.Enter(StepPhase.AttnOut);
        Linear.Forward(kn, z[..(N * HD)], w.WO, w.BO, output, N, HD, D);
        if (hooks != null && hooks.HasForward(AttentionPoint.Result)) ResultForward(kn.MatMul, hooks, z, w.WO, output, N, D, H, dh);
    }

    // z from q, k, v keeping per query row only the softmax's max and sum: nothing between the stages exists for a hook to see
    // (with a pattern buffer, the pattern written too, for a backward pass that reads it instead of recomputing it)
    private static void Tiled(IKernels kn, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z,
        Span<float> softmaxMax, Span<float> softmaxSum, Span<float> pattern, int B, int T, int H, int dh, IAttentionHooks? hooks)
    {
        if (hooks != null && (hooks.HasForward(AttentionPoint.Scores) || hooks.HasForward(AttentionPoint.Pattern)))
            throw new ArgumentException("attention forward: a hook on hook_attn_scores or hook_pattern needs the [B, H, T, T] scores and pattern buffers");
        long rows = (long)B * H * T;
        if (softmaxMax.Length < rows || softmaxSum.Length < rows)
            throw new ArgumentException($"attention forward without a pattern buffer: softmaxMax and softmaxSum must hold [B, H, T] = {rows} floats");
        kn.HeadsTiled(q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern);
    }

    // scores, pattern [B,H,T,T] written, stage by stage around the hooks that sit between stages
    private static void Materialised(IKernels kn, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> scores, Span<float> pattern, Span<float> z, int B, int T, int H, int dh, IAttentionHooks? hooks)
    {
        var todo = HeadStages.All;
        if (hooks != null && hooks.HasForward(AttentionPoint.Scores))
        {
            kn.Heads(q, k, v, scores, pattern, z, B, T, H, dh, HeadStages.Scores);
            todo = HeadStages.Pattern | HeadStages.Mix;
            hooks.Forward(AttentionPoint.Scores); // softmax reads only the causal part j ≤ i of what the hook leaves
        }
        if (hooks != null && hooks.HasForward(AttentionPoint.Pattern))
        {
            kn.Heads(q, k, v, scores, pattern, z, B, T, H, dh, todo & ~HeadStages.Mix);
            todo = HeadStages.Mix;
            // backward differentiates the softmax at its own output, not at what a hook puts in its place
            pattern[..(B * H * T * T)].CopyTo(hooks.KeepPattern());
            hooks.Forward(AttentionPoint.Pattern);
            ClearAboveDiagonal(pattern, B * H, T); // a replacement keeps the causal mask
        }
        kn.Heads(q, k, v, scores, pattern, z, B, T, H, dh, todo);
    }

    // differentiates the whole forward above. dxqk and dxv are accumulated into (they may be the same span).
    // dq, dk, dv, dz [B,T,H,dh] are scratch that end holding those gradients. pattern is what forward wrote, or empty
    // after a tiled forward: then softmaxMax and softmaxSum are what it kept instead.
    public static void Backward(IKernels kn, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w, in Grads g,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern,
        ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum, ReadOnlySpan<float> z,
        ReadOnlySpan<float> dOut, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dz,
        Span<float> dxqk, Span<float> dxv, int B, int T, int D, int H, int dh, IAttentionHooks? hooks = null)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.In(ref views, "x_qk", xqk, B, T, D);
        DebugViews.In(ref views, "x_v", xv, B, T, D);
        DebugViews.In(ref views, "q", q, B, T, H, dh);
        DebugViews.In(ref views, "k", k, B, T, H, dh);
        DebugViews.In(ref views, "v", v, B, T, H, dh);
        DebugViews.In(ref views, "pattern", pattern, B, H, T, T); // empty after a tiled forward: recomputed below
        DebugViews.In(ref views, "z", z, B, T, H, dh);
        DebugViews.In(ref views, "d_out", dOut, B, T, D);
        int N = B * T, HD = H * dh;
        // out = z·W_O + b_O
        StepProfiler.Enter(StepPhase.AttnOutBackward);
        Linear.Backward(kn, z[..(N * HD)], w.WO, dOut, dz, g.WO, g.BO, N, HD, D, accumulateDx: false);
        if (hooks != null && hooks.HasBackward(AttentionPoint.Result)) ResultBackward(kn.MatMul, hooks, z, w.WO, dOut, dz, g.WO, N, D, H, dh);
        hooks?.Backward(AttentionPoint.Z);
        StepProfiler.Enter(StepPhase.AttentionBackward);
        if (pattern.IsEmpty) TiledBackward(kn, q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh, hooks);
        else MaterialisedBackward(kn, q, k, v, pattern, dz, dq, dk, dv, B, T, H, dh, hooks);
        if (hooks != null)
        {
            hooks.Backward(AttentionPoint.Q);
            hooks.Backward(AttentionPoint.K);
            hooks.Backward(AttentionPoint.V);
        }
        StepProfiler.Enter(StepPhase.QkvBackward);
        kn.ProjectQkvBackward(xqk, xv, w, g, dq, dk, dv, dxqk, dxv, N, D, H, dh);
        DebugViews.Out(ref views, "dz", dz, B, T, H, dh);
        DebugViews.Out(ref views, "dq", dq, B, T, H, dh);
        DebugViews.Out(ref views, "dk", dk, B, T, H, dh);
        DebugViews.Out(ref views, "dv", dv, B, T, H, dh);
        DebugViews.Out(ref views, "dx_qk", dxqk, B, T, D);
        DebugViews.Out(ref views, "dx_v", dxv, B, T, D);
        DebugViews.Out(ref views, "dW_O", g.WO, H, dh, D);
    }

    // dq, dk, dv with every pattern row recomputed from q, k and the softmax's max and sum that the tiled forward kept
    private static void TiledBackward(IKernels kn, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv,
        int B, int T, int H, int dh, IAttentionHooks? hooks)
    {
        if (hooks != null && (hooks.HasBackward(AttentionPoint.Pattern) || hooks.HasBackward(AttentionPoint.Scores)))
            throw new ArgumentException("attention backward: a backward hook on hook_attn_scores or hook_pattern needs the pattern the forward pass materialised");
        long rows = (long)B * H * T;
        if (softmaxMax.Length < rows || softmaxSum.Length < rows)
            throw new ArgumentException($"attention backward without a pattern: softmaxMax and softmaxSum must hold the [B, H, T] = {rows} floats the tiled forward kept");
        kn.HeadsTiledBackward(q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh);
    }

    // dq, dk, dv from the pattern forward wrote, stage by stage around the backward hooks that sit between stages
    private static void MaterialisedBackward(IKernels kn, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, int B, int T, int H, int dh, IAttentionHooks? hooks)
    {
        // the softmax's own output, where a forward hook replaced the pattern in the pass being differentiated
        ReadOnlySpan<float> softmax = hooks != null ? hooks.KeptPattern() : default;
        if (hooks != null && (!softmax.IsEmpty || hooks.HasBackward(AttentionPoint.Pattern) || hooks.HasBackward(AttentionPoint.Scores)))
        {
            // stage by stage, so that what a hook leaves in d_pattern or d_scores is what the next stage differentiates:
            // z = p'·v with the pattern the pass used (a forward hook's replacement, which passes the gradient through
            // unchanged), p = softmax(s) at the softmax's own output
            var dP = hooks.StageGradient(AttentionPoint.Pattern);
            var dS = hooks.StageGradient(AttentionPoint.Scores);
            kn.HeadsBackward(q, k, v, pattern, dz, dq, dk, dv, dP, dS, B, T, H, dh, HeadStages.Mix);     // d pattern, dv
            hooks.Backward(AttentionPoint.Pattern); // the next stage reads only the causal part j ≤ i
            kn.HeadsBackward(q, k, v, softmax.IsEmpty ? pattern : softmax, dz, dq, dk, dv, dP, dS, B, T, H, dh, HeadStages.Pattern); // d scores
            hooks.Backward(AttentionPoint.Scores); // the next stage reads only the causal part j ≤ i
            kn.HeadsBackward(q, k, v, pattern, dz, dq, dk, dv, dP, dS, B, T, H, dh, HeadStages.Scores);  // dq, dk
        }
        else kn.HeadsBackward(q, k, v, pattern, dz, dq, dk, dv, default, default, B, T, H, dh, HeadStages.All);
    }

    // ---- hook_result: each head's write into the residual stream, [B, T, H, D] ----
    // attn_out is z·W_O + b_O, one product over all heads; the per-head results are formed only when a hook sits there.

    // result[n, h, :] = z[n, h]·W_O[h]
    public static void Results(IMatMul mm, ReadOnlySpan<float> z, ReadOnlySpan<float> wo, Span<float> result, int N, int D, int H, int dh)
    {
        int HD = H * dh;
        for (int h = 0; h < H; h++)
            mm.NN(Cols(z, N, HD, h * dh, dh), Mat(wo.Slice(h * dh * D, dh * D), dh, D), Cols(result, N, H * D, h * D, D), accumulate: false);
    }

    // attn_out = Σ_h result[n, h] + b_O, so what a forward hook changes in a head's result reaches attn_out as that change:
    //   out[n] += Σ_h (result'[n, h] − z[n, h]·W_O[h])
    // with z[n, h]·W_O[h] formed again by the same product, so the change is exactly 0 (out keeps its bits) where the hook only read.
    private static void ResultForward(IMatMul mm, IAttentionHooks hooks, ReadOnlySpan<float> z, ReadOnlySpan<float> wo, Span<float> output,
        int N, int D, int H, int dh)
    {
        var result = hooks.ResultBuffer(gradient: false);
        Results(mm, z, wo, result, N, D, H, dh);
        hooks.Forward(AttentionPoint.Result);
        var own = hooks.ResultScratch();
        int HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            mm.NN(Cols(z, N, HD, h * dh, dh), Mat(wo.Slice(h * dh * D, dh * D), dh, D), Mat(own, N, D), accumulate: false);
            for (int n = 0; n < N; n++)
            {
                var r = result.Slice((n * H + h) * D, D);
                var o = own.Slice(n * D, D);
                var y = output.Slice(n * D, D);
                for (int d = 0; d < D; d++)
                {
                    float change = r[d] - o[d];
                    if (change != 0) y[d] += change;
                }
            }
        }
    }

    // d result[n, h] = d attn_out[n] for every head. What a backward hook changes there reaches z and W_O as that change
    // c[n, h] = dresult'[n, h] − dOut[n]:  dz[n, h] += c[n, h]·W_O[h]ᵀ,  dW_O[h] += z[:, h]ᵀ·c[:, h]  (b_O's gradient is dOut's own)
    private static void ResultBackward(IMatMul mm, IAttentionHooks hooks, ReadOnlySpan<float> z, ReadOnlySpan<float> wo, ReadOnlySpan<float> dOut,
        Span<float> dz, Span<float> dwo, int N, int D, int H, int dh)
    {
        var dr = hooks.ResultBuffer(gradient: true);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) dOut.Slice(n * D, D).CopyTo(dr.Slice((n * H + h) * D, D));
        hooks.Backward(AttentionPoint.Result);
        var change = hooks.ResultScratch();
        int HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            bool any = false;
            for (int n = 0; n < N; n++)
            {
                var c = change.Slice(n * D, D);
                TensorPrimitives.Subtract(dr.Slice((n * H + h) * D, D), dOut.Slice(n * D, D), c);
                any |= c.IndexOfAnyExcept(0f) >= 0;
            }
            if (!any) continue;
            mm.NT(Mat(change, N, D), Mat(wo.Slice(h * dh * D, dh * D), dh, D), Cols(dz, N, HD, h * dh, dh), accumulate: true);
            mm.TN(Cols(z, N, HD, h * dh, dh), Mat(change, N, D), Mat(dwo.Slice(h * dh * D, dh * D), dh, D), accumulate: true);
        }
    }

    /// <summary>Zeroes every [T, T] matrix of m [count, T, T] above its diagonal (j &gt; i): the causal mask of a pattern or its gradient.</summary>
    public static void ClearAboveDiagonal(Span<float> m, int count, int T)
    {
        for (int c = 0; c < count; c++)
            for (int i = 0; i < T - 1; i++) m.Slice((c * T + i) * T + i + 1, T - i - 1).Clear();
    }

    // ---- the reference projections: one head at a time ----

    // q[b,p,h] = x_qk[b,p]·W_Q[h] + b_Q[h];  k likewise;  v[b,p,h] = x_v[b,p]·W_V[h] + b_V[h]
    public static void ProjectQkvReference(IMatMul mm, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh)
    {
        int N = B * T, HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            Project(mm, xqk, w.WQ.Slice(h * D * dh, D * dh), w.BQ.Slice(h * dh, dh), q, h, N, D, HD, dh);
            Project(mm, xqk, w.WK.Slice(h * D * dh, D * dh), w.BK.Slice(h * dh, dh), k, h, N, D, HD, dh);
            Project(mm, xv, w.WV.Slice(h * D * dh, D * dh), w.BV.Slice(h * dh, dh), v, h, N, D, HD, dh);
        }
    }

    // q[:, h] = x·W_Q[h] + b_Q[h], written into the head's columns of [N, H·dh]
    private static void Project(IMatMul mm, ReadOnlySpan<float> x, ReadOnlySpan<float> wh, ReadOnlySpan<float> bh, Span<float> outp,
        int h, int N, int D, int HD, int dh)
    {
        mm.NN(Mat(x, N, D), Mat(wh, D, dh), Cols(outp, N, HD, h * dh, dh), accumulate: false);
        for (int n = 0; n < N; n++)
        {
            var r = outp.Slice(n * HD + h * dh, dh);
            TensorPrimitives.Add(r, bh, r);
        }
    }

    // differentiates ProjectQkvReference head by head (see ProjectBackward)
    public static void ProjectQkvBackwardReference(IMatMul mm, ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Weights w, in Grads g,
        ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh)
    {
        int HD = H * dh;
        for (int h = 0; h < H; h++)
        {
            ProjectBackward(mm, xqk, w.WQ.Slice(h * D * dh, D * dh), dq, g.WQ.Slice(h * D * dh, D * dh), g.BQ.Slice(h * dh, dh), dxqk, h, N, D, HD, dh);
            ProjectBackward(mm, xqk, w.WK.Slice(h * D * dh, D * dh), dk, g.WK.Slice(h * D * dh, D * dh), g.BK.Slice(h * dh, dh), dxqk, h, N, D, HD, dh);
            ProjectBackward(mm, xv, w.WV.Slice(h * D * dh, D * dh), dv, g.WV.Slice(h * D * dh, D * dh), g.BV.Slice(h * dh, dh), dxv, h, N, D, HD, dh);
        }
    }

    // differentiates: q[:, h] = x·W_Q[h] + b_Q[h]
    //   dW_Q[h] += xᵀ·dq[:, h],  db_Q[h] += Σ_n dq[n, h],  dx += dq[:, h]·W_Q[h]ᵀ
    private static void ProjectBackward(IMatMul mm, ReadOnlySpan<float> x, ReadOnlySpan<float> wh, ReadOnlySpan<float> dOutp,
        Span<float> dwh, Span<float> dbh, Span<float> dx, int h, int N, int D, int HD, int dh)
    {
        var dyh = Cols(dOutp, N, HD, h * dh, dh);
        mm.TN(Mat(x, N, D), dyh, Mat(dwh, D, dh), accumulate: true);
        for (int n = 0; n < N; n++) TensorPrimitives.Add(dbh, dOutp.Slice(n * HD + h * dh, dh), dbh);
        mm.NT(dyh, Mat(wh, D, dh), Mat(dx, N, D), accumulate: true);
    }

    // ---- the reference heads: every (batch, head) a task on the worker pool, each running HeadForward/HeadBackward ----

    private struct Job
    {
        public float* Q, K, V, S, P, Z, DQ, DK, DV, DZ, DP, DS;
        public float* Max, Sum; // the tiled path's softmax max and sum per query row, [B, H, T]
        public int T, H, Dh;
        public float Scale;
        public HeadStages Stages;
    }

    // (batch, head) task → the offset of its [T, dh] rows in a [B, T, H, dh] tensor, and of its [T, T] matrix in [B, H, T, T]
    private static long RowBase(Job* j, int task) => (long)(task / j->H) * j->T * j->H * j->Dh + (long)(task % j->H) * j->Dh;
    private static long MatrixBase(Job* j, int task) => (long)task * j->T * j->T;
    // a head's rows as a span: row i at i·H·dh, d_head wide
    private static int HeadSpan(Job* j) => (j->T - 1) * j->H * j->Dh + j->Dh;

    // q, k, v, z [B,T,H,dh], scores, pattern [B,H,T,T]: the given stages of every head, one HeadForward per (batch, head)
    public static void HeadsReference(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z,
        int B, int T, int H, int dh, HeadStages stages) =>
        RunHeads(&HeadForwardTask, q, k, v, scores, pattern, z, B, T, H, dh, stages);

    // every (batch, head) of a forward stage run, one task each on the worker pool (reference and fast kernels alike)
    private static void RunHeads(delegate*<void*, int, void> task, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> scores, Span<float> pattern, Span<float> z, int B, int T, int H, int dh, HeadStages stages)
    {
        fixed (float* pq = q, pk = k, pv = v, ps = scores, pp = pattern, pz = z)
        {
            var job = new Job { Q = pq, K = pk, V = pv, S = ps, P = pp, Z = pz, T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh), Stages = stages };
            WorkerPool.Current.Run(task, &job, B * H);
        }
    }

    private static void HeadForwardTask(void* ctx, int task)
    {
        var j = (Job*)ctx;
        long r = RowBase(j, task), m = MatrixBase(j, task);
        int len = HeadSpan(j), TT = j->T * j->T;
        HeadForward(new ReadOnlySpan<float>(j->Q + r, len), new ReadOnlySpan<float>(j->K + r, len), new ReadOnlySpan<float>(j->V + r, len),
            new Span<float>(j->S + m, TT), new Span<float>(j->P + m, TT), new Span<float>(j->Z + r, len), j->T, j->H * j->Dh, j->Dh, j->Scale, j->Stages);
    }

    /// <summary>
    /// One head, the readable way. q, k, v, z: the head's T rows of d_head floats, row i at i·stride (its columns
    /// of [T, H·d_head]); scores, pattern [T, T]. Runs the given stages:
    ///   Scores:  s[i, j] = q_i·k_j·scale for j ≤ i, −∞ beyond
    ///   Pattern: p[i, :j≤i] = softmax(s[i, :j≤i]), 0 beyond
    ///   Mix:     z_i = Σ_{j ≤ i} p[i, j]·v_j
    /// </summary>
    public static void HeadForward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z,
        int T, int stride, int dh, float scale, HeadStages stages)
    {
        if ((stages & HeadStages.Scores) != 0)
            for (int i = 0; i < T; i++)
            {
                var qi = q.Slice(i * stride, dh);
                var srow = scores.Slice(i * T, T);
                for (int j = 0; j <= i; j++) srow[j] = TensorPrimitives.Dot(qi, k.Slice(j * stride, dh)) * scale;
                srow[(i + 1)..].Fill(float.NegativeInfinity);
            }
        if ((stages & HeadStages.Pattern) != 0)
            for (int i = 0; i < T; i++)
            {
                var prow = pattern.Slice(i * T, T);
                Softmax.Forward(scores.Slice(i * T, i + 1), prow[..(i + 1)]);
                prow[(i + 1)..].Clear();
            }
        if ((stages & HeadStages.Mix) != 0)
            for (int i = 0; i < T; i++)
            {
                var prow = pattern.Slice(i * T, T);
                var zi = z.Slice(i * stride, dh);
                zi.Clear();
                for (int j = 0; j <= i; j++) TensorPrimitives.MultiplyAdd(v.Slice(j * stride, dh), prow[j], zi, zi);
            }
    }

    // differentiates HeadsReference's stages, one HeadBackward per (batch, head). dPattern and dScores [B,H,T,T] hold the
    // gradients between stages; when empty (stages All), each task uses [T, T] scratch of its own thread.
    public static void HeadsBackwardReference(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages) =>
        RunHeadsBackward(&HeadBackwardTask, q, k, v, pattern, dz, dq, dk, dv, dPattern, dScores, B, T, H, dh, stages);

    // every (batch, head) of a backward stage run, one task each on the worker pool (reference and fast kernels alike)
    private static void RunHeadsBackward(delegate*<void*, int, void> task, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores,
        int B, int T, int H, int dh, HeadStages stages)
    {
        // a call that stops after a stage, or starts at one, hands the gradient over in d_pattern (between Mix and Pattern)
        // or d_scores (between Pattern and Scores)
        bool mix = (stages & HeadStages.Mix) != 0, softmax = (stages & HeadStages.Pattern) != 0, scores = (stages & HeadStages.Scores) != 0;
        long TT = (long)B * H * T * T;
        if (mix != softmax && dPattern.Length < TT) throw new ArgumentException($"attention backward of stages {stages}: d_pattern must hold [B, H, T, T] = {TT} floats");
        if (softmax != scores && dScores.Length < TT) throw new ArgumentException($"attention backward of stages {stages}: d_scores must hold [B, H, T, T] = {TT} floats");
        fixed (float* pq = q, pk = k, pv = v, pp = pattern, pdz = dz, pdq = dq, pdk = dk, pdv = dv, pdp = dPattern, pds = dScores)
        {
            var job = new Job { Q = pq, K = pk, V = pv, P = pp, DZ = pdz, DQ = pdq, DK = pdk, DV = pdv, DP = pdp, DS = pds,
                T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh), Stages = stages };
            WorkerPool.Current.Run(task, &job, B * H);
        }
    }

    private static void HeadBackwardTask(void* ctx, int task)
    {
        var j = (Job*)ctx;
        long r = RowBase(j, task), m = MatrixBase(j, task);
        int len = HeadSpan(j), TT = j->T * j->T;
        float* scratch = j->DP == null || j->DS == null ? Tensors.Scratch.Get(2L * TT) : null;
        float* dp = j->DP != null ? j->DP + m : scratch;
        float* ds = j->DS != null ? j->DS + m : scratch + TT;
        HeadBackward(new ReadOnlySpan<float>(j->Q + r, len), new ReadOnlySpan<float>(j->K + r, len), new ReadOnlySpan<float>(j->V + r, len),
            new ReadOnlySpan<float>(j->P + m, TT), new ReadOnlySpan<float>(j->DZ + r, len),
            new Span<float>(j->DQ + r, len), new Span<float>(j->DK + r, len), new Span<float>(j->DV + r, len),
            new Span<float>(dp, TT), new Span<float>(ds, TT), j->T, j->H * j->Dh, j->Dh, j->Scale, j->Stages);
    }

    /// <summary>
    /// Differentiates <see cref="HeadForward"/>'s stages for one head (rows as there; dp, ds [T, T]), Mix first:
    ///   Mix:     z_i = Σ_j p_ij·v_j           → dp_ij = dz_i·v_j,  dv_j = Σ_i p_ij·dz_i
    ///   Pattern: p_i = softmax(s_i)           → ds_ij = p_ij·(dp_ij − Σ_j' p_ij'·dp_ij')
    ///   Scores:  s_ij = q_i·k_j·scale         → dq_i = Σ_j ds_ij·scale·k_j,  dk_j = Σ_i ds_ij·scale·q_i
    /// Each stage overwrites its outputs (dp and dv; ds; dq and dk), with 0 above the diagonal of dp and ds.
    /// </summary>
    public static void HeadBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz,
        Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dp, Span<float> ds, int T, int stride, int dh, float scale, HeadStages stages)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.InStrided(ref views, "q", q, T, stride, dh);
        DebugViews.InStrided(ref views, "k", k, T, stride, dh);
        DebugViews.InStrided(ref views, "v", v, T, stride, dh);
        DebugViews.In(ref views, "pattern", pattern, T, T);
        DebugViews.InStrided(ref views, "dz", dz, T, stride, dh);
        if ((stages & HeadStages.Mix) != 0)
        {
            for (int i = 0; i < T; i++) dv.Slice(i * stride, dh).Clear();
            for (int i = 0; i < T; i++)
            {
                var prow = pattern.Slice(i * T, i + 1);
                var dzi = dz.Slice(i * stride, dh);
                var dpi = dp.Slice(i * T, T);
                for (int j = 0; j <= i; j++)
                {
                    dpi[j] = TensorPrimitives.Dot(dzi, v.Slice(j * stride, dh));
                    var dvj = dv.Slice(j * stride, dh);
                    TensorPrimitives.MultiplyAdd(dzi, prow[j], dvj, dvj);
                }
                dpi[(i + 1)..].Clear();
            }
        }
        if ((stages & HeadStages.Pattern) != 0)
            for (int i = 0; i < T; i++)
            {
                var prow = pattern.Slice(i * T, i + 1);
                var dpi = dp.Slice(i * T, i + 1);
                var dsi = ds.Slice(i * T, T);
                float dot = TensorPrimitives.Dot(prow, dpi);
                TensorPrimitives.Subtract(dpi, dot, dsi[..(i + 1)]);
                TensorPrimitives.Multiply(dsi[..(i + 1)], prow, dsi[..(i + 1)]);
                dsi[(i + 1)..].Clear();
            }
        if ((stages & HeadStages.Scores) != 0)
        {
            for (int i = 0; i < T; i++)
            {
                dq.Slice(i * stride, dh).Clear();
                dk.Slice(i * stride, dh).Clear();
            }
            for (int i = 0; i < T; i++)
            {
                var qi = q.Slice(i * stride, dh);
                var dqi = dq.Slice(i * stride, dh);
                var dsi = ds.Slice(i * T, i + 1);
                for (int j = 0; j <= i; j++)
                {
                    float c = dsi[j] * scale;
                    TensorPrimitives.MultiplyAdd(k.Slice(j * stride, dh), c, dqi, dqi);
                    var dkj = dk.Slice(j * stride, dh);
                    TensorPrimitives.MultiplyAdd(qi, c, dkj, dkj);
                }
            }
        }
        // the softmax's gradient is the Pattern stage: d pattern in, d scores out
        DebugViews.Out(ref views, "d_pattern", dp, T, T);
        DebugViews.Out(ref views, "d_scores", ds, T, T);
        DebugViews.OutStrided(ref views, "dq", dq, T, stride, dh);
        DebugViews.OutStrided(ref views, "dk", dk, T, stride, dh);
        DebugViews.OutStrided(ref views, "dv", dv, T, stride, dh);
    }

    // ---- the reference of the tiled path: one row of scores at a time, in a T-float scratch of the task's thread ----

    // q, k, v, z [B,T,H,dh] → z, softmaxMax, softmaxSum [B,H,T]: one HeadForwardTiled per (batch, head)
    public static void HeadsTiledReference(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z,
        Span<float> softmaxMax, Span<float> softmaxSum, int B, int T, int H, int dh, Span<float> pattern = default) =>
        RunHeadsTiled(&HeadForwardTiledTask, q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern);

    // differentiates HeadsTiledReference: one HeadBackwardTiled per (batch, head)
    public static void HeadsTiledBackwardReference(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv,
        int B, int T, int H, int dh) =>
        RunHeadsTiledBackward(&HeadBackwardTiledTask, q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh);

    // every (batch, head) of a tiled forward, one task each on the worker pool (reference and fast kernels alike)
    private static void RunHeadsTiled(delegate*<void*, int, void> task, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z,
        Span<float> softmaxMax, Span<float> softmaxSum, int B, int T, int H, int dh, Span<float> pattern)
    {
        if (!pattern.IsEmpty && pattern.Length < (long)B * H * T * T) throw new ArgumentException($"tiled attention: the pattern buffer is shorter than [B, H, T, T] = [{B}, {H}, {T}, {T}]");
        fixed (float* pq = q, pk = k, pv = v, pz = z, pm = softmaxMax, ps = softmaxSum, pp = pattern)
        {
            var job = new Job { Q = pq, K = pk, V = pv, Z = pz, Max = pm, Sum = ps, P = pattern.IsEmpty ? null : pp, T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh), Stages = HeadStages.All };
            WorkerPool.Current.Run(task, &job, B * H);
        }
    }

    // every (batch, head) of a tiled backward, one task each on the worker pool (reference and fast kernels alike)
    private static void RunHeadsTiledBackward(delegate*<void*, int, void> task, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum, ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv,
        int B, int T, int H, int dh)
    {
        fixed (float* pq = q, pk = k, pv = v, pm = softmaxMax, ps = softmaxSum, pdz = dz, pdq = dq, pdk = dk, pdv = dv)
        {
            var job = new Job { Q = pq, K = pk, V = pv, Max = pm, Sum = ps, DZ = pdz, DQ = pdq, DK = pdk, DV = pdv,
                T = T, H = H, Dh = dh, Scale = 1f / MathF.Sqrt(dh), Stages = HeadStages.All };
            WorkerPool.Current.Run(task, &job, B * H);
        }
    }

    private static void HeadForwardTiledTask(void* ctx, int task)
    {
        var j = (Job*)ctx;
        long r = RowBase(j, task), m = (long)task * j->T;
        int len = HeadSpan(j), T = j->T;
        HeadForwardTiled(new ReadOnlySpan<float>(j->Q + r, len), new ReadOnlySpan<float>(j->K + r, len), new ReadOnlySpan<float>(j->V + r, len),
            new Span<float>(j->Z + r, len), new Span<float>(j->Max + m, T), new Span<float>(j->Sum + m, T), new Span<float>(Tensors.Scratch.Get(T), T),
            T, j->H * j->Dh, j->Dh, j->Scale, j->P == null ? default : new Span<float>(j->P + (long)task * T * T, T * T));
    }

    /// <summary>
    /// One head of the tiled path, the readable way (rows as in <see cref="HeadForward"/>; max, sum [T]; row: T floats of
    /// scratch). Query row by query row, with nothing [T, T]:
    ///   s_j = q_i·k_j·scale for j ≤ i           (into row)
    ///   p = softmax(s), max_i = max s, sum_i = Σ_j exp(s_j − max_i)   (in place; the two numbers kept)
    ///   z_i = Σ_{j ≤ i} p_j·v_j
    /// HeadForward's operations, on the same values in the same order, so z is its z bit for bit.
    /// </summary>
    public static void HeadForwardTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z,
        Span<float> max, Span<float> sum, Span<float> row, int T, int stride, int dh, float scale, Span<float> pattern = default)
    {
        for (int i = 0; i < T; i++)
        {
            var qi = q.Slice(i * stride, dh);
            var p = row[..(i + 1)];
            for (int j = 0; j <= i; j++) p[j] = TensorPrimitives.Dot(qi, k.Slice(j * stride, dh)) * scale;
            Softmax.Forward(p, p, out max[i], out sum[i]);
            if (!pattern.IsEmpty)
            {
                p.CopyTo(pattern.Slice(i * T, i + 1));
                pattern.Slice(i * T + i + 1, T - i - 1).Clear();
            }
            var zi = z.Slice(i * stride, dh);
            zi.Clear();
            for (int j = 0; j <= i; j++) TensorPrimitives.MultiplyAdd(v.Slice(j * stride, dh), p[j], zi, zi);
        }
    }

    private static void HeadBackwardTiledTask(void* ctx, int task)
    {
        var j = (Job*)ctx;
        long r = RowBase(j, task), m = (long)task * j->T;
        int len = HeadSpan(j), T = j->T;
        float* scratch = Tensors.Scratch.Get(2L * T);
        HeadBackwardTiled(new ReadOnlySpan<float>(j->Q + r, len), new ReadOnlySpan<float>(j->K + r, len), new ReadOnlySpan<float>(j->V + r, len),
            new ReadOnlySpan<float>(j->Max + m, T), new ReadOnlySpan<float>(j->Sum + m, T), new ReadOnlySpan<float>(j->DZ + r, len),
            new Span<float>(j->DQ + r, len), new Span<float>(j->DK + r, len), new Span<float>(j->DV + r, len),
            new Span<float>(scratch, T), new Span<float>(scratch + T, T), T, j->H * j->Dh, j->Dh, j->Scale);
    }

    /// <summary>
    /// Differentiates <see cref="HeadForwardTiled"/> for one head (rows as there; prow, dsrow: T floats of scratch), query
    /// row by query row, recomputing the forward's pattern row first:
    ///   s_j = q_i·k_j·scale,  p = exp(s − max_i)/sum_i   (Softmax.Recompute: Softmax.Forward's p bit for bit)
    ///   Mix:     z_i = Σ_j p_j·v_j       → dp_j = dz_i·v_j,  dv_j += p_j·dz_i
    ///   Pattern: p = softmax(s)          → ds_j = p_j·(dp_j − Σ_j' p_j'·dp_j')
    ///   Scores:  s_j = q_i·k_j·scale     → dq_i += ds_j·scale·k_j,  dk_j += ds_j·scale·q_i
    /// Every sum of <see cref="HeadBackward"/> gets the same terms in the same order (dv_j and dk_j over i ascending, dq_i
    /// over j ascending), so dq, dk, dv are its results bit for bit; they are overwritten.
    /// </summary>
    public static void HeadBackwardTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> max, ReadOnlySpan<float> sum,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> prow, Span<float> dsrow, int T, int stride, int dh, float scale)
    {
        DebugViews? views = null; // Debug builds: named, shaped copies of the inputs and outputs (see DebugViews; nothing in Release)
        DebugViews.InStrided(ref views, "q", q, T, stride, dh);
        DebugViews.InStrided(ref views, "k", k, T, stride, dh);
        DebugViews.InStrided(ref views, "v", v, T, stride, dh);
        DebugViews.In(ref views, "softmax_max", max, T);
        DebugViews.In(ref views, "softmax_sum", sum, T);
        DebugViews.InStrided(ref views, "dz", dz, T, stride, dh);
        for (int i = 0; i < T; i++)
        {
            dq.Slice(i * stride, dh).Clear();
            dk.Slice(i * stride, dh).Clear();
            dv.Slice(i * stride, dh).Clear();
        }
        for (int i = 0; i < T; i++)
        {
            var qi = q.Slice(i * stride, dh);
            var dzi = dz.Slice(i * stride, dh);
            var dqi = dq.Slice(i * stride, dh);
            // the pattern row the forward pass mixed with
            var p = prow[..(i + 1)];
            for (int j = 0; j <= i; j++) p[j] = TensorPrimitives.Dot(qi, k.Slice(j * stride, dh)) * scale;
            Softmax.Recompute(p, max[i], sum[i], p);
            // z_i = Σ_j p_j·v_j
            var ds = dsrow[..(i + 1)];
            for (int j = 0; j <= i; j++)
            {
                ds[j] = TensorPrimitives.Dot(dzi, v.Slice(j * stride, dh));
                var dvj = dv.Slice(j * stride, dh);
                TensorPrimitives.MultiplyAdd(dzi, p[j], dvj, dvj);
            }
            // p = softmax(s): ds = p ⊙ (dp − p·dp), in place of dp
            float dot = TensorPrimitives.Dot(p, ds);
            TensorPrimitives.Subtract(ds, dot, ds);
            TensorPrimitives.Multiply(ds, p, ds);
            // s_j = q_i·k_j·scale
            for (int j = 0; j <= i; j++)
            {
                float c = ds[j] * scale;
                TensorPrimitives.MultiplyAdd(k.Slice(j * stride, dh), c, dqi, dqi);
                var dkj = dk.Slice(j * stride, dh);
                TensorPrimitives.MultiplyAdd(qi, c, dkj, dkj);
            }
        }
        DebugViews.OutStrided(ref views, "dq", dq, T, stride, dh);
        DebugViews.OutStrided(ref views, "dk", dk, T, stride, dh);
        DebugViews.OutStrided(ref views, "dv", dv, T, stride, dh);
    }
}

/// <summary>The hook points inside one attention layer (blocks.{l}.attn.hook_*).</summary>
public enum AttentionPoint { Q, K, V, Scores, Pattern, Z, Result }

/// <summary>
/// What the attention layer asks of the model's hook points of one layer: whether a hook sits at a point,
/// to fire it (on the layer's activation there, or on its gradient in backward), and the buffers of the
/// tensors that exist only when a hook asks for them (hook_result, and the d_pattern/d_scores of a
/// backward that stops between stages).
/// </summary>
public interface IAttentionHooks
{
    bool HasForward(AttentionPoint point);
    bool HasBackward(AttentionPoint point);
    /// <summary>Runs the forward hooks at point, if any, on the activation there.</summary>
    void Forward(AttentionPoint point);
    /// <summary>Runs the backward hooks at point, if any, on the gradient there.</summary>
    void Backward(AttentionPoint point);
    /// <summary>hook_result [B·T, H, D] of this layer, or (gradient) the buffer its gradient is formed in.</summary>
    Span<float> ResultBuffer(bool gradient);
    /// <summary>[B·T, D] scratch for the result's change.</summary>
    Span<float> ResultScratch();
    /// <summary>d loss / d pattern (point Pattern) or d loss / d scores (point Scores), [B, H, T, T].</summary>
    Span<float> StageGradient(AttentionPoint point);
    /// <summary>Where forward keeps the softmax's output [B, H, T, T] before a hook on the pattern may replace it.</summary>
    Span<float> KeepPattern();
    /// <summary>What <see cref="KeepPattern"/> kept in the pass being differentiated, or empty if the pattern had no forward hook there.</summary>
    ReadOnlySpan<float> KeptPattern();
}
