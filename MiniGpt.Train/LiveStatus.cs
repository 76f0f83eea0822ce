using System.Diagnostics;
using MiniGpt.Training;

namespace MiniGpt.Train;

/// <summary>
/// The status beside train's live bar: the mean loss since the last log line, the last validation loss,
/// tokens/s and the ETA over the steps of this session. Updated every step (two additions), formatted only
/// when the bar is redrawn.
/// </summary>
public sealed class LiveStatus(Trainer trainer)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly long _startStep = trainer.Optimizer.Step;
    private readonly long _tokensPerStep = (long)trainer.Options.BatchSize * trainer.Model.Config.NCtx;
    private double _lossSum;
    private int _lossCount;
    private float? _val;

    public void Stepped(float loss) { _lossSum += loss; _lossCount++; }

    public void Logged(TrainLog log)
    {
        if (log.ValLoss is float v) _val = v;
        if (log.Step > 0) { _lossSum = 0; _lossCount = 0; }
    }

    public string Status(long step)
    {
        int steps = trainer.Options.Steps;
        double secs = _clock.Elapsed.TotalSeconds;
        long done = step - _startStep;
        var parts = new List<string> { $"step {step}/{steps}" };
        if (_lossCount > 0) parts.Add($"loss {_lossSum / _lossCount:F4}");
        if (_val is float v) parts.Add($"val {v:F4}");
        if (done > 0 && secs > 0)
        {
            parts.Add($"{done * _tokensPerStep / secs:N0} tok/s");
            parts.Add($"ETA {TimeSpan.FromSeconds(secs / done * (steps - step)):m\\:ss}");
        }
        return string.Join(" | ", parts);
    }
}
