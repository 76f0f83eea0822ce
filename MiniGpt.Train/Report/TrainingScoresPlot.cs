using ScottPlot;
using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>
/// Head scores over training, from the train --track-circuits log (CircuitsLog): the phase change of
/// Olsson et al. 2022, where the induction score jumps while the loss on repeated tokens falls.
/// </summary>
public static class TrainingScoresPlot
{
    /// <summary>The best head's previous-token, duplicate-token and induction scores (left axis) and the validation and repeat losses (right axis) per evaluation.</summary>
    public static byte[] Summary(IReadOnlyList<CircuitsLogEntry> log)
    {
        using var plot = new Plot();
        var steps = log.Select(e => (double)e.Step).ToArray();
        void Score(Func<CircuitsLogEntry, double[][]> pick, string name, Color color)
        {
            var ys = log.Select(e => MaxOf(pick(e))).ToArray();
            var s = plot.Add.Scatter(steps, ys, color);
            s.LineWidth = 2; s.MarkerSize = 5;
            s.LegendText = $"max {name} score";
        }
        Score(e => e.Scores.PreviousToken, "previous-token", Colors.SteelBlue);
        Score(e => e.Scores.DuplicateToken, "duplicate-token", Colors.Gray);
        Score(e => e.Scores.Induction, "induction", Colors.Crimson);
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

    /// <summary>Every head's score of one kind per evaluation, one line per head.</summary>
    public static byte[] PerHead(IReadOnlyList<CircuitsLogEntry> log, Func<CircuitsLogEntry, double[][]> pick, string name)
    {
        using var plot = new Plot();
        var steps = log.Select(e => (double)e.Step).ToArray();
        var first = pick(log[0]);
        var palette = new ScottPlot.Palettes.Category10();
        int k = 0;
        for (int l = 0; l < first.Length; l++)
            for (int h = 0; h < first[l].Length; h++, k++)
            {
                int ll = l, hh = h;
                var ys = log.Select(e => { var g = pick(e); return ll < g.Length && hh < g[ll].Length ? g[ll][hh] : double.NaN; }).ToArray();
                var s = plot.Add.Scatter(steps, ys, palette.GetColor(k));
                s.LineWidth = 2; s.MarkerSize = 4;
                if (l > 0) s.LinePattern = LinePattern.Dashed; // layer 0 solid, later layers dashed
                s.LegendText = $"L{l}H{h}";
            }
        plot.Axes.SetLimitsY(0, 1.05);
        plot.Axes.Left.Label.Text = $"{name} score";
        plot.Axes.Bottom.Label.Text = "training step";
        plot.Title($"{char.ToUpperInvariant(name[0])}{name[1..]} score of every head over training", 13);
        plot.ShowLegend(Edge.Right);
        return PlotImage.Render(plot, 760, 400);
    }

    private static double MaxOf(double[][] g) => g.Length == 0 ? double.NaN : g.Max(r => r.Length == 0 ? double.NaN : r.Max());
}
