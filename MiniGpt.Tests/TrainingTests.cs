using MiniGpt.Data;
using MiniGpt.Tensors;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

public class TrainingTests
{
    private static TrainOptions Tiny(string outPath, string data = "induction") => new()
    {
        Data = data, Model = new() { NLayers = 2, DModel = 32, NHeads = 2, NCtx = 16 }, BatchSize = 8, Steps = 30, WarmupSteps = 5,
        EvalInterval = 10, EvalBatches = 2, LogInterval = 10, CheckpointInterval = 1000, Out = outPath, Seed = 42,
    };

    /// <summary>The induction task trains attention-only models unless told otherwise.</summary>
    private static TrainOptions WithMlps(TrainOptions o) => o with { Model = o.Model with { AttnOnly = false } };

    private static (float[] Losses, float[] Params) Train(TrainOptions o, int threads)
    {
        using var pool = new WorkerPool(threads);
        WorkerPool.UseOnThisThread(pool);
        try
        {
            var t = Trainer.Start(o);
            var losses = new float[o.Steps];
            for (int i = 0; i < o.Steps; i++) losses[i] = t.Step();
            return (losses, t.Model.Params.Buffer.ToArray());
        }
        finally { WorkerPool.UseOnThisThread(null); }
    }

    [Fact]
    public void SameSeedGivesTheSameLossCurveWithOneAndTwoThreads()
    {
        string dir = TestPaths.TempDir("det");
        var tiny = WithMlps(Tiny(Path.Combine(dir, "m.safetensors")));
        var o = tiny with { Model = tiny.Model with { DModel = 64, NCtx = 32 }, BatchSize = 16 };
        var a = Train(o, 1);
        var b = Train(o, 2);
        var c = Train(o, 3);
        Assert.Equal(a.Losses, b.Losses);
        Assert.Equal(a.Losses, c.Losses);
        Assert.True(a.Params.AsSpan().SequenceEqual(b.Params), "weights differ between 1 and 2 threads");
        Assert.True(a.Losses[^1] < a.Losses[0], "the loss did not fall at all");
        var d = Train(o with { Seed = 43 }, 2);
        Assert.NotEqual(a.Losses, d.Losses);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ResumedRunEqualsUninterruptedRunBitForBit()
    {
        string dir = TestPaths.TempDir("resume");
        var o = WithMlps(Tiny(Path.Combine(dir, "full.safetensors"))) with { Steps = 24, CheckpointInterval = 10 };
        var full = Trainer.Start(o);
        full.Run(_ => { });

        // the same run, stopped after step 10's checkpoint and resumed from it
        var first = Trainer.Start(o with { Out = Path.Combine(dir, "part.safetensors") });
        first.Run(_ => { }, stop: () => first.Optimizer.Step == 10);
        Assert.Equal(10, first.Optimizer.Step);
        var resumed = Trainer.Resume(Path.Combine(dir, "part.safetensors"));
        Assert.Equal(10, resumed.Optimizer.Step);
        resumed.Run(_ => { });

        Assert.Equal(24, resumed.Optimizer.Step);
        Assert.True(full.Model.Params.Buffer.AsSpan().SequenceEqual(resumed.Model.Params.Buffer), "weights differ after resume");
        Assert.True(full.Optimizer.M.Buffer.AsSpan().SequenceEqual(resumed.Optimizer.M.Buffer), "Adam moments differ after resume");
        var tail = full.History.Where(h => h.Step > 10).Select(h => (h.Step, h.Loss, h.ValLoss)).ToList();
        Assert.Equal(tail, resumed.History.Select(h => (h.Step, h.Loss, h.ValLoss)).ToList());
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ASaveInterruptedBetweenStateAndWeightsStillResumesExactly()
    {
        string dir = TestPaths.TempDir("resume-crash");
        var o = WithMlps(Tiny(Path.Combine(dir, "full.safetensors"))) with { Steps = 24, CheckpointInterval = 10 };
        var full = Trainer.Start(o);
        full.Run(_ => { });

        string part = Path.Combine(dir, "part.safetensors");
        var first = Trainer.Start(o with { Out = part });
        first.Run(_ => { }, stop: () => first.Optimizer.Step == 10);
        var weightsAt10 = File.ReadAllBytes(part);
        var second = Trainer.Resume(part);
        second.Run(_ => { }, stop: () => second.Optimizer.Step == 20);
        // the crash: the state of step 20 reached the disk, the weights of step 20 did not
        File.WriteAllBytes(part, weightsAt10);
        var resumed = Trainer.Resume(part);
        Assert.Equal(10, resumed.Optimizer.Step);
        resumed.Run(_ => { });
        Assert.True(full.Model.Params.Buffer.AsSpan().SequenceEqual(resumed.Model.Params.Buffer), "weights differ after resuming from the previous state");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ShortShakespeareRunFallsWellBelowTheUnigramEntropy()
    {
        string dir = TestPaths.TempDir("shakespeare");
        var o = new TrainOptions
        {
            Data = TestPaths.Shakespeare, Model = new() { NLayers = 1, DModel = 64, NHeads = 4, NCtx = 32 }, BatchSize = 16, Steps = 300,
            WarmupSteps = 30, Lr = 3e-3f, EvalInterval = 300, EvalBatches = 20, CheckpointInterval = 1000,
            Out = Path.Combine(dir, "m.safetensors"),
        };
        var t = Trainer.Start(o);
        t.Run(_ => { });
        float val = t.History[^1].ValLoss!.Value;

        // unigram entropy of the characters (nats): what a model that ignores context can reach
        var counts = new Dictionary<char, int>();
        string text = File.ReadAllText(TestPaths.Shakespeare);
        foreach (char ch in text) counts[ch] = counts.GetValueOrDefault(ch) + 1;
        double h = counts.Values.Sum(c => -(double)c / text.Length * Math.Log((double)c / text.Length));
        Assert.True(val < h - 0.6, $"val loss {val:F3} is not well below the unigram entropy {h:F3}");
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData(true, "LN", "standard")]
    [InlineData(false, "none", "shortformer")]
    public void TrainingStepAllocatesNothingInSteadyState(bool attnOnly, string norm, string pos)
    {
        string dir = TestPaths.TempDir("alloc");
        var tiny = Tiny(Path.Combine(dir, "m.safetensors"));
        var model = tiny.Model with { AttnOnly = attnOnly, NormalizationType = norm == "none" ? null : norm, PositionalEmbeddingType = pos, DModel = 64, NCtx = 32 };
        var t = Trainer.Start(tiny with { Model = model });
        // a pool of its own, so the measurement does not depend on what the tests beside this one do with the shared pool
        using var pool = new WorkerPool(2);
        WorkerPool.UseOnThisThread(pool);
        var perStep = new long[10];
        try
        {
            for (int i = 0; i < 5; i++) t.Step(); // JIT, tiering, first-use buffers
            for (int i = 0; i < perStep.Length; i++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                t.Step();
                perStep[i] = GC.GetAllocatedBytesForCurrentThread() - before;
            }
        }
        finally { WorkerPool.UseOnThisThread(null); }
        Assert.True(perStep.Sum() == 0, $"10 training steps allocated {perStep.Sum()} bytes (per step: {string.Join(", ", perStep)})");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TiedEmbeddingsKeepUnembedEqualToTheEmbeddingTransposed()
    {
        string dir = TestPaths.TempDir("tie");
        var t = Trainer.Start(Tiny(Path.Combine(dir, "m.safetensors")) with { TieEmbeddings = true });
        var c = t.Model.Config;
        var wE0 = t.Model.Params["embed.W_E"].Span.ToArray();
        for (int i = 0; i < 5; i++) t.Step();
        var wE = t.Model.Params["embed.W_E"].Span;
        var wU = t.Model.Params["unembed.W_U"].Span;
        Assert.False(wE.SequenceEqual(wE0), "W_E did not train");
        for (int v = 0; v < c.DVocab; v++)
            for (int d = 0; d < c.DModel; d++) Assert.Equal(wE[v * c.DModel + d], wU[d * c.DVocab + v]);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysToTheFloor()
    {
        Assert.Equal(1e-3f / 11, LrSchedule.At(0, 1e-3f, 1e-4f, 10, 100), 6);
        Assert.Equal(1e-3f, LrSchedule.At(10, 1e-3f, 1e-4f, 10, 100), 6);
        Assert.Equal((1e-3f + 1e-4f) / 2, LrSchedule.At(55, 1e-3f, 1e-4f, 10, 100), 6);
        Assert.Equal(1e-4f, LrSchedule.At(100, 1e-3f, 1e-4f, 10, 100), 6);
    }

    [Fact]
    public void GradClipScalesToTheMaximumNorm()
    {
        var g = new float[] { 3, 4, 0 };
        Assert.Equal(5f, GradClip.ClipGlobalNorm(g, 1f));
        Assert.Equal(new[] { 0.6f, 0.8f, 0f }, g);
        Assert.Equal(1f, GradClip.ClipGlobalNorm(g, 2f), 5);
        Assert.Equal(new[] { 0.6f, 0.8f, 0f }, g);
    }

    [Fact]
    public void InductionTaskRepeatsASpanOfVaryingLengthAndDistance()
    {
        var task = new InductionTask(vocab: 128, nCtx: 64, seed: 1);
        var rng = new Rng(3);
        var w = new int[65];
        var m = new bool[65];
        var lengths = new HashSet<int>();
        var distances = new HashSet<int>();
        for (int k = 0; k < 200; k++)
        {
            task.Window(ref rng, w, m);
            int first = Array.IndexOf(m, true), count = m.Count(x => x);
            Assert.True(count >= task.MinSpan - 1 && count <= task.MaxSpan - 1);
            // every predictable target equals the token after an earlier occurrence of the current token
            for (int i = 0; i < 64; i++)
                if (m[i])
                {
                    int prev = Array.LastIndexOf(w, w[i], i - 1);
                    Assert.True(prev >= 0 && w[prev + 1] == w[i + 1], $"window {k}: position {i} is not a copy");
                }
            lengths.Add(count + 1);
            int src = Array.IndexOf(w, w[first]);
            distances.Add(first - src);
        }
        Assert.True(lengths.Count > 5, "span length does not vary");
        Assert.True(distances.Count > 10, "repeat distance does not vary");
    }
}
