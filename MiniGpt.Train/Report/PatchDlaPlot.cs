using System.Globalization;
using MiniGpt.Patching;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// Direct logit attribution as bars: each part of the final residual stream (embeddings, each head's result
/// z·W_O, each layer's b_O, each MLP, the biases after the stream) and its contribution to the logit
/// difference with ln_final's scale frozen; red raises the answer over the wrong token, blue lowers it.
/// The bars sum to the model's logit difference (the title gives both).
/// </summary>
public static class PatchDlaPlot
{
    public static byte[] Render(DirectLogitAttributionResult dla)
    {
        using var plot = new Plot();
        var parts = dla.Parts;
        var bars = parts.Select((p, i) => new Bar
        {
            Position = i, Value = p.Value, Size = 0.8, LineWidth = 0,
            FillColor = p.Value >= 0 ? Colors.Crimson.WithAlpha(0.8) : Colors.SteelBlue.WithAlpha(0.8),
        }).ToList();
        plot.Add.Bars(bars);
        plot.Add.HorizontalLine(0, 1, Colors.Gray, LinePattern.Solid);
        plot.Axes.Bottom.SetTicks(parts.Select((_, i) => (double)i).ToArray(), parts.Select(p => Label(p.Name)).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = -90;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        plot.Axes.Bottom.TickLabelStyle.FontSize = parts.Count > 32 ? 8 : 11;
        plot.Axes.Left.Label.Text = "contribution to the logit difference";
        string F(double x) => x.ToString("0.000", CultureInfo.InvariantCulture);
        plot.Title($"Direct logit attribution (parts sum to {F(dla.Sum)}; logit difference {F(dla.LogitDiff)})", 13);
        plot.Axes.Margins(0.02, 0.1);
        return PlotImage.Render(plot, Math.Clamp(240 + parts.Count * 22, 560, 1200), 440);
    }

    private static string Label(string name) => name.StartsWith("biases", StringComparison.Ordinal) ? "biases" : name.Replace("blocks.", "", StringComparison.Ordinal);
}
