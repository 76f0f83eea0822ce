using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// model.Cache.Acts[name], where the README sends debugger users, shows the last pass's activations with that pass's
/// shape: after a long pass and then a shorter one (sample and circuits run such passes), every tensor is [B, T, …] or
/// [B, H, T, T] of the short pass and holds what a fresh model computes for it.
/// </summary>
public class CacheShapeTests
{
    private static readonly ModelConfig Cfg = new() { NLayers = 2, DModel = 32, NHeads = 4, DHead = 8, DMlp = 64, NCtx = 32, DVocab = 29, AttnOnly = false };

    private static int[] Tokens(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.Next(Cfg.DVocab)).ToArray();
    }

    [Theory]
    [InlineData(true, false)]  // KeepPatterns: scores and pattern materialised
    [InlineData(false, true)]  // the defaults: the pattern kept for speed (T ≤ 256), not the scores
    public void AfterAShorterPassEveryCachedTensorHasThatPassShapeAndValues(bool keepPatterns, bool forSpeed)
    {
        const int B = 1, T = 8;
        var m = GptModel.Create(Cfg, 11);
        m.KeepPatterns = keepPatterns;
        m.KeepPatternsForSpeed = forSpeed;
        m.Forward(Tokens(2 * 32, 1), Tokens(2 * 32, 2), 2, 32); // a training-sized pass first: the buffers are sized for it
        var x = Tokens(B * T, 3);
        m.Forward(x, default, B, T);

        // an independent run of the same weights on only this pass: what the cache must show
        var fresh = GptModel.Create(Cfg, 11);
        var want = fresh.RunWithCache(x, B, T);
        int checkedNames = 0;
        foreach (var name in m.HookNames)
        {
            if (!m.Cache!.Acts.TryGet(name, out var got)) { Assert.True(!keepPatterns && name.EndsWith("hook_attn_scores") || name.EndsWith("hook_result"), $"{name} missing"); continue; }
            var kind = m.HookShapeOf(name)!.Value;
            Assert.Equal(HookPoints.Shape(kind, Cfg, B, T), got.Shape);
            Assert.True(got.Span.SequenceEqual(want[name].Span), $"{name}: the cached values are not this pass's");
            checkedNames++;
        }
        Assert.True(checkedNames >= 20, $"only {checkedNames} names checked");

        // the pattern's rows: softmax over j ≤ i, zero above the diagonal, row i of head h where [b, h, i, :] says
        for (int l = 0; l < Cfg.NLayers; l++)
        {
            var p = m.Cache!.Acts[$"blocks.{l}.attn.hook_pattern"];
            Assert.Equal([B, Cfg.NHeads, T, T], p.Shape);
            var s = p.Span;
            for (int h = 0; h < Cfg.NHeads; h++)
                for (int i = 0; i < T; i++)
                {
                    double sum = 0;
                    for (int j = 0; j < T; j++)
                    {
                        float v = s[(h * T + i) * T + j];
                        if (j > i) Assert.Equal(0f, v);
                        else sum += v;
                    }
                    Assert.InRange(sum, 1 - 1e-5, 1 + 1e-5);
                }
        }

        // the activations outside the hook points: per-token statistics [B, T], the tiled softmax's [B, H, T]
        Assert.Equal([B, T], m.Cache!.Acts["blocks.0.ln1.mean"].Shape);
        Assert.Equal([B, T], m.Cache.Acts["losses"].Shape);
        Assert.Equal([B, Cfg.NHeads, T], m.Cache.Acts["blocks.1.attn.softmax_max"].Shape);
    }

    /// <summary>A longer pass after a short one: the views follow the pass (no view of an older shape is kept).</summary>
    [Fact]
    public void TheViewsFollowEachPass()
    {
        var m = GptModel.Create(Cfg, 5);
        m.Forward(Tokens(8, 1), default, 1, 8);
        Assert.Equal([1, 8, Cfg.DModel], m.Cache!.Acts["blocks.0.hook_resid_post"].Shape);
        m.Forward(Tokens(3 * 20, 2), default, 3, 20);
        Assert.Equal([3, 20, Cfg.DModel], m.Cache!.Acts["blocks.0.hook_resid_post"].Shape);
        Assert.Equal([3, Cfg.NHeads, 20, 20], m.Cache.Acts["blocks.1.attn.hook_pattern"].Shape);
        Assert.Equal([3, 20, Cfg.DVocab], m.Cache.Acts["logits"].Shape);
    }
}

/// <summary>Expanding model.Cache.Acts in a debugger (ArenaDebugView) lists this pass's views, not the stored buffers.</summary>
public class CacheDebugViewTests
{
    [Fact]
    public void TheExpandedCacheListsThisPassesViews()
    {
        var cfg = new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, NCtx = 32, DVocab = 11, AttnOnly = true };
        var m = GptModel.Create(cfg, 1);
        m.Forward(new int[2 * 32], default, 2, 32);
        m.Forward(new int[6], default, 1, 6);
        var shown = new ArenaDebugView(m.Cache!.Acts).Tensors.ToDictionary(t => t.Name);
        Assert.Equal([1, 6, 16], shown["blocks.0.hook_resid_pre"].Shape);
        Assert.Equal([1, 6, 2, 8], shown["blocks.0.attn.hook_q"].Shape);
        Assert.Equal([1, 2, 6, 6], shown["blocks.0.attn.hook_pattern"].Shape); // kept for speed at T ≤ 256
        Assert.False(shown.ContainsKey("blocks.0.attn.hook_attn_scores"));  // not made by this pass
        Assert.Equal(m.Cache.Acts.Names.Count, shown.Count);
    }
}
