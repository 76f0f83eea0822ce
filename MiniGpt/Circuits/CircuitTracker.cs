using MiniGpt.Model;
using MiniGpt.Training;

namespace MiniGpt.Circuits;

/// <summary>
/// train --track-circuits: at every evaluation, scores every head on repeated random sequences
/// (<see cref="HeadScores.Compute"/>, batch 8 and a fixed seed, so every evaluation sees the same
/// sequences and the scores are comparable from step to step), appends them to the circuits log and
/// returns the progress-line suffix naming, for each role-giving score, the head that scores highest. The
/// phase change (induction heads forming) then shows as a jump in the induction score.
/// Reading scores runs a forward pass with hooks but changes no weight and draws nothing from the
/// data RNG, so a tracked run trains exactly as an untracked one.
/// </summary>
public sealed class CircuitTracker
{
    /// <summary>Sequences per evaluation: cheap (a few ms for the default model) and enough to rank heads.</summary>
    public const int Batch = 8;

    private readonly GptModel _model;
    private readonly HeadScoreSet _scores;
    public string LogPath { get; }

    /// <param name="append">false for a new run (the log starts empty), true when resuming one.</param>
    /// <param name="scores">the scores to log (null: <see cref="HeadScoreSet.Default"/>).</param>
    public CircuitTracker(GptModel model, string checkpoint, bool append, HeadScoreSet? scores = null)
    {
        var c = model.Config;
        if (c.NLayers == 0) throw new UserError("--track-circuits needs a model with attention heads: this one has 0 layers (--n-layers ≥ 1)");
        if (c.NCtx < 4) throw new UserError($"--track-circuits scores heads on a sequence repeated twice, which needs n_ctx ≥ 4; this model has n_ctx {c.NCtx}");
        _model = model;
        _scores = scores ?? HeadScoreSet.Default;
        LogPath = CircuitsLog.PathFor(checkpoint);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(LogPath));
        if (dir != null) Directory.CreateDirectory(dir);
        if (!append) File.WriteAllText(LogPath, "");
    }

    /// <summary>Scores the heads now, appends the log line, and returns " | prev L0H3 0.95 | dup L1H0 0.03 | ind L1H2 0.87" (the role-giving scores' headers).</summary>
    public string Record(TrainLog log)
    {
        var s = HeadScores.Compute(_model, Batch, scores: _scores);
        File.AppendAllText(LogPath, CircuitsLog.ToJsonLine(log, s) + "\n");
        var suffix = new System.Text.StringBuilder();
        foreach (var score in _scores.RoleScores)
        {
            var (l, h, v) = Max(s[score.Name]);
            suffix.Append($" | {score.Header} L{l}H{h} {v:F2}");
        }
        return suffix.ToString();
    }

    /// <summary>The head with the largest score (the first on ties).</summary>
    public static (int Layer, int Head, double Score) Max(double[][] scores)
    {
        (int, int, double) best = (0, 0, double.NegativeInfinity);
        for (int l = 0; l < scores.Length; l++)
            for (int h = 0; h < scores[l].Length; h++)
                if (scores[l][h] > best.Item3) best = (l, h, scores[l][h]);
        return best;
    }
}
