using MiniGpt.Model;
using MiniGpt.Patching;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Activation, attribution and path patching, the logit lens and direct logit attribution, each against a direct computation.</summary>
public class PatchingTests
{
    private static GptModel Model(bool attnOnly = false, string? norm = "LN", string pos = "standard", int layers = 2, ulong seed = 3)
    {
        var m = GptModel.Create(new ModelConfig
        {
            NLayers = layers, DModel = 16, NHeads = 2, DHead = 8, DMlp = 24, NCtx = 12, DVocab = 23, AttnOnly = attnOnly,
            NormalizationType = norm, PositionalEmbeddingType = pos, InitRange = norm == null ? 0.25 : 0.5, // without LayerNorm, keep the logits O(10)
        }, seed);
        // non-zero biases and gains, so a bias that is dropped or counted twice shows
        var rng = new Rng(seed + 5);
        foreach (var t in m.Params.Tensors)
            if (!t.Name.Contains(".W_")) for (int i = 0; i < t.Length; i++) t[i] += (float)(0.1 * rng.NextNormal());
        return m;
    }

    public static TheoryData<bool, string?, string> Configs => new()
    {
        { false, "LN", "standard" }, { true, "LN", "standard" }, { true, null, "standard" }, { false, "LNPre", "shortformer" }, { false, null, "standard" },
    };

    private static PatchPrompts Prompts(ModelConfig c) => PatchPrompts.Induction(c.DVocab, batch: 3, half: 5, seed: 11);

    private static void Near(double expected, double actual, double tol, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tol * (1 + Math.Abs(expected)), $"{what}: expected {expected:G9}, got {actual:G9}");

    [Theory, MemberData(nameof(Configs))]
    public void PatchingAllOfResidPre0GivesTheCleanMetricExactly(bool attnOnly, string? norm, string pos)
    {
        var m = Model(attnOnly, norm, pos);
        var p = Prompts(m.Config);
        foreach (var metric in new[] { PatchMetric.LogitDiff, PatchMetric.AnswerLoss })
        {
            var clean = m.RunWithCache(p.Clean, p.Batch, p.SeqLen, n => n == "blocks.0.hook_resid_pre");
            double mClean = metric.Value(m.Logits, p, m.Config.DVocab);
            double patched = ActivationPatching.Patched(m, p, metric, clean, [new PatchCell(PatchSite.ResidPre, 0)]);
            Assert.Equal(mClean, patched);
            Assert.NotEqual(mClean, ActivationPatching.Metric(m, p.Corrupted, p, metric)); // the pair differs, so the test could fail
        }
    }

    [Theory, MemberData(nameof(Configs))]
    public void PatchingCorruptedIntoCorruptedChangesNothing(bool attnOnly, string? norm, string pos)
    {
        var m = Model(attnOnly, norm, pos);
        var p = Prompts(m.Config);
        // the same prompts on both sides: every cell of every grid must give the corrupted metric, to the bit
        var same = PatchPrompts.Create(Rows(p.Corrupted, p.SeqLen), Rows(p.Corrupted, p.SeqLen), p.Targets, m.Config.DVocab, m.Config.NCtx, "same");
        double mCorrupted = ActivationPatching.Metric(m, p.Corrupted, p, PatchMetric.LogitDiff);
        foreach (var spec in PatchSpec.Standard(m.Config).Append(new PatchSpec(PatchSite.ResidPost, PatchAxes.LayerPos)))
        {
            var g = ActivationPatching.Run(m, same, PatchMetric.LogitDiff, spec);
            Assert.Equal(mCorrupted, g.Corrupted);
            Assert.All(g.Raw, r => Assert.Equal(mCorrupted, r));
            Assert.All(g.Values, v => Assert.True(double.IsNaN(v), $"{spec.Name}: with clean = corrupted nothing can be normalised, got {v}"));
        }
        // and with a real pair, the grid's baseline is the corrupted run and some cell moves it
        var z = ActivationPatching.HeadOutputs(m, p, PatchMetric.LogitDiff);
        Assert.Equal(mCorrupted, z.Corrupted);
        Assert.Contains(z.Values, v => Math.Abs(v) > 1e-3);
    }

    [Theory]
    [InlineData(false, "LN")]
    [InlineData(true, null)]
    public void PatchingAHeadsZIsPatchingItsResult(bool attnOnly, string? norm)
    {
        // a head writes result_h = z_h·W_O[h] into the stream and nothing else reads z_h, so replacing z_h by its clean value
        // (at every position, or at one) is replacing result_h by z_h,clean·W_O[h] there. The result is patched here by a hook of
        // the test's own on hook_result, computed by a different path in the model (attn_out += Δresult), with its own offsets
        // [B, T, H, d_model]: a grid that copied the wrong slice of hook_z, or whose patch did not reach attn_out, differs
        var m = Model(attnOnly, norm);
        var p = Prompts(m.Config);
        var c = m.Config;
        int B = p.Batch, T = p.SeqLen, H = c.NHeads, D = c.DModel;
        var z = ActivationPatching.HeadOutputs(m, p, PatchMetric.LogitDiff);
        var zPos = ActivationPatching.HeadOutputsByPosition(m, p, PatchMetric.LogitDiff);
        for (int l = 0; l < c.NLayers; l++)
        {
            string hook = $"blocks.{l}.attn.hook_result";
            var clean = Cached(m, p, p.Clean, hook);
            for (int h = 0; h < H; h++)
                foreach (int pos in new[] { -1, T - 1, T / 2 + 1 })
                {
                    double patched;
                    using (m.Hooks.AddForward(hook, (t, _) =>
                           {
                               for (int n = 0; n < B * T; n++)
                                   if (pos < 0 || n % T == pos) clean.AsSpan((n * H + h) * D, D).CopyTo(t.Span.Slice((n * H + h) * D, D));
                           }))
                        patched = ActivationPatching.Metric(m, p.Corrupted, p, PatchMetric.LogitDiff);
                    double grid = pos < 0 ? z.Raw[l * H + h] : zPos.Raw[(l * H + h) * T + pos];
                    Near(patched, grid, 1e-5, $"L{l}H{h} pos {pos}");
                }
        }
        Assert.Contains(z.Raw, r => Math.Abs(r - z.Corrupted) > 1e-3);
    }

    private static List<int[]> Rows(int[] tokens, int T) => Enumerable.Range(0, tokens.Length / T).Select(b => tokens[(b * T)..((b + 1) * T)]).ToList();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AttributionIsExactWhereTheMetricIsLinearInTheActivation(bool attnOnly)
    {
        // no LayerNorm: logits = resid_final·W_U + b_U, so the logit difference is linear in the last resid_post and in the last
        // branch added to it: attn_out of an attention-only model, mlp_out otherwise (attn_out then passes through the MLP)
        var m = Model(attnOnly, norm: null);
        var p = Prompts(m.Config);
        int last = m.Config.NLayers - 1;
        var specs = new List<PatchSpec> { new(PatchSite.ResidPost, PatchAxes.LayerPos), new(attnOnly ? PatchSite.AttnOut : PatchSite.MlpOut, PatchAxes.LayerPos) };
        var attribution = AttributionPatching.Run(m, p, PatchMetric.LogitDiff, specs);
        int checkedCells = 0;
        foreach (var (spec, a) in specs.Zip(attribution))
        {
            var e = ActivationPatching.Run(m, p, PatchMetric.LogitDiff, spec);
            Assert.Equal(e.Shape, a.Shape);
            for (int t = 0; t < p.SeqLen; t++)
            {
                // Raw: the patched metric and corrupted + the first-order estimate, in logit units
                Near(e.Raw[last * p.SeqLen + t], a.Raw[last * p.SeqLen + t], 2e-5, $"{spec.Name} layer {last} pos {t}");
                checkedCells++;
            }
            // earlier layers go through attention, where the metric is not linear: there the two differ
            if (spec.Site == PatchSite.ResidPost)
                Assert.Contains(Enumerable.Range(0, p.SeqLen), t => Math.Abs(e.Raw[t] - a.Raw[t]) > 1e-3);
        }
        Assert.True(checkedCells >= 2 * p.SeqLen);
        Assert.Contains(attribution[0].Values, v => Math.Abs(v) > 0.01);
    }

    [Theory]
    [InlineData(false, "LN", PatchSite.ResidPre)]
    [InlineData(false, "LN", PatchSite.Z)]
    [InlineData(false, "LN", PatchSite.Q)]
    [InlineData(true, "LN", PatchSite.K)]
    [InlineData(false, null, PatchSite.V)]
    [InlineData(true, null, PatchSite.Pattern)]
    [InlineData(false, "LN", PatchSite.MlpOut)]
    public void AttributionIsTheDerivativeOfPatching(bool attnOnly, string? norm, PatchSite site)
    {
        // patching a + ε·(clean − a) instead of clean: (m(ε) − m(−ε))/2ε → Σ (clean − a)·∂m/∂a, the attribution estimate
        var m = Model(attnOnly, norm);
        var p = Prompts(m.Config);
        var c = m.Config;
        var spec = new PatchSpec(site, PatchSpec.IsResidualSite(site) ? PatchAxes.LayerPos : PatchAxes.LayerHead);
        var a = AttributionPatching.Run(m, p, PatchMetric.AnswerLoss, [spec])[0];
        var names = Enumerable.Range(0, c.NLayers).Select(spec.HookName).ToHashSet();
        var clean = m.RunWithCache(p.Clean, p.Batch, p.SeqLen, names.Contains);
        var corrupted = m.RunWithCache(p.Corrupted, p.Batch, p.SeqLen, names.Contains);
        const float eps = 1e-2f;
        ActivationCache Towards(float e)
        {
            var cache = new ActivationCache();
            foreach (var n in names)
            {
                var x0 = corrupted[n].Span; var x1 = clean[n].Span;
                var v = new float[x0.Length];
                for (int i = 0; i < v.Length; i++) v[i] = x0[i] + e * (x1[i] - x0[i]);
                cache.Add(new Tensors.Tensor(n, v, 0, corrupted[n].Shape));
            }
            return cache;
        }
        var plus = Towards(eps);
        var minus = Towards(-eps);
        double worst = 0, scale = 0;
        for (int i = 0; i < a.Values.Length; i++)
        {
            var cell = ActivationPatching.CellOf(spec, a.Shape, i);
            double fd = (ActivationPatching.Patched(m, p, PatchMetric.AnswerLoss, plus, [cell]) - ActivationPatching.Patched(m, p, PatchMetric.AnswerLoss, minus, [cell])) / (2 * eps);
            double est = a.Raw[i] - a.Corrupted;
            worst = Math.Max(worst, Math.Abs(fd - est));
            scale = Math.Max(scale, Math.Abs(est));
        }
        Assert.True(scale > 1e-3, $"{spec.Name}: every estimate is ~0 ({scale:G3}), so the comparison says nothing");
        Assert.True(worst <= 2e-3 + 0.01 * scale, $"{spec.Name}: attribution differs from the central difference by {worst:G3} (largest estimate {scale:G3})");
    }

    [Theory]
    [InlineData(false, "LN")]
    [InlineData(true, null)]
    [InlineData(false, "LNPre")]
    public void PathPatchingFromEverythingUpstreamIsActivationPatchingOfTheInput(bool attnOnly, string? norm)
    {
        // with every component as a sender nothing is frozen, so this checks the recording and the final step, not freezing
        // (PathPatchingOneSenderSeesOnlyItsDirectPath and PathPatchingFromAnMlp… check that against hand computations)
        var m = Model(attnOnly, norm, layers: 3);
        var p = Prompts(m.Config);
        var c = m.Config;
        foreach (int layer in new[] { 0, 2 })
        {
            // every component that writes into the receiver's resid_pre: the embeddings, each head and each MLP below it
            var senders = new List<PathSender> { PathSender.Embeddings };
            for (int l = 0; l < layer; l++)
            {
                for (int h = 0; h < c.NHeads; h++) senders.Add(PathSender.OfHead(l, h));
                if (c.HasMlp) senders.Add(PathSender.OfMlp(l));
            }
            foreach (var (input, site) in new[] { (PathInput.Q, PatchSite.Q), (PathInput.K, PatchSite.K), (PathInput.V, PatchSite.V) })
            {
                var direct = ActivationPatching.Run(m, p, PatchMetric.LogitDiff, new PatchSpec(site, PatchAxes.LayerHead));
                for (int h = 0; h < c.NHeads; h++)
                {
                    double path = PathPatching.Effect(m, p, PatchMetric.LogitDiff, senders, layer, h, input);
                    Near(direct[layer, h], path, 1e-6, $"L{layer}H{h}.{input}");
                }
            }
        }
    }

    /// <summary>
    /// The normalised metric of the corrupted run with the v of head (layer, receiver) recomputed by hand from a resid_pre of
    /// layer moved by dResid(n, d) (row n of B·T, dimension d): a path that reaches the receiver only through its v, with every
    /// other component frozen, moves only its resid_pre, and
    ///   v = ln1(resid_pre_corrupted + dResid)·W_V + b_V
    /// with ln1 (x − μ)/√(σ² + eps)·w + b recomputed from the moved stream (LNPre: without w and b; no LayerNorm: x itself).
    /// Nothing here runs path patching's hooks: only the final step, the corrupted run with that v, is a forward pass.
    /// </summary>
    private static double VMovedBy(GptModel m, PatchPrompts p, int receiver, Func<int, int, double> dResid, int layer = 1)
    {
        var c = m.Config;
        int B = p.Batch, T = p.SeqLen, D = c.DModel, H = c.NHeads, dh = c.DHead;
        string vHook = $"blocks.{layer}.attn.hook_v", residHook = $"blocks.{layer}.hook_resid_pre";
        var corrupted = m.RunWithCache(p.Corrupted, B, T, n => n == vHook || n == residHook);
        var wV = m.Params[$"blocks.{layer}.attn.W_V"].Span.ToArray();
        var bV = m.Params[$"blocks.{layer}.attn.b_V"].Span.ToArray();
        float[]? lnW = c.HasLayerNormParams ? m.Params[$"blocks.{layer}.ln1.w"].Span.ToArray() : null;
        float[]? lnB = c.HasLayerNormParams ? m.Params[$"blocks.{layer}.ln1.b"].Span.ToArray() : null;
        var resid = corrupted[residHook].Span;
        var v = corrupted[vHook].Span.ToArray();
        var x = new double[D];
        for (int n = 0; n < B * T; n++)
        {
            for (int d = 0; d < D; d++) x[d] = resid[n * D + d] + dResid(n, d);
            if (c.HasLayerNorm)
            {
                double mean = x.Average(), var = x.Sum(u => (u - mean) * (u - mean)) / D, rstd = 1 / Math.Sqrt(var + Layers.LayerNorm.Eps);
                for (int d = 0; d < D; d++) x[d] = (x[d] - mean) * rstd * (lnW?[d] ?? 1) + (lnB?[d] ?? 0);
            }
            for (int e = 0; e < dh; e++)
            {
                double ve = bV[receiver * dh + e];
                for (int d = 0; d < D; d++) ve += x[d] * wV[(receiver * D + d) * dh + e];
                v[(n * H + receiver) * dh + e] = (float)ve;
            }
        }
        var byHand = new ActivationCache();
        byHand.Add(new Tensors.Tensor(vHook, v, 0, corrupted[vHook].Shape));
        return PatchGrid.Normalise(ActivationPatching.Patched(m, p, PatchMetric.LogitDiff, byHand, [new PatchCell(PatchSite.V, layer, receiver)]),
            ActivationPatching.Metric(m, p.Clean, p, PatchMetric.LogitDiff), ActivationPatching.Metric(m, p.Corrupted, p, PatchMetric.LogitDiff));
    }

    /// <summary>A cached activation of a run of tokens, as an array.</summary>
    private static float[] Cached(GptModel m, PatchPrompts p, int[] tokens, string hook) =>
        m.RunWithCache(tokens, p.Batch, p.SeqLen, n => n == hook)[hook].Span.ToArray();

    /// <summary>(z_clean − z_corrupted)·W_O of head (layer, head) at row n, dimension d: what its path adds to every later resid_pre.</summary>
    private static Func<int, int, double> HeadResultDifference(GptModel m, PatchPrompts p, int layer, int head)
    {
        var c = m.Config;
        int D = c.DModel, H = c.NHeads, dh = c.DHead;
        var z1 = Cached(m, p, p.Clean, $"blocks.{layer}.attn.hook_z");
        var z0 = Cached(m, p, p.Corrupted, $"blocks.{layer}.attn.hook_z");
        var wO = m.Params[$"blocks.{layer}.attn.W_O"].Span.ToArray();
        return (n, d) =>
        {
            double dr = 0;
            for (int f = 0; f < dh; f++) dr += ((double)z1[(n * H + head) * dh + f] - z0[(n * H + head) * dh + f]) * wO[(head * dh + f) * D + d];
            return dr;
        };
    }

    [Theory]
    [InlineData(true, null, 2)]
    [InlineData(false, null, 2)]
    [InlineData(false, "LN", 3)]
    [InlineData(true, "LNPre", 3)]
    public void PathPatchingOneSenderSeesOnlyItsDirectPath(bool attnOnly, string? norm, int layers)
    {
        // resid_pre of the receiver's layer = embed + pos + Σ_{l < layer} (Σ_h z_{l,h}·W_O + b_O + mlp_out_l). With L0H1 the only
        // sender and every other head and MLP below the receiver frozen at the corrupted run, it moves by exactly
        // (z_clean − z_corrupted)·W_O of L0H1; ln1 is recomputed from the moved stream. The MLPs (and, with 3 layers, the heads of
        // layer 1) would pass L0H1's change on if they were not frozen, so this fails if freezing does nothing.
        var m = Model(attnOnly, norm, layers: layers);
        var p = Prompts(m.Config);
        int layer = layers - 1, D = m.Config.DModel;
        const int sender = 1, receiver = 0;
        var direct = HeadResultDifference(m, p, 0, sender);
        double expected = VMovedBy(m, p, receiver, direct, layer);
        var grid = PathPatching.Senders(m, p, PatchMetric.LogitDiff, layer, receiver, PathInput.V);
        Near(expected, grid[0, sender], 1e-4, $"L0H1 → L{layer}H0.v");
        Assert.True(Math.Abs(expected) > 1e-3, "the path has no effect, so the test says nothing");
        Assert.True(double.IsNaN(grid[layer, 0]), "a head in the receiver's layer cannot send to it");

        // where something sits between sender and receiver, the unfrozen effect (L0H1's z patched, everything after it free,
        // resid_pre moving by whatever the MLPs and heads in between make of it) is measurably different
        if (!attnOnly || layers > 2)
        {
            string residHook = $"blocks.{layer}.hook_resid_pre";
            var corrupted = Cached(m, p, p.Corrupted, residHook);
            var cleanZ = m.RunWithCache(p.Clean, p.Batch, p.SeqLen, n => n == "blocks.0.attn.hook_z");
            var moved = new float[corrupted.Length];
            using (m.Hooks.AddForward(residHook, (t, _) => t.Span.CopyTo(moved)))
                ActivationPatching.Patched(m, p, PatchMetric.LogitDiff, cleanZ, [new PatchCell(PatchSite.Z, 0, sender)]);
            double unfrozen = VMovedBy(m, p, receiver, (n, d) => (double)moved[n * D + d] - corrupted[n * D + d], layer);
            Assert.True(Math.Abs(unfrozen - expected) > 1e-3, $"freezing changes nothing here ({unfrozen:G6} vs {expected:G6}), so the test could not catch it");
        }
    }

    [Theory]
    [InlineData(null, 2)]
    [InlineData("LN", 3)]
    public void PathPatchingFromAnMlpMovesTheReceiversInputByTheMlpsOutputDifference(string? norm, int layers)
    {
        // mlp0 alone as the sender: the receiver's resid_pre moves by mlp_out₀,clean − mlp_out₀,corrupted (the heads of layer 0
        // run on the corrupted stream either way; with 3 layers, layer 1's heads and MLP are frozen), computed here from the two
        // runs' caches, not by path patching's hooks
        var m = Model(attnOnly: false, norm, layers: layers);
        var p = Prompts(m.Config);
        int layer = layers - 1, D = m.Config.DModel;
        var out1 = Cached(m, p, p.Clean, "blocks.0.hook_mlp_out");
        var out0 = Cached(m, p, p.Corrupted, "blocks.0.hook_mlp_out");
        foreach (int receiver in new[] { 0, 1 })
        {
            double expected = VMovedBy(m, p, receiver, (n, d) => (double)out1[n * D + d] - out0[n * D + d], layer);
            var others = PathPatching.NonHeadSenders(m, p, PatchMetric.LogitDiff, layer, receiver, PathInput.V);
            Assert.Equal(PathSender.OfMlp(0), others[1].Sender);
            Near(expected, others[1].Value, 1e-4, $"mlp0 → L{layer}H{receiver}.v");
            Near(expected, PathPatching.Effect(m, p, PatchMetric.LogitDiff, [PathSender.OfMlp(0)], layer, receiver, PathInput.V), 1e-4, $"Effect(mlp0) → L{layer}H{receiver}.v");
            Assert.True(Math.Abs(expected) > 1e-3, "the path has no effect, so the test says nothing");
        }
    }

    [Fact]
    public void PathPatchingFromTheEmbeddingsMovesTheReceiversInputByTheEmbeddingsDifference()
    {
        // the embeddings' path alone moves resid_pre₁ by embed_clean − embed_corrupted (the positions are the same in
        // both runs, so hook_pos_embed cancels)
        var m = Model(attnOnly: true, norm: null);
        var p = Prompts(m.Config);
        int B = p.Batch, T = p.SeqLen, D = m.Config.DModel;
        var e1 = m.RunWithCache(p.Clean, B, T, n => n == "hook_embed")["hook_embed"].Span.ToArray();
        var e0 = m.RunWithCache(p.Corrupted, B, T, n => n == "hook_embed")["hook_embed"].Span.ToArray();
        const int receiver = 0;
        double expected = VMovedBy(m, p, receiver, (n, d) => (double)e1[n * D + d] - e0[n * D + d]);
        var others = PathPatching.NonHeadSenders(m, p, PatchMetric.LogitDiff, 1, receiver, PathInput.V);
        Assert.Equal(PathSender.Embeddings, Assert.Single(others).Sender); // attention-only: no MLP senders
        Near(expected, others[0].Value, 1e-4, "embed → L1H0.v");
        Assert.True(Math.Abs(expected) > 1e-3, "the path has no effect, so the test says nothing");

        // with MLPs, each MLP below the receiver is a sender too (its effect: PathPatchingFromAnMlp…)
        var mm = Model(attnOnly: false, layers: 3);
        Assert.Equal([PathSender.Embeddings, PathSender.OfMlp(0), PathSender.OfMlp(1)],
            PathPatching.NonHeadSenders(mm, Prompts(mm.Config), PatchMetric.LogitDiff, 2, 1, PathInput.K).Select(x => x.Sender).ToArray());
    }

    [Theory, MemberData(nameof(Configs))]
    public void DirectLogitAttributionSumsToTheLogitDifference(bool attnOnly, string? norm, string pos)
    {
        var m = Model(attnOnly, norm, pos);
        var p = Prompts(m.Config);
        var r = DirectLogitAttribution.Run(m, p);
        Assert.Equal(ActivationPatching.Metric(m, p.Clean, p, PatchMetric.LogitDiff), r.LogitDiff);
        Near(r.LogitDiff, r.Sum, norm == null ? 1e-4 : 1e-4, "Σ parts");
        int expectedParts = 1 + (pos == "shortformer" ? 0 : 1) + m.Config.NLayers * (m.Config.NHeads + 1 + (attnOnly ? 0 : 1)) + 1;
        Assert.Equal(expectedParts, r.Parts.Count);
        Assert.Contains(r.Parts, x => x.Head >= 0 && Math.Abs(x.Value) > 1e-3);
    }

    [Fact]
    public void DirectLogitAttributionOfAHeadIsItsResultThroughTheFrozenLayerNorm()
    {
        // with LayerNorm: head L1H1's part, computed here from hook_result and ln_final's mean and 1/σ by hand
        var m = Model(attnOnly: true);
        var p = Prompts(m.Config);
        var c = m.Config;
        int D = c.DModel, H = c.NHeads, V = c.DVocab, T = p.SeqLen;
        var cache = m.RunWithCache(p.Clean, p.Batch, T, n => n == "blocks.1.attn.hook_result");
        var rstd = m.Cache!.LnFinalRstd!.Span.ToArray();
        var result = cache["blocks.1.attn.hook_result"].Span;
        var w = m.Params["ln_final.w"].Span; var wU = m.Params["unembed.W_U"].Span;
        double sum = 0;
        for (int b = 0; b < p.Batch; b++)
            foreach (var t in p.Targets[b])
            {
                int n = b * T + t.Position;
                var x = result.Slice((n * H + 1) * D, D);
                double mean = 0; foreach (float v in x) mean += v; mean /= D;
                for (int d = 0; d < D; d++) sum += (x[d] - mean) * rstd[n] * w[d] * (wU[d * V + t.Answer] - wU[d * V + t.Wrong]);
            }
        Near(sum / p.TargetCount, DirectLogitAttribution.Run(m, p).Parts.Single(x => x.Name == "L1H1").Value, 1e-5, "L1H1");
    }

    [Theory, MemberData(nameof(Configs))]
    public void TheLogitLensOfTheFinalStreamIsTheModel(bool attnOnly, string? norm, string pos)
    {
        var m = Model(attnOnly, norm, pos);
        var p = Prompts(m.Config);
        var lens = LogitLens.Run(m, p);
        Assert.Equal(m.Config.NLayers + 1, lens.Count);
        Near(ActivationPatching.Metric(m, p.Clean, p, PatchMetric.LogitDiff), lens[^1].LogitDiff, 1e-6, "logit diff");
        Near(ActivationPatching.Metric(m, p.Clean, p, PatchMetric.AnswerLoss), lens[^1].TargetLoss, 1e-6, "answer loss");
        // the sequence loss is the model's own next-token loss over the prompt
        var targets = new int[p.Clean.Length];
        for (int b = 0; b < p.Batch; b++)
            for (int t = 0; t + 1 < p.SeqLen; t++) targets[b * p.SeqLen + t] = p.Clean[b * p.SeqLen + t + 1];
        m.Forward(p.Clean, targets, p.Batch, p.SeqLen);
        double seq = 0;
        for (int b = 0; b < p.Batch; b++) for (int t = 0; t + 1 < p.SeqLen; t++) seq += m.Losses[b * p.SeqLen + t];
        Near(seq / (p.Batch * (p.SeqLen - 1)), lens[^1].SequenceLoss, 1e-5, "sequence loss");
        Assert.NotEqual(lens[0].LogitDiff, lens[^1].LogitDiff);
    }

    /// <summary>Two induction pairs of different lengths (10 tokens with 4 targets, 8 with 3), and each of them as its own PatchPrompts.</summary>
    private static (PatchPrompts Long, PatchPrompts Short) TwoLengths(ModelConfig c)
    {
        var a = PatchPrompts.Induction(c.DVocab, batch: 1, half: 5, seed: 21);
        var b = PatchPrompts.Induction(c.DVocab, batch: 1, half: 4, seed: 22);
        return (a, b);
    }

    /// <summary>The pairs of ps (one pair each) as one batch, right-padded with token 0.</summary>
    private static PatchPrompts Batched(ModelConfig c, params PatchPrompts[] ps) =>
        PatchPrompts.Create(ps.Select(x => x.Clean).ToList(), ps.Select(x => x.Corrupted).ToList(), ps.Select(x => x.Targets[0]).ToList(),
            c.DVocab, c.NCtx, "padded", padToken: 0);

    [Theory]
    [InlineData(false, "LN")]
    [InlineData(true, null)]
    public void APaddedBatchIsTheTargetWeightedMeanOfItsPairsRunAlone(bool attnOnly, string? norm)
    {
        // every metric is a mean over targets, so a batch of pairs A (n_A targets) and B (n_B) gives
        //   m = (n_A·m_A + n_B·m_B)/(n_A + n_B)
        // for every patched cell too, where m_A and m_B are the pairs run alone at their own lengths: causal attention keeps
        // the padding after B out of B's targets, and a position cell in B's padding patches nothing B reads (m_B corrupted)
        var m = Model(attnOnly, norm);
        var c = m.Config;
        var (a, b) = TwoLengths(c);
        Assert.Equal((10, 8, 4, 3), (a.SeqLen, b.SeqLen, a.TargetCount, b.TargetCount));
        var specs = new[]
        {
            new PatchSpec(PatchSite.ResidPre, PatchAxes.LayerPos), new PatchSpec(PatchSite.Z, PatchAxes.LayerHeadPos),
            new PatchSpec(PatchSite.K, PatchAxes.LayerHead), new PatchSpec(PatchSite.Pattern, PatchAxes.LayerHead),
        };
        foreach (var metric in new[] { PatchMetric.LogitDiff, PatchMetric.AnswerLoss })
            foreach (var spec in specs)
            {
                var ga = ActivationPatching.Run(m, a, metric, spec);
                var gb = ActivationPatching.Run(m, b, metric, spec);
                foreach (bool longFirst in new[] { true, false })
                {
                    var batch = longFirst ? Batched(c, a, b) : Batched(c, b, a);
                    Assert.Equal(longFirst ? new[] { 10, 8 } : [8, 10], batch.Lengths);
                    var g = ActivationPatching.Run(m, batch, metric, spec);
                    Near((4 * ga.Clean + 3 * gb.Clean) / 7, g.Clean, 1e-5, $"{spec.Name} clean");
                    Near((4 * ga.Corrupted + 3 * gb.Corrupted) / 7, g.Corrupted, 1e-5, $"{spec.Name} corrupted");
                    Assert.Equal(ga.Shape, g.Shape); // T = the longer pair's 10
                    for (int i = 0; i < g.Raw.Length; i++)
                    {
                        var cell = ActivationPatching.CellOf(spec, g.Shape, i);
                        double rb = cell.Pos >= b.SeqLen ? gb.Corrupted // B's padding: nothing of B patched
                            : gb.Raw[Array.IndexOf(Enumerable.Range(0, gb.Raw.Length).Select(j => ActivationPatching.CellOf(spec, gb.Shape, j)).ToArray(), cell)];
                        Near((4 * ga.Raw[i] + 3 * rb) / 7, g.Raw[i], 1e-5, $"{metric.Name} {spec.Name} cell {i} ({(longFirst ? "long" : "short")} pair first)");
                    }
                    Assert.Contains(Enumerable.Range(0, g.Raw.Length), i => Math.Abs(g.Raw[i] - g.Corrupted) > 1e-3); // some cell moves
                }
            }
    }

    [Fact]
    public void TheSequenceLossOfAPaddedBatchIsTheWeightedMeanOfItsPairs()
    {
        // pair b predicts len_b − 1 next tokens of its own; the padding after it is neither read nor predicted, so the batch's
        // sequence loss is Σ_b (len_b − 1)·loss_b / Σ_b (len_b − 1), whichever pair comes first
        var m = Model();
        var c = m.Config;
        var (a, b) = TwoLengths(c);
        var la = LogitLens.Run(m, a);
        var lb = LogitLens.Run(m, b);
        foreach (var batch in new[] { Batched(c, a, b), Batched(c, b, a) })
            foreach (bool corrupted in new[] { false, true })
            {
                var lab = LogitLens.Run(m, batch, corrupted);
                var (ra, rb) = corrupted ? (LogitLens.Run(m, a, true), LogitLens.Run(m, b, true)) : (la, lb);
                Assert.Equal(ra.Count, lab.Count);
                for (int i = 0; i < lab.Count; i++)
                {
                    Near((9 * ra[i].SequenceLoss + 7 * rb[i].SequenceLoss) / 16, lab[i].SequenceLoss, 1e-5, $"{lab[i].Name} sequence loss");
                    Near((4 * ra[i].TargetLoss + 3 * rb[i].TargetLoss) / 7, lab[i].TargetLoss, 1e-5, $"{lab[i].Name} target loss");
                }
            }
        // the unpadded batch still counts every position
        Assert.Equal(new[] { 10 }, a.Lengths);
    }

    [Fact]
    public void MetricGradientsAreTheirFiniteDifferences()
    {
        var c = Model().Config;
        var p = Prompts(c);
        int V = c.DVocab;
        var rng = new Rng(4);
        var logits = new float[p.Batch * p.SeqLen * V];
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(2 * rng.NextNormal());
        foreach (var metric in new[] { PatchMetric.LogitDiff, PatchMetric.AnswerLoss })
        {
            var g = new float[logits.Length];
            metric.Gradient(logits, p, V, g);
            Assert.Contains(g, x => x != 0);
            for (int i = 0; i < logits.Length; i += 7)
            {
                float x = logits[i];
                logits[i] = x + 1e-2f; double up = metric.Value(logits, p, V);
                logits[i] = x - 1e-2f; double down = metric.Value(logits, p, V);
                logits[i] = x;
                Near((up - down) / 2e-2, g[i], 1e-3, $"{metric.Name} ∂/∂logits[{i}]");
            }
        }
    }

    [Fact]
    public void InductionPairsBreakTheRepeatAndNothingElse()
    {
        var p = PatchPrompts.Induction(vocab: 64, batch: 8, half: 10, seed: 2);
        Assert.Equal((8, 20), (p.Batch, p.SeqLen));
        for (int b = 0; b < p.Batch; b++)
        {
            var x = p.Clean.AsSpan(b * 20, 20); var y = p.Corrupted.AsSpan(b * 20, 20);
            Assert.True(x[..10].SequenceEqual(x[10..]), "the clean prompt repeats its first half");
            Assert.True(y[10..].SequenceEqual(x[10..]), "the second halves are the same tokens");
            Assert.Empty(y[..10].ToArray().Intersect(x[..10].ToArray()));
            Assert.Equal(9, p.Targets[b].Length);
            for (int i = 0; i < 9; i++) Assert.Equal(new PatchTarget(10 + i, x[i + 1], y[i + 1]), p.Targets[b][i]);
        }

        // a vocabulary just large enough (2L, and 2L + 1): rejection draws rarely find one of the few unused tokens, but the
        // corrupted half still holds no clean token and no repeat, and no target compares a token with itself
        foreach (var (vocab, half) in new[] { (20, 10), (21, 10), (64, 32), (65, 32) })
            for (ulong seed = 1; seed <= 4; seed++)
            {
                var q = PatchPrompts.Induction(vocab, batch: 16, half, seed);
                int T = 2 * half;
                for (int b = 0; b < q.Batch; b++)
                {
                    var x = q.Clean.AsSpan(b * T, T).ToArray(); var y = q.Corrupted.AsSpan(b * T, T).ToArray();
                    Assert.True(y[half..].SequenceEqual(x[half..]));
                    Assert.Empty(y[..half].Intersect(x[..half]));
                    Assert.Equal(half, y[..half].Distinct().Count());
                    Assert.All(q.Targets[b], t => Assert.NotEqual(t.Answer, t.Wrong));
                }
                // deterministic for the seed
                Assert.Equal(q.Corrupted, PatchPrompts.Induction(vocab, batch: 16, half, seed).Corrupted);
            }
    }

    [Fact]
    public void NoisingIsDenoisingWithTheRunsSwapped()
    {
        var m = Model();
        var p = Prompts(m.Config);
        var n = p.Swapped();
        var z = ActivationPatching.HeadOutputs(m, p, PatchMetric.LogitDiff);
        var zn = ActivationPatching.HeadOutputs(m, n, PatchMetric.LogitDiff);
        // the baselines trade places; a cell of the noising grid is the clean run with one head's corrupted output
        Assert.Equal((z.Clean, z.Corrupted), (zn.Corrupted, zn.Clean));
        var corrupted = m.RunWithCache(p.Corrupted, p.Batch, p.SeqLen, s => s.EndsWith("hook_z", StringComparison.Ordinal));
        double direct = ActivationPatching.Patched(m, n, PatchMetric.LogitDiff, corrupted, [new PatchCell(PatchSite.Z, 1, Head: 1)]);
        Near(direct, zn.Raw[m.Config.NHeads + 1], 1e-12, "L1H1 noised");
        Near((direct - z.Clean) / (z.Corrupted - z.Clean), zn[1, 1], 1e-9, "normalised so that 0 is the clean run, 1 the corrupted");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheProgressOfAnAnalysisIsOneRunningCountThatEndsAtItsTotal(bool autoReceivers)
    {
        // one bar for the whole analysis: never back to 0 at a new stage, never past its total, and ending on it; the path
        // stage counts the embeddings' and MLPs' senders too (a model with MLPs has them)
        var m = Model(layers: 3);
        var p = Prompts(m.Config);
        var seen = new List<(int Done, int Total, string Stage)>();
        var r = PatchingAnalysis.Run(m, p, new PatchingOptions
        {
            Specs = [new(PatchSite.ResidPre, PatchAxes.LayerPos), new(PatchSite.Z, PatchAxes.LayerHead)],
            Receivers = autoReceivers ? null : [(2, 1)], Progress = (d, t, s) => seen.Add((d, t, s)),
        });
        Assert.Equal(autoReceivers ? 6 : 3, r.Paths.Count);
        Assert.Contains(seen, x => x.Stage.StartsWith("path patching", StringComparison.Ordinal));
        for (int i = 1; i < seen.Count; i++)
            Assert.True(seen[i].Done >= seen[i - 1].Done && (double)seen[i].Done / seen[i].Total >= (double)seen[i - 1].Done / seen[i - 1].Total - 1e-12,
                $"step {i}: {seen[i - 1]} then {seen[i]}");
        Assert.All(seen, x => Assert.InRange(x.Done, 0, x.Total));
        Assert.Equal(seen[^1].Total, seen[^1].Done);
        // the count in forward passes: resid_pre's 3 × T cells and z's 3 × 2, attribution 3, per receiver input 2 + 2 per sender
        // (2 heads per layer below, the embeddings, 1 MLP per layer below), the lens, attribution and saturation 4
        int paths = r.Paths.Sum(x => 2 + 2 * (x.ReceiverLayer * 2 + 1 + x.ReceiverLayer));
        Assert.Equal(3 * p.SeqLen + 3 * 2 + 3 + paths + 4, seen[^1].Total);
        // attribution's grids share one forward and backward: each carries the whole run's time, dot products included,
        // which is at most what the analysis measured around it
        Assert.Single(r.Attribution.Select(g => g.Seconds).Distinct());
        Assert.InRange(r.Attribution[0].Seconds, 0, r.AttributionSeconds);
    }

    [Fact]
    public void SaturationIsTheLargestAttentionProbabilityAtTheTargets()
    {
        var m = Model();
        var p = Prompts(m.Config);
        var s = PatchingAnalysis.Saturation(m, p);
        var cache = m.RunWithCache(p.Corrupted, p.Batch, p.SeqLen, n => n == "blocks.1.attn.hook_pattern");
        var a = cache["blocks.1.attn.hook_pattern"];
        int T = p.SeqLen, H = m.Config.NHeads;
        double sum = 0;
        for (int b = 0; b < p.Batch; b++)
            foreach (var t in p.Targets[b])
                sum += Enumerable.Range(0, t.Position + 1).Max(k => a[((b * H + 1) * T + t.Position) * T + k]);
        Near(sum / p.TargetCount, s[H + 1], 1e-6, "L1H1");
        Assert.All(s, v => Assert.InRange(v, 1.0 / T, 1.0));
    }

    [Fact]
    public void BadInputIsOneLineNamingTheFix()
    {
        var m = Model();
        var c = m.Config;
        var e = Assert.Throws<UserError>(() => PatchPrompts.Single([1, 2, 3], [1, 2], 4, 5, c.DVocab, c.NCtx, "t"));
        Assert.Equal("the clean prompt is 3 tokens and the corrupted one 2: patching copies activations position by position, so make both the same number of tokens", e.Message);
        Assert.Contains("unknown patching site 'resid'", Assert.Throws<UserError>(() => PatchSpec.ParseSite("resid")).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<UserError>(() => PatchPrompts.Single([1, 2], [1, 3], 99, 5, c.DVocab, c.NCtx, "t")).Message);
        var p = Prompts(c);
        Assert.Contains("receiver L2H0 does not exist", Assert.Throws<UserError>(() => PathPatching.Senders(m, p, PatchMetric.LogitDiff, 2, 0, PathInput.K)).Message);
        Assert.Contains("is not below the receiver", Assert.Throws<UserError>(() =>
            PathPatching.Effect(m, p, PatchMetric.LogitDiff, [PathSender.OfHead(1, 0)], 1, 1, PathInput.Q)).Message);
        Assert.Contains("attention-only", Assert.Throws<UserError>(() =>
            ActivationPatching.MlpOut(Model(attnOnly: true), p, PatchMetric.LogitDiff)).Message);
        var tooLong = PatchPrompts.Induction(c.DVocab, 1, 7, 1); // 14 tokens, n_ctx 12
        Assert.Contains("n_ctx = 12", Assert.Throws<UserError>(() => ActivationPatching.ResidPre(m, tooLong, PatchMetric.LogitDiff)).Message);
        Assert.Contains("unknown metric", Assert.Throws<UserError>(() => PatchMetric.Named("kl")).Message);
    }
}
