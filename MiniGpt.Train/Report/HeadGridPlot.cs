using System.Globalization;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// One value per head as a [layer × head] heatmap (layer 0 at the top), the way TransformerLens's demos show
/// GPT-2 small's 144 induction scores: a wide model's scores at a glance, where a table would run to pages.
/// Scores in [0, 1] use a fixed sequential scale from 0 to 1 (so a map of 0.02s reads as near nothing, and two
/// models' maps compare); other unsigned values one from 0 to the largest; signed ones (eigenvalue scores, log ratios)
/// a diverging scale centred on 0. NaN cells (not measured) are grey; small grids are annotated.
/// </summary>
public static class HeadGridPlot
{
    public static byte[] Render(double[] values, int layers, int heads, IReadOnlyList<string> rowLabels, IReadOnlyList<string> colLabels, string title, bool signed)
    {
        var grid = new double[layers, heads];
        double max = 0;
        for (int l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++)
            {
                double v = values[l * heads + h];
                grid[l, h] = v;
                if (double.IsFinite(v)) max = Math.Max(max, Math.Abs(v));
            }
        if (!signed && values.Where(double.IsFinite).All(v => v is >= 0 and <= 1)) max = 1;
        if (!(max > 0)) max = 1;
        if (!values.Any(double.IsFinite)) { Array.Clear(grid); title += " (no values)"; }

        using var plot = new Plot();
        var hm = plot.Add.Heatmap(grid);
        hm.Colormap = signed ? new ScottPlot.Colormaps.Balance() : new ScottPlot.Colormaps.Viridis();
        hm.ManualRange = signed ? new ScottPlot.Range(-max, max) : new ScottPlot.Range(0, max);
        hm.NaNCellColor = Colors.LightGray;
        plot.Add.ColorBar(hm);
        var (xs, xl) = PlotImage.Ticks(colLabels, 48);
        var (ys, yl) = PlotImage.Ticks(rowLabels, 48, i => layers - 1 - i);
        plot.Axes.Bottom.SetTicks(xs, xl);
        plot.Axes.Left.SetTicks(ys, yl);
        plot.Axes.Bottom.Label.Text = "head";
        plot.Axes.Left.Label.Text = "layer";
        if (layers * heads <= 196)
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < heads; h++)
                {
                    if (!double.IsFinite(grid[l, h])) continue;
                    var t = plot.Add.Text(grid[l, h].ToString("0.00", CultureInfo.InvariantCulture), h, layers - 1 - l);
                    t.Alignment = Alignment.MiddleCenter;
                    t.LabelFontSize = 9;
                    double frac = Math.Abs(grid[l, h]) / max;
                    t.LabelFontColor = signed ? (frac > 0.6 ? Colors.White : Colors.Black) : (frac > 0.6 ? Colors.Black : Colors.White);
                }
        plot.Title(title, 13);
        plot.Axes.SetLimits(-0.5, heads - 0.5, -0.5, layers - 0.5);
        return PlotImage.Render(plot, Math.Max(420, 40 * heads + 140), Math.Max(300, 32 * layers + 110));
    }
}
