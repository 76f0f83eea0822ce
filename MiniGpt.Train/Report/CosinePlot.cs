using MiniGpt.Circuits;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// The histogram of cosines between pairs of token embeddings (rows of W_E; Geometry.EmbeddingCosines)
/// against what random directions would give: for independent isotropic vectors in d dimensions the
/// cosine has mean 0 and standard deviation 1/√d, close to normal for moderate d, so the red curve is the
/// N(0, 1/d) density scaled to the histogram's bins and the dashed lines mark ±1/√d. Embeddings that are
/// "almost orthogonal" (superposition-friendly) follow the curve; a learned structure shows as a wider or
/// shifted histogram.
/// </summary>
public static class CosinePlot
{
    public static byte[] Render(CosineStats s, int dModel)
    {
        using var plot = new Plot();
        int bins = s.Histogram.Length;
        double width = bins > 0 && s.HistMax > s.HistMin ? (s.HistMax - s.HistMin) / bins : 0.01;
        var bars = new List<Bar>();
        for (int b = 0; b < bins; b++)
            bars.Add(new Bar { Position = s.HistMin + (b + 0.5) * width, Value = s.Histogram[b], Size = width * 0.95, FillColor = Colors.SteelBlue.WithAlpha(0.75), LineWidth = 0 });
        var bp = plot.Add.Bars(bars);
        bp.LegendText = $"W_E pairs: mean {s.Mean:+0.000;-0.000}, std {s.Std:0.000}";

        double sd = s.ExpectedStd, lo = Math.Min(s.HistMin, -4 * sd), hi = Math.Max(s.HistMax, 4 * sd);
        var xs = Enumerable.Range(0, 201).Select(i => lo + (hi - lo) * i / 200).ToArray();
        // fraction of pairs per bin under N(0, sd²): density × bin width
        var ys = xs.Select(x => Math.Exp(-0.5 * x * x / (sd * sd)) / (sd * Math.Sqrt(2 * Math.PI)) * width).ToArray();
        var curve = plot.Add.ScatterLine(xs, ys, Colors.Crimson);
        curve.LineWidth = 2;
        curve.LegendText = $"random directions: N(0, 1/d_model), 1/√{dModel} = {sd:0.000}";
        foreach (double x in new[] { -sd, sd })
            plot.Add.VerticalLine(x, 1, Colors.Crimson, LinePattern.Dashed);
        plot.Axes.Bottom.Label.Text = "cosine between two token embeddings";
        plot.Axes.Left.Label.Text = "fraction of pairs";
        plot.Title("Embedding cosines vs the 1/√d_model spread of random vectors", 13);
        plot.Axes.Margins(bottom: 0);
        plot.ShowLegend(Alignment.UpperLeft);
        plot.Legend.FontSize = 10;
        return PlotImage.Render(plot, 720, 380);
    }
}
