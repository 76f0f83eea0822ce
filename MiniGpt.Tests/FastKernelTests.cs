using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Each fast kernel (Kernels.Fast) against the readable reference beside it, at shapes that exercise the
/// edges: d_head not a multiple of the vector width, n_ctx not a multiple of the 6-row blocks, one token.
/// </summary>
public class FastKernelTests
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void Close(float[] expected, float[] actual, float tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (float.IsNegativeInfinity(e)) { Assert.True(float.IsNegativeInfinity(a), $"{what}[{i}]: {a} should be -inf"); continue; }
            Assert.True(Math.Abs(e - a) <= tol * (1 + Math.Abs(e)), $"{what}[{i}]: fast {a} vs reference {e}");
        }
    }

    private sealed class AttnCase
    {
        public float[] Q = [], K = [], V = [], S = [], P = [], Z = [], Out = [], DQ = [], DK = [], DV = [], DZ = [], DX = [], DXv = [], GW = [], GB = [], DP = [], DS = [];
    }

    private static AttnCase RunAttention(bool fast, int B, int T, int D, int H, int dh, bool hooks)
    {
        int N = B * T, HD = H * dh;
        var x = Random(N * D, 1); var xv = Random(N * D, 2);
        var wq = Random(H * D * dh, 3, 0.3f); var wk = Random(H * D * dh, 4, 0.3f); var wv = Random(H * D * dh, 5, 0.3f); var wo = Random(HD * D, 6, 0.3f);
        var bq = Random(HD, 7); var bk = Random(HD, 8); var bv = Random(HD, 9); var bo = Random(D, 10);
        var c = new AttnCase
        {
            Q = new float[N * HD], K = new float[N * HD], V = new float[N * HD], S = new float[B * H * T * T], P = new float[B * H * T * T],
            Z = new float[N * HD], Out = new float[N * D], DQ = new float[N * HD], DK = new float[N * HD], DV = new float[N * HD], DZ = new float[N * HD],
            DX = new float[N * D], DXv = new float[N * D], GW = new float[4 * H * D * dh], GB = new float[3 * HD + D],
            DP = hooks ? new float[B * H * T * T] : [], DS = hooks ? new float[B * H * T * T] : [],
        };
        int w = H * D * dh;
        var weights = new Attention.Weights(wq, wk, wv, wo, bq, bk, bv, bo);
        var grads = new Attention.Grads(c.GW.AsSpan(0, w), c.GW.AsSpan(w, w), c.GW.AsSpan(2 * w, w), c.GW.AsSpan(3 * w, w),
            c.GB.AsSpan(0, HD), c.GB.AsSpan(HD, HD), c.GB.AsSpan(2 * HD, HD), c.GB.AsSpan(3 * HD, D));
        Kernels.UseFastOnThisThread(fast);
        try
        {
            if (hooks) // the staged path the hooked model runs
            {
                Attention.ProjectQkv(x, xv, weights, c.Q, c.K, c.V, B, T, D, H, dh);
                Attention.Scores(c.Q, c.K, c.S, B, T, H, dh);
                Attention.Pattern(c.S, c.P, B, T, H);
                Attention.Mix(c.P, c.V, c.Z, B, T, H, dh);
                Linear.Forward(c.Z, wo, bo, c.Out, N, HD, D);
            }
            else Attention.Forward(x, xv, weights, c.Q, c.K, c.V, c.S, c.P, c.Z, c.Out, B, T, D, H, dh);
            var dOut = Random(N * D, 11);
            Attention.Backward(x, xv, weights, grads, c.Q, c.K, c.V, c.P, c.Z, dOut, c.DQ, c.DK, c.DV, c.DZ, c.DX, c.DXv, B, T, D, H, dh,
                hooks ? c.DP : default, hooks ? c.DS : default);
        }
        finally { Kernels.UseFastOnThisThread(null); }
        return c;
    }

    [Theory]
    [InlineData(2, 64, 128, 4, 32, false)]
    [InlineData(2, 37, 64, 4, 16, false)]
    [InlineData(1, 13, 48, 2, 24, true)]
    [InlineData(3, 1, 32, 2, 16, false)]
    [InlineData(1, 70, 64, 1, 64, true)]
    public void AttentionMatchesReference(int B, int T, int D, int H, int dh, bool hooks)
    {
        var r = RunAttention(false, B, T, D, H, dh, hooks);
        var f = RunAttention(true, B, T, D, H, dh, hooks);
        const float tol = 2e-5f;
        Close(r.Q, f.Q, tol, "q"); Close(r.K, f.K, tol, "k"); Close(r.V, f.V, tol, "v");
        Close(r.S, f.S, tol, "scores"); Close(r.P, f.P, tol, "pattern"); Close(r.Z, f.Z, tol, "z"); Close(r.Out, f.Out, tol, "out");
        Close(r.DZ, f.DZ, tol, "dz"); Close(r.DQ, f.DQ, tol, "dq"); Close(r.DK, f.DK, tol, "dk"); Close(r.DV, f.DV, tol, "dv");
        Close(r.DX, f.DX, 1e-4f, "dx_qk"); Close(r.DXv, f.DXv, 1e-4f, "dx_v"); Close(r.GW, f.GW, 1e-4f, "dW"); Close(r.GB, f.GB, 1e-4f, "db");
        if (hooks) { Close(r.DP, f.DP, tol, "dpattern"); Close(r.DS, f.DS, tol, "dscores"); }
    }

    [Fact]
    public void AttentionIsBitwiseIdenticalForAnyThreadCount()
    {
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            WorkerPool.UseOnThisThread(pool);
            try
            {
                var c = RunAttention(true, 3, 29, 64, 4, 16, hooks: false);
                var all = c.Z.Concat(c.DQ).Concat(c.DK).Concat(c.DV).Concat(c.DX).Concat(c.GW).ToArray();
                if (first == null) first = all;
                else Assert.Equal(first, all);
            }
            finally { WorkerPool.UseOnThisThread(null); }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    [InlineData(70_001)] // several parallel chunks and a scalar tail
    public void GeluMatchesReference(int n)
    {
        var x = Random(n, 5, 6);
        var dy = Random(n, 6);
        var yr = new float[n]; var yf = new float[n];
        var dxr = Random(n, 7); var dxf = (float[])dxr.Clone(); var t = new float[n];
        Gelu.ForwardReference(x, yr);
        Gelu.BackwardReference(x, dy, dxr, t, accumulate: true);
        Kernels.UseFastOnThisThread(true);
        try
        {
            Gelu.Forward(x, yf);
            Gelu.Backward(x, dy, dxf, t, accumulate: true);
        }
        finally { Kernels.UseFastOnThisThread(null); }
        Close(yr, yf, 2e-6f, "gelu");
        Close(dxr, dxf, 1e-5f, "gelu'"); // both lose ~1 ulp of the O(1) terms to cancellation (1 − t², 1 − s) at large |x|
    }

    [Fact]
    public void AdamWIsBitwiseTheReference()
    {
        var cfg = new ModelConfig { NLayers = 1, DModel = 32, NHeads = 2, DHead = 16, DMlp = 64, NCtx = 8, DVocab = 11 };
        float[] Train(bool fast)
        {
            var model = GptModel.Create(cfg, 7);
            var opt = new Optimizer(model, "adamw", 0.9f, 0.99f, 1e-8f, 0.1f);
            var g = Random(model.Grads.Buffer.Length, 9);
            Kernels.UseFastOnThisThread(fast);
            try
            {
                for (int s = 0; s < 3; s++) { g.CopyTo(model.Grads.Buffer, 0); opt.Update(1e-2f); }
            }
            finally { Kernels.UseFastOnThisThread(null); }
            return model.Params.Buffer.Concat(opt.M.Buffer).Concat(opt.V.Buffer).ToArray();
        }
        Assert.Equal(Train(false), Train(true));
    }
}
