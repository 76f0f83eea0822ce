using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The model's two attention paths: tiled (the default when nothing asks for the pattern: per query row the softmax's
/// max and sum, the pattern recomputed in backward) and materialised (GptModel.KeepPatterns, or a hook on hook_pattern /
/// hook_attn_scores). They must give the same bits everywhere, and the cache must never show a pattern the last pass did
/// not make. (FastKernelTests compares the two paths layer by layer, and the fast tiled kernels against the reference ones.)
/// </summary>
public class TiledAttentionTests
{
    private static ModelConfig Config(int layers, int dModel, int heads, int dHead, bool attnOnly, string? norm, string pos, int nCtx) => new()
    {
        NLayers = layers, DModel = dModel, NHeads = heads, DHead = dHead, DMlp = attnOnly ? 0 : 2 * dModel, NCtx = nCtx, DVocab = 29,
        AttnOnly = attnOnly, NormalizationType = norm, PositionalEmbeddingType = pos,
    };

    private static (int[] X, int[] Y) Tokens(int n, int vocab, int seed)
    {
        var r = new Random(seed);
        return (Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray(), Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray());
    }

    // loss, logits, every layer's z and attn_out, then every gradient, after one forward and backward pass
    private static float[] Pass(GptModel m, int B, int T, int seed)
    {
        var (x, y) = Tokens(B * T, m.Config.DVocab, seed);
        float loss = m.Forward(x, y, B, T);
        m.ZeroGrad();
        m.Backward(1f / (B * T));
        var a = m.Cache!;
        int N = B * T, HD = m.Config.NHeads * m.Config.DHead, D = m.Config.DModel;
        var all = new List<float> { loss };
        all.AddRange(m.Logits.ToArray());
        foreach (var blk in a.Blocks)
        {
            all.AddRange(blk.Z.Span[..(N * HD)].ToArray());
            all.AddRange(blk.AttnOut.Span[..(N * D)].ToArray());
        }
        all.AddRange(m.Grads.Buffer);
        return [.. all];
    }

    private static void SameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int first = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(first == expected.Length, $"{what}: differ first at {first} ({(first < actual.Length ? $"{actual[first]:R} vs {expected[first]:R}" : "")})");
    }

    /// <summary>
    /// Forward outputs (z, attn_out, logits, loss) and every gradient are bitwise the same tiled and materialised, on both
    /// kernel sets, and for 1, 2 and 3 worker threads: T = 1, T not a multiple of the 6-row blocks, T > 64 (past the 16 short
    /// rows, several 32-wide column strips), d_head not a multiple of 32, one head and several, with and without LayerNorm
    /// and MLPs, shortformer positions, and sharpened attention.
    /// </summary>
    [Theory]
    [InlineData(2, 32, 2, 16, false, "LN", "standard", 8, 2, 1, 1f)]
    [InlineData(2, 48, 2, 24, false, "LN", "standard", 16, 3, 13, 1f)]
    [InlineData(1, 40, 1, 40, true, null, "standard", 80, 1, 70, 3f)]
    [InlineData(2, 60, 3, 20, false, "LN", "shortformer", 40, 2, 37, 1f)]
    [InlineData(1, 32, 4, 8, true, "LNPre", "standard", 24, 2, 24, 4f)]
    public void TheModelIsBitwiseTheSameTiledOrMaterialised(int layers, int dModel, int heads, int dHead, bool attnOnly, string? norm, string pos,
        int nCtx, int B, int T, float sharpen)
    {
        var cfg = Config(layers, dModel, heads, dHead, attnOnly, norm, pos, nCtx);
        foreach (var kernels in new[] { Kernels.Fast, Kernels.Reference })
        {
            float[]? first = null;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var pool = new WorkerPool(threads);
                WorkerPool.UseOnThisThread(pool);
                try
                {
                    var tiled = Model(cfg, kernels, sharpen);
                    tiled.KeepPatternsForSpeed = false;
                    var forSpeed = Model(cfg, kernels, sharpen); // tiled forward writing the pattern, the materialised backward
                    var kept = Model(cfg, kernels, sharpen);
                    kept.KeepPatterns = true;
                    var t = Pass(tiled, B, T, 5);
                    var k = Pass(kept, B, T, 5);
                    var f = Pass(forSpeed, B, T, 5);
                    string what = $"{kernels.Name}, {threads} threads";
                    SameBits(k, t, what + ": tiled vs materialised");
                    SameBits(k, f, what + ": pattern kept for speed vs materialised");
                    Assert.Equal(0, tiled.Cache!.PatternFloats); // nothing [B, H, T, T] was made
                    Assert.True(kept.Cache!.PatternFloats >= 2L * layers * B * heads * T * T);
                    Assert.True(Activations.PatternFitsForSpeed(cfg, T), "these small models keep the pattern for speed");
                    Assert.Equal(forSpeed.Cache!.PatternFloats, forSpeed.Cache.Blocks.Sum(x => (long)x.Pattern!.Length)); // the pattern, no scores
                    Assert.True(forSpeed.Cache.PatternFloats >= (long)layers * B * heads * T * T);
                    for (int l = 0; l < layers; l++)
                        Assert.True(kept.Cache.Acts[$"blocks.{l}.attn.hook_pattern"].Span[..(B * heads * T * T)]
                            .SequenceEqual(forSpeed.Cache.Acts[$"blocks.{l}.attn.hook_pattern"].Span[..(B * heads * T * T)]), what + ": the kept pattern");
                    first ??= t;
                    SameBits(first, t, what + " vs 1 thread");
                }
                finally { WorkerPool.UseOnThisThread(null); }
            }
        }
    }

    // a model whose W_Q is scaled up, so that some softmaxes saturate (exp far from 1, sums dominated by one term)
    private static GptModel Model(ModelConfig cfg, IKernels kernels, float sharpen)
    {
        var m = GptModel.Create(cfg, 11, kernels);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            var wq = m.Params[$"blocks.{l}.attn.W_Q"].Span;
            System.Numerics.Tensors.TensorPrimitives.Multiply(wq, sharpen, wq);
        }
        return m;
    }

    /// <summary>
    /// Cache.Acts shows a layer's pattern only after a pass that made it: absent (a one-line error naming the switch) after a
    /// tiled pass, present with the pass's values under KeepPatterns or a hook there, and absent again (not stale) after.
    /// </summary>
    [Fact]
    public void TheCacheShowsAPatternOnlyAfterAPassThatMadeIt()
    {
        var m = GptModel.Create(Config(2, 32, 2, 16, false, "LN", "standard", 12), 3);
        m.KeepPatternsForSpeed = false;
        var (x, _) = Tokens(2 * 12, 29, 1);
        m.Forward(x, default, 2, 12);
        var e = Assert.Throws<KeyNotFoundException>(() => m.Cache!.Acts["blocks.1.attn.hook_pattern"]);
        Assert.Contains("KeepPatterns", e.Message);
        Assert.Contains(GptModel.KeepPatternsVariable, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(m.Cache!.Acts.Contains("blocks.0.attn.hook_attn_scores"));
        Assert.Throws<KeyNotFoundException>(() => m.Cache!.Acts["blocks.0.attn.hook_nonsense"]);

        var cached = m.RunWithCache(x, 2, 12, n => n.EndsWith("hook_pattern"));
        m.KeepPatterns = true;
        m.Forward(x, default, 2, 12);
        for (int l = 0; l < 2; l++)
        {
            var p = m.Cache!.Acts[$"blocks.{l}.attn.hook_pattern"].Span[..(2 * 2 * 12 * 12)];
            Assert.True(p.SequenceEqual(cached[$"blocks.{l}.attn.hook_pattern"].Span), $"layer {l}: the kept pattern is not the cached one");
            Assert.True(m.Cache.Acts.Contains($"blocks.{l}.attn.hook_attn_scores"));
        }

        m.KeepPatterns = false;
        m.Forward(x, default, 2, 12);
        Assert.Throws<KeyNotFoundException>(() => m.Cache!.Acts["blocks.0.attn.hook_pattern"]);
        // a hook on one layer's pattern materialises that layer's only
        using (m.Hooks.AddForward("blocks.1.attn.hook_pattern", (_, _) => { }))
            m.Forward(x, default, 2, 12);
        Assert.True(m.Cache!.Acts.Contains("blocks.1.attn.hook_pattern"));
        Assert.True(m.Cache.Acts.Contains("blocks.1.attn.hook_attn_scores"));
        Assert.False(m.Cache.Acts.Contains("blocks.0.attn.hook_pattern"));
        // a pattern kept for speed is this pass's pattern and shows; the scores were not kept
        m.KeepPatternsForSpeed = true;
        m.Forward(x, default, 2, 12);
        for (int l = 0; l < 2; l++)
        {
            Assert.True(m.Cache!.Acts[$"blocks.{l}.attn.hook_pattern"].Span[..(2 * 2 * 12 * 12)].SequenceEqual(cached[$"blocks.{l}.attn.hook_pattern"].Span),
                $"layer {l}: the pattern kept for speed is not the cached one");
            Assert.False(m.Cache.Acts.Contains($"blocks.{l}.attn.hook_attn_scores"));
        }
    }

    /// <summary>
    /// A backward hook on hook_pattern registered after a tiled forward pass still sees d pattern: backward rebuilds the
    /// pattern that pass would have kept, and the gradients are those of a pass that had the hook all along, bit for bit.
    /// </summary>
    [Fact]
    public void ABackwardHookAddedAfterTheForwardPassGetsThePattern()
    {
        var cfg = Config(2, 32, 2, 16, false, "LN", "standard", 12);
        var (x, y) = Tokens(2 * 12, 29, 2);
        HookFn halve = (t, _) => System.Numerics.Tensors.TensorPrimitives.Multiply(t.Span, 0.5f, t.Span);

        var before = GptModel.Create(cfg, 4);
        using (before.Hooks.AddBackward("blocks.0.attn.hook_pattern", halve))
        {
            before.Forward(x, y, 2, 12);
            before.ZeroGrad();
            before.Backward(1f / 24);
        }

        var after = GptModel.Create(cfg, 4);
        after.KeepPatternsForSpeed = false;
        after.Forward(x, y, 2, 12);
        Assert.False(after.Cache!.PatternsKept(0));
        int fired = 0;
        using (after.Hooks.AddBackward("blocks.0.attn.hook_pattern", (t, p) => { fired++; halve(t, p); }))
        {
            after.ZeroGrad();
            after.Backward(1f / 24);
        }
        Assert.Equal(1, fired);
        SameBits(before.Grads.Buffer, after.Grads.Buffer, "gradients with the hook added after forward");
        Assert.True(after.Cache.PatternsKept(0));

        // and the hook did something: without it the gradients differ
        var none = GptModel.Create(cfg, 4);
        none.Forward(x, y, 2, 12);
        none.ZeroGrad();
        none.Backward(1f / 24);
        Assert.False(none.Grads.Buffer.AsSpan().SequenceEqual(after.Grads.Buffer));
    }

    /// <summary>The memory estimate counts the [B, H, T, T] scores and pattern of every layer only when they are kept.</summary>
    [Fact]
    public void TheMemoryEstimateCountsThePatternsOnlyWhenKept()
    {
        var cfg = Config(3, 64, 4, 16, false, "LN", "standard", 320);
        long tiled = Activations.EstimateFloats(cfg, 8), kept = Activations.EstimateFloats(cfg, 8, keepPatterns: true);
        Assert.Equal(2L * 3 * 8 * 4 * 320 * 320, kept - tiled);
        // what a tiled training pass allocates is the estimate's activations (the pattern buffers are not made)
        var m = GptModel.Create(cfg, 1);
        var (x, y) = Tokens(8 * 320, 29, 3);
        m.Forward(x, y, 8, 320);
        m.ZeroGrad();
        m.Backward(1f / (8 * 320));
        Assert.Equal(0, m.Cache!.PatternFloats);
        Assert.Equal(tiled, m.Cache.Acts.Buffer.LongLength + m.Cache.Scratch.Buffer.LongLength);

        // a short context keeps each layer's pattern (not the scores) for the backward pass, and the estimate counts it
        var shortCfg = Config(3, 64, 4, 16, false, "LN", "standard", 32);
        Assert.True(Activations.PatternFitsForSpeed(shortCfg, 32));
        Assert.False(Activations.PatternFitsForSpeed(cfg, 320)); // past 256, and the pattern more than half the layer's activations
        var s = GptModel.Create(shortCfg, 1);
        var (xs, ys) = Tokens(8 * 32, 29, 4);
        s.Forward(xs, ys, 8, 32);
        s.ZeroGrad();
        s.Backward(1f / (8 * 32));
        Assert.Equal(3L * 8 * 4 * 32 * 32, s.Cache!.PatternFloats);
        Assert.Equal(Activations.EstimateFloats(shortCfg, 8), s.Cache.Acts.Buffer.LongLength + s.Cache.Scratch.Buffer.LongLength + s.Cache.PatternFloats);
    }
}
