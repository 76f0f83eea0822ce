using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Generation;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;
using MiniGpt.Train;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// Key/value-cached generation (Generator) against the uncached loop it replaces: the logits of every
/// generated token, for every model variant and both kernel sets, past n_ctx, for any thread count, without
/// allocating; and the sample verb's text with and without the cache.
/// </summary>
public class GenerationTests
{
    private static ModelConfig Variant(string name)
    {
        // init 0.3 (above the default 0.8/√32 ≈ 0.14) for logits of a few units and sharp attention, so a wrong
        // position, mask or head shows far above the 1e-5 tolerance
        var c = new ModelConfig { NLayers = 2, DModel = 32, NHeads = 4, DHead = 8, DMlp = 64, NCtx = 32, DVocab = 40, InitRange = 0.3 };
        return name switch
        {
            "ln-mlp" => c,
            "none-attn-only" => c with { NormalizationType = null, AttnOnly = true, DMlp = 0 },
            "shortformer" => c with { PositionalEmbeddingType = "shortformer" },
            "lnpre-attn-only" => c with { NormalizationType = "LNPre", AttnOnly = true, DMlp = 0 },
            "0-layers" => c with { NLayers = 0 },
            _ => throw new ArgumentException(name),
        };
    }

    private static GptModel Model(string variant, IKernels kernels)
    {
        var m = GptModel.Create(Variant(variant), 7, kernels);
        // LayerNorm gains and biases (and the other biases) away from 1 and 0, so that a missing one shows
        var rng = new Rng(11);
        foreach (var t in m.Params.Tensors)
            if (!t.Name.Contains(".W_", StringComparison.Ordinal))
            {
                var s = t.Span;
                for (int i = 0; i < s.Length; i++) s[i] += (float)(0.2 * rng.NextNormal());
            }
        return m;
    }

    [Theory]
    [InlineData("ln-mlp", "fast")]
    [InlineData("ln-mlp", "reference")]
    [InlineData("none-attn-only", "fast")]
    [InlineData("none-attn-only", "reference")]
    [InlineData("shortformer", "fast")]
    [InlineData("shortformer", "reference")]
    [InlineData("lnpre-attn-only", "fast")]
    [InlineData("0-layers", "fast")]
    [InlineData("0-layers", "reference")]
    public void CachedLogitsEqualUncachedOver200GeneratedTokens(string variant, string kernels)
    {
        var k = Kernels.Named(kernels);
        // two models with the same weights: each generator runs its own model's forward passes
        var cachedModel = Model(variant, k);
        var uncachedModel = Model(variant, k);
        var cached = new Generator(cachedModel);
        var uncached = new Generator(uncachedModel, useCache: false);
        int V = cachedModel.Config.DVocab, nCtx = cachedModel.Config.NCtx;
        int[] prompt = [3, 1, 4, 1, 5];
        var rng = new Rng(42);
        var probs = new float[V];
        var order = new int[V];

        float worst = Diff(cached.Prefill(prompt), uncached.Prefill(prompt), out float scale);
        float maxScale = scale;
        int generated = 0, decodedSteps = 0;
        for (int i = 0; i < 200; i++)
        {
            int next = SampleVerb.Pick(uncached.Logits, 1f, 0, ref rng, probs, order);
            bool decodes = cached.Length < nCtx; // a one-position step; past n_ctx the exact window is a whole forward
            float d = Diff(cached.Append(next), uncached.Append(next), out scale);
            worst = Math.Max(worst, d);
            maxScale = Math.Max(maxScale, scale);
            generated++;
            if (decodes) decodedSteps++;
            Assert.True(d <= 1e-5f, $"{variant}/{kernels}: token {i} (context {Math.Min(prompt.Length + i + 1, nCtx)}): max |cached − uncached| logit = {d:E2}");
        }
        Assert.Equal(200, generated);
        Assert.Equal(nCtx - prompt.Length, decodedSteps); // the cache decoded every position up to n_ctx, then the window slid
        Assert.True(maxScale > 1f, $"logits of at most {maxScale}: too small for the 1e-5 comparison to mean anything");
    }

    private static float Diff(ReadOnlySpan<float> a, ReadOnlySpan<float> b, out float scale)
    {
        float d = 0;
        scale = 0;
        for (int i = 0; i < a.Length; i++)
        {
            d = Math.Max(d, Math.Abs(a[i] - b[i]));
            scale = Math.Max(scale, Math.Abs(b[i]));
        }
        return d;
    }

    [Fact]
    public void HalfSlideDecodesTheWindowItSaysAndReprefillsEveryHalfWindow()
    {
        // the policy's logits are those of a forward pass over its own window: the last n_ctx/2 tokens at a slide,
        // growing by one per token until n_ctx
        var model = Model("ln-mlp", Kernels.Fast);
        var reference = Model("ln-mlp", Kernels.Fast);
        var gen = new Generator(model, policy: SlidePolicy.Half);
        int nCtx = model.Config.NCtx, V = model.Config.DVocab;
        var seq = new List<int> { 2, 7 };
        gen.Prefill(seq.ToArray());
        int windowStart = 0, slides = 0;
        var rng = new Rng(5);
        for (int i = 0; i < 100; i++)
        {
            int next = rng.NextInt(V);
            seq.Add(next);
            if (seq.Count - windowStart > nCtx) { windowStart = seq.Count - nCtx / 2; slides++; }
            var logits = gen.Append(next);
            var window = seq.GetRange(windowStart, seq.Count - windowStart).ToArray();
            reference.Forward(window, ReadOnlySpan<int>.Empty, 1, window.Length);
            Assert.Equal(window.Length, gen.Length);
            Assert.True(Diff(logits, reference.Logits.Slice((window.Length - 1) * V, V), out _) <= 1e-5f, $"token {i}");
        }
        Assert.Equal(5, slides); // 102 tokens: full at 32, then a slide to 16 every 17 tokens
    }

    [Fact]
    public void CachedGenerationIsTheSameForAnyThreadCount()
    {
        // big enough that every GEMV and, past 128 positions, the attention run as tasks on the pool
        var c = new ModelConfig { NLayers = 1, DModel = 128, NHeads = 4, DHead = 32, DMlp = 512, NCtx = 256, DVocab = 300 };
        float[] Run(int threads)
        {
            using var pool = new WorkerPool(threads);
            WorkerPool.UseOnThisThread(pool);
            try
            {
                var gen = new Generator(GptModel.Create(c, 3));
                var prompt = Enumerable.Range(0, 150).Select(i => i * 7 % 300).ToArray();
                var all = new List<float>(gen.Prefill(prompt).ToArray());
                for (int i = 0; i < 60; i++) all.AddRange(gen.Append(i * 13 % 300).ToArray());
                return all.ToArray();
            }
            finally { WorkerPool.UseOnThisThread(null); }
        }
        Assert.Equal(Run(1), Run(2));
        Assert.Equal(Run(1), Run(3));
    }

    [Theory]
    [InlineData(SlidePolicy.Exact)]
    [InlineData(SlidePolicy.Half)]
    public void GeneratingATokenAllocatesNothingInSteadyState(SlidePolicy policy)
    {
        var c = Variant("ln-mlp") with { NCtx = 64 };
        using var pool = new WorkerPool(2);
        WorkerPool.UseOnThisThread(pool);
        try
        {
            var gen = new Generator(GptModel.Create(c, 1), policy: policy);
            gen.Prefill([1]);
            int token = 0;
            long Measure(int count)
            {
                for (int i = 0; i < 40; i++) gen.Append(token++ % c.DVocab); // warm-up: JIT tiering, first-use buffers
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < count; i++) gen.Append(token++ % c.DVocab);
                return GC.GetAllocatedBytesForCurrentThread() - before;
            }
            // positions 41–60: one-position decoding steps
            long decoding = Measure(20);
            Assert.True(decoding == 0, $"20 decoded tokens allocated {decoding} bytes");
            // past n_ctx: the window slides (exact: a forward per token; half: re-prefills between decoded tokens)
            long sliding = Measure(60);
            Assert.True(sliding == 0, $"60 tokens past n_ctx ({policy}) allocated {sliding} bytes");
        }
        finally { WorkerPool.UseOnThisThread(null); }
    }

    [Fact]
    public void CachedGenerationRefusesHooksAndUncachedRunsThem()
    {
        var model = Model("ln-mlp", Kernels.Fast);
        int fired = 0;
        using (model.Hooks.AddForward("blocks.0.attn.hook_pattern", (_, _) => fired++))
        {
            var e = Assert.Throws<InvalidOperationException>(() => new Generator(model).Prefill([1, 2]));
            Assert.Contains("useCache: false", e.Message);
            var uncached = new Generator(model, useCache: false);
            uncached.Prefill([1, 2]);
            uncached.Append(3);
            Assert.Equal(2, fired);
        }
        // and a sequence started without hooks refuses one registered halfway
        var gen = new Generator(model);
        gen.Prefill([1, 2]);
        using (model.Hooks.AddForward("logits", (_, _) => { }))
            Assert.Throws<InvalidOperationException>(() => gen.Append(3));
        gen.Append(3);
    }

    // GEMV shapes [G, I, O] reaching every path of Gemv.Forward: G = 3 matrices [37, 203] (one band; 203 columns are
    // 12 Vector512 + 1 Vector256 + 0 Vector128 + 3 scalar columns; 37 rows are 9 four-row passes and 1 single row),
    // [150, 1103] (two bands, 1024 + 79 columns = 4·16 + 8 + 4 + 3, split into 64-row chunks: 64, 64, 22 rows, so
    // partial sums added in chunk order), and [37, 8271] (9 bands: no row split, each band writes y directly).
    // Run with DOTNET_EnableAVX512F=0 and with DOTNET_EnableAVX=0 too, for the 256- and 128-bit paths.
    public static TheoryData<int, int, int> GemvShapes => new() { { 3, 37, 203 }, { 1, 150, 1103 }, { 1, 37, 8271 } };

    private static (float[] X, float[] W, float[] B) GemvOperands(int G, int I, int O)
    {
        var rng = new Rng(9);
        float[] R(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)rng.NextNormal(); return a; }
        return (R(I), R(G * I * O), R(G * O));
    }

    [Theory]
    [MemberData(nameof(GemvShapes))]
    public void GemvMatchesADirectSumForEveryColumnTail(int G, int I, int O)
    {
        var (x, w, b) = GemvOperands(G, I, O);
        foreach (var k in new[] { Kernels.Fast, Kernels.Reference })
            foreach (bool bias in new[] { true, false })
            {
                var y = new float[G * O];
                k.Gemv(x, w, bias ? b : default, y, G, I, O);
                for (int g = 0; g < G; g++)
                    for (int o = 0; o < O; o++)
                    {
                        double s = bias ? b[g * O + o] : 0;
                        for (int i = 0; i < I; i++) s += (double)x[i] * w[(g * I + i) * O + o];
                        Assert.True(Math.Abs(s - y[g * O + o]) < 1e-4, $"{k.Name} [{G}, {I}, {O}] g {g} o {o}: {y[g * O + o]} vs {s}");
                    }
            }
    }

    [Theory]
    [MemberData(nameof(GemvShapes))]
    public void GemvGivesTheSameBitsOnOneTwoAndThreeThreads(int G, int I, int O)
    {
        var (x, w, b) = GemvOperands(G, I, O);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            WorkerPool.UseOnThisThread(pool);
            try
            {
                var y = new float[G * O];
                Gemv.Forward(x, w, b, y, G, I, O);
                if (first == null) first = y;
                else
                    for (int o = 0; o < y.Length; o++)
                        Assert.True(BitConverter.SingleToInt32Bits(first[o]) == BitConverter.SingleToInt32Bits(y[o]),
                            $"[{G}, {I}, {O}] y[{o}] on {threads} threads: {y[o]} vs {first[o]} on 1");
            }
            finally { WorkerPool.UseOnThisThread(null); }
        }
    }

    [Fact]
    public void SamplePrintsTheSameTextWithAndWithoutTheCache()
    {
        string dir = TestPaths.TempDir("sample-cache");
        string text = "the quick brown fox jumps over the lazy dog. ";
        var tok = CharTokenizer.FromText(text);
        var c = new ModelConfig { NLayers = 2, DModel = 32, NHeads = 4, DHead = 8, DMlp = 64, NCtx = 16, DVocab = tok.VocabSize };
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, GptModel.Create(c, 5), tok.ToJson());
        string[] args = ["sample", "--checkpoint", ckpt, "--prompt", "the ", "--tokens", "60", "--seed", "3", "--threads", "1"];
        var cached = TestPaths.Cli(args);
        var uncached = TestPaths.Cli([.. args, "--no-cache"]);
        Assert.True(cached.Code == 0, cached.Err);
        Assert.True(uncached.Code == 0, uncached.Err);
        Assert.Equal(uncached.Out, cached.Out);
        Assert.Equal(4 + 60, cached.Out.TrimEnd('\n').Length); // past n_ctx = 16
        var topK = TestPaths.Cli([.. args, "--top-k", "5", "--temperature", "0.7"]);
        Assert.Equal(TestPaths.Cli([.. args, "--top-k", "5", "--temperature", "0.7", "--no-cache"]).Out, topK.Out);
        var half = TestPaths.Cli([.. args, "--slide", "half"]);
        Assert.True(half.Code == 0, half.Err);
        TestPaths.AssertOneLineError(TestPaths.Cli([.. args, "--slide", "quarter"]), 2, "--slide 'quarter'");
        TestPaths.AssertOneLineError(TestPaths.Cli([.. args, "--slide", "half", "--no-cache"]), 2, "needs the cache");
        Directory.Delete(dir, true);
    }
}
