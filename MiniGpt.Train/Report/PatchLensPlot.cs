using MiniGpt.Patching;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// The logit lens: each residual stream (before each block, and the final one) decoded through ln_final and
/// W_U, for the clean and the corrupted prompts. Left axis: the logit difference answer − wrong at the targets
/// (solid); right axis: the answer's loss there (dashed). Where the clean line rises is the block that writes
/// the answer; the last point is the model's own output.
/// </summary>
public static class PatchLensPlot
{
    public static byte[] Render(IReadOnlyList<LogitLensLayer> clean, IReadOnlyList<LogitLensLayer> corrupted)
    {
        using var plot = new Plot();
        var xs = Enumerable.Range(0, clean.Count).Select(i => (double)i).ToArray();
        void Series(IReadOnlyList<LogitLensLayer> rows, Color colour, string which)
        {
            var ld = plot.Add.Scatter(xs, rows.Select(r => r.LogitDiff).ToArray(), colour);
            ld.LineWidth = 2; ld.MarkerSize = 6; ld.LegendText = $"{which}: logit difference";
            var loss = plot.Add.Scatter(xs, rows.Select(r => r.TargetLoss).ToArray(), colour);
            loss.LinePattern = LinePattern.Dashed; loss.MarkerSize = 4; loss.LegendText = $"{which}: answer loss";
            loss.Axes.YAxis = plot.Axes.Right;
        }
        Series(clean, Colors.Crimson, "clean");
        Series(corrupted, Colors.SteelBlue, "corrupted");
        plot.Add.HorizontalLine(0, 1, Colors.Gray.WithAlpha(0.6), LinePattern.Dotted);
        var labels = clean.Select(r => Short(r.Name)).ToArray();
        plot.Axes.Bottom.SetTicks(xs, labels);
        plot.Axes.Bottom.Label.Text = "residual stream decoded";
        plot.Axes.Left.Label.Text = "logit difference (answer − wrong)";
        plot.Axes.Right.Label.Text = "answer loss (nats)";
        plot.Title("Logit lens", 13);
        plot.ShowLegend(Alignment.UpperLeft);
        return PlotImage.Render(plot, 720, 400);
    }

    /// <summary>"blocks.1.hook_resid_pre" → "resid_pre 1", "blocks.1.hook_resid_post" → "final".</summary>
    public static string Short(string hook) =>
        hook.EndsWith("hook_resid_post", StringComparison.Ordinal) || hook.StartsWith("hook_embed", StringComparison.Ordinal) ? "final"
        : hook.StartsWith("blocks.", StringComparison.Ordinal) ? $"resid_pre {hook.Split('.')[1]}" : hook;
}
