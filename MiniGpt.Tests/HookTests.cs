using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

public class HookTests
{
    private static void Near(double expected, double actual, double tol = 1e-5) =>
        Assert.True(Math.Abs(expected - actual) <= tol * (1 + Math.Abs(expected)), $"expected {expected:G9}, got {actual:G9}");

    private static GptModel Model(bool attnOnly = false, string? norm = "LN", string pos = "standard")
    {
        var m = GptModel.Create(new ModelConfig
        {
            NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 24, NCtx = 7, DVocab = 11, AttnOnly = attnOnly,
            NormalizationType = norm, PositionalEmbeddingType = pos, InitRange = 0.4,
        }, seed: 3);
        var rng = new Rng(8);
        foreach (var t in m.Params.Tensors)
            if (!t.Name.Contains(".W_")) for (int i = 0; i < t.Length; i++) t[i] += (float)(0.1 * rng.NextNormal());
        return m;
    }

    /// <summary>The mean loss of one forward pass with a forward hook at name, summed in double.</summary>
    private static double MeanLossWith(GptModel m, string name, HookFn hook, int[] x, int[] y, int B, int T)
    {
        using var h = m.Hooks.AddForward(name, hook);
        m.Forward(x, y, B, T);
        double sum = 0;
        foreach (float l in m.Losses) sum += l;
        return sum / (B * T);
    }

    private static (int[] X, int[] Y) Tokens(int B, int T, int seed)
    {
        var rng = new Rng((ulong)seed);
        var x = new int[B * T]; var y = new int[B * T];
        for (int i = 0; i < x.Length; i++) { x[i] = rng.NextInt(11); y[i] = rng.NextInt(11); }
        return (x, y);
    }

    [Fact]
    public void HooksThatOnlyReadChangeNothing()
    {
        var m = Model();
        var (x, y) = Tokens(2, 7, 1);
        float plain = m.Forward(x, y, 2, 7);
        var logits = m.Logits.ToArray();
        int seen = 0;
        using (m.Hooks.AddForward("blocks.1.attn.hook_result", (_, _) => seen++))
        using (m.Hooks.AddForward("blocks.0.attn.hook_pattern", (_, _) => seen++))
        {
            Assert.Equal(plain, m.Forward(x, y, 2, 7));
            Assert.Equal(2, seen);
            Assert.True(logits.AsSpan().SequenceEqual(m.Logits), "reading hooks changed the logits");
        }
        Assert.True(m.Hooks.IsEmpty);
        Assert.Equal(plain, m.Forward(x, y, 2, 7));
        Assert.True(logits.AsSpan().SequenceEqual(m.Logits));
    }

    [Fact]
    public void RunWithCacheHasEveryHookWithTransformerLensShapes()
    {
        var m = Model();
        var (x, _) = Tokens(3, 5, 2);
        var cache = m.RunWithCache(x, 3, 5);
        Assert.Equal(m.HookNames.OrderBy(n => n), cache.Names.OrderBy(n => n));
        Assert.Equal(new[] { 3, 5, 2, 8 }, cache["blocks.0.attn.hook_q"].Shape);
        Assert.Equal(new[] { 3, 2, 5, 5 }, cache["blocks.1.attn.hook_pattern"].Shape);
        Assert.Equal(new[] { 3, 5, 2, 16 }, cache["blocks.1.attn.hook_result"].Shape);
        Assert.Equal(new[] { 3, 5, 24 }, cache["blocks.0.mlp.hook_post"].Shape);
        Assert.Equal(new[] { 3, 5, 11 }, cache["logits"].Shape);
        // the result of each head sums (with b_O) to hook_attn_out, and resid_mid = resid_pre + attn_out
        var result = cache["blocks.1.attn.hook_result"].Span; var attnOut = cache["blocks.1.hook_attn_out"].Span;
        var bO = m.Params["blocks.1.attn.b_O"].Span;
        for (int n = 0; n < 15; n++)
            for (int d = 0; d < 16; d++)
                Near(attnOut[n * 16 + d], result[(n * 2) * 16 + d] + result[(n * 2 + 1) * 16 + d] + bO[d]);
        var mid = cache["blocks.1.hook_resid_mid"].Span; var pre = cache["blocks.1.hook_resid_pre"].Span;
        for (int i = 0; i < mid.Length; i++) Near(mid[i], pre[i] + attnOut[i]);
        var filtered = m.RunWithCache(x, 3, 5, n => n.EndsWith("hook_pattern"));
        Assert.Equal(2, filtered.Names.Count);
    }

    [Fact]
    public void AblatingAHeadsResultChangesAttnOutByExactlyThatHead()
    {
        var m = Model(attnOnly: true);
        var (x, _) = Tokens(2, 7, 12);
        var clean = m.RunWithCache(x, 2, 7);
        using var h = m.Hooks.AddForward("blocks.0.attn.hook_result", (r, _) => { for (int n = 0; n < 14; n++) r.Span.Slice((n * 2 + 1) * 16, 16).Clear(); });
        var ablated = m.RunWithCache(x, 2, 7, n => n == "blocks.0.hook_attn_out");
        var res = clean["blocks.0.attn.hook_result"].Span;
        for (int n = 0; n < 14; n++)
            for (int d = 0; d < 16; d++)
                Near(clean["blocks.0.hook_attn_out"].Span[n * 16 + d] - res[(n * 2 + 1) * 16 + d], ablated["blocks.0.hook_attn_out"].Span[n * 16 + d]);
    }

    [Fact]
    public void ZeroAblatingAHeadsZEqualsZeroingItsOutputWeights()
    {
        var m = Model();
        var (x, y) = Tokens(2, 7, 3);
        float ablated;
        using (m.Hooks.AddForward("blocks.1.attn.hook_z", (z, _) =>
        {
            var s = z.Span; // [B, T, H, dh]: zero head 0
            for (int n = 0; n < 14; n++) s.Slice(n * 16, 8).Clear();
        }))
            ablated = m.Forward(x, y, 2, 7);
        var viaHook = m.Logits.ToArray();
        m.Params["blocks.1.attn.W_O"].Span[..(8 * 16)].Clear(); // W_O[0] = 0
        Near(ablated, m.Forward(x, y, 2, 7));
        for (int i = 0; i < viaHook.Length; i++) Near(m.Logits[i], viaHook[i]);
    }

    [Fact]
    public void PatchingTheResidualStreamFromACleanRunRestoresItsLogits()
    {
        var m = Model();
        var (clean, _) = Tokens(1, 7, 4);
        var (corrupt, _) = Tokens(1, 7, 5);
        var cache = m.RunWithCache(clean, 1, 7);
        using (m.Hooks.AddForward("blocks.1.hook_resid_pre", (t, _) => cache["blocks.1.hook_resid_pre"].Span.CopyTo(t.Span)))
            m.Forward(corrupt, default, 1, 7);
        Assert.True(cache["logits"].Span.SequenceEqual(m.Logits), "patched logits differ from the clean run");
        m.Forward(corrupt, default, 1, 7);
        Assert.False(cache["logits"].Span.SequenceEqual(m.Logits));
    }

    [Fact]
    public void MeanAblationReplacesAnActivationByItsMeanOverBatchAndPosition()
    {
        var m = Model();
        var (x, y) = Tokens(4, 7, 6);
        var cache = m.RunWithCache(x, 4, 7, n => n == "blocks.0.hook_mlp_out");
        var mean = new float[16];
        var mo = cache["blocks.0.hook_mlp_out"].Span;
        for (int n = 0; n < 28; n++) for (int d = 0; d < 16; d++) mean[d] += mo[n * 16 + d] / 28;
        using var h = m.Hooks.AddForward("blocks.0.hook_mlp_out", (t, _) => { for (int n = 0; n < 28; n++) mean.CopyTo(t.Span.Slice(n * 16, 16)); });
        var after = m.RunWithCache(x, 4, 7, n => n is "blocks.0.hook_resid_post" or "blocks.0.hook_resid_mid");
        var post = after["blocks.0.hook_resid_post"].Span; var mid = after["blocks.0.hook_resid_mid"].Span;
        for (int n = 0; n < 28; n++) for (int d = 0; d < 16; d++) Near(mid[n * 16 + d] + mean[d], post[n * 16 + d]);
    }

    public static TheoryData<string, string?, string> GradientPoints()
    {
        var d = new TheoryData<string, string?, string>();
        foreach (var name in new[] { "hook_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_normalized", "blocks.0.attn.hook_q",
                     "blocks.0.attn.hook_k", "blocks.1.attn.hook_v", "blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern",
                     "blocks.0.attn.hook_z", "blocks.1.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.1.ln2.hook_normalized",
                     "blocks.0.mlp.hook_pre", "blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post",
                     "ln_final.hook_normalized", "logits" })
            d.Add(name, "LN", "standard");
        d.Add("blocks.1.attn.hook_q", null, "shortformer");
        d.Add("blocks.0.hook_resid_post", null, "shortformer");
        return d;
    }

    /// <summary>
    /// The gradient a backward hook sees at a point equals the loss's directional derivative when the
    /// activation there is nudged by a forward hook: (L(a + εu) − L(a − εu)) / 2ε = Σ grad·u.
    /// </summary>
    [Theory]
    [MemberData(nameof(GradientPoints))]
    public void BackwardHooksSeeTheGradientAtTheirPoint(string name, string? norm, string pos)
    {
        var m = Model(norm: norm, pos: pos);
        const int B = 2, T = 6;
        var (x, y) = Tokens(B, T, 7);
        float[]? grad = null;
        using (m.Hooks.AddBackward(name, (g, _) => grad = g.Span.ToArray()))
        {
            m.Forward(x, y, B, T);
            m.ZeroGrad();
            m.Backward(1f / (B * T));
        }
        Assert.NotNull(grad);
        var rng = new Rng(11);
        var u = new float[grad!.Length];
        for (int i = 0; i < u.Length; i++) u[i] = (float)rng.NextNormal();
        if (name.EndsWith("hook_attn_scores") || name.EndsWith("hook_pattern"))
            for (int i = 0; i < u.Length; i++) if (i % T > i / T % T) u[i] = 0; // keep the causal mask
        double analytic = 0;
        for (int i = 0; i < u.Length; i++) analytic += grad[i] * (double)u[i];
        double Loss(float eps) => MeanLossWith(m, name, (t, _) => { var s = t.Span; for (int i = 0; i < s.Length; i++) s[i] += eps * u[i]; }, x, y, B, T);
        const float e = 1e-3f;
        double numeric = (Loss(e) - Loss(-e)) / (2 * e);
        Assert.True(Math.Abs(numeric - analytic) <= 2e-3 * Math.Max(1, Math.Abs(numeric)) + 5e-4,
            $"{name}: finite difference {numeric:G6} vs backward hook {analytic:G6}");
        Assert.True(Math.Abs(analytic) > 1e-5, $"{name}: the gradient is ~0, so the check proves nothing");
    }

    private static readonly (string Name, bool AttnOnly, string? Norm, string Pos)[] Variants =
        [("ln-mlp", false, "LN", "standard"), ("shortformer", false, "LN", "shortformer"), ("attn-only-no-ln", true, null, "standard")];

    /// <summary>Every hook point of every model variant, each with a backward hook scaling its gradient by 0 and by 2.</summary>
    public static TheoryData<string, string, float> ReplacementPoints()
    {
        var d = new TheoryData<string, string, float>();
        foreach (var v in Variants)
            foreach (var name in Model(v.AttnOnly, v.Norm, v.Pos).HookNames)
                foreach (float scale in new[] { 0f, 2f })
                    d.Add(v.Name, name, scale);
        return d;
    }

    /// <summary>
    /// A backward hook that replaces the gradient at a point by s times it makes every parameter's gradient
    /// what the chain rule gives when the activation's effect there is scaled by s: the gradient of
    /// L_s(θ) = L with a(θ) replaced by a(θ) + (s − 1)·(a(θ) − a(θ₀)) in forward, a(θ₀) held fixed, which at θ₀ is the
    /// same pass but sends s times the gradient through a. Checked against central differences of L_s along a random
    /// direction of all the parameters and along the change the replacement made to their gradient, where the
    /// unhooked gradient must be far outside the tolerance (so a hook whose replacement were ignored fails, at
    /// hook_pattern and hook_attn_scores too).
    /// </summary>
    [Theory]
    [MemberData(nameof(ReplacementPoints))]
    public void AReplacedGradientFlowsOnAsTheChainRuleSays(string variant, string name, float scale)
    {
        var v = Variants.Single(x => x.Name == variant);
        var m = Model(v.AttnOnly, v.Norm, v.Pos);
        const int B = 2, T = 6;
        var (x, y) = Tokens(B, T, 21);
        var a0 = m.RunWithCache(x, B, T, n => n == name)[name].Span.ToArray();

        double[] Gradient(float? s)
        {
            using var h = s is float f ? m.Hooks.AddBackward(name, (g, _) => System.Numerics.Tensors.TensorPrimitives.Multiply(g.Span, f, g.Span)) : null;
            m.Forward(x, y, B, T);
            m.ZeroGrad();
            m.Backward(1f / (B * T));
            return m.Grads.Buffer.Select(g => (double)g).ToArray();
        }
        var replaced = Gradient(scale);
        var plain = Gradient(null);

        // two directions: a random one, and the change the replacement made (along which an ignored or wrong replacement shows most)
        var rng = new Rng(31);
        var random = new double[replaced.Length];
        for (int i = 0; i < random.Length; i++) random[i] = rng.NextNormal();
        var change = replaced.Zip(plain, (r, p) => r - p).ToArray();
        double changeNorm = Math.Sqrt(change.Sum(c => c * c)), plainNorm = Math.Sqrt(plain.Sum(c => c * c));
        Assert.True(changeNorm > 1e-3 * plainNorm,
            $"{variant} {name} ×{scale}: the replaced gradient changed nothing upstream (|change| {changeNorm:G3}, |gradient| {plainNorm:G3})");

        var theta = m.Params.Buffer.ToArray();
        foreach (var dir in new[] { random, change })
        {
            double norm = Math.Sqrt(dir.Sum(c => c * c));
            var u = dir.Select(c => c / norm).ToArray();
            double LossAt(double eps)
            {
                for (int i = 0; i < theta.Length; i++) m.Params.Buffer[i] = (float)(theta[i] + eps * u[i]);
                return MeanLossWith(m, name, (t, _) =>
                {
                    var s = t.Span;
                    for (int i = 0; i < s.Length; i++)
                        if (float.IsFinite(s[i])) s[i] += (scale - 1) * (s[i] - a0[i]); // the masked scores (−∞) stay masked
                }, x, y, B, T);
            }
            const double e = 1e-3;
            double numeric = (LossAt(e) - LossAt(-e)) / (2 * e);
            theta.CopyTo(m.Params.Buffer, 0);
            double analytic = 0, unhooked = 0;
            for (int i = 0; i < u.Length; i++) { analytic += replaced[i] * u[i]; unhooked += plain[i] * u[i]; }
            double tol = 2e-3 * Math.Max(1, Math.Abs(numeric)) + 5e-4;
            Assert.True(Math.Abs(numeric - analytic) <= tol,
                $"{variant} {name} ×{scale}: finite difference {numeric:G6} vs gradient with the replaced gradient {analytic:G6} (unhooked {unhooked:G6})");
            if (dir == change)
                Assert.True(Math.Abs(numeric - unhooked) > 4 * tol,
                    $"{variant} {name} ×{scale}: along the change, the unhooked gradient ({unhooked:G6}) would pass too (finite difference {numeric:G6})");
        }
    }

    /// <summary>Every hook point of every model variant.</summary>
    public static TheoryData<string, string> AllPoints()
    {
        var d = new TheoryData<string, string>();
        foreach (var v in Variants)
            foreach (var name in Model(v.AttnOnly, v.Norm, v.Pos).HookNames) d.Add(v.Name, name);
        return d;
    }

    /// <summary>
    /// Backward through a forward hook's replacement: a hook a ← a + δ (δ fixed, causal at the attention points) has the
    /// identity as its Jacobian, so the gradient of the hooked loss is what Backward gives after the hooked forward pass,
    /// at a point where the replacement really differs from the activation (unlike the test above, whose forward hook is
    /// the identity at θ₀). At hook_pattern this needs the softmax differentiated at its own output, not at the
    /// replacement the pass went on with.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllPoints))]
    public void BackwardThroughAForwardReplacementFollowsTheChainRule(string variant, string name)
    {
        var v = Variants.Single(x => x.Name == variant);
        var m = Model(v.AttnOnly, v.Norm, v.Pos);
        const int B = 2, T = 6;
        var (x, y) = Tokens(B, T, 23);
        int len = m.RunWithCache(x, B, T, n => n == name)[name].Length;
        var rng = new Rng(29);
        var delta = new float[len];
        for (int i = 0; i < len; i++) delta[i] = (float)(0.05 * rng.NextNormal());
        if (name.EndsWith("hook_attn_scores") || name.EndsWith("hook_pattern"))
            for (int i = 0; i < len; i++) if (i % T > i / T % T) delta[i] = 0; // above the diagonal
        HookFn shift = (t, _) => { var s = t.Span; for (int i = 0; i < s.Length; i++) if (float.IsFinite(s[i])) s[i] += delta[i]; };

        double[] gradient;
        using (m.Hooks.AddForward(name, shift))
        {
            m.Forward(x, y, B, T);
            m.ZeroGrad();
            m.Backward(1f / (B * T));
            gradient = m.Grads.Buffer.Select(g => (double)g).ToArray();
        }
        var theta = m.Params.Buffer.ToArray();
        var random = new double[theta.Length];
        for (int i = 0; i < random.Length; i++) random[i] = rng.NextNormal();
        foreach (var dir in new[] { random, gradient })
        {
            double norm = Math.Sqrt(dir.Sum(c => c * c));
            var u = dir.Select(c => c / norm).ToArray();
            double LossAt(double eps)
            {
                for (int i = 0; i < theta.Length; i++) m.Params.Buffer[i] = (float)(theta[i] + eps * u[i]);
                return MeanLossWith(m, name, shift, x, y, B, T);
            }
            const double e = 1e-3;
            double numeric = (LossAt(e) - LossAt(-e)) / (2 * e);
            theta.CopyTo(m.Params.Buffer, 0);
            double analytic = 0;
            for (int i = 0; i < u.Length; i++) analytic += gradient[i] * u[i];
            Assert.True(Math.Abs(numeric - analytic) <= 2e-3 * Math.Max(1, Math.Abs(numeric)) + 5e-4,
                $"{variant} {name}: finite difference {numeric:G6} vs backward after the replacement {analytic:G6}");
        }
    }

    /// <summary>
    /// Hooks that only read (forward and backward, alone and together, at the points that make attention run stage by
    /// stage) leave the loss, the logits and every gradient bitwise as a pass without hooks, with either kernel set.
    /// </summary>
    [Theory]
    [InlineData("fast")]
    [InlineData("reference")]
    public void HooksThatOnlyReadChangeNoBitForwardOrBackward(string kernels)
    {
        var cfg = new ModelConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 24, NCtx = 7, DVocab = 11, InitRange = 0.4 };
        var m = GptModel.Create(cfg, 3, Kernels.Named(kernels));
        var (x, y) = Tokens(2, 7, 19);
        float[] Pass()
        {
            float loss = m.Forward(x, y, 2, 7);
            var logits = m.Logits.ToArray();
            m.ZeroGrad();
            m.Backward(1f / 14);
            return [loss, .. logits, .. m.Grads.Buffer];
        }
        var plain = Pass();
        double seen = 0;
        HookFn read = (t, _) => seen += t.Span[0];
        string[][] combos =
        [
            ["f:blocks.0.attn.hook_attn_scores"], ["f:blocks.0.attn.hook_pattern"], ["f:blocks.1.attn.hook_attn_scores", "f:blocks.1.attn.hook_pattern"],
            ["b:blocks.0.attn.hook_pattern"], ["b:blocks.1.attn.hook_attn_scores"], ["b:blocks.0.attn.hook_pattern", "b:blocks.0.attn.hook_attn_scores"],
            ["f:blocks.1.attn.hook_result", "b:blocks.1.attn.hook_result"], ["b:hook_embed", "b:hook_pos_embed", "b:blocks.0.hook_attn_out", "b:blocks.1.hook_mlp_out"],
            ["f:blocks.0.attn.hook_pattern", "b:blocks.0.attn.hook_pattern", "f:blocks.0.attn.hook_q", "b:blocks.0.attn.hook_z"],
            [.. m.HookNames.Select(n => "f:" + n), .. m.HookNames.Select(n => "b:" + n)],
        ];
        foreach (var combo in combos)
        {
            var hooks = combo.Select(c => c[0] == 'f' ? m.Hooks.AddForward(c[2..], read) : m.Hooks.AddBackward(c[2..], read)).ToList();
            var hooked = Pass();
            foreach (var h in hooks) h.Dispose();
            Assert.True(plain.AsSpan().SequenceEqual(hooked), $"{kernels}: reading hooks at {string.Join(", ", combo)} changed a number");
        }
        Assert.True(double.IsFinite(seen));
    }

    [Fact]
    public void AHandleFromBeforeClearRemovesNothingRegisteredAfterIt()
    {
        var m = Model();
        var (x, _) = Tokens(1, 7, 2);
        int calls = 0;
        HookFn count = (_, _) => calls++;
        var old = m.Hooks.AddForward("blocks.0.attn.hook_z", count);
        m.Hooks.Clear();
        using var fresh = m.Hooks.AddForward("blocks.0.attn.hook_z", count); // the same delegate again
        old.Dispose();
        m.Forward(x, default, 1, 7);
        Assert.Equal(1, calls);
        Assert.False(m.Hooks.IsEmpty);
    }

    /// <summary>Hook views are made once per point and shape: passes with hooks registered allocate nothing in steady state either.</summary>
    [Fact]
    public void HookedPassesAllocateNothingInSteadyState()
    {
        var m = Model();
        var (x, y) = Tokens(2, 7, 17);
        double seen = 0;
        HookFn read = (t, _) => seen += t.Span[0];
        HookFn halve = (t, _) => System.Numerics.Tensors.TensorPrimitives.Multiply(t.Span, 0.5f, t.Span);
        var hooks = new List<IDisposable>
        {
            m.Hooks.AddForward("blocks.0.attn.hook_attn_scores", read), m.Hooks.AddForward("blocks.1.attn.hook_pattern", read),
            m.Hooks.AddForward("blocks.1.attn.hook_result", read), m.Hooks.AddForward("hook_embed", read),
            m.Hooks.AddBackward("blocks.0.attn.hook_pattern", halve), m.Hooks.AddBackward("blocks.1.attn.hook_result", halve),
            m.Hooks.AddBackward("blocks.0.hook_mlp_out", halve), m.Hooks.AddBackward("hook_pos_embed", read),
        };
        void Pass()
        {
            m.Forward(x, y, 2, 7);
            m.ZeroGrad();
            m.Backward(1f / 14);
        }
        // a pool of its own, so that no other test contends for its lock (a contended lock may allocate on this thread)
        using var pool = new WorkerPool(2);
        WorkerPool.UseOnThisThread(pool);
        long allocated;
        try
        {
            for (int i = 0; i < 3; i++) Pass();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 5; i++) Pass();
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        finally { WorkerPool.UseOnThisThread(null); }
        foreach (var h in hooks) h.Dispose();
        Assert.True(allocated == 0, $"5 hooked passes allocated {allocated} bytes");
        Assert.True(double.IsFinite(seen));
    }

    [Fact]
    public void ABackwardHookCanCutTheGradientThroughOneBranch()
    {
        var m = Model(attnOnly: true);
        var (x, y) = Tokens(2, 7, 9);
        using (m.Hooks.AddBackward("blocks.1.hook_attn_out", (g, _) => g.Span.Clear()))
        {
            m.Forward(x, y, 2, 7);
            m.ZeroGrad();
            m.Backward(1f / 14);
        }
        foreach (var n in new[] { "W_Q", "W_K", "W_V", "W_O", "b_O" })
            Assert.True(m.Grads[$"blocks.1.attn.{n}"].Span.IndexOfAnyExcept(0f) < 0, $"blocks.1.attn.{n} still has a gradient");
        Assert.True(m.Grads["blocks.0.attn.W_V"].Span.IndexOfAnyExcept(0f) >= 0, "the residual path should still carry gradient to block 0");
    }

    [Fact]
    public void BackwardAfterAForwardWithoutTargetsIsRefused()
    {
        var m = Model();
        var (x, y) = Tokens(2, 7, 13);
        m.Forward(x, y, 2, 7);
        m.Forward(x, default, 2, 7); // e.g. sampling or a cache run: the old targets no longer belong to these logits
        Assert.Throws<InvalidOperationException>(() => m.Backward(1f / 14));
    }

    [Fact]
    public void UnknownHookNamesAreRejected()
    {
        var m = Model(attnOnly: true);
        Assert.Throws<ArgumentException>(() => m.Hooks.AddForward("blocks.0.mlp.hook_post", (_, _) => { }));
        Assert.Throws<ArgumentException>(() => m.Hooks.AddForward("blocks.7.hook_resid_pre", (_, _) => { }));
    }
}
