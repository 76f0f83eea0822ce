using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// Exact activation patching (x) against attribution patching (y) for every cell of one grid, with the
/// diagonal y = x: cells on it are where the first-order estimate is right; cells far below it are where
/// the metric is not linear in the activation (a saturated softmax between the site and the logits).
/// </summary>
public static class PatchScatter
{
    /// <param name="scale">what 0 and 1 are (<see cref="PatchCells.Scale"/>): denoising and noising swap them.</param>
    public static byte[] Render(double[] exact, double[] attribution, string name, double r, string scale)
    {
        var pairs = exact.Zip(attribution).Where(p => double.IsFinite(p.First) && double.IsFinite(p.Second)).ToList();
        var xs = pairs.Select(p => p.First).ToArray();
        var ys = pairs.Select(p => p.Second).ToArray();
        using var plot = new Plot();
        double lo = Math.Min(0, xs.Concat(ys).DefaultIfEmpty(0).Min()), hi = Math.Max(1, xs.Concat(ys).DefaultIfEmpty(1).Max());
        double pad = 0.05 * (hi - lo);
        var diag = plot.Add.Line(lo - pad, lo - pad, hi + pad, hi + pad);
        diag.LineColor = Colors.Gray;
        diag.LinePattern = LinePattern.Dashed;
        var pts = plot.Add.Markers(xs, ys, MarkerShape.FilledCircle, 6, Colors.SteelBlue.WithAlpha(0.7));
        pts.LegendText = $"{xs.Length} cells";
        plot.Title($"{name}: attribution vs exact (r = {(double.IsFinite(r) ? r.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture) : "–")})", 13);
        plot.Axes.Bottom.Label.Text = $"exact patching ({scale})";
        plot.Axes.Left.Label.Text = "attribution patching";
        plot.Axes.SetLimits(lo - pad, hi + pad, lo - pad, hi + pad);
        return PlotImage.Render(plot, 420, 400);
    }
}
