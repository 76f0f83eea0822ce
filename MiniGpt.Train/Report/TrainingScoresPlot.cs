using ScottPlot;
using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>
/// Head scores over training, from the train --track-circuits log (CircuitsLog): the phase change of
/// Olsson et al. 2022, where the induction score jumps while the loss on repeated tokens falls.
/// </summary>
public static class TrainingScoresPlot
{
    /// <summary>
    /// Line colours of the scores, in registry order: previous-token blue, duplicate-token grey, induction red, then
    /// Category10's green, purple, brown, pink, olive and cyan (its orange is the repeat loss's, its blue, red and grey taken).
    /// </summary>
    private static readonly Color[] ScoreColours =
        [Colors.SteelBlue, Colors.Gray, Colors.Crimson, .. new[] { 2, 4, 5, 6, 8, 9 }.Select(i => new ScottPlot.Palettes.Category10().GetColor(i))];

    /// <summary>The best head's value of every score the log has (left axis) and the validation and repeat losses (right axis) per evaluation.</summary>
    public static byte[] Summary(IReadOnlyList<CircuitsLogEntry> log, HeadScoreSet scores)
    {
        using var plot = new Plot();
        for (int k = 0; k < scores.Count; k++)
        {
            var score = scores[k];
            var pts = log.Where(e => e.Scores.Has(score.Name)).Select(e => ((double)e.Step, MaxOf(e.Scores[score.Name]))).ToArray();
            if (pts.Length == 0) continue;
            var s = plot.Add.Scatter(pts.Select(p => p.Item1).ToArray(), pts.Select(p => p.Item2).ToArray(), ScoreColours[k % ScoreColours.Length]);
            s.LineWidth = 2; s.MarkerSize = 5;
            if (score.Role == null) s.LinePattern = LinePattern.Dotted; // scores without a role dotted: equal curves (prefix matching and induction) stay visible
            s.LegendText = $"max {score.DisplayName} score";
        }
        plot.Axes.Left.Label.Text = "score (best head)";
        plot.Axes.SetLimitsY(0, 1.05);

        void Loss(Func<CircuitsLogEntry, double?> pick, string name, Color color)
        {
            var pts = log.Where(e => pick(e) is double).Select(e => ((double)e.Step, pick(e)!.Value)).ToArray();
            if (pts.Length == 0) return;
            var s = plot.Add.Scatter(pts.Select(p => p.Item1).ToArray(), pts.Select(p => p.Item2).ToArray(), color);
            s.LinePattern = LinePattern.Dashed; s.LineWidth = 1.5f; s.MarkerSize = 3;
            s.LegendText = name;
            s.Axes.YAxis = plot.Axes.Right;
        }
        Loss(e => e.ValLoss, "validation loss (right)", Colors.Black);
        Loss(e => e.RepeatLoss, "repeat loss (right)", Colors.DarkOrange);
        plot.Axes.Right.Label.Text = "loss (nats)";
        plot.Axes.Bottom.Label.Text = "training step";
        plot.Title("Head scores over training", 13);
        plot.ShowLegend(Edge.Bottom); // below the axes: the curves fill the whole data area
        return PlotImage.Render(plot, 760, 440);
    }

    /// <summary>
    /// Every head's value of one score per evaluation, one line per head (evaluations whose line lacks the score are
    /// left out); with <paramref name="only"/>, just those heads (a 144-head legend is no legend).
    /// </summary>
    public static byte[] PerHead(IReadOnlyList<CircuitsLogEntry> log, HeadScore score, IReadOnlyCollection<(int Layer, int Head)>? only = null)
    {
        using var plot = new Plot();
        string name = score.DisplayName;
        var entries = log.Where(e => e.Scores.Has(score.Name)).ToList();
        var steps = entries.Select(e => (double)e.Step).ToArray();
        var first = entries[0].Scores[score.Name];
        var palette = new ScottPlot.Palettes.Category10();
        int k = 0;
        for (int l = 0; l < first.Length; l++)
            for (int h = 0; h < first[l].Length; h++)
            {
                if (only != null && !only.Contains((l, h))) continue;
                k++;
                int ll = l, hh = h;
                var ys = entries.Select(e => { var g = e.Scores[score.Name]; return ll < g.Length && hh < g[ll].Length ? g[ll][hh] : double.NaN; }).ToArray();
                var s = plot.Add.Scatter(steps, ys, palette.GetColor(k - 1));
                s.LineWidth = 2; s.MarkerSize = 4;
                if (l > 0) s.LinePattern = LinePattern.Dashed; // layer 0 solid, later layers dashed
                s.LegendText = $"L{l}H{h}";
            }
        plot.Axes.SetLimitsY(0, 1.05);
        plot.Axes.Left.Label.Text = $"{name} score";
        plot.Axes.Bottom.Label.Text = "training step";
        plot.Title($"{Capitalised(name)} score of {(only == null ? "every head" : $"{only.Count} notable heads")} over training", 13);
        plot.ShowLegend(Edge.Right);
        return PlotImage.Render(plot, 760, 400);
    }

    /// <summary>"previous-token" → "Previous-token".</summary>
    public static string Capitalised(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];

    private static double MaxOf(double[][] g) => g.Length == 0 ? double.NaN : g.Max(r => r.Length == 0 ? double.NaN : r.Max());
}
