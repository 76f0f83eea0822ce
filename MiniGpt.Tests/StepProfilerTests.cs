using System.Diagnostics;
using MiniGpt.Model;
using MiniGpt.Tensors;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

// StepProfiler is global state: these tests must not run beside another profiling test
[Collection("StepProfiler")]
public class StepProfilerTests
{
    private static TrainOptions Options(bool attnOnly) => new()
    {
        Data = "induction", Model = new() { NLayers = 2, DModel = 64, NHeads = 4, NCtx = 32, AttnOnly = attnOnly }, BatchSize = 8,
        Steps = 100, WarmupSteps = 5, EvalInterval = 1000, CheckpointInterval = 1000, Out = Path.Combine(Path.GetTempPath(), "minigpt-profile-test", "m.safetensors"),
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryPhaseOfAStepIsTimedAndThePhasesAddUpToTheStep(bool attnOnly)
    {
        using var pool = new WorkerPool(2);
        WorkerPool.UseOnThisThread(pool);
        try
        {
            var t = Trainer.Start(Options(attnOnly));
            t.Step();
            long t0 = Stopwatch.GetTimestamp();
            StepProfiler.Start();
            for (int i = 0; i < 3; i++) t.Step();
            StepProfiler.Stop();
            double wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;

            double sum = Enum.GetValues<StepPhase>().Sum(StepProfiler.Seconds);
            Assert.InRange(sum, 0.95 * wall, wall);
            // every layer kind this model has is entered once per step and layer, forward and backward
            int L = 2;
            var expected = new Dictionary<StepPhase, int>
            {
                [StepPhase.Embed] = 1, [StepPhase.Qkv] = L, [StepPhase.Attention] = L, [StepPhase.AttnOut] = L, [StepPhase.Unembed] = 1,
                [StepPhase.Loss] = 1, [StepPhase.LossBackward] = 1, [StepPhase.UnembedBackward] = 1, [StepPhase.AttnOutBackward] = L,
                [StepPhase.AttentionBackward] = L, [StepPhase.QkvBackward] = L, [StepPhase.EmbedBackward] = 1, [StepPhase.Optimizer] = 1,
                [StepPhase.Clip] = 1, [StepPhase.ZeroGrad] = 1, [StepPhase.LayerNorm] = (attnOnly ? L : 2 * L) + 1, [StepPhase.LayerNormBackward] = (attnOnly ? L : 2 * L) + 1,
                [StepPhase.MlpIn] = attnOnly ? 0 : L, [StepPhase.Gelu] = attnOnly ? 0 : L, [StepPhase.MlpOut] = attnOnly ? 0 : L,
                [StepPhase.MlpInBackward] = attnOnly ? 0 : L, [StepPhase.GeluBackward] = attnOnly ? 0 : L, [StepPhase.MlpOutBackward] = attnOnly ? 0 : L,
            };
            foreach (var (phase, perStep) in expected)
            {
                Assert.True(3 * perStep == StepProfiler.EntriesOf(phase), $"{phase}: entered {StepProfiler.EntriesOf(phase)} times in 3 steps, expected {3 * perStep}");
                if (perStep > 0) Assert.True(StepProfiler.Seconds(phase) > 0, $"{phase} has no time");
            }
            foreach (var phase in Enum.GetValues<StepPhase>())
                Assert.InRange(StepProfiler.Utilisation(phase), 0, 1.0001);
        }
        finally
        {
            StepProfiler.Stop();
            WorkerPool.UseOnThisThread(null);
        }
    }

    private static int _started;

    // both tasks of the region run at once (each waits for the other to start), then work 20 ms
    private static unsafe void BarrierTask(void* ctx, int task)
    {
        Interlocked.Increment(ref _started);
        while (Volatile.Read(ref _started) < 2) Thread.SpinWait(8);
        long t0 = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(t0).TotalMilliseconds < 20) Thread.SpinWait(8);
    }

    [Fact]
    public unsafe void AParallelPhaseKeepsBothThreadsBusyAndASerialOneOnlyTheCaller()
    {
        using var pool = new WorkerPool(2);
        WorkerPool.UseOnThisThread(pool);
        try
        {
            StepProfiler.Start();
            StepProfiler.Enter(StepPhase.MlpIn);
            _started = 0;
            pool.Run(&BarrierTask, null, 2);
            StepProfiler.Enter(StepPhase.Clip);
            long t0 = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(t0).TotalMilliseconds < 20) { } // serial work on the calling thread
            StepProfiler.Stop();
            // busy = caller's wall (it runs a task the whole region) + the helper's ≥ 20 ms, over 2 × wall: near 1
            // unless the helper woke very late; the serial phase is the caller alone, exactly half
            Assert.InRange(StepProfiler.Utilisation(StepPhase.MlpIn), 0.7, 1.0001);
            Assert.InRange(StepProfiler.Utilisation(StepPhase.Clip), 0.49, 0.51);
        }
        finally
        {
            StepProfiler.Stop();
            WorkerPool.UseOnThisThread(null);
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void ThePhasesFlopsSumToTheStepsFlops(bool attnOnly, bool noLayerNorm)
    {
        var c = new ModelConfig { NLayers = 3, DModel = 96, NHeads = 3, DHead = 40, DMlp = 200, NCtx = 48, DVocab = 101, AttnOnly = attnOnly, NormalizationType = noLayerNorm ? null : "LN" };
        double sum = Enum.GetValues<StepPhase>().Sum(p => Flops.InPhase(p, c, 5, 48));
        double want = Flops.PerStep(c, 5, 48);
        Assert.True(Math.Abs(sum - want) <= 1e-9 * want, $"phases sum to {sum:E6}, the step is {want:E6}");
    }
}
