using MiniGpt.Train;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>train's clock: elapsed time goes on across a resume, and tokens/s and the ETA leave out a process's warm-up steps.</summary>
public class TrainTimingTests
{
    private static TrainOptions Tiny(string dir) => new()
    {
        Model = new() { NLayers = 1, DModel = 16, NHeads = 2, NCtx = 16 }, BatchSize = 2, Steps = 40, WarmupSteps = 2, EvalBatches = 1,
        EvalInterval = 1000, LogInterval = 5, CheckpointInterval = 1000, Out = Path.Combine(dir, "m.safetensors"),
    };

    [Fact]
    public void AResumedRunsElapsedTimeGoesOnFromWhereItStopped()
    {
        string dir = TestPaths.TempDir("timing-resume");
        var first = Trainer.Start(Tiny(dir));
        var firstLogs = new List<TrainLog>();
        // 20 steps that take at least 20 × 30 ms, then a stop (which writes the checkpoint)
        first.Run(firstLogs.Add, () => { Thread.Sleep(30); return first.Optimizer.Step >= 20; });
        double before = firstLogs[^1].Elapsed.TotalSeconds;
        Assert.True(before >= 0.5, $"{before}");

        var resumed = Trainer.Resume(Tiny(dir).Out);
        var logs = new List<TrainLog>();
        resumed.Run(logs.Add);
        Assert.Equal(25, logs[0].Step);
        // the clock of the run, not of this process: past the 20 steps before the stop
        Assert.True(logs[0].Elapsed.TotalSeconds >= before, $"resumed at {logs[0].Elapsed.TotalSeconds} s, stopped at {before} s");
        Assert.True(logs[^1].Elapsed >= logs[0].Elapsed);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TokensPerSecondAndEtaLeaveOutTheWarmUpSteps()
    {
        string dir = TestPaths.TempDir("timing-warmup");
        var t = Trainer.Start(Tiny(dir));
        var logs = new List<TrainLog>();
        // the first steps of the process are slow (as under the JIT): 4 × 300 ms, then the steps run at their speed
        t.Run(logs.Add, () => { if (t.Optimizer.Step < 5) Thread.Sleep(300); return false; });
        var at25 = logs.Single(l => l.Step == 25);
        long tokensPerStep = 2 * 16;
        double secondsPerStep = tokensPerStep / at25.TokensPerSecond;
        // including the warm-up, a step would take at least 1.2 s / 25 = 48 ms on average
        Assert.True(secondsPerStep < 0.03, $"{secondsPerStep * 1000:F1} ms per step: the warm-up is in the rate");
        Assert.True(at25.Eta.TotalSeconds < 15 * 0.03, $"ETA {at25.Eta}");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void StepRateStartsAfterTheWarmUp()
    {
        var r = new StepRate(100);
        double t = 0;
        for (long s = 101; s <= 100 + StepRate.WarmupSteps; s++) r.Stepped(s, t += 2.0); // slow warm-up: 2 s a step
        for (long s = 101 + StepRate.WarmupSteps; s <= 200; s++) r.Stepped(s, t += 0.01);
        Assert.Equal(100, r.StepsPerSecond(200, t), 6);
        Assert.Equal(3.0, r.Eta(200, 500, t).TotalSeconds, 6);
        // before the warm-up is over, the rate since the start is the only one
        var early = new StepRate(0);
        early.Stepped(1, 0.5); early.Stepped(2, 1.0);
        Assert.Equal(2, early.StepsPerSecond(2, 1.0), 6);
    }

    [Fact]
    public void LogLinesFitIn80ColumnsAndNameTheCopyLoss()
    {
        // the widest a line gets: a long run, an hour in, fast, with an evaluation that has bits per byte
        var log = new TrainLog(123_456, 12.3456f, 11.2345f, 10.1234f, 1.23e-3f, 0.5f, 12_345_678, TimeSpan.FromHours(12.5), TimeSpan.FromHours(99))
            { ValBitsPerByte = 1.234f };
        string text = TrainVerb.Format(log, 999_999);
        foreach (string line in text.Split('\n'))
            Assert.True(line.Length <= 80, $"{line.Length} columns: {line}");
        Assert.Contains("12:30:00", text);            // hours are not dropped
        Assert.Contains("copy loss 10.1234", text);   // not circuits' "repeated-half loss"
        Assert.DoesNotContain("repeat", text);
        Assert.Equal("step  0/10 | val 4.4934 | copy loss 4.4904", TrainVerb.Format(new TrainLog(0, float.NaN, 4.4934f, 4.4904f, 0, 0, 0, TimeSpan.Zero, TimeSpan.Zero), 10));
        Assert.Equal("0:05", MiniGpt.Train.Progress.Duration.Short(TimeSpan.FromSeconds(5.9)));
        Assert.Equal("1:00:01", MiniGpt.Train.Progress.Duration.Short(TimeSpan.FromSeconds(3601)));
    }
}
