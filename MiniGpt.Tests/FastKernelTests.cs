using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Each fast kernel (Kernels.Fast) against the readable reference beside it (Kernels.Reference), at shapes that exercise the
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
        public float[] Q = [], K = [], V = [], S = [], P = [], Max = [], Sum = [], Z = [], Out = [], DQ = [], DK = [], DV = [], DZ = [], DX = [], DXv = [], GW = [], GB = [], DP = [], DS = [];
    }

    /// <summary>How attention runs: fused (the materialised path), staged, or tiled (no [B, H, T, T] pattern: S and P stay 0).</summary>
    public enum AttnPath { Fused, Staged, Tiled }

    // staged: each stage of the heads over every head in turn, with d_pattern and d_scores materialised between them,
    // as the model runs attention when hooks sit on hook_attn_scores or hook_pattern
    private static AttnCase RunAttention(IKernels kn, int B, int T, int D, int H, int dh, bool staged) =>
        RunAttention(kn, B, T, D, H, dh, staged ? AttnPath.Staged : AttnPath.Fused);

    private static AttnCase RunAttention(IKernels kn, int B, int T, int D, int H, int dh, AttnPath path, float qkScale = 0.3f)
    {
        bool staged = path == AttnPath.Staged, tiled = path == AttnPath.Tiled;
        int N = B * T, HD = H * dh;
        var x = Random(N * D, 1); var xv = Random(N * D, 2);
        var wq = Random(H * D * dh, 3, qkScale); var wk = Random(H * D * dh, 4, qkScale); var wv = Random(H * D * dh, 5, 0.3f); var wo = Random(HD * D, 6, 0.3f);
        var bq = Random(HD, 7); var bk = Random(HD, 8); var bv = Random(HD, 9); var bo = Random(D, 10);
        var c = new AttnCase
        {
            Q = new float[N * HD], K = new float[N * HD], V = new float[N * HD], S = new float[B * H * T * T], P = new float[B * H * T * T],
            Max = new float[B * H * T], Sum = new float[B * H * T], Z = new float[N * HD], Out = new float[N * D], DQ = new float[N * HD], DK = new float[N * HD], DV = new float[N * HD], DZ = new float[N * HD],
            DX = new float[N * D], DXv = new float[N * D], GW = new float[4 * H * D * dh], GB = new float[3 * HD + D],
            DP = staged ? new float[B * H * T * T] : [], DS = staged ? new float[B * H * T * T] : [],
        };
        int w = H * D * dh;
        var weights = new Attention.Weights(wq, wk, wv, wo, bq, bk, bv, bo);
        var grads = new Attention.Grads(c.GW.AsSpan(0, w), c.GW.AsSpan(w, w), c.GW.AsSpan(2 * w, w), c.GW.AsSpan(3 * w, w),
            c.GB.AsSpan(0, HD), c.GB.AsSpan(HD, HD), c.GB.AsSpan(2 * HD, HD), c.GB.AsSpan(3 * HD, D));
        var dOut = Random(N * D, 11);
        if (staged)
        {
            kn.ProjectQkv(x, xv, weights, c.Q, c.K, c.V, B, T, D, H, dh);
            foreach (var stage in new[] { HeadStages.Scores, HeadStages.Pattern, HeadStages.Mix })
                kn.Heads(c.Q, c.K, c.V, c.S, c.P, c.Z, B, T, H, dh, stage);
            Linear.Forward(kn, c.Z, wo, bo, c.Out, N, HD, D);
            Linear.Backward(kn, c.Z, wo, dOut, c.DZ, grads.WO, grads.BO, N, HD, D, accumulateDx: false);
            foreach (var stage in new[] { HeadStages.Mix, HeadStages.Pattern, HeadStages.Scores })
                kn.HeadsBackward(c.Q, c.K, c.V, c.P, c.DZ, c.DQ, c.DK, c.DV, c.DP, c.DS, B, T, H, dh, stage);
            kn.ProjectQkvBackward(x, xv, weights, grads, c.DQ, c.DK, c.DV, c.DX, c.DXv, N, D, H, dh);
        }
        else
        {
            Attention.Forward(kn, x, xv, weights, c.Q, c.K, c.V, tiled ? default : c.S, tiled ? default : c.P, c.Max, c.Sum, c.Z, c.Out, B, T, D, H, dh);
            Attention.Backward(kn, x, xv, weights, grads, c.Q, c.K, c.V, tiled ? default : c.P, c.Max, c.Sum, c.Z, dOut,
                c.DQ, c.DK, c.DV, c.DZ, c.DX, c.DXv, B, T, D, H, dh);
        }
        return c;
    }

    private static float[] Results(AttnCase c) => [.. c.Q, .. c.K, .. c.V, .. c.Z, .. c.Out, .. c.DZ, .. c.DQ, .. c.DK, .. c.DV, .. c.DX, .. c.DXv, .. c.GW, .. c.GB];

    /// <summary>
    /// The tiled path (no [B, H, T, T] scores or pattern; backward recomputes the pattern from q, k and each row's softmax max
    /// and sum) gives the materialised path's bits, on each kernel set: z, the output and every gradient. The shapes cover one
    /// token, T not a multiple of the 6-row blocks, a last key block whose panel is under 16 floats (T = 37), rows past the
    /// 16 short ones (T = 70), d_head not a multiple of the vector width, one head and several, and sharp softmaxes (large q·k).
    /// </summary>
    [Theory]
    [InlineData(2, 64, 128, 4, 32, 0.3f)]
    [InlineData(2, 37, 64, 4, 16, 0.3f)]
    [InlineData(1, 13, 48, 2, 24, 0.3f)]
    [InlineData(3, 1, 32, 2, 16, 0.3f)]
    [InlineData(1, 70, 64, 1, 64, 0.3f)]
    [InlineData(2, 70, 40, 2, 20, 1.5f)]
    [InlineData(1, 17, 96, 3, 32, 2f)]
    [InlineData(1, 5, 16, 2, 8, 1f)]
    public void TiledAttentionIsBitwiseTheMaterialisedPass(int B, int T, int D, int H, int dh, float qkScale)
    {
        foreach (var kn in new[] { Kernels.Fast, Kernels.Reference })
        {
            var materialised = Results(RunAttention(kn, B, T, D, H, dh, AttnPath.Fused, qkScale));
            var tiled = Results(RunAttention(kn, B, T, D, H, dh, AttnPath.Tiled, qkScale));
            int first = materialised.AsSpan().CommonPrefixLength(tiled);
            Assert.True(first == materialised.Length, $"{kn.Name}: the tiled pass differs from the materialised one at {first}: {(first < tiled.Length ? $"{tiled[first]:R} vs {materialised[first]:R}" : "")}");
        }
    }

    /// <summary>The fast tiled kernels against the reference tiled kernels (the scalar loops that hold one row of scores at a time).</summary>
    [Theory]
    [InlineData(2, 64, 128, 4, 32)]
    [InlineData(2, 37, 64, 4, 16)]
    [InlineData(1, 13, 48, 2, 24)]
    [InlineData(3, 1, 32, 2, 16)]
    [InlineData(1, 70, 64, 1, 64)]
    public void TiledAttentionMatchesReference(int B, int T, int D, int H, int dh)
    {
        var r = RunAttention(Kernels.Reference, B, T, D, H, dh, AttnPath.Tiled);
        var f = RunAttention(Kernels.Fast, B, T, D, H, dh, AttnPath.Tiled);
        const float tol = 2e-5f;
        Close(r.Z, f.Z, tol, "z"); Close(r.Out, f.Out, tol, "out"); Close(r.Max, f.Max, tol, "softmax max"); Close(r.Sum, f.Sum, tol, "softmax sum");
        Close(r.DQ, f.DQ, tol, "dq"); Close(r.DK, f.DK, tol, "dk"); Close(r.DV, f.DV, tol, "dv");
        Close(r.DX, f.DX, 1e-4f, "dx_qk"); Close(r.DXv, f.DXv, 1e-4f, "dx_v"); Close(r.GW, f.GW, 1e-4f, "dW"); Close(r.GB, f.GB, 1e-4f, "db");
        Assert.All(f.S.Concat(f.P), x => Assert.Equal(0f, x)); // nothing [B, H, T, T] was written
    }

    /// <summary>Without a pattern buffer, a hook between the stages cannot fire, and the row statistics must be given.</summary>
    [Fact]
    public void TiledAttentionRefusesWhatItCannotDo()
    {
        int B = 1, T = 5, D = 8, H = 2, dh = 4, N = B * T * H * dh;
        var x = new float[B * T * D]; var w = new float[H * D * dh]; var b = new float[H * dh];
        var stats = new float[B * H * T];
        foreach (var kn in new[] { Kernels.Fast, Kernels.Reference })
        {
            Assert.Throws<ArgumentException>(() => Attention.Forward(kn, x, x, new Attention.Weights(w, w, w, w, b, b, b, new float[D]),
                new float[N], new float[N], new float[N], default, default, new float[B * H * T - 1], stats, new float[N], new float[B * T * D], B, T, D, H, dh));
            Assert.Throws<ArgumentException>(() => Attention.Forward(kn, x, x, new Attention.Weights(w, w, w, w, b, b, b, new float[D]),
                new float[N], new float[N], new float[N], default, default, stats, stats, new float[N], new float[B * T * D], B, T, D, H, dh, new ScoresHook()));
        }
    }

    // an IAttentionHooks with a forward hook on hook_attn_scores and nothing else
    private sealed class ScoresHook : IAttentionHooks
    {
        public bool HasForward(AttentionPoint point) => point == AttentionPoint.Scores;
        public bool HasBackward(AttentionPoint point) => false;
        public void Forward(AttentionPoint point) { }
        public void Backward(AttentionPoint point) { }
        public Span<float> ResultBuffer(bool gradient) => default;
        public Span<float> ResultScratch() => default;
        public Span<float> StageGradient(AttentionPoint point) => default;
        public Span<float> KeepPattern() => default;
        public ReadOnlySpan<float> KeptPattern() => default;
    }

    [Theory]
    [InlineData(2, 64, 128, 4, 32, false)]
    [InlineData(2, 37, 64, 4, 16, false)]
    [InlineData(1, 13, 48, 2, 24, true)]
    [InlineData(3, 1, 32, 2, 16, false)]
    [InlineData(1, 70, 64, 1, 64, true)]
    public void AttentionMatchesReference(int B, int T, int D, int H, int dh, bool staged)
    {
        var r = RunAttention(Kernels.Reference, B, T, D, H, dh, staged);
        var f = RunAttention(Kernels.Fast, B, T, D, H, dh, staged);
        const float tol = 2e-5f;
        Close(r.Q, f.Q, tol, "q"); Close(r.K, f.K, tol, "k"); Close(r.V, f.V, tol, "v");
        Close(r.S, f.S, tol, "scores"); Close(r.P, f.P, tol, "pattern"); Close(r.Z, f.Z, tol, "z"); Close(r.Out, f.Out, tol, "out");
        Close(r.DZ, f.DZ, tol, "dz"); Close(r.DQ, f.DQ, tol, "dq"); Close(r.DK, f.DK, tol, "dk"); Close(r.DV, f.DV, tol, "dv");
        Close(r.DX, f.DX, 1e-4f, "dx_qk"); Close(r.DXv, f.DXv, 1e-4f, "dx_v"); Close(r.GW, f.GW, 1e-4f, "dW"); Close(r.GB, f.GB, 1e-4f, "db");
        if (staged) { Close(r.DP, f.DP, tol, "dpattern"); Close(r.DS, f.DS, tol, "dscores"); }
    }

    /// <summary>
    /// Stage by stage (as when hooks sit between the stages) each kernel set gives the same bits as in one fused pass,
    /// so a hook that only reads changes nothing. (AttentionMatchesReference compares the d_pattern and d_scores the
    /// staged pass materialises between the two sets.)
    /// </summary>
    [Theory]
    [InlineData(2, 37, 64, 4, 16)]
    [InlineData(1, 13, 48, 2, 24)]
    public void StagedAttentionIsBitwiseTheFusedPass(int B, int T, int D, int H, int dh)
    {
        foreach (var kn in new[] { Kernels.Fast, Kernels.Reference })
        {
            var fused = RunAttention(kn, B, T, D, H, dh, staged: false);
            var staged = RunAttention(kn, B, T, D, H, dh, staged: true);
            float[] All(AttnCase c) => [.. c.Q, .. c.K, .. c.V, .. c.S, .. c.P, .. c.Z, .. c.Out, .. c.DZ, .. c.DQ, .. c.DK, .. c.DV, .. c.DX, .. c.DXv, .. c.GW, .. c.GB];
            Assert.True(All(fused).AsSpan().SequenceEqual(All(staged)), $"{kn.Name}: the staged pass differs from the fused one");
        }
    }

    /// <summary>A backward that stops between stages, or starts at one, must be given the buffer the gradient crosses in.</summary>
    [Fact]
    public void StagedBackwardRefusesAMissingHandOverBuffer()
    {
        int B = 1, T = 5, H = 2, dh = 4, N = B * T * H * dh, TT = B * H * T * T;
        var a = new float[N]; var p = new float[TT]; var full = new float[TT];
        foreach (var kn in new[] { Kernels.Fast, Kernels.Reference })
        {
            Assert.Throws<ArgumentException>(() => kn.HeadsBackward(a, a, a, p, a, new float[N], new float[N], new float[N], full, default, B, T, H, dh, HeadStages.Mix | HeadStages.Pattern));
            Assert.Throws<ArgumentException>(() => kn.HeadsBackward(a, a, a, p, a, new float[N], new float[N], new float[N], default, full, B, T, H, dh, HeadStages.Mix));
            kn.HeadsBackward(a, a, a, p, a, new float[N], new float[N], new float[N], full, default, B, T, H, dh, HeadStages.Mix);
            kn.HeadsBackward(a, a, a, p, a, new float[N], new float[N], new float[N], default, default, B, T, H, dh, HeadStages.All);
        }
    }

    [Theory]
    [InlineData(AttnPath.Fused)]
    [InlineData(AttnPath.Tiled)]
    public void AttentionIsBitwiseIdenticalForAnyThreadCount(AttnPath path)
    {
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            WorkerPool.UseOnThisThread(pool);
            try
            {
                var c = RunAttention(Kernels.Fast, 3, 29, 64, 4, 16, path);
                var all = c.Z.Concat(c.DQ).Concat(c.DK).Concat(c.DV).Concat(c.DX).Concat(c.GW).ToArray();
                if (first == null) first = all;
                else Assert.Equal(first, all);
            }
            finally { WorkerPool.UseOnThisThread(null); }
        }
    }

    /// <summary>
    /// Kernels are a property of a model, not of the process: two models over the same weights, one on each set, side by
    /// side in one process, give the same loss and gradients (to rounding), and each keeps its own set.
    /// </summary>
    [Theory]
    [InlineData(false, "LN", "standard")]
    [InlineData(true, null, "shortformer")]
    public void AModelRunsTheKernelsItWasMadeWith(bool attnOnly, string? norm, string pos)
    {
        var cfg = new ModelConfig { NLayers = 2, DModel = 32, NHeads = 2, DHead = 16, DMlp = 48, NCtx = 19, DVocab = 23, AttnOnly = attnOnly,
            NormalizationType = norm, PositionalEmbeddingType = pos };
        var fast = GptModel.Create(cfg, 5, Kernels.Fast);
        var reference = GptModel.Create(cfg, 5, Kernels.Reference);
        Assert.Same(Kernels.Fast, fast.Kernels);
        Assert.Same(Kernels.Reference, reference.Kernels);
        var r = new Random(3);
        int B = 3, T = 19;
        var x = Enumerable.Range(0, B * T).Select(_ => r.Next(23)).ToArray();
        var y = Enumerable.Range(0, B * T).Select(_ => r.Next(23)).ToArray();
        float[] Run(GptModel m)
        {
            float loss = m.Forward(x, y, B, T);
            m.ZeroGrad();
            m.Backward(1f / (B * T));
            return [loss, .. m.Grads.Buffer];
        }
        var f = Run(fast);
        var g = Run(reference);
        Close(g, f, 1e-4f, "loss, then gradients");
        Assert.Throws<UserError>(() => Kernels.Named("turbo"));
        Assert.Same(Kernels.Reference, Kernels.Named("scalar"));
        Assert.Same(Kernels.Fast, Kernels.Named(null));
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
        Kernels.Reference.GeluForward(x, yr);
        Kernels.Reference.GeluBackward(x, dy, dxr, t, accumulate: true);
        Kernels.Fast.GeluForward(x, yf);
        Kernels.Fast.GeluBackward(x, dy, dxf, t, accumulate: true);
        Close(yr, yf, 2e-6f, "gelu");
        Close(dxr, dxf, 1e-5f, "gelu'"); // both lose ~1 ulp of the O(1) terms to cancellation (1 − t², 1 − s) at large |x|
    }

    [Fact]
    public void AdamWIsBitwiseTheReference()
    {
        var cfg = new ModelConfig { NLayers = 1, DModel = 32, NHeads = 2, DHead = 16, DMlp = 64, NCtx = 8, DVocab = 11 };
        float[] Train(IKernels kernels)
        {
            var model = GptModel.Create(cfg, 7, kernels);
            var opt = new Optimizer(model, "adamw", 0.9f, 0.99f, 1e-8f, 0.1f);
            var g = Random(model.Grads.Buffer.Length, 9);
            for (int s = 0; s < 3; s++) { g.CopyTo(model.Grads.Buffer, 0); opt.Update(1e-2f); }
            return model.Params.Buffer.Concat(opt.M.Buffer).Concat(opt.V.Buffer).ToArray();
        }
        Assert.Equal(Train(Kernels.Reference), Train(Kernels.Fast));
    }

    [Theory]
    [InlineData("adamw")]
    [InlineData("sgd")]
    public void ClippingInTheOptimizerEqualsClippingTheGradientsFirst(string kind)
    {
        // the trainer hands clipping's factor to the optimizer instead of scaling the gradients in a pass of their own
        var cfg = new ModelConfig { NLayers = 1, DModel = 32, NHeads = 2, DHead = 16, DMlp = 64, NCtx = 8, DVocab = 11 };
        var g = Random(ParameterLayout.Declare(cfg).Build().Buffer.Length, 9, 3);
        foreach (var kernels in new[] { Kernels.Reference, Kernels.Fast })
        {
            float[] Train(bool fused)
            {
                var model = GptModel.Create(cfg, 7, kernels);
                var opt = new Optimizer(model, kind, 0.9f, 0.99f, 1e-8f, 0.1f);
                for (int s = 0; s < 3; s++)
                {
                    g.CopyTo(model.Grads.Buffer, 0);
                    float norm = GradClip.GlobalNorm(model.Grads.Buffer);
                    Assert.True(GradClip.ScaleFor(norm, 1f) < 1f, "the test's gradients must be clipped");
                    if (fused) opt.Update(1e-2f, GradClip.ScaleFor(norm, 1f));
                    else
                    {
                        GradClip.ClipGlobalNorm(model.Grads.Buffer, 1f);
                        opt.Update(1e-2f);
                    }
                }
                return model.Params.Buffer.Concat(opt.M.Buffer).Concat(opt.V.Buffer).ToArray();
            }
            Assert.Equal(Train(fused: false), Train(fused: true));
        }
    }
}
