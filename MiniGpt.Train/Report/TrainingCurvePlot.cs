using MiniGpt.Train.Runs;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// A run's loss.png: the training loss (mean over each logging interval) and the validation loss against
/// the step, and for the induction task the loss on the repeated (predictable) positions, whose fall is
/// the induction head forming.
/// </summary>
public static class TrainingCurvePlot
{
    public static byte[] Render(IReadOnlyList<MetricsLine> lines, string runName)
    {
        using var plot = new Plot();
        void Series(Func<MetricsLine, float?> value, Color color, string label, bool dashed)
        {
            var pts = lines.Where(l => value(l) is float v && float.IsFinite(v)).ToList();
            if (pts.Count == 0) return;
            var s = plot.Add.Scatter(pts.Select(l => (double)l.Step).ToArray(), pts.Select(l => (double)value(l)!.Value).ToArray(), color);
            s.LineWidth = 2;
            s.MarkerSize = pts.Count > 60 ? 0 : 4;
            s.LegendText = label;
            if (dashed) s.LinePattern = LinePattern.Dashed;
        }
        Series(l => l.Loss, Colors.SteelBlue, "train loss", false);
        Series(l => l.ValLoss, Colors.Crimson, "validation loss", false);
        Series(l => l.RepeatLoss, Colors.DarkOrange, "val loss on repeated tokens", true);
        plot.Title($"{runName}: loss", 13);
        plot.Axes.Bottom.Label.Text = "step";
        plot.Axes.Left.Label.Text = "cross-entropy (nats)";
        plot.ShowLegend(Alignment.UpperRight);
        return PlotImage.Render(plot, 720, 400);
    }
}
