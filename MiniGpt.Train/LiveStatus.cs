using System.Diagnostics;
using MiniGpt.Train.Progress;
using MiniGpt.Training;

namespace MiniGpt.Train;

/// <summary>
/// The status beside train's live bar: the mean loss since the last log line, the last validation loss,
/// tokens/s and the ETA, measured as the log lines measure them (<see cref="StepRate"/>: after this
/// process's warm-up steps). Updated every step (two additions and a compare), formatted only when the bar is redrawn.
/// </summary>
public sealed class LiveStatus(Trainer trainer)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly StepRate _rate = new(trainer.Optimizer.Step);
    private readonly long _tokensPerStep = (long)trainer.Options.BatchSize * trainer.Model.Config.NCtx;
    private double _lossSum;
    private int _lossCount;
    private float? _val;

    public void Stepped(long step, float loss)
    {
        _lossSum += loss; _lossCount++;
        _rate.Stepped(step, _clock.Elapsed.TotalSeconds);
    }

    public void Logged(TrainLog log)
    {
        if (log.ValLoss is float v) _val = v;
        if (log.Step > 0) { _lossSum = 0; _lossCount = 0; }
    }

    public string Status(long step)
    {
        int steps = trainer.Options.Steps;
        double secs = _clock.Elapsed.TotalSeconds;
        var parts = new List<string> { $"step {step}/{steps}" };
        if (_lossCount > 0) parts.Add($"loss {_lossSum / _lossCount:F4}");
        if (_val is float v) parts.Add($"val {v:F4}");
        if (_rate.StepsPerSecond(step, secs) is var r and > 0)
        {
            parts.Add($"{r * _tokensPerStep:N0} tok/s");
            parts.Add($"ETA {Duration.Short(_rate.Eta(step, steps, secs))}");
        }
        return string.Join(" | ", parts);
    }
}
